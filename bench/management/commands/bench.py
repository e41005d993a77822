"""`python manage.py bench [AREA ...]`: run the benchmarks of each area against raw SQL measured in the
same run, and print figures and ratios. Benchmarks need PostgreSQL (DATABASE_URL); they create their own
organizations (slug prefix `bench-`) and remove them afterwards."""

import inspect
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench import evidence, inventory, itsm, review, snapshot

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
        parser.add_argument("--rows", type=int, default=1_000_000, help="inventory/campaign size")

    def handle(self, areas, rows, **options):
        if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
            raise CommandError("Benchmarks compare against raw PostgreSQL: set DATABASE_URL to a PostgreSQL database.")
        unknown = set(areas) - set(AREAS)
        if unknown:
            raise CommandError(f"unknown benchmark area(s): {', '.join(sorted(unknown))}; choose from {', '.join(AREAS)}")
        for area in areas or AREAS:
            module = AREAS[area]
            self.stdout.write(f"== {area} ({module.__name__})")
            started = time.perf_counter()
            kwargs = {"rows": rows} if "rows" in inspect.signature(module.run).parameters else {}
            module.run(self.stdout, **kwargs)
            self.stdout.write(f"== {area} done in {time.perf_counter() - started:.1f}s\n")
