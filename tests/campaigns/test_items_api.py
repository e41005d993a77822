import datetime as dt
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.decisions import review_item_decide
from campaigns.models import ReviewItem
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from .review_support import active_campaign, add_items, assert_chain_intact, events_of, fresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(member):
    return member(Role.REVIEWER)


@pytest.fixture
def other_reviewer(member):
    return member(Role.REVIEWER, email="other.reviewer@acme.test")


@pytest.fixture
def campaign(org):
    return active_campaign(org, title="Q3 access review")


def base(campaign):
    return f"/api/v1/orgs/{campaign.organization.slug}/campaigns/{campaign.pk}"


def test_item_shape_is_exactly_as_documented(org, campaign, reviewer, api_for):
    last_used = timezone.now() - dt.timedelta(days=120)
    [item] = add_items(
        campaign, reviewer, 1, identity_email="ann@corp.test", identity_name="Ann Lee", identity_department="Sales",
        identity_manager_email="boss@corp.test", identity_kind="human", identity_status="terminated",
        application_name="Salesforce", application_category="CRM", application_sanctioned=False, role="Admin",
        last_used=last_used, is_terminated=True, is_dormant=True, recommendation="revoke",
        recommendation_reason="Identity is terminated",
    )
    with scope(org):
        review_item_decide(item=item, actor=reviewer, decision="revoke", reason="Left the company")
    with scopes_disabled():
        ReviewItem.objects.filter(pk=item.pk).update(
            ticket_key="SEC-9", ticket_url="https://tickets.example.test/SEC-9", ticket_status="open"
        )
    response = api_for(reviewer).get(f"{base(campaign)}/items/")
    assert response.status_code == 200
    [row] = response.json()["results"]
    decided_at = row.pop("decided_at")
    assert decided_at.startswith(str(timezone.now().year))
    # A single-stage item: its one decision, in stage 1.
    assert [(d["stage"], d["decision"], d["reason"], d["decided_by"]) for d in row.pop("stage_decisions")] == [
        (1, "revoke", "Left the company", reviewer.user.email)
    ]
    assert row == {
        "id": item.pk,
        "identity": {
            "email": "ann@corp.test", "name": "Ann Lee", "department": "Sales", "manager_email": "boss@corp.test",
            "kind": "human", "status": "terminated",
        },
        "application": {"name": "Salesforce", "category": "CRM", "sanctioned": False},
        "role": "Admin",
        "last_used": last_used.isoformat().replace("+00:00", "Z"),
        "findings": ["dormant", "terminated"],
        "recommendation": {"decision": "revoke", "reason": "Identity is terminated"},
        "reviewer": reviewer.user.email,
        "reviewer_kind": "member",
        "decision": "revoke",
        "reason": "Left the company",
        "comment": "",
        "decided_by": reviewer.user.email,
        "decided_on_behalf_of": None,
        "signed_off_at": None,
        "ticket_url": "https://tickets.example.test/SEC-9",
        "ticket_key": "SEC-9",
        "ticket_status": "open",
        "ticket_error": "",
        "remediation_status": fresh(item).remediation_status,
        "exception_expires_on": None,
        "renewal_of": None,
        "stage": 1,
        "decision_path": "",
    }


def test_pending_item_has_null_decision(campaign, reviewer, api_for):
    add_items(campaign, reviewer, 1)
    [row] = api_for(reviewer).get(f"{base(campaign)}/items/").json()["results"]
    assert (row["decision"], row["decided_by"], row["decided_at"]) == (None, None, None)


def test_items_filters(org, campaign, reviewer, api_for):
    sales = add_items(campaign, reviewer, 2, identity_department="Sales")
    bot = add_items(campaign, reviewer, 1, identity_kind="bot", application_name="Jira")
    dormant = add_items(campaign, reviewer, 1, is_dormant=True)
    named = add_items(campaign, reviewer, 1, identity_name="Grace Hopper")
    with scope(org):
        review_item_decide(item=sales[1], actor=reviewer, decision="exception", reason="vendor")
    api = api_for(reviewer)

    def ids(**params):
        response = api.get(f"{base(campaign)}/items/", params)
        assert response.status_code == 200, response.json()
        return {r["id"] for r in response.json()["results"]}

    assert ids(department="Sales") == {i.pk for i in sales}
    assert ids(identity_kind="bot") == {bot[0].pk}
    assert ids(application="Jira") == {bot[0].pk}
    assert ids(finding="dormant") == {dormant[0].pk}
    assert ids(search="hopper") == {named[0].pk}
    assert ids(decision="exception") == {sales[1].pk}
    assert ids(decision="pending") == {sales[0].pk, bot[0].pk, dormant[0].pk, named[0].pk}
    assert ids(decision="approve") == set()


def test_items_bad_filter_is_400_naming_it(campaign, reviewer, api_for):
    add_items(campaign, reviewer, 1)
    response = api_for(reviewer).get(f"{base(campaign)}/items/", {"decision": "maybe"})
    assert response.status_code == 400
    assert "decision" in response.json()["detail"] and "'maybe'" in response.json()["detail"]


def test_items_cursor_pagination_walks_every_item_once(campaign, reviewer, api_for):
    items = add_items(campaign, reviewer, 23)
    api = api_for(reviewer)
    url, seen = f"{base(campaign)}/items/?page_size=10", []
    while url:
        data = api.get(url).json()
        seen.extend(r["id"] for r in data["results"])
        url = data["next"]
    assert seen == sorted(i.pk for i in items)


def test_reviewer_sees_and_decides_only_their_items(campaign, reviewer, other_reviewer, api_for):
    mine = add_items(campaign, reviewer, 2)
    theirs = add_items(campaign, other_reviewer, 2)
    api = api_for(reviewer)
    assert {r["id"] for r in api.get(f"{base(campaign)}/items/").json()["results"]} == {i.pk for i in mine}
    assert api.get(f"{base(campaign)}/items/{theirs[0].pk}/").status_code == 404
    response = api.post(f"{base(campaign)}/items/{theirs[0].pk}/decision/", {"decision": "approve"}, format="json")
    assert response.status_code == 404
    assert fresh(theirs[0]).decision == ""


def test_item_detail_includes_history(org, campaign, reviewer, api_for):
    [item] = add_items(campaign, reviewer, 1)
    with scope(org):
        review_item_decide(item=item, actor=reviewer, decision="approve")
        review_item_decide(item=item, actor=reviewer, decision="revoke", reason="gone")
    data = api_for(reviewer).get(f"{base(campaign)}/items/{item.pk}/").json()
    assert [(h["decision"], h["reason"], h["kind"], h["actor_role"]) for h in data["history"]] == [
        ("approve", "", "single", "reviewer"),
        ("revoke", "gone", "single", "reviewer"),
    ]


def test_decision_endpoint(campaign, reviewer, api_for):
    [item] = add_items(campaign, reviewer, 1)
    response = api_for(reviewer).post(
        f"{base(campaign)}/items/{item.pk}/decision/", {"decision": "revoke", "reason": "Not needed"}, format="json"
    )
    assert response.status_code == 200
    assert (response.json()["decision"], response.json()["reason"]) == ("revoke", "Not needed")
    assert fresh(item).decision == "revoke"
    assert AuditEvent.objects.filter(action="campaign_decision").count() == 1


def test_decision_endpoint_requires_reason_for_revoke(campaign, reviewer, api_for):
    [item] = add_items(campaign, reviewer, 1)
    response = api_for(reviewer).post(f"{base(campaign)}/items/{item.pk}/decision/", {"decision": "revoke"}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()["errors"]
    assert fresh(item).decision == "" and events_of(campaign) == []


def test_decision_endpoint_rejects_unknown_decision(campaign, reviewer, api_for):
    [item] = add_items(campaign, reviewer, 1)
    response = api_for(reviewer).post(f"{base(campaign)}/items/{item.pk}/decision/", {"decision": "keep"}, format="json")
    assert response.status_code == 400 and "decision" in response.json()["errors"]


def test_bulk_decision_by_ids(campaign, reviewer, api_for):
    items = add_items(campaign, reviewer, 4)
    response = api_for(reviewer).post(
        f"{base(campaign)}/bulk-decision/",
        {"decision": "approve", "item_ids": [items[0].pk, items[2].pk]},
        format="json",
    )
    assert response.status_code == 200 and response.json() == {"updated": 2, "skipped": {}, "recommended_revoke_causes": {}}
    assert [fresh(i).decision for i in items] == ["approve", "", "approve", ""]


def test_bulk_decision_by_filter_applies_to_all_matching_items(campaign, reviewer, api_for):
    sales = add_items(campaign, reviewer, 60, identity_department="Sales")
    other = add_items(campaign, reviewer, 5, identity_department="Legal")
    response = api_for(reviewer).post(
        f"{base(campaign)}/bulk-decision/",
        {"decision": "revoke", "reason": "Sales reorganised", "filter": {"department": "Sales"}},
        format="json",
    )
    assert response.json() == {"updated": 60, "skipped": {}, "recommended_revoke_causes": {}}
    assert {fresh(i).decision for i in sales} == {"revoke"} and {fresh(i).decision for i in other} == {""}
    assert AuditEvent.objects.get(action="campaign_bulk_decision").details["count"] == 60
    assert_chain_intact(campaign)


@pytest.mark.parametrize(
    "payload,message",
    [
        ({"decision": "approve"}, "either item_ids or filter"),
        ({"decision": "approve", "item_ids": [1], "filter": {}}, "either item_ids or filter"),
        ({"decision": "approve", "filter": {"departmnet": "Sales"}}, "Unknown filter keys: departmnet"),
        ({"decision": "approve", "filter": {"identity_kind": "robot"}}, "Unknown identity kind 'robot'"),
        ({"decision": "approve", "filter": ["Sales"]}, "filter must be an object"),
        ({"decision": "approve", "item_ids": []}, "item_ids"),
        ({"decision": "revoke", "filter": {}}, "A reason is required"),
    ],
)
def test_bulk_decision_bad_input_changes_nothing(campaign, reviewer, api_for, payload, message):
    add_items(campaign, reviewer, 3)
    response = api_for(reviewer).post(f"{base(campaign)}/bulk-decision/", payload, format="json")
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert events_of(campaign) == []


def test_bulk_decision_with_someone_elses_item_changes_nothing(campaign, reviewer, other_reviewer, api_for):
    mine = add_items(campaign, reviewer, 1)
    theirs = add_items(campaign, other_reviewer, 1)
    response = api_for(reviewer).post(
        f"{base(campaign)}/bulk-decision/", {"decision": "approve", "item_ids": [mine[0].pk, theirs[0].pk]},
        format="json",
    )
    assert response.status_code == 400 and str(theirs[0].pk) in response.json()["detail"]
    assert fresh(mine[0]).decision == ""


def test_sign_off_endpoint(campaign, reviewer, api_for):
    items = add_items(campaign, reviewer, 2)
    api = api_for(reviewer)
    response = api.post(f"{base(campaign)}/sign-off/")
    assert response.status_code == 400 and "still undecided" in response.json()["detail"]
    api.post(f"{base(campaign)}/bulk-decision/", {"decision": "approve", "filter": {}}, format="json")
    response = api.post(f"{base(campaign)}/sign-off/")
    assert response.status_code == 200 and response.json() == {"signed_off": 2}
    response = api.post(f"{base(campaign)}/items/{items[0].pk}/decision/", {"decision": "approve"}, format="json")
    assert response.status_code == 400 and "signed off" in response.json()["detail"]
    assert AuditEvent.objects.filter(action="campaign_signed_off").count() == 1


def test_my_reviews_endpoint(org, campaign, reviewer, other_reviewer, api_for):
    items = add_items(campaign, reviewer, 3)
    add_items(active_campaign(org, title="Not mine"), other_reviewer, 1)
    with scope(org):
        review_item_decide(item=items[0], actor=reviewer, decision="approve")
    response = api_for(reviewer).get(f"/api/v1/orgs/{org.slug}/my-reviews/")
    assert response.status_code == 200
    assert response.json() == [
        {
            "campaign_id": str(campaign.pk),
            "title": "Q3 access review",
            "status": "active",
            "due_date": campaign.due_date.isoformat(),
            "total": 3,
            "decided": 1,
            "open": 2,
            "signed_off": False,
        }
    ]


def _endpoints(campaign, item):
    b = base(campaign)
    return [
        ("get", f"{b}/items/", None),
        ("get", f"{b}/items/{item.pk}/", None),
        ("post", f"{b}/items/{item.pk}/decision/", {"decision": "approve"}),
        ("post", f"{b}/bulk-decision/", {"decision": "approve", "filter": {}}),
        ("post", f"{b}/sign-off/", None),
    ]


def test_outsider_gets_404_everywhere(org, campaign, reviewer, outsider, api_for):
    [item] = add_items(campaign, reviewer, 1)
    api = api_for(outsider)
    for method, url, data in _endpoints(campaign, item):
        assert getattr(api, method)(url, data, format="json").status_code == 404, url
        own = url.replace(f"/orgs/{org.slug}/", f"/orgs/{outsider.organization.slug}/")
        assert getattr(api, method)(own, data, format="json").status_code == 404, own
    assert api.get(f"/api/v1/orgs/{org.slug}/my-reviews/").status_code == 404
    assert fresh(item).decision == ""


def test_unknown_campaign_is_404(campaign, reviewer, api_for):
    assert api_for(reviewer).get(f"/api/v1/orgs/acme/campaigns/{uuid.uuid4()}/items/").status_code == 404


@pytest.mark.parametrize("role", [Role.VIEWER, Role.AUDITOR])
def test_roles_without_decide_permission_get_403(campaign, reviewer, member, api_for, role):
    [item] = add_items(campaign, reviewer, 1)
    api = api_for(member(role))
    assert api.get(f"{base(campaign)}/items/").status_code == 200
    for method, url, data in _endpoints(campaign, item)[2:]:
        assert getattr(api, method)(url, data, format="json").status_code == 403, url
    assert fresh(item).decision == ""


def test_free_plan_gets_403(free_org, member, api_for):
    admin = member(Role.ADMIN, organization=free_org)
    campaign = active_campaign(free_org)
    [item] = add_items(campaign, admin, 1)
    api = api_for(admin)
    for method, url, data in _endpoints(campaign, item):
        assert getattr(api, method)(url, data, format="json").status_code == 403, url


def test_items_list_query_count_does_not_grow_with_page_size(campaign, reviewer, api_for):
    add_items(campaign, reviewer, 120, is_dormant=True)
    api = api_for(reviewer)
    api.get(f"{base(campaign)}/items/?page_size=1")  # the token's first use is recorded once
    counts = []
    for size in (5, 100):
        with CaptureQueriesContext(connection) as ctx:
            response = api.get(f"{base(campaign)}/items/?page_size={size}")
        assert len(response.json()["results"]) == size
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]


def test_review_endpoints_are_in_the_openapi_schema(client):
    schema = client.get("/api/v1/schema/?format=json").json()
    paths = schema["paths"]
    for path, method in [
        ("/api/v1/orgs/{org_slug}/campaigns/{campaign_id}/items/", "get"),
        ("/api/v1/orgs/{org_slug}/campaigns/{campaign_id}/items/{item_id}/", "get"),
        ("/api/v1/orgs/{org_slug}/campaigns/{campaign_id}/items/{item_id}/decision/", "post"),
        ("/api/v1/orgs/{org_slug}/campaigns/{campaign_id}/bulk-decision/", "post"),
        ("/api/v1/orgs/{org_slug}/campaigns/{campaign_id}/sign-off/", "post"),
        ("/api/v1/orgs/{org_slug}/my-reviews/", "get"),
    ]:
        assert method in paths[path], path
    params = {p["name"] for p in paths["/api/v1/orgs/{org_slug}/campaigns/{campaign_id}/items/"]["get"]["parameters"]}
    assert {"decision", "application", "department", "identity_kind", "finding", "search", "cursor"} <= params
