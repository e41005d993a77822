"""Reads of the entitlement inventory: filtered lists with keyset pagination, application summaries."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from .models import (
    FINDING_FIELDS,
    Application,
    Entitlement,
    Finding,
    Identity,
    IdentityKind,
    IdentityStatus,
    SyncRun,
)

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class FilterError(ValueError):
    """A filter value is not one of the allowed ones; the message says which."""


def _choice(value: str, choices: Any, name: str) -> str:
    allowed = [c.value for c in choices]
    if value not in allowed:
        raise FilterError(f"{name} must be one of: {', '.join(allowed)}")
    return value


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise FilterError(f"{name} must be yes or no")


def entitlements_filtered(params: Any) -> QuerySet[Entitlement]:
    """Present grants (or all with include_removed) filtered by the names the API and pages share:
    application, department, kind, status, role, finding, sanctioned, search, identity."""
    qs = Entitlement.objects.select_related("identity", "application").only(
        "id",
        "role",
        "last_used",
        "source",
        "first_seen",
        "last_seen",
        "present",
        "removed_at",
        *FINDING_FIELDS.values(),
        "identity__id",
        "identity__email",
        "identity__name",
        "identity__department",
        "identity__kind",
        "identity__status",
        "application__id",
        "application__name",
        "application__sanctioned",
    )
    if not _bool(params.get("include_removed") or "no", "include_removed"):
        qs = qs.filter(present=True)
    if value := (params.get("application") or "").strip():
        qs = qs.filter(application__name__iexact=value)
    if value := (params.get("application_id") or "").strip():
        if not value.isdigit():
            raise FilterError("application_id must be a number")
        qs = qs.filter(application_id=int(value))
    if value := (params.get("identity") or "").strip():
        qs = qs.filter(identity__email=value.lower())
    if value := (params.get("department") or "").strip():
        qs = qs.filter(identity__department__iexact=value)
    if value := (params.get("kind") or "").strip():
        qs = qs.filter(identity__kind=_choice(value, IdentityKind, "kind"))
    if value := (params.get("status") or "").strip():
        qs = qs.filter(identity__status=_choice(value, IdentityStatus, "status"))
    if value := (params.get("role") or "").strip():
        qs = qs.filter(role__iexact=value)
    if value := (params.get("finding") or "").strip():
        qs = qs.filter(**{FINDING_FIELDS[_choice(value, Finding, "finding")]: True})
    if value := (params.get("sanctioned") or "").strip():
        qs = qs.filter(application__sanctioned=_bool(value, "sanctioned"))
    if value := (params.get("search") or "").strip():
        qs = qs.filter(Q(identity__email__icontains=value) | Q(identity__name__icontains=value))
    return qs


def identities_filtered(params: Any) -> QuerySet[Identity]:
    qs = Identity.objects.select_related("manager").only(
        "id", "email", "name", "department", "title", "kind", "status", "manager__id", "manager__email",
        "manager__name",
    )
    if value := (params.get("department") or "").strip():
        qs = qs.filter(department__iexact=value)
    if value := (params.get("kind") or "").strip():
        qs = qs.filter(kind=_choice(value, IdentityKind, "kind"))
    if value := (params.get("status") or "").strip():
        qs = qs.filter(status=_choice(value, IdentityStatus, "status"))
    if value := (params.get("application") or "").strip():
        qs = qs.filter(
            pk__in=Entitlement.objects.filter(application__name__iexact=value, present=True).values("identity_id")
        )
    if value := (params.get("search") or "").strip():
        qs = qs.filter(Q(email__icontains=value) | Q(name__icontains=value))
    return qs


def applications_filtered(params: Any) -> QuerySet[Application]:
    qs = Application.objects.all()
    if value := (params.get("category") or "").strip():
        qs = qs.filter(category__iexact=value)
    if value := (params.get("sanctioned") or "").strip():
        qs = qs.filter(sanctioned=_bool(value, "sanctioned"))
    if value := (params.get("search") or params.get("name") or "").strip():
        qs = qs.filter(name__icontains=value)
    return qs


@dataclass
class KeysetPage:
    items: list[Any]
    next_after: int | str | None  # an id in id order, an opaque (value, id) cursor when sorted
    prev_before: int | str | None


# Sortable columns of each inventory list: sort key -> model field. Only non-null fields, so a (value, id)
# cursor orders every row; each one is indexed or on a table small enough to sort.
LIST_SORTS = {
    "applications": {"name": "name", "category": "category", "owner": "owner_email"},
    "identities": {"email": "email", "name": "name", "department": "department", "kind": "kind",
                   "status": "status"},
    # Grouped by application: (organization, application, present, id) is an index, so this stays an index
    # scan on millions of grants.
    "entitlements": {"application": "application_id"},
}
# Totals are exact up to this many rows and shown as "more than" beyond, so a count stays an index scan.
COUNT_CAP = 100_000


def list_total(qs: QuerySet) -> tuple[int, bool]:
    """(count, capped): the number of rows, or COUNT_CAP and True when there are more."""
    count = qs.order_by()[: COUNT_CAP + 1].count()
    return (COUNT_CAP, True) if count > COUNT_CAP else (count, False)


def sort_parse(value: str | None, *, kind: str) -> tuple[str, str, bool]:
    """(sort key as given, model field, descending) or ("", "", False) for id order; unknown keys raise."""
    value = (value or "").strip()
    if not value:
        return "", "", False
    key = value.lstrip("-")
    sorts = LIST_SORTS[kind]
    if key not in sorts:
        raise FilterError(f"Unknown sort {key!r}; sort by one of: {', '.join(sorts)}.")
    return value, sorts[key], value.startswith("-")


def _cursor_encode(value, pk: int) -> str:
    raw = json.dumps([value, pk], default=str).encode()
    return "k" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(token: str):
    try:
        raw = base64.urlsafe_b64decode(token[1:] + "=" * (-len(token[1:]) % 4))
        value, pk = json.loads(raw)
        return value, int(pk)
    except (ValueError, TypeError, binascii.Error):
        raise FilterError("The page link is not valid any more; start from the first page.") from None


def keyset_page_sorted(qs: QuerySet, *, field: str, descending: bool, after: str | None, before: str | None,
                       size: int = 50) -> KeysetPage:
    """One page ordered by (field, id), ascending or descending, with opaque (value, id) cursors."""

    def beyond(value, pk: int, forward: bool) -> Q:
        greater = forward != descending
        op = "gt" if greater else "lt"
        return Q(**{f"{field}__{op}": value}) | Q(**{field: value, f"pk__{op}": pk})

    order = [f"-{field}", "-pk"] if descending else [field, "pk"]
    reverse_order = [field, "pk"] if descending else [f"-{field}", "-pk"]
    if before:
        value, pk = _cursor_decode(before)
        rows = list(qs.filter(beyond(value, pk, False)).order_by(*reverse_order)[: size + 1])
        has_more = len(rows) > size
        rows = list(reversed(rows[:size]))
        first, last = (rows[0], rows[-1]) if rows else (None, None)
        return KeysetPage(
            rows,
            _cursor_encode(getattr(last, field), last.pk) if last else None,
            _cursor_encode(getattr(first, field), first.pk) if first and has_more else None,
        )
    if after:
        value, pk = _cursor_decode(after)
        qs = qs.filter(beyond(value, pk, True))
    rows = list(qs.order_by(*order)[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    first, last = (rows[0], rows[-1]) if rows else (None, None)
    return KeysetPage(
        rows,
        _cursor_encode(getattr(last, field), last.pk) if last and has_more else None,
        _cursor_encode(getattr(first, field), first.pk) if first and after else None,
    )


def keyset_page(qs: QuerySet, *, after: str | None, before: str | None, size: int = 50) -> KeysetPage:
    """One page in id order. `after`/`before` are ids from the neighbouring page; the cost does not
    depend on how deep the page is, unlike OFFSET."""
    if before and before.isdigit():
        rows = list(qs.filter(pk__lt=int(before)).order_by("-pk")[: size + 1])
        has_more = len(rows) > size
        rows = list(reversed(rows[:size]))
        return KeysetPage(rows, rows[-1].pk if rows else None, rows[0].pk if rows and has_more else None)
    start = int(after) if after and after.isdigit() else None
    if start is not None:
        qs = qs.filter(pk__gt=start)
    rows = list(qs.order_by("pk")[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(rows, rows[-1].pk if rows and has_more else None, rows[0].pk if rows and start else None)


IDENTITY_ACCESS_LIMIT = 500


@dataclass
class IdentityAccess:
    """One identity's grants for its page: present first, then removed, each by application and role."""

    grants: list[Entitlement]
    present: int
    removed: int
    reports: list[Identity]

    @property
    def truncated(self) -> bool:
        return len(self.grants) < self.present + self.removed


def identity_for_page(pk: int) -> Identity:
    return get_object_or_404(Identity.objects.select_related("manager"), pk=pk)


def identity_access(identity: Identity, *, limit: int = IDENTITY_ACCESS_LIMIT) -> IdentityAccess:
    grants = Entitlement.objects.filter(identity=identity)
    counts = grants.aggregate(
        present_count=Count("id", filter=Q(present=True)), removed_count=Count("id", filter=Q(present=False))
    )
    return IdentityAccess(
        grants=list(
            grants.select_related("application").order_by("-present", "application__name", "role", "id")[:limit]
        ),
        present=counts["present_count"],
        removed=counts["removed_count"],
        reports=list(Identity.objects.filter(manager=identity).only("id", "email", "name").order_by("name", "email")[:100]),
    )


def application_for_page(pk: int) -> Application:
    return get_object_or_404(Application.objects.select_related("last_sync_run"), pk=pk)


@dataclass
class ApplicationSummary:
    present: int
    removed: int
    identities: int
    findings: list[tuple[str, int, int]]  # label, count, share of present rounded to 5% (bar width)
    stale: bool
    freshness_days: int


def application_summary(application: Application, *, freshness_days: int) -> ApplicationSummary:
    counts = Entitlement.objects.filter(application=application).aggregate(
        n_present=Count("id", filter=Q(present=True)),
        n_removed=Count("id", filter=Q(present=False)),
        n_identities=Count("identity_id", filter=Q(present=True), distinct=True),
        **{f"n_{f.value}": Count("id", filter=Q(present=True, **{field: True})) for f, field in FINDING_FIELDS.items()},
    )
    stale = application.last_synced_at is None or (
        timezone.now() - application.last_synced_at > timedelta(days=freshness_days)
    )
    return ApplicationSummary(
        present=counts["n_present"],
        removed=counts["n_removed"],
        identities=counts["n_identities"],
        findings=[
            (f.label, counts[f"n_{f.value}"], _width(counts[f"n_{f.value}"], counts["n_present"]))
            for f in FINDING_FIELDS
        ],
        stale=stale,
        freshness_days=freshness_days,
    )


def _width(count: int, total: int) -> int:
    if not total or not count:
        return 0
    return max(5, round(count * 20 / total) * 5)


def application_sync_history(application: Application, *, limit: int = 20) -> list[SyncRun]:
    return list(
        SyncRun.objects.filter(applications=application).select_related("triggered_by").order_by("-started_at")[:limit]
    )


def sync_runs_recent(*, limit: int = 30) -> list[SyncRun]:
    return list(SyncRun.objects.select_related("triggered_by").order_by("-started_at")[:limit])


def filter_choices() -> dict[str, Any]:
    """Values for the filter drop-downs: small per organization (dozens of applications and departments)."""
    return {
        "applications": list(Application.objects.order_by("name").values_list("name", flat=True)),
        "departments": list(
            Identity.objects.exclude(department="").order_by("department").values_list("department", flat=True).distinct()
        ),
        "kinds": IdentityKind.choices,
        "statuses": IdentityStatus.choices,
        "findings": Finding.choices,
    }
