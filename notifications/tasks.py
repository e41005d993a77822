"""Celery tasks: delivery with backoff and the reminder/escalation cadence.

Tasks take ids, activate the organization scope and call one service. Each is safe to run twice.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus
from thalian import claims
from thalian.models import Plan
from thalian.tenancy import scope, scopes_disabled

from . import delivery, hooks, remediation, reminders, services
from .models import Status


@shared_task(name="notifications.deliver", acks_late=True)
def deliver_notification(organization_id: int, notification_id: str) -> str:
    # The claim's lock tells the sweep this delivery's worker is alive, however long the channel takes.
    with scope(organization_id=organization_id), claims.claim_held(services.DELIVERY_CLAIM, notification_id):
        notification = delivery.notification_deliver(notification_id=notification_id)
    if notification is None:
        return "skipped"
    if notification.status == Status.RETRYING:
        # Backoff: the row carries next_attempt_at; this message is the fast path, the sweep the safety net.
        countdown = max((notification.next_attempt_at - timezone.now()).total_seconds(), 1)
        deliver_notification.apply_async((organization_id, notification_id), countdown=countdown)
    return notification.status


@shared_task(name="notifications.retry_due")
def retry_due_notifications() -> int:
    """Periodic: hand back deliveries abandoned mid-send, then send every row whose next attempt is due."""
    delivery.notifications_resume_interrupted()
    due = delivery.notifications_due_for_retry()
    for organization_id, notification_id in due:
        deliver_notification.delay(organization_id, notification_id)
    return len(due)


@shared_task(name="notifications.send_event", acks_late=True)
def send_event(
    organization_id: int,
    event: str,
    campaign_id: str | None,
    membership_ids: list[int] | None,
    details: dict,
    period: str = "once",
) -> int:
    with scope(organization_id=organization_id):
        campaign = (
            Campaign.objects.select_related("organization").get(pk=campaign_id) if campaign_id else None
        )
        fan = hooks.event_send(
            organization_id=organization_id,
            event=event,
            campaign=campaign,
            membership_ids=membership_ids,
            details=details,
            period=period,
        )
    return len(fan.created)


@shared_task(name="notifications.cadence_all")
def run_cadence() -> int:
    """Beat: evaluate reminders, overdue notices and escalations of every active campaign."""
    with scopes_disabled():
        targets = list(
            Campaign.objects.filter(
                status__in=[CampaignStatus.ACTIVE, CampaignStatus.REMEDIATING],
                organization__plan__in=[Plan.PRO, Plan.ENTERPRISE],
            )
            .values_list("organization_id", "pk")
            .order_by("organization_id", "pk")
        )
    for organization_id, campaign_id in targets:
        campaign_cadence.delay(organization_id, str(campaign_id))
    return len(targets)


@shared_task(name="notifications.cadence_campaign", acks_late=True)
def campaign_cadence(organization_id: int, campaign_id: str) -> dict:
    with scope(organization_id=organization_id):
        campaign = (
            Campaign.objects.select_related(
                "organization", "fallback_reviewer__user", "fallback_remediation_owner__user"
            )
            .filter(pk=campaign_id)
            .first()
        )
        if campaign is None:
            return {}
        now = timezone.now()
        sent = reminders.campaign_cadence_run(campaign=campaign, now=now)
        sent.update(remediation.removal_cadence_run(campaign=campaign, now=now))
        if campaign.status == CampaignStatus.ACTIVE:
            sent["decision_quality_flagged"] = remediation.decision_quality_flags_notify(campaign=campaign)
        return sent


@shared_task(name="notifications.review_ended_notices", acks_late=True)
def review_ended_notices(organization_id: int, campaign_id: str) -> dict:
    """After the review of a campaign ends: removal notices to remediation owners, decision-quality flags to
    the creator. Both are idempotent (dedupe keys), so a redelivered task sends nothing twice."""
    with scope(organization_id=organization_id):
        campaign = (
            Campaign.objects.select_related("organization", "fallback_remediation_owner__user")
            .filter(pk=campaign_id)
            .first()
        )
        if campaign is None:
            return {}
        return {
            "removal_needed": remediation.removal_needed_send(campaign=campaign),
            "decision_quality_flagged": remediation.decision_quality_flags_notify(campaign=campaign),
        }


@shared_task(name="notifications.exception_reminders_all", soft_time_limit=600, time_limit=660)
def exception_reminders_all() -> int:
    """Beat, daily: reviewers are reminded of the exceptions they granted 14 and 3 days before expiry."""
    from campaigns.exceptions import organizations_with_exceptions_expiring

    ids = organizations_with_exceptions_expiring()
    for organization_id in ids:
        exception_reminders.delay(organization_id)
    return len(ids)


@shared_task(name="notifications.exception_renewals_all", soft_time_limit=600, time_limit=660)
def exception_renewals_all() -> int:
    """Beat, daily: each organization's expired exceptions go into its "Exception renewals <date>" campaign,
    with the organization's fallback reviewer (of these notification settings) for applications without an
    owner who can review."""
    from campaigns.exceptions import organizations_with_expired_exceptions
    from campaigns.tasks import exception_renewals_for

    from .selectors import notification_settings_for

    ids = organizations_with_expired_exceptions()
    for organization_id in ids:
        with scope(organization_id=organization_id):
            fallback_id = notification_settings_for(organization_id=organization_id).fallback_reviewer_id
        exception_renewals_for.delay(organization_id, fallback_id)
    return len(ids)


@shared_task(name="notifications.exception_reminders", acks_late=True, soft_time_limit=600, time_limit=660)
def exception_reminders(organization_id: int) -> int:
    """Safe to run twice: each reminder has a dedupe key (reviewer, expiry date, days before, channel)."""
    return services.exception_reminders_send(organization_id=organization_id)


@shared_task(name="notifications.access_request_notices_all")
def access_request_notices_all() -> int:
    """Beat, hourly: approvers reminded and escalated, temporary access ending announced (7 days, 1 day)."""
    from access_requests.services import organizations_with_open_requests

    ids = organizations_with_open_requests()
    for organization_id in ids:
        access_request_notices.delay(organization_id)
    return len(ids)


@shared_task(name="notifications.access_request_notices", acks_late=True)
def access_request_notices(organization_id: int) -> int:
    """Safe to run twice: every notice has a dedupe key (request, step, recipient, channel)."""
    from . import access_requests

    return access_requests.access_request_notices(organization_id=organization_id)
