"""Celery tasks: each takes ids, calls one service, and is safe to run twice (the services claim their row)."""

from __future__ import annotations

from celery import shared_task

from thalian import claims
from thalian.tenancy import scope

from . import comments, request_tickets, services, sweeps


@shared_task(name="itsm.open_ticket")
def open_ticket(organization_id: int, ticket_id: int) -> str:
    return open_tickets(organization_id, [ticket_id]).popitem()[0]


@shared_task(name="itsm.open_tickets")
def open_tickets(organization_id: int, ticket_ids: list[int]) -> dict[str, int]:
    """A batch of tickets (from one decision, or a slice of a bulk one), claimed and recorded together."""
    outcomes: dict[str, int] = {}
    for ticket_id, outcome, retry_in in services.tickets_open(organization_id=organization_id, ticket_ids=ticket_ids):
        # The retry is a new message with a countdown; the ticket row (pending, next_attempt_at) is the truth,
        # so a lost message is picked up by the periodic sweep.
        if outcome == "retry" and retry_in is not None:
            open_ticket.apply_async((organization_id, ticket_id), countdown=retry_in)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


@shared_task(name="itsm.open_request_ticket")
def open_request_ticket(organization_id: int, ticket_id: int) -> str:
    outcome, retry_in = request_tickets.request_ticket_open(organization_id=organization_id, ticket_id=ticket_id)
    if outcome == "retry" and retry_in is not None:
        open_request_ticket.apply_async((organization_id, ticket_id), countdown=retry_in)
    return outcome


@shared_task(name="itsm.send_comment")
def send_comment(organization_id: int, comment_id: int) -> str:
    # The claim's lock tells the sweep this comment's worker is alive, however long the vendor takes.
    with scope(organization_id=organization_id), claims.claim_held(comments.COMMENT_CLAIM, comment_id):
        outcome, retry_in = comments.comment_send(organization_id=organization_id, comment_id=comment_id)
    if outcome == "retry" and retry_in is not None:
        send_comment.apply_async((organization_id, comment_id), countdown=retry_in)
    return outcome


@shared_task(name="itsm.resume_due")
def resume_due() -> int:
    """Periodic: re-send pending tickets and comments whose retry time has come (after outages, lost tasks
    or dead workers), after handing back claims their workers abandoned."""
    tickets = sweeps.tickets_due()
    by_organization: dict[int, list[int]] = {}
    for organization_id, ticket_id in tickets:
        by_organization.setdefault(organization_id, []).append(ticket_id)
    for organization_id, ticket_ids in by_organization.items():
        # In the batches decisions hand over, so a backlog after an outage is claimed ten at a time too.
        for start in range(0, len(ticket_ids), services.ENQUEUE_BATCH):
            open_tickets.delay(organization_id, ticket_ids[start : start + services.ENQUEUE_BATCH])
    comments = sweeps.comments_due()
    for organization_id, comment_id in comments:
        send_comment.delay(organization_id, comment_id)
    request_ticket_ids = request_tickets.request_tickets_due()
    for organization_id, ticket_id in request_ticket_ids:
        open_request_ticket.delay(organization_id, ticket_id)
    return len(tickets) + len(comments) + len(request_ticket_ids)


@shared_task(name="itsm.sync_statuses")
def sync_statuses() -> int:
    """Periodic: one status-sync task per organization with open tickets."""
    organization_ids = sorted(set(sweeps.organizations_with_open_tickets())
                              | set(request_tickets.organizations_with_open_request_tickets()))
    for organization_id in organization_ids:
        sync_organization_statuses.delay(organization_id)
    return len(organization_ids)


@shared_task(name="itsm.sync_organization_statuses")
def sync_organization_statuses(organization_id: int) -> dict:
    counts = sweeps.tickets_sync_status(organization_id=organization_id)
    requests = request_tickets.request_tickets_sync_status(organization_id=organization_id)
    return {key: counts.get(key, 0) + requests.get(key, 0) for key in {**counts, **requests}}
