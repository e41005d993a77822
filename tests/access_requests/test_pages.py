"""The Access requests pages: tabs, the request form with its errors, a request's page with the decision, the
approval policy page; outsiders get 404, roles without the permission 403, and the list's query count is flat."""

from __future__ import annotations

import pytest

from access_requests.models import AccessRequest
from thalian.tenancy import scope

pytestmark = pytest.mark.django_db

LIST = "/o/acme/access-requests/"


def _form(**extra) -> dict:
    return {"type": "grant", "identity": "", "application": "GitHub", "role": "maintainer", "reason": "Releases",
            "ends_at": "", **extra}


def test_a_member_requests_access_from_the_page_and_lands_on_the_request(team, client_for,
                                                                         django_capture_on_commit_callbacks):
    client = client_for(team.ada)
    page = client.get(LIST)
    assert page.status_code == 200
    html = page.content.decode()
    assert "My requests" in html and "To approve" in html and "All requests" not in html
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(LIST, _form())
    assert response.status_code == 302
    detail = client.get(response["Location"])
    text = detail.content.decode()
    assert "Grant maintainer in GitHub" in text and "max@acme.test" in text and "Cancel this request" in text
    assert "Requested: Grant maintainer in GitHub for ada@acme.test" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"application": "Nope"}, "Nope is not an application in the inventory"),
        ({"role": "member"}, "already holds member in GitHub"),
        ({"identity": "ghost@acme.test"}, "ghost@acme.test is not in the inventory"),
        ({"ends_at": "2020-01-01T10:00"}, "is in the past"),
    ],
)
def test_the_form_shows_each_error_on_its_field_and_creates_nothing(team, client_for, extra, message):
    client = client_for(team.alan)
    response = client.post(LIST, _form(**{"identity": "ada@acme.test", **extra}))
    assert response.status_code == 400
    assert message in response.content.decode()
    with scope(team.org):
        assert not AccessRequest.objects.exists()


def test_the_approver_decides_on_the_request_page(team, client_for, api_for, django_capture_on_commit_callbacks):
    team.org.guest_reviewers_enabled = False  # Max is no member and no guest: stage 1 goes to the fallback
    team.org.save()
    with django_capture_on_commit_callbacks(execute=True):
        request_id = api_for(team.ada).post("/api/v1/orgs/acme/access-requests/", _form(), format="json").json()["id"]
    url = f"{LIST}{request_id}/"
    ada = client_for(team.ada)
    assert "Your decision" not in ada.get(url).content.decode()
    assert ada.post(f"{url}decide/", {"decision": "approve"}).status_code == 403
    alan = client_for(team.alan)
    page = alan.get(url).content.decode()
    assert "Your decision (stage 1)" in page and "Reassign" in page
    assert alan.post(f"{url}decide/", {"decision": "deny", "reason": ""}).status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        assert alan.post(f"{url}decide/", {"decision": "approve", "reason": "ok"}).status_code == 302
    tab = client_for(team.olga).get(f"{LIST}?tab=approve").content.decode()
    assert f"/o/acme/access-requests/{request_id}/" in tab


def test_outsiders_get_404_on_every_page(team, client_for, outsider, api_for):
    request_id = api_for(team.ada).post("/api/v1/orgs/acme/access-requests/", _form(), format="json").json()["id"]
    client = client_for(outsider)
    for path in (LIST, f"{LIST}policy/", f"{LIST}{request_id}/"):
        assert client.get(path).status_code == 404, path
    for suffix in ("decide/", "cancel/", "reassign/"):
        assert client.post(f"{LIST}{request_id}/{suffix}").status_code == 404
    assert client.get(f"/o/globex/access-requests/{request_id}/").status_code == 404


def test_roles_without_the_permission_get_403(team, client_for, api_for):
    request_id = api_for(team.ada).post("/api/v1/orgs/acme/access-requests/", _form(), format="json").json()["id"]
    ada = client_for(team.ada)
    assert ada.get(f"{LIST}policy/").status_code == 403
    assert ada.get(f"{LIST}?tab=all").status_code == 403
    assert ada.post(f"{LIST}{request_id}/reassign/", {"to": "olga@acme.test", "reason": "x"}).status_code == 403
    assert client_for(team.alan).post(f"{LIST}{request_id}/cancel/").status_code == 403  # not the requester
    with scope(team.org):
        assert AccessRequest.objects.get(pk=request_id).status == "pending"


def test_the_policy_page_saves_the_organization_policy_and_an_override(team, client_for):
    client = client_for(team.alan)
    assert client.get(f"{LIST}policy/").status_code == 200
    data = {"application": "", "stage_1": "application_owner", "stage_2": "", "stage_3": "", "fallback":
            "alan@acme.test", "remind_every_days": 1, "escalate_after_days": 3, "expire_after_days": 7}
    assert client.post(f"{LIST}policy/", data).status_code == 302
    response = client.post(f"{LIST}policy/", {**data, "application": "GitHub", "stage_1": "members",
                                              "stage_1_members": "nobody@acme.test"})
    assert response.status_code == 400 and "nobody@acme.test is not a member who may approve" in response.content.decode()
    assert client.post(f"{LIST}policy/", {**data, "application": "GitHub", "stage_1": "members",
                                          "stage_1_members": "olga@acme.test"}).status_code == 302
    page = client.get(f"{LIST}policy/").content.decode()
    assert "The application owner." in page and "Named members (olga@acme.test)" in page


def test_the_list_page_query_count_does_not_grow_with_the_rows(team, client_for, api_for,
                                                               django_assert_max_num_queries):
    api = api_for(team.alan)
    for n in range(2):
        api.post("/api/v1/orgs/acme/access-requests/", _form(identity="ada@acme.test", role=f"r{n}"), format="json")
    client = client_for(team.alan)
    with django_assert_max_num_queries(30) as few:
        assert client.get(f"{LIST}?tab=all").status_code == 200
    first = len(few.captured_queries)
    for n in range(2, 12):
        api.post("/api/v1/orgs/acme/access-requests/", _form(identity="ada@acme.test", role=f"r{n}"), format="json")
    with django_assert_max_num_queries(first):
        assert client.get(f"{LIST}?tab=all").status_code == 200
