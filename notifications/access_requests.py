"""Notices about access requests: approvers are asked (guests get their personal link), reminded and escalated;
requesters hear the outcome; identities and application owners are told before temporary access ends.

Every notice goes through the fan-out (``services.notifications_create``), whose de-duplication keys make a
second run of the same event or beat tick send nothing new."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from access_requests.guests import approval_link_send
from access_requests.models import AccessRequest, Approval, RequestStatus
from access_requests.selectors import approvals_to_nudge, temporary_access_ending
from thalian.models import Membership
from thalian.tenancy import scope

from . import selectors
from .models import Event
from .services import Recipient, notifications_create


def _url(req: AccessRequest) -> str:
    return settings.SITE_URL + reverse("access_request_detail", args=[req.organization.slug, req.pk])


def _what(req: AccessRequest) -> str:
    until = f" until {timezone.localtime(req.ends_at):%Y-%m-%d %H:%M}" if req.ends_at else ""
    return f"{req.get_type_display().lower()} {req.role} in {req.application.name} for {req.identity.email}{until}"


def _members(organization_id: int, emails) -> list[Membership]:
    found = []
    for email in {e.lower() for e in emails if e}:
        member = selectors.membership_by_email(organization_id=organization_id, email=email)
        if member is not None:
            found.append(member)
    return found


def _send(req: AccessRequest, event: str, members: list[Membership], *, title: str, body: str, period: str = "once",
          label: str = "Open request") -> int:
    unique = {m.pk: m for m in members if m is not None and m.user.is_active}
    if not unique:
        return 0
    fan = notifications_create(
        organization_id=req.organization_id, event=event, campaign=None,
        recipients=[Recipient(membership=m) for m in unique.values()], period=period, subject=f"ar-{req.pk}",
        details={"title": title, "body": body, "url": _url(req), "label": label},
    )
    return len(fan.created)


def _load(organization_id: int, request_id) -> AccessRequest | None:
    return (AccessRequest.objects.select_related("identity", "application", "organization", "requested_by__user")
            .filter(organization_id=organization_id, pk=request_id).first())


def approval_requested(*, organization_id: int, request_id, approval_id: int) -> int:
    """The approver of the stage hears about it: a member over their channels, a guest by their link."""
    with scope(organization_id=organization_id):
        approval = Approval.objects.select_related("approver__user").filter(pk=approval_id).first()
        req = _load(organization_id, request_id)
        if approval is None or req is None or req.status != RequestStatus.PENDING:
            return 0
        if approval.approver_id is None:
            return int(approval_link_send(organization_id=organization_id, approval_id=approval.pk))
        return _send(req, Event.ACCESS_APPROVAL_NEEDED, [approval.approver],
                     title=f"Access request to approve: {req.role} in {req.application.name}",
                     body=f"{req.requested_by_email} asks to {_what(req)}. Reason: {req.reason}. Please approve or "
                     f"deny it by {timezone.localtime(req.approval_deadline):%Y-%m-%d}.",
                     period=f"a{approval.pk}-{approval.approver_id}", label="Approve or deny")


OUTCOME_TEXT = {
    RequestStatus.APPROVED: ("approved", "Every approver agreed; the change goes to the application's ticketing "
                                         "system and is verified by its next import or sync."),
    RequestStatus.DENIED: ("denied", ""),
    RequestStatus.EXPIRED: ("expired", "Nobody decided it in time. Make a new request if the access is still needed."),
    RequestStatus.CANCELLED: ("cancelled", ""),
}


def request_decided(*, organization_id: int, request_id, outcome: str) -> int:
    """The requester (and the identity, when someone else asked) hears the outcome; a cancellation tells the
    approver who was asked."""
    with scope(organization_id=organization_id):
        req = _load(organization_id, request_id)
        if req is None or outcome not in OUTCOME_TEXT:
            return 0
        word, more = OUTCOME_TEXT[outcome]
        if outcome == RequestStatus.DENIED:
            denial = req.approvals.filter(decision="denied").first()
            more = f"{denial.decided_by_email} denied it: {denial.reason}" if denial else ""
        recipients = [req.requested_by, *_members(organization_id, [req.identity.email])]
        if outcome == RequestStatus.CANCELLED:
            recipients = [a.approver for a in req.approvals.select_related("approver__user")
                          if a.approver_id and a.decision == "skipped"]
        return _send(req, Event.ACCESS_REQUEST_DECIDED, recipients,
                     title=f"Access request {word}: {req.role} in {req.application.name}",
                     body=f"The request to {_what(req)} was {word}. {more}".strip(), period=outcome)


def request_verified(*, organization_id: int, request_id, status: str) -> int:
    """Requester, identity and approvers hear that the change is made (or that ended access was removed)."""
    with scope(organization_id=organization_id):
        req = _load(organization_id, request_id)
        if req is None:
            return 0
        approvers = [a.approver for a in req.approvals.select_related("approver__user") if a.approver_id
                     and a.decision == "approved"]
        recipients = [req.requested_by, *approvers, *_members(organization_id, [req.identity.email])]
        if status == RequestStatus.REVOKED:
            title = f"Temporary access removed: {req.role} in {req.application.name}"
            body = (f"The temporary access ({_what(req)}) ended and the latest sync of {req.application.name} "
                    "confirms it is removed.")
        else:
            title = f"Access request fulfilled: {req.role} in {req.application.name}"
            body = f"The latest sync of {req.application.name} confirms the change: {_what(req)}."
        return _send(req, Event.ACCESS_REQUEST_VERIFIED, recipients, title=title, body=body, period=status)


def access_ended(*, organization_id: int, request_id) -> int:
    with scope(organization_id=organization_id):
        req = _load(organization_id, request_id)
        if req is None:
            return 0
        recipients = _members(organization_id, [req.identity.email, req.application.owner_email,
                                                req.application.effective_remediation_owner_email])
        return _send(req, Event.ACCESS_ENDED, [req.requested_by, *recipients],
                     title=f"Temporary access ended: {req.role} in {req.application.name}",
                     body=f"The temporary access ({_what(req)}) has ended; a removal ticket opens and the next sync "
                     "verifies the removal. An extension is a new request.")


def ticket_failed(*, organization_id: int, request_id, error: str, purpose: str) -> int:
    with scope(organization_id=organization_id):
        req = _load(organization_id, request_id)
        if req is None:
            return 0
        admins = selectors.admin_memberships(organization_id=organization_id)
        owners = _members(organization_id, [req.application.effective_remediation_owner_email])
        what = "removal ticket" if purpose == "expiry" else "ticket"
        return _send(req, Event.ACCESS_REQUEST_TICKET_FAILED, [*admins, *owners],
                     title=f"Access request {what} failed: {req.application.name}",
                     body=f"The {what} for the request to {_what(req)} could not be opened: {error}",
                     period=f"{purpose}-{timezone.now():%Y%m%d%H%M}")


def access_request_notices(*, organization_id: int, now: dt.datetime | None = None) -> int:
    """Beat: reminders and escalations of undecided stages, and notices before temporary access ends (7 days,
    1 day) to the identity and the application owner. Each is sent once per step (de-duplicated)."""
    now = now or timezone.now()
    sent = 0
    with scope(organization_id=organization_id):
        for notice in approvals_to_nudge(now=now):
            approval, req = notice.approval, notice.approval.access_request
            if notice.kind == "escalation":
                sent += _send(req, Event.ACCESS_APPROVAL_ESCALATED, selectors.admin_memberships(
                    organization_id=organization_id),
                    title=f"Escalated: access request waiting {notice.day} days",
                    body=f"Stage {approval.stage + 1} of the request to {_what(req)} has waited for "
                    f"{approval.approver_email} for {notice.day} days. Reassign it or follow up.",
                    period=f"esc-{approval.pk}")
            elif approval.approver_id is not None:
                sent += _send(req, Event.ACCESS_APPROVAL_REMINDER, [approval.approver],
                              title=f"Reminder: access request to approve ({req.role} in {req.application.name})",
                              body=f"{req.requested_by_email} still waits for your decision on the request to "
                              f"{_what(req)}. It expires on {timezone.localtime(req.approval_deadline):%Y-%m-%d}.",
                              period=f"rem-{approval.pk}-{notice.day}", label="Approve or deny")
        for req, days in temporary_access_ending(now=now):
            recipients = _members(organization_id, [req.identity.email, req.application.owner_email])
            sent += _send(req, Event.ACCESS_ENDING, recipients,
                          title=f"Temporary access ends in {days} day{'s' if days != 1 else ''}: {req.role} in "
                          f"{req.application.name}",
                          body=f"The temporary access ({_what(req)}) ends soon; it is then removed. To keep it, "
                          "make a new request.", period=f"ending-{days}d")
    return sent
