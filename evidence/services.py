"""Evidence of one campaign: the items CSV, the signed evidence package, the summary report and sampling.

Selectors build querysets inside the caller's organization scope; everything that streams does so with
``.iterator()`` and constant memory. The byte-level formats (safe cells, manifest, signature, chain) live in
``evidence.formats`` and ``campaigns.hashchain``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import hashlib
import json
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.apps import apps
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connections, models, transaction
from django.db.models import Count, Max, Min, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.text import slugify

from campaigns import decision_quality, hashchain
from campaigns.decisions import DECISION_HASH_FIELDS
from campaigns.hashchain import GENESIS_HASH, format_timestamp
from campaigns.models import (
    Campaign,
    CampaignRemediationOwner,
    CampaignStage,
    Decision,
    DecisionEvent,
    RemediationStatus,
    ReviewItem,
)
from entitlements.models import FINDING_FIELDS, Application, Finding, IdentityKind, SyncRun, SyncRunStatus
from thalian import broker, claims, tenancy
from thalian.audit import audit_record
from thalian.models import AuditEvent, Membership, User

from . import formats
from .formats import csv_stream
from .models import EvidencePackage, EvidencePackageStatus

# --------------------------------------------------------------------------------------------------
# Items CSV
# --------------------------------------------------------------------------------------------------

ITEM_COLUMNS = (
    "identity_email",
    "application",
    "role",
    "last_used",
    "decision",
    "decision_reason",
    "reviewer",
    "decided_at",
    "ticket_url",
    "identity_name",
    "department",
    "manager_email",
    "identity_kind",
    "identity_status",
    "findings",
    "recommendation",
    "assigned_reviewer",
    "reviewer_role",
    "remediation_status",
    "campaign",
    "snapshot_at",
    "exception_expires_on",
    "stage",
    "stage_decisions",
    "on_behalf_of",
)


_FINDING_NAMES = tuple(finding.value for finding in FINDING_FIELDS)
ITERATOR_CHUNK = 5000
DECISION_FILTERS = ("pending", "approve", "revoke", "exception")


class ExportError(ValueError):
    """Bad export input; the message names what is wrong."""


def parse_item_filters(params: Mapping[str, str]) -> dict[str, str]:
    """The items-view filters understood by exports (``decision``, ``application``, ``department``,
    ``identity_kind``, ``finding``, ``search``); empty values are ignored, invalid ones rejected."""
    filters: dict[str, str] = {}
    for key in ("decision", "application", "department", "identity_kind", "finding", "search"):
        value = (params.get(key) or "").strip()
        if value:
            filters[key] = value
    allowed = {
        "decision": DECISION_FILTERS,
        "identity_kind": tuple(IdentityKind.values),
        "finding": _FINDING_NAMES,
    }
    for key, choices in allowed.items():
        if key in filters and filters[key] not in choices:
            raise ExportError(f"{key} must be one of {', '.join(choices)}; got {filters[key]!r}")
    return filters


def campaign_items_for_export(
    *, campaign: Campaign, filters: Mapping[str, str] | None = None
) -> models.QuerySet:
    """The campaign's items in id order (the keyset index ``organization, campaign, id``)."""
    qs = ReviewItem.objects.filter(campaign=campaign)
    filters = filters or {}
    decision = filters.get("decision")
    if decision == "pending":
        qs = qs.filter(decision="")
    elif decision:
        qs = qs.filter(decision=decision)
    if filters.get("application"):
        qs = qs.filter(application_name=filters["application"])
    if filters.get("department"):
        qs = qs.filter(identity_department=filters["department"])
    if filters.get("identity_kind"):
        qs = qs.filter(identity_kind=filters["identity_kind"])
    if filters.get("finding"):
        qs = qs.filter(**{FINDING_FIELDS[Finding(filters["finding"])]: True})
    if filters.get("search"):
        term = filters["search"]
        qs = qs.filter(
            Q(identity_email__icontains=term)
            | Q(identity_name__icontains=term)
            | Q(application_name__icontains=term)
            | Q(role__icontains=term)
        )
    return qs.order_by("id")


def _ts(value: dt.datetime | None) -> str:
    return format_timestamp(value) if value is not None else ""


def _timestamp_sql(column: str, vendor: str) -> str:
    """ISO 8601 UTC text (``2026-03-31T17:05:00Z``) formatted by the database; NULL stays NULL."""
    if vendor == "postgresql":
        return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""
    return f"strftime('%%Y-%%m-%%dT%%H:%%M:%%SZ', {column})"


def _neutralized_sql(column: str, vendor: str) -> tuple[str, list[str]]:
    """SQL form of ``hashchain.neutralize_cell``: a leading single quote when the text starts with a
    formula trigger. On PostgreSQL an empty text also becomes NULL, which COPY writes unquoted as the csv
    module writes an empty cell, and the common cell costs one integer test: the first character's code point
    (``ascii()``, 0 for an empty text, allocates nothing where ``substr()`` builds a text for every cell).
    Elsewhere tab and carriage return travel as parameters, which every backend accepts."""
    if vendor == "postgresql":
        codes = ", ".join(str(ord(trigger)) for trigger in hashchain.FORMULA_TRIGGERS)
        return (
            f"CASE WHEN ascii({column}) IN (0, {codes}) THEN CASE WHEN {column} = '' THEN NULL "
            f"ELSE '''' || {column} END ELSE {column} END",
            [],
        )
    sql = (
        f"CASE WHEN substr({column}, 1, 1) IN ('=', '+', '-', '@', %s, %s) "
        f"THEN '''' || {column} ELSE {column} END"
    )
    return sql, ["\t", "\r"]


def item_row_sql(campaign: Campaign, vendor: str) -> list[tuple[str, list[Any]]]:
    """One SQL expression per column of ``ITEM_COLUMNS``: the database hands over finished, neutralised
    text, so Python only writes CSV (parsing and re-printing a million rows in Python would dominate). On
    PostgreSQL an empty cell is NULL already; ``item_rows`` makes it so elsewhere. Every function call per cell
    counts: a million rows of 22 cells are 22 million calls."""
    table = ReviewItem._meta.db_table

    def col(name: str) -> str:
        return f'"{table}"."{name}"'

    def text(name: str) -> tuple[str, list[Any]]:
        return _neutralized_sql(col(name), vendor)

    def decided(expression: tuple[str, list[Any]]) -> tuple[str, list[Any]]:
        # Decision columns are empty while an item is undecided.
        return f"CASE WHEN {col('decision')} = '' THEN NULL ELSE {expression[0]} END", expression[1]

    if vendor == "postgresql":
        # concat_ws skips the NULLs of unset flags: one call instead of a chain of concatenations and a trim.
        flags = [col(column) for column in FINDING_FIELDS.values()]
        findings = f"CASE WHEN {' OR '.join(flags)} THEN concat_ws('; ', " + ", ".join(
            f"CASE WHEN {col(column)} THEN '{finding.value}' END" for finding, column in FINDING_FIELDS.items()
        ) + ") END"
    else:
        findings = "rtrim(" + " || ".join(
            f"CASE WHEN {col(column)} THEN '{finding.value}; ' ELSE '' END"
            for finding, column in FINDING_FIELDS.items()
        ) + ", '; ')"
    role_sql, role_params = text("decided_by_role")
    reviewer_role = (
        f"CASE WHEN {col('decided_by_role')} = '' AND {col('decided_by_email')} = 'system' THEN 'system' "
        f"ELSE {role_sql} END",
        role_params,
    )
    expressions = {
        "identity_email": text("identity_email"),
        "application": text("application_name"),
        "role": text("role"),
        "last_used": (_timestamp_sql(col("last_used"), vendor), []),
        "decision": text("decision") if vendor == "postgresql" else (col("decision"), []),
        "decision_reason": decided(text("decision_reason")),
        "reviewer": decided(text("decided_by_email")),
        "decided_at": decided((_timestamp_sql(col("decided_at"), vendor), [])),
        "ticket_url": text("ticket_url"),
        "identity_name": text("identity_name"),
        "department": text("identity_department"),
        "manager_email": text("identity_manager_email"),
        "identity_kind": text("identity_kind"),
        "identity_status": text("identity_status"),
        # "dormant; privileged": each set flag adds "name; " and the trailing separator is trimmed.
        "findings": (findings, []),
        "recommendation": text("recommendation"),
        "assigned_reviewer": text("reviewer_email"),
        "reviewer_role": decided(reviewer_role),
        "remediation_status": text("remediation_status"),
        "campaign": ("%s", [hashchain.neutralize_cell(campaign.title) or None]),
        "snapshot_at": ("%s", [_ts(campaign.snapshot_at) or None]),
        "exception_expires_on": (
            f"to_char({col('exception_expires_on')}, 'YYYY-MM-DD')" if vendor == "postgresql"
            else col("exception_expires_on"),
            [],
        ),
        "stage": (f"CAST({col('stage')} AS TEXT)", []),
        # Multi-stage campaigns: the stages passed (kept as text on the item) and the current decision, in the
        # same words ("stage 1: approve by a@x (reviewer) at 2026-03-02T09:00:00Z; stage 2: …").
        "stage_decisions": (
            f"NULLIF(rtrim({col('stage_path')} || CASE WHEN {col('decision')} = '' THEN '' ELSE 'stage ' || "
            f"CAST({col('stage')} AS TEXT) || ': ' || {col('decision')} || ' by ' || lower({col('decided_by_email')})"
            f" || ' (' || CASE WHEN {col('decided_by_role')} = '' THEN 'reviewer' ELSE {col('decided_by_role')} END"
            f" || ') at ' || COALESCE({_timestamp_sql(col('decided_at'), vendor)}, '') || '; ' END, '; '), '')",
            [],
        ) if campaign.is_multi_stage else ("NULL", []),  # empty cells are NULL, as COPY and csv write them alike
        # The delegator a delegate decided for (empty otherwise).
        "on_behalf_of": decided(text("decided_on_behalf_of_email")),
    }
    assert tuple(expressions) == ITEM_COLUMNS
    return list(expressions.values())


def item_rows(
    queryset: models.QuerySet, *, campaign: Campaign, keyed_by_application: bool = False
) -> models.QuerySet:
    """Rows in ``ITEM_COLUMNS`` order, every value finished text (None where empty). With
    ``keyed_by_application`` each row starts with one more value: its application's name in hex (which
    COPY never quotes), the key a ``formats.RowSpool`` files the row under."""
    vendor = connections[queryset.db].vendor
    annotations = {}
    if keyed_by_application:
        annotations["export_key"] = RawSQL(
            f"NULLIF(encode(convert_to(\"{ReviewItem._meta.db_table}\".\"application_name\", 'UTF8'), 'hex'), '')",
            [],
            output_field=models.CharField(),
        )
    empty_as_null = "{}" if vendor == "postgresql" else "NULLIF({}, '')"
    annotations.update(
        {
            f"export_{n}": RawSQL(empty_as_null.format(sql), params, output_field=models.CharField())
            for n, (sql, params) in enumerate(item_row_sql(campaign, vendor))
        }
    )
    return queryset.annotate(**annotations).values_list(*annotations)


def items_csv_stream(
    queryset: models.QuerySet,
    *,
    campaign: Campaign,
    on_rows: Callable[[int], None] | None = None,
    use_copy: bool | None = None,
    spool: formats.RowSpool | None = None,
) -> Iterator[bytes]:
    """The items CSV of ``queryset``: the header, then the rows.

    On PostgreSQL the rows come straight from ``COPY (SELECT ...) TO STDOUT CSV``: the SELECT already
    yields finished text, and COPY's quoting matches Python's csv module (empty values are NULL, so they
    are written unquoted), so the bytes equal the other databases' path through ``csv_stream``
    (``use_copy=False`` takes that path on PostgreSQL too).

    With ``spool`` (PostgreSQL only) the same pass also files every row under its application, so the
    evidence package writes its per-application files without reading the campaign again.
    """
    yield from csv_stream([], header=ITEM_COLUMNS)
    if use_copy is None:
        use_copy = connections[queryset.db].vendor == "postgresql"
    if not use_copy:
        counted = item_rows(queryset, campaign=campaign).iterator(chunk_size=ITERATOR_CHUNK)
        if on_rows is not None:
            counted = _counted(counted, on_rows)
        yield from csv_stream(counted, neutralize=False)
        return
    buffer = bytearray()
    for window in _id_ranges(queryset):
        rows = item_rows(window.of(queryset), campaign=campaign, keyed_by_application=spool is not None)
        sql, params = rows.query.sql_with_params()
        count = 0
        with connections[queryset.db].cursor() as cursor:
            with cursor.cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
                # libpq hands over COPY data one whole row at a time (embedded line breaks included), so a
                # row's application key is simply everything before its first comma.
                for block in copy:
                    count += 1
                    if spool is None:
                        buffer += block
                    else:
                        key, _comma, line = bytes(block).partition(b",")
                        buffer += line
                        spool.add(key, line)
                    if len(buffer) >= formats.CSV_CHUNK_SIZE:
                        yield bytes(buffer)
                        buffer.clear()
        # Rows are reported only between COPY statements: while a COPY is open psycopg holds the
        # connection's lock, so a callback writing progress through the same connection would wait forever.
        # Whoever consumes this stream must likewise not use the connection between chunks.
        if on_rows is not None and count:
            on_rows(count)
        window.rows = count
        if spool is not None:
            spool.rows += count
    if buffer:
        yield bytes(buffer)


# Ids per COPY. One COPY over a whole campaign is planned for total time (scan everything, sort, then
# output), so the first row would wait for the sort; an id range of the (organization, campaign, id) index
# is read in order and starts at once. Ranges are cut by id arithmetic from the first and last id (two index
# probes) rather than by counting rows, which would read every range's index entries twice.
COPY_BATCH_ROWS = 25_000


@dataclass
class IdRange:
    """Ids ``lower < id <= upper`` of one batch; the reader sets ``rows`` to what it found there."""

    lower: int
    upper: int
    rows: int = 0

    def of(self, queryset: models.QuerySet) -> models.QuerySet:
        return queryset.filter(id__gt=self.lower, id__lte=self.upper)


def _id_ranges(queryset: models.QuerySet, width: int = COPY_BATCH_ROWS) -> Iterator[IdRange]:
    """Consecutive id ranges from the first to the last id of ``queryset``. A range that held few rows
    (a filter, or other campaigns' items in between) makes the next one twice as wide."""
    bounds = queryset.order_by().aggregate(first=Min("id"), last=Max("id"))
    if bounds["first"] is None:
        return
    lower, last = bounds["first"] - 1, bounds["last"]
    while lower < last:
        window = IdRange(lower, min(lower + width, last))
        yield window
        lower = window.upper
        if window.rows < COPY_BATCH_ROWS // 4:
            width *= 2


def _counted(rows: Iterable[Any], on_rows: Callable[[int], None]) -> Iterator[Any]:
    for n, row in enumerate(rows, start=1):
        if n % 10_000 == 0:
            on_rows(10_000)
        yield row


def items_csv(*, campaign: Campaign, filters: Mapping[str, str] | None = None) -> Iterator[bytes]:
    queryset = campaign_items_for_export(campaign=campaign, filters=filters)
    return items_csv_stream(queryset, campaign=campaign)


def scoped_stream(organization_id: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Drive a lazy byte stream with the organization scope active around every step, so it can be
    consumed after the view returned (and on another thread under ASGI)."""
    iterator = iter(chunks)
    while True:
        with tenancy.scope(organization_id=organization_id):
            try:
                chunk = next(iterator)
            except StopIteration:
                return
        yield chunk


def export_file_stem(campaign: Campaign) -> str:
    return f"{slugify(campaign.title)[:60] or 'campaign'}-{campaign.pk.hex[:8]}"


def items_csv_download(
    *, campaign: Campaign, filters: Mapping[str, str], actor: User, request=None
) -> tuple[str, Iterator[bytes]]:
    """Record the download in the audit log and return the file name and the streamed CSV."""
    audit_record(
        action="evidence_csv_exported",
        organization_id=campaign.organization_id,
        actor=actor,
        request=request,
        target=campaign,
        details={"filters": dict(filters)},
    )
    return f"{export_file_stem(campaign)}-items.csv", scoped_stream(
        campaign.organization_id, items_csv(campaign=campaign, filters=filters)
    )


# --------------------------------------------------------------------------------------------------
# Evidence package contents
# --------------------------------------------------------------------------------------------------

# decisions_log.csv: context columns for people reading it, then the hashed fields, then the chain.
# The hashed fields are exactly those the decision services hash (DECISION_HASH_FIELDS).
DECISION_CONTEXT_COLUMNS = ("sequence", "identity_email", "application", "role", "bulk_id")
DECISION_LOG_COLUMNS = (*DECISION_CONTEXT_COLUMNS, *DECISION_HASH_FIELDS)


@dataclass
class PackageState:
    """What the package writer learns while streaming, read by the manifest at the end."""

    chain_head: str = GENESIS_HASH
    decision_count: int = 0
    item_count: int = 0
    rows_written: int = 0
    files: dict[str, int] = field(default_factory=dict)


def _copied_ranges(
    queryset: models.QuerySet, sql: str, params: Callable[[IdRange, int], list[Any]]
) -> Generator[bytes, None, int]:
    """The CSV rows of ``sql`` (a ``COPY ... TO STDOUT`` taking ``params(range, rows so far)``) for each id
    range of ``queryset``, in chunks of about 64 KiB; returns how many rows there were."""
    buffer = bytearray()
    written = 0
    for window in _id_ranges(queryset):
        with connections[queryset.db].cursor() as cursor, cursor.cursor.copy(sql, params(window, written)) as copy:
            for block in copy:
                buffer += block
                window.rows += 1
                if len(buffer) >= formats.CSV_CHUNK_SIZE:
                    yield bytes(buffer)
                    buffer.clear()
        written += window.rows
    if buffer:
        yield bytes(buffer)
    return written


def _iso_utc_sql(column: str, zone: str) -> str:
    """PostgreSQL text of a timestamp as Python's ``isoformat()`` in UTC writes it (microseconds only when
    there are any), followed by ``zone`` (``Z`` or ``+00:00``); NULL stays NULL."""
    return (
        f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') """
        f"|| CASE WHEN extract(microseconds FROM {column})::bigint %% 1000000 = 0 THEN '' "
        f"ELSE to_char({column} AT TIME ZONE 'UTC', '.US') END || '{zone}'"
    )


def _decisions_log_copy(*, campaign: Campaign, state: PackageState, recorded_head: str) -> Iterator[bytes]:
    """decisions_log.csv written by PostgreSQL, a range of event ids per COPY, as ``decisions_log`` writes it
    in Python (the same cells, neutralised the same way, byte for byte)."""
    events = DecisionEvent.objects.filter(campaign=campaign).order_by("id")
    last = events.order_by("-id").values_list("id", "hash").first()
    if last is not None:
        head_id = last[0]
        if recorded_head and last[1] != recorded_head:
            # Decisions came after the export began: stop at the recorded head (the last event, normally).
            head_id = events.filter(hash=recorded_head).values_list("id", flat=True).first() or head_id
        events = events.filter(id__lte=head_id)
    table, items = DecisionEvent._meta.db_table, ReviewItem._meta.db_table

    def text(column: str) -> str:
        return _neutralized_sql(column, "postgresql")[0]

    fields = {
        "item_id": "e.item_id::text",
        "decision": text("e.decision"),
        "reason": text("e.reason"),
        "comment": text("e.comment"),
        "actor_email": text("e.actor_email"),
        "actor_role": text("e.actor_role"),
        "kind": text("e.kind"),
        "created_at": _iso_utc_sql("e.created_at", "Z"),
        "expires_on": "to_char(e.expires_on, 'YYYY-MM-DD')",
        "stage": "e.stage::text",
        "on_behalf_of_email": text("e.on_behalf_of_email"),
    }
    assert tuple(fields) == DECISION_HASH_FIELDS
    cells = [
        "(%s + row_number() OVER (ORDER BY e.id))::text", text("i.identity_email"), text("i.application_name"),
        text("i.role"), "e.bulk_id::text", *fields.values(), f"COALESCE(NULLIF(e.prev_hash, ''), '{GENESIS_HASH}')",
        "NULLIF(e.hash, '')",
    ]  # fmt: skip
    sql = (
        f"COPY (SELECT {', '.join(cells)} FROM {table} e "
        f"JOIN {items} i ON i.id = e.item_id WHERE e.organization_id = %s AND e.campaign_id = %s "
        "AND e.id > %s AND e.id <= %s ORDER BY e.id) TO STDOUT WITH (FORMAT csv)"
    )
    yield from csv_stream([], header=formats.decisions_log_header(DECISION_LOG_COLUMNS))
    written = yield from _copied_ranges(
        events, sql, lambda window, before: [before, campaign.organization_id, campaign.pk, window.lower, window.upper]
    )
    if written:
        state.decision_count = written
        state.chain_head = events.order_by("-id").values_list("hash", flat=True).first()


def decisions_log(
    *, campaign: Campaign, state: PackageState, recorded_head: str, use_copy: bool | None = None
) -> Iterator[bytes]:
    """Every decision event in chain order. The log stops at the head recorded on the campaign when the
    export began, so decisions made while it is written do not make the package inconsistent. On PostgreSQL
    the database writes it (``use_copy=False`` takes the Python path there too)."""
    if use_copy is None:
        use_copy = connections[DecisionEvent.objects.db].vendor == "postgresql"
    if use_copy:
        return _decisions_log_copy(campaign=campaign, state=state, recorded_head=recorded_head)
    queryset = (
        DecisionEvent.objects.filter(campaign=campaign)
        .order_by("id")
        .values_list(
            "item__identity_email",
            "item__application_name",
            "item__role",
            "bulk_id",
            *DECISION_HASH_FIELDS,
            "prev_hash",
            "hash",
        )
    )

    def rows() -> Iterator[list[Any]]:
        sequence = 0
        for values in queryset.iterator(chunk_size=ITERATOR_CHUNK):
            sequence += 1
            context, chained, (prev_hash, hash_) = values[:4], values[4:-2], values[-2:]
            state.decision_count = sequence
            state.chain_head = hash_
            yield [sequence, *context, *chained, prev_hash or GENESIS_HASH, hash_]
            if recorded_head and hash_ == recorded_head:
                return

    return csv_stream(rows(), header=formats.decisions_log_header(DECISION_LOG_COLUMNS))


def _member_email(user: User | None) -> str | None:
    return user.email if user is not None else None


def campaign_document(*, campaign: Campaign) -> dict[str, Any]:
    """campaign.json: scope, reviewers, options, lifecycle with who and when, and the audit trail."""
    campaign = (
        Campaign.objects.select_related(
            "created_by", "launched_by", "closed_by", "cancelled_by", "fallback_reviewer__user",
            "freshness_override_by",
        ).get(pk=campaign.pk)
    )  # fmt: skip
    reviewers = [
        {
            "email": row["reviewer_email"],
            "items": row["items"],
            "decided": row["decided"],
            "signed_off_at": _ts(row["signed_off"]) or None,
        }
        for row in ReviewItem.objects.filter(campaign=campaign)
        .values("reviewer_email")
        .annotate(
            items=Count("id"),
            decided=Count("id", filter=~Q(decision="")),
            signed_off=Max("signed_off_at"),
        )
        .order_by("reviewer_email")
    ]
    events = [
        {
            "at": _ts(event.created_at),
            "action": event.action,
            "actor": event.actor_email,
            "details": event.details,
        }
        for event in AuditEvent.objects.filter(
            organization_id=campaign.organization_id, target_type="campaign", target_id=str(campaign.pk)
        ).order_by("created_at", "id")
    ]
    return {
        "id": str(campaign.pk),
        "title": campaign.title,
        "description": campaign.description,
        "status": campaign.status,
        "due_date": campaign.due_date.isoformat(),
        "scope": campaign.scope,
        "reviewer_strategy": campaign.reviewer_strategy,
        "reviewers_configured": campaign.reviewers,
        "fallback_reviewer": _member_email(campaign.fallback_reviewer.user)
        if campaign.fallback_reviewer
        else None,
        "reviewers": reviewers,
        "options": {
            "reason_required": campaign.reason_required,
            "default_outcome": campaign.default_outcome,
        },
        **({"stages": [
            {"stage": st.number, "reviewer_strategy": st.reviewer_strategy, "reviewers": st.reviewers,
             "fallback_reviewer": st.fallback_reviewer.user.email, "duration_days": st.duration_days,
             "advance_on": st.advance_on, "show_earlier_decisions": st.show_earlier_decisions,
             "deadline_outcome": st.deadline_outcome, "started_at": _ts(st.started_at) or None}
            for st in CampaignStage.objects.filter(campaign=campaign).select_related("fallback_reviewer__user")
        ]} if campaign.is_multi_stage else {}),
        "data_freshness": {
            "stale_applications": campaign.stale_applications,
            "override_reason": campaign.freshness_override_reason,
            "override_by": _member_email(campaign.freshness_override_by),
        },
        "lifecycle": {
            "created_at": _ts(campaign.created_at),
            "created_by": _member_email(campaign.created_by),
            "launched_at": _ts(campaign.launched_at) or None,
            "launched_by": _member_email(campaign.launched_by),
            "snapshot_at": _ts(campaign.snapshot_at) or None,
            "closed_at": _ts(campaign.closed_at) or None,
            "closed_by": _member_email(campaign.closed_by),
            "completed_at": _ts(campaign.completed_at) or None,
            "cancelled_at": _ts(campaign.cancelled_at) or None,
            "cancelled_by": _member_email(campaign.cancelled_by),
            "cancel_reason": campaign.cancel_reason,
        },
        "remediation": {
            "remediating_at": _ts(campaign.remediating_at) or None,
            "owners": [
                {"application": app, "remediation_owner": email, "source": source}
                for app, email, source in CampaignRemediationOwner.objects.filter(campaign=campaign)
                .order_by("application_name")
                .values_list("application_name", "owner_email", "source")
            ],
        },
        "audit_events": events,
    }


def population_certificate(*, campaign: Campaign) -> dict[str, Any]:
    """population.json: per application its data source, the last successful sync before the snapshot,
    and how many items were snapshotted; then the totals."""
    per_app = list(
        ReviewItem.objects.filter(campaign=campaign)
        .values("application_id", "application_name")
        .annotate(items=Count("id"), identities=Count("identity_email", distinct=True))
        .order_by("application_name")
    )
    app_ids = [row["application_id"] for row in per_app if row["application_id"] is not None]
    applications = Application.objects.in_bulk(app_ids)
    snapshot_at = campaign.snapshot_at or timezone.now()
    entries = []
    for row in per_app:
        application = applications.get(row["application_id"])
        run = None
        if application is not None:
            run = (
                SyncRun.objects.filter(
                    syncrunapplication__application=application,
                    status=SyncRunStatus.SUCCEEDED,
                    finished_at__lte=snapshot_at,
                )
                .order_by("-finished_at")
                .first()
            )
        entries.append(
            {
                "application": row["application_name"],
                "application_id": row["application_id"],
                "data_source": application.feed if application is not None else None,
                "last_sync_before_snapshot": _ts(run.finished_at) if run else None,
                "sync_run": (
                    {
                        "id": run.pk,
                        "source": run.source,
                        "kind": run.kind,
                        "mode": run.mode,
                        "file_name": run.file_name,
                        "started_at": _ts(run.started_at),
                        "finished_at": _ts(run.finished_at),
                        "rows": run.total_rows,
                        "created": run.created,
                        "updated": run.updated,
                        "removed": run.removed,
                        "unchanged": run.unchanged,
                    }
                    if run
                    else None
                ),
                "items_snapshotted": row["items"],
                "identities_snapshotted": row["identities"],
            }
        )
    return {
        "campaign_id": str(campaign.pk),
        "snapshot_at": _ts(campaign.snapshot_at) or None,
        "applications": entries,
        "total_applications": len(entries),
        "total_items": sum(entry["items_snapshotted"] for entry in entries),
    }


def _json_bytes(document: Any) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode(
        "utf-8"
    )


def _optional_log(
    label: str, model_label: str, columns: Iterable[str], *, campaign: Campaign
) -> tuple[str, Iterator[bytes]] | None:
    """A CSV log of a related table (tickets, notifications) when that table exists and has rows."""
    try:
        model = apps.get_model(model_label)
    except LookupError:
        return None
    names = {f.name for f in model._meta.concrete_fields} | {f.attname for f in model._meta.concrete_fields}
    lookups = [c for c in columns if c.split("__")[0] in names]
    queryset = model.objects.filter(campaign=campaign).order_by("created_at", "pk")
    if not queryset.exists():
        return None
    header = [c.replace("__", "_") for c in lookups]

    def rows() -> Iterator[list[Any]]:
        for values in queryset.values_list(*lookups).iterator(chunk_size=ITERATOR_CHUNK):
            yield list(values)

    return label, csv_stream(rows(), header=header)


TICKET_LOG_COLUMNS = (
    "item__identity_email", "item__application_name", "item__role", "connection__name", "connection__kind",
    "state", "key", "url", "attempts", "error", "created_at", "opened_at", "status_checked_at", "withdrawn_at",
)  # fmt: skip
NOTIFICATION_LOG_COLUMNS = (
    "created_at", "event", "channel", "recipient", "title", "status", "attempts", "error", "sent_at",
)  # fmt: skip


REMOVAL_COLUMNS = (
    "identity_email", "application", "role", "revoked_at", "revoked_by", "remediation_owner", "removal_status",
    "proof", "proven_at", "confirmed_by", "confirmation_comment", "ticket_key", "ticket_status",
)  # fmt: skip
PROOF_LABELS = {
    RemediationStatus.VERIFIED_REMOVED: "verified by import or sync",
    RemediationStatus.CONFIRMED_REMOVED: "manually confirmed",
    RemediationStatus.ACTION_REQUIRED: "not proven: still present at the last import or sync",
}


def _removals_log_copy(*, campaign: Campaign) -> Iterator[bytes]:
    """removals.csv written by PostgreSQL (a range of item ids per COPY), byte for byte what ``removals_log``
    writes in Python: a fifth of a million-item campaign may be revokes."""
    items = ReviewItem.objects.filter(campaign=campaign, decision=Decision.REVOKE).order_by("id")

    def text(column: str) -> str:
        return _neutralized_sql(column, "postgresql")[0]

    def literal(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    status = "i.remediation_status"
    proofs = " ".join(f"WHEN {literal(key)} THEN {literal(label)}" for key, label in PROOF_LABELS.items())
    proven_at = (
        f"(CASE {status} WHEN {literal(RemediationStatus.CONFIRMED_REMOVED)} THEN i.removal_confirmed_at "
        f"WHEN {literal(RemediationStatus.VERIFIED_REMOVED)} THEN i.remediation_checked_at END)"
    )
    cells = [
        text("i.identity_email"), text("i.application_name"), text("i.role"), _iso_utc_sql("i.decided_at", "Z"),
        text("i.decided_by_email"), text("o.owner_email"), f"CASE WHEN {status} = '' THEN 'pending' ELSE {text(status)} END",
        f"CASE {status} {proofs} ELSE 'not proven yet' END", _iso_utc_sql(proven_at, "Z"),
        text("i.removal_confirmed_by_email"), text("i.removal_comment"), text("i.ticket_key"), text("i.ticket_status"),
    ]  # fmt: skip
    assert len(cells) == len(REMOVAL_COLUMNS)
    sql = (
        f"COPY (SELECT {', '.join(cells)} FROM {ReviewItem._meta.db_table} i "
        f"LEFT JOIN {CampaignRemediationOwner._meta.db_table} o ON o.organization_id = i.organization_id "
        "AND o.campaign_id = i.campaign_id AND o.application_name = i.application_name "
        "WHERE i.organization_id = %s AND i.campaign_id = %s AND i.decision = %s AND i.id > %s AND i.id <= %s "
        "ORDER BY i.id) TO STDOUT WITH (FORMAT csv)"
    )
    yield from csv_stream([], header=REMOVAL_COLUMNS)
    yield from _copied_ranges(
        items, sql, lambda window, _before: [campaign.organization_id, campaign.pk, Decision.REVOKE, window.lower,
                                             window.upper],
    )  # fmt: skip


def removals_log(*, campaign: Campaign, use_copy: bool | None = None) -> Iterator[bytes]:
    """One row per revoked item: how its removal was proven (verified by a later import or sync, or manually
    confirmed by its remediation owner with a comment), or that it is not proven yet. On PostgreSQL the
    database writes it (``use_copy=False`` takes the Python path there too)."""
    if use_copy is None:
        use_copy = connections[ReviewItem.objects.db].vendor == "postgresql"
    if use_copy:
        return _removals_log_copy(campaign=campaign)
    owners = dict(
        CampaignRemediationOwner.objects.filter(campaign=campaign).values_list("application_name", "owner_email")
    )
    queryset = (
        ReviewItem.objects.filter(campaign=campaign, decision=Decision.REVOKE)
        .order_by("id")
        .values_list(
            "identity_email", "application_name", "role", "decided_at", "decided_by_email", "remediation_status",
            "remediation_checked_at", "removal_confirmed_by_email", "removal_confirmed_at", "removal_comment",
            "ticket_key", "ticket_status",
        )
    )

    def rows() -> Iterator[list[Any]]:
        for (email, app, role, decided_at, decided_by, status, checked_at, confirmed_by, confirmed_at, comment,
             ticket_key, ticket_status) in queryset.iterator(chunk_size=ITERATOR_CHUNK):
            proven_at = confirmed_at if status == RemediationStatus.CONFIRMED_REMOVED else (
                checked_at if status == RemediationStatus.VERIFIED_REMOVED else None
            )
            yield [
                email, app, role, _ts(decided_at), decided_by, owners.get(app, ""), status or "pending",
                PROOF_LABELS.get(status, "not proven yet"), _ts(proven_at), confirmed_by, comment, ticket_key,
                ticket_status,
            ]

    return csv_stream(rows(), header=REMOVAL_COLUMNS)


STAGE_DECISION_COLUMNS = (
    "identity_email", "application", "role", "stage", "decision", "reason", "decided_by", "decided_by_role",
    "decided_at", "final",
)  # fmt: skip


def stage_decisions_log(*, campaign: Campaign) -> Iterator[bytes]:
    """Multi-stage campaigns: one row per item and stage it passed, with who decided, in which role and when;
    ``final`` marks the decision that ended the item's review (its last stage's, once signed off)."""
    queryset = (
        ReviewItem.objects.filter(campaign=campaign)
        .order_by("id")
        .values_list("identity_email", "application_name", "role", "stage", "stage_decisions", "decision",
                     "decision_reason", "decided_by_email", "decided_by_role", "decided_at", "signed_off_at")
    )

    def rows() -> Iterator[list[Any]]:
        for (email, app, role, stage, earlier, decision, reason, by, by_role, decided_at,
             signed_off_at) in queryset.iterator(chunk_size=ITERATOR_CHUNK):
            for entry in earlier or []:
                yield [email, app, role, entry["stage"], entry.get("decision") or "carried forward",
                       entry.get("reason", ""), entry.get("decided_by", ""), entry.get("decided_by_role", ""),
                       entry.get("decided_at") or "", "no"]
            if decision:
                yield [email, app, role, stage, decision, reason, by, by_role or ("system" if by == "system" else ""),
                       _ts(decided_at), "yes" if signed_off_at else "not signed off"]

    return csv_stream(rows(), header=STAGE_DECISION_COLUMNS)


def decision_quality_log(*, campaign: Campaign) -> Iterator[bytes]:
    """Per reviewer: pace, bulk share, approvals against recommendations and flags (see decision_quality)."""
    rows = decision_quality.campaign_decision_quality(campaign=campaign)
    return csv_stream(decision_quality.csv_rows(rows), header=decision_quality.CSV_COLUMNS)


def _application_file_names(names: Iterable[str]) -> dict[str, str]:
    used: set[str] = set()
    mapping = {}
    for name in names:
        base = slugify(name)[:80] or "application"
        candidate, n = base, 1
        while candidate in used:
            n += 1
            candidate = f"{base}-{n}"
        used.add(candidate)
        mapping[name] = f"applications/{candidate}.csv"
    return mapping


def _item_files_in_one_pass(
    items: models.QuerySet, *, campaign: Campaign, on_rows: Callable[[int], None] | None
) -> Iterator[formats.Entry]:
    """items.csv and the per-application files from one ordered pass: while items.csv streams out of COPY,
    each row is also filed under its application in a spool file, and the application files are then written
    from the spool. Reading the campaign once per application would touch every page of the campaign for
    each of them (the items of an application are spread over the whole table)."""
    with formats.RowSpool(directory=settings.DATA_DIR) as spool:
        yield "items.csv", items_csv_stream(items, campaign=campaign, on_rows=on_rows, spool=spool)
        by_name = {bytes.fromhex(key.decode("ascii")).decode("utf-8"): key for key in spool.keys()}
        with connections[items.db].cursor() as cursor:
            # The database's collation orders the files, as ORDER BY application_name does everywhere else.
            cursor.execute("SELECT name FROM unnest(%s::text[]) AS name ORDER BY name", [list(by_name)])
            names = [name for (name,) in cursor.fetchall()]
        total = spool.size()
        for app_name, file_name in _application_file_names(names).items():
            yield file_name, _spooled_items_file(spool, by_name[app_name], on_rows, total)


def _spooled_items_file(
    spool: formats.RowSpool, key: bytes, on_rows: Callable[[int], None] | None, total: int
) -> Iterator[bytes]:
    yield from csv_stream([], header=ITEM_COLUMNS)
    yield from spool.read(key)
    if on_rows is not None:
        # Progress only: the application's share of the rows, by its share of the bytes.
        on_rows(spool.rows * spool.size(key) // max(1, total))


def package_entries(
    *,
    campaign: Campaign,
    state: PackageState,
    recorded_head: str,
    on_rows: Callable[[int], None] | None = None,
) -> Iterator[formats.Entry]:
    """The files of the package, each produced lazily when the writer reaches it. On PostgreSQL outside a
    transaction, the files after the items are prepared meanwhile on a second connection (their queries and
    Python work overlap with compressing the item files, whose zlib work runs without the GIL)."""
    all_items = campaign_items_for_export(campaign=campaign)
    database = connections[all_items.db]
    others = functools.partial(_other_entries, campaign=campaign, state=state, recorded_head=recorded_head)
    # A second connection sees only committed rows, so inside a transaction (tests) everything stays on this one.
    prepared = database.vendor == "postgresql" and not database.in_atomic_block
    later = None
    try:
        with ThreadPoolExecutor(max_workers=1) if prepared else contextlib.nullcontext() as pool:
            later = pool.submit(contextvars.copy_context().run, _spooled_entries, others) if pool else None
            if database.vendor == "postgresql":
                yield from _item_files_in_one_pass(all_items, campaign=campaign, on_rows=on_rows)
            else:
                yield "items.csv", items_csv_stream(all_items, campaign=campaign, on_rows=on_rows)
                app_names = list(
                    ReviewItem.objects.filter(campaign=campaign)
                    .order_by("application_name")
                    .values_list("application_name", flat=True)
                    .distinct()
                )
                for app_name, file_name in _application_file_names(app_names).items():
                    queryset = campaign_items_for_export(campaign=campaign, filters={"application": app_name})
                    yield file_name, items_csv_stream(queryset, campaign=campaign, on_rows=on_rows)
            if later is None:
                yield from others()
                return
            for name, handle in later.result():
                yield name, _read_back(handle)
    finally:
        # The executor waited for the helper: its files (read or not, the package done or given up) go.
        if later is not None and later.exception() is None:
            for _name, handle in later.result():
                handle.close()


def _other_entries(*, campaign: Campaign, state: PackageState, recorded_head: str) -> Iterator[formats.Entry]:
    """The package's files after the item files."""
    yield "decisions_log.csv", decisions_log(campaign=campaign, state=state, recorded_head=recorded_head)
    yield "campaign.json", iter([_json_bytes(campaign_document(campaign=campaign))])
    population = population_certificate(campaign=campaign)
    state.item_count = population["total_items"]
    yield "population.json", iter([_json_bytes(population)])
    if campaign.is_multi_stage:
        yield "stage_decisions.csv", stage_decisions_log(campaign=campaign)
    if ReviewItem.objects.filter(campaign=campaign, decision=Decision.REVOKE).exists():
        yield "removals.csv", removals_log(campaign=campaign)
    yield "decision_quality.csv", decision_quality_log(campaign=campaign)
    for optional in (
        _optional_log("tickets_log.csv", "itsm.Ticket", TICKET_LOG_COLUMNS, campaign=campaign),
        _optional_log(
            "notifications_log.csv", "notifications.Notification", NOTIFICATION_LOG_COLUMNS, campaign=campaign
        ),
    ):
        if optional is not None:
            yield optional


def _spooled_entries(entries: Callable[[], Iterable[formats.Entry]]) -> list[tuple[str, Any]]:
    """Write every entry to a temporary file (in memory while small), on this thread's own connection."""
    files: list[tuple[str, Any]] = []
    try:
        for name, chunks in entries():
            handle = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024, dir=settings.DATA_DIR)
            files.append((name, handle))
            for chunk in chunks:
                handle.write(chunk)
    except BaseException:
        for _name, handle in files:
            handle.close()
        raise
    finally:
        connections.close_all()  # this thread's connections only
    return files


def _read_back(handle) -> Iterator[bytes]:
    handle.seek(0)
    while chunk := handle.read(formats.CSV_CHUNK_SIZE):
        yield chunk


def package_stream(
    *,
    package: EvidencePackage,
    campaign: Campaign,
    state: PackageState | None = None,
    on_rows: Callable[[int], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Iterator[bytes], formats.PackageResult]:
    """The ZIP bytes of ``package`` and the result object filled in as they are produced."""
    recorded_head = Campaign.objects.filter(pk=campaign.pk).values_list("chain_head", flat=True).first() or ""
    state = state if state is not None else PackageState()
    result = formats.PackageResult()
    chunks = formats.stream_package(
        package_entries(campaign=campaign, state=state, recorded_head=recorded_head, on_rows=on_rows),
        manifest_fields=lambda: _manifest_fields(package, campaign, state, recorded_head),
        signing_key=formats.get_signing_key(),
        result=result,
        progress=progress,
    )
    return chunks, result


def _record_result(
    package: EvidencePackage,
    result: formats.PackageResult,
    *,
    from_statuses: tuple[str, ...] = (EvidencePackageStatus.BUILDING,),
    **extra: Any,
) -> int:
    """Mark the package ready with its hashes, unless it was cancelled meanwhile; returns the rows updated."""
    manifest = result.manifest or {}
    return EvidencePackage.objects.filter(pk=package.pk, status__in=from_statuses).update(
        status=EvidencePackageStatus.READY,
        progress=100,
        progress_label="Ready",
        sha256=result.sha256,
        size=result.size,
        manifest_sha256=hashlib.sha256(hashchain.canonical_json(manifest)).hexdigest(),
        chain_head=manifest.get("chain_head", ""),
        item_count=manifest.get("item_count", 0),
        decision_count=manifest.get("decision_count", 0),
        public_key_fingerprint=manifest.get("public_key_fingerprint", ""),
        completed_at=timezone.now(),
        **extra,
    )


def package_file_name(campaign: Campaign, created_at: dt.datetime) -> str:
    return f"{export_file_stem(campaign)}-evidence-{created_at.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}.zip"


def evidence_state_digest(campaign: Campaign) -> str:
    """A digest of what an evidence package proves about the campaign: its status and decision chain head, and
    every item's sign-off, ticket and remediation state. The same digest means the same package can be reused."""
    head = Campaign.objects.filter(pk=campaign.pk).values_list("status", "chain_head").first() or ("", "")
    digest = hashlib.sha256(f"{head[0]}|{head[1]}\n".encode())
    items = ReviewItem.objects.filter(campaign=campaign).order_by("id")
    if connections[items.db].vendor == "postgresql":
        # The same lines, written by the database a range of ids at a time: a million items in Python
        # (a datetime and a string per row) would take longer than the package they decide about.
        signed = _iso_utc_sql("signed_off_at", "+00:00")
        sql = (
            f"SELECT string_agg(id || '|' || COALESCE({signed}, '') || '|' || ticket_key || '|' || ticket_status "
            f"|| '|' || remediation_status || E'\\n', '' ORDER BY id) FROM {ReviewItem._meta.db_table} "
            "WHERE organization_id = %s AND campaign_id = %s AND id > %s AND id <= %s"
        )
        with connections[items.db].cursor() as cursor:
            for window in _id_ranges(items):
                cursor.execute(sql, [campaign.organization_id, campaign.pk, window.lower, window.upper])
                text = cursor.fetchone()[0] or ""
                window.rows = text.count("\n")
                digest.update(text.encode())
        return digest.hexdigest()
    rows = items.values_list("id", "signed_off_at", "ticket_key", "ticket_status", "remediation_status")
    for pk, signed_off_at, key, ticket_status, remediation in rows.iterator(chunk_size=5000):
        signed = signed_off_at.isoformat() if signed_off_at else ""
        digest.update(f"{pk}|{signed}|{key}|{ticket_status}|{remediation}\n".encode())
    return digest.hexdigest()


def evidence_package_reusable(*, campaign: Campaign, state_digest: str) -> EvidencePackage | None:
    """The package already kept for this campaign state, if any (ready, or still being built)."""
    return (
        EvidencePackage.objects.filter(campaign=campaign, state_digest=state_digest, stored=True)
        .filter(
            Q(status=EvidencePackageStatus.READY) & ~Q(file="")
            | Q(status__in=[EvidencePackageStatus.QUEUED, EvidencePackageStatus.BUILDING])
        )
        .order_by("-created_at")
        .first()
    )


def evidence_package_create(
    *, campaign: Campaign, actor: User, stored: bool, request=None, state_digest: str = ""
) -> EvidencePackage:
    now = timezone.now()
    package = EvidencePackage.objects.create(
        organization_id=campaign.organization_id,
        campaign=campaign,
        stored=stored,
        state_digest=state_digest,
        status=EvidencePackageStatus.QUEUED if stored else EvidencePackageStatus.BUILDING,
        attempts=1 if stored else 0,
        claimed_at=now,
        file_name=package_file_name(campaign, now),
        generated_by=actor,
        generated_by_email=actor.email,
        created_at=now,
    )
    audit_record(
        action="evidence_package_requested" if stored else "evidence_package_downloaded",
        organization_id=campaign.organization_id,
        actor=actor,
        request=request,
        target=campaign,
        details={"package_id": str(package.pk), "stored": stored},
    )
    return package


def _store_package_file(package: EvidencePackage, handle) -> str:
    handle.seek(0)
    name = package.file.field.generate_filename(package, package.file_name)
    if default_storage.exists(name):
        default_storage.delete(name)
    return default_storage.save(name, File(handle))


def evidence_package_stream(*, package: EvidencePackage, campaign: Campaign) -> Iterator[bytes]:
    """Stream a small package straight to the client, keeping a copy, and record its hashes once the last
    byte is out. The kept copy is what a later request for the same campaign state gets, byte for byte."""
    chunks, result = package_stream(package=package, campaign=campaign)
    organization_id = campaign.organization_id

    def body() -> Iterator[bytes]:
        completed = False
        with tempfile.TemporaryFile(dir=settings.DATA_DIR) as handle:
            try:
                for chunk in chunks:
                    handle.write(chunk)
                    yield chunk
                completed = True
            finally:
                with tenancy.scope(organization_id=organization_id):
                    if completed and result.complete:
                        # A slow download the sweep already gave up on still counts once its last byte is out.
                        _record_result(
                            package,
                            result,
                            from_statuses=(EvidencePackageStatus.BUILDING, EvidencePackageStatus.FAILED),
                            stored=True,
                            file=_store_package_file(package, handle),
                        )
                    else:
                        EvidencePackage.objects.filter(pk=package.pk).update(
                            status=EvidencePackageStatus.FAILED, error="The download was interrupted."
                        )

    return scoped_stream(organization_id, body())


def needs_background_build(campaign: Campaign) -> bool:
    count = ReviewItem.objects.filter(campaign=campaign).count()
    return count > settings.EVIDENCE_ASYNC_THRESHOLD_ITEMS


# Name of the advisory lock a worker holds while it builds a package (thalian/claims.py).
BUILD_CLAIM = "evidence-build"
IN_PROGRESS = (EvidencePackageStatus.QUEUED, EvidencePackageStatus.BUILDING)


def _is_abandoned(package: EvidencePackage) -> bool:
    """A queued or building package nobody works on: its last send or claim is stale and no worker holds it."""
    claimed_at = package.claimed_at or package.created_at
    return claimed_at < timezone.now() - claims.stale_after() and not claims.claim_alive(BUILD_CLAIM, package.pk)


def _enqueue_build(package: EvidencePackage) -> None:
    from .tasks import build_evidence_package

    organization_id, package_id = package.organization_id, str(package.pk)
    # One quick broker attempt; with the broker down the queued package is sent by the stale-package sweep.
    transaction.on_commit(lambda: broker.send_quickly(build_evidence_package, [(organization_id, package_id)]))


def _fail_package(package_id, *, error: str, statuses=IN_PROGRESS) -> int:
    return EvidencePackage.objects.filter(pk=package_id, status__in=statuses).update(
        status=EvidencePackageStatus.FAILED, error=error[:2000], claimed_at=None
    )


def evidence_package_request(*, campaign: Campaign, actor: User, request=None) -> EvidencePackage:
    """Queue a background build, or return the package of this campaign state (ready, queued or building),
    or the one already queued or building for this campaign. One in progress that is abandoned (stale, no
    live worker) is failed and replaced, so a stuck build never blocks an export."""
    digest = evidence_state_digest(campaign)
    existing = evidence_package_reusable(campaign=campaign, state_digest=digest) or (
        EvidencePackage.objects.filter(campaign=campaign, stored=True, status__in=IN_PROGRESS)
        .order_by("-created_at")
        .first()
    )
    if existing is not None:
        if existing.status not in IN_PROGRESS or not _is_abandoned(existing):
            return existing
        _fail_package(existing.pk, error="The build stopped without finishing; a new package was requested.")
    package = evidence_package_create(
        campaign=campaign, actor=actor, stored=True, request=request, state_digest=digest
    )
    _enqueue_build(package)
    return package


def evidence_package_cancel(*, package: EvidencePackage, actor: User, request=None) -> EvidencePackage:
    """Stop waiting for a queued or building package: it is marked failed at once; a worker still building
    it discards its file when it finishes."""
    if _fail_package(package.pk, error=f"Cancelled by {actor.email}.") != 1:
        raise ExportError("only a queued or building package can be cancelled")
    audit_record(
        action="evidence_package_cancelled",
        organization_id=package.organization_id,
        actor=actor,
        request=request,
        target=package.campaign,
        details={"package_id": str(package.pk)},
    )
    package.refresh_from_db()
    return package


def evidence_package_retry(*, package: EvidencePackage, actor: User, request=None) -> EvidencePackage:
    """Request a new package for the campaign of a failed one (the failed one stays listed as it was)."""
    if package.status != EvidencePackageStatus.FAILED:
        raise ExportError("only a failed package can be retried")
    if not package.stored:
        raise ExportError("a streamed download cannot be retried here; export the ZIP again")
    return evidence_package_request(campaign=package.campaign, actor=actor, request=request)


def evidence_packages_sweep() -> dict[str, int]:
    """Re-send abandoned background builds (a lost message, a killed worker) and fail them visibly after
    CLAIM_MAX_ATTEMPTS sends; streamed downloads whose web process died are marked failed. Platform code:
    spans organizations."""
    cutoff = timezone.now() - claims.stale_after()
    outcome = {"resent": 0, "failed": 0}
    interrupted = EvidencePackage.unscoped.filter(
        stored=False, status=EvidencePackageStatus.BUILDING, created_at__lt=cutoff
    ).update(status=EvidencePackageStatus.FAILED, error="The download was interrupted.")
    outcome["failed"] += interrupted
    stale = EvidencePackage.unscoped.filter(stored=True, status__in=IN_PROGRESS, claimed_at__lt=cutoff)
    for package in stale.only("pk", "organization_id", "status", "attempts", "claimed_at", "created_at"):
        if claims.claim_alive(BUILD_CLAIM, package.pk):
            continue
        with tenancy.scope(organization_id=package.organization_id), transaction.atomic():
            if package.attempts >= claims.max_attempts():
                outcome["failed"] += _fail_package(
                    package.pk,
                    error=f"The build did not finish after {package.attempts} attempt(s) (the worker stopped or "
                    "the task was lost). Press Retry to request a new package.",
                )
                continue
            resent = EvidencePackage.objects.filter(
                pk=package.pk, status=package.status, claimed_at=package.claimed_at
            ).update(
                status=EvidencePackageStatus.QUEUED,
                attempts=package.attempts + 1,
                claimed_at=timezone.now(),
                progress=0,
                progress_label=f"Waiting for a worker (attempt {package.attempts + 1})",
            )
            if resent == 1:
                _enqueue_build(package)
                outcome["resent"] += 1
    return outcome


def evidence_package_build(*, package_id: str) -> EvidencePackage | None:
    """Build a queued package into storage. Claims it first, so a second run of the same task does nothing;
    the caller holds the claim's lock (BUILD_CLAIM) while this runs."""
    claimed = EvidencePackage.objects.filter(pk=package_id, status=EvidencePackageStatus.QUEUED).update(
        status=EvidencePackageStatus.BUILDING, progress_label="Starting", claimed_at=timezone.now()
    )
    if claimed != 1:
        return None
    package = EvidencePackage.objects.select_related("campaign", "organization").get(pk=package_id)
    campaign = package.campaign
    total_rows = max(1, 2 * ReviewItem.objects.filter(campaign=campaign).count())
    state = PackageState()

    reported = [0.0]

    def report(label: str) -> None:
        # Twice a second at most: a package has a file per application, and there may be thousands.
        if time.monotonic() - reported[0] >= 0.5:
            reported[0] = time.monotonic()
            EvidencePackage.objects.filter(pk=package_id).update(progress_label=f"Writing {label}"[:200])

    shown = [0]

    def on_rows(count: int) -> None:
        # Item rows dominate the work: items.csv and the per-application files hold each item once.
        state.rows_written += count
        percent = min(99, state.rows_written * 100 // total_rows)
        if percent != shown[0]:
            shown[0] = percent
            EvidencePackage.objects.filter(pk=package_id).update(progress=percent)

    chunks, result = package_stream(
        package=package, campaign=campaign, state=state, on_rows=on_rows, progress=report
    )
    try:
        with tempfile.TemporaryFile(dir=settings.DATA_DIR) as handle:
            for chunk in chunks:
                handle.write(chunk)
            saved = _store_package_file(package, handle)
        if not _record_result(package, result, file=saved):
            default_storage.delete(saved)  # cancelled while building
    except SoftTimeLimitExceeded:
        # Stop the ZIP stream first: a COPY it left open holds the connection the update needs.
        chunks.close()
        _fail_package(
            package_id,
            error="The build took longer than the time limit and was stopped. Ask the operator to raise "
            "TASK_LONG_SOFT_TIME_LIMIT, then press Retry.",
        )
        raise
    except Exception as exc:
        chunks.close()
        _fail_package(package_id, error=f"{type(exc).__name__}: {exc}")
        raise
    package.refresh_from_db()
    return package


def _manifest_fields(
    package: EvidencePackage, campaign: Campaign, state: PackageState, recorded_head: str
) -> dict[str, Any]:
    return {
        "campaign_id": str(campaign.pk),
        "campaign_title": campaign.title,
        "organization": package.organization.slug,
        "package_id": str(package.pk),
        "generated_at": _ts(package.created_at),
        "generated_by": package.generated_by_email,
        "snapshot_at": _ts(campaign.snapshot_at) or None,
        "item_count": state.item_count,
        "chain_head": recorded_head or state.chain_head,
        "decision_count": state.decision_count,
        "decisions_log_hashed_columns": list(DECISION_HASH_FIELDS),
    }


# --------------------------------------------------------------------------------------------------
# Summary report
# --------------------------------------------------------------------------------------------------


def campaign_summary(*, campaign: Campaign) -> dict[str, Any]:
    """Figures of the printable campaign report, from a handful of aggregate queries."""
    items = ReviewItem.objects.filter(campaign=campaign)
    totals = items.aggregate(
        total=Count("id"),
        decided=Count("id", filter=~Q(decision="")),
        approve=Count("id", filter=Q(decision=Decision.APPROVE)),
        revoke=Count("id", filter=Q(decision=Decision.REVOKE)),
        exception=Count("id", filter=Q(decision=Decision.EXCEPTION)),
        system=Count("id", filter=Q(decided_by_email="system")),
        identities=Count("identity_email", distinct=True),
        applications=Count("application_name", distinct=True),
        first_decision=Min("decided_at"),
        last_decision=Max("decided_at"),
    )
    total = totals["total"] or 0
    totals["pending"] = total - totals["decided"]
    totals["percent"] = round(100 * totals["decided"] / total) if total else 0
    chart = [
        {"key": key, "label": label, "count": totals[key], "width": _width_class(totals[key], total)}
        for key, label in (
            ("approve", "Approved"),
            ("revoke", "Revoked"),
            ("exception", "Exception"),
            ("pending", "Undecided"),
        )
    ]
    reviewers = list(
        items.values("reviewer_email")
        .annotate(
            items=Count("id"),
            decided=Count("id", filter=~Q(decision="")),
            revoked=Count("id", filter=Q(decision=Decision.REVOKE)),
            signed_off=Max("signed_off_at"),
        )
        .order_by("reviewer_email")
    )
    revocations = list(
        items.filter(decision=Decision.REVOKE)
        .values("application_name")
        .annotate(
            total=Count("id"),
            ticketed=Count("id", filter=~Q(ticket_url="")),
            pending=Count("id", filter=Q(remediation_status="pending")),
            verified=Count("id", filter=Q(remediation_status="verified_removed")),
            confirmed=Count("id", filter=Q(remediation_status="confirmed_removed")),
            action_required=Count("id", filter=Q(remediation_status="action_required")),
            untracked=Count("id", filter=Q(remediation_status="")),
        )
        .order_by("application_name")
    )
    return {
        "totals": totals,
        "chart": chart,
        "reviewers": reviewers,
        "revocations": revocations,
        "population": population_certificate(campaign=campaign),
    }


def _width_class(count: int, total: int) -> str:
    if not total:
        return "w-0"
    return f"w-{round(20 * count / total) * 5}"


# --------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------

MAX_SAMPLE = 200


@dataclass
class Sample:
    seed: int
    size: int
    population: int
    items: list[ReviewItem]
    trails: dict[int, list[DecisionEvent]]


def evidence_sample_draw(
    *, campaign: Campaign, size: int, seed: int | None, actor: User, request=None
) -> Sample:
    """Pick ``size`` items at random (reproducible from ``seed`` over the same campaign), record the draw
    in the audit log, and return each item with its full decision trail."""
    if not 1 <= size <= MAX_SAMPLE:
        raise ExportError(f"sample size must be between 1 and {MAX_SAMPLE}; got {size}")
    if seed is None:
        seed = secrets.randbelow(2**31)
    elif not 0 <= seed < 2**63:
        raise ExportError("seed must be a non-negative integer below 2^63")
    ids = ReviewItem.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True)
    population = ids.count()
    positions = sorted(random.Random(seed).sample(range(population), min(size, population)))
    chosen: list[int] = []
    if positions:
        wanted = iter(positions)
        target = next(wanted)
        for index, item_id in enumerate(ids.iterator(chunk_size=ITERATOR_CHUNK)):
            if index == target:
                chosen.append(item_id)
                target = next(wanted, None)
                if target is None:
                    break
    items = list(ReviewItem.objects.filter(pk__in=chosen).order_by("id"))
    trails: dict[int, list[DecisionEvent]] = {item_id: [] for item_id in chosen}
    for event in DecisionEvent.objects.filter(item_id__in=chosen).order_by("id"):
        trails[event.item_id].append(event)
    audit_record(
        action="evidence_sample_drawn",
        organization_id=campaign.organization_id,
        actor=actor,
        request=request,
        target=campaign,
        details={"seed": seed, "size": size, "population": population, "item_ids": chosen},
    )
    return Sample(seed=seed, size=size, population=population, items=items, trails=trails)


def evidence_packages_for(*, membership: Membership, campaign: Campaign | None = None) -> models.QuerySet:
    qs = EvidencePackage.objects.select_related("campaign").order_by("-created_at")
    if campaign is not None:
        qs = qs.filter(campaign=campaign)
    return qs
