import datetime as dt

import pytest
from django.utils import timezone

from entitlements.csv_import import ImportValidationError
from entitlements.models import Application, Entitlement, Identity, SyncRun
from tests.entitlements.conftest import APPLICATIONS_CSV, IDENTITIES_CSV
from thalian.models import AuditEvent
from thalian.tenancy import scope

ENT_HEADER = "application,identity_email,role,last_used\n"


def recent(days=1):
    return (timezone.now() - dt.timedelta(days=days)).date().isoformat()


def grants(org):
    with scope(org):
        return {
            (e.application.name, e.identity.email, e.role): e
            for e in Entitlement.objects.select_related("application", "identity")
        }


def snapshot(org):
    with scope(org):
        return (
            list(Identity.objects.order_by("pk").values()),
            list(Application.objects.order_by("pk").values()),
            list(Entitlement.objects.order_by("pk").values()),
            SyncRun.objects.count(),
        )


def test_identities_import_creates_people_with_managers(org, run_import):
    run = run_import("identities", IDENTITIES_CSV)

    assert (run.created, run.updated, run.unchanged, run.status) == (4, 0, 0, "succeeded")
    with scope(org):
        ann = Identity.objects.select_related("manager").get(email="ann@acme.test")
        bot = Identity.objects.select_related("manager").get(email="deploy-bot@acme.test")
    assert ann.manager.email == "boss@acme.test"
    assert (ann.department, ann.title, ann.kind) == ("Engineering", "Engineer", "human")
    assert bot.kind == "service_account" and bot.manager == ann


def test_reimporting_the_same_file_changes_nothing(org, inventory, run_import):
    text = ENT_HEADER + f"GitHub,ann@acme.test,admin,{recent()}\nSalesforce,bob@acme.test,user,\n"
    first = run_import("entitlements", text)
    before = grants(org)
    second = run_import("entitlements", text)

    assert (first.created, first.updated, first.unchanged) == (2, 0, 0)
    assert (second.created, second.updated, second.removed, second.unchanged) == (0, 0, 0, 2)
    assert {k: v.last_seen for k, v in grants(org).items()} == {k: v.last_seen for k, v in before.items()}
    assert run_import("identities", IDENTITIES_CSV).unchanged == 4
    assert run_import("applications", APPLICATIONS_CSV).unchanged == 3


def test_merge_updates_changed_rows_and_keeps_others(org, inventory, run_import):
    run_import("entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,2026-01-01\nGitHub,bob@acme.test,read,\n")
    run = run_import("entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,2026-02-01\n")

    assert (run.created, run.updated, run.removed, run.unchanged) == (0, 1, 0, 0)
    current = grants(org)
    assert current[("GitHub", "ann@acme.test", "admin")].last_used.date() == dt.date(2026, 2, 1)
    assert current[("GitHub", "bob@acme.test", "read")].present is True


def test_replace_marks_missing_grants_of_named_applications_removed(org, inventory, run_import):
    run_import(
        "entitlements",
        ENT_HEADER + "GitHub,ann@acme.test,admin,\nGitHub,bob@acme.test,read,\nSalesforce,bob@acme.test,user,\n",
    )
    run = run_import("entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,\n", mode="replace")

    assert (run.created, run.removed, run.unchanged) == (0, 1, 1)
    current = grants(org)
    removed = current[("GitHub", "bob@acme.test", "read")]
    assert removed.present is False and removed.removed_at is not None and removed.removed_by_run_id == run.pk
    # Salesforce is not named in the file, so its grants stay.
    assert current[("Salesforce", "bob@acme.test", "user")].present is True
    # A grant coming back is present again.
    back = run_import("entitlements", ENT_HEADER + "GitHub,bob@acme.test,read,\n")
    assert back.updated == 1 and grants(org)[("GitHub", "bob@acme.test", "read")].present is True


def test_unknown_identity_is_created_as_orphan(org, inventory, run_import):
    run = run_import("entitlements", ENT_HEADER + "GitHub,Ghost@Acme.test,admin,\n")

    assert run.identities_created == 1
    with scope(org):
        ghost = Identity.objects.get(email="ghost@acme.test")
    assert ghost.status == "unknown"
    grant = grants(org)[("GitHub", "ghost@acme.test", "admin")]
    assert grant.findings == ["privileged", "orphaned", "never_used"]


def test_findings_are_computed(org, inventory, run_import):
    org.dormant_days = 30
    org.privileged_patterns = ["admin", "superuser"]
    org.save()
    run_import(
        "entitlements",
        ENT_HEADER
        + f"GitHub,ann@acme.test,Org Admin,{recent(1)}\n"
        + f"GitHub,ann@acme.test,read,{recent(45)}\n"
        + f"Salesforce,bob@acme.test,user,{recent(2)}\n"
        + f"Salesforce,ann@acme.test,SUPERUSER_x,{recent(2)}\n",
    )
    current = grants(org)
    assert current[("GitHub", "ann@acme.test", "Org Admin")].findings == ["privileged"]
    assert current[("GitHub", "ann@acme.test", "read")].findings == ["dormant"]
    assert current[("Salesforce", "bob@acme.test", "user")].findings == ["terminated"]
    assert current[("Salesforce", "ann@acme.test", "SUPERUSER_x")].findings == ["privileged"]


def test_identity_status_change_recomputes_findings(org, inventory, run_import):
    run_import("entitlements", ENT_HEADER + f"GitHub,ann@acme.test,read,{recent()}\n")
    assert grants(org)[("GitHub", "ann@acme.test", "read")].findings == []

    run = run_import("identities", "email,name,department,manager_email,kind,status\nann@acme.test,Ann Archer,Engineering,boss@acme.test,human,terminated\n")

    assert run.updated == 1
    assert grants(org)[("GitHub", "ann@acme.test", "read")].findings == ["terminated"]


def test_entitlement_import_sets_data_as_of_and_sync_history(org, inventory, run_import):
    run = run_import("entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,\n")
    with scope(org):
        github = Application.objects.get(name="GitHub")
        dropbox = Application.objects.get(name="Dropbox")
        assert github.last_sync_run_id == run.pk and github.last_synced_at == run.finished_at
        assert dropbox.last_synced_at is None
        assert list(github.sync_runs.values_list("pk", flat=True)) == [run.pk]
    assert AuditEvent.objects.filter(action="inventory.import", target_id=str(run.pk)).exists()


BAD_FILES = {
    "missing header": ("entitlements", "application,identity_email,role\nGitHub,ann@acme.test,admin\n", (1, "last_used")),
    "bad email": ("entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,\nGitHub,not-an-email,admin,\n", (3, "identity_email")),
    "unknown kind": (
        "identities",
        "email,name,department,manager_email,kind,status\nz@acme.test,Z,,,cyborg,active\n",
        (2, "kind"),
    ),
    "unknown application": ("entitlements", ENT_HEADER + "Workday,ann@acme.test,admin,\n", (2, "application")),
    "duplicate row": (
        "entitlements",
        ENT_HEADER + "GitHub,ann@acme.test,admin,\nGitHub,ANN@acme.test,admin,\n",
        (3, "role"),
    ),
    "duplicate identity": (
        "identities",
        "email,name,department,manager_email,kind,status\nn@acme.test,N,,,,\nn@acme.test,N2,,,,\n",
        (3, "email"),
    ),
    "unknown manager": (
        "identities",
        "email,name,department,manager_email,kind,status\nn@acme.test,N,,nobody@acme.test,,\n",
        (2, "manager_email"),
    ),
    "unparseable date": ("entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,31/12/2025\n", (2, "last_used")),
    "not utf-8": ("entitlements", ENT_HEADER.encode() + "GitHub,andré@acme.test,admin,\n".encode("latin-1"), (2, "")),
    "no rows": ("entitlements", ENT_HEADER, (2, "")),
    "bad sanctioned": ("applications", "name,category,sanctioned,owner_email\nNew,CRM,perhaps,\n", (2, "sanctioned")),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_lists_the_problem_and_writes_nothing(org, inventory, run_import, case):
    run_import("entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,\nGitHub,bob@acme.test,read,\n")
    kind, text, (row, column) = BAD_FILES[case]
    before = snapshot(org)

    with pytest.raises(ImportValidationError) as excinfo:
        run_import(kind, text, mode="replace" if kind == "entitlements" else "merge")

    assert (excinfo.value.errors[0].row, excinfo.value.errors[0].column) == (row, column)
    assert snapshot(org) == before


@pytest.mark.parametrize("big_load", [False, True], ids=["small", "big-load path"])
def test_duplicate_rows_in_a_first_load_are_listed_and_nothing_is_written(org, inventory, run_import, monkeypatch, big_load):
    # No grant of Dropbox exists yet, so this is a first load: the unique index catches the repeat.
    if big_load:
        monkeypatch.setattr("entitlements.staging.BIG_LOAD_ROWS", 1)
    before = snapshot(org)
    text = ENT_HEADER + "Dropbox,ann@acme.test,editor,\nDropbox,new@acme.test,viewer,\nDropbox,ANN@acme.test,editor,\n"

    with pytest.raises(ImportValidationError) as excinfo:
        run_import("entitlements", text)

    assert [(e.row, e.column, e.message) for e in excinfo.value.errors] == [
        (4, "role", "duplicate of row 2 (ann@acme.test / editor)")
    ]
    assert snapshot(org) == before
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        assert cursor.fetchone()[0] == "origin"


def test_duplicates_are_listed_with_the_other_problems_of_the_file(org, inventory, run_import):
    with pytest.raises(ImportValidationError) as excinfo:
        run_import("entitlements", ENT_HEADER + "Dropbox,ann@acme.test,editor,\nDropbox,x,editor,\nDropbox,ann@acme.test,editor,\n")

    assert [(e.row, e.column) for e in excinfo.value.errors] == [(3, "identity_email"), (4, "role")]
    assert excinfo.value.total == 2


def test_values_copy_must_escape_arrive_unchanged(org, inventory, run_import):
    roles = ["back\\slash", "tab\there", "two\nlines", "carriage\rreturn", "plain"]
    body = "".join(f'Dropbox,ann@acme.test,"{role}",\n' for role in roles)
    run = run_import("entitlements", ENT_HEADER + body)

    assert run.created == len(roles)
    assert sorted(role for (_app, _email, role) in grants(org)) == sorted(roles)


def test_over_size_limit_writes_nothing(org, inventory, run_import, settings):
    settings.IMPORT_MAX_BYTES = 60
    before = snapshot(org)
    with pytest.raises(ImportValidationError, match="size limit"):
        run_import("entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,\n" * 5)
    assert snapshot(org) == before


def test_a_good_row_after_a_bad_one_is_not_written(org, inventory, run_import):
    before = snapshot(org)
    with pytest.raises(ImportValidationError) as excinfo:
        run_import("entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,\nGitHub,x,admin,\nGitHub,bob@acme.test,admin,\n")
    assert [e.row for e in excinfo.value.errors] == [3]
    assert snapshot(org) == before


def test_replace_is_refused_for_identities(run_import):
    with pytest.raises(ImportValidationError, match="replace applies to entitlements files only"):
        run_import("identities", "email,name,department,manager_email,kind,status\n", mode="replace")


def test_import_only_touches_its_organization(org, other_org, inventory, run_import):
    run_import("applications", "name,category,sanctioned,owner_email\nGitHub,Dev,yes,\n", organization=other_org)
    run_import("entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,\n", organization=other_org)

    assert grants(org) == {}
    assert set(grants(other_org)) == {("GitHub", "ann@acme.test", "admin")}
    with scope(other_org):
        assert Identity.objects.get(email="ann@acme.test").status == "unknown"


def test_big_load_path_keeps_integrity_and_restores_trigger_mode(org, inventory, run_import, monkeypatch):
    monkeypatch.setattr("entitlements.staging.BIG_LOAD_ROWS", 1)
    run = run_import("entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,\nDropbox,new@acme.test,editor,\n")

    assert (run.created, run.identities_created) == (2, 1)
    merged = run_import(
        "entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,2026-11-01\nGitHub,other@acme.test,read,\n", mode="replace"
    )
    assert (merged.created, merged.updated, merged.removed, merged.unchanged) == (1, 1, 0, 0)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        assert cursor.fetchone()[0] == "origin"
        cursor.execute(
            "SELECT count(*) FROM entitlements_entitlement e JOIN entitlements_identity i ON i.id = e.identity_id "
            "JOIN entitlements_application a ON a.id = e.application_id WHERE e.organization_id = %s",
            [org.pk],
        )
        assert cursor.fetchone()[0] == 3


def test_big_load_by_a_role_that_may_not_skip_triggers_is_correct_and_says_what_to_grant(
    org, inventory, run_import, monkeypatch, caplog
):
    import uuid

    from django.db import connection

    monkeypatch.setattr("entitlements.staging.BIG_LOAD_ROWS", 1)
    role = f"thalian_app_{uuid.uuid4().hex[:12]}"
    with connection.cursor() as cursor:
        # Rolled back with the test's transaction, like every grant below.
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        cursor.execute(f"GRANT TEMPORARY ON DATABASE {connection.settings_dict['NAME']} TO {role}")
        # The fixture's imports left their staging table (dropped at commit, which a test never reaches).
        cursor.execute("DROP TABLE IF EXISTS inv_stage")
        cursor.execute(f"SET LOCAL ROLE {role}")

    first = run_import("entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,\nDropbox,new@acme.test,editor,\n")
    merged = run_import(
        "entitlements", ENT_HEADER + "GitHub,ann@acme.test,admin,2026-11-01\nGitHub,other@acme.test,read,\n", mode="replace"
    )

    assert (first.created, first.identities_created) == (2, 1)
    assert (merged.created, merged.updated) == (1, 1)
    assert "GRANT SET ON PARAMETER session_replication_role" in caplog.text
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        assert cursor.fetchone()[0] == "origin"
        cursor.execute("RESET ROLE")
    assert set(grants(org)) == {
        ("GitHub", "ann@acme.test", "admin"), ("Dropbox", "new@acme.test", "editor"), ("GitHub", "other@acme.test", "read")
    }


def test_findings_follow_a_settings_change(org, inventory, run_import):
    from entitlements.tasks import findings_refresh_task

    run_import("entitlements", ENT_HEADER + f"GitHub,ann@acme.test,deploy-key,{recent(40)}\n")
    assert grants(org)[("GitHub", "ann@acme.test", "deploy-key")].findings == []

    org.dormant_days = 30
    org.privileged_patterns = ["deploy"]
    org.save()
    changed = findings_refresh_task.delay(org.pk).get()

    assert changed == 1
    assert grants(org)[("GitHub", "ann@acme.test", "deploy-key")].findings == ["dormant", "privileged"]
