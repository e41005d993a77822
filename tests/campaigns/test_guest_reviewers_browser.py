# ruff: noqa: F811 - fixtures imported from other modules are requested by name
"""Real Chromium: a guest reviewer (a manager who is not a member) opens the link e-mailed to them through a real
SMTP server, decides one item, bulk-revokes the other and signs off; axe and screenshots on the portal."""

import pytest
from playwright.sync_api import expect

from campaigns.models import ReviewItem
from tests.browser_support import assert_accessible, screenshots
from thalian.tenancy import scopes_disabled

from ..notifications.conftest import mailbox  # noqa: F401
from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401
from .test_guest_reviewers import guest_campaign, guests_on, link_path  # noqa: F401

pytestmark = pytest.mark.browser


def test_guest_reviews_through_the_emailed_link(browser_page, live_server, guests_on, guest_campaign, mailbox):
    page = browser_page
    path = link_path(mailbox.to("ann@acme.test")[0])
    page.goto(path)
    expect(page.get_by_role("heading", name="Q1 access review: your review")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(2)
    assert_accessible(page)
    screenshots(page, "guest-review")

    page.get_by_label("Decision for ci-bot@acme.test").select_option("approve")
    page.get_by_label("Reason for ci-bot@acme.test").fill("Deploys production")
    page.locator("#item-" + str(_item_id(guest_campaign, "ci-bot@acme.test")) + " button").click()
    expect(page.get_by_text("Decision saved.")).to_be_visible()
    expect(page.get_by_text("1 of 2")).to_be_visible()

    page.get_by_label("Select agent@acme.test Slack bot").check()
    page.get_by_label("Decision for the selected items").select_option("revoke")
    page.get_by_label("Reason", exact=True).fill("No longer used")
    page.get_by_role("button", name="Apply to selected").click()
    expect(page.get_by_text("2 of 2")).to_be_visible()
    page.get_by_role("button", name="Sign off my decisions").click()
    expect(page.get_by_text("Signed off", exact=True)).to_be_visible()
    expect(page.get_by_text("Signed off: your decisions are recorded.")).to_be_visible()
    assert_accessible(page)
    screenshots(page, "guest-review-signed-off")
    with scopes_disabled():
        decided = dict(ReviewItem.objects.filter(campaign=guest_campaign, guest__isnull=False)
                       .values_list("identity_email", "decided_by_role"))
    assert decided == {"ci-bot@acme.test": "guest_reviewer", "agent@acme.test": "guest_reviewer"}


def _item_id(campaign, email: str) -> int:
    with scopes_disabled():
        return ReviewItem.objects.get(campaign=campaign, identity_email=email).pk
