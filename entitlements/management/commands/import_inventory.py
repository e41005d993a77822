from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from entitlements.csv_import import KINDS, ImportValidationError
from entitlements.services import MODES, inventory_import
from thalian.models import Organization
from thalian.tenancy import scope


class Command(BaseCommand):
    help = "Import an inventory CSV file (identities, applications or entitlements) into an organization, all or nothing."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="organization slug")
        parser.add_argument("kind", choices=KINDS)
        parser.add_argument("file", type=Path)
        parser.add_argument("--mode", choices=MODES, default="merge")

    def handle(self, slug, kind, file: Path, mode, **options):
        organization = Organization.objects.filter(slug=slug).first()
        if organization is None:
            raise CommandError(f"No organization with slug {slug!r}.")
        if not file.is_file():
            raise CommandError(f"{file}: no such file.")
        with scope(organization), file.open("rb") as handle:
            try:
                run = inventory_import(
                    organization=organization,
                    kind=kind,
                    stream=handle,
                    mode=mode,
                    file_name=file.name,
                    size=file.stat().st_size,
                )
            except ImportValidationError as exc:
                for error in exc.errors:
                    self.stderr.write(str(error))
                raise CommandError(f"{exc.total} problem(s) found in {file.name}; nothing was imported.") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {file.name} ({kind}, {mode}) into {slug}: {run.created} created, {run.updated} updated, "
                f"{run.removed} removed, {run.unchanged} unchanged (sync run {run.pk})."
            )
        )
        if run.identities_created:
            self.stdout.write(f"{run.identities_created} unknown identities were created for accounts not in the inventory.")
