"""Writes for notifications: addresses, content and the fan-out into the log, and exceptions expiring.

Delivery is in ``notifications.delivery``, what other apps call in ``notifications.hooks``, reminders and
escalation in ``notifications.reminders`` and the settings in ``notifications.configuration``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import partial

from django.conf import settings
from django.db import transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from campaigns.models import Campaign, GuestReviewer
from thalian import claims
from thalian.broker import send_quickly
from thalian.models import Membership, Organization
from thalian.tenancy import assert_same_organization, scope

from . import selectors
from .channels import (
    EMAIL,
    SLACK,
    TEAMS,
)
from .models import (
    ACCESS_REQUEST_EVENTS,
    MANDATORY_EMAIL_EVENTS,
    Event,
    Notification,
    NotificationPreference,
    NotificationSettings,
    Status,
)

# Attempts a notification gets, whether they end in a channel error or in a worker that stopped mid-send;
# then it shows as failed (undelivered) where admins see them, with Retry.
MAX_ATTEMPTS = 6
# Name of the advisory lock a worker holds while it delivers a notification (thalian/claims.py).
DELIVERY_CLAIM = "notification-delivery"
# Events that also go to the organization's Slack channel and Teams webhook, not only to people.
CHANNEL_EVENTS = frozenset(
    {
        Event.CAMPAIGN_OVERDUE,
        Event.CAMPAIGN_CANCELLED,
        Event.CAMPAIGN_COMPLETED,
        Event.TICKET_FAILED,
        Event.REMEDIATION_OUTCOME,
    }
)
REMEDIATION_OUTCOMES = {
    "verified": "all removals verified",
    "partial": "partially removed",
    "failed": "removal failed",
}


class NotificationError(ValueError):
    """Bad input to a notification service; the message names what is wrong."""


# Addresses -------------------------------------------------------------------------------------------------


def _absolute(name: str, *args, query: str = "") -> str:
    path = reverse(name, args=args)
    return f"{settings.SITE_URL}{path}{query}"


def my_tasks_url(campaign: Campaign) -> str:
    """"Review now": the reviewer's own undecided items in this campaign (the first one is selected)."""
    slug = campaign.organization.slug
    try:
        return _absolute("review_items", slug, campaign.pk, query="?reviewer=me&decision=pending")
    except NoReverseMatch:
        return _absolute("org_dashboard", slug)


def campaign_url(campaign: Campaign) -> str:
    slug = campaign.organization.slug
    try:
        return _absolute("campaign_detail", slug, campaign.pk)
    except NoReverseMatch:
        return _absolute("org_dashboard", slug)


def remediation_url(campaign: Campaign) -> str:
    try:
        return _absolute("remediation_queue", campaign.organization.slug)
    except NoReverseMatch:
        return campaign_url(campaign)


# What a guest's message stores instead of their link (filled in when it is sent).
GUEST_LINK_URL = "(personal review link)"


def dedupe_key(*, event: str, subject: str, recipient: str, channel: str, period: str) -> str:
    return f"{event}|{subject}|{recipient}|{channel}|{period}"[:300]


# Content ---------------------------------------------------------------------------------------------------


@dataclass
class Content:
    title: str
    body: str
    action_url: str
    action_label: str


def _due(campaign: Campaign) -> str:
    return campaign.due_date.strftime("%d %b %Y")


def _items(n: int) -> str:
    return f"{n} access item{'s' if n != 1 else ''}"


def build_content(
    *, event: str, campaign: Campaign | None, pending: int = 0, details: dict | None = None
) -> Content:
    details = details or {}
    if event in ACCESS_REQUEST_EVENTS:
        return Content(details["title"], details["body"], details["url"], details["label"])
    if event == Event.TEST:
        return Content(
            title="Thalian test message",
            body=f"Notifications from {details.get('organization', 'Thalian')} reach this channel.",
            action_url=details["url"],
            action_label="Open Thalian",
        )
    if event == Event.TICKET_FAILED:
        where = f" in {campaign.title}" if campaign else ""
        return Content(
            title=f"Remediation ticket failed: {details.get('application', 'an application')}",
            body=(
                f"The removal ticket for {details.get('identity', 'an identity')}{where} could not be created "
                f"or completed: {details.get('error', 'no details given')}."
            ),
            action_url=details.get("url")
            or (campaign_url(campaign) if campaign else details.get("home", "")),
            action_label="Open remediation",
        )
    if event == Event.EXCEPTION_EXPIRING:
        lines = "\n".join(f"- {line}" for line in details.get("items", []))
        count = details.get("count", 0)
        return Content(
            title=f"{count} exception{'s' if count != 1 else ''} you granted expire{'s' if count == 1 else ''} "
            f"in {details.get('days')} days",
            body=(
                f"These exceptions you granted expire on {details.get('expires_on')}. The day after, the access "
                f"is reviewed again in an exception renewals campaign.\n{lines}"
            ),
            action_url=details.get("url", ""),
            action_label="Open exceptions",
        )
    assert campaign is not None
    title = campaign.title
    if event == Event.REVIEW_ASSIGNED:
        return Content(
            f"Access review assigned: {title}",
            f"You have {_items(pending)} to review in {title}, due {_due(campaign)}.",
            my_tasks_url(campaign),
            "Start review",
        )
    if event == Event.REVIEW_DELEGATED:
        delegator = details.get("delegator", "A reviewer")
        return Content(
            f"Delegated to you: {_items(pending)} in {title}",
            f"{delegator} delegated their access review to you: you now review {_items(pending)} in {title} "
            f"on their behalf, due {_due(campaign)}. Your decisions are recorded as made on behalf of "
            f"{delegator}.",
            my_tasks_url(campaign),
            "Start review",
        )
    if event in (Event.REMINDER, Event.CAMPAIGN_REMINDER):
        return Content(
            f"Reminder: {_items(pending)} waiting in {title}",
            f"Please decide the {_items(pending)} still pending in {title} before {_due(campaign)}.",
            my_tasks_url(campaign),
            "Review now",
        )
    if event == Event.OVERDUE:
        return Content(
            f"Overdue: {title}",
            f"{title} was due on {_due(campaign)} and {_items(pending)} assigned to you are still pending.",
            my_tasks_url(campaign),
            "Review now",
        )
    if event == Event.ESCALATED:
        reviewer = details.get("reviewer", "A reviewer")
        if details.get("reassigned"):
            body = (
                f"{reviewer} did not decide {_items(pending)} in {title} (due {_due(campaign)}). "
                "They are now assigned to you."
            )
            url, label = my_tasks_url(campaign), "Start review"
        else:
            body = (
                f"{reviewer} has {_items(pending)} overdue in {title} (due {_due(campaign)}). "
                "Please follow up with them."
            )
            url, label = campaign_url(campaign), "Open campaign"
        return Content(f"Escalated: overdue access reviews in {title}", body, url, label)
    if event == Event.CAMPAIGN_OVERDUE:
        return Content(
            f"Campaign overdue: {title}",
            f"{title} was due on {_due(campaign)}; {_items(pending)} are still pending.",
            campaign_url(campaign),
            "Open campaign",
        )
    if event == Event.CAMPAIGN_CANCELLED:
        reason = campaign.cancel_reason or details.get("reason") or "no reason given"
        return Content(
            f"Campaign cancelled: {title}",
            f"{title} was cancelled ({reason}). Its pending reviews no longer need a decision.",
            campaign_url(campaign),
            "Open campaign",
        )
    if event == Event.CAMPAIGN_COMPLETED:
        return Content(
            f"Campaign completed: {title}",
            f"All {_items(campaign.item_count)} in {title} are decided.",
            campaign_url(campaign),
            "Open campaign",
        )
    if event == Event.REMEDIATION_OUTCOME:
        outcome = details.get("outcome", "")
        if outcome not in REMEDIATION_OUTCOMES:
            raise NotificationError(f"remediation outcome must be one of {sorted(REMEDIATION_OUTCOMES)}")
        counts = ", ".join(f"{value} {name}" for name, value in details.get("counts", {}).items())
        return Content(
            f"Remediation of {title}: {REMEDIATION_OUTCOMES[outcome]}",
            f"Removal of revoked access for {title}: {REMEDIATION_OUTCOMES[outcome]}"
            + (f" ({counts})." if counts else "."),
            campaign_url(campaign),
            "Open remediation",
        )
    if event == Event.REMOVAL_NEEDED:
        return Content(
            f"Revoked access to remove: {title}",
            f"The review of {title} ended with {_items(pending)} revoked in applications whose remediation you "
            "own. Remove the access; the next import or sync verifies it, or confirm the removal with a comment.",
            remediation_url(campaign),
            "Open remediation",
        )
    if event == Event.REMOVAL_REMINDER:
        return Content(
            f"Reminder: {_items(pending)} still to remove in {title}",
            f"{_items(pending).capitalize()} revoked in {title} are not proven removed yet.",
            remediation_url(campaign),
            "Open remediation",
        )
    if event == Event.REMOVAL_ESCALATED:
        return Content(
            f"Escalated: revoked access not removed in {title}",
            f"{details.get('owner', 'A remediation owner')} has {_items(pending)} revoked in {title} that are "
            "still not proven removed. Please follow up with them.",
            campaign_url(campaign),
            "Open campaign",
        )
    if event == Event.DECISION_QUALITY_FLAGGED:
        flags = "; ".join(details.get("flags") or []) or "see the campaign page"
        return Content(
            f"Decision quality flag: {details.get('reviewer', 'a reviewer')} in {title}",
            f"The decisions of {details.get('reviewer', 'a reviewer')} in {title} were flagged: {flags}.",
            campaign_url(campaign) + "#decision-quality",
            "Open campaign",
        )
    raise NotificationError(f"unknown notification event {event!r}")


# Fan-out into the log ----------------------------------------------------------------------------------------


@dataclass
class Recipient:
    """A member (by their channel choices) or a guest reviewer of the campaign (by e-mail, with their link)."""

    membership: Membership | None = None
    pending: int = 0
    details: dict = field(default_factory=dict)
    guest: GuestReviewer | None = None

    @property
    def email(self) -> str:
        return self.guest.email if self.guest is not None else self.membership.user.email


def reviewer_email(reviewer: Membership | GuestReviewer) -> str:
    return reviewer.email if isinstance(reviewer, GuestReviewer) else reviewer.user.email


def _member_channels(
    *, event: str, config: NotificationSettings, preference: NotificationPreference | None
) -> list[str]:
    preference = preference or NotificationPreference()
    channels = []
    if preference.email or event in MANDATORY_EMAIL_EVENTS:
        channels.append(EMAIL)
    if preference.slack and config.slack_configured:
        channels.append(SLACK)
    if preference.teams and config.teams_configured:
        channels.append(TEAMS)
    return channels


@dataclass
class FanOut:
    created: list[Notification]
    duplicates: list[str]  # recipients that already had this notification for the period


def notifications_create(
    *,
    organization_id: int,
    event: str,
    campaign: Campaign | None,
    recipients: list[Recipient],
    period: str = "once",
    subject: str = "",
    to_org_channels: bool = False,
    details: dict | None = None,
    resend_queued: bool = False,
) -> FanOut:
    """Write one log row per recipient and channel (skipping rows whose dedupe key exists) and enqueue
    their delivery after commit. Content is fixed when the row is written: the log shows what was sent.

    `resend_queued` (a person asking again): a row with the same key still queued longer than
    CLAIM_STALE_SECONDS, never attempted, is sent now rather than refused, since its enqueue was lost (broker
    down at commit); the delivery claim makes a second message for it harmless. A fresher queued row counts as
    sent: it is on its way, and the retry sweep sends it after that time if its message was lost."""
    config = selectors.notification_settings_for(organization_id=organization_id)
    preferences = selectors.preferences_for(membership_ids=[r.membership.pk for r in recipients if r.membership])
    subject = subject or (str(campaign.pk) if campaign else "")
    row = partial(_row, organization_id, event, campaign, subject=subject, period=period)
    rows: list[Notification] = []
    for recipient in recipients:
        if recipient.guest is not None:
            rows.append(_guest_row(row, event, campaign, recipient, details))
            continue
        membership = recipient.membership
        if campaign is not None:
            assert_same_organization(campaign, membership)
        content = build_content(
            event=event,
            campaign=campaign,
            pending=recipient.pending,
            details={**(details or {}), **recipient.details},
        )
        for channel in _member_channels(
            event=event, config=config, preference=preferences.get(membership.pk)
        ):
            rows.append(row(channel, membership, membership.user.email, content, f"m{membership.pk}"))
    if to_org_channels:
        pending = 0
        if event == Event.CAMPAIGN_OVERDUE and campaign is not None:
            pending = selectors.pending_items(campaign=campaign).count()
        content = build_content(event=event, campaign=campaign, pending=pending, details=details)
        targets = []
        if config.slack_configured and config.slack_channel_id:
            targets.append((SLACK, f"Slack channel {config.slack_channel_id}"))
        if config.teams_configured:
            targets.append((TEAMS, "Teams channel"))
        for channel, label in targets:
            rows.append(row(channel, None, label, content, "org"))
    if not rows:
        return FanOut(created=[], duplicates=[])
    keys = [row.dedupe_key for row in rows]
    existing = {
        key: (status, created_at)
        for key, status, created_at in Notification.objects.filter(dedupe_key__in=keys).values_list(
            "dedupe_key", "status", "created_at"
        )
    }
    lost_before = timezone.now() - claims.stale_after()
    sent_or_sending = {
        key
        for key, (status, created_at) in existing.items()
        if not (resend_queued and status == Status.QUEUED and created_at < lost_before)
    }
    # The unique (organization, dedupe_key) constraint is the real guard when two ticks race past `existing`.
    Notification.objects.bulk_create(
        [r for r in rows if r.dedupe_key not in existing], ignore_conflicts=True, batch_size=1000
    )
    created = list(
        Notification.objects.filter(dedupe_key__in=keys, status=Status.QUEUED).exclude(
            dedupe_key__in=sent_or_sending
        )
    )
    duplicates = sorted({r.recipient for r in rows if r.dedupe_key in sent_or_sending})
    ids = [str(n.pk) for n in created]
    if ids:
        transaction.on_commit(partial(_enqueue_deliveries, organization_id, ids), robust=True)
    return FanOut(created=created, duplicates=duplicates)


def _guest_row(row, event: str, campaign: Campaign, recipient: Recipient, details: dict | None) -> Notification:
    """A guest has no channel choices: e-mail only. The personal link is not stored with the message; it is
    put in at delivery (``notification_deliver``), so the log never holds a working link."""
    guest = recipient.guest
    assert_same_organization(campaign, guest)
    content = build_content(
        event=event, campaign=campaign, pending=recipient.pending, details={**(details or {}), **recipient.details}
    )
    content.action_url = GUEST_LINK_URL
    return row(EMAIL, None, guest.email, content, f"g{guest.pk}", guest=guest)


def _row(
    organization_id,
    event,
    campaign,
    channel,
    membership,
    recipient,
    content: Content,
    recipient_key: str,
    *,
    subject: str,
    period: str,
    guest: GuestReviewer | None = None,
) -> Notification:
    return Notification(
        organization_id=organization_id,
        campaign=campaign,
        event=event,
        channel=channel,
        recipient_membership=membership,
        recipient_guest=guest,
        recipient=recipient[:254],
        dedupe_key=dedupe_key(
            event=event, subject=subject, recipient=recipient_key, channel=channel, period=period
        ),
        title=content.title[:300],
        body=content.body,
        action_url=content.action_url[:500],
        action_label=content.action_label[:80],
    )


def _enqueue_deliveries(organization_id: int, notification_ids: list[str]) -> None:
    """The fast path after commit. With the broker down it gives up at once (the request must not wait or
    fail): the rows stay queued and ``notifications_due_for_retry`` hands them over once they are overdue."""
    from .tasks import deliver_notification

    send_quickly(deliver_notification, [(organization_id, notification_id) for notification_id in notification_ids])


# Exceptions expiring ------------------------------------------------------------------------------------------


def exception_reminders_send(*, organization_id: int, today: dt.date | None = None) -> int:
    """Reminds each reviewer of the exceptions they granted that expire in 14 and in 3 days (read through the
    campaigns selector). One notification per reviewer, expiry date and channel; repeats are deduplicated."""
    from campaigns.exceptions import MAX_REMINDER_LINES, exception_reminders_due

    sent = 0
    with scope(organization_id=organization_id):
        url = _absolute("exception_list", Organization.objects.get(pk=organization_id).slug, query="?status=expiring")
        for reminder in exception_reminders_due(today=today):
            lines = [
                f"{i.identity_email} in {i.application_name} ({i.role}): {i.decision_reason or 'no reason given'}"
                for i in reminder.items[:MAX_REMINDER_LINES]
            ]
            if len(reminder.items) > MAX_REMINDER_LINES:
                lines.append(f"and {len(reminder.items) - MAX_REMINDER_LINES} more")
            fan = notifications_create(
                organization_id=organization_id,
                event=Event.EXCEPTION_EXPIRING,
                campaign=None,
                recipients=[Recipient(membership=reminder.membership)],
                period=f"{reminder.days}d",
                subject=f"exceptions-{reminder.expires_on.isoformat()}",
                details={
                    "items": lines,
                    "count": len(reminder.items),
                    "days": reminder.days,
                    "expires_on": reminder.expires_on.isoformat(),
                    "url": url,
                },
            )
            sent += len(fan.created)
    return sent
