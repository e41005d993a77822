"""SAML 2.0 sign-in against a real pysaml2 identity provider on 127.0.0.1 (signed with a generated key)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from thalian.models import AuditEvent, Membership, User
from thalian.permissions import Role

from .conftest import make_domain, saml_idp_initiated, saml_sign_in

pytestmark = pytest.mark.django_db


def test_sp_initiated_saml_sign_in_creates_a_jit_member(client, org, saml_provider, saml_idp):
    make_domain(org)
    response = saml_sign_in(client, "alice@example.com", next_url="/o/acme/")
    assert response.status_code == 302, response.content.decode()[:3000]
    assert response.url == "/o/acme/"
    membership = Membership.objects.get(user__email="alice@example.com", organization=org)
    assert membership.role == Role.REVIEWER
    assert client.get("/o/acme/").status_code == 200
    event = AuditEvent.objects.get(organization=org, action="sso_login")
    assert event.details["protocol"] == "saml" and event.actor_email == "alice@example.com"


def test_idp_initiated_saml_sign_in_works(client, org, saml_provider, saml_idp, member):
    make_domain(org)
    existing = member("viewer", email="alice@example.com")
    response = saml_idp_initiated(client, saml_idp, org)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert response.url == "/o/acme/"
    existing.refresh_from_db()
    assert existing.role == Role.VIEWER  # an existing member keeps the role
    assert not AuditEvent.objects.filter(organization=org, action="jit_membership_created").exists()


def test_a_replayed_assertion_is_refused(client, org, saml_provider, saml_idp):
    import requests

    from .conftest import _form_fields

    make_domain(org)
    page = requests.get(
        f"{saml_idp.base_url}/idp-initiated",
        params={"sp": "http://testserver/sso/saml/acme/metadata/", "acs": "http://testserver/sso/saml/acme/acs/"},
        timeout=10,
    ).text
    _action, fields = _form_fields(page)
    assert client.post("/sso/saml/acme/acs/", fields).status_code == 302
    client.logout()
    again = client.post("/sso/saml/acme/acs/", fields)
    assert again.status_code == 403 and "already used" in again.content.decode()


def test_an_unsigned_assertion_is_refused(client, org, saml_provider, saml_idp):
    make_domain(org)
    saml_idp.sign = False
    response = saml_idp_initiated(client, saml_idp, org)
    assert response.status_code == 403
    assert "not signed" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(organization=org, action="sso_login_failed").exists()


def test_an_assertion_for_another_audience_is_refused(client, org, saml_provider, saml_idp):
    make_domain(org)
    saml_idp.audience = "https://other-service.example/saml"
    response = saml_idp_initiated(client, saml_idp, org)
    assert response.status_code == 403
    assert "audience" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_an_expired_assertion_is_refused(client, org, saml_provider, saml_idp):
    make_domain(org)
    saml_idp.lifetime_minutes = 2
    import requests

    from .conftest import _form_fields

    page = requests.get(
        f"{saml_idp.base_url}/idp-initiated",
        params={"sp": "http://testserver/sso/saml/acme/metadata/", "acs": "http://testserver/sso/saml/acme/acs/"},
        timeout=10,
    ).text
    _action, fields = _form_fields(page)
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)):
        response = client.post("/sso/saml/acme/acs/", fields)
    assert response.status_code == 403
    assert "expired" in response.content.decode()
    assert not User.objects.filter(email="alice@example.com").exists()


def test_a_response_signed_by_another_key_is_refused(client, org, saml_provider, saml_idp, tmp_path):
    from tests.fakes.saml_idp import self_signed_pair

    make_domain(org)
    saml_idp.key_file, saml_idp.cert_file = self_signed_pair(tmp_path, "attacker")
    response = saml_idp_initiated(client, saml_idp, org)
    assert response.status_code == 403
    assert "not signed by the identity provider" in response.content.decode()


def test_idp_initiated_relay_state_opens_a_thalian_page_but_not_another_site(client, org, saml_provider, saml_idp):
    make_domain(org)
    assert saml_idp_initiated(client, saml_idp, org, relay="/o/acme/").url == "/o/acme/"
    client.logout()
    assert saml_idp_initiated(client, saml_idp, org, relay="https://evil.example/").url == "/o/acme/"


def test_an_idp_group_attribute_maps_to_a_role(client, org, saml_provider, saml_idp):
    from thalian.tenancy import scopes_disabled

    make_domain(org)
    with scopes_disabled():
        saml_provider.groups_claim = "groups"
        saml_provider.role_mapping = {"auditors": Role.AUDITOR}
        saml_provider.save()
    saml_idp.user = {"email": "audra@example.com", "groups": ["auditors", "staff"]}
    assert saml_idp_initiated(client, saml_idp, org).status_code == 302
    assert Membership.objects.get(user__email="audra@example.com").role == Role.AUDITOR
