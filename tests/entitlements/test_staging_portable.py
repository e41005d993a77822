"""The embedded default database (SQLite) loads inventory through `staging_portable`; PostgreSQL through
`staging`. Both must give the same inventory and the same counts for the same sequence of files. The
comparison runs both loaders on this suite's database, one organization each."""

import datetime as dt

import pytest
from django.utils import timezone

from entitlements import services, staging_portable
from entitlements.csv_import import ImportValidationError
from entitlements.models import Application, Entitlement, Identity
from tests.entitlements.conftest import APPLICATIONS_CSV, IDENTITIES_CSV
from tests.factories import OrganizationFactory
from thalian.tenancy import scope

OLD = (timezone.now() - dt.timedelta(days=400)).date().isoformat()
RECENT = (timezone.now() - dt.timedelta(days=2)).date().isoformat()
FILES = [
    ("identities", IDENTITIES_CSV, "merge"),
    ("applications", APPLICATIONS_CSV, "merge"),
    (
        "entitlements",
        "application,identity_email,role,last_used\n"
        f"GitHub,ann@acme.test,admin,{RECENT}\n"
        f"GitHub,bob@acme.test,member,{OLD}\n"
        "GitHub,ghost@acme.test,member,\n"
        f"Salesforce,ann@acme.test,user,{RECENT}\n",
        "merge",
    ),
    (
        "identities",
        IDENTITIES_CSV.replace("Engineering,boss@acme.test,human,active,Engineer", "Platform,boss@acme.test,human,terminated,Engineer"),
        "merge",
    ),
    (
        "entitlements",
        f"application,identity_email,role,last_used\nGitHub,ann@acme.test,admin,{RECENT}\nGitHub,deploy-bot@acme.test,Owner,\n",
        "replace",
    ),
]


def _state(org):
    with scope(org):
        identities = sorted(
            Identity.objects.values_list("email", "name", "department", "kind", "status", "title", "manager__email")
        )
        applications = sorted(
            Application.objects.values_list("name", "category", "sanctioned", "owner_email", "remediation_owner_email")
        )
        grants = sorted(
            Entitlement.objects.values_list(
                "application__name", "identity__email", "role", "last_used", "present",
                "is_dormant", "is_terminated", "is_privileged", "is_orphaned", "is_never_used",
            )
        )
    return identities, applications, grants


def _load_all(run_import, org):
    counts = []
    for kind, text, mode in FILES:
        run = run_import(kind, text, mode=mode, organization=org)
        counts.append((kind, run.created, run.updated, run.removed, run.unchanged))
    return counts


def test_portable_loader_gives_the_same_inventory_and_counts_as_postgresql(db, run_import, monkeypatch):
    sql_org = OrganizationFactory(slug="sql-loader")
    orm_org = OrganizationFactory(slug="orm-loader")
    sql_counts = _load_all(run_import, sql_org)
    monkeypatch.setattr(services, "staging", staging_portable)
    orm_counts = _load_all(run_import, orm_org)

    assert orm_counts == sql_counts
    assert _state(orm_org) == _state(sql_org)
    # The replace import removed the grants missing from the file, and orphans surfaced as unknown.
    _, _, grants = _state(orm_org)
    removed = {(g[0], g[1], g[2]) for g in grants if not g[4]}
    assert removed == {("GitHub", "bob@acme.test", "member"), ("GitHub", "ghost@acme.test", "member")}
    assert ("GitHub", "deploy-bot@acme.test", "Owner") in {(g[0], g[1], g[2]) for g in grants if g[7]}


def test_portable_loader_rejects_duplicates_and_unknown_managers_and_writes_nothing(db, run_import, monkeypatch):
    org = OrganizationFactory(slug="orm-errors")
    monkeypatch.setattr(services, "staging", staging_portable)
    bad = IDENTITIES_CSV + "ann@acme.test,Ann Again,Sales,nobody@acme.test,human,active,\n"
    with pytest.raises(ImportValidationError) as caught:
        run_import("identities", bad, organization=org)
    messages = {(e.column, e.message.split(" (")[0]) for e in caught.value.errors}
    assert ("email", "duplicate of row 3") in messages
    assert ("manager_email", "manager 'nobody@acme.test' is neither in this file nor in the inventory") in messages
    with scope(org):
        assert not Identity.objects.exists()
