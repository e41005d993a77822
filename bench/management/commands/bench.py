"""`python manage.py bench [AREA ...] [--rows N]`: run the benchmarks of each area against raw SQL measured in
the same run, print figures and ratios, and end with one table of every goal (met or not). ``--rows`` sizes
every area (inventory, campaigns, exports; the ITSM benchmark opens one ticket per hundred rows). Benchmarks
need PostgreSQL (DATABASE_URL); they create their own organizations (slug prefix `bench-`) and remove them
afterwards."""

import inspect
import time
import traceback

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench import evidence, inventory, itsm, review, snapshot, summary

AREAS = {
    "inventory": inventory,
    "snapshot": snapshot,
    "review": review,
    "evidence": evidence,
    "itsm": itsm,
}


class Command(BaseCommand):
    help = "Run performance benchmarks (figures and ratios against raw SQL in the same run)."

    def add_arguments(self, parser):
        parser.add_argument("areas", nargs="*", help=f"any of: {', '.join(AREAS)} (default: all)")
        parser.add_argument("--rows", type=int, default=1_000_000, help="inventory/campaign size (>= 1,000)")

    def handle(self, areas, rows, **options):
        if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
            raise CommandError("Benchmarks compare against raw PostgreSQL: set DATABASE_URL to a PostgreSQL database.")
        # Launches in the benchmarks e-mail their (throw-away) reviewers: keep those messages in memory, out of
        # the figures printed here.
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        unknown = set(areas) - set(AREAS)
        if unknown:
            raise CommandError(f"unknown benchmark area(s): {', '.join(sorted(unknown))}; choose from {', '.join(AREAS)}")
        if rows < 1000:
            raise CommandError("--rows must be at least 1,000")
        results, failed = {}, []
        for area in areas or AREAS:
            module = AREAS[area]
            self.stdout.write(f"== {area} ({module.__name__})")
            started = time.perf_counter()
            kwargs = {"rows": rows} if "rows" in inspect.signature(module.run).parameters else {}
            try:
                results[area] = module.run(self.stdout, **kwargs) or {}
            except Exception:  # noqa: BLE001 - one area failing still leaves the others' figures
                self.stderr.write(f"{area} failed:\n{traceback.format_exc()}")
                failed.append(area)
                results[area] = {}
            self.stdout.write(f"== {area} done in {time.perf_counter() - started:.1f}s\n")
        self.stdout.write(f"\nGoals ({rows:,} rows; raw SQL and lean limits measured in this run):")
        self.stdout.write(summary.table(results, rows))
        if failed:
            raise CommandError(f"benchmark area(s) failed: {', '.join(failed)}")
