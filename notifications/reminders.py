"""Reminders, overdue notices and escalation: the per-campaign policy, the cadence run, escalation to a
reviewer's manager and manual reminders."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, GuestReviewer, ReassignKind
from campaigns.reassignment import review_items_move
from campaigns.selectors import REVIEWER_ROLES
from thalian.audit import audit_record
from thalian.models import Membership
from thalian.tenancy import assert_same_organization

from . import selectors
from .hooks import _default_recipients
from .models import CampaignNotificationPolicy, Event, NotificationSettings
from .services import NotificationError, Recipient, notifications_create, reviewer_email


@dataclass
class Policy:
    reminder_every_days: int
    reminder_days_before_due: int
    escalate_after_days: int
    escalation_reassign: bool


def effective_policy(*, campaign: Campaign, config: NotificationSettings | None = None) -> Policy:
    config = config or selectors.notification_settings_for(organization_id=campaign.organization_id)
    override = CampaignNotificationPolicy.objects.filter(campaign=campaign).first()

    def pick(name):
        value = getattr(override, name, None) if override else None
        return getattr(config, name) if value is None else value

    return Policy(
        reminder_every_days=pick("reminder_every_days"),
        reminder_days_before_due=pick("reminder_days_before_due"),
        escalate_after_days=pick("escalate_after_days"),
        escalation_reassign=pick("escalation_reassign"),
    )


def campaign_cadence_run(*, campaign: Campaign, now: dt.datetime | None = None) -> dict[str, int]:
    """Everything time-driven for one active campaign at `now`. Safe to run any number of times: each notice
    has a deterministic period in its dedupe key."""
    now = now or timezone.now()
    sent = {"reminders": 0, "overdue": 0, "escalated": 0}
    if campaign.status != CampaignStatus.ACTIVE:
        return sent
    config = selectors.notification_settings_for(organization_id=campaign.organization_id)
    policy = effective_policy(campaign=campaign, config=config)
    today = timezone.localdate(now)
    pending = {pk: n for pk, n in selectors.pending_counts_by_reviewer(campaign=campaign).items() if n}
    recipients = reviewer_recipients(campaign=campaign, pending=pending)
    if not recipients:
        return sent
    org_id = campaign.organization_id
    if today <= campaign.due_date:
        period = None
        before = policy.reminder_days_before_due
        if before and today >= campaign.due_date - dt.timedelta(days=before):
            # The before-due reminder is the last one; periodic reminders stop once its window opens.
            period = f"before-due-{before}"
        elif policy.reminder_every_days and campaign.launched_at:
            elapsed = now - campaign.launched_at
            slot = elapsed // dt.timedelta(days=policy.reminder_every_days)
            if slot >= 1:
                period = f"every-{policy.reminder_every_days}-{slot}"
        if period:
            fan = notifications_create(
                organization_id=org_id,
                event=Event.CAMPAIGN_REMINDER,
                campaign=campaign,
                recipients=recipients,
                period=period,
            )
            sent["reminders"] = len(fan.created)
        return sent
    fan = notifications_create(
        organization_id=org_id, event=Event.OVERDUE, campaign=campaign, recipients=recipients
    )
    sent["overdue"] = len(fan.created)
    creator = _default_recipients(
        organization_id=org_id, event=Event.CAMPAIGN_OVERDUE, campaign=campaign, pending_counts=pending
    )
    creators = selectors.memberships_by_id(organization_id=org_id, ids=creator)
    total_pending = sum(r.pending for r in recipients)
    fan = notifications_create(
        organization_id=org_id,
        event=Event.CAMPAIGN_OVERDUE,
        campaign=campaign,
        recipients=[Recipient(m, pending=total_pending) for m in creators.values()],
        to_org_channels=True,
    )
    sent["overdue"] += len(fan.created)
    days_overdue = (today - campaign.due_date).days
    if policy.escalate_after_days and days_overdue >= policy.escalate_after_days:
        for recipient in recipients:
            if campaign_escalate_reviewer(
                campaign=campaign,
                reviewer=recipient.guest or recipient.membership,
                pending=recipient.pending,
                policy=policy,
                config=config,
            ):
                sent["escalated"] += 1
    return sent


def reviewer_recipients(
    *, campaign: Campaign, pending: dict[int, int], guests: bool = True, application: str | None = None
) -> list[Recipient]:
    """The members with ``pending`` items (membership id -> count) and, with ``guests``, every guest reviewer of
    the campaign whose link is not revoked and who has undecided items (of ``application`` when given)."""
    members = selectors.memberships_by_id(organization_id=campaign.organization_id, ids=pending)
    recipients = [Recipient(m, pending=pending[m.pk]) for m in members.values()]
    if guests:
        guest_pending = selectors.pending_counts_by_guest(campaign=campaign, application=application)
        recipients += [
            Recipient(guest=g, pending=guest_pending[g.pk])
            for g in selectors.guests_by_id(campaign=campaign, ids=guest_pending).values()
        ]
    return recipients


def escalation_target(
    *, campaign: Campaign, reviewer: Membership | GuestReviewer, config: NotificationSettings
) -> Membership | None:
    """The reviewer's manager (from the inventory, if a member), else the campaign's fallback reviewer, else the
    organization's. A guest's manager is found the same way, by the guest's e-mail."""
    own_pk = None if isinstance(reviewer, GuestReviewer) else reviewer.pk
    candidates = [
        selectors.manager_membership(organization_id=campaign.organization_id, email=reviewer_email(reviewer)),
        campaign.fallback_reviewer if campaign.fallback_reviewer_id else None,
        config.fallback_reviewer if config.fallback_reviewer_id else None,
    ]
    for candidate in candidates:
        if candidate is not None and candidate.pk != own_pk and candidate.user.is_active:
            return candidate
    return None


def campaign_escalate_reviewer(
    *, campaign: Campaign, reviewer: Membership | GuestReviewer, pending: int, policy: Policy,
    config: NotificationSettings,
) -> bool:
    target = escalation_target(campaign=campaign, reviewer=reviewer, config=config)
    if target is None:
        return False
    reassigned = False
    if policy.escalation_reassign and target.role in REVIEWER_ROLES:
        reassigned = (
            pending_items_reassign_for_escalation(
                campaign=campaign, from_reviewer=reviewer, to_reviewer=target
            )
            > 0
        )
    fan = notifications_create(
        organization_id=campaign.organization_id,
        event=Event.ESCALATED,
        campaign=campaign,
        recipients=[
            Recipient(
                target, pending=pending, details={"reviewer": reviewer_email(reviewer), "reassigned": reassigned}
            )
        ],
        # One escalation per overdue reviewer and campaign, whoever it goes to.
        period=f"from-{'g' if isinstance(reviewer, GuestReviewer) else 'm'}{reviewer.pk}",
    )
    if fan.created:
        audit_record(
            action="campaign.escalated",
            organization_id=campaign.organization_id,
            target=campaign,
            system=True,
            details={
                "reviewer": reviewer_email(reviewer),
                **({"reviewer_kind": "guest"} if isinstance(reviewer, GuestReviewer) else {}),
                "escalated_to": target.user.email,
                "pending": pending,
                "reassigned": reassigned,
            },
        )
    return bool(fan.created)


def pending_items_reassign_for_escalation(
    *, campaign: Campaign, from_reviewer: Membership | GuestReviewer, to_reviewer: Membership
) -> int:
    """Move only the undecided items of an overdue reviewer, member or guest (decided ones stay with who decided
    them). Items about the new reviewer themself stay put: nobody reviews their own access."""
    assert_same_organization(campaign, from_reviewer, to_reviewer)
    return review_items_move(
        campaign=campaign,
        items=selectors.pending_items_of(campaign=campaign, reviewer=from_reviewer),
        to_reviewer=to_reviewer,
        by_email="system",
        reason="escalation after the due date",
        kind=ReassignKind.ESCALATION,
    ).moved


@dataclass
class ReminderResult:
    reminded: list[str]
    already_reminded: list[str]


def manual_reminder_create(
    *, campaign: Campaign, event: str, recipients: list[Recipient], now: dt.datetime | None = None
) -> tuple[list[str], list[str]]:
    """A reminder sent by hand: at most one per recipient, campaign and day. Returns (reminded, already
    reminded today) as e-mail addresses."""
    day = timezone.localdate(now or timezone.now()).isoformat()
    fan = notifications_create(
        organization_id=campaign.organization_id, event=event, campaign=campaign, recipients=recipients,
        period=f"manual-{day}", resend_queued=True,
    )
    reminded = sorted({n.recipient for n in fan.created if n.recipient_membership_id or n.recipient_guest_id})
    return reminded, sorted(set(fan.duplicates) - set(reminded))


def reminder_target(*, campaign: Campaign, value: str) -> Membership | GuestReviewer | None:
    """The reviewer a Send reminder button names: a member (e-mail or membership id) or a guest reviewer of the
    campaign (e-mail, or ``guest:<id>``). None for an empty value; NotificationError for an unknown one."""
    value = (value or "").strip()
    if not value:
        return None
    if value.startswith("guest:") and value[6:].isdigit():
        guest = GuestReviewer.objects.filter(campaign=campaign, pk=int(value[6:])).first()
    else:
        guest = GuestReviewer.objects.filter(campaign=campaign, email=value.lower()).first() if "@" in value else None
    if guest is not None:
        guest.campaign = campaign
        return guest
    found = member_by_reference(organization_id=campaign.organization_id, value=value)
    if found is None:
        raise NotificationError(f"No member {value!r} in this organization, nor a guest reviewer of this campaign.")
    return found


def member_by_reference(*, organization_id: int, value: str) -> Membership | None:
    """The member a form names by e-mail or membership id."""
    members = Membership.objects.select_related("user").filter(organization_id=organization_id)
    if "@" in value:
        return members.filter(user__email__iexact=value).first()
    return members.filter(pk=int(value)).first() if value.isdigit() else None


def reminder_send(
    *,
    campaign: Campaign,
    actor: Membership,
    reviewer: Membership | GuestReviewer | None = None,
    application: str | None = None,
    now: dt.datetime | None = None,
    request=None,
) -> ReminderResult:
    """Manual reminder from a progress table row: one reviewer (a member or a guest, who gets their personal
    link), or every reviewer with pending items of one application. At most one manual reminder per reviewer,
    campaign and day."""
    assert_same_organization(campaign, actor, reviewer)
    if campaign.status != CampaignStatus.ACTIVE:
        raise NotificationError(
            f"Reminders can only be sent for active campaigns; this one is {campaign.status}."
        )
    if (reviewer is None) == (not application):
        raise NotificationError("Give either a reviewer or an application, not both and not neither.")
    if isinstance(reviewer, GuestReviewer):
        if reviewer.is_revoked:
            raise NotificationError(f"The link of {reviewer.email} is revoked; send a new link instead.")
        pending = selectors.pending_counts_by_guest(campaign=campaign)
        if not pending.get(reviewer.pk):
            raise NotificationError(f"{reviewer.email} has no pending items in this campaign.")
        recipients = [Recipient(guest=reviewer, pending=pending[reviewer.pk])]
    elif reviewer is not None:
        pending = selectors.pending_counts_by_reviewer(campaign=campaign)
        if not pending.get(reviewer.pk):
            raise NotificationError(f"{reviewer.user.email} has no pending items in this campaign.")
        recipients = reviewer_recipients(campaign=campaign, pending={reviewer.pk: pending[reviewer.pk]},
                                         guests=False)
    else:
        pending = selectors.pending_counts_by_reviewer(campaign=campaign, application=application)
        recipients = reviewer_recipients(campaign=campaign, pending=pending, application=application)
        if not recipients:
            raise NotificationError(
                f"No reviewer has pending items for application {application!r} in this campaign."
            )
    reminded, already = manual_reminder_create(
        campaign=campaign, event=Event.REMINDER, recipients=recipients, now=now,
    )
    audit_record(
        action="campaign.reminder_sent",
        organization_id=campaign.organization_id,
        actor=actor.user,
        request=request,
        target=campaign,
        details={"reviewers": reminded, "already_reminded_today": already, "application": application or ""},
    )
    return ReminderResult(reminded=reminded, already_reminded=already)
