"""Real Chromium: single sign-on through the e-mail-first sign-in page against a real OIDC provider and a
real SAML IdP on loopback; the settings and two-factor pages are axe-clean. Screenshots at 1366x768 and
390x844 go to test-artifacts/screenshots/sso/ (git-ignored)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser_support import assert_accessible, login
from thalian.models import Membership
from thalian.permissions import Role

from .conftest import make_domain, make_provider

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots" / "sso"
SIZES = {"desktop": (1366, 768), "phone": (390, 844)}


def _screenshots(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 1366, "height": 768})


@pytest.fixture
def live_site(settings, live_server):
    settings.SITE_URL = live_server.url
    return live_server


def test_oidc_sign_in_from_the_e_mail_first_page(browser_page, live_site, org, oidc_idp):
    page = browser_page
    make_domain(org)
    make_provider(org, protocol="oidc", name="Example OIDC", issuer=oidc_idp.issuer, client_id="thalian", client_secret="s")
    page.goto(f"{live_site.url}/accounts/login/")
    assert_accessible(page)
    _screenshots(page, "login")
    page.get_by_label("E-mail").fill("alice@example.com")
    page.get_by_role("button", name="Continue with single sign-on").click()
    page.wait_for_url(f"{oidc_idp.issuer}/oauth2/authorize**")
    page.locator("input[name=sub]").fill("alice@example.com")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url("**/o/acme/")
    assert page.locator(".role-pill").inner_text() == "Reviewer"
    assert Membership.objects.get(user__email="alice@example.com").role == Role.REVIEWER


def test_saml_sign_in_by_pressing_enter_after_the_e_mail(browser_page, live_site, org, tmp_path):
    from sso.saml import idp_entity_id_from_metadata, sp_metadata
    from tests.fakes.saml_idp import SamlIdp

    page = browser_page
    make_domain(org)
    idp = SamlIdp(tmp_path)
    idp.sp_metadata = [sp_metadata(org)]
    idp.start()
    try:
        xml = idp.metadata()
        make_provider(org, protocol="saml", name="Example SAML", metadata_xml=xml, idp_entity_id=idp_entity_id_from_metadata(xml))
        page.goto(f"{live_site.url}/accounts/login/")
        page.get_by_label("E-mail").fill("alice@example.com")
        page.get_by_label("E-mail").press("Enter")
        page.wait_for_url(f"{idp.base_url}/sso/redirect**")
        page.get_by_role("button", name="Continue to the service").click()
        page.wait_for_url("**/o/acme/")
    finally:
        idp.stop()
    assert page.locator(".role-pill").inner_text() == "Reviewer"


def test_settings_and_two_factor_pages_are_accessible(browser_page, live_site, org, member):
    page = browser_page
    boss = member(Role.SUPER_ADMIN)
    make_domain(org)
    make_domain(org, "pending.example.com", verified=False)
    make_provider(org, protocol="oidc", name="Example OIDC", issuer="https://login.example.com", client_id="x")
    login(page, live_site, boss.user.email, "pw")
    page.goto(f"{live_site.url}/o/acme/settings/sso/")
    assert_accessible(page)
    _screenshots(page, "settings")
    page.goto(f"{live_site.url}/o/acme/settings/sso/providers/new/saml/")
    assert_accessible(page)
    _screenshots(page, "provider-new-saml")
    page.goto(f"{live_site.url}/accounts/two-factor/")
    page.get_by_role("button", name="Set up two-factor sign-in").click()
    page.get_by_role("img", name="QR code of the authenticator set-up address").wait_for()
    assert_accessible(page)
    _screenshots(page, "two-factor-enrol")


def test_password_sign_in_with_a_second_factor_and_the_error_page(browser_page, live_site, org, member):
    import pyotp

    from sso import mfa

    page = browser_page
    admin = member(Role.ADMIN)
    device = mfa.mfa_setup_start(user=admin.user)
    codes = mfa.mfa_setup_confirm(user=admin.user, code=pyotp.TOTP(device.secret).now())
    page.goto(f"{live_site.url}/accounts/login/")
    page.get_by_label("E-mail").fill(admin.user.email)
    page.get_by_label("Password", exact=True).fill("pw")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/accounts/two-factor/verify/")
    assert_accessible(page)
    _screenshots(page, "two-factor-verify")
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/o/acme/")
    assert "recovery code" in page.locator(".messages").inner_text()
    page.goto(f"{live_site.url}/sso/oidc/callback/?state=unknown&code=x")
    assert "expired or was already used" in page.get_by_role("alert").inner_text()
    assert_accessible(page)
