from django.core.management.base import BaseCommand
from django.db import transaction

from thalian.permissions import Role
from thalian.services import member_ensure, organization_ensure

from ...demo import demo_inventory_load

DEMO_ORGS = [("acme", "Acme Corporation", "pro"), ("globex", "Globex", "pro"), ("initech", "Initech", "free")]
DEMO_ROLE_EMAILS = {
    Role.SUPER_ADMIN: "superadmin",
    Role.ADMIN: "admin",
    Role.SECURITY_ANALYST: "analyst",
    Role.AUDITOR: "auditor",
    Role.VIEWER: "viewer",
    Role.REVIEWER: "reviewer",
}


class Command(BaseCommand):
    help = "Load demo organizations, one member per role each, and realistic inventory data (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="demo")
        parser.add_argument("--scale", type=int, default=1, help="multiply the inventory size (for load tests)")

    def handle(self, password, scale, **options):
        for slug, name, plan in DEMO_ORGS:
            with transaction.atomic():
                org = organization_ensure(slug=slug, name=name, plan=plan)
                for role, local in DEMO_ROLE_EMAILS.items():
                    member_ensure(organization=org, email=f"{local}@{slug}.test", role=role, password=password)
            self.stdout.write(f"{slug}: members ready ({', '.join(f'{v}@{slug}.test' for v in DEMO_ROLE_EMAILS.values())})")
            if slug != "initech":
                summary = demo_inventory_load(organization=org, scale=scale)
                self.stdout.write(f"{slug}: inventory {summary}")
        self.stdout.write(self.style.SUCCESS(f"Demo loaded. Sign in with any demo e-mail and password '{password}'."))
