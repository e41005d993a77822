"""Remediation through the organization's ticketing system: connections, tickets, comments, status sync and
verification of removal against imported data."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connections, transaction
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, Decision, RemediationStatus, ReviewItem
from campaigns.remediation import (
    ItemTicket,
    campaign_remediation_complete_if_done,
    campaign_remediation_reopen,
    lock_campaigns,
    lock_campaigns_of_items,
    review_items_remediation_open,
    review_items_remediation_verify,
    review_items_ticket_record,
    review_items_tickets_record,
)
from entitlements.models import Application, Entitlement
from thalian import claims
from thalian.audit import audit_event, audit_record, audit_records
from thalian.broker import send_quickly
from thalian.bulk import rows_update
from thalian.events import RemediationOutcome, TicketFailed, publish
from thalian.models import AuditEvent, Organization, TicketTrigger, User
from thalian.tenancy import assert_same_organization, scope

from .clients import (
    FRESHSERVICE_PRIORITIES,
    KINDS,
    ZENDESK_PRIORITIES,
    BaseUrlError,
    ItsmError,
    ItsmPermanentError,
    ItsmTransientError,
    RemoteTicket,
    TicketClient,
    TicketContent,
    validate_base_url,
)
from .models import (
    ITEM_TICKET_STATUS,
    REMOTE_STATES,
    ApplicationRoute,
    CommentState,
    ConnectionKind,
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


# Connections ---------------------------------------------------------------------------------------------

PROJECT_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")
TABLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,79}$")
LABELS = {
    "name": "Name",
    "base_url": "Base URL",
    "email": "E-mail",
    "api_token": "API token",
    "username": "User name",
    "password": "Password",
    "api_key": "API key",
    "project_key": "Project key",
    "issue_type": "Issue type",
    "table": "Table",
    "assignment_group": "Assignment group",
    "group_id": "Group ID",
    "priority": "Priority",
    "tags": "Tags",
}


@dataclass
class CleanConnection:
    kind: str
    name: str
    base_url: str
    config: dict[str, Any]
    secrets: dict[str, str]
    is_default: bool
    applications: list[Application] | None


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str | int):
        raise ValidationError({name: f"{LABELS.get(name, name)} must be text."})
    return str(value).strip()


def _optional_int(data: dict, name: str, errors: dict, allowed: Iterable[int] | None = None) -> int | None:
    raw = data.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        errors[name] = f"{LABELS[name]} must be a whole number."
        return None
    if value <= 0:
        errors[name] = f"{LABELS[name]} must be a positive number."
        return None
    if allowed is not None and value not in allowed:
        errors[name] = f"{LABELS[name]} must be one of {', '.join(map(str, allowed))}."
        return None
    return value


def connection_clean(
    *, organization: Organization, data: dict[str, Any], existing: ItsmConnection | None = None
) -> CleanConnection:
    """Validate flat connection input (form or API). Raises ValidationError with one message per bad field.
    On update, secret fields left empty keep their stored values."""
    errors: dict[str, str] = {}
    kind = _text(data, "kind") or (existing.kind if existing else "")
    if kind not in KINDS:
        raise ValidationError({"kind": f"Kind must be one of: {', '.join(KINDS)}."})
    if existing is not None and kind != existing.kind:
        raise ValidationError(
            {"kind": "The kind of a connection cannot be changed; create a new connection."}
        )
    spec = KINDS[kind]

    def value(name: str) -> str:
        if name in data:
            return _text(data, name)
        if existing is not None:
            stored = existing.config.get(name)
            return "" if stored is None else str(stored)
        return ""

    name = value("name") if "name" in data or existing is None else existing.name
    if not name:
        errors["name"] = "Name is required."
    elif len(name) > 100:
        errors["name"] = "Name must be at most 100 characters."

    base_url = _text(data, "base_url") if "base_url" in data or existing is None else existing.base_url
    allow_http = (
        bool(getattr(settings, "ALLOW_INSECURE_HTTP_INTEGRATIONS", False))
        and kind != ConnectionKind.SERVICENOW
    )
    try:
        base_url = validate_base_url(base_url, allow_http=allow_http)
    except BaseUrlError as exc:
        message = str(exc)
        if kind == ConnectionKind.SERVICENOW and message == "Base URL must use https.":
            message = "ServiceNow requires an https base URL."
        errors["base_url"] = message

    config: dict[str, Any] = {}
    for field in spec.identity_fields:
        text = value(field)
        if not text:
            errors[field] = f"{LABELS[field]} is required."
        elif field == "email":
            try:
                validate_email(text)
            except ValidationError:
                errors[field] = "E-mail must be a valid e-mail address."
        config[field] = text

    secrets: dict[str, str] = dict(existing.secret_values()) if existing is not None else {}
    for field in spec.secret_fields:
        text = _text(data, field)
        if text:
            secrets[field] = text
        elif not secrets.get(field):
            errors[field] = f"{LABELS[field]} is required."

    if kind == ConnectionKind.JIRA:
        project_key = value("project_key").upper()
        if not PROJECT_KEY_RE.match(project_key):
            errors["project_key"] = "Project key is required: capital letters and digits, e.g. OPS."
        config["project_key"] = project_key
        config["issue_type"] = value("issue_type") or "Task"
    elif kind == ConnectionKind.SERVICENOW:
        table = value("table") or "incident"
        if not TABLE_RE.match(table):
            errors["table"] = "Table must be a ServiceNow table name such as incident or sc_task."
        config["table"] = table
        config["assignment_group"] = value("assignment_group")
    elif kind == ConnectionKind.FRESHSERVICE:
        source = data if ("group_id" in data or existing is None) else existing.config
        config["group_id"] = _optional_int(source, "group_id", errors)
        source = data if ("priority" in data or existing is None) else existing.config
        config["priority"] = _optional_int(source, "priority", errors, allowed=FRESHSERVICE_PRIORITIES)
    elif kind == ConnectionKind.ZENDESK:
        source = data if ("group_id" in data or existing is None) else existing.config
        config["group_id"] = _optional_int(source, "group_id", errors)
        priority = value("priority").lower()
        if priority and priority not in ZENDESK_PRIORITIES:
            errors["priority"] = f"Priority must be one of: {', '.join(ZENDESK_PRIORITIES)}."
        config["priority"] = priority
        if "tags" in data or existing is None:
            raw_tags = data.get("tags") or []
            if isinstance(raw_tags, str):
                raw_tags = raw_tags.replace(",", " ").split()
            if not isinstance(raw_tags, list) or not all(isinstance(t, str) for t in raw_tags):
                errors["tags"] = "Tags must be a list of words."
                raw_tags = []
            tags = [t.strip() for t in raw_tags if t.strip()]
            if any(not re.match(r"^[\w:.-]{1,80}$", t) for t in tags):
                errors["tags"] = "Tags may contain letters, digits, '_', '-', ':' and '.' only."
            config["tags"] = tags
        else:
            config["tags"] = list(existing.config.get("tags") or [])

    is_default_raw = data.get("is_default", existing.is_default if existing else False)
    if not isinstance(is_default_raw, bool):
        is_default_raw = str(is_default_raw).lower() in ("1", "true", "on", "yes")

    applications: list[Application] | None = None
    if "application_ids" in data:
        raw_ids = data.get("application_ids") or []
        if not isinstance(raw_ids, list | tuple):
            errors["application_ids"] = "Applications must be a list of application ids."
        else:
            try:
                ids = {int(i) for i in raw_ids}
            except (TypeError, ValueError):
                errors["application_ids"] = "Applications must be a list of application ids."
                ids = set()
            with scope(organization):
                applications = list(Application.objects.filter(pk__in=ids))
            missing = ids - {a.pk for a in applications}
            if missing:
                errors["application_ids"] = (
                    f"Unknown application ids: {', '.join(map(str, sorted(missing)))}."
                )

    if not errors:
        with scope(organization):
            clash = ItsmConnection.objects.filter(name=name)
            if existing is not None:
                clash = clash.exclude(pk=existing.pk)
            if clash.exists():
                errors["name"] = f"A connection named {name!r} already exists."
    if errors:
        raise ValidationError(errors)
    return CleanConnection(kind, name, base_url, config, secrets, bool(is_default_raw), applications)


def _apply_routes(connection: ItsmConnection, applications: list[Application] | None) -> None:
    if applications is None:
        return
    for application in applications:
        assert_same_organization(connection, application)
    ApplicationRoute.objects.filter(connection=connection).exclude(application__in=applications).delete()
    # An application routes to one connection: moving it here replaces its previous route.
    ApplicationRoute.objects.filter(application__in=applications).exclude(connection=connection).delete()
    existing = set(
        ApplicationRoute.objects.filter(connection=connection).values_list("application_id", flat=True)
    )
    ApplicationRoute.objects.bulk_create(
        [
            ApplicationRoute(organization_id=connection.organization_id, application=a, connection=connection)
            for a in applications
            if a.pk not in existing
        ]
    )


def _make_default(connection: ItsmConnection) -> None:
    ItsmConnection.objects.filter(is_default=True).exclude(pk=connection.pk).update(is_default=False)


@transaction.atomic
def itsm_connection_create(
    *, organization: Organization, actor: User | None, data: dict[str, Any], request=None
) -> ItsmConnection:
    clean = connection_clean(organization=organization, data=data)
    with scope(organization):
        # The first connection is the default whether or not it was asked for.
        is_default = clean.is_default or not ItsmConnection.objects.exists()
        if is_default:
            ItsmConnection.objects.filter(is_default=True).update(is_default=False)
        connection = ItsmConnection.objects.create(
            organization=organization,
            kind=clean.kind,
            name=clean.name,
            base_url=clean.base_url,
            config=clean.config,
            secrets=json.dumps(clean.secrets),
            is_default=is_default,
            created_by=actor,
        )
        _apply_routes(connection, clean.applications)
        audit_record(
            action="itsm.connection_created",
            organization=organization,
            actor=actor,
            request=request,
            target=connection,
            details={"kind": connection.kind, "base_url": connection.base_url, "is_default": is_default},
        )
    return connection


@transaction.atomic
def itsm_connection_update(
    *, connection: ItsmConnection, actor: User | None, data: dict[str, Any], request=None
) -> ItsmConnection:
    organization = connection.organization
    clean = connection_clean(organization=organization, data=data, existing=connection)
    with scope(organization):
        changed = sorted(
            [f for f in ("name", "base_url") if getattr(connection, f) != getattr(clean, f)]
            + [k for k in clean.config if connection.config.get(k) != clean.config[k]]
            + [k for k in clean.secrets if connection.secret_values().get(k) != clean.secrets[k]]
        )
        if clean.is_default and not connection.is_default:
            _make_default(connection)
            changed.append("is_default")
        connection.name = clean.name
        connection.base_url = clean.base_url
        connection.config = clean.config
        connection.secrets = json.dumps(clean.secrets)
        connection.is_default = clean.is_default or connection.is_default
        connection.updated_at = timezone.now()
        if any(
            f in changed
            for f in ("base_url", *connection.spec.secret_fields, *connection.spec.identity_fields)
        ):
            connection.last_test_ok = None
            connection.last_test_message = ""
        connection.save()
        _apply_routes(connection, clean.applications)
        audit_record(
            action="itsm.connection_updated",
            organization=organization,
            actor=actor,
            request=request,
            target=connection,
            # Secret names only, never values.
            details={"changed": changed},
        )
    return connection


@transaction.atomic
def itsm_connection_delete(*, connection: ItsmConnection, actor: User | None, request=None) -> None:
    organization = connection.organization
    with scope(organization):
        was_default = connection.is_default
        audit_record(
            action="itsm.connection_deleted",
            organization=organization,
            actor=actor,
            request=request,
            target=connection,
            details={"kind": connection.kind},
        )
        connection.delete()
        if was_default:
            successor = ItsmConnection.objects.order_by("created_at").first()
            if successor is not None:
                successor.is_default = True
                successor.save(update_fields=["is_default"])


# What to check when a test connection is refused, per kind: the credentials each vendor signs in with.
CREDENTIAL_HINTS = {
    "jira": "the e-mail and API token",
    "servicenow": "the user name and password",
    "freshservice": "the API key",
    "zendesk": "the e-mail and API token",
}
SCOPE_HINTS = {
    "jira": "the base URL and the project key",
    "servicenow": "the base URL and the table",
    "freshservice": "the base URL",
    "zendesk": "the base URL (https://<subdomain>.zendesk.com)",
}


def connection_test_explained(*, kind: str, error: ItsmError) -> str:
    """A failed test in words an admin can act on: who answered what, and what to check."""
    label = KINDS[kind].label if kind in KINDS else kind
    status = error.status
    if status == 401:
        advice = f"check {CREDENTIAL_HINTS.get(kind, 'the credentials')}"
    elif status == 403:
        advice = "the account signs in but is not allowed to read tickets; check its role or permissions"
    elif status == 404:
        advice = f"check {SCOPE_HINTS.get(kind, 'the base URL')}"
    elif status == 429:
        advice = "too many requests; try again in a minute"
    elif status is not None and status >= 500:
        advice = f"{label} had a problem of its own; try again later"
    elif status is None:
        return f"{label} could not be reached: {error.message}"
    else:
        advice = "see the details"
    return f"{label} answered {status}: {advice}. Details: {error.message}"


def itsm_connection_test(*, connection: ItsmConnection, actor: User | None, request=None) -> tuple[bool, str]:
    """Perform an authenticated read against the ticketing system and record the outcome."""
    try:
        message = connection.client().test_connection()
        ok = True
    except ItsmError as exc:
        ok, message = False, connection_test_explained(kind=connection.kind, error=exc)
    with scope(connection.organization):
        ItsmConnection.objects.filter(pk=connection.pk).update(
            last_tested_at=timezone.now(), last_test_ok=ok, last_test_message=message[:500]
        )
        audit_record(
            action="itsm.connection_tested",
            organization=connection.organization,
            actor=actor,
            request=request,
            target=connection,
            details={"ok": ok, "message": message[:500]},
        )
    connection.refresh_from_db()
    return ok, message


def connection_for_application(*, organization_id: int, application_id: int | None) -> ItsmConnection | None:
    if application_id is not None:
        route = (
            ApplicationRoute.objects.filter(organization_id=organization_id, application_id=application_id)
            .select_related("connection")
            .first()
        )
        if route is not None:
            return route.connection
    return ItsmConnection.objects.filter(organization_id=organization_id, is_default=True).first()


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


# Periodic work -------------------------------------------------------------------------------------------


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


# Verification of removal ---------------------------------------------------------------------------------


def remediation_verify_for_applications(
    *, organization_id: int, application_ids: Iterable[int]
) -> dict[str, int]:
    """After an import or sync of these applications: a revoked item whose entitlement is gone becomes
    verified_removed, one whose entitlement is still present becomes action_required. A campaign whose revoked
    items are then all checked gets its remediation outcome announced, once per outcome."""
    application_ids = list(application_ids)
    result = {"verified_removed": 0, "action_required": 0}
    if not application_ids:
        return result
    now = timezone.now()
    with scope(organization_id=organization_id), transaction.atomic():
        verified = review_items_remediation_verify(
            application_ids=application_ids, present_entitlements=Entitlement.objects.filter(present=True), now=now
        )
        campaign_ids = verified.campaign_ids
        result["verified_removed"], result["action_required"] = verified.verified_removed, verified.action_required
        if verified.contradicted:
            audit_record(
                action="itsm.removal_confirmation_contradicted",
                organization_id=organization_id,
                target_type="application",
                target_id=",".join(map(str, application_ids))[:80],
                details={"applications": application_ids, "items": [pk for pk, _c in verified.contradicted][:1000]},
                system=True,
            )
            # In this transaction (the campaigns are locked already): completed campaigns whose manually
            # confirmed removal the import contradicts are remediating again.
            for campaign_id in sorted({str(c) for _pk, c in verified.contradicted}):
                campaign_remediation_reopen(campaign_id=campaign_id, why="an import still lists access confirmed removed")
        if result["verified_removed"] or result["action_required"]:
            audit_record(
                action="itsm.remediation_verified",
                organization_id=organization_id,
                target_type="application",
                target_id=",".join(map(str, application_ids))[:80],
                details={"applications": application_ids, **result},
                system=True,
            )
        _remediation_outcomes(organization_id=organization_id, campaign_ids=campaign_ids)
        if result["verified_removed"]:
            # Campaigns in `remediating` whose last revokes were just verified removed become completed.
            for campaign_id in campaign_ids:
                campaign_remediation_complete_if_done(campaign_id=campaign_id)
    return result


def _remediation_outcomes(*, organization_id: int, campaign_ids: list) -> None:
    """Announce the outcome of every campaign whose revoked items all have a checked removal: "verified" when
    every removal is verified, "failed" when none is, "partial" otherwise. Each campaign and outcome is
    recorded in the audit log and announced once; a later import that changes the outcome announces again."""
    if not campaign_ids:
        return
    tallies = (
        ReviewItem.objects.filter(campaign_id__in=campaign_ids, decision=Decision.REVOKE)
        .order_by()
        .values("campaign_id", "campaign__title")
        .annotate(
            total=Count("pk"),
            verified=Count("pk", filter=Q(remediation_status=RemediationStatus.VERIFIED_REMOVED)),
            still_present=Count("pk", filter=Q(remediation_status=RemediationStatus.ACTION_REQUIRED)),
        )
    )
    announced = set(
        AuditEvent.objects.filter(
            organization_id=organization_id,
            action="itsm.remediation_outcome",
            target_type="campaign",
            target_id__in=[str(pk) for pk in campaign_ids],
        ).values_list("target_id", "details__outcome")
    )
    for row in tallies:
        total, verified, still_present = row["total"], row["verified"], row["still_present"]
        if verified + still_present < total:
            continue  # some removals are not checked yet
        outcome = "verified" if verified == total else "failed" if verified == 0 else "partial"
        campaign_id = row["campaign_id"]
        if (str(campaign_id), outcome) in announced:
            continue
        counts = {"verified removed": verified, "action required": still_present}
        audit_record(
            action="itsm.remediation_outcome",
            organization_id=organization_id,
            target_type="campaign",
            target_id=str(campaign_id),
            target_label=row["campaign__title"],
            details={"outcome": outcome, **counts},
            system=True,
        )
        publish(
            RemediationOutcome(
                organization_id=organization_id,
                campaign_id=str(campaign_id),
                outcome=outcome,
                counts=[[label, number] for label, number in counts.items()],
            )
        )
