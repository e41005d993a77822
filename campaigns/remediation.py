"""Remediation closure: who removes revoked access (remediation owners per application), the `remediating`
state between the end of the review and proof that every revoke is gone, and manual confirmation of removal.

A campaign whose reviewers have all signed off (or that an admin closed) becomes `remediating` when it holds
revokes, `completed` otherwise. It completes once every revoked item is `verified_removed` (a later import or
sync no longer lists the grant) or `confirmed_removed` (its remediation owner confirmed it with a comment).

This module is also the one place that writes the review item's remediation record (``ReviewItem.ticket_*``
and ``remediation_*``): the ticket itself lives in the itsm app, which changes the item's copy only through
the ``review_items_*`` functions at the end. They lock the items' campaigns first, in primary-key order, before
touching items: decision writers lock the campaign and then its items, so the same order cannot deadlock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from entitlements.models import Application
from thalian.audit import audit_record
from thalian.bulk import rows_update
from thalian.events import CampaignCompleted, CampaignRemediating, publish
from thalian.models import Membership, Organization
from thalian.permissions import Perm, has_perm

from .models import (
    REMOVAL_PROVEN,
    Campaign,
    CampaignRemediationOwner,
    CampaignStatus,
    Decision,
    RemediationOwnerSource,
    RemediationStatus,
    ReviewItem,
)
from .selectors import REVIEWER_ROLES, applications_in_scope, scope_application_ids

# Members who can act on remediation: the roles that can decide (auditors and viewers stay read-only, so
# the people who audit removal never confirm it).
REMEDIATION_ROLES = REVIEWER_ROLES
MAX_COMMENT_LENGTH = 4000


class RemediationError(ValueError):
    """Bad input or a state that does not allow the action; `field` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


# ---------------------------------------------------------------------------------------------
# Choosing remediation owners (wizard and API)


def member_with_role(
    *,
    organization: Organization,
    email: str,
    field: str,
    roles: Iterable[str],
    cannot: str,
    error: Callable[..., Exception] = RemediationError,
) -> Membership:
    """The active member with this e-mail whose role is one of `roles`; otherwise `error(message, field=field)`
    naming what is wrong (`cannot`: what the other roles cannot do, e.g. "review items")."""
    email = (email or "").strip().lower()
    if not email:
        raise error(f"{field} is required", field=field)
    try:
        validate_email(email)
    except Exception:
        raise error(f"{field}: {email!r} is not an e-mail address", field=field) from None
    membership = (
        Membership.objects.filter(organization=organization, user__email=email, user__is_active=True)
        .select_related("user")
        .first()
    )
    if membership is None:
        raise error(f"{field}: {email} is not a member of this organization", field=field)
    if membership.role not in roles:
        raise error(
            f"{field}: {email} has the role {membership.get_role_display()}, which cannot {cannot}", field=field
        )
    return membership


def remediation_member(*, organization: Organization, email: str, field: str) -> Membership:
    """The active member with this e-mail whose role may remediate; a clear error otherwise."""
    return member_with_role(
        organization=organization, email=email, field=field, roles=REMEDIATION_ROLES, cannot="remediate access"
    )


def remediation_owners_clean(*, organization: Organization, owners: Any) -> dict[str, str]:
    """`{"<application name>": "<member e-mail>"}` overrides: known applications (case-insensitive) and
    members who can remediate. Empty values are dropped (the application's own owner then applies)."""
    if owners in (None, ""):
        return {}
    if not isinstance(owners, dict):
        raise RemediationError(
            "remediation_owners must be an object of application name to member e-mail", field="remediation_owners"
        )
    known = {n.lower(): n for n in Application.objects.filter(organization=organization).values_list("name", flat=True)}
    clean: dict[str, str] = {}
    for name, email in owners.items():
        if not isinstance(name, str) or not isinstance(email, str | type(None)):
            raise RemediationError("remediation_owners: names and e-mails must be text", field="remediation_owners")
        if not (email or "").strip():
            continue
        app = known.get(name.strip().lower())
        if app is None:
            raise RemediationError(f"remediation_owners: unknown application {name!r}", field="remediation_owners")
        member = remediation_member(organization=organization, email=email, field=f"remediation_owners[{app}]")
        clean[app] = member.user.email.lower()
    return clean


@dataclass(frozen=True)
class OwnerChoice:
    application_id: int | None
    application_name: str
    owner: Membership | None
    owner_email: str
    source: str
    note: str = ""

    @property
    def source_label(self) -> str:
        return RemediationOwnerSource(self.source).label

    def as_dict(self) -> dict:
        return {
            "application": self.application_name,
            "remediation_owner": self.owner_email,
            "source": self.source,
            "note": self.note,
        }


def _resolve(
    *, organization: Organization, applications: list[tuple[int | None, str, str, str]], overrides: dict[str, str],
    fallback: Membership | None,
) -> list[OwnerChoice]:
    """applications: (id, name, remediation_owner_email, owner_email). Two queries whatever the count."""
    wanted = set()
    for _id, name, remediation_owner, owner in applications:
        wanted.update(e.lower() for e in (overrides.get(name, ""), remediation_owner, owner) if e)
    members = {
        m.user.email.lower(): m
        for m in Membership.objects.filter(
            organization=organization, user__email__in=wanted, user__is_active=True, role__in=REMEDIATION_ROLES
        ).select_related("user")
    }
    choices = []
    for app_id, name, remediation_owner, owner in applications:
        candidates = [
            (overrides.get(name, ""), RemediationOwnerSource.CAMPAIGN),
            (remediation_owner, RemediationOwnerSource.APPLICATION),
            (owner, RemediationOwnerSource.OWNER),
        ]
        chosen = None
        tried = []
        for email, source in candidates:
            if not email:
                continue
            member = members.get(email.lower())
            if member is not None:
                chosen = OwnerChoice(app_id, name, member, member.user.email.lower(), source)
                break
            tried.append(email.lower())
        if chosen is None:
            note = (
                f"{', '.join(tried)} cannot remediate (not a member with a role that can)"
                if tried else "The application names no owner"
            )
            chosen = OwnerChoice(
                app_id, name, fallback, fallback.user.email.lower() if fallback else "",
                RemediationOwnerSource.FALLBACK, (note + ": assigned to the fallback remediation owner")[:300],
            )
        choices.append(chosen)
    return choices


def remediation_owner_preview(
    *, organization: Organization, scope: dict, overrides: dict[str, str] | None = None,
    fallback: Membership | None = None, limit: int = 200,
) -> list[OwnerChoice]:
    """Who would remediate each application of a scope (the wizard's table)."""
    apps = list(
        applications_in_scope(organization=organization, scope=scope)
        .order_by("name")
        .values_list("id", "name", "remediation_owner_email", "owner_email")[:limit]
    )
    return _resolve(organization=organization, applications=apps, overrides=overrides or {}, fallback=fallback)


def remediation_owners_assign(*, campaign: Campaign) -> int:
    """At snapshot time: one row per application with items, naming its remediation owner. Safe to re-run."""
    names = list(
        ReviewItem.objects.filter(campaign=campaign).order_by().values_list("application_name", flat=True).distinct()
    )
    if not names:
        return 0
    organization = campaign.organization
    app_ids = scope_application_ids(organization=organization, scope=campaign.scope)
    apps = Application.objects.filter(organization=organization, name__in=names)
    if app_ids is not None:
        apps = apps.filter(pk__in=app_ids)
    rows = list(apps.values_list("id", "name", "remediation_owner_email", "owner_email"))
    seen = {name for _id, name, _r, _o in rows}
    rows += [(None, name, "", "") for name in names if name not in seen]
    fallback = campaign.fallback_remediation_owner or campaign.fallback_reviewer
    choices = _resolve(
        organization=organization, applications=rows, overrides=campaign.remediation_owners or {}, fallback=fallback
    )
    CampaignRemediationOwner.objects.bulk_create(
        [
            CampaignRemediationOwner(
                organization_id=campaign.organization_id, campaign=campaign, application_id=c.application_id,
                application_name=c.application_name, owner=c.owner, owner_email=c.owner_email, source=c.source,
                note=c.note,
            )
            for c in choices
        ],
        ignore_conflicts=True,
        batch_size=1000,
    )
    return len(choices)


# ---------------------------------------------------------------------------------------------
# Reads


def open_removals(campaign_id) -> QuerySet[ReviewItem]:
    """Revoked items of a campaign whose removal is not proven yet."""
    return ReviewItem.objects.filter(campaign_id=campaign_id, decision=Decision.REVOKE).exclude(
        remediation_status__in=REMOVAL_PROVEN
    )


def campaign_remediation_progress(*, campaign: Campaign) -> dict[str, int]:
    """Revoked items by how their removal stands, in one query: `revoked`, `verified_removed`,
    `confirmed_removed`, `action_required`, `pending` (not proven, not contradicted) and `proven`."""
    counts = ReviewItem.objects.filter(campaign_id=campaign.pk, decision=Decision.REVOKE).aggregate(
        revoked=Count("id"),
        verified_removed=Count("id", filter=Q(remediation_status=RemediationStatus.VERIFIED_REMOVED)),
        confirmed_removed=Count("id", filter=Q(remediation_status=RemediationStatus.CONFIRMED_REMOVED)),
        action_required=Count("id", filter=Q(remediation_status=RemediationStatus.ACTION_REQUIRED)),
    )
    counts["proven"] = counts["verified_removed"] + counts["confirmed_removed"]
    counts["pending"] = counts["revoked"] - counts["proven"] - counts["action_required"]
    counts["percent"] = round(counts["proven"] * 100 / counts["revoked"]) if counts["revoked"] else 100
    return counts


def campaign_remediation_owners(*, campaign: Campaign) -> list[dict]:
    """Per application: its remediation owner and how many revokes are still to be proven removed."""
    open_count = (
        ReviewItem.objects.filter(
            campaign_id=campaign.pk, application_name=OuterRef("application_name"), decision=Decision.REVOKE
        )
        .exclude(remediation_status__in=REMOVAL_PROVEN)
        .order_by()
        .values("campaign_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    from django.db.models import IntegerField, Subquery
    from django.db.models.functions import Coalesce

    rows = (
        CampaignRemediationOwner.objects.filter(campaign=campaign)
        .annotate(open=Coalesce(Subquery(open_count, output_field=IntegerField()), 0))
        .order_by("application_name")
        .values("application_name", "owner_email", "owner_id", "source", "note", "open")
    )
    return list(rows)


def open_removals_by_owner(*, campaign: Campaign) -> dict[int, int]:
    """{remediation owner membership id: revokes of theirs still to be proven removed}, in one query."""
    rows = (
        open_removals(campaign.pk)
        .filter(owned_by_any())
        .annotate(owner_id=_owner_id())
        .order_by()
        .values("owner_id")
        .annotate(n=Count("id"))
    )
    return {row["owner_id"]: row["n"] for row in rows if row["owner_id"] is not None}


def _owner_id():
    from django.db.models import Subquery

    return Subquery(
        CampaignRemediationOwner.objects.filter(
            campaign_id=OuterRef("campaign_id"), application_name=OuterRef("application_name")
        ).values("owner_id")[:1]
    )


def owned_by_any() -> Exists:
    return Exists(
        CampaignRemediationOwner.objects.filter(
            campaign_id=OuterRef("campaign_id"), application_name=OuterRef("application_name"), owner__isnull=False
        )
    )


def remediation_owner_of(*, item: ReviewItem) -> CampaignRemediationOwner | None:
    return CampaignRemediationOwner.objects.filter(
        campaign_id=item.campaign_id, application_name=item.application_name
    ).first()


def owned_by(membership: Membership) -> Exists:
    """Filter for review items whose remediation the member owns in the item's campaign."""
    return Exists(
        CampaignRemediationOwner.objects.filter(
            campaign_id=OuterRef("campaign_id"), application_name=OuterRef("application_name"), owner=membership
        )
    )


def can_confirm_removal(*, membership: Membership, item: ReviewItem, owner_id: int | None) -> bool:
    if not has_perm(membership.role, Perm.CONFIRM_REMOVAL):
        return False
    return has_perm(membership.role, Perm.CONFIRM_ANY_REMOVAL) or owner_id == membership.pk


def removal_item_access(*, membership: Membership, campaign_id, item_id) -> ReviewItem:
    """Fetch a revoked item for confirming its removal: 404 outside the organization (or for a campaign the
    member has nothing to do with), 403 for a role that cannot confirm removals."""
    from django.http import Http404

    try:
        item = ReviewItem.objects.select_related("campaign").get(pk=int(item_id), campaign_id=campaign_id)
    except (ReviewItem.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404("No such item") from exc
    if item.organization_id != membership.organization_id:
        raise Http404("No such item")
    if not has_perm(membership.role, Perm.VIEW_ALL_CAMPAIGNS):
        involved = ReviewItem.objects.filter(campaign_id=item.campaign_id, reviewer=membership).exists() or (
            CampaignRemediationOwner.objects.filter(campaign_id=item.campaign_id, owner=membership).exists()
        )
        if not involved:
            raise Http404("No such item")
    if not has_perm(membership.role, Perm.CONFIRM_REMOVAL):
        raise PermissionDenied(f"Your role ({membership.role}) cannot confirm removals.")
    return item


# ---------------------------------------------------------------------------------------------
# State changes


def campaign_review_finished(*, campaign: Campaign, how: str, actor=None, request=None) -> str:
    """The review part is over (every sign-off in, or closed): `remediating` when revokes are still to be
    proven removed, else `completed`. Called with the campaign row locked; returns the new status."""
    now = timezone.now()
    if open_removals(campaign.pk).exists():
        Campaign.objects.filter(pk=campaign.pk).update(
            status=CampaignStatus.REMEDIATING, remediating_at=now, updated_at=now
        )
        audit_record(
            action="campaign_remediating",
            organization_id=campaign.organization_id,
            actor=actor,
            request=request,
            target=campaign,
            system=actor is None,
            details={"how": how, "open_removals": open_removals(campaign.pk).count()},
        )
        publish(CampaignRemediating(organization_id=campaign.organization_id, campaign_id=str(campaign.pk)))
        return CampaignStatus.REMEDIATING
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.COMPLETED, completed_at=now, updated_at=now)
    audit_record(
        action="campaign_completed",
        organization_id=campaign.organization_id,
        actor=actor,
        request=request,
        target=campaign,
        system=actor is None,
        details={"how": how},
    )
    publish(CampaignCompleted(organization_id=campaign.organization_id, campaign_id=str(campaign.pk)))
    return CampaignStatus.COMPLETED


def campaign_remediation_complete_if_done(*, campaign_id) -> bool:
    """Complete a `remediating` campaign once every revoke's removal is proven. Safe to call any number of
    times (the conditional update completes it once)."""
    with transaction.atomic():
        if open_removals(campaign_id).exists():
            return False
        now = timezone.now()
        updated = Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.REMEDIATING).update(
            status=CampaignStatus.COMPLETED, completed_at=now, updated_at=now
        )
        if updated != 1:
            return False
        campaign = Campaign.objects.get(pk=campaign_id)
        progress = campaign_remediation_progress(campaign=campaign)
        audit_record(
            action="campaign_completed",
            organization_id=campaign.organization_id,
            target=campaign,
            system=True,
            details={
                "how": "every revoked access proven removed",
                "verified_removed": progress["verified_removed"],
                "confirmed_removed": progress["confirmed_removed"],
            },
        )
        publish(CampaignCompleted(organization_id=campaign.organization_id, campaign_id=str(campaign.pk)))
    return True


def campaign_remediation_reopen(*, campaign_id, why: str) -> bool:
    """A completed campaign whose revoked access is no longer proven removed (a confirmation contradicted by
    later data) is `remediating` again, audited with the reason. Returns True when it changed."""
    with transaction.atomic():
        if not open_removals(campaign_id).exists():
            return False
        now = timezone.now()
        updated = Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.COMPLETED).update(
            status=CampaignStatus.REMEDIATING, remediating_at=now, completed_at=None, updated_at=now
        )
        if updated != 1:
            return False
        campaign = Campaign.objects.get(pk=campaign_id)
        audit_record(
            action="campaign_remediating",
            organization_id=campaign.organization_id,
            target=campaign,
            system=True,
            details={"how": f"reopened: {why}", "open_removals": open_removals(campaign_id).count()},
        )
        publish(CampaignRemediating(organization_id=campaign.organization_id, campaign_id=str(campaign.pk)))
    return True


def review_item_confirm_removed(
    *, item: ReviewItem, actor: Membership, comment: str, request=None
) -> ReviewItem:
    """The remediation owner (or staff who may decide any item) confirms that revoked access is gone, saying
    how in a comment. Recorded on the item, in the audit log and in the evidence as "manually confirmed"."""
    if actor.organization_id != item.organization_id:
        raise PermissionDenied("This item belongs to another organization.")
    comment = (comment or "").strip()
    if not comment:
        raise RemediationError("comment is required: say how the access was removed", field="comment")
    if len(comment) > MAX_COMMENT_LENGTH:
        raise RemediationError(f"comment is longer than {MAX_COMMENT_LENGTH} characters", field="comment")
    if "\x00" in comment:
        raise RemediationError("comment contains a NUL character", field="comment")
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=item.campaign_id)
        locked = ReviewItem.objects.select_for_update().get(pk=item.pk)
        owner = remediation_owner_of(item=locked)
        if not can_confirm_removal(membership=actor, item=locked, owner_id=owner.owner_id if owner else None):
            raise PermissionDenied(
                f"Only the remediation owner of {locked.application_name} in this campaign"
                f"{f' ({owner.owner_email})' if owner else ''} can confirm this removal."
            )
        if locked.identity_email.lower() == actor.user.email.lower():
            raise PermissionDenied("You cannot confirm the removal of your own access.")
        if locked.decision != Decision.REVOKE:
            raise RemediationError("only revoked access can be confirmed removed", field="item")
        if campaign.status not in (CampaignStatus.ACTIVE, CampaignStatus.REMEDIATING, CampaignStatus.COMPLETED):
            raise RemediationError(
                f"the campaign is {campaign.get_status_display().lower()}; removals are confirmed in active or "
                "remediating campaigns",
                field="status",
            )
        if locked.remediation_status in REMOVAL_PROVEN:
            raise RemediationError(
                f"removal is already proven ({locked.get_remediation_status_display().lower()})", field="status"
            )
        now = timezone.now()
        previous = locked.remediation_status
        locked.remediation_status = RemediationStatus.CONFIRMED_REMOVED
        locked.removal_confirmed_by = actor.user
        locked.removal_confirmed_by_email = actor.user.email
        locked.removal_confirmed_at = now
        locked.removal_comment = comment
        locked.save(update_fields=[
            "remediation_status", "removal_confirmed_by", "removal_confirmed_by_email", "removal_confirmed_at",
            "removal_comment",
        ])
        audit_record(
            action="remediation_confirmed_removed",
            organization_id=campaign.organization_id,
            actor=actor.user,
            request=request,
            target=locked,
            details={
                "campaign": str(campaign.pk),
                "item": locked.pk,
                "identity": locked.identity_email,
                "application": locked.application_name,
                "role": locked.role,
                "previous_status": previous,
                "comment": comment[:1000],
            },
        )
    if campaign.status == CampaignStatus.REMEDIATING:
        campaign_remediation_complete_if_done(campaign_id=campaign.pk)
    locked.campaign = Campaign.objects.get(pk=campaign.pk)
    return locked


def removal_proof(item: ReviewItem) -> str:
    """How the removal of a revoked item was proven, in words for the evidence."""
    if item.remediation_status == RemediationStatus.VERIFIED_REMOVED:
        when = f" on {item.remediation_checked_at:%Y-%m-%d %H:%M} UTC" if item.remediation_checked_at else ""
        return f"verified: absent from the application's import or sync{when}"
    if item.remediation_status == RemediationStatus.CONFIRMED_REMOVED:
        return f"manually confirmed by {item.removal_confirmed_by_email}"
    if item.remediation_status == RemediationStatus.ACTION_REQUIRED:
        return "not proven: the access was still present at the last import or sync"
    return "not proven yet"


# ---------------------------------------------------------------------------------------------
# The item's remediation record, written for the itsm app (campaign locks first)


def lock_campaigns_of_items(item_ids: Iterable[int]) -> list:
    """Inside the caller's transaction: lock the campaigns of these items (FOR UPDATE, in pk order) and return
    their ids. Call it before writing items or rows that reference the campaign."""
    campaign_ids = sorted(
        set(ReviewItem.objects.filter(pk__in=list(item_ids)).order_by().values_list("campaign_id", flat=True)),
        key=str,
    )
    return lock_campaigns(campaign_ids)


def lock_campaigns(campaign_ids: Iterable) -> list:
    ids = sorted(set(campaign_ids), key=str)
    if ids:
        list(Campaign.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))
    return ids


def review_items_remediation_open(*, item_ids: Iterable[int]) -> None:
    """After decisions: revoked items await removal; items no longer revoked need none."""
    item_ids = list(item_ids)
    with transaction.atomic():
        lock_campaigns_of_items(item_ids)
        ReviewItem.objects.filter(
            pk__in=item_ids, decision=Decision.REVOKE, remediation_status=RemediationStatus.NONE
        ).update(remediation_status=RemediationStatus.PENDING)
        ReviewItem.objects.filter(pk__in=item_ids).exclude(decision=Decision.REVOKE).exclude(
            remediation_status=RemediationStatus.NONE
        ).update(remediation_status=RemediationStatus.NONE, remediation_checked_at=None)


def review_items_ticket_record(
    *, item_ids: Iterable[int], status: str, key: str = "", url: str = "", error: str = "",
    only_without: bool = False,
) -> int:
    """Record on the items what their ticket is now (status "" clears it). With ``only_without``, items that
    already show a ticket are left as they are."""
    items: QuerySet = ReviewItem.objects.filter(pk__in=list(item_ids))
    if only_without:
        items = items.filter(ticket_status="")
    return items.update(ticket_status=status, ticket_key=key, ticket_url=url, ticket_error=error)


@dataclass(frozen=True)
class ItemTicket:
    """What one item's ticket is now, for ``review_items_tickets_record``."""

    item_id: int
    status: str
    key: str = ""
    url: str = ""
    error: str = ""


def review_items_tickets_record(*, organization_id: int, tickets: Iterable[ItemTicket]) -> int:
    """Record on each item what its own ticket is now, in one UPDATE for all of them (a worker finishing a
    batch of tickets, each with its own key and URL)."""
    return rows_update(
        ReviewItem,
        organization_id=organization_id,
        rows=[(t.item_id, t.status, t.key, t.url, t.error) for t in tickets],
        columns=["ticket_status", "ticket_key", "ticket_url", "ticket_error"],
    )


@dataclass(frozen=True)
class RemovalCheck:
    campaign_ids: list
    verified_removed: int
    action_required: int
    contradicted: list  # (item id, campaign id) of removals confirmed by hand that the data still lists


def review_items_remediation_verify(
    *, application_ids: list[int], present_entitlements: QuerySet, now: dt.datetime
) -> RemovalCheck:
    """After an import or sync of these applications: a revoked item whose entitlement is gone is verified
    removed (a removal confirmed by hand included), one still present needs action; a confirmed removal that
    the data still lists is contradicted and needs action again (the confirmation stays on record). Locks
    the campaigns concerned first."""
    with transaction.atomic():
        revoked = ReviewItem.objects.filter(application_id__in=application_ids, decision=Decision.REVOKE)
        open_items = revoked.filter(
            remediation_status__in=[RemediationStatus.PENDING, RemediationStatus.ACTION_REQUIRED]
        )
        lock_campaigns(
            revoked.filter(
                remediation_status__in=[
                    RemediationStatus.PENDING, RemediationStatus.ACTION_REQUIRED, RemediationStatus.CONFIRMED_REMOVED,
                ]
            ).order_by().values_list("campaign_id", flat=True).distinct()
        )
        open_campaign_ids = list(open_items.order_by().values_list("campaign_id", flat=True).distinct())
        contradicted = list(
            revoked.filter(
                remediation_status=RemediationStatus.CONFIRMED_REMOVED, entitlement__in=present_entitlements
            ).values_list("pk", "campaign_id")
        )
        still_there = open_items.filter(entitlement__in=present_entitlements)
        gone = revoked.filter(
            remediation_status__in=[
                RemediationStatus.PENDING, RemediationStatus.ACTION_REQUIRED, RemediationStatus.CONFIRMED_REMOVED,
            ]
        ).exclude(entitlement__in=present_entitlements)
        # Set-based: a few UPDATEs whatever the number of items.
        verified = gone.update(remediation_status=RemediationStatus.VERIFIED_REMOVED, remediation_checked_at=now)
        action_required = still_there.update(
            remediation_status=RemediationStatus.ACTION_REQUIRED, remediation_checked_at=now
        )
        if contradicted:
            action_required += ReviewItem.objects.filter(pk__in=[pk for pk, _c in contradicted]).update(
                remediation_status=RemediationStatus.ACTION_REQUIRED, remediation_checked_at=now
            )
    return RemovalCheck(
        campaign_ids=open_campaign_ids, verified_removed=verified, action_required=action_required,
        contradicted=contradicted,
    )
