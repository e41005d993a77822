"""Real Chromium for browser tests: Debian's `chromium` driven by Playwright's sync API against
pytest-django's `live_server`, a sign-in helper and an axe accessibility assertion.

Playwright's sync API keeps an asyncio loop marked as running in the test thread between calls, which makes
Django refuse ORM access from that thread (SynchronousOnlyOperation). The `browser_page` fixture therefore
sets DJANGO_ALLOW_ASYNC_UNSAFE while the browser is open and restores it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# axe impact levels that fail a page.
BLOCKING_IMPACTS = ("serious", "critical")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def chromium_executable() -> str:
    """Path of Debian's chromium; skips the test when it is missing outside CI and fails in CI."""
    path = shutil.which("chromium")
    if path:
        return path
    message = "Chromium is not installed (Debian package `chromium`, found via `which chromium`)."
    if in_ci():
        pytest.fail(f"{message} CI must run the browser tests: install it with `apt-get install chromium`.")
    pytest.skip(f"{message} Install it to run the browser tests.")


@contextlib.contextmanager
def allow_async_unsafe() -> Iterator[None]:
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@contextlib.contextmanager
def chromium_page(base_url: str, *, timeout_ms: int = 15_000):
    """A fresh browser, context and page; everything is closed on exit."""
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    with allow_async_unsafe(), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=base_url, locale="en-US", viewport={"width": 1280, "height": 900})
            context.set_default_timeout(timeout_ms)
            yield context.new_page()
            context.close()
        finally:
            browser.close()


def login(page, live_server, email: str, password: str) -> None:
    """Signs in through the real login form and waits until the browser has left the login page."""
    base = live_server.url if hasattr(live_server, "url") else str(live_server)
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    if "/accounts/login/" in page.url:
        alerts = page.locator("[role=alert]").all_inner_texts()
        raise AssertionError(f"sign-in as {email} failed: {' '.join(alerts) or 'still on the login page'}")


def axe_violations(page, *, context=None) -> list[dict]:
    """Runs axe-core on the current page; returns the serious and critical violations."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, context=context)
    return [v for v in results.response["violations"] if v.get("impact") in BLOCKING_IMPACTS]


def format_violations(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} [{v.get('helpUrl', '')}]")
        for node in v["nodes"][:10]:
            lines.append(f"    {', '.join(map(str, node['target']))}: {node.get('failureSummary', '').strip()}")
    return "\n".join(lines)


def assert_accessible(page, *, context=None) -> None:
    """Fails with a readable list when axe finds serious or critical violations on the current page."""
    violations = axe_violations(page, context=context)
    if violations:
        pytest.fail(
            f"{len(violations)} serious/critical accessibility violation(s) on {page.url}:\n"
            + format_violations(violations),
            pytrace=False,
        )


# Screens people have: a 1366 px laptop and a 390 px phone.
VIEWPORTS = {"desktop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts", "screenshots")


def screenshot(page, name: str) -> str:
    """Saves a screenshot of the current page as test-artifacts/screenshots/<name>-<width>x<height>.png (git-ignored)
    and returns its path."""
    size = page.viewport_size or {"width": 0, "height": 0}
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, f"{name}-{size['width']}x{size['height']}.png")
    page.screenshot(path=path, full_page=False)
    return path


def page_overflow(page) -> int:
    """How many CSS pixels the page is wider than the viewport (0 when nothing scrolls sideways)."""
    return page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")


def assert_fits_viewport(page) -> None:
    overflow = page_overflow(page)
    if overflow > 0:
        culprits = page.evaluate(
            """() => { const w = document.documentElement.clientWidth; const out = [];
            for (const el of document.querySelectorAll('body *')) { const r = el.getBoundingClientRect();
              if (r.right > w + 1 && r.width > 0) out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : '') +
                ' right=' + Math.round(r.right)); if (out.length > 8) break; } return out; }"""
        )
        pytest.fail(f"{page.url} is {overflow}px wider than the {page.viewport_size['width']}px viewport: "
                    + "; ".join(culprits), pytrace=False)


SCREEN_SIZES = {"desktop": (1366, 768), "phone": (390, 844)}


def screenshots(page, name: str) -> list:
    """Full-page screenshots of the current page at 1366x768 and 390x844, saved as test artifacts under the
    git-ignored test-artifacts/screenshots/ (look at them before calling a page done)."""
    from pathlib import Path

    from django.conf import settings

    folder = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for size, (width, height) in SCREEN_SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        path = folder / f"{name}-{size}.png"
        page.screenshot(path=str(path), full_page=True)
        paths.append(path)
    page.set_viewport_size({"width": 1366, "height": 768})
    return paths
