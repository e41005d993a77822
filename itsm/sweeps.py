"""Periodic work: tickets and comments whose retry time has come, after releasing abandoned claims, and the
status sync of open tickets."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from thalian import claims
from thalian.audit import audit_record
from thalian.tenancy import scope

from .clients import ItsmError
from .comments import COMMENT_CLAIM, COMMENT_MAX_ATTEMPTS, _comment_failed
from .models import CommentState, Ticket, TicketComment, TicketState
from .services import _set_item_ticket, backoff_seconds


def tickets_due() -> list[tuple[int, int]]:
    """(organization_id, ticket_id) of pending tickets whose retry time has come, after releasing claims
    abandoned by workers that died mid-call (older than CLAIM_STALE_SECONDS, well past the task's hard time
    limit). Such a worker may have created the ticket before dying, so the next attempt looks it up by its
    reference first. Platform code: spans organizations."""
    now = timezone.now()
    Ticket.unscoped.filter(state=TicketState.OPENING, claimed_at__lt=now - claims.stale_after()).update(
        state=TicketState.PENDING, claimed_at=None, lookup_before_create=True, next_attempt_at=now
    )
    return list(
        Ticket.unscoped.filter(state=TicketState.PENDING)
        .filter(
            Q(next_attempt_at__isnull=True, created_at__lt=now - dt.timedelta(minutes=2))
            | Q(next_attempt_at__lte=now)
        )
        .order_by("next_attempt_at", "pk")
        .values_list("organization_id", "pk")[:5000]
    )


def comments_due() -> list[tuple[int, int]]:
    """(organization_id, comment_id) of pending comments whose retry time has come, after handing back claims
    abandoned by workers that died mid-call (older than CLAIM_STALE_SECONDS, no worker holding their lock):
    such a worker may have posted the comment, so the next attempt looks for it on the ticket first. A claim
    abandoned on the last attempt fails the comment visibly instead. Platform code: spans organizations."""
    now = timezone.now()
    stale = TicketComment.unscoped.filter(state=CommentState.SENDING, claimed_at__lt=now - claims.stale_after())
    for comment in stale.select_related("ticket").only(
        "pk", "organization_id", "attempts", "claimed_at", "ticket__id", "ticket__key", "ticket__item_id"
    )[:1000]:
        if claims.claim_alive(COMMENT_CLAIM, comment.pk):
            continue
        if comment.attempts >= COMMENT_MAX_ATTEMPTS:
            with scope(organization_id=comment.organization_id):
                _comment_failed(
                    comment,
                    f"The comment did not finish after {comment.attempts} attempt(s) (the worker stopped or the "
                    "task was lost); it may have reached the ticket. Check the ticket, then press Retry: the retry "
                    "looks for the comment before posting it.",
                )
            continue
        # The usual backoff counts from the interrupted attempt; the claim has been stale a while already.
        due = max(now, comment.claimed_at + dt.timedelta(seconds=backoff_seconds(comment.attempts)))
        TicketComment.unscoped.filter(
            pk=comment.pk, state=CommentState.SENDING, claimed_at=comment.claimed_at
        ).update(
            state=CommentState.PENDING,
            claimed_at=None,
            lookup_before_send=True,
            next_attempt_at=due,
            error="Will retry: the previous attempt was interrupted (the worker stopped).",
        )
    return list(
        TicketComment.unscoped.filter(state=CommentState.PENDING)
        .filter(
            Q(next_attempt_at__isnull=True, created_at__lt=now - dt.timedelta(minutes=2))
            | Q(next_attempt_at__lte=now)
        )
        .order_by("pk")
        .values_list("organization_id", "pk")[:5000]
    )


def organizations_with_open_tickets() -> list[int]:
    return list(
        Ticket.unscoped.filter(state__in=[TicketState.OPEN, TicketState.IN_PROGRESS])
        .values_list("organization_id", flat=True)
        .distinct()
    )


def tickets_sync_status(*, organization_id: int) -> dict[str, int]:
    """Read the status of every open ticket of the organization and record changes (one client per connection)."""
    counts = {"checked": 0, "changed": 0, "errors": 0}
    with scope(organization_id=organization_id):
        tickets = (
            Ticket.objects.filter(
                state__in=[TicketState.OPEN, TicketState.IN_PROGRESS], connection__isnull=False
            )
            .select_related("connection")
            .order_by("connection_id", "pk")
        )
        clients: dict[int, Any] = {}
        for ticket in tickets.iterator(chunk_size=500):
            client = clients.get(ticket.connection_id)
            if client is None:
                client = clients[ticket.connection_id] = ticket.connection.client()
            try:
                status = client.get_status(ticket.remote_id or ticket.key)
            except ItsmError:
                counts["errors"] += 1
                continue
            counts["checked"] += 1
            now = timezone.now()
            if status == ticket.state:
                Ticket.objects.filter(pk=ticket.pk).update(status_checked_at=now)
                continue
            with transaction.atomic():
                previous = ticket.state
                ticket.state = status
                ticket.status_checked_at = now
                ticket.save(update_fields=["state", "status_checked_at"])
                _set_item_ticket(ticket)
                audit_record(
                    action="itsm.ticket_status_changed",
                    organization_id=organization_id,
                    target=ticket,
                    target_label=ticket.key,
                    details={"item": ticket.item_id, "key": ticket.key, "from": previous, "to": status},
                    system=True,
                )
            counts["changed"] += 1
    return counts
