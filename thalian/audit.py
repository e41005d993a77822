"""Recording audit events."""

from __future__ import annotations

from typing import Any

from .models import AuditEvent, Organization, User


def client_ip(request) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def audit_record(**fields: Any) -> AuditEvent:
    """Record one event; the fields are those of ``audit_event``."""
    event = audit_event(**fields)
    event.save(force_insert=True)
    return event


def audit_records(events: list[AuditEvent]) -> list[AuditEvent]:
    """Record several events built with ``audit_event`` in one INSERT (a worker finishing a batch of tickets)."""
    return AuditEvent.objects.bulk_create(events)


def audit_event(
    *,
    action: str,
    organization: Organization | None = None,
    organization_id: int | None = None,
    actor: User | None = None,
    request=None,
    target: Any = None,
    target_type: str = "",
    target_id: str = "",
    target_label: str = "",
    details: dict | None = None,
    system: bool = False,
    actor_email: str = "",
) -> AuditEvent:
    """The unsaved event ``audit_record`` records; see there."""
    if actor is None and request is not None and getattr(request, "user", None) is not None:
        if request.user.is_authenticated:
            actor = request.user
    if target is not None:
        target_type = target_type or target._meta.model_name
        target_id = target_id or str(target.pk)
        target_label = target_label or str(target)[:300]
    if organization is not None:
        organization_id = organization.pk
    return AuditEvent(
        organization_id=organization_id,
        actor=None if system else actor,
        actor_email="system" if system else (actor.email if actor is not None else actor_email or "system"),
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label[:300],
        ip_address=client_ip(request),
        details=details or {},
    )
