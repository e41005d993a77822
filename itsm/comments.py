"""Comments on tickets: sending (a reference lookup first after an unknown outcome), failure and retry."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from thalian.audit import audit_record
from thalian.models import User
from thalian.tenancy import scope

from .clients import ItsmPermanentError, ItsmTransientError, TicketClient
from .models import CommentState, Ticket, TicketComment
from .services import TASK_ATTEMPTS, _enqueue_comments, _time_limit_is_unknown_outcome, backoff_seconds

# Name of the advisory lock a worker holds while it posts a comment (thalian/claims.py).
COMMENT_CLAIM = "itsm-comment"
# Attempts a comment gets, whether they end in a vendor error or in a worker that stopped mid-call (about six
# hours of an outage with the backoff above); then it fails visibly and an admin retries it.
COMMENT_MAX_ATTEMPTS = 12


def _comment_post_or_find(client: TicketClient, comment: TicketComment, ticket_id: str) -> bool:
    """Post the comment, or find the one an earlier attempt with an unknown outcome posted. True when found."""
    if comment.lookup_before_send and client.find_comment(ticket_id, comment.reference):
        return True
    with _time_limit_is_unknown_outcome():
        client.add_comment(ticket_id, comment.text)
    return False


def _comment_failed(comment: TicketComment, message: str) -> int:
    """Fail a claimed comment visibly (guarded by its claim); returns 1 when this call failed it."""
    failed = TicketComment.objects.filter(
        pk=comment.pk, state=CommentState.SENDING, claimed_at=comment.claimed_at
    ).update(state=CommentState.FAILED, error=message, claimed_at=None, next_attempt_at=None)
    if failed:
        ticket = comment.ticket
        audit_record(
            action="itsm.comment_failed",
            organization_id=comment.organization_id,
            target=ticket,
            target_label=ticket.key,
            details={"item": ticket.item_id, "error": message[:500], "attempts": comment.attempts},
            system=True,
        )
    return failed


def comment_send(*, organization_id: int, comment_id: int) -> tuple[str, float | None]:
    """Post one pending comment to its ticket, exactly once where the vendor lets us check.

    Returns (outcome, retry_in) like ``ticket_open``. The caller holds the claim's lock (COMMENT_CLAIM)."""
    now = timezone.now()
    with scope(organization_id=organization_id):
        # The claim; a message that arrives before the comment's backoff is over does nothing.
        claimed = (
            TicketComment.objects.filter(pk=comment_id, state=CommentState.PENDING)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .update(state=CommentState.SENDING, attempts=F("attempts") + 1, claimed_at=now)
        )
        if claimed != 1:
            return "skipped", None
        comment = TicketComment.objects.select_related("ticket__connection").get(pk=comment_id)
        ticket = comment.ticket
        connection = ticket.connection
        if connection is None:
            _comment_failed(
                comment, "The ticket's connection was deleted. Add the connection again, then press Retry."
            )
            return "failed", None
        try:
            found = _comment_post_or_find(connection.client(), comment, ticket.remote_id or ticket.key)
        except ItsmTransientError as exc:
            if comment.attempts >= COMMENT_MAX_ATTEMPTS:
                _comment_failed(comment, f"{exc.message} (gave up after {comment.attempts} attempts)")
                return "failed", None
            delay = backoff_seconds(comment.attempts, exc.retry_after)
            TicketComment.objects.filter(pk=comment_id, state=CommentState.SENDING, claimed_at=now).update(
                state=CommentState.PENDING,
                error=f"Will retry: {exc.message}",
                next_attempt_at=now + dt.timedelta(seconds=delay),
                claimed_at=None,
                # Once a post may have gone through, every later attempt looks first.
                lookup_before_send=comment.lookup_before_send or exc.outcome_unknown,
            )
            return "retry", delay if comment.attempts < TASK_ATTEMPTS else None
        except ItsmPermanentError as exc:
            _comment_failed(comment, exc.message)
            return "failed", None
        TicketComment.objects.filter(pk=comment_id, state=CommentState.SENDING, claimed_at=now).update(
            state=CommentState.SENT,
            error="",
            sent_at=timezone.now(),
            claimed_at=None,
            next_attempt_at=None,
            lookup_before_send=False,
        )
        audit_record(
            action="itsm.comment_added",
            organization_id=organization_id,
            target=ticket,
            target_label=ticket.key,
            details={
                "item": ticket.item_id,
                "key": ticket.key,
                "comment": comment.body[:500],
                "found_by_reference": found,
            },
            system=True,
        )
    return "sent", None


def ticket_comments_retry(*, ticket: Ticket, actor: User | None, request=None) -> int:
    """Send the ticket's failed comments again (after fixing the connection, say). Each looks for itself on
    the ticket first: a comment that failed after an interrupted attempt may have arrived. Returns how many."""
    with scope(organization_id=ticket.organization_id), transaction.atomic():
        comment_ids = list(
            TicketComment.objects.select_for_update()
            .filter(ticket=ticket, state=CommentState.FAILED)
            .values_list("pk", flat=True)
        )
        if not comment_ids:
            raise ValidationError("This ticket has no failed comment to retry.")
        TicketComment.objects.filter(pk__in=comment_ids).update(
            state=CommentState.PENDING,
            error="",
            attempts=0,
            next_attempt_at=None,
            claimed_at=None,
            lookup_before_send=True,
        )
        audit_record(
            action="itsm.comments_retried",
            organization_id=ticket.organization_id,
            actor=actor,
            request=request,
            target=ticket,
            target_label=ticket.key,
            details={"item": ticket.item_id, "key": ticket.key, "comments": len(comment_ids)},
        )
        _enqueue_comments(ticket.organization_id, comment_ids)
    return len(comment_ids)
