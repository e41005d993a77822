import pytest
from django.core.management import CommandError, call_command

from entitlements.demo import demo_inventory_load
from entitlements.models import Application, Entitlement, Identity
from thalian.tenancy import scope


def test_import_inventory_command(org, inventory, tmp_path, capsys):
    path = tmp_path / "grants.csv"
    path.write_text("application,identity_email,role,last_used\nGitHub,ann@acme.test,admin,\nGitHub,new@acme.test,read,\n")

    call_command("import_inventory", "acme", "entitlements", str(path), "--mode", "replace")

    out = capsys.readouterr().out
    assert "2 created, 0 updated, 0 removed, 0 unchanged" in out
    assert "1 unknown identities were created" in out
    with scope(org):
        assert Entitlement.objects.filter(present=True).count() == 2


def test_import_inventory_command_reports_problems_and_writes_nothing(org, inventory, tmp_path, capsys):
    path = tmp_path / "grants.csv"
    path.write_text("application,identity_email,role,last_used\nWorkday,ann@acme.test,admin,\n")

    with pytest.raises(CommandError, match="1 problem\\(s\\) found in grants.csv; nothing was imported"):
        call_command("import_inventory", "acme", "entitlements", str(path))

    assert "row 2, application: unknown application 'Workday'" in capsys.readouterr().err
    with scope(org):
        assert Entitlement.objects.count() == 0


def test_import_inventory_command_unknown_org_or_file(org, tmp_path):
    with pytest.raises(CommandError, match="No organization with slug 'nope'"):
        call_command("import_inventory", "nope", "entitlements", str(tmp_path / "x.csv"))
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_inventory", "acme", "entitlements", str(tmp_path / "x.csv"))


def test_demo_inventory_is_realistic_and_idempotent(org):
    summary = demo_inventory_load(organization=org)
    assert "identities: 2000 created" in summary

    with scope(org):
        assert Application.objects.count() == 40
        assert Application.objects.exclude(owner_email="").count() == 40
        kinds = set(Identity.objects.values_list("kind", flat=True))
        statuses = set(Identity.objects.values_list("status", flat=True))
        grants = Entitlement.objects.count()
        with_manager = Identity.objects.filter(manager__isnull=False).count()
        findings = {
            flag: Entitlement.objects.filter(**{flag: True}).count()
            for flag in ("is_dormant", "is_privileged", "is_orphaned", "is_terminated", "is_never_used")
        }
    assert kinds == {"human", "service_account", "bot", "ai_agent"}
    assert statuses == {"active", "terminated", "unknown"}
    assert 13_000 <= grants <= 17_000
    assert with_manager >= 1990
    assert all(findings.values()), findings

    again = demo_inventory_load(organization=org)
    assert "entitlements: 0 created, 0 updated" in again
