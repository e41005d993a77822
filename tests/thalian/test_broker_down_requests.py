# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Requests that hand work to a worker answer at once with the broker down, and the work is done once the broker
is back and the stale-claim sweep runs: a launch (the snapshot), an evidence export (the background ZIP) and a
queued import."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from campaigns.launch import campaign_launches_sweep
from campaigns.models import Campaign, CampaignStatus, ReviewItem
from entitlements.models import SyncRun, SyncRunStatus
from entitlements.services import sync_runs_sweep
from evidence.models import EvidencePackage, EvidencePackageStatus
from evidence.packages import evidence_packages_sweep
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from ..campaigns.lifecycle_fixtures import inventory, make_campaign  # noqa: F401
from ..evidence.test_exports import signing_key_in_environment  # noqa: F401 - a fixture, used by name

pytestmark = pytest.mark.django_db
PROMPT = 1.5  # seconds: one refused connection, not Celery's retry loop


def _timed(call, api):
    api.get("/api/v1/orgs/acme/me/")  # the process's first request loads the URL configuration: not timed
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _age(model, pk, **fields) -> None:
    with scopes_disabled():
        model.objects.filter(pk=pk).update(**fields)


def test_a_launch_with_the_broker_down_answers_at_once_and_the_sweep_takes_the_snapshot_later(
    inventory, make_campaign, api_for, broker_down, settings, django_capture_on_commit_callbacks
):
    campaign = make_campaign(scope={"applications": ["GitHub"]}, reviewer_strategy="application_owner")
    api = api_for(inventory.admin)
    with broker_down(), django_capture_on_commit_callbacks(execute=True):
        response, took = _timed(lambda: api.post(f"/api/v1/orgs/acme/campaigns/{campaign.pk}/launch/"), api)
    assert response.status_code in (200, 202), response.content
    assert took < PROMPT
    with scopes_disabled():
        assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.LAUNCHING
        assert not ReviewItem.objects.filter(campaign=campaign).exists()

    settings.CLAIM_STALE_SECONDS = 60
    _age(Campaign, campaign.pk, updated_at=timezone.now() - dt.timedelta(seconds=61))
    with django_capture_on_commit_callbacks(execute=True):
        assert campaign_launches_sweep() == {"resent": 1, "failed": 0}
    with scopes_disabled():
        assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.ACTIVE
        assert ReviewItem.objects.filter(campaign=campaign).exists()


def test_an_export_with_the_broker_down_answers_at_once_and_the_sweep_builds_the_package_later(
    signing_key_in_environment, inventory, make_campaign, member, api_for, broker_down, settings,
    django_capture_on_commit_callbacks,
):
    campaign = make_campaign(scope={"applications": ["GitHub", "Salesforce"]}, reviewer_strategy="manager")
    with django_capture_on_commit_callbacks(execute=True):
        api_for(inventory.admin).post(f"/api/v1/orgs/acme/campaigns/{campaign.pk}/launch/")
    settings.EVIDENCE_ASYNC_THRESHOLD_ITEMS = 1
    auditor = api_for(member(Role.AUDITOR))
    with broker_down(), django_capture_on_commit_callbacks(execute=True):
        response, took = _timed(
            lambda: auditor.get(f"/api/v1/orgs/acme/campaigns/{campaign.pk}/export.zip"), auditor
        )
    assert response.status_code == 202, response.content
    assert took < PROMPT
    package_id = response.json()["id"]
    with scopes_disabled():
        assert EvidencePackage.objects.get(pk=package_id).status == EvidencePackageStatus.QUEUED

    settings.CLAIM_STALE_SECONDS = 60
    _age(EvidencePackage, package_id, claimed_at=timezone.now() - dt.timedelta(seconds=61))
    with django_capture_on_commit_callbacks(execute=True):
        assert evidence_packages_sweep() == {"resent": 1, "failed": 0}
    with scopes_disabled():
        package = EvidencePackage.objects.get(pk=package_id)
    assert package.status == EvidencePackageStatus.READY, package.error
    package.file.delete(save=False)


def test_a_queued_import_with_the_broker_down_answers_at_once_and_the_sweep_imports_it_later(
    org, member, api_for, broker_down, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_ASYNC_THRESHOLD_ROWS = 5
    rows = "".join(f"person{i}@acme.test,Person {i},Engineering,,human,active\n" for i in range(20))
    upload = SimpleUploadedFile("people.csv", ("email,name,department,manager_email,kind,status\n" + rows).encode())
    api = api_for(member(Role.ADMIN))
    with broker_down(), django_capture_on_commit_callbacks(execute=True):
        response, took = _timed(
            lambda: api.post(
                "/api/v1/orgs/acme/imports/", {"kind": "identities", "mode": "merge", "file": upload},
                format="multipart",
            ),
            api,
        )
    assert response.status_code == 202, response.content
    assert took < PROMPT
    run_id = response.json()["sync_run"]["id"]
    with scopes_disabled():
        assert SyncRun.objects.get(pk=run_id).status == SyncRunStatus.QUEUED

    settings.CLAIM_STALE_SECONDS = 60
    _age(SyncRun, run_id, started_at=timezone.now() - dt.timedelta(seconds=61))
    with django_capture_on_commit_callbacks(execute=True):
        assert sync_runs_sweep()["resent"] == 1
    with scopes_disabled():
        run = SyncRun.objects.get(pk=run_id)
    assert run.status == SyncRunStatus.SUCCEEDED, run.error
