"""Personal API tokens: created in the browser and shown once, stored hashed, scoped, revocable."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from thalian.models import ApiToken, AuditEvent, hash_token
from thalian.tenancy import scopes_disabled

pytestmark = pytest.mark.django_db

URL = reverse("token_list", args=["acme"])


def _create(client, name="CI export"):
    response = client.post(URL, {"name": name})
    assert response.status_code == 200
    match = re.search(r"data-new-token>([^<]+)<", response.content.decode())
    assert match, "new token not shown"
    return response, match.group(1)


def _database_contains(text: str) -> list[str]:
    """Every text column of every platform table that contains `text` (a scan of the real rows)."""
    hits = []
    with connection.cursor() as cursor:
        for table in ("thalian_apitoken", "thalian_auditevent", "thalian_membership", "thalian_user"):
            columns = [c.name for c in connection.introspection.get_table_description(cursor, table)]
            for column in columns:
                cursor.execute(
                    f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)} "
                    f"WHERE CAST({connection.ops.quote_name(column)} AS TEXT) LIKE %s",
                    [f"%{text}%"],
                )
                if cursor.fetchone()[0]:
                    hits.append(f"{table}.{column}")
    return hits


@pytest.mark.parametrize("role", ["super_admin", "admin", "security_analyst", "auditor", "viewer", "reviewer"])
def test_every_member_creates_a_token_shown_once_and_stored_hashed(client_for, member, org, role):
    m = member(role)
    client = client_for(m)
    response, raw = _create(client)
    assert response.headers["Cache-Control"] == "no-store"
    assert raw.startswith("thl_") and len(raw) > 40
    with scopes_disabled():
        token = ApiToken.objects.get(membership=m)
    assert token.token_hash == hash_token(raw) and token.name == "CI export"
    assert _database_contains(raw) == []
    assert _database_contains(raw[10:30]) == []  # not even a fragment beyond the shown prefix
    # Listed afterwards by prefix, never in full.
    listing = client.get(URL).content.decode()
    assert token.prefix in listing and raw not in listing
    assert AuditEvent.objects.filter(organization=org, action="token_created", actor=m.user).exists()


def test_token_acts_with_its_membership_in_its_organization_only(client_for, member, outsider, client):
    analyst = member("security_analyst")
    _response, raw = _create(client_for(analyst))
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    me = api.get("/api/v1/orgs/acme/me/")
    assert me.status_code == 200
    assert me.json()["role"] == "security_analyst" and me.json()["auth"] == "token"
    # The same person may belong to globex too: the token still only works for acme.
    from thalian.models import Membership

    Membership.objects.create(user=analyst.user, organization=outsider.organization, role="admin")
    assert api.get("/api/v1/orgs/globex/me/").status_code == 404
    assert api.get("/api/v1/orgs/globex/members/").status_code == 404


def test_revoked_token_stops_working(client_for, member, org):
    viewer = member("viewer")
    client = client_for(viewer)
    _response, raw = _create(client)
    with scopes_disabled():
        token = ApiToken.objects.get(membership=viewer)
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/orgs/acme/me/").status_code == 200
    response = client.post(reverse("token_revoke", args=["acme", token.public_id]))
    assert response.status_code == 302
    page = client.get(URL).content.decode()
    assert "revoked" in page
    denied = api.get("/api/v1/orgs/acme/me/")
    assert denied.status_code == 401 and denied.json()["detail"] == "Invalid or revoked API token."
    assert AuditEvent.objects.filter(organization=org, action="token_revoked").count() == 1


def test_nobody_revokes_someone_elses_token(client_for, member, outsider, api_for):
    viewer = member("viewer")
    admin = member("admin")
    api_for(viewer)
    with scopes_disabled():
        token = ApiToken.objects.get(membership=viewer)
    assert client_for(admin).post(reverse("token_revoke", args=["acme", token.public_id])).status_code == 404
    assert client_for(outsider).post(reverse("token_revoke", args=["acme", token.public_id])).status_code == 404
    token.refresh_from_db()
    assert token.is_active


def test_empty_token_name_is_refused(client_for, member):
    client = client_for(member("viewer"))
    response = client.post(URL, {"name": "  "})
    assert response.status_code == 400 and "This field is required" in response.content.decode()
    with scopes_disabled():
        assert not ApiToken.objects.exists()


def test_apitoken_command_prints_a_working_token_as_last_line(member, capsys):
    member("auditor")
    call_command("apitoken", "auditor@acme.test", "--org", "acme")
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/orgs/acme/me/").json()["role"] == "auditor"


def test_token_list_queries_do_not_grow(client_for, member, django_assert_max_num_queries):
    viewer = member("viewer")
    client = client_for(viewer)
    _create(client, "one")
    with django_assert_max_num_queries(10) as few:
        client.get(URL)
    baseline = len(few.captured_queries)
    for i in range(20):
        _create(client, f"token {i}")
    with django_assert_max_num_queries(baseline):
        assert "token 19" in client.get(URL).content.decode()
