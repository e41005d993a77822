"""Tickets for access requests: an approved grant or revoke, and the removal of temporary access at its end.

Each request has at most one ticket per purpose (a unique key), opened on the connection routed for its
application (or the default) with the same claim, backoff, reference lookup before a retry and visible failure
as remediation tickets (``services.ticket_open``). Without a connection the request waits in the remediation
queue of its application's owner, who opens the ticket once a connection exists."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from access_requests.models import AccessRequest, RequestStatus, RequestType
from access_requests.services import request_ticket_record
from thalian import claims
from thalian.audit import audit_record
from thalian.events import AccessRequestTicketFailed, publish
from thalian.tenancy import scope

from .clients import ItsmError, ItsmPermanentError, ItsmTransientError, RemoteTicket, TicketContent
from .itsm_connections import connection_for_application
from .models import REMOTE_STATES, RequestTicket, RequestTicketPurpose, TicketState
from .services import TASK_ATTEMPTS, _create_or_find, _on_commit_send, ticket_schedule_retry


def request_page_url(req: AccessRequest) -> str:
    return settings.SITE_URL + reverse("access_request_detail", args=[req.organization.slug, req.pk])


def request_ticket_content(ticket: RequestTicket) -> TicketContent:
    req = ticket.access_request
    identity = req.identity
    who = f"{identity.name} <{identity.email}>" if identity.name else identity.email
    removing = ticket.purpose == RequestTicketPurpose.EXPIRY or req.type == RequestType.REVOKE
    verb = "Remove" if removing else "Grant"
    approvals = sorted(req.approvals.all(), key=lambda a: a.stage)
    approvers = ", ".join(a.decided_by_email for a in approvals if a.decided_by_email) or "(none)"
    if ticket.purpose == RequestTicketPurpose.EXPIRY:
        why = f"The temporary access granted by request {req.pk} ended on {req.ends_at:%Y-%m-%d %H:%M %Z}."
        end = f"Ended: {req.ends_at:%Y-%m-%d %H:%M %Z}"
    else:
        why = f"An access request was approved ({req.get_type_display().lower()})."
        end = (f"Temporary until: {req.ends_at:%Y-%m-%d %H:%M %Z} (Thalian opens the removal ticket then)"
               if req.ends_at else "Until: permanent" if req.type == RequestType.GRANT else "")
    url = request_page_url(req)
    lines = [why, "", f"Type: {'revoke' if removing else 'grant'}", f"Identity: {who}",
             f"Application: {req.application.name}", f"Role: {req.role}"]
    lines += [end] if end else []
    lines += [f"Requested by: {req.requested_by_email}", f"Reason: {req.reason}", f"Approved by: {approvers}",
              f"Access request: {url}", "",
              "Thalian confirms the change from the application's next import or sync, not from this ticket."]
    return TicketContent(
        summary=f"{verb} {req.role} access for {identity.email} in {req.application.name}",
        description="\n".join(lines),
        item_url=url,
        identity_email=identity.email,
        identity_name=identity.name,
        application=req.application.name,
        role=req.role,
        decided_by=approvers,
        reason=req.reason,
        campaign=f"Access request {req.short_id}",
        due_date=req.ends_at.date().isoformat() if req.ends_at and not removing else "",
        requester_email=req.requested_by_email,
        reference=ticket.reference,
    )


def _enqueue(organization_id: int, ticket_ids: list[int]) -> None:
    from .tasks import open_request_ticket

    if ticket_ids:
        _on_commit_send(open_request_ticket, [(organization_id, pk) for pk in ticket_ids])


def request_ticket_queue(*, organization_id: int, request_id, purpose: str) -> RequestTicket | None:
    """Receiver work (inside the dispatcher's transaction and scope): one pending ticket for the request and
    purpose, or, with no connection, the request waits in the remediation queue. Safe to repeat."""
    req = (AccessRequest.objects.select_for_update(of=("self",)).select_related("application", "identity")
           .filter(pk=request_id).first())
    if req is None:
        return None
    if purpose == RequestTicketPurpose.FULFIL and req.status != RequestStatus.APPROVED:
        return None  # already verified (or another worker queued it)
    existing = RequestTicket.objects.filter(access_request=req, purpose=purpose).first()
    if existing is not None:
        return existing
    connection = connection_for_application(organization_id=organization_id, application_id=req.application_id)
    if connection is None:
        if req.ticket_state != "waiting":
            request_ticket_record(
                req=req, purpose=purpose, state="waiting",
                trail=f"No ticketing connection applies to {req.application.name}: the change waits in the "
                "remediation queue of the application's owner.",
            )
        return None
    ticket = RequestTicket.objects.create(organization_id=organization_id, access_request=req, purpose=purpose,
                                          connection=connection)
    request_ticket_record(req=req, purpose=purpose, state=TicketState.PENDING,
                          trail=f"Ticket queued in {connection.name}.")
    _enqueue(organization_id, [ticket.pk])
    return ticket


def request_tickets_open_waiting(*, organization, actor, request_ids: list | None = None, request=None) -> int:
    """"Open tickets now" in the remediation queue: the waiting requests get their ticket once a connection
    applies. Returns how many tickets were queued."""
    opened = 0
    with scope(organization), transaction.atomic():
        waiting = AccessRequest.objects.filter(ticket_state="waiting")
        if request_ids is not None:
            waiting = waiting.filter(pk__in=request_ids)
        for req in list(waiting):
            purpose = RequestTicketPurpose.EXPIRY if req.access_ended_at else RequestTicketPurpose.FULFIL
            if connection_for_application(organization_id=organization.pk, application_id=req.application_id) is None:
                continue
            if request_ticket_queue(organization_id=organization.pk, request_id=req.pk, purpose=purpose):
                opened += 1
        if opened:
            audit_record(action="itsm.request_tickets_opened_now", organization=organization, actor=actor,
                         request=request, target_type="access_request", details={"count": opened})
    if not opened and request_ids:
        raise ValidationError("No ticketing connection applies to these applications yet: add one under "
                              "Settings → Ticketing (ITSM) first.")
    return opened


def _record(ticket: RequestTicket, *, trail: str = "") -> None:
    request_ticket_record(req=ticket.access_request, purpose=ticket.purpose, state=ticket.state, key=ticket.key,
                          url=ticket.url, error=ticket.error, trail=trail)


def request_ticket_open(*, organization_id: int, ticket_id: int) -> tuple[str, float | None]:
    """Open one pending request ticket, exactly once: "opened", "failed", "retry" or "skipped"."""
    with scope(organization_id=organization_id):
        claimed = RequestTicket.objects.filter(pk=ticket_id, state=TicketState.PENDING).update(
            state=TicketState.OPENING, claimed_at=timezone.now(), attempts=F("attempts") + 1)
        if claimed != 1:
            return "skipped", None
        ticket = RequestTicket.objects.select_related(
            "access_request__identity", "access_request__application", "access_request__organization", "connection"
        ).prefetch_related("access_request__approvals").get(pk=ticket_id)
        req = ticket.access_request
        connection = ticket.connection or connection_for_application(
            organization_id=organization_id, application_id=req.application_id)
        if connection is None:
            return _fail(ticket, "No ticketing connection is configured for this application. Add one under "
                                 "Settings → Ticketing and press Retry."), None
        if ticket.connection_id != connection.pk:
            ticket.connection = connection
            ticket.save(update_fields=["connection"])
        try:
            remote, found = _create_or_find(connection.client(), ticket, request_ticket_content(ticket))
        except ItsmTransientError as exc:
            with transaction.atomic():
                delay = ticket_schedule_retry(ticket, exc)
                _record(ticket)
            return "retry", delay if ticket.attempts < TASK_ATTEMPTS else None
        except ItsmPermanentError as exc:
            return _fail(ticket, exc.message), None
        _opened(ticket, remote, found_by_reference=found)
    return "opened", None


def _fail(ticket: RequestTicket, message: str) -> str:
    with transaction.atomic():
        ticket.state = TicketState.FAILED
        ticket.error = message
        ticket.claimed_at = None
        ticket.next_attempt_at = None
        ticket.save(update_fields=["state", "error", "claimed_at", "next_attempt_at"])
        _record(ticket, trail=f"Ticket failed after {ticket.attempts} attempt(s): {message}")
        audit_record(action="itsm.request_ticket_failed", organization_id=ticket.organization_id, target=ticket,
                     details={"access_request": str(ticket.access_request_id), "purpose": ticket.purpose,
                              "error": message[:500], "attempts": ticket.attempts}, system=True)
        publish(AccessRequestTicketFailed(organization_id=ticket.organization_id,
                                          request_id=str(ticket.access_request_id), purpose=ticket.purpose,
                                          error=message))
    return "failed"


def _opened(ticket: RequestTicket, remote: RemoteTicket, *, found_by_reference: bool) -> None:
    with transaction.atomic():
        ticket.state = remote.status if remote.status in REMOTE_STATES else TicketState.OPEN
        ticket.key, ticket.url, ticket.remote_id = remote.key, remote.url, remote.remote_id
        ticket.error = ""
        ticket.opened_at = timezone.now()
        ticket.claimed_at = ticket.next_attempt_at = None
        ticket.lookup_before_create = False
        ticket.save(update_fields=["state", "key", "url", "remote_id", "error", "opened_at", "claimed_at",
                                   "next_attempt_at", "lookup_before_create"])
        what = "removal ticket" if ticket.purpose == RequestTicketPurpose.EXPIRY else "ticket"
        _record(ticket, trail=f"Opened {what} {remote.key} in {ticket.connection.name}"
                + (" (found by its reference after an interrupted attempt)" if found_by_reference else "") + ".")
        audit_record(action="itsm.request_ticket_opened", organization_id=ticket.organization_id, target=ticket,
                     target_label=remote.key, details={"access_request": str(ticket.access_request_id),
                                                       "purpose": ticket.purpose, "key": remote.key,
                                                       "url": remote.url, "found_by_reference": found_by_reference},
                     system=True)


def request_ticket_retry(*, ticket: RequestTicket, actor, request=None) -> RequestTicket:
    with scope(organization_id=ticket.organization_id), transaction.atomic():
        updated = RequestTicket.objects.filter(pk=ticket.pk, state=TicketState.FAILED).update(
            state=TicketState.PENDING, error="", attempts=0, next_attempt_at=None, claimed_at=None)
        if updated != 1:
            raise ValidationError("Only a failed ticket can be retried.")
        ticket.refresh_from_db()
        _record(ticket, trail="Ticket retried.")
        audit_record(action="itsm.request_ticket_retried", organization_id=ticket.organization_id, actor=actor,
                     request=request, target=ticket, details={"access_request": str(ticket.access_request_id)})
        _enqueue(ticket.organization_id, [ticket.pk])
    return ticket


def request_tickets_due() -> list[tuple[int, int]]:
    """Pending request tickets whose retry time has come, after releasing abandoned claims (whose create may
    have reached the vendor: the next attempt looks the reference up first). Platform code."""
    now = timezone.now()
    RequestTicket.unscoped.filter(state=TicketState.OPENING, claimed_at__lt=now - claims.stale_after()).update(
        state=TicketState.PENDING, claimed_at=None, lookup_before_create=True, next_attempt_at=now)
    return list(
        RequestTicket.unscoped.filter(state=TicketState.PENDING)
        .filter(Q(next_attempt_at__isnull=True, created_at__lt=now - dt.timedelta(minutes=2))
                | Q(next_attempt_at__lte=now))
        .order_by("next_attempt_at", "pk").values_list("organization_id", "pk")[:5000]
    )


def request_tickets_sync_status(*, organization_id: int) -> dict[str, int]:
    """Read the status of the organization's open request tickets and copy changes onto their requests (the
    request's status still changes only when an import or sync shows the access)."""
    counts = {"checked": 0, "changed": 0, "errors": 0}
    with scope(organization_id=organization_id):
        tickets = (RequestTicket.objects.filter(state__in=[TicketState.OPEN, TicketState.IN_PROGRESS],
                                                connection__isnull=False)
                   .select_related("connection", "access_request").order_by("connection_id", "pk"))
        for ticket in tickets.iterator(chunk_size=500):
            try:
                status = ticket.connection.client().get_status(ticket.remote_id or ticket.key)
            except ItsmError:
                counts["errors"] += 1
                continue
            counts["checked"] += 1
            if status == ticket.state:
                continue
            with transaction.atomic():
                previous, ticket.state = ticket.state, status
                ticket.save(update_fields=["state"])
                _record(ticket, trail=f"Ticket {ticket.key} is now {status.replace('_', ' ')} (was "
                        f"{previous.replace('_', ' ')}).")
            counts["changed"] += 1
    return counts


def organizations_with_open_request_tickets() -> list[int]:
    """Platform code: spans organizations."""
    return list(RequestTicket.unscoped.filter(state__in=[TicketState.OPEN, TicketState.IN_PROGRESS])
                .values_list("organization_id", flat=True).distinct().order_by())
