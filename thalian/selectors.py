"""Platform reads: members, invitations, tokens, the audit log (keyset pages)."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from django.db.models import Q, QuerySet
from django.utils import timezone

from . import tenancy
from .models import ApiToken, AuditEvent, Invitation, Membership, Organization

AUDIT_PAGE_SIZE = 50


def members_for_organization(*, organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .only("id", "role", "created_at", "organization_id", "user__id", "user__email", "user__name")
        .order_by("user__email")
    )


def open_invitations(*, organization: Organization) -> QuerySet[Invitation]:
    with tenancy.scope(organization):
        return (
            Invitation.objects.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())
            .select_related("invited_by")
            .order_by("-created_at")
        )


def tokens_for_membership(*, membership: Membership) -> QuerySet[ApiToken]:
    with tenancy.scope(membership.organization):
        return ApiToken.objects.filter(membership=membership).order_by("-created_at", "-id")


@dataclass(frozen=True)
class AuditFilters:
    action: str = ""
    actor: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None


def audit_events(*, organization: Organization, filters: AuditFilters) -> QuerySet[AuditEvent]:
    """Newest first. Filters use the (organization, action, -created_at) and (organization, -created_at)
    indexes; the actor filter matches the recorded e-mail, so events of deleted users stay findable."""
    qs = AuditEvent.objects.filter(organization=organization)
    if filters.action:
        qs = qs.filter(action=filters.action)
    if filters.actor:
        qs = qs.filter(actor_email__icontains=filters.actor.strip())
    if filters.date_from:
        qs = qs.filter(created_at__gte=dt.datetime.combine(filters.date_from, dt.time.min, tzinfo=dt.UTC))
    if filters.date_to:
        end = dt.datetime.combine(filters.date_to + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
        qs = qs.filter(created_at__lt=end)
    return qs.order_by("-created_at", "-id")


def audit_actions(*, organization: Organization, recent: int = 2000) -> list[str]:
    """Action names for the filter's suggestions: those of the most recent events. Bounded on purpose: a
    DISTINCT over an audit table of millions of rows would read all of them."""
    recent_actions = (
        AuditEvent.objects.filter(organization=organization).order_by("-created_at").values_list("action", flat=True)
    )
    return sorted(set(recent_actions[:recent]))


def encode_audit_cursor(event: AuditEvent) -> str:
    return base64.urlsafe_b64encode(f"{event.created_at.isoformat()}|{event.pk}".encode()).decode()


def decode_audit_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        created, pk = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return dt.datetime.fromisoformat(created), int(pk)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid page cursor") from exc


def audit_page(
    *, organization: Organization, filters: AuditFilters, after: str | None = None, size: int = AUDIT_PAGE_SIZE
) -> tuple[list[AuditEvent], str | None]:
    """One keyset page: events strictly older than the cursor position, and the cursor of the next page.
    Cost does not depend on how deep the reader has paged."""
    qs = audit_events(organization=organization, filters=filters)
    if after:
        created, pk = decode_audit_cursor(after)
        qs = qs.filter(Q(created_at__lt=created) | Q(created_at=created, id__lt=pk))
    rows = list(qs[: size + 1])
    next_cursor = encode_audit_cursor(rows[size - 1]) if len(rows) > size else None
    return rows[:size], next_cursor
