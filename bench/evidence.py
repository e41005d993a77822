"""Benchmark of the evidence exports (`python manage.py bench evidence`).

Builds a campaign of ``rows`` items (default 1,000,000) in a throw-away organization, then measures in the same
run:

- the raw PostgreSQL ``COPY (SELECT ...) TO STDOUT CSV`` of the same columns from the same table, and the lean
  limit: ``COPY`` of a table the benchmark builds (and drops) holding exactly the export's finished text, the
  least any export of these rows can cost;
- Thalian's streamed CSV export through the page URL (time to first byte, to the first item row, total, peak
  resident memory while streaming). Targets: first item row under 1 s, total at most 1.5x the same-columns COPY,
  peak RSS under 150 MB;
- the signed evidence ZIP above the asynchronous threshold, as an auditor gets it: requested through the
  service the export button calls, built by a real Celery worker, until it is ready; then verified as
  ``verify_evidence`` does. Targets: at most 3x the CSV export, peak RSS of the worker under 200 MB.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bench.support import bench_campaign, review_items_insert
from campaigns.models import Campaign, ReviewItem
from thalian.models import Membership, Organization, User
from thalian.permissions import Role
from thalian.services import _audit_purge_allowed
from thalian.tenancy import scope, scopes_disabled

TTFB_LIMIT_S = 1.0
RATIO_LIMIT = 1.5
RSS_LIMIT_MB = 150
ZIP_RATIO_LIMIT = 3.0
ZIP_RSS_LIMIT_MB = 200
ZIP_TIMEOUT_SECONDS = 1800
LEAN_TABLE = "bench_evidence_lean"

# Values of the generated items, as SQL over generate_series(1, n) AS g.
_GENERATED = {
    "identity_email": "'person' || g || '@corp.example'",
    "identity_name": "'Person ' || g",
    "identity_department": "(ARRAY['Engineering','Sales','Finance','-Ops','Legal'])[1 + g % 5]",
    "identity_manager_email": "'manager' || (g % 1000) || '@corp.example'",
    "identity_kind": "CASE WHEN g % 20 = 0 THEN 'service_account' ELSE 'human' END",
    "identity_status": "CASE WHEN g % 50 = 0 THEN 'terminated' ELSE 'active' END",
    "application_name": "'App ' || (g % 200)",
    "role": "CASE WHEN g % 7 = 0 THEN '=admin' ELSE 'member' END",
    "last_used": "%(now)s - (g % 400) * interval '1 day'",
    "recommendation": "CASE WHEN g % 50 = 0 THEN 'revoke' ELSE 'approve' END",
    "reviewer_email": "'reviewer' || (g % 50) || '@corp.example'",
    "decision": "(ARRAY['','approve','approve','revoke','exception'])[1 + g % 5]",
    "decision_reason": "CASE WHEN g % 5 IN (3, 4) THEN 'reason for ' || g ELSE '' END",
    "decided_by_email": "CASE WHEN g % 5 = 0 THEN '' ELSE 'reviewer' || (g % 50) || '@corp.example' END",
    "decided_by_role": "CASE WHEN g % 5 = 0 THEN '' ELSE 'reviewer' END",
    "decided_at": "CASE WHEN g % 5 = 0 THEN NULL ELSE %(now)s - (g % 1000) * interval '1 minute' END",
    "ticket_url": "CASE WHEN g % 5 = 3 THEN 'https://itsm.example/browse/SEC-' || g ELSE '' END",
    "remediation_status": "CASE WHEN g % 5 = 3 THEN 'pending' ELSE '' END",
    "is_dormant": "g % 400 > 90",
    "is_terminated": "g % 50 = 0",
    "is_privileged": "g % 7 = 0",
}

_COPY_COLUMNS = (
    "i.identity_email, i.application_name, i.role, i.last_used, i.decision, i.decision_reason, i.decided_by_email, "
    "i.decided_at, i.ticket_url, i.identity_name, i.identity_department, i.identity_manager_email, i.identity_kind, "
    "i.identity_status, i.is_dormant, i.is_terminated, i.is_privileged, i.is_orphaned, i.is_never_used, "
    "i.recommendation, i.reviewer_email, i.decided_by_role, i.remediation_status, c.title, c.snapshot_at"
)


def _insert_items(campaign: Campaign, rows: int) -> None:
    """One INSERT ... SELECT; columns the benchmark does not set get their model default."""
    now = timezone.now()
    generated = {
        name: (
            expression.replace(" % ", " %% ").replace("%(now)s", "%s"),
            [now] * expression.count("%(now)s"),
        )
        for name, expression in _GENERATED.items()
    }
    review_items_insert(campaign=campaign, rows=rows, generated=generated)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ReviewItem._meta.db_table}")


class _RssSampler:
    """Peak resident set size of this process, sampled every 20 ms while running."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current() -> int:
        with open(f"/proc/{os.getpid()}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            self._stop.wait(0.02)

    def __enter__(self) -> _RssSampler:
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def _raw_copy(campaign: Campaign) -> tuple[float, int]:
    return _copy_seconds(
        f"COPY (SELECT {_COPY_COLUMNS} FROM {ReviewItem._meta.db_table} i "
        f"JOIN {Campaign._meta.db_table} c ON c.id = i.campaign_id "
        f"WHERE i.organization_id = {int(campaign.organization_id)} AND i.campaign_id = '{campaign.pk}' "
        "ORDER BY i.id) TO STDOUT WITH (FORMAT csv, HEADER true)"
    )


def _export(campaign: Campaign, user: User) -> dict:
    """The export as a browser gets it: the page URL through Django's whole request stack."""
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    url = reverse("evidence_campaign_csv", args=[campaign.organization.slug, campaign.pk])
    size = 0
    first_byte = first_row = None
    with _RssSampler() as rss:
        started = time.perf_counter()
        response = client.get(url, secure=True)
        if response.status_code != 200:
            raise RuntimeError(f"export answered {response.status_code}: {response.content[:300]!r}")
        for chunk in response.streaming_content:
            now = time.perf_counter() - started
            if first_byte is None:
                first_byte = now
            elif first_row is None:
                first_row = now
            size += len(chunk)
        response.close()
        total = time.perf_counter() - started
    return {"ttfb": first_byte, "first_row": first_row, "total": total, "size": size, "rss": rss.peak}


def _copy_seconds(sql: str) -> tuple[float, int]:
    size = 0
    started = time.perf_counter()
    with connection.cursor() as cursor:
        with cursor.cursor.copy(sql) as copy:
            for block in copy:
                size += len(block)
    return time.perf_counter() - started, size


def _lean_copy(campaign: Campaign) -> tuple[float, int]:
    """COPY of a table holding exactly the export's finished cells, in order: shipping the bytes and nothing
    else. The table is built from the export's own SELECT and dropped afterwards."""
    from evidence.items_csv import campaign_items_for_export, item_rows

    sql, params = item_rows(campaign_items_for_export(campaign=campaign), campaign=campaign).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {LEAN_TABLE}")
        cursor.execute(f"CREATE UNLOGGED TABLE {LEAN_TABLE} AS {sql}", params)
        cursor.execute(f"VACUUM ANALYZE {LEAN_TABLE}")
    try:
        return _copy_seconds(f"COPY {LEAN_TABLE} TO STDOUT WITH (FORMAT csv)")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {LEAN_TABLE}")


def _signing_key_env() -> dict[str, str]:
    """The worker signs with the installation's key; without one (DEBUG off, no EVIDENCE_SIGNING_KEY) the
    benchmark uses a key of its own for this run."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from django.conf import settings

    from evidence import formats

    try:
        formats.get_signing_key()
        return {}
    except formats.SigningKeyError:
        value = base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
        settings.EVIDENCE_SIGNING_KEY = value
        return {"EVIDENCE_SIGNING_KEY": value}


def _zip(campaign: Campaign, user: User, rows: int) -> dict:
    """Request the package as the export button does, let a real worker build it, wait until it is ready."""
    import tempfile

    from django.conf import settings
    from django.core.files.storage import default_storage

    from bench.support import peak_rss_mb, start_workers, stop_workers, worker_environment
    from evidence import formats
    from evidence.models import EvidencePackage, EvidencePackageStatus
    from evidence.packages import evidence_package_request, needs_background_build
    from thalian.celery import app

    threshold = min(settings.EVIDENCE_ASYNC_THRESHOLD_ITEMS, max(rows - 1, 0))
    settings.EVIDENCE_ASYNC_THRESHOLD_ITEMS = threshold
    env = {**worker_environment(), **_signing_key_env(), "EVIDENCE_ASYNC_THRESHOLD_ITEMS": str(threshold)}
    app.conf.task_always_eager = False
    with tempfile.TemporaryDirectory(prefix="thalian-bench-evidence-") as logs:
        # One worker process doing the build itself (solo pool), so its peak memory is the build's.
        [worker] = start_workers(1, logs, prefix="bench-evidence", env=env, extra=("--pool", "solo"))
        try:
            with scope(campaign.organization):
                started = time.perf_counter()
                assert needs_background_build(campaign)
                with transaction.atomic():
                    package = evidence_package_request(campaign=campaign, actor=user)
                deadline = time.monotonic() + ZIP_TIMEOUT_SECONDS
                while time.monotonic() < deadline:
                    package.refresh_from_db()
                    if package.status in (EvidencePackageStatus.READY, EvidencePackageStatus.FAILED):
                        break
                    time.sleep(0.05)
                seconds = time.perf_counter() - started
            rss = peak_rss_mb(worker.pid)
        finally:
            stop_workers([worker])
    if package.status != EvidencePackageStatus.READY:
        raise RuntimeError(f"the evidence package did not build: {package.status} {package.error}")
    path = default_storage.path(package.file.name)
    started = time.perf_counter()
    problems = formats.verify_package(path)
    verify_seconds = time.perf_counter() - started
    with scopes_disabled():
        EvidencePackage.objects.get(pk=package.pk).file.delete(save=False)
    build = (package.completed_at - package.claimed_at).total_seconds() if package.claimed_at else None
    return {"seconds": seconds, "build_seconds": build, "rss_mb": rss, "size": package.size,
            "verified": not problems, "problems": problems[:3], "verify_seconds": verify_seconds}


def run(stdout, rows: int = 1_000_000) -> dict:
    slug = f"bench-evidence-{uuid.uuid4().hex[:8]}"
    with scopes_disabled():
        organization = Organization.objects.create(slug=slug, name="Evidence benchmark", plan="enterprise")
        user = User.objects.create_user(email=f"{slug}@bench.example", password=None)
        Membership.objects.create(user=user, organization=organization, role=Role.AUDITOR)
        campaign = bench_campaign(organization=organization, title="Evidence benchmark", rows=rows)
    try:
        started = time.perf_counter()
        _insert_items(campaign, rows)
        stdout.write(f"created {rows:,} review items in {time.perf_counter() - started:.1f}s")
        with scope(organization):
            copy_time, copy_size = _raw_copy(campaign)
            lean_time, _lean_size = _lean_copy(campaign)
        result = _export(campaign, user)
        ratio = result["total"] / copy_time if copy_time else float("inf")
        rss_mb = result["rss"] / 1024 / 1024
        checks = {
            # The header leaves before any query runs, so the first item row is held to the same limit.
            "ttfb": result["ttfb"] < TTFB_LIMIT_S and (result["first_row"] or 0) < TTFB_LIMIT_S,
            "ratio": ratio <= RATIO_LIMIT,
            "rss": rss_mb < RSS_LIMIT_MB,
        }
        stdout.write(
            f"raw COPY ... TO STDOUT CSV: {copy_time:.2f}s, {copy_size / 1e6:.1f} MB; lean limit (COPY of the "
            f"finished cells): {lean_time:.2f}s"
        )
        stdout.write(
            f"CSV export (GET page URL): first byte {result['ttfb'] * 1000:.0f} ms "
            f"({'ok' if checks['ttfb'] else 'OVER'} < {TTFB_LIMIT_S:.0f} s), first item row "
            f"{(result['first_row'] or 0) * 1000:.0f} ms, total {result['total']:.2f}s, "
            f"{result['size'] / 1e6:.1f} MB"
        )
        stdout.write(
            f"export / COPY: {ratio:.2f}x ({'ok' if checks['ratio'] else 'OVER'} <= {RATIO_LIMIT}x); "
            f"peak RSS while streaming {rss_mb:.0f} MB ({'ok' if checks['rss'] else 'OVER'} < {RSS_LIMIT_MB} MB)"
        )
        package = _zip(campaign, user, rows)
        zip_ratio = package["seconds"] / result["total"] if result["total"] else float("inf")
        zip_ok = zip_ratio <= ZIP_RATIO_LIMIT and package["rss_mb"] < ZIP_RSS_LIMIT_MB and package["verified"]
        stdout.write(
            f"evidence ZIP (background build by a worker, request to ready): {package['seconds']:.2f}s "
            f"(the worker's build {package['build_seconds'] or 0:.2f}s), "
            f"{package['size'] / 1e6:.1f} MB; / CSV export {zip_ratio:.2f}x "
            f"({'ok' if zip_ratio <= ZIP_RATIO_LIMIT else 'OVER'} <= {ZIP_RATIO_LIMIT:.0f}x); worker peak RSS "
            f"{package['rss_mb']:.0f} MB ({'ok' if package['rss_mb'] < ZIP_RSS_LIMIT_MB else 'OVER'} < "
            f"{ZIP_RSS_LIMIT_MB} MB); verify_evidence: "
            f"{'OK' if package['verified'] else package['problems']} in {package['verify_seconds']:.1f}s"
        )
        return {
            "copy_s": copy_time, "lean_s": lean_time, "ratio": ratio, "rss_mb": rss_mb, **result,
            "zip_s": package["seconds"], "zip_ratio": zip_ratio, "zip_rss_mb": package["rss_mb"],
            "zip_verified": package["verified"], "ok": all(checks.values()) and zip_ok,
        }  # fmt: skip
    finally:
        _remove(organization, user)


def _remove(organization: Organization, user: User) -> None:
    # The download's audit events belong to the throw-away organization; the audit table accepts deletes only
    # inside _audit_purge_allowed.
    with transaction.atomic(), _audit_purge_allowed(), connection.cursor() as cursor, scopes_disabled():
        cursor.execute(
            f"DELETE FROM {ReviewItem._meta.db_table} WHERE organization_id = %s", [organization.pk]
        )
        Organization.objects.filter(pk=organization.pk).delete()
        User.objects.filter(pk=user.pk).delete()
