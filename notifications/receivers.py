"""What the notifications area does when other areas publish events (registered in NotificationsConfig.ready()).

Each receiver hands the event to the notification fan-out, whose de-duplication keys make a second run of the
same event send nothing new."""

from __future__ import annotations

from thalian import events

from . import access_requests, hooks
from .models import Event


def reviewers_assigned(event: events.CampaignLaunched) -> None:
    hooks.notify_event(
        organization_id=event.organization_id, event=Event.REVIEW_ASSIGNED, campaign_id=event.campaign_id
    )


def campaign_cancelled(event: events.CampaignCancelled) -> None:
    hooks.notify_event(
        organization_id=event.organization_id, event=Event.CAMPAIGN_CANCELLED, campaign_id=event.campaign_id
    )


def campaign_completed(event: events.CampaignCompleted) -> None:
    hooks.notify_event(
        organization_id=event.organization_id, event=Event.CAMPAIGN_COMPLETED, campaign_id=event.campaign_id
    )
    hooks.notify_review_ended(organization_id=event.organization_id, campaign_id=event.campaign_id)


def campaign_remediating(event: events.CampaignRemediating) -> None:
    """Remediation owners hear what to remove; the creator hears about flagged reviewers."""
    hooks.notify_review_ended(organization_id=event.organization_id, campaign_id=event.campaign_id)


def items_reassigned(event: events.ItemsReassigned) -> None:
    hooks.notify_items_reassigned(campaign_id=event.campaign_id, reviewer_id=event.reviewer_id, count=event.count)


def items_delegated(event: events.ItemsDelegated) -> None:
    """The delegate hears whose review came to them (once per move: the move id is in the de-duplication key)."""
    hooks.delegation_notice_send(
        organization_id=event.organization_id, campaign_id=event.campaign_id, reviewer_id=event.reviewer_id,
        guest_id=event.guest_id, delegator_email=event.delegator_email, count=event.count, move_id=event.move_id,
    )


def ticket_failed(event: events.TicketFailed) -> None:
    hooks.notify_ticket_failed(
        ticket_id=event.ticket_id,
        organization_id=event.organization_id,
        campaign_id=event.campaign_id,
        application=event.application,
        identity=event.identity,
        error=event.error,
        url=event.url,
        attempt=event.attempt,
    )


def remediation_outcome(event: events.RemediationOutcome) -> None:
    hooks.notify_remediation_outcome(
        campaign_id=event.campaign_id, outcome=event.outcome, counts={label: n for label, n in event.counts}
    )


def access_approval_requested(event: events.AccessApprovalRequested) -> None:
    access_requests.approval_requested(organization_id=event.organization_id, request_id=event.request_id,
                                       approval_id=event.approval_id)


def access_request_decided(event: events.AccessRequestDecided) -> None:
    access_requests.request_decided(organization_id=event.organization_id, request_id=event.request_id,
                                    outcome=event.outcome)


def access_request_verified(event: events.AccessRequestVerified) -> None:
    access_requests.request_verified(organization_id=event.organization_id, request_id=event.request_id,
                                     status=event.status)


def temporary_access_ended(event: events.TemporaryAccessEnded) -> None:
    access_requests.access_ended(organization_id=event.organization_id, request_id=event.request_id)


def access_request_ticket_failed(event: events.AccessRequestTicketFailed) -> None:
    access_requests.ticket_failed(organization_id=event.organization_id, request_id=event.request_id,
                                  error=event.error, purpose=event.purpose)


def register() -> None:
    events.register(events.CampaignLaunched, "notifications.reviewers_assigned", reviewers_assigned)
    events.register(events.CampaignCancelled, "notifications.campaign_cancelled", campaign_cancelled)
    events.register(events.CampaignCompleted, "notifications.campaign_completed", campaign_completed)
    events.register(events.CampaignRemediating, "notifications.campaign_remediating", campaign_remediating)
    events.register(events.ItemsReassigned, "notifications.items_reassigned", items_reassigned)
    events.register(events.ItemsDelegated, "notifications.items_delegated", items_delegated)
    events.register(events.TicketFailed, "notifications.ticket_failed", ticket_failed)
    events.register(events.RemediationOutcome, "notifications.remediation_outcome", remediation_outcome)
    events.register(events.AccessApprovalRequested, "notifications.access_approval_requested",
                    access_approval_requested)
    events.register(events.AccessRequestDecided, "notifications.access_request_decided", access_request_decided)
    events.register(events.AccessRequestVerified, "notifications.access_request_verified", access_request_verified)
    events.register(events.TemporaryAccessEnded, "notifications.temporary_access_ended", temporary_access_ended)
    events.register(events.AccessRequestTicketFailed, "notifications.access_request_ticket_failed",
                    access_request_ticket_failed)
