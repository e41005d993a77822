"""The Single sign-on settings page: providers, domains, policy; outsiders 404, other roles 403."""

from __future__ import annotations

import pytest

from sso.models import IdentityProvider, SsoSettings, VerifiedDomain
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .conftest import make_domain, make_provider

pytestmark = pytest.mark.django_db

PAGES = [
    ("get", "/o/acme/settings/sso/"),
    ("post", "/o/acme/settings/sso/"),
    ("get", "/o/acme/settings/sso/providers/new/oidc/"),
    ("post", "/o/acme/settings/sso/domains/"),
]


@pytest.mark.parametrize("method,path", PAGES)
def test_outsiders_get_404_and_admins_get_403(client, member, org, outsider, method, path):
    client.force_login(outsider.user)
    assert getattr(client, method)(path).status_code == 404
    client.force_login(member(Role.ADMIN).user)
    assert getattr(client, method)(path).status_code == 403


def test_object_pages_answer_404_for_another_organizations_objects(client, member, org, other_org):
    theirs = make_domain(other_org, "globex.example", verified=False)
    their_idp = make_provider(other_org, protocol="oidc", name="G", issuer="https://idp.example.com", client_id="x")
    client.force_login(member(Role.SUPER_ADMIN).user)
    assert client.get(f"/o/acme/settings/sso/providers/{their_idp.public_id}/").status_code == 404
    assert client.post(f"/o/acme/settings/sso/providers/{their_idp.public_id}/test/").status_code == 404
    assert client.post(f"/o/acme/settings/sso/providers/{their_idp.public_id}/delete/").status_code == 404
    assert client.post(f"/o/acme/settings/sso/domains/{theirs.pk}/verify/").status_code == 404
    assert client.post(f"/o/acme/settings/sso/domains/{theirs.pk}/delete/").status_code == 404
    with scopes_disabled():
        assert IdentityProvider.objects.filter(pk=their_idp.pk).exists()
        assert VerifiedDomain.objects.filter(pk=theirs.pk).exists()


def test_a_super_admin_adds_an_oidc_provider_on_the_page(client, member, org, oidc_idp):
    client.force_login(member(Role.SUPER_ADMIN).user)
    response = client.post("/o/acme/settings/sso/providers/new/oidc/", {
        "name": "Okta", "enabled": "on", "issuer": oidc_idp.issuer, "client_id": "abc", "client_secret": "xyz",
        "scopes": "openid email", "groups_claim": "groups", "role_mapping": "Auditors = auditor\nSec = security_analyst",
    })
    assert response.status_code == 302
    with scopes_disabled():
        provider = IdentityProvider.objects.get(name="Okta")
    assert provider.client_secret == "xyz" and provider.role_mapping == {"Auditors": "auditor", "Sec": "security_analyst"}
    page = client.get("/o/acme/settings/sso/").content.decode()
    assert "Okta" in page and "http://testserver/sso/oidc/callback/" in page
    tested = client.post(f"/o/acme/settings/sso/providers/{provider.public_id}/test/").content.decode()
    assert "works" in tested and "Discovery document found" in tested
    # editing without a secret keeps the saved one
    client.post(f"/o/acme/settings/sso/providers/{provider.public_id}/", {
        "name": "Okta", "enabled": "on", "issuer": oidc_idp.issuer, "client_id": "abc2", "scopes": "openid email",
    })
    provider.refresh_from_db()
    assert provider.client_id == "abc2" and provider.client_secret == "xyz"


def test_a_provider_form_with_errors_says_what_is_wrong(client, member, org):
    client.force_login(member(Role.SUPER_ADMIN).user)
    response = client.post("/o/acme/settings/sso/providers/new/saml/", {"name": "X", "metadata_xml": "<nope/>", "role_mapping": "bad line"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "write it as group = role" in page
    response = client.post("/o/acme/settings/sso/providers/new/saml/", {"name": "X", "metadata_xml": "<nope/>"})
    assert "describes no identity provider" in response.content.decode() or "not valid XML metadata" in response.content.decode()
    with scopes_disabled():
        assert not IdentityProvider.objects.exists()


def test_the_page_claims_and_verifies_a_domain_over_dns(client, member, org, dns_server):
    client.force_login(member(Role.SUPER_ADMIN).user)
    assert client.post("/o/acme/settings/sso/domains/", {"domain": "example.com"}).status_code == 302
    with scopes_disabled():
        claim = VerifiedDomain.objects.get()
    page = client.get("/o/acme/settings/sso/").content.decode()
    assert claim.record_name in page and claim.record_value in page
    failed = client.post(f"/o/acme/settings/sso/domains/{claim.pk}/verify/", follow=True).content.decode()
    assert "not verified yet" in failed
    dns_server.records[claim.record_name] = [claim.record_value]
    done = client.post(f"/o/acme/settings/sso/domains/{claim.pk}/verify/", follow=True).content.decode()
    assert "example.com is verified" in done


def test_the_sign_in_policy_is_saved_and_audited(client, member, org, oidc_provider):
    make_domain(org)
    boss = member(Role.SUPER_ADMIN)
    client.force_login(boss.user)
    response = client.post("/o/acme/settings/sso/", {
        "enforce_sso": "on", "jit_enabled": "on", "jit_default_role": "viewer",
        "break_glass_emails": boss.user.email, "require_mfa_for_admins": "on",
    })
    assert response.status_code == 302
    with scopes_disabled():
        saved = SsoSettings.objects.get()
    assert saved.enforce_sso and saved.jit_default_role == "viewer" and saved.break_glass_emails == [boss.user.email]
    event = AuditEvent.objects.get(organization=org, action="sso_settings_changed")
    assert set(event.details["changed"]) >= {"enforce_sso", "jit_default_role", "break_glass_emails"}


def test_sp_metadata_is_published_per_organization(client, org, other_org):
    acme = client.get("/sso/saml/acme/metadata/")
    assert acme.status_code == 200 and acme["Content-Type"] == "application/samlmetadata+xml"
    body = acme.content.decode()
    assert 'entityID="http://testserver/sso/saml/acme/metadata/"' in body
    assert 'Location="http://testserver/sso/saml/acme/acs/"' in body
    assert "globex" in client.get("/sso/saml/globex/metadata/").content.decode()
    assert client.get("/sso/saml/nope/metadata/").status_code == 404


def test_settings_page_query_count_does_not_grow(client, member, org, django_assert_max_num_queries):
    client.force_login(member(Role.SUPER_ADMIN).user)
    make_domain(org)
    make_provider(org, protocol="oidc", name="p0", issuer="https://idp.example.com", client_id="x")
    with django_assert_max_num_queries(20) as few:
        client.get("/o/acme/settings/sso/")
    for i in range(1, 15):
        make_domain(org, f"d{i}.example.com")
        make_provider(org, protocol="oidc", name=f"p{i}", issuer="https://idp.example.com", client_id="x")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get("/o/acme/settings/sso/").status_code == 200


def test_a_missing_xmlsec1_is_reported_at_start_up(settings):
    from sso.checks import xmlsec_installed

    assert xmlsec_installed(None) == []
    settings.SAML_XMLSEC_BINARY = "/nonexistent/xmlsec1"
    assert [w.id for w in xmlsec_installed(None)] == ["sso.W001"]
