# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Real Chromium: a remediation owner confirms a manual removal from the remediation queue, the campaign
completes; an admin reads remediation progress and decision quality on the campaign page. Screenshots at
1366x768 and 390x844 go to test-artifacts/screenshots/ (git-ignored); axe on every page visited."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.utils import timezone

from campaigns.models import CampaignRemediationOwner, CampaignStatus, DecisionEvent
from tests.browser_support import assert_accessible, login
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .lifecycle_fixtures import inventory  # noqa: F401
from .review_support import active_campaign, add_items, fresh

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
SIZES = [(1366, 768), (390, 844)]


def screenshots(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}x{height}.png"), full_page=True)
    page.set_viewport_size(original)


def test_remediation_owner_confirms_a_manual_removal(browser_page, live_server, member, org):
    page = browser_page
    admin = member(Role.ADMIN)
    owner = member(Role.REVIEWER, email="it-ops@acme.test")
    reviewer = member(Role.REVIEWER, email="lead@acme.test")
    now = timezone.now()
    campaign = active_campaign(org, title="Q2 access review", status=CampaignStatus.REMEDIATING,
                               remediating_at=now, created_by=admin.user)
    [leaver] = add_items(campaign, reviewer, 1, identity_email="leaver@corp.test", identity_name="Lee Ver",
                         application_name="Legacy CRM", role="admin", decision="revoke",
                         decision_reason="Left the company", decided_by_email="lead@acme.test",
                         decided_at=now, signed_off_at=now, remediation_status="pending", is_privileged=True)
    kept = add_items(campaign, reviewer, 60, application_name="Legacy CRM", decision="approve",
                     decided_by_email="lead@acme.test", decided_at=now, signed_off_at=now)
    with scopes_disabled():
        CampaignRemediationOwner.objects.create(
            organization=org, campaign=campaign, application_name="Legacy CRM", owner=owner,
            owner_email="it-ops@acme.test", source="campaign")
        # The reviewer approved 60 items a second apart: the decision-quality section flags it.
        DecisionEvent.objects.bulk_create([
            DecisionEvent(organization=org, campaign=campaign, item=item, decision="approve", actor=reviewer.user,
                          actor_email=reviewer.user.email, actor_role="reviewer", kind="single",
                          created_at=now - dt.timedelta(minutes=5) + dt.timedelta(seconds=n))
            for n, item in enumerate(kept)
        ])

    login(page, live_server, owner.user.email, "pw")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Remediation").click()
    page.wait_for_url("**/o/acme/remediation/")
    row = page.get_by_role("row", name=re.compile("leaver@corp.test"))
    assert "Pending removal" in row.inner_text()
    assert_accessible(page)
    screenshots(page, "remediation-queue")

    row.get_by_role("link", name="Confirm removal of leaver@corp.test in Legacy CRM").click()
    page.wait_for_url(re.compile(r".*/confirm-removed/$"))
    assert page.get_by_role("heading", name="leaver@corp.test · Legacy CRM · admin").is_visible()
    assert_accessible(page)
    page.get_by_role("button", name="Confirm removed").click()
    # The comment is required: the browser's own check stops the empty form.
    assert fresh(leaver).remediation_status == "pending"
    page.get_by_label("How was the access removed?").fill("Account deleted in the Legacy CRM admin console")
    screenshots(page, "confirm-removed")
    page.get_by_role("button", name="Confirm removed").click()
    page.wait_for_url("**/o/acme/remediation/")
    page.get_by_text("Removal of leaver@corp.test from Legacy CRM (admin) confirmed.").wait_for()
    assert page.get_by_text("Every revoke of the campaign is now proven removed: it is completed.").is_visible()
    item = fresh(leaver)
    assert (item.remediation_status, item.removal_confirmed_by_email) == ("confirmed_removed", "it-ops@acme.test")
    with scopes_disabled():
        campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    assert AuditEvent.objects.filter(action="remediation_confirmed_removed", actor_email="it-ops@acme.test").exists()
    assert_accessible(page)

    # The admin sees the remediation progress and the flagged reviewer on the campaign page.
    page.context.clear_cookies()
    login(page, live_server, admin.user.email, "pw")
    page.goto(f"/o/acme/campaigns/{campaign.pk}/")
    progress = page.locator("#remediation-progress")
    assert "1 of 1 revoked items proven removed (100%)" in progress.inner_text()
    page.locator("#decision-quality").wait_for()
    assert page.get_by_role("row", name=re.compile("lead@acme.test")).get_by_text("Fast approval burst").is_visible()
    assert_accessible(page)
    screenshots(page, "campaign-remediation-and-decision-quality")


def test_wizard_names_remediation_owners_and_previews_them(browser_page, live_server, inventory, member):
    page = browser_page
    member(Role.REVIEWER, email="it-ops@acme.test")
    login(page, live_server, inventory.admin.user.email, "pw")
    page.goto("/o/acme/campaigns/new/")
    page.get_by_label("Title").fill("Q3 with remediation owners")
    page.get_by_label("GitHub", exact=True).check()
    page.get_by_label("Salesforce", exact=True).check()
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Fallback reviewer").select_option("fallback@acme.test")
    owners = page.locator("[data-remediation-owner]")
    page.locator('[data-remediation-owner="GitHub"]').filter(has_text="owner@acme.test").wait_for()
    # Salesforce's owner is not a member: the fallback reviewer removes its access unless someone is named.
    page.locator('[data-remediation-owner="Salesforce"]').filter(has_text="fallback@acme.test").wait_for()
    assert page.locator('[data-remediation-owner="Salesforce"]').inner_text() == "fallback@acme.test"
    page.get_by_label("Remediation owners").fill("Salesforce: it-ops@acme.test")
    page.locator('[data-remediation-owner="Salesforce"]').filter(has_text="it-ops@acme.test").wait_for()
    assert owners.count() == 2
    assert_accessible(page)
    screenshots(page, "wizard-remediation-owners")
    page.get_by_role("button", name="4. Review and launch").click()
    page.get_by_role("button", name="Save as draft").click()
    page.wait_for_url(re.compile(r".*/o/acme/campaigns/[0-9a-f-]{36}/$"))
    from campaigns.models import Campaign

    with scopes_disabled():
        campaign = Campaign.objects.get(title="Q3 with remediation owners")
    assert campaign.remediation_owners == {"Salesforce": "it-ops@acme.test"}
