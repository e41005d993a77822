"""SCIM connectors through the API: create, edit, sync now, sync runs, remove; same permissions as the page."""

import pytest

from entitlements.models import Application, ScimConnector
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

pytestmark = pytest.mark.django_db


@pytest.fixture
def github(org, inventory):
    with scope(org):
        return Application.objects.get(name="GitHub")


@pytest.fixture
def directory(scim_server):
    server = scim_server(max_results=3)
    server.add_user("ann", email="ann@acme.test", given="Ann", family="Archer")
    server.add_user("zed", email="zed@acme.test", given="Zed", family="Outsider")
    server.add_group("Admins", ["ann"])
    server.add_group("Developers", ["ann", "zed"])
    return server


def url(app, tail=""):
    return f"/api/v1/orgs/acme/applications/{app.pk}/{tail}"


def test_connector_is_created_synced_and_its_runs_listed(github, directory, member, api_for,
                                                         django_capture_on_commit_callbacks):
    api = api_for(member(Role.SECURITY_ANALYST))
    assert api.get(url(github, "scim-connector/")).status_code == 404
    created = api.put(url(github, "scim-connector/"),
                      {"base_url": directory.base_url, "token": directory.token, "sync_interval_hours": 6},
                      format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["base_url"], body["enabled"], body["sync_interval_hours"], body["token_set"]) == (
        directory.base_url, True, 6, True)
    assert "token" not in body
    with django_capture_on_commit_callbacks(execute=True):
        queued = api.post(url(github, "scim-connector/sync/"))
    assert queued.status_code == 202
    run_id = queued.json()["sync_run"]["id"]
    run = api.get(f"/api/v1/orgs/acme/imports/{run_id}/").json()["sync_run"]
    assert (run["status"], run["created"]) == ("succeeded", 3), run
    runs = api.get(url(github, "sync-runs/")).json()["results"]
    assert runs[0]["id"] == run_id and runs[0]["source"] == "scim"


def test_connector_is_edited_keeping_its_token_when_none_is_given(github, directory, member, api_for):
    api = api_for(member(Role.ADMIN))
    api.put(url(github, "scim-connector/"), {"base_url": directory.base_url, "token": "first"}, format="json")
    edited = api.put(url(github, "scim-connector/"),
                     {"base_url": directory.base_url + "/", "enabled": False}, format="json")
    assert edited.status_code == 200
    assert edited.json()["enabled"] is False
    with scopes_disabled():
        assert ScimConnector.objects.get(application=github).token == "first"
    assert api.delete(url(github, "scim-connector/")).status_code == 204
    with scopes_disabled():
        assert not ScimConnector.objects.exists()
        assert Application.objects.get(pk=github.pk).feed == "file"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"base_url": "https://idp.example.com/scim/v2"}, "token", "Bearer token is required"),
        ({"base_url": "not a url", "token": "t"}, "base_url", "valid URL"),
        ({"base_url": "https://idp.example.com/scim/v2", "token": "t", "sync_interval_hours": 0},
         "sync_interval_hours", "greater than or equal to 1"),
    ],
)
def test_bad_connector_input_is_400_naming_the_field_and_saves_nothing(github, member, api_for, body, field, message):
    response = api_for(member(Role.ADMIN)).put(url(github, "scim-connector/"), body, format="json")
    assert response.status_code == 400
    assert message in " ".join(response.json()["errors"][field])
    with scopes_disabled():
        assert not ScimConnector.objects.exists()


def test_connector_to_an_internal_address_is_refused(github, member, api_for, settings):
    settings.ALLOWED_INTERNAL_HOSTS = []
    response = api_for(member(Role.ADMIN)).put(
        url(github, "scim-connector/"), {"base_url": "https://169.254.169.254/scim/v2", "token": "t"}, format="json"
    )
    assert response.status_code == 400 and "link-local" in response.json()["errors"]["base_url"][0]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.AUDITOR, Role.REVIEWER])
def test_roles_without_manage_inventory_get_403(github, directory, member, api_for, role):
    api_for(member(Role.ADMIN)).put(url(github, "scim-connector/"),
                                    {"base_url": directory.base_url, "token": "t"}, format="json")
    api = api_for(member(role))
    assert api.put(url(github, "scim-connector/"), {"base_url": directory.base_url}, format="json").status_code == 403
    assert api.post(url(github, "scim-connector/sync/")).status_code == 403
    assert api.delete(url(github, "scim-connector/")).status_code == 403
    expected_read = 403 if role == Role.REVIEWER else 200
    assert api.get(url(github, "scim-connector/")).status_code == expected_read
    assert api.get(url(github, "sync-runs/")).status_code == expected_read


def test_outsider_gets_404_for_every_connector_endpoint(github, directory, member, outsider, api_for):
    api_for(member(Role.ADMIN)).put(url(github, "scim-connector/"),
                                    {"base_url": directory.base_url, "token": "t"}, format="json")
    api = api_for(outsider)
    base = f"/api/v1/orgs/globex/applications/{github.pk}/"
    for path in (url(github, "scim-connector/"), base + "scim-connector/"):
        assert api.get(path).status_code == 404
        assert api.put(path, {"base_url": directory.base_url, "token": "t"}, format="json").status_code == 404
        assert api.delete(path).status_code == 404
    assert api.post(base + "scim-connector/sync/").status_code == 404
    assert api.get(base + "sync-runs/").status_code == 404
    with scopes_disabled():
        assert ScimConnector.objects.count() == 1


def test_sync_runs_list_queries_do_not_grow_with_the_runs(github, member, api_for, run_import):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    api = api_for(member(Role.ADMIN))

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get(url(github, "sync-runs/")).status_code == 200
        return len(captured)

    run_import("entitlements", "application,identity_email,role,last_used\nGitHub,ann@acme.test,r0,\n")
    queries()  # the first call of a token records its use
    one = queries()
    for n in range(1, 7):
        run_import("entitlements", f"application,identity_email,role,last_used\nGitHub,ann@acme.test,r{n},\n")
    assert queries() == one
