"""Real Chromium: a super admin finds a failed hand-off on the operations page and retries it with the
keyboard; the page passes axe and is screenshotted at desktop and phone widths."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser_support import assert_accessible, login
from thalian.models import OutboxEvent, OutboxState
from thalian.permissions import Role

from .test_operations import _failed_event

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def _shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in ((1366, 768), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SHOTS / f"{name}-{width}x{height}.png"), full_page=True)


@pytest.mark.django_db(transaction=True)
def test_super_admin_retries_a_failed_hand_off_with_the_keyboard(browser_page, live_server, member, org):
    page = browser_page
    admin = member(Role.SUPER_ADMIN)
    row = _failed_event(org)
    login(page, live_server, admin.user.email, "pw")
    page.get_by_role("link", name="Operations", exact=True).click()
    page.wait_for_url("**/o/acme/settings/operations/")
    assert page.get_by_role("heading", name="Failed receivers").is_visible()
    assert page.locator(f'tr[data-event="{row.pk}"]').inner_text().count("Jira answered 503") == 1
    assert page.locator('[data-stat="failed"]').inner_text() == "1"
    assert_accessible(page)
    _shoot(page, "operations")
    page.set_viewport_size({"width": 1366, "height": 768})

    retry = page.get_by_role("button", name=f"Retry event {row.pk}")
    retry.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "will be handed to its receivers again" in page.locator("main").inner_text()
    assert OutboxEvent.unscoped.get(pk=row.pk).state == OutboxState.DONE
    assert page.locator('[data-stat="failed"]').inner_text() == "0"
    assert_accessible(page)
    _shoot(page, "operations-retried")
