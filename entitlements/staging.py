"""Set-based loading of validated inventory rows through a PostgreSQL staging table.

Rows are COPYed into a temporary table (dropped at commit), checked as a set (duplicate
keys, unknown managers), then merged into the inventory with a handful of INSERT ...
SELECT / UPDATE ... FROM statements. Nothing here loops over rows in Python, so a
million-row file costs a few statements, not a million round trips.

Everything runs inside the caller's transaction: any error rolls the whole import back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction

from thalian.models import Organization

from .csv_import import MAX_ERRORS, ImportValidationError, RowError, copy_escape, copy_lines
from .models import Application, Entitlement, Identity

log = logging.getLogger(__name__)

IDENTITY = Identity._meta.db_table
APPLICATION = Application._meta.db_table
ENTITLEMENT = Entitlement._meta.db_table
ORGANIZATION = Organization._meta.db_table
BIG_LOAD_ROWS = 20_000
UNIQUE_GRANT = "entitlement_unique_grant"
# A transaction that adds this many identities refreshes their statistics before joining on them.
ANALYZE_AFTER_ROWS = 1_000
ADVISORY_LOCK_SPACE = 7341  # first key of pg_advisory_xact_lock(space, organization id) for imports


@dataclass
class MergeCounts:
    created: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    identities_created: int = 0
    application_ids: list[int] = field(default_factory=list)


@dataclass
class StagedEntitlements:
    """What was staged: the row count and the applications the rows name, gathered while streaming."""

    rows: int = 0
    application_ids: list[int] = field(default_factory=list)


def _copy(cursor, table: str, columns: Iterable[str], rows: Iterator[tuple[Any, ...]]) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for block in copy_lines(rows):
            copy.write(block)


def _like_patterns(patterns: Iterable[str]) -> list[str]:
    escaped = []
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if pattern:
            escaped.append("%" + pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    return escaped


def findings_sql(*, role: str, last_used: str, status: str) -> str:
    """SQL select-list of the five finding flags, from column expressions of one row.

    Parameters it needs: %(dormant_before)s, %(privileged)s (LIKE patterns).
    """
    return (
        f"({last_used} IS NOT NULL AND {last_used} < %(dormant_before)s) AS is_dormant, "
        f"({status} = 'terminated') AS is_terminated, "
        f"(lower({role}) LIKE ANY(%(privileged)s::text[])) AS is_privileged, "
        f"({status} = 'unknown') AS is_orphaned, "
        f"({last_used} IS NULL) AS is_never_used"
    )


def findings_params(organization, now: datetime) -> dict[str, Any]:
    return {
        "dormant_before": now - timedelta(days=organization.dormant_days),
        "privileged": _like_patterns(organization.privileged_patterns or []),
    }


FINDING_COLUMNS = ("is_dormant", "is_terminated", "is_privileged", "is_orphaned", "is_never_used")


def _duplicates(cursor, key_sql: str, column: str, label: Callable[[tuple], str]) -> list[RowError]:
    """Rows whose natural key repeats an earlier row. The keys are found with one hash aggregate;
    only the (few) repeated keys are then looked up row by row."""
    cursor.execute(
        f"SELECT {key_sql} FROM inv_stage GROUP BY {key_sql} HAVING count(*) > 1 LIMIT {MAX_ERRORS}"
    )
    keys = cursor.fetchall()
    if not keys:
        return []
    width = len(keys[0])
    placeholders = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(keys))
    cursor.execute(
        f"SELECT {key_sql}, array_agg(row_no ORDER BY row_no) FROM inv_stage "
        f"WHERE ({key_sql}) IN ({placeholders}) GROUP BY {key_sql} ORDER BY min(row_no)",
        [value for key in keys for value in key],
    )
    errors = []
    for record in cursor.fetchall():
        rows = record[-1]
        for row in rows[1:]:
            errors.append(RowError(row, column, f"duplicate of row {rows[0]} ({label(record[:-1])})"))
    return errors


# ---------------------------------------------------------------------------------------------
# Entitlements


def prepare_session(organization) -> None:
    """Per import transaction: one import at a time per organization, and memory for hashing a
    million staged rows instead of spilling sorts to disk (server memory, freed at commit)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ADVISORY_LOCK_SPACE, organization.pk])
        cursor.execute("SET LOCAL work_mem = '128MB'")


def _entitlement_lines(rows: Iterator[tuple[Any, ...]], staged: StagedEntitlements, batch: int = 5000) -> Iterator[str]:
    """COPY text blocks of entitlement rows (row, application id, e-mail, role, last used).

    The hot loop of a million-row import: each line is formatted at once, and only a line holding a
    character COPY must escape goes through copy_escape. Counts the rows and collects the
    applications on the way, so the merge need not scan the staging table for them.
    """
    escape, null = copy_escape, "\\N"
    applications: set[int] = set()
    add_application = applications.add
    lines: list[str] = []
    append = lines.append
    count = 0
    for values in rows:
        row_no, application_id, email, role, last_used = values
        add_application(application_id)
        head = f"{row_no}\t{application_id}\t{email}\t{role}"
        if "\\" in head or "\n" in head or "\r" in head or head.count("\t") != 3:
            head = "\t".join([escape(value) for value in values[:4]])
        append(f"{head}\t{null}" if last_used is None else f"{head}\t{last_used}")
        count += 1
        if len(lines) >= batch:
            yield "\n".join(lines) + "\n"
            lines.clear()
    if lines:
        yield "\n".join(lines) + "\n"
    staged.rows = count
    staged.application_ids = sorted(applications)


def stage_entitlements(rows: Iterator[tuple[Any, ...]]) -> StagedEntitlements:
    """COPY validated entitlement rows into inv_stage.

    Duplicate keys are not searched here: merge_entitlements finds them (on a first load, the
    unique index of the inventory does, at no extra cost), and entitlement_duplicates() lists
    them when the file has other problems to report with them.
    """
    staged = StagedEntitlements()
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS inv_stage")
        cursor.execute(
            "CREATE TEMP TABLE inv_stage (row_no integer NOT NULL, application_id bigint NOT NULL, "
            "email text NOT NULL, role text NOT NULL, last_used timestamptz) ON COMMIT DROP"
        )
        columns = "row_no, application_id, email, role, last_used"
        with cursor.cursor.copy(f"COPY inv_stage ({columns}) FROM STDIN") as copy:
            for block in _entitlement_lines(rows, staged):
                copy.write(block)
    return staged


def entitlement_duplicates() -> list[RowError]:
    """Staged rows whose (application, e-mail, role) repeats an earlier row."""
    with connection.cursor() as cursor:
        return _duplicates(cursor, "application_id, email, role", "role", lambda r: f"{r[1]} / {r[2]}")


def _raise_duplicates() -> None:
    if errors := entitlement_duplicates():
        raise ImportValidationError(errors)


def merge_entitlements(
    *,
    organization,
    staged: StagedEntitlements,
    now: datetime,
    replace: bool,
    source: str,
    run_id: int,
    keep_last_used: bool = False,
) -> MergeCounts:
    """Merge inv_stage into the inventory. Raises ImportValidationError, having written nothing that
    the caller's transaction keeps, when staged rows repeat a key."""
    counts = MergeCounts(application_ids=list(staged.application_ids))
    params = {"org": organization.pk, "now": now, "source": source, "run": run_id, **findings_params(organization, now)}
    with connection.cursor() as cursor:
        # Accounts of people the inventory does not know become identities of unknown status,
        # so orphaned access shows up as a finding instead of being dropped.
        cursor.execute(
            f"""
            INSERT INTO {IDENTITY} (organization_id, email, name, department, title, kind, status,
                                    external_ids, created_at, updated_at)
            SELECT %(org)s, s.email, '', '', '', 'human', 'unknown', '{{}}'::jsonb, %(now)s, %(now)s
            FROM (SELECT DISTINCT email FROM inv_stage) s
            ON CONFLICT (organization_id, email) DO NOTHING
            """,
            params,
        )
        counts.identities_created = cursor.rowcount
        big = _hash_joins_for_big_loads(cursor, staged.rows)
        if not big:
            _identity_statistics_after(cursor, counts.identities_created)

        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {ENTITLEMENT} WHERE organization_id = %s AND application_id = ANY(%s))",
            [organization.pk, counts.application_ids],
        )
        if not cursor.fetchone()[0]:
            counts.created = _insert_first_load(
                cursor, organization, params, big=big, application_ids=counts.application_ids
            )
            counts.unchanged = staged.rows - counts.created
            return counts

        cursor.execute("ANALYZE inv_stage")
        _raise_duplicates()
        if big:
            # Statistics lag behind bulk loads; planned on stale numbers, the joins below misjudge
            # how many grants match.
            cursor.execute(f"ANALYZE {IDENTITY}, {ENTITLEMENT}")
        # One pass resolves every staged row: its identity, the grant it matches (if any) and
        # whether that grant changes. The writes below are then plain joins on ids, and a fresh
        # load is a straight INSERT with no per-row conflict handling.
        # Connectors do not report usage: they keep the last-used date a file gave.
        last_used = "COALESCE(s.last_used, e.last_used)" if keep_last_used else "s.last_used"
        findings = findings_sql(role="s.role", last_used=last_used, status="i.status")
        flags = ", ".join(FINDING_COLUMNS)
        cursor.execute("DROP TABLE IF EXISTS inv_merge")
        cursor.execute(
            f"""
            CREATE TEMP TABLE inv_merge ON COMMIT DROP AS
            SELECT r.*, (r.existing_id IS NOT NULL AND (r.old_last_used, r.old_present, {", ".join(f"r.old_{c}" for c in FINDING_COLUMNS)})
                         IS DISTINCT FROM (r.last_used, true, {", ".join(f"r.{c}" for c in FINDING_COLUMNS)})) AS changed
            FROM (
                SELECT s.application_id, i.id AS identity_id, s.role, {last_used} AS last_used, {findings},
                       e.id AS existing_id, e.last_used AS old_last_used, e.present AS old_present,
                       {", ".join(f"e.{c} AS old_{c}" for c in FINDING_COLUMNS)}
                FROM inv_stage s
                JOIN {APPLICATION} a ON a.id = s.application_id AND a.organization_id = %(org)s
                JOIN {IDENTITY} i ON i.organization_id = %(org)s AND i.email = s.email
                LEFT JOIN {ENTITLEMENT} e ON e.organization_id = %(org)s AND e.application_id = s.application_id
                     AND e.identity_id = i.id AND e.role = s.role
            ) r
            """,
            params,
        )

        if replace and counts.application_ids:
            # Before the inserts, so only grants that existed before this run can be removed.
            cursor.execute(
                f"""
                UPDATE {ENTITLEMENT} e SET present = false, removed_at = %(now)s, removed_by_run_id = %(run)s
                WHERE e.organization_id = %(org)s AND e.application_id = ANY(%(apps)s) AND e.present
                  AND NOT EXISTS (SELECT 1 FROM inv_merge m WHERE m.existing_id = e.id)
                """,
                {**params, "apps": counts.application_ids},
            )
            counts.removed = cursor.rowcount

        # Unchanged rows are not rewritten: a re-import of the same file writes nothing.
        cursor.execute(
            f"""
            UPDATE {ENTITLEMENT} e SET last_used = m.last_used, source = %(source)s, last_seen = %(now)s,
                present = true, removed_at = NULL, removed_by_run_id = NULL,
                {", ".join(f"{c} = m.{c}" for c in FINDING_COLUMNS)}
            FROM inv_merge m WHERE e.id = m.existing_id AND m.changed
            """,
            params,
        )
        counts.updated = cursor.rowcount
        bulk = big and _without_row_foreign_key_checks(cursor, organization)
        cursor.execute(
            f"""
            INSERT INTO {ENTITLEMENT} (organization_id, identity_id, application_id, role, last_used, source,
                first_seen, last_seen, present, removed_at, removed_by_run_id, {flags})
            SELECT %(org)s, m.identity_id, m.application_id, m.role, m.last_used, %(source)s, %(now)s, %(now)s, true,
                   NULL, NULL, {", ".join(f"m.{c}" for c in FINDING_COLUMNS)}
            FROM inv_merge m WHERE m.existing_id IS NULL
            """,
            params,
        )
        counts.created = cursor.rowcount
        if bulk:
            row_triggers_on(cursor)
        counts.unchanged = staged.rows - counts.created - counts.updated
    return counts


def _insert_first_load(
    cursor, organization, params: dict[str, Any], *, big: bool, application_ids: list[int]
) -> int:
    """First load of these applications: nothing to match, update or remove, so one INSERT.
    Returns the number of grants created.

    Rows go in sorted by the unique key, so each index grows at a few points instead of at random
    places. A repeated key in the file is caught by the unique index; the savepoint rolls that back
    and the duplicates are listed by row.
    """
    findings = findings_sql(role="s.role", last_used="s.last_used", status="i.status")
    bulk = big and row_triggers_off(cursor)
    if bulk:
        _lock_parents(
            cursor,
            organization,
            application_ids=", ".join(str(int(pk)) for pk in application_ids),
            identity_ids=f"SELECT i.id FROM {IDENTITY} i WHERE i.organization_id = {int(organization.pk)} "
            "AND i.email IN (SELECT DISTINCT email FROM inv_stage)",
        )
    try:
        with transaction.atomic():
            cursor.execute(
                f"""
                INSERT INTO {ENTITLEMENT} (organization_id, identity_id, application_id, role, last_used, source,
                    first_seen, last_seen, present, removed_at, removed_by_run_id, {", ".join(FINDING_COLUMNS)})
                SELECT %(org)s, i.id, a.id, s.role, s.last_used, %(source)s, %(now)s, %(now)s, true, NULL, NULL,
                       {findings}
                FROM inv_stage s
                JOIN {APPLICATION} a ON a.id = s.application_id AND a.organization_id = %(org)s
                JOIN {IDENTITY} i ON i.organization_id = %(org)s AND i.email = s.email
                ORDER BY s.application_id, i.id, s.role
                """,
                params,
            )
    except IntegrityError as exc:
        if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) != UNIQUE_GRANT:
            raise
        _raise_duplicates()
        raise
    created = cursor.rowcount
    if bulk:
        row_triggers_on(cursor)
    return created


def row_triggers_off(cursor, *, work: str = "Big inventory import") -> bool:
    """Turn off per-row foreign key triggers (and every trigger not marked ENABLE ALWAYS) until
    `row_triggers_on(cursor)`, when the database role may. Returns whether they are off. The caller
    takes the locks the skipped checks would have taken (lock_for_key_share) and does any other
    trigger's work itself."""
    try:
        with transaction.atomic():
            cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError as exc:
        log.warning(
            "%s with per-row foreign key checks (about half as fast): the database role may not "
            "set session_replication_role (%s). Run `GRANT SET ON PARAMETER session_replication_role TO %s;` "
            "as an administrator (PostgreSQL 15+); see docs/platform.md.",
            work,
            str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__,
            connection.settings_dict.get("USER") or "<role>",
        )
        return False
    return True


def row_triggers_on(cursor) -> None:
    cursor.execute("SET LOCAL session_replication_role = DEFAULT")


def lock_for_key_share(cursor, table: str, ids: str, params: Any = None) -> None:
    """Take, once per referenced row of `table`, the lock a skipped foreign key check would have taken
    (FOR KEY SHARE: deleting the row or changing its id waits for this transaction). `ids` is SQL: a
    subquery, or a list of integers written out."""
    cursor.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} p WHERE p.id IN ({ids}) FOR KEY SHARE) locked", params)


def _without_row_foreign_key_checks(cursor, organization) -> bool:
    """Let the big INSERT skip PostgreSQL's per-row foreign key triggers, when the role may.

    Django's foreign keys are deferred, so a million inserted grants queue three million checks
    that run one by one at commit: several times the cost of the insert itself. Every id the
    insert uses comes from a join with its parent table in this transaction (inv_merge), so the
    checks can be replaced by one set-based lock of the referenced rows, which is what each
    check would have taken. Needs a role allowed to set session_replication_role; otherwise the
    usual per-row checks run.
    """
    if not row_triggers_off(cursor):
        return False
    _lock_parents(
        cursor,
        organization,
        application_ids="SELECT DISTINCT application_id FROM inv_merge WHERE existing_id IS NULL",
        identity_ids="SELECT DISTINCT identity_id FROM inv_merge WHERE existing_id IS NULL",
    )
    return True


def _lock_parents(cursor, organization, *, application_ids: str, identity_ids: str) -> None:
    """The locks of the foreign key checks an entitlements insert skips."""
    lock_for_key_share(cursor, ORGANIZATION, "%s", [organization.pk])
    for table, ids in ((APPLICATION, application_ids), (IDENTITY, identity_ids)):
        lock_for_key_share(cursor, table, ids)


def remove_all_for_applications(*, organization, application_ids: list[int], now: datetime, run_id: int) -> int:
    """Replace with an empty set: every present grant of these applications is removed."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {ENTITLEMENT} SET present = false, removed_at = %s, removed_by_run_id = %s "
            f"WHERE organization_id = %s AND application_id = ANY(%s) AND present",
            [now, run_id, organization.pk, application_ids],
        )
        return cursor.rowcount


# ---------------------------------------------------------------------------------------------
# Identities


def stage_identities(rows: Iterator[tuple[Any, ...]], *, organization) -> list[RowError]:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS inv_stage")
        cursor.execute(
            "CREATE TEMP TABLE inv_stage (row_no integer NOT NULL, email text NOT NULL, name text NOT NULL, "
            "department text NOT NULL, manager_email text NOT NULL, title text, kind text NOT NULL, "
            "status text NOT NULL) ON COMMIT DROP"
        )
        _copy(
            cursor.cursor,
            "inv_stage",
            ("row_no", "email", "name", "department", "manager_email", "title", "kind", "status"),
            rows,
        )
        cursor.execute("ANALYZE inv_stage")
        _hash_joins_for_big_stage(cursor)
        errors = _duplicates(cursor, "email", "email", lambda r: r[0])
        cursor.execute(
            f"""
            SELECT s.row_no, s.manager_email FROM inv_stage s
            WHERE s.manager_email <> ''
              AND NOT EXISTS (SELECT 1 FROM inv_stage m WHERE m.email = s.manager_email)
              AND NOT EXISTS (SELECT 1 FROM {IDENTITY} i WHERE i.organization_id = %s AND i.email = s.manager_email)
            ORDER BY s.row_no LIMIT {MAX_ERRORS}
            """,
            [organization.pk],
        )
        errors += [
            RowError(row, "manager_email", f"manager {email!r} is neither in this file nor in the inventory")
            for row, email in cursor.fetchall()
        ]
    return errors


def _hash_joins_for_big_loads(cursor, rows: int) -> bool:
    """From BIG_LOAD_ROWS staged rows on, this transaction's joins avoid nested loops. Returns whether so.

    Statistics taken before a load can say a table is empty (a new database's are), and a nested
    loop planned on them rescans the growing table once per staged row: minutes for 50,000 people.
    """
    if rows < BIG_LOAD_ROWS:
        return False
    cursor.execute("SET LOCAL enable_nestloop = off")
    return True


def _hash_joins_for_big_stage(cursor) -> int:
    """Count the staged rows and plan for them (_hash_joins_for_big_loads)."""
    cursor.execute("SELECT count(*) FROM inv_stage")
    staged = cursor.fetchone()[0]
    _hash_joins_for_big_loads(cursor, staged)
    return staged


def _identity_statistics_after(cursor, added: int) -> None:
    """Refresh the identities' statistics once a transaction has added ANALYZE_AFTER_ROWS of them, so the
    joins that follow are not planned for the table as it was."""
    if added >= ANALYZE_AFTER_ROWS:
        cursor.execute(f"ANALYZE {IDENTITY}")


def merge_identities(*, organization, now: datetime) -> MergeCounts:
    """Upsert staged identities by e-mail. A NULL staged title means the file has no title column:
    the stored title is kept."""
    counts = MergeCounts()
    params = {"org": organization.pk, "now": now}
    with connection.cursor() as cursor:
        staged = _hash_joins_for_big_stage(cursor)
        # Counted before writing: "changed" compares every column the file carries, the manager by e-mail.
        cursor.execute(
            f"""
            SELECT count(*) FILTER (WHERE i.id IS NULL),
                   count(*) FILTER (WHERE i.id IS NOT NULL AND (
                       (i.name, i.department, i.kind, i.status, i.title, COALESCE(m.email, ''))
                       IS DISTINCT FROM
                       (s.name, s.department, s.kind, s.status, COALESCE(s.title, i.title), s.manager_email)))
            FROM inv_stage s
            LEFT JOIN {IDENTITY} i ON i.organization_id = %(org)s AND i.email = s.email
            LEFT JOIN {IDENTITY} m ON m.id = i.manager_id
            """,
            params,
        )
        counts.created, counts.updated = cursor.fetchone()
        counts.unchanged = staged - counts.created - counts.updated
        cursor.execute(
            f"""
            UPDATE {IDENTITY} i SET name = s.name, department = s.department, kind = s.kind, status = s.status,
                title = COALESCE(s.title, i.title), updated_at = %(now)s
            FROM inv_stage s
            WHERE i.organization_id = %(org)s AND i.email = s.email
              AND (i.name, i.department, i.kind, i.status, i.title)
                  IS DISTINCT FROM (s.name, s.department, s.kind, s.status, COALESCE(s.title, i.title))
            """,
            params,
        )
        cursor.execute(
            f"""
            INSERT INTO {IDENTITY} (organization_id, email, name, department, title, kind, status,
                                    external_ids, created_at, updated_at)
            SELECT %(org)s, s.email, s.name, s.department, COALESCE(s.title, ''), s.kind, s.status, '{{}}'::jsonb,
                   %(now)s, %(now)s
            FROM inv_stage s
            ON CONFLICT (organization_id, email) DO NOTHING
            """,
            params,
        )
        _identity_statistics_after(cursor, cursor.rowcount)
        # Managers are linked once every identity of the file exists, so order in the file does not matter.
        cursor.execute(
            f"""
            UPDATE {IDENTITY} i SET manager_id = m.id, updated_at = %(now)s
            FROM inv_stage s LEFT JOIN {IDENTITY} m ON m.organization_id = %(org)s AND m.email = s.manager_email
            WHERE i.organization_id = %(org)s AND i.email = s.email AND i.manager_id IS DISTINCT FROM m.id
            """,
            params,
        )
    return counts


def staged_identity_ids(*, organization) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT i.id FROM inv_stage s JOIN {IDENTITY} i ON i.organization_id = %s AND i.email = s.email",
            [organization.pk],
        )
        return [r[0] for r in cursor.fetchall()]


# ---------------------------------------------------------------------------------------------
# Applications


def stage_applications(rows: Iterator[tuple[Any, ...]]) -> list[RowError]:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS inv_stage")
        cursor.execute(
            "CREATE TEMP TABLE inv_stage (row_no integer NOT NULL, name text NOT NULL, category text NOT NULL, "
            "sanctioned boolean NOT NULL, owner_email text NOT NULL, remediation_owner_email text) ON COMMIT DROP"
        )
        _copy(
            cursor.cursor,
            "inv_stage",
            ("row_no", "name", "category", "sanctioned", "owner_email", "remediation_owner_email"),
            rows,
        )
        # Names are matched without regard to case, as the entitlements files refer to them.
        return _duplicates(cursor, "lower(name)", "name", lambda r: r[0])


def merge_applications(*, organization, now: datetime) -> MergeCounts:
    counts = MergeCounts()
    params = {"org": organization.pk, "now": now}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM inv_stage")
        staged = cursor.fetchone()[0]
        match = "a.organization_id = %(org)s AND lower(a.name) = lower(s.name)"
        changed = (
            "(a.name, a.category, a.sanctioned, a.owner_email, a.remediation_owner_email) IS DISTINCT FROM "
            "(s.name, s.category, s.sanctioned, s.owner_email, COALESCE(s.remediation_owner_email, "
            "a.remediation_owner_email))"
        )
        cursor.execute(
            f"""
            SELECT count(*) FILTER (WHERE a.id IS NULL), count(*) FILTER (WHERE a.id IS NOT NULL AND {changed})
            FROM inv_stage s LEFT JOIN {APPLICATION} a ON {match}
            """,
            params,
        )
        counts.created, counts.updated = cursor.fetchone()
        counts.unchanged = staged - counts.created - counts.updated
        cursor.execute(
            f"""
            UPDATE {APPLICATION} a SET name = s.name, category = s.category, sanctioned = s.sanctioned,
                owner_email = s.owner_email,
                remediation_owner_email = COALESCE(s.remediation_owner_email, a.remediation_owner_email),
                updated_at = %(now)s
            FROM inv_stage s WHERE {match} AND {changed}
            """,
            params,
        )
        cursor.execute(
            f"""
            INSERT INTO {APPLICATION} (organization_id, name, category, sanctioned, owner_email,
                remediation_owner_email, feed, created_at, updated_at)
            SELECT %(org)s, s.name, s.category, s.sanctioned, s.owner_email, COALESCE(s.remediation_owner_email, ''),
                   'file', %(now)s, %(now)s
            FROM inv_stage s WHERE NOT EXISTS (SELECT 1 FROM {APPLICATION} a WHERE {match})
            """,
            params,
        )
    return counts


# ---------------------------------------------------------------------------------------------
# SCIM users


def upsert_scim_identities(
    *, organization, now: datetime, rows: list[tuple], connector_id: int
) -> tuple[int, list[int]]:
    """Make identities of SCIM users, matched by e-mail.

    Users the inventory does not know are created with status unknown (no HR record: orphaned),
    or terminated when the provider says they are inactive; an inactive user marks a known
    identity terminated. Returns (identities created, ids whose status changed).
    """
    key = f"scim:{connector_id}"
    params = {"org": organization.pk, "now": now, "key": key}
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS scim_stage")
        cursor.execute(
            "CREATE TEMP TABLE scim_stage (row_no integer, email text NOT NULL, name text NOT NULL, "
            "active boolean NOT NULL, scim_id text NOT NULL) ON COMMIT DROP"
        )
        _copy(cursor.cursor, "scim_stage", ("row_no", "email", "name", "active", "scim_id"), iter(rows))
        # Two accounts can share an e-mail; the active one speaks for the person.
        users = "(SELECT DISTINCT ON (email) * FROM scim_stage ORDER BY email, active DESC, row_no) s"
        cursor.execute(
            f"""
            UPDATE {IDENTITY} i SET status = 'terminated', updated_at = %(now)s FROM {users}
            WHERE i.organization_id = %(org)s AND i.email = s.email AND NOT s.active AND i.status <> 'terminated'
            RETURNING i.id
            """,
            params,
        )
        changed = [r[0] for r in cursor.fetchall()]
        cursor.execute(
            f"""
            UPDATE {IDENTITY} i SET
                name = CASE WHEN i.name = '' THEN s.name ELSE i.name END,
                external_ids = i.external_ids || jsonb_build_object(%(key)s::text, s.scim_id)
            FROM {users}
            WHERE i.organization_id = %(org)s AND i.email = s.email
              AND ((i.name = '' AND s.name <> '') OR (i.external_ids ->> %(key)s) IS DISTINCT FROM s.scim_id)
            """,
            params,
        )
        cursor.execute(
            f"""
            INSERT INTO {IDENTITY} (organization_id, email, name, department, title, kind, status,
                                    external_ids, created_at, updated_at)
            SELECT %(org)s, s.email, s.name, '', '', 'human',
                   CASE WHEN s.active THEN 'unknown' ELSE 'terminated' END,
                   jsonb_build_object(%(key)s::text, s.scim_id), %(now)s, %(now)s
            FROM {users}
            ON CONFLICT (organization_id, email) DO NOTHING
            """,
            params,
        )
        created = cursor.rowcount
        _identity_statistics_after(cursor, created)
        return created, changed


# ---------------------------------------------------------------------------------------------
# Findings


def findings_recompute(
    *,
    organization,
    now: datetime,
    application_ids: list[int] | None = None,
    identity_ids: list[int] | None = None,
) -> int:
    """Recompute the finding flags; only rows whose flags change are written. Returns that count."""
    params: dict[str, Any] = {"org": organization.pk, **findings_params(organization, now)}
    where = ""
    if application_ids is not None:
        where += " AND e.application_id = ANY(%(apps)s)"
        params["apps"] = application_ids
    if identity_ids is not None:
        where += " AND e.identity_id = ANY(%(idents)s)"
        params["idents"] = identity_ids
    findings = findings_sql(role="e.role", last_used="e.last_used", status="i.status")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {ENTITLEMENT} t SET {", ".join(f"{c} = f.{c}" for c in FINDING_COLUMNS)}
            FROM (
                SELECT e.id, {findings}
                FROM {ENTITLEMENT} e JOIN {IDENTITY} i ON i.id = e.identity_id
                WHERE e.organization_id = %(org)s {where}
            ) f
            WHERE t.id = f.id
              AND ({", ".join(f"t.{c}" for c in FINDING_COLUMNS)})
                  IS DISTINCT FROM ({", ".join(f"f.{c}" for c in FINDING_COLUMNS)})
            """,
            params,
        )
        return cursor.rowcount
