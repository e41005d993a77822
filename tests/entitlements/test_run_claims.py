"""Imports and syncs nobody works on any more: the sweep, a worker killed mid-import, cancel and retry."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from entitlements.models import Entitlement, SyncRun
from entitlements.services import sync_runs_sweep
from tests.claims_support import held_lock, wait_for_lock_waiter
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from ..conftest import wait_until

ENT = "application,identity_email,role,last_used\n"
ROWS = 120


def _csv() -> bytes:
    return (ENT + "".join(f"GitHub,person{i}@acme.test,member,2026-11-01\n" for i in range(ROWS))).encode()


def _submit(api) -> SyncRun:
    response = api.post(
        "/api/v1/orgs/acme/imports/",
        {"kind": "entitlements", "mode": "merge", "file": SimpleUploadedFile("github.csv", _csv(), "text/csv")},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    return _run(response.json()["sync_run"]["id"])


def _run(run_id) -> SyncRun:
    with scopes_disabled():
        return SyncRun.objects.get(pk=run_id)


@pytest.fixture
def queued(org, inventory, member, api_for, settings):
    """A queued entitlements import whose message was lost (eager mode: on_commit never ran here)."""
    settings.IMPORT_ASYNC_THRESHOLD_ROWS = 50
    admin = member(Role.ADMIN)
    return _submit(api_for(admin))


def _age(run, seconds, **changes) -> None:
    with scopes_disabled():
        SyncRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - dt.timedelta(seconds=seconds), **changes)


@pytest.mark.django_db
def test_a_lost_import_is_sent_again_once_stale(queued, settings, django_capture_on_commit_callbacks):
    settings.CLAIM_STALE_SECONDS = 60
    assert sync_runs_sweep() == {"resent": 0, "failed": 0}

    _age(queued, 61)
    with django_capture_on_commit_callbacks(execute=True):
        assert sync_runs_sweep() == {"resent": 1, "failed": 0}

    run = _run(queued.pk)
    assert (run.status, run.attempt, run.created) == ("succeeded", 2, ROWS)
    assert not Path(queued.upload_path).exists()


@pytest.mark.django_db
def test_after_the_last_attempt_the_import_fails_visibly_and_its_upload_is_deleted(
    queued, settings, member, client_for
):
    settings.CLAIM_MAX_ATTEMPTS = 2
    _age(queued, 3600, status="running", attempt=2)
    assert Path(queued.upload_path).exists()

    assert sync_runs_sweep() == {"resent": 0, "failed": 1}

    run = _run(queued.pk)
    assert run.status == "failed" and "stopped without finishing after 2 attempt(s)" in run.error
    assert run.upload_path == "" and not Path(queued.upload_path).exists()
    page = client_for(member(Role.ADMIN)).get(f"/o/acme/inventory/imports/{run.pk}/").content.decode()
    assert "stopped without finishing after 2 attempt(s)" in page


@pytest.mark.django_db
def test_a_stuck_scim_sync_is_failed_by_the_sweep(org, settings):
    settings.CLAIM_STALE_SECONDS = 60
    with scope(org):
        run = SyncRun.objects.create(organization=org, source="scim", kind="scim", status="running")
    _age(run, 61)

    assert sync_runs_sweep() == {"resent": 0, "failed": 1}
    assert "Press Sync now" in _run(run.pk).error


@pytest.mark.django_db
def test_retry_and_cancel_in_the_browser(queued, member, client_for, django_capture_on_commit_callbacks):
    client = client_for(member(Role.ADMIN))
    page = client.get(f"/o/acme/inventory/imports/{queued.pk}/").content.decode()
    assert "Retry now" in page and "Cancel" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/o/acme/inventory/imports/{queued.pk}/retry/", follow=True)
    assert "The import was sent to a worker again." in response.content.decode()
    assert (_run(queued.pk).status, _run(queued.pk).attempt) == ("succeeded", 2)

    response = client.post(f"/o/acme/inventory/imports/{queued.pk}/cancel/", follow=True)
    assert "The run is succeeded; only a queued or running run can be cancelled." in response.content.decode()


@pytest.mark.django_db
def test_cancel_through_the_api_deletes_the_upload_and_imports_nothing(queued, member, api_for, org):
    api = api_for(member(Role.ADMIN))

    response = api.post(f"/api/v1/orgs/acme/imports/{queued.pk}/cancel/")

    assert response.status_code == 200, response.content
    body = response.json()["sync_run"]
    assert body["status"] == "failed" and body["error"].startswith("Cancelled by admin@acme.test")
    assert not Path(queued.upload_path).exists()
    assert api.post(f"/api/v1/orgs/acme/imports/{queued.pk}/retry/").status_code == 409
    with scope(org):
        assert not Entitlement.objects.filter(identity__email="person1@acme.test").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_outsiders_get_404_and_roles_without_inventory_rights_403(queued, member, outsider, api_for, client_for, action):
    assert api_for(outsider).post(f"/api/v1/orgs/globex/imports/{queued.pk}/{action}/").status_code == 404
    assert client_for(outsider).post(f"/o/globex/inventory/imports/{queued.pk}/{action}/").status_code == 404
    auditor = member(Role.AUDITOR)
    assert api_for(auditor).post(f"/api/v1/orgs/acme/imports/{queued.pk}/{action}/").status_code == 403
    assert client_for(auditor).post(f"/o/acme/inventory/imports/{queued.pk}/{action}/").status_code == 403
    assert _run(queued.pk).status == "queued"


def _killed_mid_import(start_worker, api, settings) -> SyncRun:
    """Queue an import, let a worker claim it, stop it before it reads anything, and kill it there."""
    settings.IMPORT_ASYNC_THRESHOLD_ROWS = 50
    settings.CLAIM_STALE_SECONDS = 1
    run = _submit(api)  # queued; the message waits in Redis
    with held_lock("LOCK TABLE entitlements_application IN ACCESS EXCLUSIVE MODE"):
        start_worker()
        wait_for_lock_waiter()
        assert _run(run.pk).status == "running"
        assert sync_runs_sweep() == {"resent": 0, "failed": 0}  # a live worker is never taken over
        start_worker.kill()
    time.sleep(1.1)
    assert _run(run.pk).status == "running" and Path(run.upload_path).exists()
    return run


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_import_is_recovered_by_the_sweep(
    celery_worker_factory, org, inventory, member, api_for, settings
):
    run = _killed_mid_import(celery_worker_factory, api_for(member(Role.ADMIN)), settings)

    assert sync_runs_sweep() == {"resent": 1, "failed": 0}
    celery_worker_factory()
    done = wait_until(lambda: (r := _run(run.pk)).is_finished and r, timeout=60)
    assert (done.status, done.created, done.attempt) == ("succeeded", ROWS, 2)
    assert not Path(run.upload_path).exists()


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_import_on_the_last_attempt_fails_visibly(
    celery_worker_factory, org, inventory, member, api_for, settings
):
    settings.CLAIM_MAX_ATTEMPTS = 1
    run = _killed_mid_import(celery_worker_factory, api_for(member(Role.ADMIN)), settings)

    assert sync_runs_sweep() == {"resent": 0, "failed": 1}
    failed = _run(run.pk)
    assert failed.status == "failed" and "after 1 attempt(s)" in failed.error
    assert not Path(run.upload_path).exists()
