"""Standing delegation: a member names a delegate for a period. Assignments to them in that period go to the
delegate (at launch), and, when they ask for it, their open items move at once. Chains are followed to the end."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from thalian.audit import audit_record
from thalian.models import Membership

from .decisions import actor_email
from .guests import guest_link_expiry
from .models import Campaign, CampaignStatus, Delegation, GuestReviewer, ReassignKind, ReviewItem
from .reassignment import MoveResult, ReassignError, reassign_target, review_items_move
from .selectors import REVIEWER_ROLES, membership_by_email

MAX_CHAIN = 20


def _org_delegations(organization_id: int) -> list[Delegation]:
    return list(Delegation.objects.filter(organization_id=organization_id).select_related("delegate__user",
                                                                                          "member__user"))


def delegate_final(*, member: Membership, day: dt.date, extra: Delegation | None = None,
                   rows: list[Delegation] | None = None) -> Membership:
    """Follow the member's delegations covering ``day`` to the last person; ReassignError on a loop."""
    rows = _org_delegations(member.organization_id) if rows is None else list(rows)
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


@dataclass
class DelegationRow:
    delegation: Delegation
    final_delegate: str  # the end of the chain on the delegation's first day
    state: str  # "in_force", "upcoming" or "ended"


def delegations_of(*, member: Membership, today: dt.date | None = None) -> tuple[list[DelegationRow], list[DelegationRow]]:
    """The member's delegations and those naming them as delegate, each with the end of its chain, in one query."""
    today = today or timezone.localdate()
    rows = _org_delegations(member.organization_id)

    def row(d: Delegation) -> DelegationRow:
        try:
            final = delegate_final(member=d.member, day=max(d.starts_on, today), rows=rows).user.email
        except ReassignError:
            final = d.delegate.user.email
        state = "upcoming" if d.starts_on > today else "ended" if d.ends_on and d.ends_on < today else "in_force"
        return DelegationRow(delegation=d, final_delegate=final, state=state)

    def order(d: Delegation):
        return (d.starts_on, d.pk)

    mine = [row(d) for d in sorted((d for d in rows if d.member_id == member.pk), key=order)]
    to_me = [row(d) for d in sorted((d for d in rows if d.delegate_id == member.pk), key=order)]
    return mine, to_me


def _delegate_target(*, organization, email: str) -> Membership:
    """``reassign_target``, its refusal naming the ``delegate`` field."""
    try:
        return reassign_target(organization=organization, email=email)
    except ReassignError as exc:
        raise ReassignError("delegate: " + exc.message.removeprefix("to: "), field="delegate") from exc


@transaction.atomic
def delegation_create(*, member: Membership, delegate: str, starts_on: dt.date, ends_on: dt.date | None,
                      move_open_items: bool, request=None) -> Delegation:
    """Validate and record a delegation; with ``move_open_items`` the member's open items in active campaigns
    move to the end of the chain now (items about the delegate themselves stay)."""
    if ends_on is not None and ends_on < starts_on:
        raise ReassignError("ends_on: the delegation ends before it starts.", field="ends_on")
    target = _delegate_target(organization=member.organization, email=delegate)
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
    _delegate_target(organization=member.organization, email=final.user.email)  # the last person may review
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



# Guests delegate through their link ------------------------------------------------------------------------


@transaction.atomic
def guest_delegate(*, guest: GuestReviewer, to: str, reason: str = "", request=None) -> MoveResult:
    """A guest reviewer hands their open items of the campaign to someone else: a member who may review (or the
    end of that member's chain of standing delegations), or another person by e-mail, who becomes a guest
    reviewer of this campaign and is sent a link. Not to themselves, not back along a chain of guests who
    delegated to each other; items about the new reviewer stay with the guest."""
    campaign = Campaign.objects.select_for_update().get(pk=guest.campaign_id)
    if campaign.status != CampaignStatus.ACTIVE:
        raise ReassignError("Items can be handed over only while the review is active.", field="status")
    email = (to or "").strip().lower()
    if not email or "@" not in email:
        raise ReassignError("to: give the e-mail address of the person who should review in your place.")
    if email == guest.email:
        raise ReassignError("to: you cannot delegate to yourself.")
    organization = campaign.organization
    member = membership_by_email(organization=organization, email=email)
    target: Membership | GuestReviewer
    if member is not None:
        target = reassign_target(organization=organization, email=email)
        target = delegate_final(member=target, day=timezone.localdate())
        reassign_target(organization=organization, email=target.user.email)  # the last person may review
    else:
        if not organization.allows_guest_reviewers:
            raise ReassignError(f"to: {email} is not a member of this organization, and guest reviewers are off.")
        target, _ = GuestReviewer.objects.get_or_create(
            organization_id=campaign.organization_id, campaign=campaign, email=email,
            defaults={"expires_at": guest_link_expiry(campaign)},
        )
        seen, step = {guest.email}, target
        while step is not None and step.delegate_email:
            if step.delegate_email in seen or step.delegate_email == guest.email:
                raise ReassignError(f"to: {email} handed their review to you; delegating back would make a loop.")
            seen.add(step.delegate_email)
            step = GuestReviewer.objects.filter(campaign=campaign, email=step.delegate_email).first()
        if target.is_revoked:
            raise ReassignError(f"to: the review link of {email} was revoked by an administrator.")
        target.campaign = campaign
    mine = ReviewItem.objects.filter(campaign=campaign, guest=guest, decision="")
    if not mine.exists():
        raise ReassignError("You have no undecided items left to hand over.", field="items")
    result = review_items_move(
        campaign=campaign, items=mine, to_reviewer=target, by_email=guest.email,
        reason=reason.strip() or f"Delegated by {guest.email}", kind=ReassignKind.DELEGATION, request=request,
    )
    if result.moved == 0:
        raise ReassignError(f"to: every open item of yours is about {email}, who cannot review their own access.")
    GuestReviewer.objects.filter(pk=guest.pk).update(delegate_email=actor_email(target).lower())
    audit_record(action="guest_delegated", organization_id=campaign.organization_id, request=request,
                 target=campaign, actor_email=guest.email,
                 details={"guest": guest.email, "delegate": actor_email(target).lower(),
                          "delegate_kind": "guest" if isinstance(target, GuestReviewer) else "member",
                          "moved_items": result.moved, "skipped_self_review": result.skipped_self_review,
                          "reason": reason.strip()})
    return result
