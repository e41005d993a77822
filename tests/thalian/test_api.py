"""Platform API: me, members, invitations, tokens; JSON errors; OpenAPI schema."""

from __future__ import annotations

import pytest
import yaml
from rest_framework.test import APIClient

from thalian.models import ApiToken, AuditEvent, Invitation, Membership, hash_token
from thalian.tenancy import scopes_disabled

pytestmark = pytest.mark.django_db

BASE = "/api/v1/orgs/acme"


def test_me_describes_the_caller_in_this_organization(member, api_for, client_for):
    reviewer = member("reviewer")
    data = api_for(reviewer).get(f"{BASE}/me/").json()
    assert data["email"] == "reviewer@acme.test" and data["role"] == "reviewer"
    assert data["organization"] == {"slug": "acme", "name": "Acme", "plan": "pro", "access_reviews": True}
    assert "decide_assigned" in data["permissions"] and "decide_any" not in data["permissions"]
    session = APIClient()
    session.force_login(reviewer.user)
    assert session.get(f"{BASE}/me/").json()["auth"] == "session"


def test_unauthenticated_requests_get_401_json(db, org):
    response = APIClient().get(f"{BASE}/me/")
    assert response.status_code == 401 and "detail" in response.json()
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer thl_nope")
    assert bad.get(f"{BASE}/me/").json()["detail"] == "Invalid or revoked API token."


def test_members_list(member, api_for, django_assert_max_num_queries):
    admin = member("admin")
    for role in ("viewer", "auditor", "reviewer"):
        member(role)
    api = api_for(admin)
    response = api.get(f"{BASE}/members/")
    assert response.status_code == 200
    emails = [m["email"] for m in response.json()]
    assert emails == sorted(emails) and "auditor@acme.test" in emails and len(emails) == 4
    with django_assert_max_num_queries(6) as ctx:
        api.get(f"{BASE}/members/")
    baseline = len(ctx.captured_queries)
    for i in range(20):
        member("viewer", email=f"v{i}@acme.test")
    with django_assert_max_num_queries(baseline):
        assert len(api.get(f"{BASE}/members/").json()) == 24


def test_invite_through_the_api_sends_the_email(member, api_for, org, mailoutbox,
                                                django_capture_on_commit_callbacks):
    api = api_for(member("admin"))
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{BASE}/members/invitations/", {"email": "new@example.test", "role": "viewer"},
                            format="json")
    assert response.status_code == 201
    assert response.json()["email"] == "new@example.test" and response.json()["invited_by"] == "admin@acme.test"
    assert len(mailoutbox) == 1 and "/invitations/inv_" in mailoutbox[0].body
    listed = api.get(f"{BASE}/members/invitations/").json()
    assert [i["email"] for i in listed] == ["new@example.test"]
    assert api.delete(f"{BASE}/members/invitations/{listed[0]['id']}/").status_code == 204
    assert api.get(f"{BASE}/members/invitations/").json() == []
    assert AuditEvent.objects.filter(organization=org, action="invitation_revoked").exists()


def test_invite_errors_name_the_problem_and_change_nothing(member, api_for, mailoutbox,
                                                          django_capture_on_commit_callbacks):
    member("viewer")
    api = api_for(member("admin"))
    with django_capture_on_commit_callbacks(execute=True):
        bad_email = api.post(f"{BASE}/members/invitations/", {"email": "nope", "role": "viewer"}, format="json")
        bad_role = api.post(f"{BASE}/members/invitations/", {"email": "a@b.test", "role": "god"}, format="json")
        grant = api.post(f"{BASE}/members/invitations/", {"email": "a@b.test", "role": "super_admin"}, format="json")
        dup = api.post(f"{BASE}/members/invitations/", {"email": "viewer@acme.test", "role": "admin"}, format="json")
    assert bad_email.status_code == 400 and "email" in bad_email.json()["errors"]
    assert bad_role.status_code == 400 and "role" in bad_role.json()["detail"]
    assert grant.status_code == 400 and "only a super admin can" in grant.json()["detail"]
    assert dup.status_code == 400 and "already a member" in dup.json()["detail"]
    with scopes_disabled():
        assert not Invitation.objects.exists()
    assert mailoutbox == []


def test_role_change_and_removal(member, api_for, org):
    admin = member("admin")
    viewer = member("viewer")
    boss = member("super_admin")
    api = api_for(admin)
    response = api.patch(f"{BASE}/members/{viewer.pk}/", {"role": "security_analyst"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "security_analyst"
    denied = api.patch(f"{BASE}/members/{viewer.pk}/", {"role": "super_admin"}, format="json")
    assert denied.status_code == 403 and "only a super admin can" in denied.json()["detail"]
    assert api.patch(f"{BASE}/members/{boss.pk}/", {"role": "viewer"}, format="json").status_code == 403
    assert api.delete(f"{BASE}/members/{boss.pk}/").status_code == 403
    invalid = api.patch(f"{BASE}/members/{viewer.pk}/", {"role": "owner"}, format="json")
    assert invalid.status_code == 400 and "role" in invalid.json()["errors"]
    assert api.delete(f"{BASE}/members/{viewer.pk}/").status_code == 204
    assert not Membership.objects.filter(pk=viewer.pk).exists()
    boss_api = api_for(boss)
    last = boss_api.delete(f"{BASE}/members/{boss.pk}/")
    assert last.status_code == 400 and "last super admin" in last.json()["detail"]
    assert boss_api.patch(f"{BASE}/members/{boss.pk}/", {"role": "admin"}, format="json").status_code == 400
    actions = set(AuditEvent.objects.filter(organization=org).values_list("action", flat=True))
    assert {"member_role_changed", "member_removed"} <= actions


def test_member_of_another_organization_is_404(member, api_for, outsider):
    api = api_for(member("admin"))
    assert api.get(f"{BASE}/members/{outsider.pk}/").status_code == 404
    assert api.delete(f"{BASE}/members/{outsider.pk}/").status_code == 404
    assert Membership.objects.filter(pk=outsider.pk).exists()


def test_tokens_api_create_list_revoke(member, api_for):
    viewer = member("viewer")
    api = api_for(viewer)
    created = api.post(f"{BASE}/tokens/", {"name": "nightly export"}, format="json")
    assert created.status_code == 201 and created["Cache-Control"] == "no-store"
    raw = created.json()["token"]
    with scopes_disabled():
        token = ApiToken.objects.get(public_id=created.json()["id"])
    assert token.token_hash == hash_token(raw) and raw not in (token.token_hash, token.prefix)
    listed = api.get(f"{BASE}/tokens/").json()
    assert {t["name"] for t in listed} == {"test", "nightly export"}
    assert all("token" not in t for t in listed)
    new = APIClient()
    new.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert new.get(f"{BASE}/me/").status_code == 200
    assert api.delete(f"{BASE}/tokens/{token.public_id}/").status_code == 204
    assert new.get(f"{BASE}/me/").status_code == 401
    missing = api.post(f"{BASE}/tokens/", {}, format="json")
    assert missing.status_code == 400 and missing.json()["errors"]["name"]


def test_tokens_of_someone_else_are_404(member, api_for):
    viewer = member("viewer")
    admin = member("admin")
    api_for(viewer)
    with scopes_disabled():
        token = ApiToken.objects.get(membership=viewer)
    assert api_for(admin).delete(f"{BASE}/tokens/{token.public_id}/").status_code == 404
    token.refresh_from_db()
    assert token.is_active


def test_session_writes_need_csrf(member):
    admin = member("admin")
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(admin.user)
    response = api.post(f"{BASE}/tokens/", {"name": "x"}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


def test_schema_documents_the_platform_endpoints(client, db):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    paths = schema["paths"]
    expected = {
        "/api/v1/orgs/{org_slug}/me/": {"get"},
        "/api/v1/orgs/{org_slug}/members/": {"get"},
        "/api/v1/orgs/{org_slug}/members/invitations/": {"get", "post"},
        "/api/v1/orgs/{org_slug}/members/{id}/": {"get", "patch", "delete"},
        "/api/v1/orgs/{org_slug}/members/invitations/{id}/": {"delete"},
        "/api/v1/orgs/{org_slug}/tokens/": {"get", "post"},
        "/api/v1/orgs/{org_slug}/tokens/{public_id}/": {"delete"},
        "/api/v1/orgs/{org_slug}/audit-events/": {"get"},
    }
    for path, methods in expected.items():
        path = path if path in paths else path.replace("{id}", "{pk}")
        assert path in paths, f"{path} missing from the schema"
        assert methods <= set(paths[path]), f"{path}: {set(paths[path])}"
    audit = paths["/api/v1/orgs/{org_slug}/audit-events/"]["get"]
    assert {"action", "actor", "date_from", "date_to", "cursor"} <= {p["name"] for p in audit["parameters"]}
    assert "bearerAuth" in schema["components"]["securitySchemes"]
    assert "TokenCreated" in schema["components"]["schemas"]
    assert client.get("/api/v1/docs/").status_code == 200


def test_schema_generates_without_warnings():
    """Every endpoint documents its request and response (drf-spectacular reports guesses as warnings)."""
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--fail-on-warn", "--validate", "--file", "/dev/null"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=180,
    )
    problems = [line for line in result.stderr.splitlines() if "Warning" in line or "Error" in line]
    assert result.returncode == 0, "schema warnings:\n" + "\n".join(problems)
