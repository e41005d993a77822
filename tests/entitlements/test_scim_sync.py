import pytest

from entitlements.models import Application, Entitlement, Identity, ScimConnector, SyncRun
from entitlements.services import ConnectorError, scim_connector_save, scim_sync_request
from thalian.permissions import Role
from thalian.tenancy import scope


@pytest.fixture
def directory(scim_server):
    server = scim_server(max_results=3)
    server.add_user("ann", email="ann@acme.test", given="Ann", family="Archer")
    server.add_user("bob", email="bob@acme.test", given="Bob", family="Baker", active=False)
    server.add_user("zed", email="zed@acme.test", given="Zed", family="Outsider")
    server.add_user("cat", email="cat@acme.test", given="Cat", family="Cole")
    server.add_group("Admins", ["ann"])
    server.add_group("Developers", ["ann", "bob", "zed"])
    return server


@pytest.fixture
def github(org, inventory):
    with scope(org):
        return Application.objects.get(name="GitHub")


def connect(org, app, server, token=None):
    with scope(org):
        return scim_connector_save(application=app, base_url=server.base_url, token=token or server.token)


def sync(org, connector, capture):
    with scope(org), capture(execute=True):
        run = scim_sync_request(connector=connector)
    with scope(org):
        return SyncRun.objects.get(pk=run.pk)


def grants(org, app):
    with scope(org):
        return {
            (e.identity.email, e.role): e
            for e in Entitlement.objects.filter(application=app).select_related("identity")
        }


def test_sync_turns_group_memberships_into_entitlements(org, github, directory, django_capture_on_commit_callbacks):
    connector = connect(org, github, directory)

    run = sync(org, connector, django_capture_on_commit_callbacks)

    assert run.status == "succeeded", run.error
    assert (run.created, run.updated, run.removed) == (4, 0, 0)
    current = grants(org, github)
    assert set(current) == {
        ("ann@acme.test", "Admins"),
        ("ann@acme.test", "Developers"),
        ("bob@acme.test", "Developers"),
        ("zed@acme.test", "Developers"),
    }
    assert current[("ann@acme.test", "Admins")].findings == ["privileged", "never_used"]
    assert current[("bob@acme.test", "Developers")].source == "scim"
    with scope(org):
        github.refresh_from_db()
        zed = Identity.objects.get(email="zed@acme.test")
        bob = Identity.objects.get(email="bob@acme.test")
        cat = Identity.objects.get(email="cat@acme.test")
    assert github.feed == "scim" and github.last_sync_run_id == run.pk
    # Not in the HR inventory: orphaned. Inactive in the provider: marked terminated.
    assert zed.status == "unknown" and zed.name == "Zed Outsider"
    assert zed.external_ids == {f"scim:{connector.pk}": directory.users["zed"]}
    assert bob.status == "terminated"
    assert cat.status == "unknown"
    assert "terminated" in current[("bob@acme.test", "Developers")].findings


def test_second_sync_has_replace_semantics(org, github, directory, django_capture_on_commit_callbacks):
    connector = connect(org, github, directory)
    sync(org, connector, django_capture_on_commit_callbacks)
    unchanged = sync(org, connector, django_capture_on_commit_callbacks)
    assert (unchanged.created, unchanged.updated, unchanged.removed, unchanged.unchanged) == (0, 0, 0, 4)

    import requests

    requests.delete(
        f"{directory.base_url}/Users/{directory.users['zed']}",
        headers={"Authorization": f"Bearer {directory.token}"},
        timeout=5,
    ).raise_for_status()
    run = sync(org, connector, django_capture_on_commit_callbacks)

    assert (run.created, run.removed, run.unchanged) == (0, 1, 3)
    assert grants(org, github)[("zed@acme.test", "Developers")].present is False


def test_sync_keeps_last_used_from_files(org, github, directory, run_import, django_capture_on_commit_callbacks):
    run_import("entitlements", "application,identity_email,role,last_used\nGitHub,ann@acme.test,Admins,2026-11-20\n")
    connector = connect(org, github, directory)

    run = sync(org, connector, django_capture_on_commit_callbacks)

    assert run.unchanged == 1 and run.created == 3
    assert grants(org, github)[("ann@acme.test", "Admins")].last_used.date().isoformat() == "2026-11-20"


def test_bad_token_fails_clearly_and_changes_nothing(org, github, directory, django_capture_on_commit_callbacks):
    connector = connect(org, github, directory, token="not-the-token")

    run = sync(org, connector, django_capture_on_commit_callbacks)

    assert run.status == "failed"
    assert "refused the bearer token (HTTP 401)" in run.error
    assert grants(org, github) == {}
    with scope(org):
        assert not Identity.objects.filter(email="zed@acme.test").exists()
        assert SyncRun.objects.filter(source="scim").count() == 1  # no retry for a bad token


def test_server_down_fails_visibly_and_is_retried(org, github, closed_port, django_capture_on_commit_callbacks):
    with scope(org):
        connector = scim_connector_save(application=github, base_url=f"http://127.0.0.1:{closed_port}/v2", token="t")

    sync(org, connector, django_capture_on_commit_callbacks)

    with scope(org):
        runs = list(SyncRun.objects.filter(source="scim").order_by("attempt"))
    assert [(r.attempt, r.status) for r in runs] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert "unreachable" in runs[0].error and "Retrying in 60 seconds (attempt 2 of 3)" in runs[0].error
    assert "Retrying" not in runs[-1].error
    assert grants(org, github) == {}


def test_token_is_stored_encrypted(org, github, directory):
    connect(org, github, directory)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT token FROM entitlements_scimconnector")
        stored = cursor.fetchone()[0]
    assert directory.token not in stored
    with scope(org):
        assert ScimConnector.objects.get().token == directory.token


def test_connector_refuses_bad_settings(org, github, settings):
    settings.ALLOW_INSECURE_HTTP_INTEGRATIONS = False
    with scope(org), pytest.raises(ConnectorError, match="https"):
        scim_connector_save(application=github, base_url="http://scim.example.test/v2", token="t")
    with scope(org), pytest.raises(ConnectorError, match="token is required"):
        scim_connector_save(application=github, base_url="https://scim.example.test/v2", token="")


def test_beat_queues_due_connectors_once(org, github, directory, django_capture_on_commit_callbacks):
    from entitlements.services import scim_sync_due

    connect(org, github, directory)
    with django_capture_on_commit_callbacks(execute=True):
        first = scim_sync_due()
    second = scim_sync_due()

    assert len(first) == 1 and second == []
    with scope(org):
        assert SyncRun.objects.get(pk=first[0]).status == "succeeded"


def test_sync_now_button_and_connector_form(member, client_for, org, github, directory, django_capture_on_commit_callbacks):
    client = client_for(member(Role.ADMIN))
    response = client.post(
        f"/o/acme/inventory/applications/{github.pk}/scim/",
        {"base_url": directory.base_url, "token": directory.token, "enabled": "on", "sync_interval_hours": 12},
    )
    assert response.status_code == 302
    page = client.get(f"/o/acme/inventory/applications/{github.pk}/").content.decode()
    assert directory.token not in page and "Sync now" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/o/acme/inventory/applications/{github.pk}/scim/sync/")

    assert response.status_code == 302
    run_page = client.get(response["Location"]).content.decode()
    assert 'class="badge badge-succeeded">Succeeded' in run_page
    assert len(grants(org, github)) == 4
