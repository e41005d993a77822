"""Two-factor sign-in: TOTP enrolment, sign-in with a code and with a recovery code, enforcement for admins,
and resets by super admins."""

from __future__ import annotations

import re

import pyotp
import pytest

from sso.models import MfaDevice, RecoveryCode, SsoSettings
from thalian.models import AuditEvent
from thalian.tenancy import scopes_disabled

pytestmark = pytest.mark.django_db


def _enrol(client) -> tuple[str, list[str]]:
    """Turns two-factor sign-in on through the page; returns the TOTP secret and the recovery codes."""
    page = client.post("/accounts/two-factor/", {"action": "start"}).content.decode()
    secret = re.search(r"data-totp-secret>([A-Z2-7]+)<", page).group(1)
    assert 'src="data:image/svg+xml' in page  # the QR code
    done = client.post("/accounts/two-factor/", {"action": "confirm", "code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200
    codes = re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", done.content.decode())
    assert len(codes) == 10
    return secret, codes


def _password(client, email: str):
    return client.post("/accounts/login/", {"username": email, "password": "pw"})


def test_enrolment_then_sign_in_with_a_code(client, org, member):
    admin = member("admin")
    client.force_login(admin.user)
    secret, _codes = _enrol(client)
    with scopes_disabled():
        device = MfaDevice.objects.get(user=admin.user)
    assert device.is_active and device.secret == secret
    # the secret is encrypted at rest
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM sso_mfadevice WHERE id = %s", [device.pk])
        assert secret not in cursor.fetchone()[0]
    assert AuditEvent.objects.filter(organization=org, action="mfa_enabled").exists()
    client.logout()

    response = _password(client, "admin@acme.test")
    assert response.status_code == 302 and response.url == "/accounts/two-factor/verify/"
    assert "_auth_user_id" not in client.session  # not signed in before the second factor
    assert client.get("/o/acme/").status_code == 302
    # The code accepted at enrolment cannot be replayed; wait for the next one by using the time machine.
    import datetime as dt

    import time_machine

    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)):
        code = pyotp.TOTP(secret).now()
        ok = client.post("/accounts/two-factor/verify/", {"code": code})
        assert ok.status_code == 302 and ok.url == "/"
        assert client.get("/o/acme/").status_code == 200
        client.logout()
        _password(client, "admin@acme.test")
        replay = client.post("/accounts/two-factor/verify/", {"code": code})
    assert replay.status_code == 400 and "not valid" in replay.content.decode()


def test_sign_in_with_a_recovery_code_uses_it_up(client, org, member):
    admin = member("admin")
    client.force_login(admin.user)
    _secret, codes = _enrol(client)
    client.logout()
    _password(client, "admin@acme.test")
    response = client.post("/accounts/two-factor/verify/", {"code": codes[0].upper()})
    assert response.status_code == 302
    assert RecoveryCode.objects.filter(user=admin.user, used_at__isnull=False).count() == 1
    client.logout()
    _password(client, "admin@acme.test")
    again = client.post("/accounts/two-factor/verify/", {"code": codes[0]})
    assert again.status_code == 400
    with scopes_disabled():
        assert RecoveryCode.objects.filter(user=admin.user, code_hash__contains=codes[0]).count() == 0  # hashed


def test_wrong_codes_end_the_sign_in_after_five_tries(client, org, member):
    admin = member("admin")
    client.force_login(admin.user)
    _enrol(client)
    client.logout()
    _password(client, "admin@acme.test")
    for _ in range(4):
        assert client.post("/accounts/two-factor/verify/", {"code": "000000"}).status_code == 400
    last = client.post("/accounts/two-factor/verify/", {"code": "000000"})
    assert last.status_code == 302 and last.url == "/accounts/login/"
    assert client.get("/accounts/two-factor/verify/").status_code == 302


def test_an_organization_can_require_two_factor_for_admins(client, org, member):
    member("admin")
    viewer = member("viewer")
    with scopes_disabled():
        SsoSettings.objects.create(organization=org, require_mfa_for_admins=True)
    # a viewer is not concerned
    assert _password(client, viewer.user.email).url == "/"
    client.logout()
    # an admin without an authenticator must enrol before the sign-in completes
    response = _password(client, "admin@acme.test")
    assert response.url == "/accounts/two-factor/"
    assert "_auth_user_id" not in client.session
    page = client.post("/accounts/two-factor/", {"action": "start"}).content.decode()
    secret = re.search(r"data-totp-secret>([A-Z2-7]+)<", page).group(1)
    done = client.post("/accounts/two-factor/", {"action": "confirm", "code": pyotp.TOTP(secret).now()})
    assert "Continue to Thalian" in done.content.decode()
    assert client.get("/o/acme/").status_code == 200


def test_turning_two_factor_off_needs_a_code(client, org, member):
    admin = member("admin")
    client.force_login(admin.user)
    _secret, codes = _enrol(client)
    refused = client.post("/accounts/two-factor/", {"action": "disable", "code": "123456"})
    assert refused.status_code == 400
    assert client.post("/accounts/two-factor/", {"action": "disable", "code": codes[1]}).status_code == 302
    assert not MfaDevice.objects.filter(user=admin.user).exists()
    assert AuditEvent.objects.filter(organization=org, action="mfa_disabled").exists()


def test_a_super_admin_resets_a_members_two_factor(client, org, member):
    admin = member("admin")
    boss = member("super_admin")
    client.force_login(admin.user)
    _enrol(client)
    client.force_login(boss.user)
    page = client.get("/o/acme/settings/sso/").content.decode()
    assert "admin@acme.test" in page
    response = client.post(f"/o/acme/settings/sso/members/{admin.pk}/reset-two-factor/")
    assert response.status_code == 302
    assert not MfaDevice.objects.filter(user=admin.user).exists()
    event = AuditEvent.objects.get(organization=org, action="mfa_reset")
    assert event.actor_email == boss.user.email and event.target_label == "admin@acme.test"


def test_reset_is_404_for_another_organizations_member_and_403_for_admins(client, org, member, outsider):
    boss = member("super_admin")
    client.force_login(boss.user)
    assert client.post(f"/o/acme/settings/sso/members/{outsider.pk}/reset-two-factor/").status_code == 404
    client.force_login(member("admin").user)
    assert client.post(f"/o/acme/settings/sso/members/{boss.pk}/reset-two-factor/").status_code == 403


def test_admins_cannot_turn_off_two_factor_their_organization_requires(client, org, member):
    admin = member("admin")
    client.force_login(admin.user)
    _secret, codes = _enrol(client)
    with scopes_disabled():
        SsoSettings.objects.create(organization=org, require_mfa_for_admins=True)
    response = client.post("/accounts/two-factor/", {"action": "disable", "code": codes[0]})
    assert response.status_code == 400 and "cannot be turned off" in response.content.decode()
    assert MfaDevice.objects.filter(user=admin.user).exists()


def test_a_reset_of_someone_who_also_belongs_elsewhere_needs_their_domain_verified_here(client, org, other_org, member):
    from thalian.models import Membership

    from .conftest import make_domain

    admin = member("admin", email="dana@example.com")
    Membership.objects.create(user=admin.user, organization=other_org, role="viewer")
    client.force_login(admin.user)
    _enrol(client)
    client.force_login(member("super_admin").user)
    refused = client.post(f"/o/acme/settings/sso/members/{admin.pk}/reset-two-factor/", follow=True)
    assert "also belongs to other organizations" in refused.content.decode()
    assert MfaDevice.objects.filter(user=admin.user).exists()
    make_domain(org, "example.com")
    client.post(f"/o/acme/settings/sso/members/{admin.pk}/reset-two-factor/")
    assert not MfaDevice.objects.filter(user=admin.user).exists()


def test_wrong_codes_count_across_sign_in_attempts(client, org, member, settings):
    import pyotp

    admin = member("admin")
    client.force_login(admin.user)
    secret, _codes = _enrol(client)
    client.logout()
    _password(client, "admin@acme.test")
    for _ in range(3):
        client.post("/accounts/two-factor/verify/", {"code": "000000"})
    _password(client, "admin@acme.test")  # starting again does not reset the count
    for _ in range(2):
        client.post("/accounts/two-factor/verify/", {"code": "000000"})
    _password(client, "admin@acme.test")
    import datetime as dt

    import time_machine

    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)):
        refused = client.post("/accounts/two-factor/verify/", {"code": pyotp.TOTP(secret).now()}, follow=True)
    assert "Too many wrong codes" in refused.content.decode()
    assert "_auth_user_id" not in client.session
