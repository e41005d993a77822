"""Evidence packages nobody builds any more: the sweep, and cancel and retry on the page and through the API."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns.models import CampaignStatus
from evidence.models import EvidencePackage, EvidencePackageStatus
from evidence.packages import evidence_package_request, evidence_packages_sweep
from tests.factories import CampaignFactory, ReviewItemFactory
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

pytestmark = pytest.mark.django_db


@pytest.fixture
def package(org, member, settings):
    """A background package whose build message was lost (queued, never built)."""
    settings.EVIDENCE_ASYNC_THRESHOLD_ITEMS = 1
    campaign = CampaignFactory(organization=org, status=CampaignStatus.ACTIVE)
    with scope(org):
        ReviewItemFactory.create_batch(2, organization=org, campaign=campaign)
        return evidence_package_request(campaign=campaign, actor=member(Role.AUDITOR).user)


def _age(package, seconds: int, **changes) -> None:
    with scopes_disabled():
        EvidencePackage.objects.filter(pk=package.pk).update(
            claimed_at=timezone.now() - dt.timedelta(seconds=seconds), **changes
        )


def _reload(package) -> EvidencePackage:
    with scopes_disabled():
        return EvidencePackage.objects.get(pk=package.pk)


def test_a_lost_build_is_sent_again_once_stale_and_then_fails_after_the_last_attempt(package, settings):
    settings.CLAIM_STALE_SECONDS = 60
    settings.CLAIM_MAX_ATTEMPTS = 2
    assert package.attempts == 1 and package.status == EvidencePackageStatus.QUEUED
    assert evidence_packages_sweep() == {"resent": 0, "failed": 0}

    _age(package, 61)
    assert evidence_packages_sweep() == {"resent": 1, "failed": 0}
    resent = _reload(package)
    assert (resent.status, resent.attempts) == (EvidencePackageStatus.QUEUED, 2)
    assert "attempt 2" in resent.progress_label

    _age(package, 61, status=EvidencePackageStatus.BUILDING)
    assert evidence_packages_sweep() == {"resent": 0, "failed": 1}
    failed = _reload(package)
    assert failed.status == EvidencePackageStatus.FAILED and "after 2 attempt(s)" in failed.error


def test_an_abandoned_build_does_not_block_a_new_export_of_the_campaign(package, member, settings):
    settings.CLAIM_STALE_SECONDS = 60
    actor = member(Role.AUDITOR).user
    with scope(package.organization):
        assert evidence_package_request(campaign=package.campaign, actor=actor).pk == package.pk  # still fresh
        _age(package, 61, status=EvidencePackageStatus.BUILDING)
        fresh = evidence_package_request(campaign=package.campaign, actor=actor)

    assert fresh.pk != package.pk and fresh.status == EvidencePackageStatus.QUEUED
    old = _reload(package)
    assert old.status == EvidencePackageStatus.FAILED and "new package was requested" in old.error


def test_an_interrupted_streamed_download_is_marked_failed(org, member, settings):
    settings.CLAIM_STALE_SECONDS = 60
    campaign = CampaignFactory(organization=org, status=CampaignStatus.ACTIVE)
    with scope(org):
        streamed = EvidencePackage.objects.create(
            organization=org, campaign=campaign, stored=False, file_name="x.zip", generated_by_email="a@acme.test",
            created_at=timezone.now() - dt.timedelta(minutes=5),
        )  # fmt: skip

    assert evidence_packages_sweep() == {"resent": 0, "failed": 1}
    assert _reload(streamed).error == "The download was interrupted."


def test_cancel_and_retry_in_the_browser(package, member, client_for):
    auditor = client_for(member(Role.AUDITOR))
    page = auditor.get("/o/acme/evidence/").content.decode()
    assert f"/o/acme/evidence/packages/{package.pk}/cancel" in page

    response = auditor.post(f"/o/acme/evidence/packages/{package.pk}/cancel", follow=True)
    assert "The evidence package was cancelled." in response.content.decode()
    assert _reload(package).status == EvidencePackageStatus.FAILED
    assert "Cancelled by auditor@acme.test." in response.content.decode()

    response = auditor.post(f"/o/acme/evidence/packages/{package.pk}/retry", follow=True)
    assert "A new evidence package is being built in the background." in response.content.decode()
    with scopes_disabled():
        assert EvidencePackage.objects.filter(campaign=package.campaign, status="queued").count() == 1

    again = auditor.post(f"/o/acme/evidence/packages/{package.pk}/cancel", follow=True)
    assert "Only a queued or building package can be cancelled." in again.content.decode()


def test_cancel_and_retry_through_the_api(package, member, api_for):
    api = api_for(member(Role.AUDITOR))
    base = f"/api/v1/orgs/acme/evidence/packages/{package.pk}"

    assert api.post(f"{base}/retry/").status_code == 409
    cancelled = api.post(f"{base}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "failed"
    assert api.post(f"{base}/cancel/").json() == {"detail": "only a queued or building package can be cancelled"}
    retried = api.post(f"{base}/retry/")
    assert retried.status_code == 202 and retried.json()["status"] == "queued"


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_outsiders_get_404_and_roles_without_evidence_rights_403(package, member, outsider, api_for, client_for, action):
    assert api_for(outsider).post(f"/api/v1/orgs/globex/evidence/packages/{package.pk}/{action}/").status_code == 404
    assert client_for(outsider).post(f"/o/globex/evidence/packages/{package.pk}/{action}").status_code == 404
    viewer = member(Role.VIEWER)
    assert api_for(viewer).post(f"/api/v1/orgs/acme/evidence/packages/{package.pk}/{action}/").status_code == 403
    assert client_for(viewer).post(f"/o/acme/evidence/packages/{package.pk}/{action}").status_code == 403
    assert _reload(package).status == EvidencePackageStatus.QUEUED


def test_a_slow_download_the_sweep_gave_up_on_is_recorded_once_its_last_byte_is_out(org, member, settings):
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from evidence.packages import evidence_package_create, evidence_package_stream

    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
    settings.CLAIM_STALE_SECONDS = 60
    campaign = CampaignFactory(organization=org, status=CampaignStatus.ACTIVE)
    with scope(org):
        ReviewItemFactory.create_batch(2, organization=org, campaign=campaign)
        streamed = evidence_package_create(campaign=campaign, actor=member(Role.AUDITOR).user, stored=False)
        chunks = evidence_package_stream(package=streamed, campaign=campaign)
    first = next(chunks)
    with scopes_disabled():
        EvidencePackage.objects.filter(pk=streamed.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5))
    assert evidence_packages_sweep()["failed"] == 1

    body = first + b"".join(chunks)

    done = _reload(streamed)
    assert done.status == EvidencePackageStatus.READY and done.size == len(body)
