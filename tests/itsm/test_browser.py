"""Real Chromium: the ticketing settings, remediation queue and campaign remediation pages, with axe."""

import pytest

from itsm.models import ItsmConnection
from tests.browser_support import assert_accessible, login
from thalian.permissions import Role
from thalian.tenancy import scope

pytestmark = pytest.mark.browser


def test_admin_adds_a_jira_connection_tests_it_and_sees_remediation(
    browser_page, live_server, member, jira, itsm_settings, revoked_item, decide, org
):
    admin = member(Role.ADMIN)
    items = [revoked_item(), revoked_item()]
    page = browser_page
    login(page, live_server, admin.user.email, "pw")

    page.goto(f"{live_server.url}/o/acme/settings/itsm/")
    assert_accessible(page)
    page.get_by_label("Kind", exact=True).select_option("jira")
    page.get_by_label("Name", exact=True).fill("Ops Jira")
    page.get_by_label("Base URL").fill(jira.base_url)
    page.get_by_label("E-mail (Jira, Zendesk)").fill(jira.email)
    page.get_by_label("API token (Jira, Zendesk)").fill(jira.api_token)
    page.get_by_label("Project key (Jira)").fill("OPS")
    with page.expect_navigation():
        page.get_by_role("button", name="Save connection").click()
    assert "/settings/itsm/" in page.url and page.url.rstrip("/").split("/")[-1] != "itsm"
    assert jira.api_token not in page.content()
    assert_accessible(page)

    page.get_by_role("button", name="Test connection").click()
    page.get_by_text("Connection works: Connected as Thalian Bot").wait_for()
    assert_accessible(page)
    with scope(org):
        assert ItsmConnection.objects.get().last_test_ok is True

    decide(items)
    page.goto(f"{live_server.url}/o/acme/remediation/")
    page.get_by_role("link", name="OPS-1").wait_for()
    assert_accessible(page)

    page.goto(f"{live_server.url}/o/acme/campaigns/{items[0].campaign_id}/remediation/")
    page.get_by_text("Tickets open").wait_for()
    assert_accessible(page)
