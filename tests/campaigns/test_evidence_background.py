"""Background evidence builds on PostgreSQL with a real worker: large packages finish, verify, and never hang."""

from __future__ import annotations

import base64
import hashlib
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from campaigns import evidence
from campaigns.models import CampaignStatus, EvidencePackage, ReviewItem
from tests.conftest import wait_until
from tests.factories import CampaignFactory
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def signing_key_in_environment(monkeypatch, settings):
    key = Ed25519PrivateKey.generate()
    value = base64.b64encode(key.private_bytes_raw()).decode()
    monkeypatch.setenv("EVIDENCE_SIGNING_KEY", value)
    settings.EVIDENCE_SIGNING_KEY = value
    return key


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
