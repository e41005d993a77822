"""Real Chromium: undelivered notifications under Settings → Notifications, retried with the keyboard;
screenshots at 1366x768 and 390x844, with axe."""

from __future__ import annotations

import pytest

from notifications.models import Notification, Status
from tests.browser_support import assert_accessible, assert_fits_viewport, login, screenshots
from thalian.tenancy import scopes_disabled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_retries_an_undelivered_notification(browser_page, live_server, people, campaign, mailbox):
    with scopes_disabled():
        failed = Notification.objects.create(
            organization=campaign.organization, campaign=campaign, event="review_assigned", channel="email",
            recipient_membership=people["rita"], recipient="rita@acme.test", dedupe_key="browser",
            title="Access review assigned", body="3 items", action_url="https://thalian.example.com/",
            action_label="Open", status=Status.FAILED, attempts=6,
            error="Delivery was interrupted on attempt 6 of 6 (the worker stopped before the outcome was recorded), "
            "so it may or may not have arrived. Retry sends it again.",
        )
    page = browser_page
    login(page, live_server, people["admin"].user.email, "pw")
    page.goto(f"{live_server.url}/o/acme/settings/notifications/")
    page.get_by_role("heading", name="Failed notifications").wait_for()
    assert_accessible(page)
    for width, height in ((1366, 768), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        assert_fits_viewport(page)
    screenshots(page, "notification-settings-failed")

    retry = page.get_by_role("button", name="Retry Review assigned to rita@acme.test by E-mail")
    retry.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")

    assert "1 notification queued to be sent again." in page.locator("main").inner_text()
    assert "No failed notifications." in page.locator("main").inner_text()
    assert [m["to"] for m in mailbox.to("rita@acme.test")] == [["rita@acme.test"]]
    with scopes_disabled():
        assert Notification.objects.get(pk=failed.pk).status == Status.SENT
