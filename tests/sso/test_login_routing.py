"""E-mail-first sign-in: routing to the identity provider, enforced SSO, break-glass super admins, and the
rule that an unverified domain is never linked to an existing account."""

from __future__ import annotations

import pytest
import requests

from sso.models import IdentityProvider, Protocol, SsoIdentity, SsoSettings
from thalian.models import AuditEvent, Membership, User
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .conftest import make_domain, make_provider, oidc_sign_in, sso_start

pytestmark = pytest.mark.django_db


def _enforce(org, **extra):
    with scopes_disabled():
        SsoSettings.objects.update_or_create(organization=org, defaults={"enforce_sso": True, **extra})


def test_an_address_without_sso_is_asked_for_its_password(client, org, member):
    member("viewer")
    response = client.post("/accounts/login/", {"username": "viewer@acme.test", "password": ""})
    assert response.status_code == 200
    assert "Enter your password." in response.content.decode()
    # and the password then signs in as before
    assert client.post("/accounts/login/", {"username": "viewer@acme.test", "password": "pw"}).status_code == 302


def test_the_sso_button_says_when_a_domain_has_no_single_sign_on(client, org):
    response = client.post("/accounts/login/", {"username": "someone@nowhere.test", "password": "", "sso": "1"})
    assert response.status_code == 200
    assert "Single sign-on is not set up for nowhere.test" in response.content.decode()


def test_an_sso_address_is_sent_to_its_identity_provider(client, org, oidc_provider, oidc_idp):
    make_domain(org)
    start = sso_start(client, "Alice@Example.com")
    assert start.startswith(f"/sso/oidc/{oidc_provider.public_id}/start/")
    to_idp = client.get(start)
    assert to_idp.url.startswith(f"{oidc_idp.issuer}/oauth2/authorize?")
    assert "login_hint=alice%40example.com" in to_idp.url and "code_challenge_method=S256" in to_idp.url


def test_several_providers_are_offered_to_choose_from(client, org, oidc_provider):
    make_domain(org)
    make_provider(org, protocol=Protocol.OIDC, name="Second IdP", issuer="https://idp2.example.com", client_id="x")
    response = client.post("/accounts/login/", {"username": "alice@example.com", "password": ""})
    page = response.content.decode()
    assert response.status_code == 200 and "Continue with Example OIDC" in page and "Continue with Second IdP" in page


def test_enforced_sso_refuses_a_password_without_checking_it(client, org, member, oidc_provider):
    make_domain(org)
    person = member("admin", email="bob@example.com")
    _enforce(org)
    response = client.post("/accounts/login/", {"username": "bob@example.com", "password": "pw"})
    assert response.status_code == 200
    assert "requires single sign-on" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # not counted as a failed password either
    assert not AuditEvent.objects.filter(action="login_failed").exists()
    assert person.user.check_password("pw")


def test_a_break_glass_super_admin_may_still_use_a_password(client, org, member, oidc_provider):
    make_domain(org)
    member("super_admin", email="root@example.com")
    _enforce(org, break_glass_emails=["root@example.com"])
    response = client.post("/accounts/login/", {"username": "root@example.com", "password": "pw"})
    assert response.status_code == 302


def test_a_break_glass_address_that_is_no_longer_super_admin_is_refused(client, org, member, oidc_provider):
    make_domain(org)
    member("admin", email="root@example.com")
    _enforce(org, break_glass_emails=["root@example.com"])
    response = client.post("/accounts/login/", {"username": "root@example.com", "password": "pw"})
    assert response.status_code == 200 and "requires single sign-on" in response.content.decode()


def test_enforced_sso_still_signs_in_through_the_identity_provider(client, org, member, oidc_provider):
    make_domain(org)
    person = member("admin", email="bob@example.com")
    _enforce(org)
    response = oidc_sign_in(client, "bob@example.com")
    assert response.status_code == 302
    assert int(client.session["_auth_user_id"]) == person.user.pk


def test_an_unverified_domain_is_refused_and_never_linked_to_an_existing_account(client, org, member, oidc_provider, oidc_idp):
    make_domain(org)  # example.com is verified, other.test is only claimed
    make_domain(org, "other.test", verified=False)
    victim = member("super_admin", email="ceo@other.test")
    # The sign-in page does not route other.test to the IdP, so drive the IdP directly with that address.
    client.get(f"/sso/oidc/{oidc_provider.public_id}/start/")
    start = client.get(f"/sso/oidc/{oidc_provider.public_id}/start/")
    back = requests.post(start.url, data={"sub": "ceo@other.test"}, allow_redirects=False, timeout=5)
    from urllib.parse import parse_qs, urlsplit

    callback = urlsplit(back.headers["Location"])
    response = client.get(callback.path, {k: v[0] for k, v in parse_qs(callback.query).items()})
    assert response.status_code == 403
    assert "other.test is not a verified domain of Acme" in response.content.decode()
    assert "_auth_user_id" not in client.session
    with scopes_disabled():
        assert not SsoIdentity.objects.filter(user=victim.user).exists()
    assert AuditEvent.objects.filter(organization=org, action="sso_login_refused").exists()


def test_jit_off_refuses_people_who_are_not_members(client, org, oidc_provider):
    make_domain(org)
    with scopes_disabled():
        SsoSettings.objects.create(organization=org, jit_enabled=False)
    response = oidc_sign_in(client, "newcomer@example.com")
    assert response.status_code == 403
    assert "ask an administrator to invite" in response.content.decode()
    assert not Membership.objects.filter(user__email="newcomer@example.com").exists()


def test_an_idp_group_maps_to_a_role(client, org, oidc_idp):
    make_domain(org)
    make_provider(
        org, protocol=Protocol.OIDC, name="Groups IdP", issuer=oidc_idp.issuer, client_id="c", client_secret="s",
        groups_claim="groups", role_mapping={"sec-team": Role.SECURITY_ANALYST, "audit": Role.AUDITOR},
    )
    oidc_idp.set_user("carol@example.com", email="carol@example.com", groups=["audit", "sec-team"])
    response = oidc_sign_in(client, "carol@example.com")
    assert response.status_code == 302
    # the most powerful mapped role wins
    assert Membership.objects.get(user__email="carol@example.com").role == Role.SECURITY_ANALYST


def test_the_same_subject_signs_in_as_the_same_user(client, org, oidc_provider):
    make_domain(org)
    oidc_sign_in(client, "alice@example.com")
    client.logout()
    oidc_sign_in(client, "alice@example.com")
    assert User.objects.filter(email="alice@example.com").count() == 1
    with scopes_disabled():
        assert SsoIdentity.objects.filter(provider=oidc_provider).count() == 1
    assert AuditEvent.objects.filter(organization=org, action="sso_login").count() == 2


def test_a_callback_cannot_be_used_twice(client, org, oidc_provider):
    make_domain(org)
    to_idp = client.get(sso_start(client, "alice@example.com"))
    back = requests.post(to_idp.url, data={"sub": "alice@example.com"}, allow_redirects=False, timeout=5)
    from urllib.parse import parse_qs, urlsplit

    callback = urlsplit(back.headers["Location"])
    params = {k: v[0] for k, v in parse_qs(callback.query).items()}
    assert client.get(callback.path, params).status_code == 302
    client.logout()
    again = client.get(callback.path, params)
    assert again.status_code == 400 and "expired or was already used" in again.content.decode()


def test_an_expired_id_token_is_refused(client, org):
    import datetime as dt

    from oidc_provider_mock import run_server_in_thread

    make_domain(org)
    with run_server_in_thread(access_token_max_age=dt.timedelta(seconds=-300)) as server:
        make_provider(
            org, protocol=Protocol.OIDC, name="Stale IdP", issuer=f"http://localhost:{server.server_port}",
            client_id="c", client_secret="s",
        )
        response = oidc_sign_in(client, "alice@example.com")
    assert response.status_code == 403
    assert "ID token has expired" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_disabled_provider_is_not_offered(client, org, oidc_provider):
    make_domain(org)
    with scopes_disabled():
        IdentityProvider.objects.filter(pk=oidc_provider.pk).update(enabled=False)
    response = client.post("/accounts/login/", {"username": "alice@example.com", "password": ""})
    assert response.status_code == 200 and "Enter your password." in response.content.decode()
    assert client.get(f"/sso/oidc/{oidc_provider.public_id}/start/").status_code == 404


def test_enforced_sso_refuses_creating_a_password_account_from_an_invitation(client, org, member, oidc_provider):
    from thalian.services import invitation_create

    make_domain(org)
    admin = member("admin", email="admin@example.com")
    with scopes_disabled():
        _, raw = invitation_create(actor=admin, email="newcomer@example.com", role=Role.REVIEWER)
    _enforce(org)
    url = f"/invitations/{raw}/"
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert "requires single sign-on" in body and "Sign in with single sign-on to accept" in body
    assert 'name="password1"' not in body
    response = client.post(url, {"name": "New", "password1": "a-long-Passw0rd!", "password2": "a-long-Passw0rd!"})
    assert "requires single sign-on" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert not User.objects.filter(email="newcomer@example.com").exists()
