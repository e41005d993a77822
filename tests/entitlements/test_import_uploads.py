"""Queued import uploads: private while they wait, deleted when the run ends either way, orphans swept."""

import os
import stat
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from entitlements.models import SyncRun, SyncRunStatus
from entitlements.services import import_uploads_sweep
from thalian.permissions import Role
from thalian.tenancy import scope

ENT = "application,identity_email,role,last_used\n"


@pytest.fixture
def uploads(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMPORT_ASYNC_THRESHOLD_ROWS = 3
    return tmp_path / "media" / "imports"


def _post(api, text):
    upload = SimpleUploadedFile("grants.csv", text.encode(), content_type="text/csv")
    return api.post("/api/v1/orgs/acme/imports/", {"kind": "entitlements", "file": upload}, format="multipart")


def test_a_queued_upload_waits_readable_only_by_the_server(org, inventory, member, api_for, uploads):
    response = _post(api_for(member(Role.ADMIN)), ENT + "".join(f"GitHub,u{i}@acme.test,member,\n" for i in range(5)))
    assert response.status_code == 202  # the task runs on commit, which this test never reaches
    [parked] = list(uploads.iterdir())
    assert stat.S_IMODE(parked.stat().st_mode) == 0o600
    assert stat.S_IMODE(uploads.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("last_row", "status"), [("GitHub,u9@acme.test,member,\n", "succeeded"), ("GitHub,broken,member,\n", "failed")]
)
def test_the_upload_is_deleted_when_the_queued_run_ends_either_way(
    org, inventory, member, api_for, uploads, django_capture_on_commit_callbacks, last_row, status
):
    text = ENT + "".join(f"GitHub,u{i}@acme.test,member,\n" for i in range(5)) + last_row
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(api_for(member(Role.ADMIN)), text)
    assert response.status_code == 202
    with scope(org):
        run = SyncRun.objects.get(pk=response.json()["sync_run"]["id"])
    assert (run.status, run.upload_path) == (status, "")
    assert list(uploads.iterdir()) == []


def _aged(path: Path, hours: float) -> Path:
    path.write_text(ENT)
    old = time.time() - hours * 3600
    os.utime(path, (old, old))
    return path


def test_sweep_deletes_old_uploads_no_queued_or_running_run_needs(org, uploads):
    uploads.mkdir(parents=True)
    orphan = _aged(uploads / "orphan.csv", 3)
    finished = _aged(uploads / "finished.csv", 3)
    waiting = _aged(uploads / "waiting.csv", 3)
    _aged(uploads / "fresh.csv", 0)
    with scope(org):
        SyncRun.objects.create(organization=org, kind="entitlements", status=SyncRunStatus.QUEUED,
                               upload_path=str(waiting))
        SyncRun.objects.create(organization=org, kind="entitlements", status=SyncRunStatus.FAILED,
                               upload_path=str(finished))
    assert import_uploads_sweep() == 2
    assert sorted(p.name for p in uploads.iterdir()) == ["fresh.csv", "waiting.csv"]
    assert not orphan.exists() and not finished.exists()


def test_sweep_runs_hourly_from_beat():
    from entitlements.beat import SCHEDULE

    assert SCHEDULE["entitlements-import-uploads-sweep"]["task"] == "entitlements.tasks.import_uploads_sweep_task"
