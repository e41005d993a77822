"""Notices to remediation owners (removal needed, reminders, escalation) and decision-quality flags to the
campaign's creator. Campaigns are read through their selectors; every notice has a deterministic dedupe key,
so the hooks and the cadence can run any number of times and each notice goes out once."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from campaigns.decision_quality import campaign_decision_quality
from campaigns.models import Campaign, CampaignStatus
from campaigns.remediation import open_removals_by_owner
from thalian.audit import audit_record
from thalian.models import Membership

from . import selectors
from .hooks import _default_recipients
from .models import Event, Notification
from .reminders import ReminderResult, effective_policy, manual_reminder_create
from .services import NotificationError, Recipient, notifications_create

# Revoked access is expected to be gone this many days after the review ended; escalation counts from then.
REMOVAL_DUE_DAYS = 14


def _creator(campaign: Campaign) -> list[Membership]:
    ids = _default_recipients(
        organization_id=campaign.organization_id, event=Event.CAMPAIGN_COMPLETED, campaign=campaign, pending_counts={}
    )
    return list(selectors.memberships_by_id(organization_id=campaign.organization_id, ids=ids).values())


def removal_needed_send(*, campaign: Campaign) -> int:
    """Each remediation owner with revokes still to remove hears about them once per campaign."""
    if campaign.status != CampaignStatus.REMEDIATING:
        return 0
    counts = open_removals_by_owner(campaign=campaign)
    members = selectors.memberships_by_id(organization_id=campaign.organization_id, ids=counts)
    fan = notifications_create(
        organization_id=campaign.organization_id,
        event=Event.REMOVAL_NEEDED,
        campaign=campaign,
        recipients=[Recipient(m, pending=counts[m.pk]) for m in members.values()],
    )
    return len(fan.created)


def removal_cadence_run(*, campaign: Campaign, now: dt.datetime | None = None) -> dict[str, int]:
    """Time-driven notices of a `remediating` campaign: the first notice if it was missed, reminders every
    `reminder_every_days` while removals are open, and one escalation per owner once removals are overdue
    (`REMOVAL_DUE_DAYS` after the review ended, plus the policy's `escalate_after_days`)."""
    now = now or timezone.now()
    sent = {"removal_needed": 0, "reminders": 0, "escalated": 0}
    if campaign.status != CampaignStatus.REMEDIATING or campaign.remediating_at is None:
        return sent
    sent["removal_needed"] = removal_needed_send(campaign=campaign)
    counts = open_removals_by_owner(campaign=campaign)
    if not counts:
        return sent
    policy = effective_policy(campaign=campaign)
    org_id = campaign.organization_id
    members = selectors.memberships_by_id(organization_id=org_id, ids=counts)
    recipients = [Recipient(m, pending=counts[m.pk]) for m in members.values()]
    elapsed = now - campaign.remediating_at
    if policy.reminder_every_days:
        slot = elapsed // dt.timedelta(days=policy.reminder_every_days)
        if slot >= 1:
            fan = notifications_create(
                organization_id=org_id, event=Event.REMOVAL_REMINDER, campaign=campaign, recipients=recipients,
                period=f"every-{policy.reminder_every_days}-{slot}",
            )
            sent["reminders"] = len(fan.created)
    overdue_after = dt.timedelta(days=REMOVAL_DUE_DAYS + (policy.escalate_after_days or 0))
    if policy.escalate_after_days and elapsed >= overdue_after:
        targets = _escalation_targets(campaign)
        for recipient in recipients:
            owner = recipient.membership
            to = [t for t in targets if t.pk != owner.pk]
            if not to:
                continue
            fan = notifications_create(
                organization_id=org_id, event=Event.REMOVAL_ESCALATED, campaign=campaign,
                recipients=[Recipient(t, pending=recipient.pending, details={"owner": owner.user.email}) for t in to],
                period=f"from-m{owner.pk}",
            )
            if fan.created:
                sent["escalated"] += 1
                audit_record(
                    action="campaign.removal_escalated",
                    organization_id=org_id,
                    target=campaign,
                    system=True,
                    details={"remediation_owner": owner.user.email, "open_removals": recipient.pending,
                             "escalated_to": sorted(t.user.email for t in to)},
                )
    return sent


def removal_reminder_send(
    *, campaign: Campaign, actor: Membership, owner: Membership, now: dt.datetime | None = None, request=None
) -> ReminderResult:
    """Manual reminder from the campaign page to one remediation owner with revokes still to remove; at most
    one per owner, campaign and day."""
    if campaign.status != CampaignStatus.REMEDIATING:
        raise NotificationError(
            f"Removal reminders are sent for remediating campaigns; this one is {campaign.status}."
        )
    pending = open_removals_by_owner(campaign=campaign).get(owner.pk, 0)
    if not pending:
        raise NotificationError(f"{owner.user.email} has no revoked access left to remove in this campaign.")
    reminded, already = manual_reminder_create(
        campaign=campaign, event=Event.REMOVAL_REMINDER, recipients=[Recipient(owner, pending=pending)], now=now
    )
    audit_record(
        action="campaign.removal_reminder_sent",
        organization_id=campaign.organization_id,
        actor=actor.user,
        request=request,
        target=campaign,
        details={"remediation_owner": owner.user.email, "open_removals": pending, "already_reminded_today": already},
    )
    return ReminderResult(reminded=reminded, already_reminded=already)


def _escalation_targets(campaign: Campaign) -> list[Membership]:
    targets = {m.pk: m for m in _creator(campaign)}
    fallback = campaign.fallback_remediation_owner
    if fallback is not None and fallback.user.is_active:
        targets.setdefault(fallback.pk, fallback)
    return list(targets.values())


def decision_quality_flags_notify(*, campaign: Campaign) -> int:
    """The campaign's creator hears once per flagged reviewer (later flags of the same reviewer add nothing).
    Returns the number of reviewers newly reported."""
    flagged = [row for row in campaign_decision_quality(campaign=campaign) if row.flags]
    creators = _creator(campaign)
    if not flagged or not creators:
        return 0
    reported = 0
    for row in flagged:
        subject = f"{campaign.pk}:{row.reviewer_email.lower()}"
        # Once per reviewer: a notice already written (sent or still queued) means this reviewer was reported.
        if Notification.objects.filter(
            campaign=campaign, event=Event.DECISION_QUALITY_FLAGGED,
            dedupe_key__startswith=f"{Event.DECISION_QUALITY_FLAGGED}|{subject}|",
        ).exists():
            continue
        fan = notifications_create(
            organization_id=campaign.organization_id,
            event=Event.DECISION_QUALITY_FLAGGED,
            campaign=campaign,
            recipients=[
                Recipient(m, details={"reviewer": row.reviewer_email, "flags": [f.message for f in row.flags]})
                for m in creators
            ],
            subject=subject,
        )
        if fan.created:
            reported += 1
            audit_record(
                action="campaign.decision_quality_flagged",
                organization_id=campaign.organization_id,
                target=campaign,
                system=True,
                details={"reviewer": row.reviewer_email, "flags": [f.code for f in row.flags],
                         "notified": sorted(m.user.email for m in creators)},
            )
    return reported
