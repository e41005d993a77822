"""Real Chromium: a reviewer filters to one department, approves all in view, revokes one item with a reason
and signs off; axe on every page visited."""

import re

import pytest
from playwright.sync_api import expect

from campaigns.models import CampaignStatus
from tests.browser_support import assert_accessible, login
from thalian.models import AuditEvent
from thalian.permissions import Role

from .review_support import active_campaign, add_items, assert_chain_intact, fresh

pytestmark = pytest.mark.browser


def test_reviewer_approves_a_department_revokes_one_item_and_signs_off(browser_page, live_server, member, org):
    page = browser_page
    reviewer = member(Role.REVIEWER)
    other = member(Role.REVIEWER, email="someone.else@acme.test")
    campaign = active_campaign(org, title="Q4 access review")
    sales = add_items(campaign, reviewer, 4, identity_department="Sales", application_name="Salesforce")
    [leaver] = add_items(
        campaign, reviewer, 1, identity_department="Engineering", identity_email="leaver@corp.test",
        identity_name="Lee Ver", identity_status="terminated", is_terminated=True, recommendation="revoke",
        application_name="GitHub",
    )
    [not_mine] = add_items(campaign, other, 1, identity_department="Sales")

    login(page, live_server, reviewer.user.email, "pw")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My reviews").click()
    page.wait_for_url("**/o/acme/reviews/")
    row = page.get_by_role("row", name=re.compile("Q4 access review"))
    assert "5 of 5" in row.inner_text()
    assert_accessible(page)

    row.get_by_role("link", name="Q4 access review").click()
    page.wait_for_url(re.compile(r".*/items/.*"))
    rows = page.locator("#items-table tbody tr[id^=item-]")
    expect(rows).to_have_count(5)
    assert page.get_by_text("Past user", exact=True).is_visible()
    expect(page.get_by_role("button", name="Sign off my review")).to_be_disabled()
    assert_accessible(page)

    # Filter to one department: the table is replaced in place (htmx) and the URL follows.
    page.get_by_label("Department", exact=True).select_option("Sales")
    page.wait_for_url(re.compile(r".*department=Sales.*"))
    expect(rows).to_have_count(4)

    page.get_by_role("button", name="Approve all").click()
    page.wait_for_url(re.compile(r".*/items/bulk/confirm/.*"))
    assert page.get_by_text("Approve 4 items?").is_visible()
    assert_accessible(page)
    page.get_by_role("button", name="Approve 4 items").click()
    page.wait_for_url(re.compile(r".*/items/\?department=Sales$"))
    assert page.get_by_text("Approve: 4 items decided.").is_visible()
    assert {fresh(i).decision for i in sales} == {"approve"}
    assert fresh(leaver).decision == "" and fresh(not_mine).decision == ""

    # Back to everything, revoke the leaver's access with a reason, right in the table.
    page.get_by_role("link", name="Clear").click()
    expect(rows).to_have_count(5)
    leaver_row = page.locator(f"#item-{leaver.pk}")
    leaver_row.get_by_role("button", name="Revoke", exact=True).click()
    dialog = page.get_by_role("dialog", name="Revoke")
    expect(dialog).to_contain_text("leaver@corp.test in GitHub")
    assert_accessible(page)
    dialog.get_by_label("Reason").fill("Left the company in May")
    dialog.get_by_role("button", name="Revoke", exact=True).click()
    expect(page.locator(f"#item-{leaver.pk}").get_by_role("button", name="Revoke", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator(f"#item-{leaver.pk}")).to_contain_text("Left the company in May")
    assert fresh(leaver).decision_reason == "Left the company in May"

    # The progress panel reloads after the decision and lets the reviewer sign off.
    sign_off = page.get_by_role("button", name="Sign off my review")
    expect(sign_off).to_be_enabled()
    assert_accessible(page)
    page.once("dialog", lambda dialog: dialog.accept())
    sign_off.click()
    page.get_by_text("Signed off: your 5 decisions in Q4 access review are now locked.").wait_for()
    assert all(fresh(i).signed_off_at for i in [*sales, leaver])
    assert fresh(not_mine).signed_off_at is None
    assert page.locator(f"#item-{leaver.pk}").get_by_text("Locked").is_visible()

    # The detail page shows the frozen snapshot and the history, decisions locked.
    page.locator(f"#item-{leaver.pk}").get_by_role("link", name="Lee Ver").click()
    page.wait_for_url(re.compile(rf".*/items/{leaver.pk}/.*"))
    assert page.get_by_text("Left the company in May").first.is_visible()
    assert page.get_by_text("The reviewer signed off: this decision is locked.").is_visible()
    assert_accessible(page)

    assert AuditEvent.objects.filter(action="campaign_bulk_decision", details__count=4).exists()
    assert AuditEvent.objects.filter(action="campaign_signed_off").exists()
    assert_chain_intact(campaign)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE  # another reviewer still has an undecided item
