"""Real Chromium: the column chooser of the review screen shows and hides optional columns (the server renders
only the chosen ones, and remembers the choice across reloads), at 1366x768 and as cards at 390x844; a click on
Approve decides the row in place."""

import pytest
from playwright.sync_api import expect

from tests.browser_support import VIEWPORTS, assert_accessible, assert_fits_viewport, login, screenshot
from thalian.permissions import Role

from .review_support import active_campaign, add_items, fresh

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_reviewer_shows_a_column_keeps_it_after_reload_and_approves_with_a_click(
    browser_page, live_server, member, org, viewport
):
    page = browser_page
    page.set_viewport_size(VIEWPORTS[viewport])
    reviewer = member(Role.REVIEWER)
    campaign = active_campaign(org, title="Q4 access review")
    first, second = add_items(campaign, reviewer, 2, identity_department="Sales", identity_manager_email="mia@corp.test")

    login(page, live_server, reviewer.user.email, "pw")
    page.goto(f"{live_server.url}/o/{org.slug}/campaigns/{campaign.pk}/items/")
    row = page.locator(f"#item-{first.pk}")
    expect(row.locator('[data-col="last_used"] time')).to_be_visible()
    expect(row.locator('[data-col="manager"]')).to_have_count(0)

    page.get_by_text("Columns", exact=True).click()
    manager = page.get_by_label("Show the column Manager")
    manager.check()
    # The table is rendered again with the column; the chooser stays open with the focus where it was.
    expect(row.locator('[data-col="manager"]')).to_have_text("mia@corp.test")
    if viewport == "phone":  # a card: each value says what it is
        label = row.locator('[data-col="manager"]').evaluate("td => getComputedStyle(td, '::before').content")
        assert label == '"Manager: "'
    expect(page.locator('th[data-col="manager"]')).to_have_count(1)
    expect(manager).to_be_checked()
    assert_fits_viewport(page)
    assert_accessible(page)
    screenshot(page, "review-columns")

    page.reload()
    expect(page.locator(f"#item-{first.pk} [data-col='manager']")).to_contain_text("mia@corp.test")
    page.get_by_text("Columns", exact=True).click()
    page.get_by_label("Show the column Manager").uncheck()
    page.get_by_label("Show the column Findings").uncheck()
    expect(page.locator(f"#item-{first.pk} [data-col]")).to_have_count(1)  # last used only
    expect(page.locator("th[data-col]")).to_have_count(1)

    # Approve with a click: the row comes back decided, the decision is recorded.
    page.locator(f"#item-{second.pk}").get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(f"#item-{second.pk} button.decide-approve")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(f"#item-{second.pk} [data-col]")).to_have_count(1)
    assert fresh(second).decision == "approve"
    assert fresh(first).decision == ""
