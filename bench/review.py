"""Benchmark of reviewing (`python manage.py bench review`).

Builds an active campaign of ``rows`` items (default 1,000,000) in a throw-away organization: ten departments
of ``rows / 10`` items each and ten reviewers. Then, in the same run:

1. "Approve all in view" on one department (100,000 items at full size) through ``decisions_bulk_apply``
   (one UPDATE ... RETURNING, hash chain, COPY of the history rows, audit event, ticketing hook), against the
   raw SQL doing the same work without the chain: ``UPDATE`` plus ``INSERT ... SELECT`` of the history rows.
   Each side runs twice on fresh departments; the faster run counts. Target: at most 2x.
2. The item page served by gunicorn on loopback to 8 concurrent clients: first pages, deep keyset pages,
   a department filter, a sort by application, and a reviewer's own pending items. Target: p95 under 150 ms.
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from bench.support import bench_campaign, review_items_insert
from campaigns.decisions import decisions_bulk_apply
from campaigns.models import Campaign, DecisionEvent, ReviewItem
from campaigns.review_selectors import ItemFilter, _encode_cursor, review_items_matching
from thalian.models import Membership, Organization, User
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

BULK_RATIO_LIMIT = 2.0
PAGE_P95_LIMIT_MS = 150.0
DEPARTMENTS = 10
REVIEWERS = 10


def _insert_items(campaign: Campaign, rows: int, reviewers: list[Membership]) -> None:
    now = timezone.now()
    generated = {
        "identity_email": ("'person' || g || '@corp.example'", []),
        "identity_name": ("'Person ' || g", []),
        "identity_department": (f"'Dept ' || (g %% {DEPARTMENTS})", []),
        "identity_manager_email": ("'manager' || (g %% 1000) || '@corp.example'", []),
        "identity_kind": ("CASE WHEN g %% 20 = 0 THEN 'service_account' ELSE 'human' END", []),
        "identity_status": ("CASE WHEN g %% 50 = 0 THEN 'terminated' ELSE 'active' END", []),
        "application_name": ("'App ' || lpad((g %% 200)::text, 3, '0')", []),
        "application_category": ("'Productivity'", []),
        "role": ("CASE WHEN g %% 7 = 0 THEN 'admin' ELSE 'member' END", []),
        "last_used": ("%s - (g %% 400) * interval '1 day'", [now]),
        "recommendation": ("CASE WHEN g %% 50 = 0 THEN 'revoke' ELSE 'approve' END", []),
        "recommendation_reason": ("'Active and used recently'", []),
        "reviewer": ("(%s::bigint[])[1 + (g / 7) %% " + str(REVIEWERS) + "]", [[m.pk for m in reviewers]]),
        "reviewer_email": (
            "(%s::text[])[1 + (g / 7) %% " + str(REVIEWERS) + "]",
            [[m.user.email for m in reviewers]],
        ),
        "is_dormant": ("g %% 400 > 90", []),
        "is_terminated": ("g %% 50 = 0", []),
        "is_privileged": ("g %% 7 = 0", []),
    }
    review_items_insert(campaign=campaign, rows=rows, generated=generated)
    _vacuum()


def _vacuum() -> None:
    """What autovacuum does in production, done now: earlier runs leave dead rows behind, and statistics must
    describe the new campaign before the planner is measured."""
    with connection.cursor() as cursor:
        for model in (ReviewItem, DecisionEvent):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")


def _raw_bulk(campaign: Campaign, actor: Membership, department: str) -> tuple[float, int]:
    """The same work in plain SQL, minus the hash chain: UPDATE the items, INSERT ... SELECT their history."""
    items, events = ReviewItem._meta.db_table, DecisionEvent._meta.db_table
    where = "organization_id = %s AND campaign_id = %s AND identity_department = %s AND signed_off_at IS NULL"
    keys = [campaign.organization_id, campaign.pk, department]
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {items} SET decision = 'approve', decision_reason = '', decision_comment = '', "
            "decided_by_id = %s, decided_by_email = %s, decided_by_role = %s, decided_at = now(), "
            f"version = version + 1 WHERE {where}",
            [actor.user_id, actor.user.email, actor.role, *keys],
        )
        count = cursor.rowcount
        cursor.execute(
            f"INSERT INTO {events} (organization_id, campaign_id, item_id, decision, reason, comment, actor_id, "
            "actor_email, actor_role, kind, bulk_id, created_at, prev_hash, hash) "
            "SELECT organization_id, campaign_id, id, 'approve', '', '', %s, %s, %s, 'bulk', NULL, now(), '', '' "
            f"FROM {items} WHERE organization_id = %s AND campaign_id = %s AND identity_department = %s ORDER BY id",
            [actor.user_id, actor.user.email, actor.role, *keys],
        )
    return time.perf_counter() - started, count


def _thalian_bulk(campaign: Campaign, actor: Membership, department: str) -> tuple[float, int]:
    started = time.perf_counter()
    with scope(campaign.organization):
        items = review_items_matching(campaign=campaign, membership=actor, flt=ItemFilter(department=department))
        # Every item in view, as the raw UPDATE it is compared with (the guard would leave revoke
        # recommendations out).
        count = decisions_bulk_apply(
            campaign=campaign, actor=actor, items=items, decision="approve", include_recommended_revoke=True,
            scope_label="all in view (benchmark)",
        ).updated
    return time.perf_counter() - started, count


# --------------------------------------------------------------------------------------------------
# Item page under load
# --------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_gunicorn(port: int, workers: int) -> subprocess.Popen:
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": (
                f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
                f"/{db['NAME']}"
            ),
            "DEBUG": "false",
            "SECURE_SSL_REDIRECT": "false",
            "SECRET_KEY": settings.SECRET_KEY,
            "ENCRYPTION_KEY": settings.ENCRYPTION_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            "THALIAN_DATA_DIR": str(settings.DATA_DIR),
        }
    )
    if db.get("PASSWORD"):
        env["DATABASE_URL"] = env["DATABASE_URL"].replace("@", f":{db['PASSWORD']}@", 1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "thalian.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers),
         "--access-logfile", "-", "--log-level", "warning"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {proc.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gunicorn did not start within 30 s")


def _session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _get(port: int, path: str, cookie: str) -> tuple[float, int, int]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}", "Host": "127.0.0.1"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return (time.perf_counter() - started) * 1000, response.status, body.count(b'<tr id="item-')


def _page_load(
    *, port: int, targets: list[tuple[str, str, str]], clients: int, rounds: int
) -> dict[str, list[float]]:
    """Each client walks the target list `rounds` times; returns latencies (ms) per target label."""
    latencies: dict[str, list[float]] = {label: [] for label, _p, _c in targets}
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(offset: int) -> None:
        barrier.wait()
        for r in range(rounds):
            for i in range(len(targets)):
                label, path, cookie = targets[(i + offset + r) % len(targets)]
                ms, status, rows = _get(port, path, cookie)
                with lock:
                    if status != 200 or rows == 0:
                        failures.append(f"{label}: HTTP {status}, {rows} rows")
                    latencies[label].append(ms)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"item page failed under load: {failures[:5]}")
    return latencies


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def run(stdout, rows: int = 1_000_000, clients: int = 8, rounds: int = 15, workers: int | None = None) -> dict:
    suffix = uuid.uuid4().hex[:8]
    slug = f"bench-review-{suffix}"
    with scopes_disabled():
        organization = Organization.objects.create(slug=slug, name="Review benchmark", plan="enterprise")
        admin_user = User.objects.create_user(f"admin-{suffix}@bench.example", None)
        admin = Membership.objects.create(user=admin_user, organization=organization, role=Role.ADMIN)
        reviewers = [
            Membership.objects.create(
                user=User.objects.create_user(f"reviewer{n}-{suffix}@bench.example", None),
                organization=organization,
                role=Role.REVIEWER,
            )
            for n in range(REVIEWERS)
        ]
        campaign = bench_campaign(
            organization=organization,
            title="Review benchmark",
            rows=rows,
            launched_at=timezone.now(),
            reason_required=True,
        )
    server = None
    try:
        started = time.perf_counter()
        _insert_items(campaign, rows, reviewers)
        stdout.write(f"created {rows:,} review items in {time.perf_counter() - started:.1f}s")

        # 1. Approve all in view, against raw SQL, alternating so neither side gets a warmer cache.
        raw_runs, ours_runs = [], []
        for n in range(2):
            raw_s, raw_count = _raw_bulk(campaign, admin, f"Dept {2 * n + 1}")
            ours_s, ours_count = _thalian_bulk(campaign, admin, f"Dept {2 * n}")
            raw_runs.append(raw_s)
            ours_runs.append(ours_s)
            stdout.write(
                f"run {n + 1}: raw UPDATE + history INSERT of {raw_count:,} items {raw_s:.2f}s; "
                f"approve all in view of {ours_count:,} items {ours_s:.2f}s"
            )
        ratio = min(ours_runs) / min(raw_runs)
        bulk_ok = ratio <= BULK_RATIO_LIMIT
        stdout.write(
            f"approve all in view / raw SQL: {ratio:.2f}x ({'ok' if bulk_ok else 'OVER'} <= {BULK_RATIO_LIMIT:.0f}x)"
        )
        _vacuum()

        # 2. Item page p95 under concurrent load, through gunicorn on loopback.
        port = _free_port()
        workers = workers or max(2, (os.cpu_count() or 2) * 2)
        server = _start_gunicorn(port, workers)
        base = f"/o/{slug}/campaigns/{campaign.pk}/items/"
        with scopes_disabled():
            ids = ReviewItem.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True)
            middle_id = ids[rows // 2]
            deep_dept = (
                ReviewItem.objects.filter(campaign=campaign)
                .order_by("identity_department", "id")
                .values_list("identity_department", "id")[rows * 3 // 4]
            )
        admin_cookie = _session_cookie(admin_user)
        reviewer_cookie = _session_cookie(reviewers[0].user)
        targets = [
            ("first page (admin)", base, admin_cookie),
            ("deep keyset page (admin)", f"{base}?cursor={_encode_cursor('id', middle_id, middle_id, False)}", admin_cookie),
            ("department filter (admin)", f"{base}?department=Dept+7", admin_cookie),
            ("sort by application (admin)", f"{base}?sort=application", admin_cookie),
            (
                "deep page sorted by department (admin)",
                f"{base}?sort=department&cursor={_encode_cursor('department', deep_dept[0], deep_dept[1], False)}",
                admin_cookie,
            ),
            ("own items (reviewer)", f"{base}?reviewer=me", reviewer_cookie),
            ("own pending items (reviewer)", f"{base}?decision=pending", reviewer_cookie),
            ("findings filter (reviewer)", f"{base}?finding=terminated", reviewer_cookie),
        ]
        _page_load(port=port, targets=targets, clients=2, rounds=1)  # warm-up: workers connect, caches fill
        latencies = _page_load(port=port, targets=targets, clients=clients, rounds=rounds)
        everything = [ms for values in latencies.values() for ms in values]
        p95 = _p95(everything)
        page_ok = p95 < PAGE_P95_LIMIT_MS
        for label, values in latencies.items():
            stdout.write(
                f"  {label}: median {statistics.median(values):.0f} ms, p95 {_p95(values):.0f} ms, "
                f"max {max(values):.0f} ms"
            )
        stdout.write(
            f"item page with {clients} concurrent clients ({len(everything)} requests, gunicorn {workers} workers): "
            f"median {statistics.median(everything):.0f} ms, p95 {p95:.0f} ms "
            f"({'ok' if page_ok else 'OVER'} < {PAGE_P95_LIMIT_MS:.0f} ms)"
        )
        return {
            "bulk_raw_s": min(raw_runs),
            "bulk_s": min(ours_runs),
            "bulk_ratio": ratio,
            "page_p95_ms": p95,
            "ok": bulk_ok and page_ok,
        }
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        _cleanup(organization, campaign)


def _cleanup(organization: Organization, campaign: Campaign) -> None:
    from thalian.services import _audit_purge_allowed

    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {DecisionEvent._meta.db_table} WHERE campaign_id = %s", [campaign.pk])
        cursor.execute(f"DELETE FROM {ReviewItem._meta.db_table} WHERE campaign_id = %s", [campaign.pk])
    with transaction.atomic(), _audit_purge_allowed(), scopes_disabled():
        users = list(Membership.objects.filter(organization=organization).values_list("user_id", flat=True))
        Organization.objects.filter(pk=organization.pk).delete()
        User.objects.filter(pk__in=users).delete()
