"""Real Chromium: sign in, switch organization, role-appropriate navigation, axe on every page visited."""

import pytest

from tests.browser_support import assert_accessible, login
from thalian.models import Membership
from thalian.permissions import Role

pytestmark = pytest.mark.browser


def _nav(page) -> list[str]:
    return [t.strip() for t in page.get_by_role("navigation", name="Main").get_by_role("link").all_inner_texts()]


def test_login_page_is_accessible_and_sign_in_lands_on_the_organization(browser_page, live_server, member):
    viewer = member(Role.VIEWER)
    browser_page.goto(f"{live_server.url}/accounts/login/")
    assert_accessible(browser_page)
    login(browser_page, live_server, viewer.user.email, "pw")
    assert browser_page.url.endswith("/o/acme/")
    assert_accessible(browser_page)


def test_sign_in_switch_organization_and_see_the_navigation_of_each_role(browser_page, live_server, member,
                                                                         other_org):
    page = browser_page
    admin = member(Role.ADMIN)
    Membership.objects.create(user=admin.user, organization=other_org, role=Role.VIEWER)

    login(page, live_server, admin.user.email, "pw")
    # Two memberships: Thalian asks which organization to open.
    assert page.get_by_role("heading", name="Choose an organization").is_visible()
    assert_accessible(page)
    page.get_by_role("link", name="Acme", exact=True).click()
    page.wait_for_url("**/o/acme/")
    assert page.locator(".role-pill").inner_text() == "Admin"
    nav = _nav(page)
    assert {"Members", "Audit log", "API tokens"} <= set(nav)
    assert "Organization" not in nav  # plan and deletion are for super admins
    assert_accessible(page)

    page.get_by_role("link", name="Members", exact=True).click()
    page.wait_for_url("**/o/acme/members/")
    assert page.get_by_role("heading", name="Members").is_visible()
    assert_accessible(page)
    page.get_by_role("link", name="Audit log", exact=True).click()
    page.wait_for_url("**/o/acme/audit/")
    assert page.locator("tr[data-action=login]").count() >= 1
    assert_accessible(page)

    # Switch organization with the switcher in the top bar.
    with page.expect_navigation():
        page.get_by_label("Switch organization").select_option(label="Globex")
    assert page.url.endswith("/o/globex/")
    assert page.locator(".role-pill").inner_text() == "Viewer"
    nav = _nav(page)
    assert "API tokens" in nav
    assert not {"Members", "Audit log", "Organization"} & set(nav)
    assert_accessible(page)
    # The navigation is not just hidden: the page itself refuses the viewer.
    response = page.goto(f"{live_server.url}/o/globex/members/")
    assert response.status == 403
    assert_accessible(page)

    page.goto(f"{live_server.url}/o/globex/settings/tokens/")
    page.get_by_label("Token name").fill("browser token")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("[data-new-token]").inner_text()
    assert token.startswith("thl_")
    assert_accessible(page)
    page.goto(f"{live_server.url}/o/globex/settings/tokens/")
    assert page.locator("[data-new-token]").count() == 0  # shown once
    assert page.get_by_role("cell", name="browser token", exact=True).is_visible()


def test_super_admin_pages_are_accessible(browser_page, live_server, member):
    boss = member(Role.SUPER_ADMIN)
    login(browser_page, live_server, boss.user.email, "pw")
    assert "Organization" in _nav(browser_page)
    for path in ("/o/acme/settings/organization/", "/o/acme/members/", "/accounts/password/change/"):
        browser_page.goto(f"{live_server.url}{path}")
        assert_accessible(browser_page)


def test_invited_person_creates_an_account_in_the_browser(browser_page, live_server, member, org):
    from thalian.models import User
    from thalian.services import invitation_create

    admin = member(Role.ADMIN)
    _invitation, raw = invitation_create(actor=admin, email="newcomer@example.test", role=Role.AUDITOR)
    page = browser_page
    page.goto(f"{live_server.url}/invitations/{raw}/")
    assert page.get_by_role("heading", name="Join Acme").is_visible()
    assert_accessible(page)
    page.get_by_label("Your name").fill("Nia Newcomer")
    page.get_by_label("Password", exact=True).fill("correct-horse-battery-9")
    page.get_by_label("Password again").fill("correct-horse-battery-9")
    with page.expect_navigation():
        page.get_by_role("button", name="Create account and join").click()
    assert page.url.endswith("/o/acme/")
    assert page.locator(".role-pill").inner_text() == "Auditor"
    assert "Audit log" in _nav(page)
    assert User.objects.get(email="newcomer@example.test").name == "Nia Newcomer"
    page.goto(f"{live_server.url}/accounts/password/reset/")
    assert_accessible(page)
