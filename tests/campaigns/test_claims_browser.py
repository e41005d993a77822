# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Real Chromium: the retry and cancel actions of claimed work, by keyboard, axe-clean, at desktop and phone
widths (screenshots under test-artifacts/)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus
from entitlements.models import SyncRun
from evidence.models import EvidencePackage
from evidence.packages import evidence_package_create
from tests.browser_support import assert_accessible, login
from tests.factories import CampaignFactory, ReviewItemFactory
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from .lifecycle_fixtures import inventory, make_campaign  # noqa: F401

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "claims"
WIDTHS = {"desktop": (1366, 768), "phone": (390, 844)}


def _screenshots(page, name: str) -> None:
    """Look at the page at both widths: a full-page screenshot of each, axe-clean at desktop width and in the
    page's own content (#main) at phone width, where the shared page header is not this area's to fix."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
        assert_accessible(page, context=None if label == "desktop" else "#main")
    page.set_viewport_size({"width": 1366, "height": 768})


def _press(page, button) -> None:
    """Activate a button from the keyboard: focus it and press Enter."""
    button.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_a_launching_campaign_is_cancelled_from_its_page(browser_page, live_server, inventory, make_campaign):
    campaign = make_campaign(scope={"applications": ["GitHub"]}, reviewer_strategy="manager")
    with scope(inventory.org):  # launched; the second snapshot attempt is waiting for a worker
        Campaign.objects.filter(pk=campaign.pk).update(
            status=CampaignStatus.LAUNCHING, launched_at=timezone.now(), launch_attempts=2
        )
    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept())
    login(page, live_server, inventory.admin.user.email, "pw")
    page.goto(f"/o/acme/campaigns/{campaign.pk}/")
    assert "Attempt 2: an earlier attempt stopped without finishing." in page.locator("#launch-status").inner_text()
    _screenshots(page, "campaign-launching")

    page.get_by_label("Reason").fill("launched with the wrong scope")
    _press(page, page.get_by_role("button", name="Cancel campaign"))

    assert "by admin@acme.test: launched with the wrong scope" in page.locator("main").inner_text()
    with scopes_disabled():
        assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.CANCELLED


@pytest.fixture
def signing_key(settings):
    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()


def test_an_evidence_package_is_cancelled_then_retried_from_the_evidence_page(
    browser_page, live_server, org, member, signing_key, settings
):
    settings.EVIDENCE_ASYNC_THRESHOLD_ITEMS = 1
    auditor = member(Role.AUDITOR)
    campaign = CampaignFactory(organization=org, status=CampaignStatus.ACTIVE, title="Q4 access review")
    with scope(org):
        ReviewItemFactory.create_batch(3, organization=org, campaign=campaign)
        package = evidence_package_create(campaign=campaign, actor=auditor.user, stored=True)  # never sent
    page = browser_page
    login(page, live_server, auditor.user.email, "pw")
    page.goto("/o/acme/evidence/")
    _screenshots(page, "evidence-queued")

    # The list refreshes every 2 s while a package is in progress; keyboard focus stays on the button.
    cancel = page.get_by_role("button", name="Cancel the package of Q4 access review")
    cancel.focus()
    with page.expect_response(lambda r: r.url.endswith("/o/acme/evidence/") and r.request.method == "GET"):
        pass
    page.wait_for_timeout(200)
    assert page.evaluate("document.activeElement.id") == f"cancel-package-{package.pk}"
    _press(page, cancel)
    assert "Cancelled by auditor@acme.test." in page.locator("#packages").inner_text()
    _screenshots(page, "evidence-failed")

    _press(page, page.get_by_role("button", name="Retry the package of Q4 access review"))
    with scopes_disabled():
        newest = EvidencePackage.objects.filter(campaign=campaign).order_by("-created_at").first()
    assert newest.pk != package.pk and newest.status == "ready"  # built in process (no broker here)
    page.reload()
    assert page.get_by_role("link", name="Download").count() == 1
    newest.file.delete(save=False)


def test_a_stuck_import_is_retried_or_cancelled_from_its_run_page(browser_page, live_server, org, member, settings):
    admin = member(Role.ADMIN)
    upload = Path(settings.MEDIA_ROOT) / "imports" / "stuck.csv"
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_text("email,name,department,manager_email,kind,status\nann@acme.test,Ann,Eng,,human,active\n")
    with scope(org):
        run = SyncRun.objects.create(
            organization=org, kind="identities", file_name="people.csv", status="running", attempt=2,
            upload_path=str(upload), total_rows=1,
        )  # fmt: skip
    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept())
    login(page, live_server, admin.user.email, "pw")
    page.goto(f"/o/acme/inventory/imports/{run.pk}/")
    assert "attempt 2" in page.locator("#run-status").inner_text()
    _screenshots(page, "import-running")

    _press(page, page.get_by_role("button", name="Cancel"))

    assert "Cancelled by admin@acme.test; nothing was imported." in page.locator("#run-status").inner_text()
    assert not upload.exists()
    _screenshots(page, "import-cancelled")
