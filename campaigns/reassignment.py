"""Moving review items to another reviewer. Every way of doing it (a reviewer handing over items, an admin
moving one reviewer's items, an escalation after the due date) goes through ``review_items_move``, which skips
items whose identity is the new reviewer, records every hop in the item's history and audits the move."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce, NullIf
from django.utils import timezone

from thalian.audit import audit_record
from thalian.events import ItemsDelegated, ItemsReassigned, publish
from thalian.models import Membership, User
from thalian.permissions import Perm, has_perm
from thalian.tenancy import assert_same_organization

from .decisions import actor_email, assigned_q
from .models import Campaign, CampaignStatus, GuestReviewer, ItemReassignment, ReassignKind, ReviewItem
from .selectors import REVIEWER_ROLES, membership_by_email

BATCH = 2000


class ReassignError(ValueError):
    """A reassignment that cannot be made; the message says why."""

    def __init__(self, message: str, *, field: str = "to"):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass
class MoveResult:
    moved: int
    skipped_self_review: int


def review_items_move(
    *,
    campaign: Campaign,
    items: QuerySet,
    to_reviewer: Membership | GuestReviewer,
    by_email: str,
    by_user: User | None = None,
    reason: str = "",
    kind: str = ReassignKind.REASSIGN,
    request=None,
) -> MoveResult:
    """Move ``items`` of the campaign that are not signed off to ``to_reviewer`` (a member, or a guest reviewer
    of the campaign), inside the caller's transaction. Items whose identity is the new reviewer stay where
    they are."""
    assert_same_organization(campaign, to_reviewer)
    to_guest = to_reviewer if isinstance(to_reviewer, GuestReviewer) else None
    to_email = actor_email(to_reviewer).lower()
    open_items = items.filter(campaign_id=campaign.pk, signed_off_at__isnull=True)
    skipped = open_items.filter(identity_email__iexact=to_email).count()
    movable = open_items.exclude(identity_email__iexact=to_email).exclude(assigned_q(to_reviewer))
    if campaign.is_multi_stage:  # nobody decides an item in two stages: never hand it back to an earlier decider
        movable = movable.exclude(stage_path__icontains=f" by {to_email} (")
    found = list(movable.values_list("pk", "reviewer_email", "delegated_from_email"))
    rows = [(pk, from_email) for pk, from_email, _ in found]
    # Whose review each item is after a delegation move: the first delegator of a chain, else its holder.
    origins = Counter(delegated or from_email for _, from_email, delegated in found)
    if not rows:
        return MoveResult(moved=0, skipped_self_review=skipped)
    now = timezone.now()
    verb = {"escalation": "Escalated", "delegation": "Delegated"}.get(kind, "Reassigned")
    by_source: dict[str, list[int]] = {}
    for pk, from_email in rows:
        by_source.setdefault(from_email, []).append(pk)
    for from_email, ids in by_source.items():
        note = (f"{verb} from {from_email or 'unassigned'} to {to_email} by {by_email} on {now.date().isoformat()}"
                + (f": {reason}" if reason else ""))
        # A delegate reviews on behalf of the first delegator of a chain of delegation moves; any other move
        # ends that.
        delegated_from = (
            Coalesce(NullIf(F("delegated_from_email"), Value("")), Value(from_email))
            if kind == ReassignKind.DELEGATION else Value("")
        )
        for start in range(0, len(ids), BATCH):
            ReviewItem.objects.filter(pk__in=ids[start:start + BATCH]).update(
                reviewer=None if to_guest else to_reviewer, guest=to_guest, reviewer_email=to_email,
                assignment_note=note[:300], delegated_from_email=delegated_from,
            )
    ItemReassignment.objects.bulk_create(
        [
            ItemReassignment(organization_id=campaign.organization_id, campaign_id=campaign.pk, item_id=pk,
                             from_email=from_email, to_email=to_email, by_email=by_email, reason=reason, kind=kind,
                             created_at=now)
            for pk, from_email in rows
        ],
        batch_size=BATCH,
    )
    if kind == ReassignKind.DELEGATION:  # the delegate hears whose review they do
        move_id = uuid.uuid4().hex
        publish(*(
            ItemsDelegated(organization_id=campaign.organization_id, campaign_id=str(campaign.pk),
                           reviewer_id=0 if to_guest else to_reviewer.pk, guest_id=to_guest.pk if to_guest else 0,
                           delegator_email=origin or "unassigned", count=n, move_id=f"{move_id}-{i}")
            for i, (origin, n) in enumerate(sorted(origins.items()))
        ))
    elif kind != ReassignKind.ESCALATION:  # an escalation has its own notification
        publish(ItemsReassigned(organization_id=campaign.organization_id, campaign_id=str(campaign.pk),
                                reviewer_id=to_reviewer.pk, count=len(rows)))
    sources = sorted({e or "unassigned" for _, e in rows})
    audit_record(
        action="campaign_items_reassigned",
        organization_id=campaign.organization_id,
        actor=by_user,
        request=request,
        target=campaign,
        system=by_user is None and by_email == "system",
        actor_email="" if by_user is not None or by_email == "system" else by_email,  # a guest handing over
        details={"from": sources[0] if len(sources) == 1 else sources, "to": to_email, "count": len(rows),
                 "skipped_self_review": skipped, "reason": reason, "kind": kind},
    )
    return MoveResult(moved=len(rows), skipped_self_review=skipped)


def reassign_target(*, organization, email: str) -> Membership:
    """The member an item may be handed to, or ReassignError saying why not."""
    email = (email or "").strip().lower()
    if not email:
        raise ReassignError("to: give the e-mail of the member who should review the items.")
    target = membership_by_email(organization=organization, email=email)
    if target is None:
        raise ReassignError(f"to: {email} is not a member of this organization, so they may not review.")
    if target.role not in REVIEWER_ROLES:
        raise ReassignError(
            f"to: {email} has the role {target.get_role_display()}, which may not review items."
        )
    return target


@transaction.atomic
def review_items_reassign(
    *, campaign: Campaign, actor: Membership, items: QuerySet, to: str, reason: str, single: bool = False,
    request=None,
) -> MoveResult:
    """A reviewer hands over items assigned to them, or an admin moves anyone's items, with a reason.
    ``single``: one item was asked for, so an item whose identity is the target is refused, not skipped."""
    assert_same_organization(campaign, actor)
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status != CampaignStatus.ACTIVE:
        raise ReassignError("Items can be reassigned only while the campaign is active.", field="status")
    reason = (reason or "").strip()
    if not reason:
        raise ReassignError("reason: say why the items are handed to someone else.", field="reason")
    if not has_perm(actor.role, Perm.MANAGE_CAMPAIGNS):
        if not has_perm(actor.role, Perm.DECIDE_ASSIGNED):
            raise PermissionDenied(f"Your role ({actor.role}) does not allow reassigning review items.")
        if items.exclude(assigned_q(actor)).exists():
            raise PermissionDenied("You can reassign only items assigned to you.")
    target = reassign_target(organization=campaign.organization, email=to)
    if single:
        item = items.first()
        if item is not None and item.identity_email.lower() == target.user.email.lower():
            raise ReassignError(
                f"to: {target.user.email} is the identity under review in this item and cannot review their "
                "own access."
            )
        if item is not None and item.signed_off_at is not None:
            raise ReassignError("This item's decision was signed off; it can no longer be reassigned.",
                                field="item")
        if item is not None and f" by {target.user.email.lower()} (" in (item.stage_path or ""):
            raise ReassignError(
                f"to: {target.user.email} decided this item in an earlier stage; nobody decides an item in two "
                "stages."
            )
        if item is not None and item.reviewer_id == target.pk:
            raise ReassignError(f"to: the item is already assigned to {target.user.email}.")
    result = review_items_move(
        campaign=campaign, items=items, to_reviewer=target, by_email=actor_email(actor), by_user=actor.user,
        reason=reason, request=request,
    )
    if result.moved == 0 and not single:
        raise ReassignError("None of these items can be moved to " + target.user.email + (
            f": {result.skipped_self_review} are their own access." if result.skipped_self_review
            else ": they are signed off or already theirs."), field="items")
    return result

