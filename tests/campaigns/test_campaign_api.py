# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Campaign lifecycle API: create, list, detail with progress, launch, cancel, close, reassign; access rules."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, ReviewItem
from thalian.models import PLAN_REQUIRED_MESSAGE, AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from ..factories import MembershipFactory, UserFactory
from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401

pytestmark = pytest.mark.django_db

BASE = "/api/v1/orgs/acme/campaigns/"


def payload(**overrides):
    body = {
        "title": "Q3 review",
        "due_date": (timezone.localdate() + dt.timedelta(days=10)).isoformat(),
        "scope": {"applications": ["GitHub"], "categories": [], "sanctioned_only": False, "departments": [],
                  "identity_kinds": [], "preset": None, "privileged_only": False},
        "reviewer_strategy": "application_owner",
        "reviewers": [],
        "fallback_reviewer": "fallback@acme.test",
        "default_outcome": "revoke",
    }
    body.update(overrides)
    return body


def campaign_count():
    with scopes_disabled():
        return Campaign.objects.count()


def test_create_answers_201_with_id_and_status(inventory, api_for):
    response = api_for(inventory.admin).post(BASE, payload(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft"
    with scopes_disabled():
        campaign = Campaign.objects.get(pk=body["id"])
    assert campaign.scope["applications"] == ["GitHub"]
    assert campaign.default_outcome == "revoke"
    assert campaign.fallback_reviewer == inventory.fallback
    assert AuditEvent.objects.filter(action="campaign_created", target_id=body["id"]).exists()


def test_create_and_launch_in_one_request(inventory, api_for, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(inventory.admin).post(BASE, payload(launch=True), format="json")
    assert response.status_code == 201, response.json()
    detail = api_for(inventory.admin).get(f"{BASE}{response.json()['id']}/").json()
    assert detail["status"] == "active"
    assert detail["progress"] == {"total": 4, "decided": 0, "pending": 4, "approve": 0, "revoke": 0,
                                  "exception": 0, "overdue": 0}


def test_create_and_launch_blocked_by_freshness_creates_nothing(inventory, api_for):
    response = api_for(inventory.admin).post(BASE, payload(scope={"applications": ["Slack"]}, launch=True),
                                             format="json")
    assert response.status_code == 409
    body = response.json()
    assert [s["name"] for s in body["stale_applications"]] == ["Slack"]
    assert "Slack" in body["detail"]
    assert campaign_count() == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scope": {"applications": ["Jira"]}}, "unknown application(s): Jira"),
        ({"fallback_reviewer": "nobody@acme.test"}, "nobody@acme.test is not a member"),
        ({"fallback_reviewer": "viewer@acme.test"}, "cannot review items"),
        ({"reviewer_strategy": "members", "reviewers": []}, "at least one reviewer"),
        ({"reviewer_strategy": "members", "reviewers": {"Jira": ["owner@acme.test"]}}, "unknown application 'Jira'"),
        ({"due_date": "2001-01-01"}, "in the past"),
        ({"scope": {"identity_kinds": ["human"], "preset": "ai_agents"}}, "do not overlap"),
        ({"default_outcome": "maybe"}, "default_outcome"),
        ({"scope": {"min_users": 0}}, "min_users"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(inventory, api_for, member, changes, message):
    member(Role.VIEWER)
    response = api_for(inventory.admin).post(BASE, payload(**changes), format="json")
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert campaign_count() == 0


def test_detail_has_status_snapshot_and_progress(inventory, launched, api_for):
    campaign = launched()
    body = api_for(inventory.admin).get(f"{BASE}{campaign.pk}/").json()
    assert body["status"] == "active"
    assert body["snapshot_at"] is not None
    assert body["progress"] == {"total": 8, "decided": 0, "pending": 8, "approve": 0, "revoke": 0, "exception": 0,
                                "overdue": 0}
    assert body["fallback_reviewer"] == "fallback@acme.test"


def test_overdue_counts_undecided_items_past_the_due_date(inventory, launched, api_for):
    campaign = launched()
    with scopes_disabled():
        Campaign.unscoped.filter(pk=campaign.pk).update(due_date=timezone.localdate() - dt.timedelta(days=1))
        item = ReviewItem.unscoped.filter(campaign=campaign).first()
        ReviewItem.unscoped.filter(pk=item.pk).update(decision="approve")
    progress = api_for(inventory.admin).get(f"{BASE}{campaign.pk}/").json()["progress"]
    assert progress["overdue"] == 7 and progress["approve"] == 1 and progress["decided"] == 1


def test_list_filters_by_status_and_queries_do_not_grow(inventory, make_campaign, launched, api_for,
                                                          django_assert_max_num_queries):
    launched()
    make_campaign(title="Draft one")
    api = api_for(inventory.admin)
    body = api.get(BASE, {"status": "draft"}).json()
    assert [c["title"] for c in body["results"]] == ["Draft one"]
    assert api.get(BASE, {"status": "bogus"}).status_code == 400
    with django_assert_max_num_queries(12) as few:
        api.get(BASE)
    for n in range(6):
        make_campaign(title=f"More {n}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        body = api.get(BASE).json()
    assert len(body["results"]) == 8


def test_launch_endpoint_blocks_then_admin_overrides(inventory, make_campaign, api_for,
                                                     django_capture_on_commit_callbacks):
    campaign = make_campaign()
    url = f"{BASE}{campaign.pk}/launch/"
    blocked = api_for(inventory.admin).post(url, {}, format="json")
    assert blocked.status_code == 409
    assert blocked.json()["stale_applications"][0]["name"] == "Slack"
    refused = api_for(inventory.mia_member).post(url, {"freshness_override_reason": "fine"}, format="json")
    assert refused.status_code == 400 and "only an admin" in refused.json()["detail"]
    with django_capture_on_commit_callbacks(execute=True):
        accepted = api_for(inventory.admin).post(url, {"freshness_override_reason": "manual upload"}, format="json")
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "launching"
    body = api_for(inventory.admin).get(f"{BASE}{campaign.pk}/").json()
    assert body["status"] == "active" and body["freshness_override_reason"] == "manual upload"


def test_cancel_requires_a_reason(inventory, launched, api_for):
    campaign = launched()
    api = api_for(inventory.admin)
    missing = api.post(f"{BASE}{campaign.pk}/cancel/", {"reason": " "}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()["detail"]
    ok = api.post(f"{BASE}{campaign.pk}/cancel/", {"reason": "Scope was wrong"}, format="json")
    assert ok.status_code == 200 and ok.json()["status"] == "cancelled"
    assert ok.json()["cancel_reason"] == "Scope was wrong"
    again = api.post(f"{BASE}{campaign.pk}/cancel/", {"reason": "again"}, format="json")
    assert again.status_code == 409


def test_close_applies_default_outcome(inventory, launched, api_for):
    campaign = launched(default_outcome="approve")
    response = api_for(inventory.admin).post(f"{BASE}{campaign.pk}/close/", {}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    assert body["progress"]["approve"] == 8 and body["progress"]["pending"] == 0
    assert api_for(inventory.admin).post(f"{BASE}{campaign.pk}/close/", {}, format="json").status_code == 409


def test_active_campaign_scope_is_locked(inventory, launched, api_for):
    campaign = launched()
    api = api_for(inventory.admin)
    locked = api.patch(f"{BASE}{campaign.pk}/", {"scope": {"departments": ["Sales"]}}, format="json")
    assert locked.status_code == 409 and "locked" in locked.json()["detail"]
    moved = api.patch(f"{BASE}{campaign.pk}/", {"due_date": (timezone.localdate() + dt.timedelta(days=30)).isoformat()},
                      format="json")
    assert moved.status_code == 200


def test_reassign_endpoint(inventory, launched, api_for):
    campaign = launched()
    response = api_for(inventory.admin).post(
        f"{BASE}{campaign.pk}/reassign/",
        {"from_reviewer": "owner@acme.test", "to_reviewer": "mia@acme.test", "reason": "Owner on leave"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    # Owner reviewed ann, mia and the CI bot on GitHub; mia's own grant stays with the owner (no self-review).
    assert response.json() == {"reassigned": 2, "skipped_self_review": 1}
    unknown = api_for(inventory.admin).post(
        f"{BASE}{campaign.pk}/reassign/", {"from_reviewer": None, "to_reviewer": "x@acme.test"}, format="json")
    assert unknown.status_code == 400 and "x@acme.test is not a member" in unknown.json()["detail"]


def test_progress_endpoint(inventory, launched, api_for):
    campaign = launched()
    body = api_for(inventory.admin).get(f"{BASE}{campaign.pk}/progress/").json()
    assert {r["application_name"]: r["total"] for r in body["by_application"]} == {
        "GitHub": 4, "Salesforce": 2, "Slack": 2}
    assert {r["reviewer_email"]: r["total"] for r in body["by_reviewer"]} == {
        "owner@acme.test": 3, "fallback@acme.test": 5}


def test_preview_endpoint(inventory, api_for):
    body = api_for(inventory.admin).post(f"{BASE}preview/", {"scope": {"preset": "non_human"}}, format="json").json()
    assert (body["applications"], body["identities"], body["items"]) == (2, 2, 2)


def test_outsider_gets_404_everywhere(inventory, launched, outsider, api_for):
    campaign = launched()
    api = api_for(outsider)
    assert api.get(BASE).status_code == 404
    assert api.post(BASE, payload(), format="json").status_code == 404
    for suffix in ("", "progress/"):
        assert api.get(f"{BASE}{campaign.pk}/{suffix}").status_code == 404
    for suffix in ("launch/", "cancel/", "close/", "reassign/"):
        assert api.post(f"{BASE}{campaign.pk}/{suffix}", {}, format="json").status_code == 404
    # Their own organization's URL does not reach acme's campaign either.
    assert api.get(f"/api/v1/orgs/globex/campaigns/{campaign.pk}/").status_code == 404


@pytest.mark.parametrize("role", [Role.VIEWER, Role.AUDITOR, Role.REVIEWER])
def test_roles_without_manage_permission_get_403(inventory, launched, member, api_for, role):
    campaign = launched()
    api = api_for(member(role))
    assert api.post(BASE, payload(), format="json").status_code == 403
    assert api.post(f"{BASE}preview/", {"scope": {}}, format="json").status_code == 403
    for suffix in ("launch/", "cancel/", "close/", "reassign/"):
        response = api.post(f"{BASE}{campaign.pk}/{suffix}", {"reason": "x"}, format="json")
        assert response.status_code in (403, 404) if role == Role.REVIEWER else response.status_code == 403
    assert api.patch(f"{BASE}{campaign.pk}/", {"title": "x"}, format="json").status_code in (403, 404)


def test_reviewer_sees_only_campaigns_with_their_items(inventory, launched, make_campaign, api_for):
    mine = launched()
    make_campaign(title="Not mine")
    api = api_for(inventory.owner_member)
    assert [c["id"] for c in api.get(BASE).json()["results"]] == [str(mine.pk)]
    other = launched(scope={"applications": ["Salesforce"]})
    assert api.get(f"{BASE}{other.pk}/").status_code == 404
    assert api.get(f"{BASE}{mine.pk}/").status_code == 200


def test_free_plan_gets_403_with_the_explanation(free_org, api_for):
    user = UserFactory(email="admin@initech.test")
    membership = MembershipFactory(user=user, organization=free_org, role=Role.ADMIN)
    response = api_for(membership).get("/api/v1/orgs/initech/campaigns/")
    assert response.status_code == 403
    assert response.json()["detail"] == PLAN_REQUIRED_MESSAGE


def test_endpoints_are_in_the_openapi_schema(client, inventory):
    client.force_login(inventory.admin.user)
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    base = "/api/v1/orgs/{org_slug}/campaigns/"
    for path in ("", "preview/", "{campaign_id}/", "{campaign_id}/launch/", "{campaign_id}/cancel/",
                 "{campaign_id}/close/", "{campaign_id}/reassign/", "{campaign_id}/progress/"):
        assert base + path in paths, base + path
    detail = paths[base + "{campaign_id}/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert detail["$ref"].endswith("/Campaign")
    progress = schema["components"]["schemas"]["Progress"]["properties"]
    assert set(progress) == {"total", "decided", "pending", "approve", "revoke", "exception", "overdue"}


def test_scheduled_when_launch_at_is_in_the_future(inventory, api_for):
    later = (timezone.now() + dt.timedelta(days=2)).isoformat()
    response = api_for(inventory.admin).post(BASE, payload(launch_at=later), format="json")
    assert response.status_code == 201 and response.json()["status"] == CampaignStatus.SCHEDULED


def test_line_breaks_and_control_characters_in_titles_are_normalised_everywhere(inventory, api_for, make_campaign):
    from campaigns.services import campaign_update
    from thalian.tenancy import scope

    response = api_for(inventory.admin).post(BASE, payload(title="  Q3\r\naccess\treview\x07 "), format="json")
    assert response.status_code == 201 and response.json()["title"] == "Q3 access review"
    campaign = make_campaign()
    with scope(campaign.organization):
        campaign = campaign_update(campaign=campaign, actor=inventory.admin, title="Vendor\n\nreview")
    assert campaign.title == "Vendor review"
    response = api_for(inventory.admin).post(BASE, payload(title="\r\n\t"), format="json")
    assert response.status_code == 400 and "title" in response.json()["errors"]
