"""GET/PUT /api/v1/orgs/<slug>/sso/, Test connection, verified domains over DNS, two-factor reset; outsiders
get 404 and roles without the permission 403."""

from __future__ import annotations

import pytest
from django.db import connection

from sso.models import IdentityProvider, SsoSettings, VerifiedDomain
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .conftest import make_domain, make_provider

pytestmark = pytest.mark.django_db


def test_get_shows_settings_providers_domains_and_the_addresses_to_register(api_for, member, org, oidc_provider):
    make_domain(org)
    data = api_for(member(Role.SUPER_ADMIN)).get("/api/v1/orgs/acme/sso/").json()
    assert data["enforce_sso"] is False and data["jit_default_role"] == "reviewer"
    provider = data["providers"][0]
    assert provider["id"] == str(oidc_provider.public_id) and provider["has_client_secret"] is True
    assert "client_secret" not in provider
    assert data["domains"][0]["domain"] == "example.com" and data["domains"][0]["verified"] is True
    assert data["service_provider"]["saml_acs_url"] == "http://testserver/sso/saml/acme/acs/"
    assert data["service_provider"]["oidc_redirect_uri"] == "http://testserver/sso/oidc/callback/"


def test_put_creates_oidc_and_saml_providers_with_an_encrypted_secret(api_for, member, org, oidc_idp, saml_idp):
    api = api_for(member(Role.SUPER_ADMIN))
    body = {
        "enforce_sso": False, "jit_enabled": True, "jit_default_role": "viewer", "break_glass_emails": [],
        "require_mfa_for_admins": True,
        "providers": [
            {"name": "Okta", "protocol": "oidc", "issuer": oidc_idp.issuer, "client_id": "abc", "client_secret": "topsecret"},
            {"name": "ADFS", "protocol": "saml", "metadata_url": f"{saml_idp.base_url}/metadata",
             "groups_claim": "groups", "role_mapping": {"auditors": "auditor"}},
        ],
    }
    response = api.put("/api/v1/orgs/acme/sso/", body, format="json")
    assert response.status_code == 200, response.json()
    data = response.json()
    assert {p["name"] for p in data["providers"]} == {"Okta", "ADFS"}
    saml = next(p for p in data["providers"] if p["protocol"] == "saml")
    assert saml["idp_entity_id"] == saml_idp.entity_id
    with scopes_disabled():
        okta = IdentityProvider.objects.get(name="Okta")
    assert okta.client_secret == "topsecret"
    with connection.cursor() as cursor:
        cursor.execute("SELECT client_secret FROM sso_identityprovider WHERE id = %s", [okta.pk])
        assert "topsecret" not in cursor.fetchone()[0]
    assert AuditEvent.objects.filter(organization=org, action="sso_settings_changed").count() == 3
    # A PUT without the secret keeps it; a provider left out is deleted.
    body["providers"] = [{"id": str(okta.public_id), "name": "Okta", "protocol": "oidc", "issuer": oidc_idp.issuer, "client_id": "abc"}]
    assert api.put("/api/v1/orgs/acme/sso/", body, format="json").status_code == 200
    with scopes_disabled():
        assert list(IdentityProvider.objects.values_list("name", flat=True)) == ["Okta"]
        assert IdentityProvider.objects.get().client_secret == "topsecret"


def test_put_with_bad_input_names_the_problem_and_changes_nothing(api_for, member, org, saml_idp):
    api = api_for(member(Role.SUPER_ADMIN))
    body = {
        "enforce_sso": True, "jit_enabled": True, "jit_default_role": "reviewer", "break_glass_emails": [],
        "require_mfa_for_admins": False,
        "providers": [{"name": "Broken", "protocol": "saml", "metadata_xml": "<not-metadata/>"}],
    }
    response = api.put("/api/v1/orgs/acme/sso/", body, format="json")
    assert response.status_code == 400
    assert "providers[0].metadata_xml" in response.json()["errors"]
    body["providers"] = []
    response = api.put("/api/v1/orgs/acme/sso/", body, format="json")
    assert response.status_code == 400
    assert "Verify at least one domain" in response.json()["detail"]
    with scopes_disabled():
        assert not IdentityProvider.objects.exists() and not SsoSettings.objects.exists()


def test_break_glass_addresses_must_be_super_admins(api_for, member, org):
    api = api_for(member(Role.SUPER_ADMIN))
    member(Role.ADMIN)
    body = {"enforce_sso": False, "jit_enabled": True, "jit_default_role": "reviewer",
            "break_glass_emails": ["admin@acme.test"], "require_mfa_for_admins": False, "providers": []}
    response = api.put("/api/v1/orgs/acme/sso/", body, format="json")
    assert response.status_code == 400 and "not super admins" in response.json()["detail"]


def test_jit_cannot_hand_out_super_admin(api_for, member, org):
    body = {"enforce_sso": False, "jit_enabled": True, "jit_default_role": "super_admin",
            "break_glass_emails": [], "require_mfa_for_admins": False, "providers": []}
    response = api_for(member(Role.SUPER_ADMIN)).put("/api/v1/orgs/acme/sso/", body, format="json")
    assert response.status_code == 400 and "jit_default_role" in response.json()["errors"]


def test_test_connection_reports_what_works_and_what_is_wrong(api_for, member, org, oidc_provider, httpserver):
    api = api_for(member(Role.SUPER_ADMIN))
    ok = api.post(f"/api/v1/orgs/acme/sso/providers/{oidc_provider.public_id}/test/").json()
    assert ok["ok"] is True and "Issuer" in " ".join(ok["messages"])
    # A discovery document that names another issuer (a mix-up or a copied document) is refused.
    httpserver.expect_request("/.well-known/openid-configuration").respond_with_json({
        "issuer": "https://elsewhere.example", "authorization_endpoint": "https://elsewhere.example/a",
        "token_endpoint": "https://elsewhere.example/t", "jwks_uri": "https://elsewhere.example/k",
    })
    wrong = make_provider(org, protocol="oidc", name="Wrong issuer", issuer=httpserver.url_for("/").rstrip("/"), client_id="x")
    bad = api.post(f"/api/v1/orgs/acme/sso/providers/{wrong.public_id}/test/").json()
    assert bad["ok"] is False and "names the issuer" in bad["messages"][0]
    gone = make_provider(org, protocol="oidc", name="Gone", issuer="http://127.0.0.1:9/", client_id="x")
    down = api.post(f"/api/v1/orgs/acme/sso/providers/{gone.public_id}/test/").json()
    assert down["ok"] is False and "could not be reached" in down["messages"][0]


def test_a_domain_is_verified_by_its_dns_txt_record(api_for, member, org, dns_server):
    api = api_for(member(Role.SUPER_ADMIN))
    claim = api.post("/api/v1/orgs/acme/sso/domains/", {"domain": "Example.COM"}, format="json").json()
    assert claim["domain"] == "example.com" and claim["verified"] is False
    refused = api.post(f"/api/v1/orgs/acme/sso/domains/{claim['id']}/verify/")
    assert refused.status_code == 400 and "found no TXT record" in refused.json()["detail"]
    dns_server.records[claim["txt_record_name"]] = ["v=spf1 -all", claim["txt_record_value"]]
    verified = api.post(f"/api/v1/orgs/acme/sso/domains/{claim['id']}/verify/")
    assert verified.status_code == 200 and verified.json()["verified"] is True
    assert AuditEvent.objects.filter(organization=org, action="domain_verified").exists()


def test_a_verified_domain_belongs_to_one_organization(api_for, member, org, other_org, outsider, dns_server):
    make_domain(other_org, "example.com")
    refused = api_for(member(Role.SUPER_ADMIN)).post("/api/v1/orgs/acme/sso/domains/", {"domain": "example.com"}, format="json")
    assert refused.status_code == 400 and "verified by another organization" in refused.json()["detail"]


def test_the_first_organization_to_verify_wins(api_for, member, org, other_org, dns_server):
    mine = make_domain(org, "example.com", verified=False)
    theirs = make_domain(other_org, "example.com", verified=False)
    dns_server.records[mine.record_name] = [mine.record_value, theirs.record_value]
    from sso import services

    with scopes_disabled():
        services.domain_verify(actor=member(Role.SUPER_ADMIN, organization=other_org, email="boss@globex.test"), domain=theirs)
    response = api_for(member(Role.SUPER_ADMIN)).post(f"/api/v1/orgs/acme/sso/domains/{mine.pk}/verify/")
    assert response.status_code == 400 and "another organization first" in response.json()["detail"]


def test_bad_domains_are_refused_with_a_reason(api_for, member, org):
    api = api_for(member(Role.SUPER_ADMIN))
    for bad in ("not a domain", "localhost", "exa mple.com", "-x.com"):
        response = api.post("/api/v1/orgs/acme/sso/domains/", {"domain": bad}, format="json")
        assert response.status_code == 400 and "domain" in response.json()["errors"], bad
    with scopes_disabled():
        assert not VerifiedDomain.objects.exists()


def test_domain_list_query_count_does_not_grow(api_for, member, org, django_assert_max_num_queries):
    api = api_for(member(Role.SUPER_ADMIN))
    for i in range(3):
        make_domain(org, f"d{i}.example.com", verified=False)
    with django_assert_max_num_queries(6) as few:
        assert len(api.get("/api/v1/orgs/acme/sso/domains/").json()) == 3
    for i in range(3, 30):
        make_domain(org, f"d{i}.example.com", verified=False)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(api.get("/api/v1/orgs/acme/sso/domains/").json()) == 30


def test_sso_config_query_count_does_not_grow(api_for, member, org, django_assert_max_num_queries):
    api = api_for(member(Role.SUPER_ADMIN))
    make_domain(org)
    make_provider(org, protocol="oidc", name="p0", issuer="https://idp.example.com", client_id="x")
    with django_assert_max_num_queries(10) as few:
        api.get("/api/v1/orgs/acme/sso/")
    for i in range(1, 20):
        make_domain(org, f"d{i}.example.com")
        make_provider(org, protocol="oidc", name=f"p{i}", issuer="https://idp.example.com", client_id="x")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(api.get("/api/v1/orgs/acme/sso/").json()["providers"]) == 20


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/v1/orgs/acme/sso/"),
        ("put", "/api/v1/orgs/acme/sso/"),
        ("get", "/api/v1/orgs/acme/sso/domains/"),
        ("post", "/api/v1/orgs/acme/sso/domains/"),
    ],
)
def test_outsiders_get_404_and_admins_get_403(api_for, member, org, outsider, method, path):
    assert getattr(api_for(outsider), method)(path, {}, format="json").status_code == 404
    assert getattr(api_for(member(Role.ADMIN)), method)(path, {}, format="json").status_code == 403


def test_object_endpoints_answer_404_for_other_organizations_objects(api_for, member, org, other_org, outsider):
    theirs = make_domain(other_org, "globex.example", verified=False)
    their_idp = make_provider(other_org, protocol="oidc", name="G", issuer="https://idp.example.com", client_id="x")
    api = api_for(member(Role.SUPER_ADMIN))
    assert api.post(f"/api/v1/orgs/acme/sso/domains/{theirs.pk}/verify/").status_code == 404
    assert api.delete(f"/api/v1/orgs/acme/sso/domains/{theirs.pk}/").status_code == 404
    assert api.post(f"/api/v1/orgs/acme/sso/providers/{their_idp.public_id}/test/").status_code == 404
    assert api.delete(f"/api/v1/orgs/acme/members/{outsider.pk}/two-factor/").status_code == 404
    admin = api_for(member(Role.ADMIN))
    mine = make_domain(org, "acme.example", verified=False)
    assert admin.post(f"/api/v1/orgs/acme/sso/domains/{mine.pk}/verify/").status_code == 403
    assert admin.delete(f"/api/v1/orgs/acme/members/{outsider.pk}/two-factor/").status_code == 403


def test_two_factor_reset_through_the_api(api_for, member, org):
    import pyotp

    from sso import mfa

    admin = member(Role.ADMIN)
    device = mfa.mfa_setup_start(user=admin.user)
    mfa.mfa_setup_confirm(user=admin.user, code=pyotp.TOTP(device.secret).now())
    api = api_for(member(Role.SUPER_ADMIN))
    assert api.delete(f"/api/v1/orgs/acme/members/{admin.pk}/two-factor/").status_code == 204
    again = api.delete(f"/api/v1/orgs/acme/members/{admin.pk}/two-factor/")
    assert again.status_code == 400 and "no two-factor sign-in to reset" in again.json()["detail"]


def test_the_schema_documents_the_sso_endpoints(client):
    paths = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert "put" in paths["/api/v1/orgs/{org_slug}/sso/"]
    assert "post" in paths["/api/v1/orgs/{org_slug}/sso/domains/{id}/verify/"]
    assert "post" in paths["/api/v1/orgs/{org_slug}/sso/providers/{public_id}/test/"]
    assert "delete" in paths["/api/v1/orgs/{org_slug}/members/{id}/two-factor/"]


def test_test_connection_of_a_saml_provider_fetches_its_metadata(api_for, member, org, saml_idp, httpserver):
    api = api_for(member(Role.SUPER_ADMIN))
    good = make_provider(org, protocol="saml", name="IdP", metadata_url=f"{saml_idp.base_url}/metadata")
    ok = api.post(f"/api/v1/orgs/acme/sso/providers/{good.public_id}/test/").json()
    assert ok == {"ok": True, "messages": [f"Metadata describes the identity provider {saml_idp.entity_id} with a signing certificate."]}
    httpserver.expect_request("/md").respond_with_data("<html>login page</html>", content_type="text/html")
    bad = make_provider(org, protocol="saml", name="Not metadata", metadata_url=httpserver.url_for("/md"))
    result = api.post(f"/api/v1/orgs/acme/sso/providers/{bad.public_id}/test/").json()
    assert result["ok"] is False
    assert result["messages"][0].startswith("The SAML metadata ")  # is not valid XML metadata / describes no IdP
