"""What other apps call when something happened: one notice per event to its recipients, with the default
recipients of each event."""

from __future__ import annotations

from django.utils import timezone

from campaigns.models import Campaign
from thalian.models import Membership, Organization

from . import selectors
from .models import Event
from .services import (
    CHANNEL_EVENTS,
    REMEDIATION_OUTCOMES,
    FanOut,
    NotificationError,
    Recipient,
    _absolute,
    notifications_create,
)


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
