"""Campaign reads: scope resolution and preview, freshness, progress and the campaign list."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Count, Max, Min, Q, QuerySet
from django.db.models.functions import Lower
from django.http import Http404
from django.utils import timezone

from entitlements.models import NON_HUMAN_KINDS, Application, Entitlement, IdentityKind
from thalian.models import Membership, Organization
from thalian.permissions import PERMISSIONS, Perm, has_perm

from .models import Campaign, CampaignDecisionCount, CampaignStatus, Decision, DecisionEvent, ReviewItem

PRESETS = {
    "non_human": [k.value for k in NON_HUMAN_KINDS],
    "ai_agents": [IdentityKind.AI_AGENT.value],
}
PRESET_LABELS = {"non_human": "Non-human identities only", "ai_agents": "AI agents only"}

# Roles that may be assigned review items (they can decide what is assigned to them).
REVIEWER_ROLES = sorted(r.value for r in PERMISSIONS[Perm.DECIDE_ASSIGNED])

# Campaign list tabs, in display order; "active" also shows campaigns whose snapshot is being taken.
STATUS_TABS = [
    ("active", "Active", [CampaignStatus.ACTIVE, CampaignStatus.LAUNCHING]),
    ("remediating", "Remediating", [CampaignStatus.REMEDIATING]),
    ("scheduled", "Scheduled", [CampaignStatus.SCHEDULED]),
    ("completed", "Completed", [CampaignStatus.COMPLETED]),
    ("archived", "Archived", [CampaignStatus.ARCHIVED]),
    ("cancelled", "Cancelled", [CampaignStatus.CANCELLED]),
    ("draft", "Draft", [CampaignStatus.DRAFT]),
]


def reviewer_candidates(*, organization: Organization, exclude: Membership | None = None, limit: int = 500) -> list[str]:
    """E-mails of active members who may review (suggestions for reassigning and delegating)."""
    members = Membership.objects.filter(organization=organization, role__in=REVIEWER_ROLES, user__is_active=True)
    if exclude is not None:
        members = members.exclude(pk=exclude.pk)
    return list(members.order_by("user__email").values_list("user__email", flat=True)[:limit])


# ---------------------------------------------------------------------------------------------
# Access


def campaign_access(
    *, membership: Membership, campaign_id, perm: Perm = Perm.VIEW_CAMPAIGNS, with_fallback_reviewer: bool = True
) -> Campaign:
    """Fetch a campaign of the active organization and authorize `perm` in one step.

    Anything outside the organization (or a malformed id) answers 404 like a campaign that does not exist;
    a role without `perm` gets 403. Reviewers see only campaigns with items assigned to them. Pages that do not
    show the fallback reviewer (the review items page, loaded most) skip joining it."""
    campaigns = Campaign.objects.select_related("fallback_reviewer__user") if with_fallback_reviewer else Campaign.objects
    try:
        campaign = campaigns.get(pk=campaign_id)
    except (Campaign.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404("No such campaign") from exc
    if campaign.organization_id != membership.organization_id:
        raise Http404("No such campaign")
    if not has_perm(membership.role, perm):
        raise PermissionDenied(f"Your role ({membership.role}) does not allow this.")
    if not has_perm(membership.role, Perm.VIEW_ALL_CAMPAIGNS):
        # Campaigns without items assigned to a reviewer do not exist as far as the reviewer is concerned.
        if not ReviewItem.objects.filter(campaign=campaign, reviewer=membership).exists():
            raise Http404("No such campaign")
    return campaign


def reviewer_memberships(*, organization: Organization) -> QuerySet[Membership]:
    """Members who can be assigned review items, for reviewer pickers."""
    return (
        Membership.objects.filter(organization=organization, role__in=REVIEWER_ROLES, user__is_active=True)
        .select_related("user")
        .order_by("user__email")
    )


def membership_by_email(*, organization: Organization, email: str) -> Membership | None:
    return (
        Membership.objects.filter(organization=organization, user__email=email.strip().lower())
        .select_related("user")
        .first()
    )


# ---------------------------------------------------------------------------------------------
# Scope


def applications_in_scope(*, organization: Organization, scope: dict) -> QuerySet[Application]:
    """Applications a scope selects: by name, or by category, sanctioned status and minimum user count."""
    apps = Application.objects.filter(organization=organization)
    names = [n.strip().lower() for n in scope.get("applications") or [] if n.strip()]
    if names:
        apps = apps.annotate(lname=Lower("name")).filter(lname__in=names)
    if scope.get("categories"):
        apps = apps.filter(category__in=scope["categories"])
    if scope.get("sanctioned_only"):
        apps = apps.filter(sanctioned=True)
    if scope.get("min_users"):
        # "Users" of an application are the distinct identities currently holding access to it.
        apps = apps.annotate(
            user_count=Count("entitlements__identity", filter=Q(entitlements__present=True), distinct=True)
        ).filter(user_count__gte=scope["min_users"])
    return apps


def scope_selects_applications(scope: dict) -> bool:
    return bool(scope.get("applications") or scope.get("categories") or scope.get("sanctioned_only")
                or scope.get("min_users"))


def scope_identity_kinds(scope: dict) -> list[str] | None:
    """Identity kinds a scope allows (kinds filter intersected with the preset); None means any kind."""
    kinds = set(scope.get("identity_kinds") or [])
    preset = scope.get("preset")
    if preset:
        preset_kinds = set(PRESETS[preset])
        kinds = kinds & preset_kinds if kinds else preset_kinds
        if not kinds:
            return []
    return sorted(kinds) if kinds else None


def entitlements_in_scope(
    *, organization: Organization, scope: dict, application_ids: list[int] | None = None
) -> QuerySet[Entitlement]:
    """Present grants a scope selects. The snapshot SQL in launch applies exactly these conditions."""
    qs = Entitlement.objects.filter(organization=organization, present=True)
    if application_ids is not None:
        qs = qs.filter(application_id__in=application_ids)
    elif scope_selects_applications(scope):
        qs = qs.filter(application_id__in=list(applications_in_scope(organization=organization, scope=scope)
                                                .values_list("id", flat=True)))
    if scope.get("departments"):
        qs = qs.filter(identity__department__in=scope["departments"])
    kinds = scope_identity_kinds(scope)
    if kinds is not None:
        qs = qs.filter(identity__kind__in=kinds)
    if scope.get("privileged_only"):
        qs = qs.filter(is_privileged=True)
    return qs


def scope_application_ids(*, organization: Organization, scope: dict) -> list[int] | None:
    """Ids of the selected applications, or None when the scope does not filter applications."""
    if not scope_selects_applications(scope):
        return None
    return list(applications_in_scope(organization=organization, scope=scope).values_list("id", flat=True))


@dataclass
class StaleApplication:
    name: str
    last_synced_at: dt.datetime | None

    def as_dict(self) -> dict:
        return {"name": self.name, "last_synced_at": self.last_synced_at.isoformat() if self.last_synced_at else None}


@dataclass
class ScopePreview:
    application_count: int
    identity_count: int
    item_count: int
    applications: list[dict] = field(default_factory=list)  # first few: name, category, sanctioned, items
    stale: list[StaleApplication] = field(default_factory=list)
    more_applications: int = 0


PREVIEW_APPLICATIONS = 25


def stale_applications(
    *, organization: Organization, application_ids: list[int], now: dt.datetime | None = None
) -> list[StaleApplication]:
    """Applications whose data is older than the organization's freshness limit, or never loaded."""
    now = now or timezone.now()
    limit = now - dt.timedelta(days=organization.freshness_days)
    rows = (
        Application.objects.filter(organization=organization, id__in=application_ids)
        .filter(Q(last_synced_at__isnull=True) | Q(last_synced_at__lt=limit))
        .order_by(Lower("name"))
        .values_list("name", "last_synced_at")
    )
    return [StaleApplication(name, synced) for name, synced in rows]


def campaign_scope_preview(*, organization: Organization, scope: dict) -> ScopePreview:
    """What launching a scope now would produce: matching applications, identities and item count."""
    app_ids = scope_application_ids(organization=organization, scope=scope)
    ents = entitlements_in_scope(organization=organization, scope=scope, application_ids=app_ids)
    totals = ents.aggregate(items=Count("id"), identities=Count("identity_id", distinct=True))
    per_app = list(
        ents.values("application_id").annotate(items=Count("id")).order_by("-items", "application_id")
    )
    used_ids = [row["application_id"] for row in per_app]
    names = {
        a.id: a for a in Application.objects.filter(id__in=used_ids[:PREVIEW_APPLICATIONS]).only(
            "id", "name", "category", "sanctioned", "last_synced_at"
        )
    }
    apps = [
        {
            "name": names[row["application_id"]].name,
            "category": names[row["application_id"]].category,
            "sanctioned": names[row["application_id"]].sanctioned,
            "items": row["items"],
        }
        for row in per_app[:PREVIEW_APPLICATIONS]
    ]
    return ScopePreview(
        application_count=len(per_app),
        identity_count=totals["identities"],
        item_count=totals["items"],
        applications=apps,
        stale=stale_applications(organization=organization, application_ids=used_ids),
        more_applications=max(0, len(per_app) - PREVIEW_APPLICATIONS),
    )


def campaign_stale_applications(*, campaign: Campaign) -> list[StaleApplication]:
    """The freshness check of a campaign's scope, as it stands now."""
    organization = campaign.organization
    app_ids = scope_application_ids(organization=organization, scope=campaign.scope)
    used = (
        entitlements_in_scope(organization=organization, scope=campaign.scope, application_ids=app_ids)
        .values_list("application_id", flat=True)
        .distinct()
    )
    return stale_applications(organization=organization, application_ids=list(used))


def scope_choices(*, organization: Organization) -> dict:
    """Values the wizard offers: application names, categories and departments present in the inventory."""
    from entitlements.models import Identity

    return {
        "applications": list(
            Application.objects.filter(organization=organization).order_by(Lower("name")).values_list("name", flat=True)
        ),
        "categories": list(
            Application.objects.filter(organization=organization).exclude(category="")
            .order_by("category").values_list("category", flat=True).distinct()
        ),
        "departments": list(
            Identity.objects.filter(organization=organization).exclude(department="")
            .order_by("department").values_list("department", flat=True).distinct()
        ),
    }


# ---------------------------------------------------------------------------------------------
# Progress


@dataclass
class Progress:
    total: int = 0
    decided: int = 0
    pending: int = 0
    approve: int = 0
    revoke: int = 0
    exception: int = 0
    overdue: int = 0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("total", "decided", "pending", "approve", "revoke", "exception",
                                              "overdue")}

    @property
    def percent(self) -> int:
        return int(self.decided * 100 / self.total) if self.total else 0

    @property
    def width_class(self) -> str:
        return width_class(self.decided, self.total)

    # Bar widths of the decision breakdown chart.
    @property
    def approve_class(self) -> str:
        return width_class(self.approve, self.total)

    @property
    def revoke_class(self) -> str:
        return width_class(self.revoke, self.total)

    @property
    def exception_class(self) -> str:
        return width_class(self.exception, self.total)

    @property
    def pending_class(self) -> str:
        return width_class(self.pending, self.total)


def width_class(part: int, whole: int) -> str:
    """CSS class for a bar of part/whole, in 5% steps (inline styles are not allowed by the CSP)."""
    if not whole:
        return "w-0"
    step = int(round(part * 20 / whole)) * 5
    if part and step == 0:
        step = 5
    return f"w-{min(step, 100)}"


def _is_overdue(campaign: Campaign, today: dt.date | None = None) -> bool:
    today = today or timezone.localdate()
    return campaign.status in (CampaignStatus.ACTIVE,) and campaign.due_date < today


def _progress_from_counts(campaign: Campaign, counts: dict) -> Progress:
    progress = Progress(
        approve=counts.get(Decision.APPROVE, 0),
        revoke=counts.get(Decision.REVOKE, 0),
        exception=counts.get(Decision.EXCEPTION, 0),
        pending=counts.get("", 0),
    )
    progress.decided = progress.approve + progress.revoke + progress.exception
    progress.total = progress.decided + progress.pending
    progress.overdue = progress.pending if _is_overdue(campaign) else 0
    return progress


def _decision_counts(campaign_ids: list) -> dict:
    """{campaign id: {decision: item count}}. Reads the trigger-maintained counters (a few rows per campaign,
    whatever its size); campaigns without counters (SQLite, or no items) are counted from their items."""
    counts: dict = {}
    if not campaign_ids:
        return counts
    for campaign_id, decision, n in CampaignDecisionCount.objects.filter(campaign_id__in=campaign_ids).values_list(
        "campaign_id", "decision", "count"
    ):
        counts.setdefault(campaign_id, {})[decision] = n
    missing = [pk for pk in campaign_ids if pk not in counts]
    if missing:
        rows = (
            ReviewItem.objects.filter(campaign_id__in=missing)
            .order_by()
            .values_list("campaign_id", "decision")
            .annotate(n=Count("id"))
        )
        for campaign_id, decision, n in rows:
            counts.setdefault(campaign_id, {})[decision] = n
    return counts


def campaign_progress(*, campaign: Campaign) -> Progress:
    """Decided / total and the decision breakdown."""
    return _progress_from_counts(campaign, _decision_counts([campaign.pk]).get(campaign.pk, {}))


def campaign_progress_many(*, campaigns: list[Campaign]) -> dict:
    """Progress of several campaigns in at most two queries, for lists."""
    counts = _decision_counts([c.pk for c in campaigns])
    return {campaign.pk: _progress_from_counts(campaign, counts.get(campaign.pk, {})) for campaign in campaigns}


def _progress_rows(qs, key_fields: list[str]) -> list[dict]:
    rows = (
        qs.order_by()
        .values(*key_fields)
        .annotate(
            total=Count("id"),
            approve=Count("id", filter=Q(decision=Decision.APPROVE)),
            revoke=Count("id", filter=Q(decision=Decision.REVOKE)),
            exception=Count("id", filter=Q(decision=Decision.EXCEPTION)),
            signed_off=Count("id", filter=Q(signed_off_at__isnull=False)),
            last_decided_at=Max("decided_at"),
        )
    )
    out = []
    for row in rows:
        row["decided"] = row["approve"] + row["revoke"] + row["exception"]
        row["pending"] = row["total"] - row["decided"]
        row["percent"] = int(row["decided"] * 100 / row["total"]) if row["total"] else 0
        row["width_class"] = width_class(row["decided"], row["total"])
        out.append(row)
    return out


def campaign_progress_by_application(*, campaign: Campaign) -> list[dict]:
    rows = _progress_rows(ReviewItem.objects.filter(campaign=campaign), ["application_name"])
    return sorted(rows, key=lambda r: r["application_name"].lower())


def campaign_progress_by_reviewer(*, campaign: Campaign) -> list[dict]:
    """Per reviewer: assigned, decided, pending, signed off, and when they last decided (reviewer activity)."""
    rows = _progress_rows(ReviewItem.objects.filter(campaign=campaign), ["reviewer_id", "guest_id", "reviewer_email"])
    for row in rows:
        row["has_signed_off"] = row["total"] > 0 and row["signed_off"] == row["total"]
        row["reviewer_kind"] = reviewer_kind(row["reviewer_id"], row["guest_id"])
    # Unassigned items first (they need an admin), then reviewers by e-mail.
    return sorted(rows, key=lambda r: (r["reviewer_kind"] != "", r["reviewer_email"]))


def reviewer_kind(reviewer_id, guest_id) -> str:
    """"member", "guest", or "" for an unassigned item."""
    return "member" if reviewer_id is not None else "guest" if guest_id is not None else ""


def campaign_recent_decisions(*, campaign: Campaign, limit: int = 10) -> list[DecisionEvent]:
    return list(
        DecisionEvent.objects.filter(campaign=campaign)
        .order_by("-id")
        .only("id", "decision", "actor_email", "actor_role", "kind", "created_at", "item_id", "reason")[:limit]
    )


def campaign_reviewers(*, campaign: Campaign) -> list[Membership]:
    """Members currently holding items in the campaign (reassignment sources)."""
    ids = ReviewItem.objects.filter(campaign=campaign, reviewer__isnull=False).values("reviewer_id").distinct()
    return list(Membership.objects.filter(id__in=ids).select_related("user").order_by("user__email"))


# ---------------------------------------------------------------------------------------------
# Lists


def campaigns_visible(*, membership: Membership) -> QuerySet[Campaign]:
    qs = Campaign.objects.filter(organization_id=membership.organization_id)
    if not has_perm(membership.role, Perm.VIEW_ALL_CAMPAIGNS):
        qs = qs.filter(id__in=ReviewItem.objects.filter(reviewer=membership).values("campaign_id"))
    return qs


def tab_statuses(tab: str) -> list[str]:
    for key, _label, statuses in STATUS_TABS:
        if key == tab:
            return [str(s) for s in statuses]
    raise ValueError(tab)


def campaign_list(*, membership: Membership, tab: str | None = None) -> QuerySet[Campaign]:
    qs = campaigns_visible(membership=membership).select_related("created_by")
    if tab:
        qs = qs.filter(status__in=tab_statuses(tab))
    return qs.order_by("-created_at", "-id")


def campaign_tab_counts(*, membership: Membership) -> dict[str, int]:
    by_status = dict(
        campaigns_visible(membership=membership).order_by().values_list("status").annotate(n=Count("id"))
    )
    return {key: sum(by_status.get(str(s), 0) for s in statuses) for key, _label, statuses in STATUS_TABS}


def entitlement_id_bounds(*, organization: Organization) -> tuple[int | None, int | None]:
    row = Entitlement.objects.filter(organization=organization, present=True).aggregate(lo=Min("id"), hi=Max("id"))
    return row["lo"], row["hi"]


def campaign_guests(*, campaign: Campaign) -> list:
    """The campaign's guest reviewers with their item counts, in one query."""
    from django.db.models import Count, Q

    from .models import GuestReviewer

    return list(
        GuestReviewer.objects.filter(campaign=campaign)
        .annotate(
            total=Count("assigned_items"),
            decided=Count("assigned_items", filter=~Q(assigned_items__decision="")),
            signed_off=Count("assigned_items", filter=Q(assigned_items__signed_off_at__isnull=False)),
        )
        .order_by("email")
    )


def campaign_guest_access(*, campaign: Campaign, guest_id: int):
    """A guest reviewer of this campaign, or 404 (the campaign was already access-checked)."""
    from django.http import Http404

    from .models import GuestReviewer

    guest = GuestReviewer.objects.filter(campaign=campaign, pk=guest_id).select_related("campaign__organization").first()
    if guest is None:
        raise Http404("No such guest reviewer in this campaign.")
    return guest


@dataclass
class ReviewerLoad:
    email: str
    items: int
    fallback: int  # of which assigned to the fallback reviewer (no owner, manager or named reviewer)


@dataclass
class ReviewerPreview:
    reviewers: list[ReviewerLoad]
    fallback_items: int
    unassigned: int
    fallback_email: str


def campaign_reviewer_preview(
    *, organization: Organization, scope: dict, strategy: str, reviewers: dict, fallback: Membership
) -> ReviewerPreview:
    """How many items each reviewer would get if the campaign launched now, and how many fall back: the
    snapshot's own SELECT (launch.snapshot_sql, the same reviewer resolution) grouped by reviewer, without
    writing anything."""
    from .launch import snapshot_sql

    lo, hi = entitlement_id_bounds(organization=organization)
    if lo is None:
        return ReviewerPreview(reviewers=[], fallback_items=0, unassigned=0, fallback_email=fallback.user.email)
    draft = Campaign(
        organization=organization, scope=scope, reviewer_strategy=strategy, reviewers=reviewers,
        fallback_reviewer=fallback,
    )
    sql = snapshot_sql(campaign=draft, now=timezone.now(), lo=lo - 1, hi=hi)
    select = sql.text[sql.text.index("SELECT"):]
    text = (
        "SELECT reviewer_email, COUNT(*), SUM(CASE WHEN assignment_note <> '' THEN 1 ELSE 0 END) "
        f"FROM ({select}) preview GROUP BY reviewer_email ORDER BY COUNT(*) DESC, reviewer_email"
    )
    with connection.cursor() as cursor:
        cursor.execute(text, sql.params)
        rows = cursor.fetchall()
    loads = [ReviewerLoad(email=email, items=count, fallback=int(fb or 0)) for email, count, fb in rows if email]
    return ReviewerPreview(
        reviewers=loads,
        fallback_items=sum(r.fallback for r in loads),
        unassigned=sum(count for email, count, _fb in rows if not email),
        fallback_email=fallback.user.email,
    )
