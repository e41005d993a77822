"""Queued imports and SCIM syncs go through a real Celery worker on Redis against the test database."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from entitlements.models import Application, Entitlement, Identity, SyncRun
from entitlements.services import scim_connector_save
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from ..conftest import wait_until

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

ENT = "application,identity_email,role,last_used\n"


def finished(run_id: int):
    def check():
        with scopes_disabled():
            run = SyncRun.objects.get(pk=run_id)
        return run if run.is_finished else None

    return check


def test_a_big_upload_is_imported_by_a_worker_and_the_page_follows_it(
    celery_worker_factory, org, inventory, member, client_for, settings
):
    settings.IMPORT_ASYNC_THRESHOLD_ROWS = 50
    celery_worker_factory()
    client = client_for(member(Role.ADMIN))
    text = ENT + "".join(f"GitHub,person{i}@acme.test,{'admin' if i % 10 == 0 else 'member'},2026-11-0{i % 9 + 1}\n"
                         for i in range(400))
    upload = SimpleUploadedFile("github.csv", text.encode(), content_type="text/csv")

    response = client.post("/o/acme/inventory/imports/", {"kind": "entitlements", "mode": "merge", "file": upload})

    assert response.status_code == 302
    run_id = int(response["Location"].rstrip("/").rsplit("/", 1)[1])
    run = wait_until(finished(run_id), timeout=60)
    assert (run.status, run.created, run.identities_created, run.processed_rows) == ("succeeded", 400, 400, 400)
    with scope(org):
        assert Entitlement.objects.filter(application__name="GitHub", present=True).count() == 400
        assert Entitlement.objects.filter(application__name="GitHub", is_privileged=True).count() == 40
        assert Identity.objects.filter(email="person7@acme.test", status="unknown").exists()
    page = client.get(response["Location"]).content.decode()
    assert "succeeded" in page.lower() and "400" in page


def test_a_queued_file_with_a_bad_row_fails_in_the_worker_and_writes_nothing(
    celery_worker_factory, org, inventory, member, api_for, settings
):
    settings.IMPORT_ASYNC_THRESHOLD_ROWS = 50
    celery_worker_factory()
    api = api_for(member(Role.ADMIN))
    with scope(org):
        before = Entitlement.objects.count()
    text = ENT + "".join(f"GitHub,person{i}@acme.test,member,\n" for i in range(100)) + "GitHub,person1@acme.test,member,\n"
    upload = SimpleUploadedFile("dup.csv", text.encode(), content_type="text/csv")

    response = api.post("/api/v1/orgs/acme/imports/", {"kind": "entitlements", "file": upload}, format="multipart")

    assert response.status_code == 202
    run_id = response.json()["sync_run"]["id"]
    wait_until(finished(run_id), timeout=60)
    detail = api.get(f"/api/v1/orgs/acme/imports/{run_id}/").json()["sync_run"]
    assert detail["status"] == "failed"
    assert detail["errors"] == [{"row": 102, "column": "role", "message": "duplicate of row 3 (person1@acme.test / member)"}]
    with scope(org):
        assert Entitlement.objects.count() == before
        assert not Identity.objects.filter(email="person1@acme.test").exists()


def test_sync_now_runs_in_a_worker_against_the_scim_server(
    celery_worker_factory, org, inventory, member, client_for, scim_server
):
    server = scim_server()
    server.add_user("ann", email="ann@acme.test", given="Ann", family="Archer")
    server.add_user("zed", email="zed@acme.test", given="Zed", family="Outsider", active=False)
    server.add_group("Owners", ["ann"])
    server.add_group("Developers", ["ann", "zed"])
    with scope(org):
        github = Application.objects.get(name="GitHub")
        scim_connector_save(application=github, base_url=server.base_url, token=server.token)
    celery_worker_factory()
    client = client_for(member(Role.ADMIN))

    response = client.post(f"/o/acme/inventory/applications/{github.pk}/scim/sync/")

    assert response.status_code == 302
    run_id = int(response["Location"].rstrip("/").rsplit("/", 1)[1])
    run = wait_until(finished(run_id), timeout=60)
    assert (run.status, run.created, run.error) == ("succeeded", 3, "")
    with scope(org):
        grants = set(Entitlement.objects.filter(application=github).values_list("identity__email", "role"))
        zed = Identity.objects.get(email="zed@acme.test")
    assert grants == {("ann@acme.test", "Owners"), ("ann@acme.test", "Developers"), ("zed@acme.test", "Developers")}
    assert zed.status == "terminated"
