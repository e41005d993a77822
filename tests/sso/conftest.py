"""Single sign-on fixtures: real identity providers on loopback (oidc-provider-mock for OpenID Connect, a
pysaml2 IdP for SAML), a DNS server for domain verification, and helpers that walk the browser redirects."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.utils import timezone

from sso.models import IdentityProvider, Protocol, VerifiedDomain
from tests.fakes.dns_server import TxtDnsServer
from tests.fakes.saml_idp import SamlIdp
from thalian.tenancy import scopes_disabled


@pytest.fixture(autouse=True)
def _sso_site(settings):
    settings.SITE_URL = "http://testserver"
    settings.ALLOW_INSECURE_HTTP_INTEGRATIONS = True
    settings.SSO_HTTP_TIMEOUT_SECONDS = 5


@pytest.fixture
def dns_server(settings):
    server = TxtDnsServer().start()
    settings.SSO_DNS_NAMESERVERS = [f"127.0.0.1:{server.port}"]
    yield server
    server.stop()


class OidcIdp:
    def __init__(self, server) -> None:
        self.issuer = f"http://localhost:{server.server_port}"

    def set_user(self, sub: str, **claims) -> None:
        requests.put(f"{self.issuer}/users/{sub}", json=claims, timeout=5).raise_for_status()


@pytest.fixture
def oidc_idp():
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread() as server:
        yield OidcIdp(server)


@pytest.fixture
def saml_idp(tmp_path, client, db, org):
    idp = SamlIdp(tmp_path)
    idp.sp_metadata = [client.get(f"/sso/saml/{org.slug}/metadata/").content.decode()]
    idp.start()
    yield idp
    idp.stop()


def make_domain(org, domain: str = "example.com", *, verified: bool = True) -> VerifiedDomain:
    with scopes_disabled():
        return VerifiedDomain.objects.create(
            organization=org, domain=domain, verified_at=timezone.now() if verified else None
        )


def make_provider(org, *, protocol: str, **fields) -> IdentityProvider:
    with scopes_disabled():
        return IdentityProvider.objects.create(organization=org, protocol=protocol, **fields)


@pytest.fixture
def oidc_provider(org, oidc_idp):
    return make_provider(
        org, protocol=Protocol.OIDC, name="Example OIDC", issuer=oidc_idp.issuer, client_id="thalian-acme",
        client_secret="s3cret",
    )


@pytest.fixture
def saml_provider(org, saml_idp):
    from sso.saml import idp_entity_id_from_metadata

    xml = saml_idp.metadata()
    return make_provider(
        org, protocol=Protocol.SAML, name="Example SAML", metadata_xml=xml, idp_entity_id=idp_entity_id_from_metadata(xml)
    )


def sso_start(client, email: str, *, next_url: str = "") -> str:
    """Types the e-mail on the sign-in page; returns the address Thalian continues to (its SSO start)."""
    page = client.post("/accounts/login/", {"username": email, "password": "", "next": next_url})
    assert page.status_code == 200, page.content.decode()[:2000]
    match = re.search(r'href="([^"]+)" data-sso-start', page.content.decode())
    assert match, page.content.decode()[:3000]
    return unescape(match.group(1))


def oidc_sign_in(client, email: str, *, sub: str | None = None, next_url: str = ""):
    """Types the e-mail on the sign-in page, follows Thalian to the OIDC provider, signs in there as `sub`,
    and brings the provider's redirect back to Thalian. Returns Thalian's response to the callback."""
    to_idp = client.get(sso_start(client, email, next_url=next_url))
    assert to_idp.status_code == 302, to_idp.content.decode()[:2000]
    authorize = to_idp.url
    back = requests.post(authorize, data={"sub": sub or email}, allow_redirects=False, timeout=5)
    assert back.status_code == 302, back.text[:2000]
    callback = urlsplit(back.headers["Location"])
    assert callback.netloc == "testserver", callback
    return client.get(callback.path, parse_qs(callback.query) and {k: v[0] for k, v in parse_qs(callback.query).items()})


def _form_fields(page: str) -> tuple[str, dict]:
    action = unescape(re.search(r"action='([^']+)'", page).group(1))
    fields = {m.group(1): unescape(m.group(2)) for m in re.finditer(r"name='(\w+)' value='([^']*)'", page)}
    return action, fields


def saml_sign_in(client, email: str, *, next_url: str = ""):
    """E-mail first, then Thalian's AuthnRequest to the IdP, then the IdP's signed response POSTed back."""
    to_idp = client.get(sso_start(client, email, next_url=next_url))
    assert to_idp.status_code == 302, to_idp.content.decode()[:2000]
    page = requests.get(to_idp.url, timeout=10)
    assert page.status_code == 200, page.text[:2000]
    return post_idp_form(client, page.text)


def post_idp_form(client, page: str):
    action, fields = _form_fields(page)
    return client.post(urlsplit(action).path, fields)


def saml_idp_initiated(client, saml_idp, org, *, relay: str = ""):
    page = requests.get(
        f"{saml_idp.base_url}/idp-initiated",
        params={"sp": f"http://testserver/sso/saml/{org.slug}/metadata/", "acs": f"http://testserver/sso/saml/{org.slug}/acs/", "relay": relay},
        timeout=10,
    )
    assert page.status_code == 200, page.text[:2000]
    return post_idp_form(client, page.text)
