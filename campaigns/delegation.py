"""Standing delegation: a member names a delegate for a period. Assignments to them in that period go to the
delegate (at launch), and, when they ask for it, their open items move at once. Chains are followed to the end."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from thalian.audit import audit_record
from thalian.models import Membership

from .models import Campaign, CampaignStatus, Delegation, ReassignKind, ReviewItem
from .reassignment import ReassignError, reassign_target, review_items_move
from .selectors import REVIEWER_ROLES

MAX_CHAIN = 20


def delegate_final(*, member: Membership, day: dt.date, extra: Delegation | None = None) -> Membership:
    """Follow the member's delegations covering ``day`` to the last person; ReassignError on a loop."""
    rows = list(Delegation.objects.filter(organization_id=member.organization_id).select_related("delegate__user"))
    if extra is not None:
        rows.append(extra)
    seen = [member.pk]
    current = member
    for _ in range(MAX_CHAIN):
        step = next((d for d in rows if d.member_id == current.pk and d.covers(day)), None)
        if step is None:
            return current
        if step.delegate_id in seen:
            raise ReassignError(f"delegate: this makes a loop ({' → '.join(_emails(rows, seen + [step.delegate_id]))}).",
                                field="delegate")
        seen.append(step.delegate_id)
        current = step.delegate
    raise ReassignError("delegate: the chain of delegates is too long.", field="delegate")


def _emails(rows, ids) -> list[str]:
    by_id = {d.delegate_id: d.delegate.user.email for d in rows}
    by_id.update({d.member_id: d.member.user.email for d in rows if d.member_id not in by_id})
    return [by_id.get(i, str(i)) for i in ids]


@transaction.atomic
def delegation_create(*, member: Membership, delegate: str, starts_on: dt.date, ends_on: dt.date | None,
                      move_open_items: bool, request=None) -> Delegation:
    """Validate and record a delegation; with ``move_open_items`` the member's open items in active campaigns
    move to the end of the chain now (items about the delegate themselves stay)."""
    if ends_on is not None and ends_on < starts_on:
        raise ReassignError("ends_on: the delegation ends before it starts.", field="ends_on")
    target = reassign_target(organization=member.organization, email=delegate)
    if target.pk == member.pk:
        raise ReassignError("delegate: you cannot delegate to yourself.", field="delegate")
    overlapping = Delegation.objects.filter(member=member).exclude(ends_on__lt=starts_on)
    if ends_on is not None:
        overlapping = overlapping.exclude(starts_on__gt=ends_on)
    if overlapping.exists():
        raise ReassignError("starts_on: you already have a delegation in that period; delete it first.",
                            field="starts_on")
    row = Delegation(organization_id=member.organization_id, member=member, delegate=target, starts_on=starts_on,
                     ends_on=ends_on, move_open_items=move_open_items)
    final = delegate_final(member=member, day=starts_on, extra=row)
    reassign_target(organization=member.organization, email=final.user.email)  # the last person may review
    row.save()
    moved = 0
    if move_open_items and row.covers(timezone.localdate()):
        for campaign in Campaign.objects.filter(status=CampaignStatus.ACTIVE,
                                                pk__in=ReviewItem.objects.filter(reviewer=member).values("campaign_id")):
            moved += review_items_move(
                campaign=campaign, items=ReviewItem.objects.filter(campaign=campaign, reviewer=member),
                to_reviewer=final, by_email=member.user.email, by_user=member.user,
                reason=f"Standing delegation to {target.user.email}", kind=ReassignKind.DELEGATION, request=request,
            ).moved
    audit_record(action="delegation_created", organization_id=member.organization_id, actor=member.user,
                 request=request, target_type="delegation", target_id=str(row.pk),
                 details={"delegate": target.user.email, "final": final.user.email,
                          "starts_on": starts_on.isoformat(), "ends_on": ends_on.isoformat() if ends_on else None,
                          "moved_items": moved})
    row.moved_items = moved
    return row


@transaction.atomic
def delegation_delete(*, member: Membership, delegation_id: int, request=None) -> None:
    row = Delegation.objects.filter(member=member, pk=delegation_id).first()
    if row is None:
        from django.http import Http404

        raise Http404("No such delegation of yours.")
    row.delete()
    audit_record(action="delegation_deleted", organization_id=member.organization_id, actor=member.user,
                 request=request, target_type="delegation", target_id=str(delegation_id),
                 details={"delegate": row.delegate.user.email})


def delegations_apply_at_launch(*, campaign: Campaign) -> int:
    """After the snapshot: items assigned to a member who has delegated on the launch day go to the end of
    their chain (one move per delegating member)."""
    today = timezone.localdate()
    members = Membership.objects.filter(
        pk__in=Delegation.objects.filter(starts_on__lte=today).values("member_id")
    ).select_related("user", "organization")
    moved = 0
    for member in members:
        try:
            final = delegate_final(member=member, day=today)
        except ReassignError:
            continue  # a loop made after the fact: the items stay with the member
        if final.pk != member.pk and final.role in REVIEWER_ROLES:
            moved += review_items_move(
                campaign=campaign, items=ReviewItem.objects.filter(campaign=campaign, reviewer=member),
                to_reviewer=final, by_email="system", reason=f"Standing delegation of {member.user.email}",
                kind=ReassignKind.DELEGATION,
            ).moved
    return moved

