"""Real Chromium: an admin configures notifications and sends a reminder from the campaign page."""

from __future__ import annotations

import pytest

from notifications.models import NotificationSettings
from tests.browser_support import assert_accessible, login
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_configures_slack_and_sends_test_email(browser_page, live_server, member, mailbox):
    admin = member(Role.ADMIN)
    page = browser_page
    login(page, live_server, admin.user.email, "pw")
    page.goto(f"{live_server.url}/o/acme/")
    page.get_by_role("link", name="Notifications", exact=True).click()
    page.wait_for_url("**/o/acme/settings/notifications/")
    assert_accessible(page)

    page.get_by_label("Slack bot token").fill("xoxb-1111-2222-browsersecretvalue")
    page.get_by_label("Slack channel ID for campaign notices").fill("C0REVIEWS")
    with page.expect_navigation():
        page.get_by_role("button", name="Save settings").click()
    assert "Notification settings saved." in page.locator("main").inner_text()
    assert "browsersecretvalue" not in page.content()
    assert page.get_by_label("Slack bot token").input_value() == ""
    with scopes_disabled():
        assert (
            NotificationSettings.objects.get(organization=admin.organization).slack_channel_id == "C0REVIEWS"
        )

    with page.expect_navigation():
        page.get_by_role("button", name="Send test message").first.click()
    assert "E-mail test message sent." in page.locator("main").inner_text()
    assert mailbox.to(admin.user.email)[0]["subject"] == "Thalian test message"
    assert_accessible(page)

    page.get_by_role("link", name="My notifications").click()
    page.wait_for_url("**/o/acme/settings/my-notifications/")
    assert_accessible(page)


def test_send_reminder_from_the_reviewer_row(browser_page, live_server, campaign, people, mailbox):
    page = browser_page
    login(page, live_server, people["admin"].user.email, "pw")
    page.goto(f"{live_server.url}/o/acme/campaigns/{campaign.pk}/")
    assert_accessible(page)
    page.get_by_role("button", name="Send reminder to rita@acme.test").click()
    page.get_by_text("Reminder sent").first.wait_for()
    assert (
        mailbox.to("rita@acme.test")[0]["subject"] == "Reminder: 3 access items waiting in Q1 access review"
    )
    page.get_by_role("button", name="Send reminder to rita@acme.test").click()
    page.get_by_text("Already reminded today").first.wait_for()
    assert len(mailbox.to("rita@acme.test")) == 1
