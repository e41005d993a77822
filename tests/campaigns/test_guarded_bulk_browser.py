"""Real Chromium: an analyst approves all in view; the confirm page states what is left out (revoke
recommendations by cause, their own access), they include the revoke recommendations on purpose, confirm, and
only what the page stated is approved. Screenshots at desktop and phone sizes; axe on every page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser_support import assert_accessible, login, screenshots
from thalian.permissions import Role

from .review_support import active_campaign, add_items, fresh

pytestmark = pytest.mark.browser

def test_guarded_approve_all_in_view_states_the_breakdown_and_includes_on_request(browser_page, live_server,
                                                                                  member, org):
    page = browser_page
    analyst = member(Role.SECURITY_ANALYST, email="sam@acme.test")
    reviewer = member(Role.REVIEWER)
    campaign = active_campaign(org, title="Q4 access review")
    fine = add_items(campaign, reviewer, 5)
    terminated = add_items(campaign, reviewer, 2, recommendation="revoke", is_terminated=True,
                           identity_status="terminated", recommendation_reason="Identity is terminated")
    dormant = add_items(campaign, reviewer, 3, recommendation="revoke", is_dormant=True,
                        recommendation_reason="Not used in the last 90 days")
    [own] = add_items(campaign, reviewer, 1, identity_email="SAM@acme.test", identity_name="Sam Analyst")

    login(page, live_server, analyst.user.email, "pw")
    page.goto(f"{live_server.url}/o/acme/campaigns/{campaign.pk}/items/")
    own_row = page.locator(f"#item-{own.pk}")
    expect(own_row).to_contain_text("Your own access")
    expect(own_row.get_by_role("button", name="Approve")).to_have_count(0)

    page.get_by_role("button", name="Approve all in view").click()
    page.wait_for_url(re.compile(r".*/items/bulk/confirm/.*"))
    breakdown = page.locator("#bulk-breakdown")
    expect(breakdown).to_contain_text("11 items match the filters")
    expect(breakdown).to_contain_text("5 recommended for revoke — terminated 2, dormant 3 — excluded")
    expect(breakdown).to_contain_text("1 item of your own access is excluded")
    expect(page.get_by_role("button", name="Approve 5 items")).to_be_visible()
    assert_accessible(page)
    for path in screenshots(page, "guarded-bulk-confirm-excluded"):
        assert path.stat().st_size > 0

    # Keyboard: the "Include them" link is reachable and followed with Enter.
    page.get_by_role("link", name="Include them").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*include_recommended_revoke=1.*"))
    expect(breakdown).to_contain_text("included")
    assert_accessible(page)
    screenshots(page, "guarded-bulk-confirm-included")
    page.get_by_label("Reason").fill("Reviewed with the team leads")
    page.get_by_role("button", name="Approve 10 items").click()
    page.wait_for_url(re.compile(r".*/items/$"))
    expect(page.get_by_text("Approve: 10 items decided.")).to_be_visible()
    expect(page.get_by_text("1 item of your own access")).to_be_visible()
    screenshots(page, "guarded-bulk-done")

    assert {fresh(i).decision for i in fine + terminated + dormant} == {"approve"}
    assert fresh(own).decision == ""
