"""Real Chromium: an analyst grants an exception with an expiry date on the item page, then an auditor finds it
on the Exceptions page (keyboard, axe, screenshots at desktop and phone sizes)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser_support import assert_accessible, login, screenshots
from thalian.permissions import Role

from .review_support import active_campaign, add_items, fresh

pytestmark = pytest.mark.browser


def test_exception_with_expiry_is_granted_and_listed(browser_page, live_server, member, org):
    page = browser_page
    analyst = member(Role.SECURITY_ANALYST, email="sam@acme.test")
    auditor = member(Role.AUDITOR)
    campaign = active_campaign(org, title="Q4 access review")
    [item] = add_items(campaign, None, 1, identity_email="contractor@corp.test", identity_name="Casey Contractor",
                       application_name="Salesforce", role="Sales User")
    expires = timezone.localdate() + dt.timedelta(days=30)

    login(page, live_server, analyst.user.email, "pw")
    page.goto(f"{live_server.url}/o/acme/campaigns/{campaign.pk}/items/{item.pk}/")
    page.get_by_label("Exception", exact=True).check()
    page.get_by_label(re.compile("^Reason")).fill("Contract runs until the project ends")
    page.get_by_label(re.compile("^Exception expires on")).fill(expires.isoformat())
    page.get_by_role("button", name="Save decision").click()
    expect(page.locator("[data-exception-expires]")).to_have_text(expires.isoformat())
    assert fresh(item).exception_expires_on == expires
    assert_accessible(page)
    screenshots(page, "exception-item")

    page.context.clear_cookies()
    login(page, live_server, auditor.user.email, "pw")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Exceptions").click()
    page.wait_for_url("**/o/acme/exceptions/")
    row = page.locator(f"#exception-{item.pk}")
    for text in ("contractor@corp.test", "Salesforce", "Sales User", "Contract runs until the project ends",
                 "sam@acme.test", expires.isoformat(), "Q4 access review"):
        expect(row).to_contain_text(text)
    page.get_by_role("link", name="Expired").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*status=expired"))
    expect(page.get_by_text("No exceptions in this view.")).to_be_visible()
    page.get_by_role("link", name="Active").click()
    expect(page.locator(f"#exception-{item.pk}")).to_be_visible()
    assert_accessible(page)
    screenshots(page, "exceptions-page")
