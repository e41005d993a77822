# ruff: noqa: F401 - fixtures imported from the ITSM tests are requested by name
"""An organization where Ada (a reviewer) reports to Max, a manager in the inventory who is not a member (so he
approves as a guest), and GitHub is owned by Olga, a member. Admin Alan is the fallback approver."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import pytest

from entitlements.services import inventory_import
from tests.factories import ApplicationFactory, EntitlementFactory, IdentityFactory
from tests.itsm.conftest import (
    _itsm_http_server,
    connect,
    fake_vendor,
    itsm_ca,
    itsm_ca_bundle,
    itsm_settings,
    jira,
)
from thalian.models import Membership
from thalian.permissions import Role
from thalian.tenancy import scope


@dataclass
class Team:
    org: object
    ada: Membership  # requests access (reviewer)
    olga: Membership  # owner of GitHub (reviewer)
    alan: Membership  # admin, fallback approver
    viewer: Membership
    auditor: Membership
    github: object
    ada_identity: object
    max_email: str = "max@acme.test"


@pytest.fixture
def team(org, member, settings):
    settings.SITE_URL = "https://thalian.example.com"
    ada = member(Role.REVIEWER, email="ada@acme.test")
    olga = member(Role.REVIEWER, email="olga@acme.test")
    alan = member(Role.ADMIN, email="alan@acme.test")
    viewer = member(Role.VIEWER)
    auditor = member(Role.AUDITOR)
    with scope(org):
        max_identity = IdentityFactory(organization=org, email="max@acme.test", name="Max Manager")
        ada_identity = IdentityFactory(organization=org, email="ada@acme.test", name="Ada Lovelace",
                                       manager=max_identity, title="Engineer", department="Engineering")
        IdentityFactory(organization=org, email="olga@acme.test", name="Olga Owner")
        IdentityFactory(organization=org, email="alan@acme.test", name="Alan Admin")
        IdentityFactory(organization=org, email="viewer@acme.test", name="Vic Viewer")
        github = ApplicationFactory(organization=org, name="GitHub", owner_email="olga@acme.test")
        EntitlementFactory(organization=org, identity=ada_identity, application=github, role="member")
        from access_requests.models import ApprovalPolicy

        ApprovalPolicy.objects.create(organization=org, fallback=alan,
                                      stages=[{"kind": "manager"}, {"kind": "application_owner"}])
    return Team(org, ada, olga, alan, viewer, auditor, github, ada_identity)


def import_entitlements(org, rows: list[tuple[str, str, str]], mode: str = "replace"):
    text = "application,identity_email,role,last_used\n" + "".join(f"{a},{e},{r},\n" for a, e, r in rows)
    with scope(org):
        return inventory_import(organization=org, kind="entitlements", stream=io.BytesIO(text.encode()), mode=mode,
                                file_name="grants.csv")


def guest_link(mailoutbox, email: str) -> str:
    """The path of the approval link e-mailed to a guest."""
    [message] = [m for m in mailoutbox if email in m.to]
    return re.search(r"https://thalian\.example\.com(/guest/access-requests/[^\s/]+/)", message.body).group(1)
