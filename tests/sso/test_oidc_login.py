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


def _id_token_from_the_provider(issuer: str, *, client_id: str, nonce: str) -> str:
    """A real ID token minted by the provider on loopback for `client_id` (authorization code flow)."""
    from urllib.parse import parse_qs, urlsplit

    import requests

    back = requests.post(
        f"{issuer}/oauth2/authorize",
        params={"client_id": client_id, "redirect_uri": "https://client.test/cb", "response_type": "code",
                "scope": "openid email", "nonce": nonce, "state": "s"},
        data={"sub": "alice@example.com"}, allow_redirects=False, timeout=5,
    )
    code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
    tokens = requests.post(
        f"{issuer}/oauth2/token", auth=(client_id, "secret"), timeout=5,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": "https://client.test/cb"},
    ).json()
    return tokens["id_token"]


def test_an_id_token_issued_to_another_client_is_refused(oidc_provider, oidc_idp):
    import pytest

    from sso import oidc

    token = _id_token_from_the_provider(oidc_idp.issuer, client_id="someone-else", nonce="n1")
    with pytest.raises(oidc.OidcError, match="aud claim is wrong"):
        oidc.id_token_claims(oidc_provider, id_token=token, nonce="n1")
    # the same kind of token for our client id passes, and a wrong nonce does not
    ours = _id_token_from_the_provider(oidc_idp.issuer, client_id=oidc_provider.client_id, nonce="n2")
    assert oidc.id_token_claims(oidc_provider, id_token=ours, nonce="n2")["sub"] == "alice@example.com"
    with pytest.raises(oidc.OidcError, match="nonce"):
        oidc.id_token_claims(oidc_provider, id_token=ours, nonce="other")


def test_unsigned_and_foreign_signed_id_tokens_are_refused(oidc_provider, oidc_idp):
    import base64
    import json

    import pytest
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    from sso import oidc

    real = _id_token_from_the_provider(oidc_idp.issuer, client_id=oidc_provider.client_id, nonce="n3")
    claims = json.loads(base64.urlsafe_b64decode(real.split(".")[1] + "=="))

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    with pytest.raises(oidc.OidcError, match="signature could not be verified"):
        oidc.id_token_claims(oidc_provider, id_token=unsigned, nonce="n3")
    forged = jwt.encode({"alg": "RS256"}, claims, RSAKey.generate_key(2048))
    with pytest.raises(oidc.OidcError, match="signature could not be verified"):
        oidc.id_token_claims(oidc_provider, id_token=forged, nonce="n3")
