"""Writes for notifications: fan-out into the log, delivery with claim-before-send, reminders, escalation."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.db.models import F, Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from campaigns.guests import GuestAdminError, guest_link_current
from campaigns.models import Campaign, CampaignStatus, GuestReviewer, ReassignKind
from campaigns.reassignment import review_items_move
from campaigns.selectors import REVIEWER_ROLES
from thalian import claims
from thalian.audit import audit_record
from thalian.broker import send_quickly
from thalian.models import Membership, Organization
from thalian.tenancy import assert_same_organization, scope

from . import selectors
from .channels import (
    EMAIL,
    SLACK,
    TEAMS,
    ChannelError,
    ChannelPermanentError,
    ChannelTransientError,
    EmailSender,
    Message,
    SlackSender,
    TeamsSender,
    new_message_id,
)
from .models import (
    ACCESS_REQUEST_EVENTS,
    MANDATORY_EMAIL_EVENTS,
    CampaignNotificationPolicy,
    Event,
    Notification,
    NotificationPreference,
    NotificationSettings,
    Status,
)

logger = logging.getLogger(__name__)

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


# Delivery ------------------------------------------------------------------------------------------------


def sender_for(*, channel: str, config: NotificationSettings):
    if channel == EMAIL:
        return EmailSender()
    if channel == SLACK:
        return SlackSender(
            token=config.slack_bot_token, channel_id=config.slack_channel_id, base_url=settings.SLACK_API_URL
        )
    if channel == TEAMS:
        return TeamsSender(webhook_url=config.teams_webhook_url)
    raise ChannelPermanentError(f"unknown channel {channel!r}")


def retry_delay(attempts: int, retry_after: float | None = None) -> dt.timedelta:
    seconds = min(60 * 2 ** max(attempts - 1, 0), 3600)
    if retry_after:
        seconds = max(seconds, retry_after)
    return dt.timedelta(seconds=seconds)


def notification_deliver(*, notification_id: str) -> Notification | None:
    """One delivery attempt. Returns the row after the attempt, or None when another worker holds it, it was
    already sent, or its next attempt is not due yet. The caller holds the claim's lock (DELIVERY_CLAIM)."""
    now = timezone.now()
    claimed = (
        Notification.objects.filter(pk=notification_id, status__in=[Status.QUEUED, Status.RETRYING])
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(status=Status.SENDING, attempts=F("attempts") + 1, last_attempt_at=now)
    )
    if claimed != 1:
        return None
    notification = Notification.objects.select_related("organization").get(pk=notification_id)
    if notification.channel == EMAIL and not notification.provider_reference:
        # Fixed before the first send, so every later attempt carries the same Message-ID.
        notification.provider_reference = new_message_id()
        Notification.objects.filter(pk=notification_id).update(provider_reference=notification.provider_reference)
    config = selectors.notification_settings_for(organization_id=notification.organization_id)
    to_person = notification.recipient_membership_id or notification.recipient_guest_id
    message = Message(
        event=notification.event,
        title=notification.title,
        body=notification.body,
        action_url=notification.action_url,
        action_label=notification.action_label,
        recipient_email=notification.recipient if to_person else "",
        message_id=notification.provider_reference if notification.channel == EMAIL else "",
    )
    update: dict = {}
    try:
        if notification.recipient_guest_id:
            message = replace(message, action_url=_guest_link(notification))
        reference = sender_for(channel=notification.channel, config=config).send(message)
    except ChannelTransientError as exc:
        if notification.attempts >= MAX_ATTEMPTS:
            update = {
                "status": Status.FAILED,
                "error": f"{exc} (gave up after {notification.attempts} attempts)",
            }
        else:
            update = {
                "status": Status.RETRYING,
                "error": str(exc),
                "next_attempt_at": now + retry_delay(notification.attempts, exc.retry_after),
            }
    except ChannelPermanentError as exc:
        update = {"status": Status.FAILED, "error": str(exc), "next_attempt_at": None}
    except SoftTimeLimitExceeded:
        # Out of time mid-send: it may have arrived, as after an interrupted attempt; the next one is due
        # after the usual backoff (an e-mail keeps its Message-ID).
        update = _interrupted_outcome(notification.attempts, now=now, claimed_at=now)
    except Exception as exc:  # a bug must not leave the row claimed forever
        logger.exception("notification %s failed unexpectedly", notification_id)
        update = {
            "status": Status.FAILED,
            "error": f"unexpected error: {type(exc).__name__}",
            "next_attempt_at": None,
        }
    else:
        update = {
            "status": Status.SENT,
            "sent_at": timezone.now(),
            "error": "",
            "next_attempt_at": None,
            "provider_reference": str(reference)[:300],
        }
    _outcome_record(notification_id, claimed_at=now, update=update)
    for name, value in update.items():
        setattr(notification, name, value)
    return notification


def _outcome_record(notification_id: str, *, claimed_at: dt.datetime, update: dict, tries: int = 3) -> None:
    """Write the attempt's outcome, guarded by the claim. The message is out already: a database that blips
    now would leave the row `sending` and get it sent again after the stale-claim wait, so the write is tried
    again on a fresh connection before giving up."""
    for attempt in range(1, tries + 1):
        try:
            Notification.objects.filter(pk=notification_id, status=Status.SENDING, last_attempt_at=claimed_at).update(
                **update
            )
            return
        except DatabaseError:
            if attempt == tries or not transaction.get_autocommit():
                raise
            logger.warning("recording the outcome of notification %s failed; trying again", notification_id)
            close_old_connections()
            time.sleep(attempt)


def _guest_link(notification: Notification) -> str:
    """The guest's personal link for a message to them, in the delivery's transaction."""
    guest = GuestReviewer.objects.select_related("campaign__organization").filter(
        pk=notification.recipient_guest_id).first()
    if guest is None:
        raise ChannelPermanentError("The guest reviewer no longer exists.")
    try:
        return guest_link_current(guest=guest)
    except GuestAdminError as exc:
        raise ChannelPermanentError(str(exc)) from exc


def notifications_due_for_retry(*, now: dt.datetime | None = None) -> list[tuple[int, str]]:
    """(organization_id, id) of rows whose next attempt is due, and of rows still queued, never attempted,
    longer than CLAIM_STALE_SECONDS (their enqueue was lost). Platform code: spans organizations."""
    now = now or timezone.now()
    due = Q(status=Status.RETRYING, next_attempt_at__lte=now) | Q(
        status=Status.QUEUED, attempts=0, created_at__lt=now - claims.stale_after()
    )
    return [
        (org_id, str(pk))
        for org_id, pk in Notification.unscoped.filter(due)
        .order_by("created_at")
        .values_list("organization_id", "id")[:1000]
    ]


def notifications_resume_interrupted(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Hand back deliveries abandoned in `sending` by a worker that died mid-send (claimed longer ago than
    CLAIM_STALE_SECONDS, no worker holding their lock): they are retried with the usual backoff, counted from
    the interrupted attempt. One interrupted on its last attempt is marked failed, where admins see
    undelivered notifications, with Retry. Whether the interrupted attempt arrived is unknown: a resent
    e-mail carries the same Message-ID. Platform code: spans organizations."""
    now = now or timezone.now()
    outcome = {"resent": 0, "failed": 0}
    stale = Notification.unscoped.filter(status=Status.SENDING, last_attempt_at__lt=now - claims.stale_after())
    for notification in stale.only("pk", "attempts", "last_attempt_at")[:1000]:
        if claims.claim_alive(DELIVERY_CLAIM, notification.pk):
            continue
        claim = Notification.unscoped.filter(
            pk=notification.pk, status=Status.SENDING, last_attempt_at=notification.last_attempt_at
        )
        update = _interrupted_outcome(notification.attempts, now=now, claimed_at=notification.last_attempt_at)
        outcome["failed" if update["status"] == Status.FAILED else "resent"] += claim.update(**update)
    return outcome


def _interrupted_outcome(attempts: int, *, now: dt.datetime, claimed_at: dt.datetime) -> dict:
    """The row update for an attempt whose outcome is unknown: retried after the backoff counted from the
    attempt, or failed when it was the last one."""
    if attempts >= MAX_ATTEMPTS:
        return {
            "status": Status.FAILED,
            "next_attempt_at": None,
            "error": f"Delivery was interrupted on attempt {attempts} of {MAX_ATTEMPTS} (the worker stopped before "
            "the outcome was recorded), so it may or may not have arrived. Retry sends it again.",
        }
    return {
        "status": Status.RETRYING,
        "next_attempt_at": max(now, claimed_at + retry_delay(attempts)),
        "error": "The previous attempt was interrupted before its outcome was recorded; it will be sent again.",
    }


def notifications_retry(
    *, organization: Organization, actor: Membership, notification_ids: list[str] | None = None, request=None
) -> int:
    """Queue failed notifications again: the given ones, or every failed one of the organization. Each gets
    a fresh attempt budget; an e-mail keeps its Message-ID. Returns how many were queued."""
    with scope(organization), transaction.atomic():
        failed = Notification.objects.filter(status=Status.FAILED)
        if notification_ids is not None:
            failed = failed.filter(pk__in=notification_ids)
        ids = [str(pk) for pk in failed.select_for_update().values_list("pk", flat=True)[:1000]]
        if not ids:
            raise NotificationError("There is no failed notification to retry.")
        Notification.objects.filter(pk__in=ids).update(
            status=Status.QUEUED, attempts=0, error="", next_attempt_at=None
        )
        audit_record(
            action="notifications.retried",
            organization=organization,
            actor=actor.user,
            request=request,
            target_type="notification",
            target_id=ids[0] if len(ids) == 1 else "",
            details={"notifications": ids[:100], "count": len(ids)},
        )
        transaction.on_commit(partial(_enqueue_deliveries, organization.pk, ids), robust=True)
    return len(ids)


# Public hooks ------------------------------------------------------------------------------------------------


def notify_event(
    *,
    organization_id: int,
    event: str,
    campaign_id=None,
    membership_ids: list[int] | None = None,
    details: dict | None = None,
    period: str = "once",
) -> None:
    """Announce a lifecycle event. Call it through transaction.on_commit; the work happens in a task.

    Recipients default by event: review_assigned -> every reviewer of the campaign; campaign_cancelled ->
    reviewers with pending items and the creator; campaign_completed -> the creator; ticket_failed and
    remediation_outcome -> the organization's admins (and the creator). Campaign-wide events also go to the
    organization's Slack channel and Teams webhook."""
    if event not in Event.values or event == Event.TEST:
        raise NotificationError(f"unknown notification event {event!r}")
    from .tasks import send_event

    send_event.delay(
        organization_id,
        event,
        str(campaign_id) if campaign_id else None,
        membership_ids,
        details or {},
        period,
    )


def notify_reviewers_assigned(*, campaign: Campaign) -> None:
    """Hook for the end of a launch: every reviewer hears about their items once."""
    notify_event(
        organization_id=campaign.organization_id, event=Event.REVIEW_ASSIGNED, campaign_id=campaign.pk
    )


def _organization_of(campaign_id) -> int | None:
    # Hooks run after commit, possibly outside any organization scope: resolve the tenant from the id.
    return Campaign.unscoped.filter(pk=campaign_id).values_list("organization_id", flat=True).first()


def notify_review_ended(*, organization_id: int, campaign_id) -> None:
    """The review of a campaign ended (completed, or remediating with revokes to remove): removal notices to
    remediation owners and decision-quality flags to the creator, in a task."""
    from .tasks import review_ended_notices

    review_ended_notices.delay(organization_id, str(campaign_id))


def notify_items_reassigned(*, campaign_id, reviewer_id: int, count: int = 0, **_) -> None:
    """campaigns hook: items moved to a reviewer after launch; they get an assignment notice (one per day)."""
    organization_id = _organization_of(campaign_id)
    if organization_id is not None and count:
        notify_event(
            organization_id=organization_id,
            event=Event.REVIEW_ASSIGNED,
            campaign_id=campaign_id,
            membership_ids=[reviewer_id],
            period=f"reassigned-{timezone.localdate().isoformat()}",
        )


def delegation_notice_send(
    *, organization_id: int, campaign_id, reviewer_id: int, guest_id: int, delegator_email: str, count: int,
    move_id: str,
) -> FanOut:
    """Tell a delegate (a member by their channels, a guest by e-mail with their link) that items came to them
    because of a delegation. Once per move (its id is the notice's period)."""
    campaign = Campaign.objects.select_related("organization").filter(pk=campaign_id).first()
    if campaign is None or not count:
        return FanOut(created=[], duplicates=[])
    if guest_id:
        recipients = [Recipient(guest=g, pending=count) for g in selectors.guests_by_id(
            campaign=campaign, ids=[guest_id]).values()]
    else:
        recipients = [Recipient(m, pending=count) for m in selectors.memberships_by_id(
            organization_id=organization_id, ids=[reviewer_id]).values()]
    return notifications_create(
        organization_id=organization_id, event=Event.REVIEW_DELEGATED, campaign=campaign, recipients=recipients,
        period=f"move-{move_id}", details={"delegator": delegator_email},
    )


def notify_ticket_failed(
    *,
    ticket_id,
    organization_id: int | None = None,
    campaign_id=None,
    application: str = "",
    identity: str = "",
    error: str = "",
    url: str = "",
    attempt: int | None = None,
    **_,
) -> None:
    """itsm hook: a remediation ticket could not be opened or failed; admins are told once per ticket (and
    once more per `attempt` when a retried ticket fails again)."""
    organization_id = organization_id or _organization_of(campaign_id)
    if organization_id is None:
        return
    notify_event(
        organization_id=organization_id,
        event=Event.TICKET_FAILED,
        campaign_id=campaign_id,
        details={
            "ticket": str(ticket_id),
            "application": application,
            "identity": identity,
            "error": error[:500],
            "url": url,
        },
        period=f"attempt-{attempt}" if attempt else "once",
    )


def notify_remediation_outcome(*, campaign_id, outcome: str, counts: dict | None = None, **_) -> None:
    """itsm hook: remediation of a campaign finished: outcome "verified", "partial" or "failed"."""
    if outcome not in REMEDIATION_OUTCOMES:
        raise NotificationError(f"remediation outcome must be one of {sorted(REMEDIATION_OUTCOMES)}")
    organization_id = _organization_of(campaign_id)
    if organization_id is not None:
        notify_event(
            organization_id=organization_id,
            event=Event.REMEDIATION_OUTCOME,
            campaign_id=campaign_id,
            details={"outcome": outcome, "counts": counts or {}},
            period=outcome,
        )


def event_send(
    *,
    organization_id: int,
    event: str,
    campaign: Campaign | None,
    membership_ids: list[int] | None = None,
    details: dict | None = None,
    period: str = "once",
) -> FanOut:
    details = dict(details or {})
    pending_counts = selectors.pending_counts_by_reviewer(campaign=campaign) if campaign else {}
    if membership_ids is None:
        membership_ids = _default_recipients(
            organization_id=organization_id, event=event, campaign=campaign, pending_counts=pending_counts
        )
    if event == Event.REVIEW_ASSIGNED and campaign is not None:
        pending_counts = selectors.item_counts_by_reviewer(campaign=campaign)
    members = selectors.memberships_by_id(organization_id=organization_id, ids=membership_ids)
    recipients = [Recipient(m, pending=pending_counts.get(m.pk, 0)) for m in members.values()]
    if event == Event.TICKET_FAILED:
        subject = str(details.get("ticket") or details.get("item") or "")
        if not subject:
            raise NotificationError("ticket_failed needs details['ticket'] or details['item'] to identify it")
        subject = f"{campaign.pk if campaign else ''}:{subject}"
    else:
        subject = ""
    if event == Event.TICKET_FAILED and not details.get("home"):
        details["home"] = _absolute("org_dashboard", Organization.objects.get(pk=organization_id).slug)
    return notifications_create(
        organization_id=organization_id,
        event=event,
        campaign=campaign,
        recipients=recipients,
        period=period,
        subject=subject,
        to_org_channels=event in CHANNEL_EVENTS,
        details=details,
    )


def _default_recipients(*, organization_id, event, campaign, pending_counts) -> list[int]:
    creator = []
    if campaign is not None and campaign.created_by_id:
        found = Membership.objects.filter(
            organization_id=organization_id, user_id=campaign.created_by_id
        ).first()
        creator = [found.pk] if found else []
    admins = [m.pk for m in selectors.admin_memberships(organization_id=organization_id)]
    if event == Event.REVIEW_ASSIGNED:
        return list(selectors.item_counts_by_reviewer(campaign=campaign))
    if event in (Event.CAMPAIGN_REMINDER, Event.OVERDUE):
        return [pk for pk, n in pending_counts.items() if n]
    if event == Event.CAMPAIGN_CANCELLED:
        return sorted(set(pending_counts) | set(creator))
    if event in (Event.CAMPAIGN_COMPLETED, Event.CAMPAIGN_OVERDUE):
        return creator
    if event in (Event.TICKET_FAILED, Event.REMEDIATION_OUTCOME):
        return sorted(set(admins) | set(creator))
    raise NotificationError(f"{event} needs explicit recipients")


# Reminders, overdue notices and escalation -------------------------------------------------------------------


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


# Settings --------------------------------------------------------------------------------------------------

SETTINGS_FIELDS = (
    "slack_channel_id",
    "reminder_every_days",
    "reminder_days_before_due",
    "escalate_after_days",
    "escalation_reassign",
    "fallback_reviewer",
)
SECRET_FIELDS = ("slack_bot_token", "teams_webhook_url")


def _audit_settings(
    action: str,
    organization: Organization,
    actor: Membership,
    request,
    config: NotificationSettings,
    details: dict,
) -> None:
    audit_record(
        action=action,
        organization=organization,
        actor=actor.user,
        request=request,
        target_type="notificationsettings",
        target_id=str(config.pk),
        target_label="Notification settings",
        details=details,
    )


def notification_settings_update(
    *, organization: Organization, actor: Membership, data: dict, request=None
) -> NotificationSettings:
    """`data` holds already validated values. Secrets: a non-empty value replaces the stored one, and
    `clear_<name>` empties it; they are never echoed back or written to the audit log."""
    config = selectors.notification_settings_for(organization_id=organization.pk)
    fallback = data.get("fallback_reviewer")
    if fallback is not None:
        assert_same_organization(config, fallback)
    changed = []
    for name in SETTINGS_FIELDS:
        if name in data and getattr(config, name) != data[name]:
            setattr(config, name, data[name])
            changed.append(name)
    for name in SECRET_FIELDS:
        if data.get(f"clear_{name}"):
            if getattr(config, name):
                setattr(config, name, "")
                changed.append(f"{name} (removed)")
        elif data.get(name):
            setattr(config, name, data[name])
            changed.append(f"{name} (replaced)")
    if changed:
        config.updated_at = timezone.now()
        config.save()
        _audit_settings(
            "notifications.settings_updated", organization, actor, request, config, {"changed": changed}
        )
    return config


def notification_preference_update(
    *, membership: Membership, email: bool, slack: bool, teams: bool
) -> NotificationPreference:
    preference, _ = NotificationPreference.objects.update_or_create(
        organization_id=membership.organization_id,
        membership=membership,
        defaults={"email": email, "slack": slack, "teams": teams},
    )
    return preference


def notification_test_send(
    *, organization: Organization, actor: Membership, channel: str, request=None
) -> str:
    """Send a test message synchronously so the admin sees the outcome at once. Raises ChannelError."""
    config = selectors.notification_settings_for(organization_id=organization.pk)
    content = build_content(
        event=Event.TEST,
        campaign=None,
        details={"organization": organization.name, "url": _absolute("org_dashboard", organization.slug)},
    )
    if channel == SLACK and not config.slack_channel_id:
        recipient = actor.user.email  # no channel configured: send the test as a direct message
    else:
        recipient = actor.user.email if channel == EMAIL else ""
    message = Message(
        event=Event.TEST,
        title=content.title,
        body=content.body,
        action_url=content.action_url,
        action_label=content.action_label,
        recipient_email=recipient,
    )
    outcome = "failed"
    try:
        reference = sender_for(channel=channel, config=config).send(message)
        outcome = "sent"
    except ChannelError as exc:
        outcome = f"failed: {exc}"
        raise
    finally:
        _audit_settings(
            "notifications.test_sent",
            organization,
            actor,
            request,
            config,
            {"channel": channel, "outcome": outcome},
        )
    return reference


POLICY_FIELDS = (
    "reminder_every_days",
    "reminder_days_before_due",
    "escalate_after_days",
    "escalation_reassign",
)


def campaign_policy_update(
    *, campaign: Campaign, actor: Membership, values: dict, request=None
) -> CampaignNotificationPolicy:
    """Per-campaign overrides; a None value falls back to the organization's default."""
    assert_same_organization(campaign, actor)
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.ACTIVE):
        raise NotificationError(
            f"Reminder settings cannot change on a {campaign.get_status_display().lower()} campaign."
        )
    policy, _ = CampaignNotificationPolicy.objects.get_or_create(
        organization_id=campaign.organization_id, campaign=campaign
    )
    changed = {}
    for name in POLICY_FIELDS:
        if name in values and getattr(policy, name) != values[name]:
            setattr(policy, name, values[name])
            changed[name] = values[name]
    if changed:
        policy.save()
        audit_record(
            action="campaign.notification_policy_updated",
            organization_id=campaign.organization_id,
            actor=actor.user,
            request=request,
            target=campaign,
            details={"changed": changed},
        )
    return policy


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
