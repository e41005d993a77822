"""What the ITSM area does when other areas publish events (registered in ItsmConfig.ready())."""

from __future__ import annotations

from thalian import events

from . import request_tickets, services, verification


def tickets_for_decisions(event: events.DecisionsRecorded | events.ItemDecisionsWithdrawn) -> None:
    """Revoked items get their ticket; a withdrawn revoke drops an unsent ticket or comments on a sent one."""
    services.tickets_on_decisions(organization_id=event.organization_id, item_ids=event.item_ids)


def tickets_for_sign_off(event: events.ReviewerSignedOff) -> None:
    services.tickets_on_sign_off(
        organization_id=event.organization_id,
        reviewer_membership_id=event.reviewer_id,
        campaign_id=event.campaign_id,
    )


def verify_removals(event: events.InventoryChanged) -> None:
    verification.remediation_verify_for_applications(
        organization_id=event.organization_id, application_ids=event.application_ids
    )


def access_request_ticket(event: events.AccessRequestDecided) -> None:
    """An approved access request gets its ticket (or waits in the remediation queue without a connection)."""
    if event.outcome == "approved":
        request_tickets.request_ticket_queue(organization_id=event.organization_id, request_id=event.request_id,
                                             purpose="fulfil")


def temporary_access_ticket(event: events.TemporaryAccessEnded) -> None:
    request_tickets.request_ticket_queue(organization_id=event.organization_id, request_id=event.request_id,
                                         purpose="expiry")


def register() -> None:
    events.register(events.DecisionsRecorded, "itsm.tickets", tickets_for_decisions)
    events.register(events.ItemDecisionsWithdrawn, "itsm.tickets", tickets_for_decisions)
    events.register(events.ReviewerSignedOff, "itsm.tickets", tickets_for_sign_off)
    events.register(events.InventoryChanged, "itsm.verify_removals", verify_removals)
    events.register(events.AccessRequestDecided, "itsm.access_request_tickets", access_request_ticket)
    events.register(events.TemporaryAccessEnded, "itsm.access_request_tickets", temporary_access_ticket)
