"""What an evidence package holds: the decisions log with its chain, the campaign and population documents,
the optional logs, the per-application item files, and the package stream that assembles and signs them."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connections, models
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.text import slugify

from campaigns import decision_quality, hashchain
from campaigns.decisions import DECISION_HASH_FIELDS
from campaigns.hashchain import GENESIS_HASH
from campaigns.models import (
    Campaign,
    CampaignRemediationOwner,
    CampaignStage,
    Decision,
    DecisionEvent,
    RemediationStatus,
    ReviewItem,
)
from entitlements.models import Application, SyncRun, SyncRunStatus
from thalian.models import AuditEvent, User

from . import formats
from .formats import csv_stream
from .items_csv import (
    ITEM_COLUMNS,
    ITERATOR_CHUNK,
    IdRange,
    _id_ranges,
    _neutralized_sql,
    _ts,
    campaign_items_for_export,
    items_csv_stream,
)
from .models import EvidencePackage, EvidencePackageStatus

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
