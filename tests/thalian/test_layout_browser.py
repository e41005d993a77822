# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Real Chromium at 1366x768 and 390x844: every page of the main journeys (home, my reviews, items, campaign,
wizard, inventory lists, settings, evidence) fits the viewport without sideways scrolling, passes axe, and is
saved as a screenshot under test-artifacts/screenshots/ (git-ignored) for people to look at."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.browser_support import VIEWPORTS, assert_accessible, assert_fits_viewport, login, screenshot
from tests.campaigns.lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401
from tests.campaigns.review_support import add_items
from thalian.permissions import Role

pytestmark = pytest.mark.browser


@pytest.fixture
def journeys(inventory, launched, member):
    """An active campaign with realistic items for a reviewer and the admin pages around it."""
    org = inventory.org
    reviewer = member(Role.REVIEWER, email="rita.reviewer@acme.test")
    auditor = member(Role.AUDITOR, email="audrey.auditor@acme.test")
    owner = member(Role.SUPER_ADMIN, email="sam.superadmin@acme.test")
    campaign = launched(title="Q4 2026 quarterly access review")
    people = [
        ("Ada Okafor", "ada.okafor@acme.test", "Engineering", "AWS Production", "AdministratorAccess", "revoke",
         "Unused for 143 days", True),
        ("Ben Castro", "ben.castro@acme.test", "Sales", "Salesforce", "System Administrator", "revoke",
         "Privileged access outside the owning team", True),
        ("Chloe Nakamura", "chloe.nakamura@acme.test", "Engineering", "GitHub", "Maintainer", "approve",
         "Active and used recently", False),
        ("Dan Weber", "dan.weber@acme.test", "Finance", "NetSuite", "Controller", "approve",
         "Active and used recently", False),
        ("Eva Lopez", "eva.lopez@acme.test", "Marketing", "HubSpot", "Super Admin", "revoke",
         "Left the company on 2026-10-31", True),
        ("Felix Meyer", "felix.meyer@acme.test", "IT", "Okta", "Org Admin", "approve", "Active and used recently",
         False),
    ]
    for name, email, dept, app, role, rec, why, privileged in people:
        add_items(campaign, reviewer, 1, identity_name=name, identity_email=email, identity_department=dept,
                  application_name=app, role=role, recommendation=rec, recommendation_reason=why,
                  is_privileged=privileged, identity_status="terminated" if "Left" in why else "active")
    return {"org": org, "admin": inventory.admin, "reviewer": reviewer, "auditor": auditor, "superadmin": owner, "campaign": campaign}


def _pages(j):
    slug = j["org"].slug
    c = j["campaign"]
    return [
        ("reviewer", "home-reviewer", reverse("org_dashboard", args=[slug])),
        ("reviewer", "my-reviews", reverse("my_reviews", args=[slug])),
        ("reviewer", "review-items", reverse("review_items", args=[slug, c.pk]) + "?reviewer=me"),
        ("admin", "home-admin", reverse("org_dashboard", args=[slug])),
        ("admin", "campaign", reverse("campaign_detail", args=[slug, c.pk])),
        ("admin", "campaign-items", reverse("review_items", args=[slug, c.pk])),
        ("admin", "wizard", reverse("campaign_new", args=[slug])),
        ("admin", "campaigns", reverse("campaign_list", args=[slug])),
        ("admin", "applications", reverse("application_list", args=[slug])),
        ("admin", "identities", reverse("identity_list", args=[slug])),
        ("admin", "entitlements", reverse("entitlement_list", args=[slug])),
        ("admin", "settings-itsm", reverse("itsm_connections", args=[slug])),
        ("admin", "settings-notifications", reverse("notification_settings", args=[slug])),
        ("admin", "remediation", reverse("remediation_queue", args=[slug])),
        ("superadmin", "settings-organization", reverse("org_settings", args=[slug])),
        ("auditor", "home-auditor", reverse("org_dashboard", args=[slug])),
        ("auditor", "evidence", reverse("evidence_list", args=[slug])),
    ]


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_main_pages_fit_the_screen_pass_axe_and_are_photographed(browser_page, live_server, journeys, viewport):
    page = browser_page
    page.set_viewport_size(VIEWPORTS[viewport])
    signed_in = None
    for who, name, url in _pages(journeys):
        if who != signed_in:
            page.context.clear_cookies()
            login(page, live_server, journeys[who].user.email, "pw")
            signed_in = who
        response = page.goto(live_server.url + url)
        assert response.status == 200, f"{url} answered {response.status}"
        page.wait_for_load_state("networkidle")
        assert_fits_viewport(page)
        assert_accessible(page)
        screenshot(page, name)


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_sidebar_collapses_on_wide_screens_and_slides_in_on_phones(browser_page, live_server, journeys, viewport):
    page = browser_page
    page.set_viewport_size(VIEWPORTS[viewport])
    login(page, live_server, journeys["admin"].user.email, "pw")
    page.goto(f"{live_server.url}/o/{journeys['org'].slug}/")
    sidebar = page.get_by_role("navigation", name="Main")
    toggle = page.get_by_role("button", name="Menu")
    if viewport == "desktop":
        expect(sidebar).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        toggle.click()
        expect(sidebar).to_be_hidden()
        expect(toggle).to_have_attribute("aria-expanded", "false")
        page.reload()  # remembered in the browser
        expect(sidebar).to_be_hidden()
        page.get_by_role("button", name="Menu").click()
        expect(sidebar).to_be_visible()
    else:
        expect(sidebar).to_be_hidden()
        expect(toggle).to_have_attribute("aria-expanded", "false")
        toggle.focus()
        page.keyboard.press("Enter")
        expect(sidebar).to_be_visible()
        sidebar.get_by_role("link", name="Campaigns").focus()
        assert_fits_viewport(page)
        page.keyboard.press("Escape")
        expect(sidebar).to_be_hidden()
        expect(toggle).to_be_focused()
