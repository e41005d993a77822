"""`manage.py loaddemo`: demo organizations with one member per role, idempotent."""

import pytest
from django.core.management import call_command

from thalian.models import Membership, Organization, User

pytestmark = pytest.mark.django_db


def test_loaddemo_creates_the_demo_organizations_and_logins_and_can_run_twice(client):
    call_command("loaddemo", password="demo-pass")
    plans = dict(Organization.objects.values_list("slug", "plan"))
    assert plans == {"acme": "pro", "globex": "pro", "initech": "free"}
    for slug in plans:
        roles = dict(
            Membership.objects.filter(organization__slug=slug).values_list("user__email", "role")
        )
        assert roles == {
            f"superadmin@{slug}.test": "super_admin",
            f"admin@{slug}.test": "admin",
            f"analyst@{slug}.test": "security_analyst",
            f"auditor@{slug}.test": "auditor",
            f"viewer@{slug}.test": "viewer",
            f"reviewer@{slug}.test": "reviewer",
        }
    users, memberships = User.objects.count(), Membership.objects.count()
    call_command("loaddemo", password="demo-pass")
    assert (User.objects.count(), Membership.objects.count()) == (users, memberships)
    response = client.post("/accounts/login/", {"username": "analyst@globex.test", "password": "demo-pass"})
    assert response.status_code == 302
    assert client.get("/", follow=True).request["PATH_INFO"] == "/o/globex/"
