"""The role table, walked against real pages and endpoints; outsiders get 404 everywhere, roles without the
permission get 403."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import NoReverseMatch, reverse
from rest_framework.test import APIClient

from thalian.models import PLAN_REQUIRED_MESSAGE, ApiToken
from thalian.permissions import PERMISSIONS, Perm, Role, has_perm
from thalian.tenancy import scopes_disabled

pytestmark = pytest.mark.django_db

ROLES = [r.value for r in Role]
Y, N = True, False

# The table of the product specification, row by row, in the role order super_admin, admin, security_analyst,
# auditor, viewer, reviewer. "view campaigns" for reviewers is limited to campaigns with items assigned to
# them: they hold VIEW_CAMPAIGNS but not VIEW_ALL_CAMPAIGNS.
SPEC = {
    Perm.VIEW_CAMPAIGNS: [Y, Y, Y, Y, Y, Y],
    Perm.VIEW_ALL_CAMPAIGNS: [Y, Y, Y, Y, Y, N],
    Perm.MANAGE_CAMPAIGNS: [Y, Y, Y, N, N, N],
    Perm.DECIDE_ANY: [Y, Y, Y, N, N, N],
    Perm.DECIDE_ASSIGNED: [Y, Y, Y, N, N, Y],
    Perm.EXPORT_EVIDENCE: [Y, Y, Y, Y, N, N],
    Perm.MANAGE_INVENTORY: [Y, Y, Y, N, N, N],
    Perm.MANAGE_SETTINGS: [Y, Y, N, N, N, N],
    Perm.MANAGE_ORGANIZATION: [Y, N, N, N, N, N],
    # Remediation owners confirm removals of their applications; admins confirm any; auditors never do.
    Perm.CONFIRM_REMOVAL: [Y, Y, Y, N, N, Y],
    Perm.CONFIRM_ANY_REMOVAL: [Y, Y, N, N, N, N],
    Perm.VIEW_DECISION_QUALITY: [Y, Y, Y, Y, N, N],
    # Everyone asks for access; staff and auditors see every request.
    Perm.REQUEST_ACCESS: [Y, Y, Y, Y, Y, Y],
    Perm.VIEW_ALL_ACCESS_REQUESTS: [Y, Y, Y, Y, N, N],
}


@pytest.mark.parametrize("perm", list(SPEC), ids=str)
def test_permission_table_matches_the_specification(perm):
    assert [has_perm(role, perm) for role in ROLES] == SPEC[perm]
    assert {Role(r) for r, ok in zip(ROLES, SPEC[perm], strict=True) if ok} == PERMISSIONS[perm]


@dataclass(frozen=True)
class Probe:
    """One request: a page (`client`) or endpoint (`api`) by URL name, guarded by `perm` (None: any member)."""

    kind: str
    url_name: str
    method: str = "get"
    perm: Perm | None = None
    args: tuple = ()
    data: Any = None

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.url_name}"


# Platform pages and endpoints (every one of them), then list pages of the other areas that need no object.
PLATFORM = [
    Probe("page", "org_dashboard"),
    Probe("page", "member_list", perm=Perm.MANAGE_SETTINGS),
    Probe("page", "member_invite", "post", Perm.MANAGE_SETTINGS, data={"email": "x@y.test", "role": "viewer"}),
    Probe("page", "member_role", "post", Perm.MANAGE_SETTINGS, args=("target",), data={"role": "auditor"}),
    Probe("page", "member_remove", "post", Perm.MANAGE_SETTINGS, args=("target",)),
    Probe("page", "invitation_revoke", "post", Perm.MANAGE_SETTINGS, args=("invitation",)),
    Probe("page", "org_settings", perm=Perm.MANAGE_ORGANIZATION),
    Probe("page", "org_settings", "post", Perm.MANAGE_ORGANIZATION, data={"name": ""}),
    Probe("page", "org_delete", "post", Perm.MANAGE_ORGANIZATION, data={"confirm": "wrong"}),
    Probe("page", "token_list"),
    Probe("page", "token_list", "post", data={"name": "probe"}),
    Probe("page", "token_revoke", "post", args=("own_token",)),
    Probe("page", "audit_log", perm=Perm.VIEW_AUDIT_LOG),
    Probe("page", "operations", perm=Perm.MANAGE_ORGANIZATION),
    Probe("api", "api_me"),
    Probe("api", "api_members", perm=Perm.MANAGE_SETTINGS),
    Probe("api", "api_invitations", perm=Perm.MANAGE_SETTINGS),
    Probe("api", "api_invitations", "post", Perm.MANAGE_SETTINGS, data={"email": "x@y.test", "role": "viewer"}),
    Probe("api", "api_invitation", "delete", Perm.MANAGE_SETTINGS, args=("invitation",)),
    Probe("api", "api_member", perm=Perm.MANAGE_SETTINGS, args=("target",)),
    Probe("api", "api_member", "patch", Perm.MANAGE_SETTINGS, args=("target",), data={"role": "auditor"}),
    Probe("api", "api_member", "delete", Perm.MANAGE_SETTINGS, args=("target",)),
    Probe("api", "api_tokens"),
    Probe("api", "api_tokens", "post", data={"name": "probe"}),
    Probe("api", "api_token", "delete", args=("own_token",)),
    Probe("api", "api_audit_events", perm=Perm.VIEW_AUDIT_LOG),
    Probe("api", "api_outbox", perm=Perm.MANAGE_ORGANIZATION),
]
OTHER_AREAS = [
    Probe("page", "campaign_list", perm=Perm.VIEW_CAMPAIGNS),
    Probe("page", "campaign_new", perm=Perm.MANAGE_CAMPAIGNS),
    Probe("page", "my_reviews", perm=Perm.VIEW_CAMPAIGNS),
    Probe("page", "application_list", perm=Perm.VIEW_INVENTORY),
    Probe("page", "evidence_list", perm=Perm.EXPORT_EVIDENCE),
    Probe("page", "itsm_connections", perm=Perm.MANAGE_SETTINGS),
    Probe("page", "notification_settings", perm=Perm.MANAGE_SETTINGS),
    Probe("api", "api_campaign_list", perm=Perm.VIEW_CAMPAIGNS),
    Probe("api", "api_application_list", perm=Perm.VIEW_INVENTORY),
    Probe("api", "api_itsm_connections", perm=Perm.MANAGE_SETTINGS),
    Probe("api", "api_notification_settings", perm=Perm.MANAGE_SETTINGS),
    Probe("page", "notification_retry", "post", Perm.MANAGE_SETTINGS),
    Probe("api", "api_notifications_failed", perm=Perm.MANAGE_SETTINGS),
    Probe("api", "api_notifications_retry", "post", Perm.MANAGE_SETTINGS, data={}),
    Probe("page", "access_request_list", perm=Perm.REQUEST_ACCESS),
    Probe("page", "access_request_policy", perm=Perm.MANAGE_SETTINGS),
    Probe("api", "api_access_requests", perm=Perm.REQUEST_ACCESS),
    Probe("api", "api_access_request_policy", perm=Perm.MANAGE_SETTINGS),
]


def _objects(org, member, caller):
    """Objects the probes point at, in the caller's organization."""
    from thalian.models import Invitation

    target = member(Role.VIEWER, organization=org, email=f"target@{org.slug}.test")
    with scopes_disabled():
        from django.utils import timezone

        invitation = Invitation.objects.create(
            organization=org, email="invited@example.test", role="viewer", token_hash=f"probe-{org.slug}",
            expires_at=timezone.now() + timezone.timedelta(days=1),
        )
        own = ApiToken.objects.create(
            organization=org, membership=caller, name="own", prefix="thl_own", token_hash=f"own-{caller.pk}"
        )
    return {"target": target.pk, "invitation": invitation.pk, "own_token": own.public_id}


def _request(probe: Probe, caller, objects, slug="acme"):
    try:
        url = reverse(probe.url_name, args=[slug, *(objects[a] for a in probe.args)])
    except NoReverseMatch:
        pytest.fail(f"{probe.url_name} is in the permission matrix but no URL has that name")
    client = APIClient()
    client.force_login(caller.user)
    send = getattr(client, probe.method)
    if probe.kind == "api":
        return send(url, probe.data, format="json") if probe.data is not None else send(url)
    return send(url, probe.data or {})


@pytest.mark.parametrize("probe", PLATFORM + OTHER_AREAS, ids=str)
@pytest.mark.parametrize("role", ROLES)
def test_role_gets_403_exactly_when_the_table_says_no(probe, role, member, org):
    caller = member(role)
    member(Role.SUPER_ADMIN, email="keeper@acme.test")  # so a super admin caller is never the last one
    objects = _objects(org, member, caller)
    response = _request(probe, caller, objects)
    allowed = probe.perm is None or has_perm(role, probe.perm)
    if allowed:
        assert response.status_code not in (403, 404), (
            f"{role} should be allowed {probe}: {response.status_code} {response.content[:300]!r}"
        )
    else:
        assert response.status_code == 403, f"{role} should get 403 for {probe}, got {response.status_code}"
        if probe.kind == "api":
            assert "does not allow" in response.json()["detail"]


@pytest.mark.parametrize("probe", PLATFORM + OTHER_AREAS, ids=str)
def test_outsider_gets_404_like_for_an_organization_that_does_not_exist(probe, member, org, outsider):
    objects = _objects(org, member, member(Role.VIEWER))
    response = _request(probe, outsider, objects)
    assert response.status_code == 404, f"outsider got {response.status_code} for {probe}"
    missing = _request(probe, outsider, objects, slug="no-such-org")
    assert missing.status_code == 404


@pytest.mark.parametrize("probe", [p for p in PLATFORM if p.kind == "api"], ids=str)
def test_a_token_of_another_organization_is_404(probe, member, org, outsider, api_for):
    objects = _objects(org, member, member(Role.VIEWER))
    api = api_for(outsider)
    url = reverse(probe.url_name, args=["acme", *(objects[a] for a in probe.args)])
    assert getattr(api, probe.method)(url).status_code == 404


@pytest.mark.parametrize(
    ("url_name", "kind"), [("campaign_list", "page"), ("campaign_new", "page"), ("api_campaign_list", "api")]
)
def test_free_plan_explains_that_access_reviews_need_pro(url_name, kind, member, free_org):
    admin = member(Role.ADMIN, organization=free_org)
    try:
        url = reverse(url_name, args=["initech"])
    except NoReverseMatch:
        pytest.fail(f"{url_name} is in the permission matrix but no URL has that name")
    client = APIClient()
    client.force_login(admin.user)
    response = client.get(url)
    assert response.status_code == 403
    if kind == "api":
        assert response.json()["detail"] == PLAN_REQUIRED_MESSAGE
    else:
        assert "Access reviews require the Pro or Enterprise plan" in response.content.decode()


def test_anonymous_visitors_are_sent_to_sign_in(client, org):
    response = client.get(reverse("member_list", args=["acme"]))
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")
    assert client.get(reverse("api_me", args=["acme"])).status_code in (401, 403)


@pytest.mark.parametrize("probe", [p for p in PLATFORM if p.args], ids=str)
def test_objects_of_another_organization_are_404_through_ones_own_organization(probe, member, org, outsider):
    """An admin of globex addressing acme's member, invitation or token through /globex/ URLs."""
    objects = _objects(org, member, member(Role.VIEWER))
    response = _request(probe, outsider, objects, slug="globex")
    assert response.status_code == 404, f"{probe} with acme's object via globex: {response.status_code}"
