"""Real Chromium: a reviewer names a delegate under My settings → Delegation and ends it, and reassigns items from
the review screen through the Reassign dialog (one row by mouse and by keyboard, checked rows), refusals shown in
the dialog; axe on each state, screenshots at 1366x768 and 390x844."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from campaigns.models import Delegation
from tests.browser_support import assert_accessible, assert_fits_viewport, login, screenshots
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .review_support import active_campaign, add_items, fresh

pytestmark = pytest.mark.browser


def test_reviewer_delegates_from_my_settings_and_ends_it(browser_page, live_server, member, org):
    page = browser_page
    rita = member(Role.REVIEWER, email="rita@acme.test")
    member(Role.REVIEWER, email="sam@acme.test")
    member(Role.VIEWER, email="viewer@acme.test")
    campaign = active_campaign(org, title="Q2 access review")
    items = add_items(campaign, rita, 3)

    login(page, live_server, rita.user.email, "pw")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Delegation").click()
    page.wait_for_url("**/o/acme/settings/my-delegation/")
    expect(page.get_by_text("You have not delegated your reviews.")).to_be_visible()
    assert_accessible(page)

    # A delegate who may not review is refused, naming the problem; nothing is saved.
    page.get_by_label("Delegate (e-mail of a member who may review)").fill("viewer@acme.test")
    page.get_by_role("button", name="Delegate my reviews").click()
    expect(page.get_by_role("alert")).to_contain_text("viewer@acme.test has the role Viewer, which may not review")
    assert_accessible(page)
    screenshots(page, "delegation-refused")

    page.get_by_label("Delegate (e-mail of a member who may review)").fill("sam@acme.test")
    page.get_by_label("Also move my open items in active campaigns now").check()
    page.get_by_role("button", name="Delegate my reviews").click()
    expect(page.get_by_role("status")).to_contain_text("sam@acme.test reviews in your place from")
    expect(page.get_by_role("status")).to_contain_text("3 open items moved to them now")
    row = page.get_by_role("row", name=re.compile("sam@acme.test"))
    expect(row).to_contain_text("In force")
    expect(row).to_contain_text("until ended")
    assert {fresh(i).reviewer_email for i in items} == {"sam@acme.test"}
    assert_accessible(page)
    paths = screenshots(page, "delegation-page")
    assert all(p.exists() for p in paths)
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits_viewport(page)
    page.set_viewport_size({"width": 1366, "height": 768})

    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="End the delegation to sam@acme.test").click()
    expect(page.get_by_role("status")).to_contain_text("The delegation is ended")
    expect(page.get_by_text("You have not delegated your reviews.")).to_be_visible()
    with scopes_disabled():
        assert not Delegation.objects.exists()


def test_reviewer_reassigns_rows_through_the_dialog(browser_page, live_server, member, org):
    page = browser_page
    rita = member(Role.REVIEWER, email="rita@acme.test")
    sam = member(Role.REVIEWER, email="sam@acme.test")
    member(Role.VIEWER, email="viewer@acme.test")
    campaign = active_campaign(org, title="Q2 access review")
    first, second, third, fourth = add_items(campaign, rita, 4, application_name="GitHub")

    login(page, live_server, rita.user.email, "pw")
    page.goto(f"{live_server.url}/o/acme/campaigns/{campaign.pk}/items/")
    rows = page.locator("#items-table tbody tr[id^=item-]")
    expect(rows).to_have_count(4)
    reassign = page.locator(f"#item-{first.pk}").get_by_role("button", name=re.compile("^Reassign"))
    expect(reassign).to_be_visible()  # in view at 1366 px without scrolling sideways
    box = reassign.bounding_box()
    assert box and box["x"] + box["width"] <= 1366
    screenshots(page, "review-screen-reassign")

    reassign.click()
    dialog = page.get_by_role("dialog", name="Reassign")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"{first.identity_email} in GitHub")
    expect(dialog.get_by_label("New reviewer (e-mail of a member who may review)")).to_be_focused()
    assert_accessible(page)
    screenshots(page, "reassign-dialog")

    # A refusal is shown inside the dialog and changes nothing.
    dialog.get_by_label("New reviewer (e-mail of a member who may review)").fill("viewer@acme.test")
    dialog.get_by_label("Reason (required, kept in the item's history)").fill("On leave next week")
    dialog.get_by_role("button", name="Reassign", exact=True).click()
    expect(dialog.get_by_role("alert")).to_contain_text("viewer@acme.test has the role Viewer, which may not review")
    assert fresh(first).reviewer_id == rita.pk
    assert_accessible(page)
    screenshots(page, "reassign-dialog-refused")

    dialog.get_by_label("New reviewer (e-mail of a member who may review)").fill("sam@acme.test")
    dialog.get_by_role("button", name="Reassign", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text("1 item reassigned to sam@acme.test.")
    expect(rows).to_have_count(3)
    assert fresh(first).reviewer_id == sam.pk

    # Keyboard only: j to the next row, d opens the dialog, Escape closes it and gives the focus back.
    page.locator(f"#item-{second.pk}").focus()
    page.keyboard.press("d")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"{second.identity_email} in GitHub")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.keyboard.press("d")
    page.keyboard.type("sam@acme.test")
    page.keyboard.press("Tab")
    page.keyboard.type("Sam covers GitHub")
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Reassign", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(rows).to_have_count(2)
    assert fresh(second).reviewer_id == sam.pk

    # The checked rows, from the bulk bar.
    page.locator(f"#item-{third.pk}").get_by_role("checkbox").check()
    page.locator(f"#item-{fourth.pk}").get_by_role("checkbox").check()
    page.get_by_role("button", name="Reassign selected").click()
    expect(dialog).to_contain_text("2 selected item(s)")
    dialog.get_by_label("New reviewer (e-mail of a member who may review)").fill("sam@acme.test")
    dialog.get_by_label("Reason (required, kept in the item's history)").fill("Handing over GitHub")
    dialog.get_by_role("button", name="Reassign", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text("2 items reassigned to sam@acme.test.")
    expect(rows).to_have_count(0)
    assert {fresh(third).reviewer_id, fresh(fourth).reviewer_id} == {sam.pk}
    assert_accessible(page)


def test_review_screen_with_reassign_fits_a_phone(browser_page, live_server, member, org):
    page = browser_page
    rita = member(Role.REVIEWER, email="rita@acme.test")
    member(Role.REVIEWER, email="sam@acme.test")
    campaign = active_campaign(org, title="Q2 access review")
    [item, *_] = add_items(campaign, rita, 3)
    login(page, live_server, rita.user.email, "pw")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/o/acme/campaigns/{campaign.pk}/items/")
    expect(page.locator(f"#item-{item.pk}").get_by_role("button", name=re.compile("^Reassign"))).to_be_visible()
    assert_fits_viewport(page)
    page.locator(f"#item-{item.pk}").get_by_role("button", name=re.compile("^Reassign")).click()
    expect(page.get_by_role("dialog", name="Reassign")).to_be_visible()
    assert_fits_viewport(page)
    assert_accessible(page)


def test_guest_delegates_from_the_portal(browser_page, live_server, member, org):
    from campaigns.guests import guest_link_issue
    from campaigns.models import GuestReviewer

    page = browser_page
    sam = member(Role.REVIEWER, email="sam@acme.test")
    campaign = active_campaign(org, title="Q2 access review")
    with scopes_disabled():
        guest = GuestReviewer.objects.create(organization=org, campaign=campaign, email="gail@partner.test")
    items = add_items(campaign, None, 2)
    with scopes_disabled():
        for item in items:
            type(item).objects.filter(pk=item.pk).update(guest=guest, reviewer_email=guest.email)
        link = guest_link_issue(guest=guest)
    page.goto(live_server.url + "/" + link.split("/", 3)[3])
    expect(page).to_have_title("Your review · Q2 access review · Thalian")
    expect(page.get_by_role("heading", name="Ask someone else to review")).to_be_visible()
    page.get_by_label("E-mail of your delegate").fill("gail@partner.test")
    page.get_by_role("button", name="Delegate my open items").click()
    expect(page.get_by_role("alert")).to_contain_text("you cannot delegate to yourself")
    assert_accessible(page)
    screenshots(page, "guest-delegate-refused")
    page.get_by_label("E-mail of your delegate").fill("sam@acme.test")
    page.get_by_label("Reason (optional)").fill("On leave")
    page.get_by_role("button", name="Delegate my open items").click()
    expect(page.get_by_role("status")).to_contain_text("Your open items now go to sam@acme.test")
    assert {fresh(i).reviewer_id for i in items} == {sam.pk}
    assert {fresh(i).delegated_from_email for i in items} == {"gail@partner.test"}
    assert_accessible(page)
    screenshots(page, "guest-delegated")
