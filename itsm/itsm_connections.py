"""Connections to ticketing systems: validation, create, edit, delete, test, and the connection that serves
an application."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from entitlements.models import Application
from thalian.audit import audit_record
from thalian.models import Organization, User
from thalian.tenancy import assert_same_organization, scope

from .clients import (
    FRESHSERVICE_PRIORITIES,
    KINDS,
    ZENDESK_PRIORITIES,
    BaseUrlError,
    ItsmError,
    validate_base_url,
)
from .models import ApplicationRoute, ConnectionKind, ItsmConnection

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
