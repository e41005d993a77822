"""Building blocks shared by the campaign benchmarks: a throw-away active campaign and its items generated
in PostgreSQL."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, ReviewItem
from thalian.models import Organization


def bench_campaign(*, organization: Organization, title: str, rows: int, **extra) -> Campaign:
    """An active campaign due in 30 days whose snapshot holds ``rows`` items."""
    return Campaign.objects.create(
        organization=organization,
        title=title,
        due_date=dt.date.today() + dt.timedelta(days=30),
        status=CampaignStatus.ACTIVE,
        snapshot_at=timezone.now(),
        item_count=rows,
        **extra,
    )


def review_items_insert(*, campaign: Campaign, rows: int, generated: dict[str, tuple[str, list]]) -> None:
    """One INSERT ... SELECT over generate_series(1, rows) AS g. ``generated`` maps a field name to its SQL
    expression (placeholders ``%s``, a literal percent sign written ``%%``) and the parameters it takes; the
    fields it leaves out get NULL when nullable, otherwise their model default."""
    columns, expressions, params = [], [], []
    for f in ReviewItem._meta.concrete_fields:
        if f.primary_key:
            continue
        columns.append(connection.ops.quote_name(f.column))
        if f.name == "organization":
            expressions.append("%s")
            params.append(campaign.organization_id)
        elif f.name == "campaign":
            expressions.append("%s")
            params.append(campaign.pk)
        elif f.name in generated:
            expression, values = generated[f.name]
            expressions.append(expression)
            params.extend(values)
        elif f.null:
            expressions.append("NULL")
        else:
            expressions.append("%s")
            params.append(f.get_db_prep_save(f.get_default(), connection))
    sql = (
        f"INSERT INTO {ReviewItem._meta.db_table} ({', '.join(columns)}) "
        f"SELECT {', '.join(expressions)} FROM generate_series(1, %s) AS g"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, rows])


# --------------------------------------------------------------------------------------------------
# Real Celery workers for the benchmarks that measure background work
# --------------------------------------------------------------------------------------------------


def worker_environment() -> dict[str, str]:
    """The environment of this process with the database, broker, keys and data directory it uses, so a
    worker started from it works on the same data."""
    import os

    from django.conf import settings

    db = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = (
        f"postgres://{db.get('USER') or 'postgres'}:{db.get('PASSWORD') or ''}@{db.get('HOST') or '127.0.0.1'}"
        f":{db.get('PORT') or 5432}/{db['NAME']}"
    )
    env["REDIS_URL"] = settings.REDIS_URL
    env["SECRET_KEY"] = settings.SECRET_KEY
    env["ENCRYPTION_KEY"] = settings.ENCRYPTION_KEY
    env.setdefault("THALIAN_DATA_DIR", str(settings.DATA_DIR))
    return env


def start_workers(
    count: int, log_dir, *, prefix: str, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()
) -> list:
    """``count`` single-process `celery worker`s named ``<prefix>-<n>-…``, logging to ``log_dir``; returns once
    every one answers a ping."""
    import subprocess
    import sys
    import time
    import uuid
    from pathlib import Path

    from thalian.celery import app

    env = env or worker_environment()
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")  # messages an earlier, interrupted run left behind
    procs = []
    for n in range(count):
        log = open(Path(log_dir) / f"{prefix}{n}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "thalian", "worker", "-n",
                 f"{prefix}-{n}-{uuid.uuid4().hex[:6]}@%h", "-c", "1", "--without-gossip", "--without-mingle",
                 "--without-heartbeat", "-l", "WARNING", *extra],
                cwd=Path(__file__).resolve().parent.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        names = {name for reply in replies for name in reply}
        if sum(1 for name in names if name.startswith(f"{prefix}-")) >= len(procs):
            return procs
        if any(p.poll() is not None for p in procs):
            break
    stop_workers(procs)
    raise RuntimeError(f"benchmark workers did not start; see the worker logs in {log_dir}")


def stop_workers(procs) -> None:
    import subprocess

    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process of this machine."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
