from django.core.management.base import BaseCommand, CommandError

from thalian.models import Membership
from thalian.services import apitoken_create


class Command(BaseCommand):
    help = "Create a personal API token for a member; the token is printed as the last line."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--name", default="command line")

    def handle(self, email, org, name, **options):
        membership = (
            Membership.objects.select_related("organization", "user")
            .filter(user__email=email.strip().lower(), organization__slug=org)
            .first()
        )
        if membership is None:
            raise CommandError(f"{email} is not a member of an organization with slug '{org}'.")
        token, raw = apitoken_create(membership=membership, name=name)
        self.stdout.write(f"Token '{token.name}' for {email} in {org} (role {membership.role}). Shown once:")
        self.stdout.write(raw)
