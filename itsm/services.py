"""Remediation through the organization's ticketing system: ticket content, and tickets opened, retried and
recorded.

Connections are in ``itsm.itsm_connections``, ticket comments in ``itsm.comments``, the periodic work in
``itsm.sweeps`` and the verification of removal against imported data in ``itsm.verification``."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
from collections.abc import Iterable, Iterator

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, Decision, ReviewItem
from campaigns.remediation import (
    ItemTicket,
    lock_campaigns,
    lock_campaigns_of_items,
    review_items_remediation_open,
    review_items_ticket_record,
    review_items_tickets_record,
)
from thalian.audit import audit_event, audit_record, audit_records
from thalian.broker import send_quickly
from thalian.bulk import rows_update
from thalian.events import TicketFailed, publish
from thalian.models import AuditEvent, Organization, TicketTrigger, User
from thalian.tenancy import scope

from .clients import (
    ItsmPermanentError,
    ItsmTransientError,
    RemoteTicket,
    TicketClient,
    TicketContent,
)
from .itsm_connections import connection_for_application
from .models import (
    ITEM_TICKET_STATUS,
    REMOTE_STATES,
    ApplicationRoute,
    ItsmConnection,
    Ticket,
    TicketComment,
    TicketState,
)
from .selectors import UNTICKETED_CAMPAIGN_STATUSES, unticketed_revokes

logger = logging.getLogger(__name__)

# Exponential backoff for transient failures: 15 s, 30 s, 1 min, ... capped at one hour. A task retries itself
# a few times; after that the ticket waits in `pending` with `next_attempt_at` and the periodic sweep resumes
# it, so an outage of any length loses nothing.
BACKOFF_BASE_SECONDS = 15
BACKOFF_MAX_SECONDS = 3600
# Attempts a task re-schedules itself for; later attempts come from the sweep (`tickets_due`).
TASK_ATTEMPTS = 6


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    if retry_after is not None:
        return min(max(retry_after, 1.0), BACKOFF_MAX_SECONDS)
    delay = min(BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0), BACKOFF_MAX_SECONDS)
    return delay * random.uniform(1.0, 1.1)


# Ticket content ------------------------------------------------------------------------------------------


def item_page_url(item: ReviewItem) -> str:
    return settings.SITE_URL + reverse(
        "review_item_detail", args=[item.organization.slug, item.campaign_id, item.pk]
    )


def ticket_content(item: ReviewItem) -> TicketContent:
    decider = item.decided_by
    decided_by_email = item.decided_by_email or (decider.email if decider else "")
    decided_by = (decider.name if decider and decider.name else "") or decided_by_email or "system"
    if decider and decider.name and decided_by_email:
        decided_by = f"{decider.name} <{decided_by_email}>"
    identity = f"{item.identity_name} <{item.identity_email}>" if item.identity_name else item.identity_email
    campaign = item.campaign
    url = item_page_url(item)
    reason = item.decision_reason or "(no reason given)"
    decided_on = timezone.localtime(item.decided_at).strftime("%Y-%m-%d %H:%M %Z") if item.decided_at else ""
    description = "\n".join(
        [
            "An access review decided that this access must be removed.",
            "",
            f"Identity: {identity}",
            f"Application: {item.application_name}",
            f"Role: {item.role}",
            f"Decided by: {decided_by}" + (f" on {decided_on}" if decided_on else ""),
            f"Reason: {reason}",
            f"Campaign: {campaign.title} (due {campaign.due_date.isoformat()})",
            f"Review item: {url}",
            "",
            "Thalian confirms the removal from the application's next import or sync, not from this ticket.",
        ]
    )
    return TicketContent(
        summary=f"Remove {item.role} access for {item.identity_email} in {item.application_name}",
        description=description,
        item_url=url,
        identity_email=item.identity_email,
        identity_name=item.identity_name,
        application=item.application_name,
        role=item.role,
        decided_by=decided_by,
        reason=reason,
        campaign=campaign.title,
        due_date=campaign.due_date.isoformat(),
        requester_email=decided_by_email if "@" in decided_by_email else "",
        reference=f"thalian-item-{item.pk}",
    )


# Tickets -------------------------------------------------------------------------------------------------


def _set_item_ticket(ticket: Ticket) -> None:
    review_items_ticket_record(
        item_ids=[ticket.item_id],
        status=ITEM_TICKET_STATUS[TicketState(ticket.state)],
        key=ticket.key,
        url=ticket.url,
        error=ticket.error,
    )


# Tickets are handed to workers in batches: fewer broker messages for a bulk decision of thousands of
# items, while several workers still share the work. Each ticket is still claimed on its own.
ENQUEUE_BATCH = 50


def _on_commit_send(task, calls: list[tuple]) -> None:
    """After commit, one quick hand-over; with the broker down the rows stay pending for the periodic sweep."""
    transaction.on_commit(lambda: send_quickly(task, calls), robust=True)


def campaign_remediation_url(*, organization_slug: str, campaign_id) -> str:
    return settings.SITE_URL + reverse("campaign_remediation", args=[organization_slug, campaign_id])


def _enqueue_open(organization_id: int, ticket_ids: list[int]) -> None:
    from .tasks import open_tickets

    if ticket_ids:
        _on_commit_send(
            open_tickets,
            [
                (organization_id, ticket_ids[start : start + ENQUEUE_BATCH])
                for start in range(0, len(ticket_ids), ENQUEUE_BATCH)
            ],
        )


def _enqueue_comments(organization_id: int, comment_ids: list[int]) -> None:
    from .tasks import send_comment

    if comment_ids:
        _on_commit_send(send_comment, [(organization_id, comment_id) for comment_id in comment_ids])


def _withdrawal_text(item: ReviewItem) -> str:
    who = item.decided_by_email or (item.decided_by.email if item.decided_by else "") or "a reviewer"
    decision = item.get_decision_display().lower() if item.decision else "undecided"
    reason = item.decision_reason or "(no reason given)"
    return (
        f"The revoke decision was withdrawn: {who} changed it to {decision}. Reason: {reason}. "
        f"No removal is needed for {item.identity_email} in {item.application_name} ({item.role}). "
        f"Review item: {item_page_url(item)}"
    )


def _reinstated_text(item: ReviewItem) -> str:
    who = item.decided_by_email or "a reviewer"
    return (
        f"The access is to be removed after all: {who} decided revoke again. "
        f"Reason: {item.decision_reason or '(no reason given)'}."
    )


def _queue_tickets(organization_id: int, items) -> list[int]:
    """Inside the caller's transaction and scope: one pending ticket per item of ``items`` (revoked items
    without a ticket), on the connection routed for its application or the default one, enqueued to open
    after the commit. Returns the ids of the tickets this call created; a concurrent call's are not counted."""
    rows = list(items.values_list("pk", "campaign_id", "application_id"))
    if not rows:
        return []
    now = timezone.now()
    routes = dict(ApplicationRoute.objects.values_list("application_id", "connection_id"))
    default_id = ItsmConnection.objects.filter(is_default=True).values_list("pk", flat=True).first()
    Ticket.objects.bulk_create(
        [
            Ticket(
                organization_id=organization_id,
                item_id=pk,
                campaign_id=campaign_id,
                connection_id=routes.get(app_id, default_id),
                state=TicketState.PENDING,
                created_at=now,
            )
            for pk, campaign_id, app_id in rows
            if routes.get(app_id, default_id) is not None
        ],
        batch_size=1000,
        # A concurrent call may have created some: the one-to-one column keeps one per item.
        ignore_conflicts=True,
    )
    item_ids = [pk for pk, _c, _a in rows]
    # ignore_conflicts leaves primary keys unset: read back the pending tickets this call created.
    created = list(
        Ticket.objects.filter(item_id__in=item_ids, state=TicketState.PENDING, created_at=now).values_list(
            "pk", "item_id"
        )
    )
    review_items_ticket_record(item_ids=[item for _pk, item in created], status="pending")
    queued = [pk for pk, _item in created]
    _enqueue_open(organization_id, queued)
    return queued


def tickets_open_unticketed(*, organization: Organization, campaign: Campaign, actor: User | None,
                            request=None) -> int:
    """"Open tickets now": one ticket for every revoke of the campaign that has none although a connection
    now applies (revokes recorded before any connection existed). Safe to repeat: each revoke gets exactly one
    ticket, so a second call opens nothing. Returns how many tickets were opened."""
    with scope(organization), transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status not in UNTICKETED_CAMPAIGN_STATUSES:
            raise ValidationError(
                f"Tickets are opened for revokes of active or completed campaigns; this campaign is "
                f"{campaign.get_status_display().lower()}."
            )
        if not ItsmConnection.objects.exists():
            raise ValidationError(
                "No ticketing system is connected: add one under Settings → Ticketing (ITSM) first."
            )
        opened = _queue_tickets(organization.pk, unticketed_revokes(organization=organization, campaign=campaign))
        if opened:
            audit_record(
                action="itsm.tickets_opened_now",
                organization_id=organization.pk,
                actor=actor,
                request=request,
                target=campaign,
                details={"campaign": str(campaign.pk), "count": len(opened)},
            )
    return len(opened)


def tickets_on_decisions(*, organization_id: int, item_ids: Iterable[int]) -> dict[str, int]:
    """Called after review decisions commit. Opens a ticket for every revoked item that has none, adds a
    withdrawal comment to opened tickets whose revoke was changed, and drops tickets not yet sent.

    With the organization's trigger set to sign-off, revoked items get their ticket once signed off."""
    item_ids = list(item_ids)
    result = {"queued": 0, "withdrawn": 0, "cancelled": 0, "reinstated": 0}
    if not item_ids:
        return result
    organization = Organization.objects.get(pk=organization_id)
    with scope(organization), transaction.atomic():
        # Campaigns first, then items and tickets: the order decision writers use, so the two never deadlock;
        # it also makes concurrent calls for one campaign take turns, each reading the decisions as they are.
        lock_campaigns_of_items(item_ids)
        has_connection = ItsmConnection.objects.exists()
        revoked = ReviewItem.objects.filter(pk__in=item_ids, decision=Decision.REVOKE)
        # Removal is then verified by the next import of the application.
        review_items_remediation_open(item_ids=item_ids)

        if has_connection:
            due = revoked.filter(itsm_ticket__isnull=True)
            if organization.ticket_trigger == TicketTrigger.ON_SIGN_OFF:
                due = due.filter(signed_off_at__isnull=False)
            result["queued"] = len(_queue_tickets(organization_id, due))

        # Revoke changed to approve / exception.
        withdrawn = Ticket.objects.filter(item_id__in=item_ids).exclude(item__decision=Decision.REVOKE)
        # Locked before they are deleted: a worker's claim (pending -> opening) waits for this transaction and
        # then finds nothing, and a ticket a worker claimed first is not matched here (its opening is followed
        # by a withdrawal comment instead).
        not_sent = list(
            withdrawn.filter(state__in=[TicketState.PENDING, TicketState.FAILED])
            .select_for_update(of=("self",))
            .values_list("pk", "item_id")
        )
        if not_sent:
            Ticket.objects.filter(pk__in=[pk for pk, _item in not_sent]).delete()
            review_items_ticket_record(item_ids=[item for _pk, item in not_sent], status="")
            result["cancelled"] = len(not_sent)
        now = timezone.now()
        withdrawals = [
            TicketComment(organization_id=organization_id, ticket=ticket, body=_withdrawal_text(ticket.item))
            for ticket in withdrawn.filter(state__in=REMOTE_STATES, withdrawn_at__isnull=True).select_related(
                "item__decided_by", "item__organization"
            )
        ]
        # Back to revoke after a withdrawal comment: say so on the same ticket.
        reinstatements = [
            TicketComment(organization_id=organization_id, ticket=ticket, body=_reinstated_text(ticket.item))
            for ticket in Ticket.objects.filter(
                item_id__in=item_ids,
                item__decision=Decision.REVOKE,
                withdrawn_at__isnull=False,
                state__in=REMOTE_STATES,
            ).select_related("item")
        ]
        Ticket.objects.filter(pk__in=[c.ticket_id for c in withdrawals]).update(withdrawn_at=now)
        Ticket.objects.filter(pk__in=[c.ticket_id for c in reinstatements]).update(withdrawn_at=None)
        result["withdrawn"], result["reinstated"] = len(withdrawals), len(reinstatements)
        for action, comments in (
            ("itsm.revoke_withdrawn", withdrawals),
            ("itsm.revoke_reinstated", reinstatements),
        ):
            if not comments:
                continue
            created = TicketComment.objects.bulk_create(comments)
            _enqueue_comments(organization_id, [c.pk for c in created])
            for comment in created:
                audit_record(
                    action=action,
                    organization_id=organization_id,
                    target=comment.ticket,
                    target_label=comment.ticket.key,
                    details={
                        "item": comment.ticket.item_id,
                        "key": comment.ticket.key,
                        "comment": comment.body[:500],
                    },
                    system=True,
                )
    return result


def tickets_on_sign_off(*, organization_id: int, reviewer_membership_id: int, campaign_id) -> dict[str, int]:
    """Called after a reviewer signs off: with the sign-off trigger, their revoked items get tickets now."""
    organization = Organization.objects.get(pk=organization_id)
    if organization.ticket_trigger != TicketTrigger.ON_SIGN_OFF:
        return {"queued": 0}
    with scope(organization):
        item_ids = list(
            ReviewItem.objects.filter(
                campaign_id=campaign_id,
                reviewer_id=reviewer_membership_id,
                decision=Decision.REVOKE,
                signed_off_at__isnull=False,
                itsm_ticket__isnull=True,
            ).values_list("pk", flat=True)
        )
    return tickets_on_decisions(organization_id=organization_id, item_ids=item_ids)


def ticket_schedule_retry(ticket, exc: ItsmTransientError) -> float:
    """Back to pending with the time of the next attempt (a remediation or an access request ticket). Returns
    the delay."""
    delay = backoff_seconds(ticket.attempts, exc.retry_after)
    ticket.state = TicketState.PENDING
    ticket.error = f"Will retry: {exc.message}"
    ticket.next_attempt_at = timezone.now() + dt.timedelta(seconds=delay)
    ticket.claimed_at = None
    # Once a create may have gone through, every later attempt looks first, until the ticket is found.
    ticket.lookup_before_create = ticket.lookup_before_create or exc.outcome_unknown
    ticket.save(update_fields=["state", "error", "next_attempt_at", "claimed_at", "lookup_before_create"])
    return delay


def _record_transient(ticket: Ticket, exc: ItsmTransientError) -> float:
    delay = ticket_schedule_retry(ticket, exc)
    _set_item_ticket(ticket)
    return delay


def _create_or_find(client: TicketClient, ticket: Ticket, content: TicketContent) -> tuple[RemoteTicket, bool]:
    """Create the remote ticket, or find the one an earlier attempt with an unknown outcome created.

    Returns (remote, found): found is True when the ticket already existed under the item's reference."""
    if ticket.lookup_before_create and content.reference:
        remote = client.find_ticket(content.reference)
        if remote is not None:
            return remote, True
    with _time_limit_is_unknown_outcome():
        return client.create_ticket(content), False


@contextlib.contextmanager
def _time_limit_is_unknown_outcome() -> Iterator[None]:
    """The task ran out of time during a vendor call: the request may have been carried out."""
    try:
        yield
    except SoftTimeLimitExceeded as exc:
        raise ItsmTransientError(
            "The ticketing system took longer than the task's time limit.", outcome_unknown=True
        ) from exc


def ticket_open(*, organization_id: int, ticket_id: int) -> tuple[str, float | None]:
    """Open the remote ticket for one pending Ticket, exactly once (see ``tickets_open``).

    Returns (outcome, retry_in): outcome is "opened", "failed", "retry" or "skipped" (another worker owns it or
    it is already done); retry_in is the delay before the next attempt for "retry"."""
    [(_ticket_id, outcome, retry_in)] = tickets_open(organization_id=organization_id, ticket_ids=[ticket_id])
    return outcome, retry_in


# Tickets a worker claims and records together: the claim, the read and the record of a batch are one
# statement each, instead of a handful per ticket. Small enough that a batch is recorded soon after its
# remote calls and that a worker dying mid-batch leaves few claims for the sweep (which looks them up by
# their reference before creating, so none is created twice).
CLAIM_BATCH = 10


def tickets_open(*, organization_id: int, ticket_ids: list[int]) -> list[tuple[int, str, float | None]]:
    """Open the remote tickets of pending Tickets, each exactly once, ``CLAIM_BATCH`` at a time.

    Returns (ticket id, outcome, retry_in) for every id given, in order; see ``ticket_open``."""
    outcomes: dict[int, tuple[str, float | None]] = {}
    with scope(organization_id=organization_id):
        for start in range(0, len(ticket_ids), CLAIM_BATCH):
            outcomes.update(_open_batch(organization_id, ticket_ids[start : start + CLAIM_BATCH]))
    return [(pk, *outcomes.get(pk, ("skipped", None))) for pk in ticket_ids]


def _claim(organization_id: int, ticket_ids: list[int], now: dt.datetime) -> list[int]:
    """The claim: one conditional UPDATE moves the batch's pending tickets to opening and returns the ids it
    moved, so of two workers racing for a ticket exactly one gets it."""
    if not ticket_ids:
        return []
    db = connections[Ticket.objects.db]
    table = db.ops.quote_name(Ticket._meta.db_table)
    placeholders = ", ".join(["%s"] * len(ticket_ids))
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET state = %s, claimed_at = %s, attempts = attempts + 1 "
            f"WHERE organization_id = %s AND state = %s AND id IN ({placeholders}) RETURNING id",
            [TicketState.OPENING, db.ops.adapt_datetimefield_value(now), organization_id, TicketState.PENDING,
             *ticket_ids],
        )
        return [pk for (pk,) in cursor.fetchall()]


def _open_batch(organization_id: int, ticket_ids: list[int]) -> dict[int, tuple[str, float | None]]:
    outcomes: dict[int, tuple[str, float | None]] = {}
    claimed = _claim(organization_id, list(dict.fromkeys(ticket_ids)), timezone.now())
    tickets = Ticket.objects.select_related(
        "item__campaign", "item__decided_by", "item__organization", "connection"
    ).filter(pk__in=claimed)
    opened: list[tuple[Ticket, RemoteTicket, bool]] = []
    try:
        for ticket in sorted(tickets, key=lambda t: claimed.index(t.pk)):
            item = ticket.item
            connection = ticket.connection or connection_for_application(
                organization_id=organization_id, application_id=item.application_id
            )
            if connection is None:
                outcomes[ticket.pk] = _fail(
                    ticket,
                    "No ticketing connection is configured for this application. Add one under "
                    "Settings → Ticketing and press Retry.",
                ), None
                continue
            if ticket.connection_id != connection.pk:
                ticket.connection = connection
                ticket.save(update_fields=["connection"])
            try:
                remote, found = _create_or_find(connection.client(), ticket, ticket_content(item))
            except ItsmTransientError as exc:
                delay = _record_transient(ticket, exc)
                outcomes[ticket.pk] = "retry", delay if ticket.attempts < TASK_ATTEMPTS else None
            except ItsmPermanentError as exc:
                outcomes[ticket.pk] = _fail(ticket, exc.message), None
            else:
                opened.append((ticket, remote, found))
                outcomes[ticket.pk] = "opened", None
    finally:
        # Even when something unexpected stops the batch, the tickets created so far are recorded now.
        _opened(opened)
    return outcomes


def _fail(ticket: Ticket, message: str) -> str:
    with transaction.atomic():
        lock_campaigns([ticket.campaign_id])  # campaign before ticket and item, as everywhere
        ticket.state = TicketState.FAILED
        ticket.error = message
        ticket.claimed_at = None
        ticket.next_attempt_at = None
        ticket.save(update_fields=["state", "error", "claimed_at", "next_attempt_at"])
        _set_item_ticket(ticket)
        audit_record(
            action="itsm.ticket_failed",
            organization_id=ticket.organization_id,
            target=ticket,
            target_label=str(ticket.item),
            details={"item": ticket.item_id, "error": message[:500], "attempts": ticket.attempts},
            system=True,
        )
        # A ticket retried by hand may fail again: each failure after the first is a new notice to admins.
        failures = AuditEvent.objects.filter(
            organization_id=ticket.organization_id,
            action="itsm.ticket_failed",
            target_type="ticket",
            target_id=str(ticket.pk),
        ).count()
        item = ticket.item
        publish(
            TicketFailed(
                organization_id=ticket.organization_id,
                ticket_id=ticket.pk,
                campaign_id=str(ticket.campaign_id),
                application=item.application_name,
                identity=item.identity_email,
                error=message,
                url=campaign_remediation_url(
                    organization_slug=item.organization.slug, campaign_id=ticket.campaign_id
                ),
                attempt=failures if failures > 1 else None,
            )
        )
    return "failed"


def _opened(opened: list[tuple[Ticket, RemoteTicket, bool]]) -> None:
    """Record the remote tickets of a batch: tickets, their items and audit events, one statement each."""
    if not opened:
        return
    now = timezone.now()
    with transaction.atomic():
        # Campaigns first: a decision committed before this reads as it is below, and one committed after it
        # is handled by its own event, whose receiver waits for this lock and then sees the withdrawal.
        lock_campaigns({ticket.campaign_id for ticket, _remote, _found in opened})
        for ticket, remote, _found in opened:
            ticket.state = remote.status if remote.status in REMOTE_STATES else TicketState.OPEN
            ticket.key = remote.key
            ticket.url = remote.url
            ticket.remote_id = remote.remote_id
            ticket.error = ""
            ticket.opened_at = now
            ticket.claimed_at = None
            ticket.next_attempt_at = None
            ticket.lookup_before_create = False
        tickets = [ticket for ticket, _remote, _found in opened]
        organization_id = tickets[0].organization_id
        rows_update(
            Ticket,
            organization_id=organization_id,
            rows=[(t.pk, t.state, t.key, t.url, t.remote_id) for t in tickets],
            columns=["state", "key", "url", "remote_id"],
            constants={"error": "", "opened_at": now, "claimed_at": None, "next_attempt_at": None,
                       "lookup_before_create": False},
        )  # fmt: skip
        review_items_tickets_record(
            organization_id=organization_id,
            tickets=[
                ItemTicket(
                    item_id=t.item_id, status=ITEM_TICKET_STATUS[TicketState(t.state)], key=t.key, url=t.url
                )
                for t in tickets
            ]
        )
        audit_records(
            [
                audit_event(
                    action="itsm.ticket_opened",
                    organization_id=ticket.organization_id,
                    target=ticket,
                    target_label=remote.key,
                    details={
                        "item": ticket.item_id,
                        "key": remote.key,
                        "url": remote.url,
                        "connection": ticket.connection_id,
                        "found_by_reference": found,
                    },
                    system=True,
                )
                for ticket, remote, found in opened
            ]
        )
        # The decision may have changed while the remote calls were in flight.
        by_item = {ticket.item_id: ticket for ticket in tickets}
        changed = ReviewItem.objects.filter(pk__in=list(by_item)).exclude(decision=Decision.REVOKE)
        comments = [
            TicketComment(
                organization_id=by_item[item.pk].organization_id, ticket=by_item[item.pk], body=_withdrawal_text(item)
            )
            for item in changed.select_related("decided_by", "organization")
        ]
        if comments:
            Ticket.objects.filter(pk__in=[c.ticket_id for c in comments]).update(withdrawn_at=now)
            created = TicketComment.objects.bulk_create(comments)
            _enqueue_comments(tickets[0].organization_id, [c.pk for c in created])


def ticket_retry(*, ticket: Ticket, actor: User | None, request=None) -> Ticket:
    """Put a failed ticket back in the queue (after fixing the connection, say)."""
    with scope(organization_id=ticket.organization_id), transaction.atomic():
        lock_campaigns([ticket.campaign_id])
        updated = Ticket.objects.filter(pk=ticket.pk, state=TicketState.FAILED).update(
            state=TicketState.PENDING, error="", attempts=0, next_attempt_at=None, claimed_at=None
        )
        if updated != 1:
            raise ValidationError("Only a failed ticket can be retried.")
        ticket.refresh_from_db()
        if (
            ticket.connection_id is None
            or not ItsmConnection.objects.filter(pk=ticket.connection_id).exists()
        ):
            item = ticket.item
            ticket.connection = connection_for_application(
                organization_id=ticket.organization_id, application_id=item.application_id
            )
            ticket.save(update_fields=["connection"])
        _set_item_ticket(ticket)
        audit_record(
            action="itsm.ticket_retried",
            organization_id=ticket.organization_id,
            actor=actor,
            request=request,
            target=ticket,
            target_label=str(ticket.item),
            details={"item": ticket.item_id},
        )
        _enqueue_open(ticket.organization_id, [ticket.pk])
    return ticket


def tickets_retry_failed(*, organization: Organization, campaign_id, actor: User | None, request=None) -> int:
    with scope(organization):
        tickets = list(Ticket.objects.filter(campaign_id=campaign_id, state=TicketState.FAILED))
    for ticket in tickets:
        ticket_retry(ticket=ticket, actor=actor, request=request)
    return len(tickets)
