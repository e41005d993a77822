"""Real Chromium at 1366x768 and 390x844: a reviewer starts from Home, finds the first row's Approve control on
screen without sideways scrolling, decides three items with the keyboard alone (a, r and e, with the reason
typed into the inline dialog), signs off with the keyboard and lands on the done state with a link to their
other open review."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser_support import VIEWPORTS, assert_accessible, assert_fits_viewport, login, screenshot
from thalian.permissions import Role

from .review_support import active_campaign, add_items, fresh

pytestmark = pytest.mark.browser


def focused_row_id(page) -> str:
    return page.evaluate("() => document.activeElement && document.activeElement.id")


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_reviewer_decides_three_items_with_the_keyboard_and_signs_off(browser_page, live_server, member, org,
                                                                      viewport):
    page = browser_page
    page.set_viewport_size(VIEWPORTS[viewport])
    reviewer = member(Role.REVIEWER)
    campaign = active_campaign(org, title="Q4 access review")
    first, second, third = (
        add_items(campaign, reviewer, 1, identity_name="Ada Okafor", identity_email="ada@corp.test",
                  application_name="AWS Production", role="AdministratorAccess")[0],
        add_items(campaign, reviewer, 1, identity_name="Ben Castro", identity_email="ben@corp.test",
                  application_name="Salesforce", role="System Administrator", recommendation="revoke",
                  recommendation_reason="Unused for 143 days")[0],
        add_items(campaign, reviewer, 1, identity_name="Chloe Nakamura", identity_email="chloe@corp.test",
                  application_name="GitHub", role="Maintainer")[0],
    )
    other = active_campaign(org, title="Privileged access, December")
    add_items(other, reviewer, 2)

    login(page, live_server, reviewer.user.email, "pw")
    page.goto(f"{live_server.url}/o/{org.slug}/")
    start = page.get_by_role("link", name=re.compile("Start reviewing Q4 access review"))
    start.click()
    page.wait_for_url(re.compile(r".*/items/\?reviewer=me&decision=pending"))
    page.locator("#review-bar .bar-count").wait_for()
    assert_fits_viewport(page)

    # The first row's Approve is on screen without scrolling sideways.
    approve = page.locator(f"#item-{first.pk}").get_by_role("button", name="Approve", exact=True)
    box = approve.bounding_box()
    size = page.viewport_size
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= size["width"]
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"], f"Approve at {box} is below the fold"
    expect(page.locator("#review-bar")).to_contain_text("0 of 3 decided")
    assert_accessible(page)
    screenshot(page, "review-keyboard-start")

    # a: approve the current (first undecided) row; focus moves to the next undecided row.
    page.keyboard.press("a")
    expect(page.locator(f"#item-{first.pk} button.decide-approve")).to_have_attribute("aria-pressed", "true")
    page.wait_for_function(f"() => document.activeElement && document.activeElement.id === 'item-{second.pk}'")

    # r: revoke asks for the reason in a small dialog; Tab to the confirm button, Enter.
    page.keyboard.press("r")
    dialog = page.get_by_role("dialog", name="Revoke")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Exception expires on")).to_be_hidden()
    page.keyboard.type("Left the sales team in October")
    assert_accessible(page)
    screenshot(page, "review-keyboard-dialog")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator(f"#item-{second.pk} button.decide-revoke")).to_have_attribute("aria-pressed", "true")
    page.wait_for_function(f"() => document.activeElement && document.activeElement.id === 'item-{third.pk}'")

    # e: exception asks for the reason and offers the expiry date.
    page.keyboard.press("e")
    dialog = page.get_by_role("dialog", name="Exception")
    expect(dialog.get_by_label("Exception expires on")).to_be_visible()
    page.keyboard.type("Needed for the year-end migration")
    page.keyboard.press("Tab")  # the expiry date
    page.keyboard.press("Tab")  # confirm
    page.keyboard.press("Enter")
    expect(page.locator(f"#item-{third.pk} button.decide-exception")).to_have_attribute("aria-pressed", "true")

    assert [fresh(i).decision for i in (first, second, third)] == ["approve", "revoke", "exception"]
    assert fresh(second).decision_reason == "Left the sales team in October"

    # Everything is decided: the bar offers sign-off and focus goes to it.
    expect(page.locator("#review-bar")).to_contain_text("3 of 3 decided")
    sign_off = page.get_by_role("button", name="Sign off my review")
    expect(sign_off).to_be_focused()
    assert_accessible(page)
    page.once("dialog", lambda d: d.accept())
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("#review-bar")).to_contain_text("You’re done")
    assert all(fresh(i).signed_off_at for i in (first, second, third))
    next_link = page.get_by_role("link", name=re.compile("Next review: Privileged access, December"))
    expect(next_link).to_be_visible()
    expect(page.get_by_role("button", name="Approve all")).to_have_count(0)
    assert_fits_viewport(page)
    assert_accessible(page)
    screenshot(page, "review-done")
