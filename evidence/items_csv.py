"""The items CSV of a campaign: filters, the rows (Python or COPY on PostgreSQL, in id ranges) and the download."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connections, models
from django.db.models import Max, Min, Q
from django.db.models.expressions import RawSQL
from django.utils.text import slugify

from campaigns import hashchain
from campaigns.hashchain import format_timestamp
from campaigns.models import Campaign, ReviewItem
from entitlements.models import FINDING_FIELDS, Finding, IdentityKind
from thalian import tenancy
from thalian.audit import audit_record
from thalian.models import User

from . import formats
from .formats import csv_stream

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
