"""OpenID Connect sign-in against a real OIDC provider on 127.0.0.1 (oidc-provider-mock)."""

from __future__ import annotations

import pytest

from sso.models import SsoIdentity
from thalian.models import AuditEvent, Membership, User
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .conftest import make_domain, oidc_sign_in

pytestmark = pytest.mark.django_db


def test_oidc_sign_in_creates_a_jit_member_with_the_default_role(client, org, oidc_provider):
    make_domain(org)
    response = oidc_sign_in(client, "alice@example.com")
    assert response.status_code == 302 and response.url == "/o/acme/"
    user = User.objects.get(email="alice@example.com")
    assert not user.has_usable_password()
    assert Membership.objects.get(user=user, organization=org).role == Role.REVIEWER
    assert client.get("/o/acme/").status_code == 200
    actions = set(AuditEvent.objects.filter(organization=org).values_list("action", flat=True))
    assert {"jit_membership_created", "sso_login", "login"} <= actions
    with scopes_disabled():
        assert SsoIdentity.objects.get(provider=oidc_provider).subject == "alice@example.com"


def test_an_address_the_provider_has_not_verified_is_refused(client, org, oidc_provider, oidc_idp):
    make_domain(org)
    oidc_idp.set_user("eve@example.com", email="eve@example.com", email_verified=False)
    response = oidc_sign_in(client, "eve@example.com")
    assert response.status_code == 403
    assert "has not verified the e-mail address" in response.content.decode()
    assert not User.objects.filter(email="eve@example.com").exists()


def test_next_is_kept_through_the_identity_provider_but_never_leaves_thalian(client, org, oidc_provider):
    make_domain(org)
    assert oidc_sign_in(client, "alice@example.com", next_url="/o/acme/").url == "/o/acme/"
    client.logout()
    assert oidc_sign_in(client, "alice@example.com", next_url="https://evil.example/").url == "/o/acme/"
