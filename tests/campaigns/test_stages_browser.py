# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Real Chromium: an admin creates a two-stage campaign with the wizard (application owners, then a named
analyst), and the review screen shows each item's stage with the earlier stage's decision."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from campaigns import decisions
from campaigns.models import Campaign, CampaignStage, CampaignStatus, ReviewItem
from tests.browser_support import assert_accessible, assert_fits_viewport, login, screenshots
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from .lifecycle_fixtures import inventory  # noqa: F401

pytestmark = pytest.mark.browser


def test_admin_creates_a_two_stage_campaign_with_the_wizard(browser_page, live_server, inventory, member):
    member(Role.SECURITY_ANALYST, email="analyst@acme.test")
    page = browser_page
    login(page, live_server, inventory.admin.user.email, "pw")
    page.goto(f"{live_server.url}/o/acme/campaigns/new/")
    page.get_by_label("Title").fill("Two-stage GitHub review")
    page.get_by_label("GitHub", exact=True).check()
    page.locator('[data-preview="items"]').filter(has_text="4").wait_for()
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Fallback reviewer", exact=True).select_option("fallback@acme.test")

    stage_two = page.locator('[data-stage-block="2"]')
    expect(stage_two).to_be_hidden()
    page.get_by_role("button", name="Add a stage").click()
    expect(stage_two).to_be_visible()
    expect(page.locator('[data-stage-block="1"]')).to_be_visible()
    expect(page.locator('[data-stage-block="3"]')).to_be_hidden()
    stage_two.get_by_label("Named members").check()
    stage_two.get_by_label("Members named for stage 2").fill("analyst@acme.test")
    stage_two.get_by_label("Fallback for stage 2").select_option("mia@acme.test")
    stage_two.get_by_label("Stage 2 length (days)").fill("5")
    assert_accessible(page)
    for path in screenshots(page, "wizard-stages"):
        assert path.stat().st_size > 0
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits_viewport(page)
    page.set_viewport_size({"width": 1366, "height": 768})

    page.get_by_role("button", name="4. Review and launch").click()
    summary = page.locator("#wizard-summary")
    expect(summary).to_contain_text("Stage 2")
    expect(summary).to_contain_text("analyst@acme.test")
    assert_accessible(page)
    with page.expect_navigation():
        page.get_by_role("button", name="Create and launch").click()
    page.locator('[data-progress="total"]').filter(has_text="4").wait_for()
    with scopes_disabled():
        campaign = Campaign.objects.get(title="Two-stage GitHub review")
        rows = list(CampaignStage.objects.filter(campaign=campaign).values_list(
            "number", "reviewer_strategy", "reviewers", "duration_days"))
    assert campaign.status == CampaignStatus.ACTIVE and campaign.stage_count == 2
    assert rows == [(1, "application_owner", {}, 7), (2, "members", {"*": ["analyst@acme.test"]}, 5)]
    expect(page.locator('[data-stage-row="2"]')).to_be_visible()
    assert_accessible(page)
    screenshots(page, "campaign-stages")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits_viewport(page)
    page.set_viewport_size({"width": 1366, "height": 768})

    # The owner approves their items and signs off: they move to the analyst at stage 2.
    with scope(inventory.org):
        for item in ReviewItem.objects.filter(campaign=campaign, reviewer=inventory.owner_member):
            decisions.review_item_decide(item=item, actor=inventory.owner_member, decision="approve",
                                         reason="still on the team")
        decisions.review_sign_off(campaign=campaign, actor=inventory.owner_member)
    page.goto(f"{live_server.url}/o/acme/campaigns/{campaign.pk}/items/?stage=2")
    rows = page.locator("tr.item-row")
    expect(rows).to_have_count(3)
    expect(rows.first.locator(".badge-stage")).to_have_text("Stage 2 of 2")
    expect(rows.first).to_contain_text("Stage 1: approved by owner@acme.test")
    expect(page.get_by_label("Stage", exact=True)).to_have_value("2")
    assert_accessible(page)
    screenshots(page, "review-stages")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits_viewport(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.locator("tr.item-row").first.locator(".cell-identity a").click()
    expect(page.locator("[data-decision-path]")).to_contain_text("after approval at stage 1 by owner@acme.test")
    expect(page.locator("[data-stage-decisions]")).to_contain_text("still on the team")
    assert_accessible(page)
    screenshots(page, "item-stages")
