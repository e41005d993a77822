# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Real Chromium: an admin creates and launches a campaign with the wizard, watching the live preview."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from campaigns.models import Campaign, CampaignStatus
from tests.browser_support import assert_accessible, login, screenshot
from thalian.tenancy import scopes_disabled

from .lifecycle_fixtures import inventory  # noqa: F401

pytestmark = pytest.mark.browser


def test_admin_creates_and_launches_a_campaign_with_the_wizard(browser_page, live_server, inventory):
    page = browser_page
    login(page, live_server, inventory.admin.user.email, "pw")
    page.get_by_role("link", name="Campaigns").click()
    page.wait_for_url("**/o/acme/campaigns/")
    page.get_by_role("link", name="New campaign").click()
    page.wait_for_url("**/o/acme/campaigns/new/")
    assert_accessible(page)

    page.get_by_label("Title").fill("Q2 GitHub certification")
    items = page.locator('[data-preview="items"]')
    # The preview follows the scope as it changes, before anything is saved.
    page.get_by_label("Non-human identities only (service accounts, bots, AI agents)").check()
    items.filter(has_text="2").wait_for()
    assert page.locator('[data-preview="identities"]').inner_text() == "2"
    page.get_by_label("All identities").check()
    items.filter(has_text="8").wait_for()
    assert "Slack" in page.locator("#scope-preview").inner_text()
    assert "never loaded" in page.locator("#scope-preview").inner_text()
    page.get_by_label("Search applications").fill("git")
    expect(page.get_by_label("Salesforce", exact=True)).to_be_hidden()
    page.get_by_label("GitHub", exact=True).check()
    items.filter(has_text="4").wait_for()
    assert page.locator('[data-preview="applications"]').inner_text() == "1"
    assert "never loaded" not in page.locator("#scope-preview").inner_text()
    assert_accessible(page)

    page.get_by_role("button", name="Next").click()
    page.get_by_label("Fallback reviewer").select_option("fallback@acme.test")
    # The preview says how many items each reviewer gets and how many fall back.
    page.locator('[data-preview="fallback"]').filter(has_text="1 item falls back to fallback@acme.test").wait_for()
    assert "owner@acme.test" in page.locator("#scope-preview").inner_text()
    page.get_by_role("button", name="4. Review and launch").click()
    summary = page.locator("#wizard-summary")
    expect(summary).to_contain_text("Q2 GitHub certification")
    expect(summary).to_contain_text("fallback@acme.test")
    assert_accessible(page)
    screenshot(page, "wizard-review-step")
    with page.expect_navigation():
        page.get_by_role("button", name="Create and launch").click()
    page.locator('[data-progress="total"]').filter(has_text="4").wait_for()
    assert "Active" in page.locator("main").inner_text()
    assert "0 of 4 items decided" in page.locator("main").inner_text().replace("\n", " ")
    assert_accessible(page)
    with scopes_disabled():
        campaign = Campaign.objects.get(title="Q2 GitHub certification")
    assert campaign.status == CampaignStatus.ACTIVE and campaign.item_count == 4
