"""Import benchmark: a 1,000,000-row entitlements CSV through the real import service, next to a raw
PostgreSQL COPY of the same file.

Each measurement runs in its own process so its peak RSS is its own. Run it with
`python -m bench.inventory` (or call `run(stdout)`); it needs DATABASE_URL to point at
PostgreSQL; it creates an organization with the slug "bench-inventory" and removes it afterwards.

Goal: the import (every row created) reaches at least 10% of the rows/s of a raw COPY of the same file
into a bare four-column temporary table, measured in the same run (COPY_SHARE_GOAL); also >= 50,000
rows/s and peak RSS under 300 MB.

`run()` returns a dict:

| key | meaning |
|---|---|
| `rows_per_s` | rows/s of the import of the fresh file (wall clock) |
| `reimport_rows_per_s` | rows/s of importing the same file again (every row unchanged) |
| `raw_copy_rows_per_s` | rows/s of the raw COPY |
| `copy_share`, `copy_share_goal`, `copy_share_goal_met` | `rows_per_s / raw_copy_rows_per_s`, the goal (0.10), met or not |
| `import`, `reimport`, `copy` | each run's figures: `rows`, `seconds`, `peak_rss_mb`, `client_cpu`, `db_cpu` |
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

ROWS = 1_000_000
APPS = 40
GRANTS_PER_IDENTITY = 20
SLUG = "bench-inventory"
ROLES = ("member", "viewer", "editor", "admin", "owner", "billing")
# The import must reach this share of the raw COPY's rows/s.
COPY_SHARE_GOAL = 0.10


def _write_files(directory: Path, rows: int) -> tuple[Path, Path, Path]:
    rng = random.Random(7)
    apps = directory / "applications.csv"
    identities = directory / "identities.csv"
    grants = directory / "entitlements.csv"
    people = rows // GRANTS_PER_IDENTITY
    with apps.open("w") as f:
        f.write("name,category,sanctioned,owner_email\n")
        for a in range(APPS):
            f.write(f"Application {a},Bench,yes,owner{a}@bench.test\n")
    with identities.open("w") as f:
        f.write("email,name,department,manager_email,kind,status\n")
        for p in range(people):
            f.write(f"person{p}@bench.test,Person {p},Dept {p % 25},,human,{'terminated' if p % 50 == 0 else 'active'}\n")
    with grants.open("w") as f:
        f.write("application,identity_email,role,last_used\n")
        for p in range(people):
            for a in rng.sample(range(APPS), GRANTS_PER_IDENTITY):
                roll = rng.random()
                used = "" if roll < 0.1 else f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}"
                f.write(f"Application {a},person{p}@bench.test,{rng.choice(ROLES)},{used}\n")
    return apps, identities, grants


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "thalian.settings")
    import django

    django.setup()


def _peak_rss_mb() -> float:
    """Peak resident memory of this process. VmHWM belongs to the address space, so unlike ru_maxrss it
    does not carry over the parent's peak across fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _cpu_seconds(backend_pid: int | None) -> tuple[float, float | None]:
    """CPU time of this process and of its PostgreSQL backend (readable when the database runs on
    this machine): on a busy machine they show what the work itself costs, apart from waiting."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    backend = None
    if backend_pid:
        try:
            fields = Path(f"/proc/{backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
            backend = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            backend = None
    return usage.ru_utime + usage.ru_stime, backend


def _backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _cpu_delta(before: tuple[float, float | None], after: tuple[float, float | None]) -> dict:
    return {
        "client_cpu": after[0] - before[0],
        "db_cpu": None if before[1] is None or after[1] is None else after[1] - before[1],
    }


def _child_import(path: str) -> dict:
    _setup_django()
    from entitlements.services import inventory_import
    from thalian.models import Organization
    from thalian.tenancy import scope

    organization = Organization.objects.get(slug=SLUG)
    pid = _backend_pid()
    with scope(organization), open(path, "rb") as handle:
        cpu = _cpu_seconds(pid)
        started = time.perf_counter()
        run = inventory_import(organization=organization, kind="entitlements", stream=handle, file_name="bench.csv")
        elapsed = time.perf_counter() - started
        cpu = _cpu_delta(cpu, _cpu_seconds(pid))
    return {
        **cpu,
        "rows": run.processed_rows,
        "seconds": elapsed,
        "created": run.created,
        "updated": run.updated,
        "unchanged": run.unchanged,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _child_copy(path: str) -> dict:
    _setup_django()
    from django.db import connection, transaction

    pid = _backend_pid()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_raw_copy")
        cursor.execute(
            "CREATE TEMP TABLE bench_raw_copy (application text, identity_email text, role text, "
            "last_used timestamptz) ON COMMIT DROP"
        )
        cpu = _cpu_seconds(pid)
        started = time.perf_counter()
        with open(path, "rb") as handle, cursor.cursor.copy(
            "COPY bench_raw_copy FROM STDIN WITH (FORMAT csv, HEADER true)"
        ) as copy:
            while chunk := handle.read(1024 * 1024):
                copy.write(chunk)
        elapsed = time.perf_counter() - started
        cpu = _cpu_delta(cpu, _cpu_seconds(pid))
        cursor.execute("SELECT count(*) FROM bench_raw_copy")
        rows = cursor.fetchone()[0]
    return {"rows": rows, "seconds": elapsed, "peak_rss_mb": _peak_rss_mb(), **cpu}


def _purge() -> None:
    from bench.snapshot import _purge as purge_organization
    from thalian.models import Organization

    organization = Organization.objects.filter(slug=SLUG).first()
    if organization is not None:
        purge_organization(organization.pk)
        _vacuum()


def _vacuum() -> None:
    """Reclaim the rows of an earlier run's organization. Left to autovacuum, its million dead index
    entries (with the very keys this run inserts again) would be checked by every unique-index
    insert of the import, a cost of the benchmark's own clean-up that no real import pays."""
    from django.db import connection

    from entitlements.models import Entitlement, Identity

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {Entitlement._meta.db_table}, {Identity._meta.db_table}")


def _prepare(apps: Path, identities: Path) -> dict:
    """A fresh benchmark organization with its applications and identities; returns the figures of
    the identities import (a file of people, all new)."""
    from entitlements.services import inventory_import
    from thalian.services import organization_ensure
    from thalian.tenancy import scope

    _purge()
    organization = organization_ensure(slug=SLUG, name="Inventory benchmark", plan="enterprise")
    figures = {}
    with scope(organization):
        for kind, path in (("applications", apps), ("identities", identities)):
            started = time.perf_counter()
            with path.open("rb") as handle:
                run = inventory_import(organization=organization, kind=kind, stream=handle, file_name=path.name)
            figures = {"rows": run.processed_rows, "seconds": time.perf_counter() - started}
    return figures


def _in_child(mode: str, path: Path) -> dict:
    output = subprocess.run(
        [sys.executable, "-m", "bench.inventory", mode, str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def run(stdout: TextIO, rows: int = ROWS) -> dict:
    from django.db import connection

    if connection.vendor != "postgresql":
        stdout.write("The import benchmark needs PostgreSQL: set DATABASE_URL.\n")
        return {}
    with tempfile.TemporaryDirectory(prefix="thalian-bench-") as tmp:
        stdout.write(f"Writing a {rows:,}-row entitlements CSV...\n")
        apps, identities, grants = _write_files(Path(tmp), rows)
        size_mb = grants.stat().st_size / (1024 * 1024)
        people = _prepare(apps, identities)
        stdout.write(
            f"Identities file: {people['rows']:,} people imported in {people['seconds']:.2f} s "
            f"({people['rows'] / people['seconds']:,.0f} rows/s).\n"
        )
        connection.close()
        stdout.write(f"File: {size_mb:.1f} MB. Importing (fresh organization, every row created)...\n")
        first = _in_child("import", grants)
        stdout.write("Importing the same file again (every row unchanged)...\n")
        again = _in_child("import", grants)
        stdout.write("Raw PostgreSQL COPY of the same file...\n")
        raw = _in_child("copy", grants)
        _purge()

    def rate(result: dict) -> float:
        return result["rows"] / result["seconds"]

    load = os.getloadavg()

    def cpu(result: dict) -> str:
        db = result.get("db_cpu")
        return f"{result['client_cpu']:>8.1f} {db:>8.1f}" if db is not None else f"{result['client_cpu']:>8.1f}      n/a"

    def busy_rate(result: dict) -> float:
        # Client and database work one after the other for most of an import, so their CPU
        # seconds add up: this is the rate of the same run on an otherwise idle machine.
        return result["rows"] / (result["client_cpu"] + (result.get("db_cpu") or 0))

    labelled = (
        ("Thalian import (all created)", first),
        ("Thalian re-import (unchanged)", again),
        ("Raw PostgreSQL COPY", raw),
    )
    lines = [
        f"Machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) "
        "when the runs ended; other work on the machine slows the wall-clock figures.",
        f"{'':31}{'rows':>10}{'wall s':>8}{'rows/s':>10}{'peak RSS MB':>12}{'cpu app':>9}{'cpu db':>9}{'rows/cpu-s':>11}",
        *(
            f"{label:31}{r['rows']:>10,}{r['seconds']:>8.2f}{rate(r):>10,.0f}{r['peak_rss_mb']:>12.0f}"
            f" {cpu(r)}{busy_rate(r):>11,.0f}"
            for label, r in labelled
        ),
        f"Import throughput is {rate(first) / rate(raw):.1%} of raw COPY "
        f"(raw COPY is {rate(raw) / rate(first):.1f}x faster); re-import {rate(again) / rate(raw):.1%}.",
        f"Goal: import >= {COPY_SHARE_GOAL:.0%} of raw COPY in the same run -> "
        f"{'met' if rate(first) >= COPY_SHARE_GOAL * rate(raw) else 'NOT met'} ({rate(first) / rate(raw):.1%}).",
        f"Targets: >= 50,000 rows/s -> {'met' if rate(first) >= 50_000 else 'not met'} by wall clock, "
        f"{'met' if busy_rate(first) >= 50_000 else 'not met'} by CPU time; "
        f"peak RSS < 300 MB -> {'met' if max(first['peak_rss_mb'], again['peak_rss_mb']) < 300 else 'NOT met'}.",
    ]
    stdout.write("\n".join(lines) + "\n")
    share = rate(first) / rate(raw)
    return {
        "rows_per_s": rate(first),
        "reimport_rows_per_s": rate(again),
        "raw_copy_rows_per_s": rate(raw),
        "copy_share": share,
        "copy_share_goal": COPY_SHARE_GOAL,
        "copy_share_goal_met": share >= COPY_SHARE_GOAL,
        "import": first,
        "reimport": again,
        "copy": raw,
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("import", "copy"):
        result = _child_import(sys.argv[2]) if sys.argv[1] == "import" else _child_copy(sys.argv[2])
        print(json.dumps(result))
    else:
        _setup_django()
        rows = int(sys.argv[1]) if len(sys.argv) > 1 else ROWS
        run(sys.stdout, rows=rows)
