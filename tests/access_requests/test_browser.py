"""Real Chromium: a member requests access on the Access requests page, the application owner approves it from
their "To approve" tab; axe on every page and screenshots at 1366x768 and 390x844."""

import pytest
from playwright.sync_api import expect

from access_requests.models import AccessRequest
from tests.browser_support import assert_accessible, assert_fits_viewport, login, screenshots
from thalian.tenancy import scope

pytestmark = pytest.mark.browser


def test_a_member_requests_access_and_the_owner_approves_it(browser_page, live_server, team):
    with scope(team.org):
        from access_requests.models import ApprovalPolicy

        ApprovalPolicy.objects.filter(application__isnull=True).update(stages=[{"kind": "application_owner"}])
    page = browser_page
    login(page, live_server, "ada@acme.test", "pw")
    page.goto(f"{live_server.url}/o/acme/access-requests/")
    expect(page.get_by_role("heading", name="Access requests", exact=True)).to_be_visible()
    assert_accessible(page)

    page.get_by_label("Application").fill("GitHub")
    page.get_by_label("Role or entitlement").fill("member")
    page.get_by_label("Reason").fill("Release duty this quarter")
    page.get_by_role("button", name="Submit request").click()
    # Ada already holds member: the form says so on the field and keeps what she typed.
    expect(page.get_by_text("ada@acme.test already holds member in GitHub.")).to_be_visible()
    assert_accessible(page)
    screenshots(page, "access-request-form-error")
    page.get_by_label("Role or entitlement").fill("maintainer")
    with page.expect_navigation():
        page.get_by_role("button", name="Submit request").click()
    expect(page.get_by_role("heading", name="Grant maintainer in GitHub")).to_be_visible()
    expect(page.get_by_text("olga@acme.test", exact=False).first).to_be_visible()
    assert_accessible(page)
    screenshots(page, "access-request-pending")
    page.goto(f"{live_server.url}/o/acme/access-requests/")
    expect(page.locator("tbody tr")).to_have_count(1)
    screenshots(page, "access-requests-mine")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits_viewport(page)
    page.set_viewport_size({"width": 1366, "height": 768})

    page.context.clear_cookies()
    login(page, live_server, "olga@acme.test", "pw")
    page.goto(f"{live_server.url}/o/acme/access-requests/?tab=approve")
    link = page.get_by_role("link", name="Grant maintainer")
    expect(link).to_be_visible()
    assert_accessible(page)
    screenshots(page, "access-requests-to-approve")
    link.click()
    expect(page.get_by_role("heading", name="Your decision (stage 1)")).to_be_visible()
    assert_accessible(page)
    screenshots(page, "access-request-decide")
    page.get_by_label("Reason (required to deny)").fill("Owner agrees")
    with page.expect_navigation():
        page.get_by_role("button", name="Approve").click()
    expect(page.get_by_text("Decision recorded.")).to_be_visible()
    expect(page.locator(".page-sub .badge")).to_have_text("Approved")
    assert_accessible(page)
    screenshots(page, "access-request-approved")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits_viewport(page)
    with scope(team.org):
        assert AccessRequest.objects.get().status == "approved"
