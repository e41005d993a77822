"""Delivery of a notification: claim before send, one attempt per channel, the outcome recorded, retries and
the hand-back of interrupted claims."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import replace
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from campaigns.guests import GuestAdminError, guest_link_current
from campaigns.models import GuestReviewer
from thalian import claims
from thalian.audit import audit_record
from thalian.models import Membership, Organization
from thalian.tenancy import scope

from . import selectors
from .channels import (
    EMAIL,
    SLACK,
    TEAMS,
    ChannelPermanentError,
    ChannelTransientError,
    EmailSender,
    Message,
    SlackSender,
    TeamsSender,
    new_message_id,
)
from .models import Notification, NotificationSettings, Status
from .services import DELIVERY_CLAIM, MAX_ATTEMPTS, NotificationError, _enqueue_deliveries

logger = logging.getLogger(__name__)


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
