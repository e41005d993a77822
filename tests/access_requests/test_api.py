"""Access requests through the API: submitting (every validation error names its field and changes nothing),
listing, reading the trail, cancelling, tenancy and roles."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from access_requests.models import AccessRequest, Approval
from thalian.models import AuditEvent
from thalian.tenancy import scope

pytestmark = pytest.mark.django_db

URL = "/api/v1/orgs/acme/access-requests/"


def _grant(**extra) -> dict:
    return {"type": "grant", "application": "GitHub", "role": "maintainer", "reason": "Release duty", **extra}


def _count(org) -> int:
    with scope(org):
        return AccessRequest.objects.count()


def test_a_member_requests_a_grant_for_themselves_and_reads_its_trail(team, api_for,
                                                                      django_capture_on_commit_callbacks):
    api = api_for(team.ada)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(URL, _grant(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending"
    detail = api.get(f"{URL}{body['id']}/").json()
    assert (detail["identity"], detail["application"], detail["role"]) == ("ada@acme.test", "GitHub", "maintainer")
    assert detail["requested_by"] == "ada@acme.test" and detail["ends_at"] is None
    assert [a["kind"] for a in detail["approvals"]] == ["manager", "application_owner"]
    first = detail["approvals"][0]
    # Max is in the inventory but not a member: he approves as a guest through a link.
    assert (first["approver"], first["guest"], first["decision"]) == ("max@acme.test", True, "pending")
    assert detail["approvals"][1]["decision"] == "waiting"
    assert [t["action"] for t in detail["trail"]] == ["created", "stage_assigned"]
    assert "Release duty" in detail["trail"][0]["message"]
    assert AuditEvent.objects.filter(action="access_request.created", target_id=body["id"]).exists()


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"application": "Nope"}, "application", "Nope is not an application"),
        ({"identity": "ghost@acme.test"}, "identity", "ghost@acme.test is not in the inventory"),
        ({"role": "member"}, "role", "already holds member"),
        ({"type": "revoke", "role": "admin"}, "role", "does not hold admin"),
        ({"type": "promote"}, "type", "choose grant or revoke"),
        ({"reason": ""}, "reason", "say why"),
        ({"role": ""}, "role", "say which role"),
        ({"ends_at": "2020-01-01T00:00:00Z"}, "ends_at", "in the past"),
        ({"ends_at": "tomorrow"}, "ends_at", "not an ISO date"),
        ({"type": "revoke", "role": "member", "ends_at": "2999-01-01T00:00:00Z"}, "ends_at", "only a grant"),
    ],
)
def test_bad_requests_answer_400_naming_the_field_and_change_nothing(team, api_for, payload, field, words):
    api = api_for(team.alan)
    response = api.post(URL, _grant(**{"identity": "ada@acme.test", **payload}), format="json")
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"], body
    assert words in " ".join(body["errors"][field])
    assert _count(team.org) == 0


def test_a_temporary_grant_longer_than_the_organization_allows_is_refused(team, api_for):
    team.org.access_request_max_days = 30
    team.org.save()
    api = api_for(team.ada)
    too_long = (timezone.now() + dt.timedelta(days=31)).isoformat()
    response = api.post(URL, _grant(ends_at=too_long), format="json")
    assert response.status_code == 400
    assert "at most 30 days" in response.json()["errors"]["ends_at"][0]
    fine = (timezone.now() + dt.timedelta(days=29)).isoformat()
    response = api.post(URL, _grant(ends_at=fine), format="json")
    assert response.status_code == 201
    assert api.get(f"{URL}{response.json()['id']}/").json()["ends_at"] is not None


def test_the_same_open_request_twice_is_refused(team, api_for):
    api = api_for(team.ada)
    assert api.post(URL, _grant(), format="json").status_code == 201
    response = api.post(URL, _grant(), format="json")
    assert response.status_code == 400 and "already pending" in response.json()["errors"]["role"][0]


def test_members_request_for_others_only_where_the_organization_and_their_role_allow(team, api_for, member, org):
    viewer = api_for(team.viewer)
    response = viewer.post(URL, _grant(identity="ada@acme.test"), format="json")
    assert response.status_code == 403
    # Max's reports could be requested by Max if he were a member; admins request for anyone.
    assert api_for(team.alan).post(URL, _grant(identity="ada@acme.test"), format="json").status_code == 201
    org.access_requests_for_others = False
    org.save()
    response = api_for(team.alan).post(URL, _grant(identity="ada@acme.test", role="triage"), format="json")
    assert response.status_code == 403 and "yourself only" in response.json()["detail"]
    assert _count(org) == 1


def test_a_manager_who_is_a_member_requests_for_their_report(team, api_for, member, org):
    with scope(org):
        from entitlements.models import Identity

        Identity.objects.filter(email="ada@acme.test").update(
            manager=Identity.objects.get(email="olga@acme.test"))
    assert api_for(team.olga).post(URL, _grant(identity="ada@acme.test"), format="json").status_code == 201
    assert api_for(team.ada).post(URL, _grant(identity="olga@acme.test"), format="json").status_code == 403


def test_the_list_filters_by_status_and_tab(team, api_for, django_capture_on_commit_callbacks):
    api = api_for(team.ada)
    first = api.post(URL, _grant(), format="json").json()["id"]
    api.post(URL, _grant(role="triage"), format="json")
    api.post(f"{URL}{first}/cancel/", format="json")
    mine = api.get(URL, {"mine": "true"}).json()["results"]
    assert len(mine) == 2
    cancelled = api.get(URL, {"status": "cancelled"}).json()["results"]
    assert [r["id"] for r in cancelled] == [first]
    assert api.get(URL, {"status": "nonsense"}).status_code == 400
    # Olga approves only once Max (stage 1) has: nothing waits for her yet.
    assert api_for(team.olga).get(URL, {"tab": "approve"}).json()["results"] == []
    assert len(api_for(team.alan).get(URL, {"tab": "all"}).json()["results"]) == 2


def test_only_staff_and_auditors_list_every_request(team, api_for):
    assert api_for(team.ada).get(URL, {"tab": "all"}).status_code == 403
    assert api_for(team.auditor).get(URL, {"tab": "all"}).status_code == 200


def test_cancel_is_for_the_requester_while_pending(team, api_for):
    api = api_for(team.ada)
    request_id = api.post(URL, _grant(), format="json").json()["id"]
    assert api_for(team.alan).post(f"{URL}{request_id}/cancel/").status_code == 403
    response = api.post(f"{URL}{request_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = api.post(f"{URL}{request_id}/cancel/")
    assert again.status_code == 400 and "only a pending request" in again.json()["errors"]["status"][0]
    with scope(team.org):
        assert set(Approval.objects.values_list("decision", flat=True)) == {"skipped"}


def test_an_outsider_gets_404_for_the_list_a_request_and_its_actions(team, api_for, outsider):
    request_id = api_for(team.ada).post(URL, _grant(), format="json").json()["id"]
    api = api_for(outsider)
    assert api.get(URL).status_code == 404
    assert api.post(URL, _grant(), format="json").status_code == 404
    for suffix in ("", "decision/", "cancel/", "reassign/"):
        method = api.get if not suffix else api.post
        assert method(f"{URL}{request_id}/{suffix}").status_code == 404
    # The same id under the outsider's own organization: not found there either.
    assert api.get(f"/api/v1/orgs/globex/access-requests/{request_id}/").status_code == 404


def test_a_member_not_involved_in_a_request_gets_404(team, api_for):
    request_id = api_for(team.ada).post(URL, _grant(), format="json").json()["id"]
    assert api_for(team.viewer).get(f"{URL}{request_id}/").status_code == 404
    assert api_for(team.auditor).get(f"{URL}{request_id}/").status_code == 200


def test_the_list_costs_the_same_number_of_queries_for_more_requests(team, api_for, django_assert_max_num_queries,
                                                                     org):
    api = api_for(team.alan)
    for n in range(3):
        api.post(URL, _grant(identity="ada@acme.test", role=f"role-{n}"), format="json")
    with django_assert_max_num_queries(25) as few:
        assert len(api.get(URL, {"tab": "all"}).json()["results"]) == 3
    first = len(few.captured_queries)
    for n in range(3, 12):
        api.post(URL, _grant(identity="ada@acme.test", role=f"role-{n}"), format="json")
    with django_assert_max_num_queries(first):
        assert len(api.get(URL, {"tab": "all"}).json()["results"]) == 12


def test_the_approval_policy_is_edited_by_admins_with_per_application_overrides(team, api_for):
    admin = api_for(team.alan)
    policy = "/api/v1/orgs/acme/access-requests/policy/"
    assert admin.get(policy).json()["stages"] == [{"kind": "manager"}, {"kind": "application_owner"}]
    response = admin.patch(f"{policy}?application=GitHub", {"stages": [{"kind": "members",
                                                                       "members": ["olga@acme.test"]}]},
                           format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["application"] == "GitHub"
    assert admin.get(policy).json()["stages"][0] == {"kind": "manager"}  # the organization's is unchanged
    bad = admin.patch(policy, {"stages": [{"kind": "ceo"}]}, format="json")
    assert bad.status_code == 400 and "unknown kind" in bad.json()["errors"]["stages"][0]
    bad = admin.patch(policy, {"expire_after_days": 0}, format="json")
    assert bad.status_code == 400 and "expire_after_days" in bad.json()["errors"]
    assert api_for(team.ada).get(policy).status_code == 403
    assert api_for(team.ada).patch(policy, {"expire_after_days": 3}, format="json").status_code == 403
    assert admin.delete(f"{policy}?application=GitHub").status_code == 204
    assert admin.get(f"{policy}?application=GitHub").json()["application"] is None


def test_the_organization_settings_hold_the_request_limits(team, api_for, member):
    api = api_for(member("super_admin"))
    settings = api.get("/api/v1/orgs/acme/settings/").json()
    assert settings["access_request_max_days"] == 90 and settings["access_requests_for_others"] is True
    response = api.patch("/api/v1/orgs/acme/settings/", {"access_request_max_days": 14,
                                                         "access_requests_for_others": False}, format="json")
    assert response.status_code == 200
    assert response.json()["access_request_max_days"] == 14
    assert api.patch("/api/v1/orgs/acme/settings/", {"access_request_max_days": 0},
                     format="json").status_code == 400
