"""Snapshot benchmark: launching a campaign over 1,000,000 entitlements in one organization, measured in the
same run against

- **raw**: a hand-written `INSERT ... SELECT` doing the same work (same joins, frozen columns, findings,
  recommendation and application-owner assignment with fallback) into the review-item table itself, with
  its indexes, foreign keys and triggers: what the schema costs without the service around it;
- **lean**: the limit of the machine: the very rows the snapshot writes (its own statement, one pass) into
  a table the benchmark builds for the purpose, `LIKE` the review-item table with its primary key as the
  only index, no foreign keys and no triggers, and drops again.

Every measurement runs in a transaction that is rolled back (foreign keys checked in it, not deferred to a
commit that never comes), in alternating rounds, the fastest of each kept; the review-item table is
vacuumed before each round so no round pays for the dead rows of the one before. Then campaign progress
is read on a kept snapshot.

Goal: Thalian at most 4x the lean limit (LEAN_GOAL); campaign progress under 100 ms. Needs PostgreSQL. The
organization (slug `bench-snapshot`) is created from scratch and removed afterwards.

`run()` returns a dict:

| key | meaning |
|---|---|
| `entitlements`, `items` | grants in the inventory, items one snapshot writes |
| `thalian_s` | seconds of `campaigns.launch.campaign_snapshot` (best round) |
| `raw_s` | seconds of the raw statement into the review-item table (best round) |
| `lean_s` | seconds of the same rows into the one-index table (best round) |
| `lean_ratio`, `raw_ratio` | `thalian_s / lean_s`, `thalian_s / raw_s` |
| `lean_goal`, `lean_goal_met` | the goal (4.0) and whether `lean_ratio <= lean_goal` |
| `rounds` | rounds measured |
| `progress_ms`, `progress_worst_ms` | campaign progress on the kept snapshot: median and worst of 20 reads |
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from typing import Any, TextIO

ROWS = 1_000_000
APPS = 50
GRANTS_PER_IDENTITY = 10
SLUG = "bench-snapshot"
# Alternating rounds of raw and service; the fastest of each is compared, which filters out noise from other
# work on the machine better than the median of so few runs.
ROUNDS = 3
# Thalian's snapshot may take at most this many times the lean limit.
LEAN_GOAL = 4.0
LEAN_TABLE = "bench_lean_review_item"


class _Rollback(Exception):
    pass


def _timed_and_rolled_back(fn, setup=None) -> tuple[float, Any]:
    """Run fn in a transaction, time it, then roll everything back so the next round starts equal.
    `setup` runs first in the same transaction, untimed."""
    from django.db import connection, transaction

    box: dict[str, Any] = {}
    try:
        with transaction.atomic():
            # Foreign keys are deferred to commit; checking them now keeps their cost in the measurement.
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            if setup is not None:
                setup()
            started = time.perf_counter()
            box["result"] = fn()
            box["seconds"] = time.perf_counter() - started
            raise _Rollback
    except _Rollback:
        pass
    return box["seconds"], box["result"]


def _defaults(model, provided: dict[str, str], params: dict) -> dict[str, str]:
    """Columns the benchmark does not set take their model default, so schema additions need no change here."""
    from django.db import connection

    columns = dict(provided)
    for f in model._meta.concrete_fields:
        if f.primary_key or f.column in columns:
            continue
        params[f"d_{f.column}"] = f.get_db_prep_save(f.get_default(), connection)
        columns[f.column] = f"%(d_{f.column})s"
    return columns


def _insert(cursor, model, provided: dict[str, str], tail: str, params: dict) -> int:
    columns = _defaults(model, provided, params)
    cursor.execute(
        f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) SELECT {', '.join(columns.values())} {tail}",
        params,
    )
    return cursor.rowcount


def _purge(organization_id: int) -> None:
    """Remove the benchmark organization and every row of it, whichever area's table holds them (tables
    are retried until foreign keys between them no longer block a delete)."""
    from django.apps import apps
    from django.db import IntegrityError, connection, transaction

    from campaigns.models import Campaign
    from entitlements.models import Identity
    from thalian.models import Organization

    tables = [m._meta.db_table for m in apps.get_models()
              if any(f.column == "organization_id" for f in m._meta.concrete_fields) and not m._meta.proxy]
    tables = list(dict.fromkeys(tables))
    from thalian.services import _audit_purge_allowed

    with transaction.atomic(), _audit_purge_allowed(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Identity._meta.db_table} SET manager_id = NULL WHERE organization_id = %s",
                       [organization_id])
        cursor.execute(f"UPDATE {Campaign._meta.db_table} SET series_id = NULL WHERE organization_id = %s",
                       [organization_id])
        for _ in range(len(tables)):
            left = []
            for table in tables:
                try:
                    with transaction.atomic():
                        cursor.execute(f"DELETE FROM {table} WHERE organization_id = %s", [organization_id])
                except IntegrityError:
                    left.append(table)
            tables = left
            if not tables:
                break
        if tables:
            raise RuntimeError(f"could not remove the benchmark organization's rows from {', '.join(tables)}")
        cursor.execute(f"DELETE FROM {Organization._meta.db_table} WHERE id = %s", [organization_id])


def _build(rows: int, stdout: TextIO):
    """Organization, members, APPS applications (odd-numbered owners are members), identities with managers,
    and `rows` present grants, written set-based with generate_series."""
    from django.db import connection, transaction
    from django.utils import timezone

    from entitlements.models import Application, Entitlement, Identity
    from thalian.models import Organization
    from thalian.permissions import Role
    from thalian.services import member_ensure, organization_ensure

    stale = Organization.objects.filter(slug=SLUG).first()
    if stale is not None:
        _purge(stale.pk)
    organization = organization_ensure(slug=SLUG, name="Snapshot benchmark", plan="enterprise")
    admin = member_ensure(organization=organization, email="admin@bench-snapshot.test", role=Role.ADMIN)
    fallback = member_ensure(organization=organization, email="fallback@bench-snapshot.test",
                             role=Role.SECURITY_ANALYST)
    for a in range(1, APPS, 2):
        member_ensure(organization=organization, email=f"owner{a}@bench-snapshot.test", role=Role.REVIEWER)
    people = max(rows // GRANTS_PER_IDENTITY, 1)
    now = timezone.now()
    params: dict[str, Any] = {"org": organization.pk, "now": now, "people": people, "apps": APPS,
                              "old": now - dt.timedelta(days=200), "recent": now - dt.timedelta(days=3)}
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        _insert(cursor, Application, {
            "organization_id": "%(org)s", "name": "'Application ' || a", "category": "'Bench'",
            "sanctioned": "true", "owner_email": "'owner' || a || '@bench-snapshot.test'",
            "last_synced_at": "%(now)s", "created_at": "%(now)s", "updated_at": "%(now)s",
        }, "FROM generate_series(0, %(apps)s - 1) a", dict(params))
        _insert(cursor, Identity, {
            "organization_id": "%(org)s", "email": "'person' || p || '@bench-snapshot.test'",
            "name": "'Person ' || p", "department": "'Dept ' || (p %% 25)",
            "kind": "CASE WHEN p %% 97 = 0 THEN 'service_account' ELSE 'human' END",
            "status": "CASE WHEN p %% 50 = 0 THEN 'terminated' WHEN p %% 71 = 0 THEN 'unknown' ELSE 'active' END",
            "created_at": "%(now)s", "updated_at": "%(now)s",
        }, "FROM generate_series(0, %(people)s - 1) p", dict(params))
        cursor.execute(f"ANALYZE {Identity._meta.db_table}")
        # Every tenth person manages the nine after them (identities were just inserted with consecutive ids).
        cursor.execute(
            f"""UPDATE {Identity._meta.db_table} i SET manager_id = m.id
                FROM (SELECT min(id) AS lo FROM {Identity._meta.db_table} WHERE organization_id = %(org)s) b,
                     {Identity._meta.db_table} m
                WHERE i.organization_id = %(org)s AND (i.id - b.lo) %% 10 <> 0
                  AND m.id = b.lo + (i.id - b.lo) / 10 * 10 AND m.organization_id = %(org)s""",
            params,
        )
        count = _insert(cursor, Entitlement, {
            "organization_id": "%(org)s", "identity_id": "i.id", "application_id": "a.id",
            "role": "CASE WHEN k = 0 THEN 'admin' ELSE 'member' END",
            "last_used": "CASE WHEN (i.id + k) %% 10 = 0 THEN NULL WHEN (i.id + k) %% 7 = 0 THEN %(old)s "
                         "ELSE %(recent)s END",
            "is_privileged": "k = 0", "first_seen": "%(now)s", "last_seen": "%(now)s", "present": "true",
        }, f"""FROM {Identity._meta.db_table} i
               CROSS JOIN generate_series(0, {GRANTS_PER_IDENTITY} - 1) k
               CROSS JOIN (SELECT min(id) AS lo FROM {Application._meta.db_table}
                           WHERE organization_id = %(org)s) b
               JOIN {Application._meta.db_table} a ON a.id = b.lo + (i.id * 7 + k * 13) %% {APPS}
               WHERE i.organization_id = %(org)s""", dict(params))
    with connection.cursor() as cursor:
        for model in (Identity, Application, Entitlement):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    stdout.write(f"  inventory: {people:,} identities, {APPS} applications, {count:,} entitlements "
                 f"built in {time.perf_counter() - started:.1f}s\n")
    return organization, admin, fallback, count


def _raw_snapshot(organization, campaign, fallback) -> int:
    """The same work as the snapshot service, hand-written: one INSERT ... SELECT."""
    from django.db import connection

    from campaigns.models import ReviewItem
    from campaigns.selectors import REVIEWER_ROLES
    from entitlements.models import Application, Entitlement, Identity
    from thalian.models import Membership, User

    now = time.time()
    params: dict[str, Any] = {
        "org": organization.pk, "campaign": campaign.pk, "fb_id": fallback.pk, "fb_email": fallback.user.email,
        "dormant_before": dt.datetime.fromtimestamp(now, tz=dt.UTC) - dt.timedelta(days=organization.dormant_days),
        "roles": REVIEWER_ROLES,
    }
    dormant = "(e.last_used IS NOT NULL AND e.last_used < %(dormant_before)s)"
    ok = "(r.id IS NOT NULL AND r.email <> lower(i.email))"
    provided = {
        "organization_id": "e.organization_id", "campaign_id": "%(campaign)s", "entitlement_id": "e.id",
        "application_id": "e.application_id", "identity_email": "i.email", "identity_name": "i.name",
        "identity_department": "i.department", "identity_manager_email": "COALESCE(m.email, '')",
        "identity_kind": "i.kind", "identity_status": "i.status", "application_name": "a.name",
        "application_category": "a.category", "application_sanctioned": "a.sanctioned", "role": "e.role",
        "last_used": "e.last_used", "is_dormant": dormant, "is_terminated": "i.status = 'terminated'",
        "is_privileged": "e.is_privileged", "is_orphaned": "i.status = 'unknown'",
        "is_never_used": "e.last_used IS NULL",
        "recommendation": f"CASE WHEN i.status IN ('terminated', 'unknown') OR {dormant} THEN 'revoke' "
                          "ELSE 'approve' END",
        "recommendation_reason": f"CASE WHEN i.status = 'terminated' THEN 'terminated' WHEN i.status = 'unknown' "
                                 f"THEN 'orphaned' WHEN {dormant} THEN 'dormant' ELSE 'active' END",
        "reviewer_id": f"CASE WHEN {ok} THEN r.id ELSE %(fb_id)s END",
        "reviewer_email": f"CASE WHEN {ok} THEN r.email ELSE %(fb_email)s END",
        "assignment_note": f"CASE WHEN {ok} THEN '' ELSE 'fallback' END",
    }
    tail = f"""
        FROM {Entitlement._meta.db_table} e
        JOIN {Identity._meta.db_table} i ON i.id = e.identity_id
        JOIN {Application._meta.db_table} a ON a.id = e.application_id
        LEFT JOIN {Identity._meta.db_table} m ON m.id = i.manager_id
        LEFT JOIN (SELECT mm.id, lower(u.email) AS email FROM {Membership._meta.db_table} mm
                   JOIN {User._meta.db_table} u ON u.id = mm.user_id
                   WHERE mm.organization_id = %(org)s AND mm.role = ANY(%(roles)s)) r
               ON r.email = lower(a.owner_email)
        WHERE e.organization_id = %(org)s AND e.present
    """
    with connection.cursor() as cursor:
        return _insert(cursor, ReviewItem, provided, tail, params)


def _lean_table_create() -> None:
    """The lean limit's table: the review-item columns and defaults, the primary key as its only index, no
    foreign keys, no triggers. Created inside the measured transaction, so the rollback drops it."""
    from django.db import connection

    from campaigns.models import ReviewItem

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {LEAN_TABLE}")
        cursor.execute(f"CREATE TABLE {LEAN_TABLE} (LIKE {ReviewItem._meta.db_table} INCLUDING DEFAULTS "
                       "INCLUDING IDENTITY)")
        cursor.execute(f"ALTER TABLE {LEAN_TABLE} ADD PRIMARY KEY (id)")


def _lean_snapshot(campaign) -> int:
    """The rows the snapshot writes, by its own statement over the whole id range in one pass, into the lean
    table."""
    from django.db import connection
    from django.utils import timezone

    from campaigns.launch import snapshot_sql
    from campaigns.models import ReviewItem
    from campaigns.selectors import entitlement_id_bounds

    lo, hi = entitlement_id_bounds(organization=campaign.organization)
    sql = snapshot_sql(campaign=campaign, now=timezone.now(), lo=lo - 1, hi=hi)
    table = ReviewItem._meta.db_table
    text = sql.text.replace(f"INSERT INTO {table} ", f"INSERT INTO {LEAN_TABLE} ", 1)
    if text == sql.text:
        raise RuntimeError("the snapshot statement no longer starts with INSERT INTO the review-item table")
    with connection.cursor() as cursor:
        cursor.execute(text, sql.params)
        return cursor.rowcount


def _vacuum_items() -> None:
    from django.db import connection

    from campaigns.models import ReviewItem

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM {ReviewItem._meta.db_table}")


def _snapshot_via_service(campaign) -> int:
    from campaigns import launch
    from campaigns.models import Campaign, CampaignStatus

    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.LAUNCHING)
    return launch.campaign_snapshot(campaign_id=campaign.pk)


def run(stdout: TextIO, rows: int = ROWS) -> dict:
    from django.db import connection

    from campaigns import selectors
    from campaigns.models import Campaign, CampaignStatus, ReviewItem
    from thalian.tenancy import scope

    organization, admin, fallback, count = _build(rows, stdout)
    results: dict[str, Any] = {"entitlements": count}
    try:
        with scope(organization):
            campaign = Campaign.objects.create(
                organization=organization, title="Benchmark campaign", due_date=dt.date.today() + dt.timedelta(30),
                status=CampaignStatus.DRAFT, reviewer_strategy="application_owner", fallback_reviewer=fallback,
                created_by=admin.user,
            )
            campaign = Campaign.objects.select_related("organization", "fallback_reviewer__user").get(pk=campaign.pk)
            times: dict[str, list[float]] = {"raw": [], "thalian": [], "lean": []}
            rounds = ROUNDS if count <= 200_000 else 2
            for _ in range(rounds):
                _vacuum_items()
                seconds, raw_rows = _timed_and_rolled_back(lambda: _raw_snapshot(organization, campaign, fallback))
                times["raw"].append(seconds)
                _vacuum_items()
                seconds, service_rows = _timed_and_rolled_back(lambda: _snapshot_via_service(campaign))
                times["thalian"].append(seconds)
                seconds, lean_rows = _timed_and_rolled_back(lambda: _lean_snapshot(campaign), setup=_lean_table_create)
                times["lean"].append(seconds)
                if not raw_rows == service_rows == lean_rows:
                    raise RuntimeError(f"snapshots differ: raw {raw_rows}, Thalian {service_rows}, "
                                       f"lean {lean_rows} rows")
            thalian, raw, lean = (min(times[k]) for k in ("thalian", "raw", "lean"))
            lean_ratio = thalian / lean if lean else float("inf")
            met = lean_ratio <= LEAN_GOAL
            stdout.write(
                f"  snapshot of {service_rows:,} items, best of {rounds} alternating rounds:\n"
                f"    Thalian (campaign_snapshot)            {thalian:8.2f} s\n"
                f"    raw INSERT ... SELECT, same schema     {raw:8.2f} s   (Thalian {thalian / raw:.2f}x)\n"
                f"    lean limit (same rows, one index)      {lean:8.2f} s   (Thalian {lean_ratio:.2f}x)\n"
                f"  goal: Thalian <= {LEAN_GOAL:g}x the lean limit -> {'met' if met else 'NOT met'} "
                f"({lean_ratio:.2f}x)\n"
            )
            results.update(items=service_rows, thalian_s=thalian, raw_s=raw, lean_s=lean, lean_ratio=lean_ratio,
                           raw_ratio=thalian / raw if raw else float("inf"), lean_goal=LEAN_GOAL, lean_goal_met=met,
                           rounds=rounds)

            _snapshot_via_service(campaign)
            with connection.cursor() as cursor:
                cursor.execute(f"VACUUM ANALYZE {ReviewItem._meta.db_table}")
            campaign.refresh_from_db()
            timings = []
            for _ in range(21):
                started = time.perf_counter()
                progress = selectors.campaign_progress(campaign=campaign)
                timings.append((time.perf_counter() - started) * 1000)
            median_ms = statistics.median(timings)
            worst_ms = max(timings[1:])
            stdout.write(f"  campaign progress: median {median_ms:.1f} ms, worst {worst_ms:.1f} ms over "
                         f"{progress.total:,} items (target < 100 ms) {'OK' if median_ms < 100 else 'OVER TARGET'}\n")
            results.update(progress_ms=median_ms, progress_worst_ms=worst_ms)
    finally:
        _purge(organization.pk)
    return results


if __name__ == "__main__":  # pragma: no cover - manual runs
    import os
    import sys

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "thalian.settings")
    import django

    django.setup()
    run(sys.stdout, int(sys.argv[1]) if len(sys.argv) > 1 else ROWS)
