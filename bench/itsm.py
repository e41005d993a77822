"""ITSM benchmark: revokes of one organization (one per hundred ``--rows``: 10,000 for the default million)
turned into tickets by 4 real Celery worker processes against a local fake Jira, next to the same number of raw
HTTP calls from 4 processes to the same fake.

Reports tickets per second, duplicates (remote tickets beyond one per item) and whether every item ends up
carrying its ticket URL. Needs DATABASE_URL (PostgreSQL) and REDIS_URL. Creates an organization with the slug
prefix `bench-itsm-` and deletes it afterwards. Run with `python manage.py bench itsm`.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TextIO

ITEMS = 10_000
WORKERS = 4
TIMEOUT_SECONDS = 900


def _raw_calls(args: tuple[str, int]) -> int:
    import requests

    url, count = args
    session = requests.Session()
    session.auth = ("bench@example.com", "bench-token")
    for n in range(count):
        body = {
            "fields": {
                "project": {"key": "OPS"},
                "issuetype": {"name": "Task"},
                "summary": f"raw {n}",
                "description": f"Review item: raw-{os.getpid()}-{n}",
            }
        }
        session.post(f"{url}/rest/api/2/issue", json=body, timeout=10).raise_for_status()
    return count


def _setup(items: int):
    import datetime as dt

    from django.utils import timezone

    from campaigns.models import Campaign, CampaignStatus, ReviewItem
    from entitlements.models import Application
    from thalian.models import Organization, Plan
    from thalian.tenancy import scopes_disabled

    slug = f"bench-itsm-{uuid.uuid4().hex[:8]}"
    now = timezone.now()
    with scopes_disabled():
        org = Organization.objects.create(slug=slug, name="ITSM benchmark", plan=Plan.ENTERPRISE)
        application = Application.objects.create(
            organization=org, name="Bench app", owner_email="owner@bench.test"
        )
        campaign = Campaign.objects.create(
            organization=org,
            title="Benchmark review",
            due_date=timezone.localdate() + dt.timedelta(days=14),
            status=CampaignStatus.ACTIVE,
        )
        ReviewItem.objects.bulk_create(
            [
                ReviewItem(
                    organization=org,
                    campaign=campaign,
                    application=application,
                    identity_email=f"person{n}@bench.test",
                    identity_name=f"Person {n}",
                    identity_kind="human",
                    identity_status="active",
                    application_name=application.name,
                    role="member",
                    recommendation="revoke",
                    decision="revoke",
                    decision_reason="benchmark",
                    decided_by_email="reviewer@bench.test",
                    decided_at=now,
                )
                for n in range(items)
            ],
            batch_size=2000,
        )
    return org


def _connect(org, base_url: str):
    from itsm.models import ConnectionKind, ItsmConnection
    from thalian.tenancy import scopes_disabled

    # Created directly: the fake listens on plain http, which production validation may refuse.
    with scopes_disabled():
        return ItsmConnection.objects.create(
            organization=org,
            kind=ConnectionKind.JIRA,
            name="Bench Jira",
            base_url=base_url,
            config={"email": "bench@example.com", "project_key": "OPS", "issue_type": "Task"},
            secrets=json.dumps({"api_token": "bench-token"}),
            is_default=True,
        )


def _delete_org(org) -> None:
    from django.db import transaction

    from thalian.models import Organization
    from thalian.services import _audit_purge_allowed
    from thalian.tenancy import scopes_disabled

    with transaction.atomic(), _audit_purge_allowed(), scopes_disabled():
        Organization.objects.filter(pk=org.pk).delete()


def run(stdout: TextIO, rows: int = 1_000_000, items: int | None = None, workers: int = WORKERS) -> dict:
    """``items`` revokes (default: one per hundred ``rows``, so 10,000 for a million-row run)."""
    import tempfile

    from django.conf import settings
    from django.db import connection
    from pytest_httpserver import HTTPServer

    from bench.support import start_workers, stop_workers, worker_environment
    from campaigns.models import ReviewItem
    from itsm.services import tickets_on_decisions
    from tests.fakes.itsm import FakeJira
    from thalian.celery import app
    from thalian.tenancy import scope

    items = items or max(100, rows // 100)
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        stdout.write("The ITSM benchmark needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL).\n")
        return {}
    app.conf.task_always_eager = False
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    fake = FakeJira(email="bench@example.com", api_token="bench-token").install(server)
    org = None
    procs: list[subprocess.Popen] = []
    try:
        stdout.write(f"Raw baseline: {items:,} POSTs from {workers} processes straight to the fake Jira...\n")
        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.map(_raw_calls, [(fake.base_url, items // workers)] * workers)
        raw_seconds = time.perf_counter() - started
        fake.tickets.clear()
        fake.requests.clear()

        stdout.write(f"Creating {items:,} revoked review items...\n")
        org = _setup(items)
        _connect(org, fake.base_url)
        with tempfile.TemporaryDirectory(prefix="thalian-bench-itsm-") as logs:
            env = worker_environment()
            env["ALLOWED_INTERNAL_HOSTS"] = "127.0.0.1"  # the fake Jira listens on loopback
            procs = start_workers(workers, Path(logs), prefix="bench-itsm", env=env)
            stdout.write(f"{workers} workers up. Deciding and opening tickets...\n")
            with scope(org):
                item_ids = list(ReviewItem.objects.values_list("pk", flat=True))
            started = time.perf_counter()
            tickets_on_decisions(organization_id=org.pk, item_ids=item_ids)
            hook_seconds = time.perf_counter() - started
            deadline = time.monotonic() + TIMEOUT_SECONDS
            with scope(org):
                while time.monotonic() < deadline:
                    done = ReviewItem.objects.filter(ticket_status="open").count()
                    if done >= items:
                        break
                    time.sleep(0.5)
            seconds = time.perf_counter() - started
            stop_workers(procs)
            procs = []
        with scope(org):
            with_url = ReviewItem.objects.exclude(ticket_url="").count()
            urls = (
                ReviewItem.objects.exclude(ticket_url="")
                .values_list("ticket_url", flat=True)
                .distinct()
                .count()
            )
        creates = len(fake.calls("POST", r"/rest/api/2/issue"))
        references = {
            r.body["fields"]["description"].rsplit("Review item: ", 1)[1].split()[0]
            for r in fake.calls("POST", r"/rest/api/2/issue")
        }
        duplicates = creates - len(references)
        result = {
            "items": items,
            "seconds": seconds,
            "tickets_per_second": with_url / seconds if seconds else 0.0,
            "hook_seconds": hook_seconds,
            "duplicates": duplicates,
            "items_with_url": with_url,
            "distinct_urls": urls,
            "raw_seconds": raw_seconds,
            "raw_per_second": items / raw_seconds,
            "ok": duplicates == 0 and with_url == items == urls,
        }
        lines = [
            f"{'':40}{'count':>10}{'seconds':>10}{'per second':>12}",
            f"{'Thalian tickets (4 workers, end to end)':40}{with_url:>10,}{seconds:>10.2f}{result['tickets_per_second']:>12,.0f}",
            f"{'Raw HTTP POSTs (4 processes)':40}{items:>10,}{raw_seconds:>10.2f}{result['raw_per_second']:>12,.0f}",
            f"Decision hook (ticket rows + enqueue): {hook_seconds:.2f}s. "
            f"Thalian runs at {result['tickets_per_second'] / result['raw_per_second']:.1%} of raw HTTP throughput.",
            f"Duplicates: {duplicates} (remote creates {creates:,} for {len(references):,} items). "
            f"Items with their ticket URL: {with_url:,} of {items:,} ({urls:,} distinct URLs).",
            f"Targets: zero duplicates -> {'met' if duplicates == 0 else 'NOT met'}; every item has its URL -> "
            f"{'met' if with_url == items == urls else 'NOT met'}.",
        ]
        stdout.write("\n".join(lines) + "\n")
        return result
    finally:
        stop_workers(procs)
        server.clear()
        server.stop()
        if org is not None:
            _delete_org(org)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "thalian.settings")
    import django

    django.setup()
    run(sys.stdout, items=int(sys.argv[1]) if len(sys.argv) > 1 else ITEMS)
