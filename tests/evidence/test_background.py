"""Background evidence builds on PostgreSQL with a real worker: large packages finish, verify, and never hang."""
# ruff: noqa: F811 - the signing key fixture imported from test_exports is requested by name

from __future__ import annotations

import hashlib
import time
import zipfile

import pytest

from campaigns.models import CampaignStatus, ReviewItem
from evidence import formats as evidence
from evidence.models import EvidencePackage
from evidence.packages import evidence_packages_sweep
from tests.claims_support import held_lock, wait_for_lock_waiter
from tests.conftest import wait_until
from tests.factories import CampaignFactory
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .test_exports import signing_key_in_environment  # noqa: F401 - a fixture, used by name

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def _campaign_with_items(org, count: int):
    campaign = CampaignFactory(organization=org, status=CampaignStatus.ACTIVE)
    with scopes_disabled():
        ReviewItem.objects.bulk_create(
            (
                ReviewItem(
                    organization=org, campaign=campaign, identity_email=f"person{n:05d}@corp.example",
                    identity_name=f"Person number {n}", identity_kind="human", identity_status="active",
                    identity_department="Engineering", application_name=f"Application {n % 4}",
                    role=f"role-with-a-longer-name-{n % 7}", recommendation="approve",
                )
                for n in range(count)
            ),
            batch_size=2000,
        )  # fmt: skip
    return campaign


def test_background_zip_above_the_threshold_builds_on_postgresql_and_verifies(
    signing_key_in_environment, celery_worker_factory, org, member, api_for, tmp_path, monkeypatch, settings
):
    """Items CSVs far beyond one 64 KiB chunk: the build reports progress while COPY streams and completes."""
    monkeypatch.setenv("EVIDENCE_ASYNC_THRESHOLD_ITEMS", "100")
    settings.EVIDENCE_ASYNC_THRESHOLD_ITEMS = 100
    campaign = _campaign_with_items(org, 3000)
    celery_worker_factory()
    api = api_for(member(Role.AUDITOR))
    response = api.get(f"/api/v1/orgs/acme/campaigns/{campaign.pk}/export.zip")
    assert response.status_code == 202, response.content
    status_url = response.json()["status_url"]
    detail = wait_until(lambda: (d := api.get(status_url).json())["status"] in ("ready", "failed") and d, 90)
    assert detail["status"] == "ready", detail["error"]
    assert detail["item_count"] == 3000
    path = tmp_path / "package.zip"
    download = api.get(detail["download_url"])
    path.write_bytes(b"".join(download.streaming_content) if download.streaming else download.content)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == detail["sha256"]
    assert evidence.verify_package(path, evidence.public_key_pem(signing_key_in_environment)) == []
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("items.csv").file_size > 4 * evidence.CSV_CHUNK_SIZE
    with scopes_disabled():
        EvidencePackage.objects.get(pk=detail["id"]).file.delete(save=False)


def _request_package(api, campaign) -> dict:
    response = api.get(f"/api/v1/orgs/acme/campaigns/{campaign.pk}/export.zip")
    assert response.status_code == 202, response.content
    return response.json()


def _package(package_id) -> EvidencePackage:
    with scopes_disabled():
        return EvidencePackage.objects.get(pk=package_id)


def test_a_worker_killed_mid_zip_is_recovered_by_the_sweep_and_the_package_verifies(
    signing_key_in_environment, celery_worker_factory, org, member, api_for, tmp_path, settings
):
    settings.EVIDENCE_ASYNC_THRESHOLD_ITEMS = 10
    settings.CLAIM_STALE_SECONDS = 1
    campaign = _campaign_with_items(org, 200)
    api = api_for(member(Role.AUDITOR))
    package_id = _request_package(api, campaign)["id"]  # queued; the message waits in Redis
    # Readers of the review items wait behind this lock: the worker claims the package, then stops mid-build.
    with held_lock("LOCK TABLE campaigns_reviewitem IN ACCESS EXCLUSIVE MODE"):
        celery_worker_factory()
        wait_for_lock_waiter()
        assert _package(package_id).status == "building"
        assert evidence_packages_sweep() == {"resent": 0, "failed": 0}  # a live worker is never taken over
        celery_worker_factory.kill()
    time.sleep(1.1)
    assert _package(package_id).status == "building"  # left behind by the killed worker

    assert evidence_packages_sweep() == {"resent": 1, "failed": 0}
    celery_worker_factory()
    detail = wait_until(lambda: (p := _package(package_id)).status in ("ready", "failed") and p, 60)
    assert detail.status == "ready", detail.error
    assert detail.attempts == 2 and detail.item_count == 200
    path = tmp_path / "package.zip"
    download = api.get(f"/api/v1/orgs/acme/evidence/packages/{package_id}/download")
    path.write_bytes(b"".join(download.streaming_content))
    assert evidence.verify_package(path, evidence.public_key_pem(signing_key_in_environment)) == []
    with scopes_disabled():
        EvidencePackage.objects.get(pk=package_id).file.delete(save=False)


def test_a_worker_killed_mid_zip_on_the_last_attempt_fails_visibly_and_does_not_block_the_next_export(
    signing_key_in_environment, celery_worker_factory, org, member, api_for, client_for, settings
):
    settings.EVIDENCE_ASYNC_THRESHOLD_ITEMS = 10
    settings.CLAIM_STALE_SECONDS = 1
    settings.CLAIM_MAX_ATTEMPTS = 1
    campaign = _campaign_with_items(org, 50)
    auditor = member(Role.AUDITOR)
    api = api_for(auditor)
    package_id = _request_package(api, campaign)["id"]
    with held_lock("LOCK TABLE campaigns_reviewitem IN ACCESS EXCLUSIVE MODE"):
        celery_worker_factory()
        wait_for_lock_waiter()
        celery_worker_factory.kill()
    time.sleep(1.1)

    assert evidence_packages_sweep() == {"resent": 0, "failed": 1}
    failed = _package(package_id)
    assert failed.status == "failed" and "did not finish after 1 attempt(s)" in failed.error
    page = client_for(auditor).get("/o/acme/evidence/").content.decode()
    assert "did not finish after 1 attempt(s)" in page and "Retry the package of" in page

    celery_worker_factory()
    retried = api.post(f"/api/v1/orgs/acme/evidence/packages/{package_id}/retry/")
    assert retried.status_code == 202, retried.content
    new_id = retried.json()["id"]
    assert new_id != package_id
    done = wait_until(lambda: (p := _package(new_id)).status in ("ready", "failed") and p, 60)
    assert done.status == "ready", done.error
    with scopes_disabled():
        done.file.delete(save=False)
