"""Real Chromium: the answer to a bad request and a campaign's undelivered notifications, at 1366x768 and
390x844, keyboard-reachable and axe-clean. Screenshots go to test-artifacts/screenshots/ (git-ignored)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone

from notifications.models import Notification
from tests.browser_support import assert_accessible, login
from tests.world import build_world
from thalian.models import Organization
from thalian.tenancy import scopes_disabled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
SIZES = {"desktop": (1366, 768), "phone": (390, 844)}


def _shots(page, name: str, *, element=None, reflow: bool = True) -> None:
    """Screenshots at both sizes (of `element` when given); `reflow` also asserts no sideways scrolling."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        path = str(SHOTS / f"{name}-{label}.png")
        if element is not None:
            element.scroll_into_view_if_needed()
            element.screenshot(path=path)
        else:
            page.screenshot(path=path, full_page=True)
        if reflow:
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{name} scrolls sideways at {width}px"


@pytest.fixture
def world(db):
    from django.contrib.auth.hashers import make_password

    world = build_world(Organization.objects.create(slug="acme", name="Acme", plan="pro"))
    world.admin.user.password = make_password("pw")
    world.admin.user.save(update_fields=["password"])
    return world


def test_a_nul_character_in_a_filter_shows_a_readable_400_page(browser_page, live_server, world):
    page = browser_page
    login(page, live_server, world.admin.user.email, "pw")
    response = page.goto(f"{live_server.url}/o/acme/inventory/identities/?search=ab%00c")
    assert response.status == 400
    assert "The query parameter 'search' contains a NUL character" in page.locator("main").inner_text()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement !== document.body")
    assert_accessible(page)
    _shots(page, "bad-request")


def test_campaign_page_flags_undelivered_notifications_for_the_admin(browser_page, live_server, world):
    with scopes_disabled():
        Notification.objects.create(
            organization=world.organization, campaign_id=world.ids["campaign"], event="review_assigned",
            channel="email", recipient="reviewer@acme.test", dedupe_key="x", title="Access review assigned",
            body="2 items", action_url="https://thalian.example.com/", action_label="Open", status="failed",
            attempts=1, error="Mail server refused reviewer@acme.test: [550]", created_at=timezone.now(),
        )
    page = browser_page
    login(page, live_server, world.admin.user.email, "pw")
    page.goto(f"{live_server.url}/o/acme/campaigns/{world.ids['campaign']}/")
    alert = page.get_by_role("alert").filter(has_text="could not be delivered")
    assert "1 notification of this campaign could not be delivered" in alert.inner_text()
    link = alert.get_by_role("link", name="Settings → Notifications")
    link.focus()
    assert page.evaluate("document.activeElement.textContent") == "Settings → Notifications"
    assert_accessible(page)
    panel = page.locator("section", has=page.get_by_role("heading", name="Notifications", exact=True))
    _shots(page, "campaign-undelivered-notifications", element=panel)
    page.set_viewport_size({"width": 1366, "height": 768})
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/o/acme/settings/notifications/")
    assert "Mail server refused reviewer@acme.test" in page.locator("main").inner_text()
