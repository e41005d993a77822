"""Independent decisions: nobody decides their own access; bulk approval leaves out revoke recommendations
unless they are included explicitly (service, API and pages)."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from campaigns.decisions import bulk_decision_breakdown, decisions_bulk_apply, review_item_decide
from campaigns.models import ReviewItem
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope

from .review_support import active_campaign, add_items, assert_chain_intact, fresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(org):
    return active_campaign(org, title="Q3 access review")


@pytest.fixture
def analyst(member):
    return member(Role.SECURITY_ANALYST, email="Sam.Analyst@acme.test")


@pytest.fixture
def mixed(campaign, member):
    """12 approve-recommended items, 3 terminated and 4 dormant revoke-recommended ones, and one item whose
    identity is the analyst (e-mail in another case), all assigned to a reviewer."""
    reviewer = member(Role.REVIEWER)
    ok = add_items(campaign, reviewer, 12)
    terminated = add_items(campaign, reviewer, 3, recommendation="revoke", is_terminated=True,
                           identity_status="terminated", recommendation_reason="Identity is terminated")
    dormant = add_items(campaign, reviewer, 4, recommendation="revoke", is_dormant=True,
                        recommendation_reason="Not used in the last 90 days")
    own = add_items(campaign, reviewer, 1, identity_email="sam.analyst@ACME.test")
    return {"ok": ok, "terminated": terminated, "dormant": dormant, "own": own, "reviewer": reviewer}


def base(campaign):
    return f"/api/v1/orgs/{campaign.organization.slug}/campaigns/{campaign.pk}"


# Self-review ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.SECURITY_ANALYST, Role.ADMIN, Role.SUPER_ADMIN])
def test_no_role_may_decide_its_own_access(org, campaign, member, role):
    staff = member(role)
    [item] = add_items(campaign, None, 1, identity_email=staff.user.email.upper())
    with scope(org), pytest.raises(PermissionDenied) as exc:
        review_item_decide(item=item, actor=staff, decision="approve")
    assert "your own access" in str(exc.value)
    assert fresh(item).decision == ""


def test_deciding_own_access_through_the_api_answers_403_saying_why(org, campaign, analyst, mixed, api_for):
    [own] = mixed["own"]
    response = api_for(analyst).post(f"{base(campaign)}/items/{own.pk}/decision/", {"decision": "approve"},
                                     format="json")
    assert response.status_code == 403
    assert "cannot decide your own access" in response.json()["detail"]
    assert fresh(own).decision == ""


def test_deciding_own_access_on_the_page_is_refused_and_the_row_offers_no_buttons(campaign, analyst, mixed,
                                                                                  client_for):
    [own] = mixed["own"]
    client = client_for(analyst)
    page = client.get(reverse("review_items", args=["acme", campaign.pk])).content.decode()
    row = page[page.index(f'id="item-{own.pk}"'):]
    row = row[: row.index("</tr>")]
    assert "Your own access" in row and 'value="approve"' not in row and 'name="item_ids"' not in row
    response = client.post(reverse("review_item_decide", args=["acme", campaign.pk, own.pk]),
                           {"decision": "approve"})
    assert response.status_code == 403 and "your own access" in response.content.decode()
    assert fresh(own).decision == ""


# Guarded bulk approval: service ----------------------------------------------------------------------


def test_breakdown_counts_what_an_approval_would_leave_out_by_cause(org, campaign, analyst, mixed):
    with scope(org):
        breakdown = bulk_decision_breakdown(campaign=campaign, actor=analyst, items=ReviewItem.objects.all(),
                                            decision="approve")
    assert (breakdown.matching, breakdown.self_review, breakdown.recommended_revoke) == (20, 1, 7)
    assert breakdown.revoke_causes == {"terminated": 3, "orphaned": 0, "dormant": 4, "never_used": 0, "other": 0}
    assert breakdown.to_decide == 12 and breakdown.causes_text == "terminated 3, dormant 4"


def test_bulk_approval_skips_revoke_recommendations_and_own_access(org, campaign, analyst, mixed):
    with scope(org):
        result = decisions_bulk_apply(campaign=campaign, actor=analyst, items=ReviewItem.objects.all(),
                                      decision="approve", reason="Quarterly")
    assert result.updated == 12
    assert result.skipped == {"self_review": 1, "recommended_revoke": 7}
    assert result.recommended_revoke_causes == {"terminated": 3, "dormant": 4}
    assert {fresh(i).decision for i in mixed["ok"]} == {"approve"}
    assert {fresh(i).decision for i in mixed["terminated"] + mixed["dormant"] + mixed["own"]} == {""}
    audit = AuditEvent.objects.get(action="campaign_bulk_decision")
    assert audit.details["skipped"] == {"self_review": 1, "recommended_revoke": 7}
    assert audit.details["included_recommended_revoke"] is False
    assert_chain_intact(campaign)


def test_bulk_approval_includes_revoke_recommendations_only_when_asked(org, campaign, analyst, mixed):
    with scope(org):
        result = decisions_bulk_apply(campaign=campaign, actor=analyst, items=ReviewItem.objects.all(),
                                      decision="approve", include_recommended_revoke=True)
    assert result.updated == 19 and result.skipped == {"self_review": 1}
    assert fresh(mixed["own"][0]).decision == ""
    assert AuditEvent.objects.get(action="campaign_bulk_decision").details["included_recommended_revoke"] is True


def test_bulk_revoke_is_not_guarded_but_still_skips_own_access(org, campaign, analyst, mixed):
    with scope(org):
        result = decisions_bulk_apply(campaign=campaign, actor=analyst, items=ReviewItem.objects.all(),
                                      decision="revoke", reason="Clean-up")
    assert result.updated == 19 and result.skipped == {"self_review": 1}


# Guarded bulk approval: API --------------------------------------------------------------------------


def test_api_bulk_approval_by_filter_reports_skipped_counts_by_cause(campaign, analyst, mixed, api_for):
    response = api_for(analyst).post(f"{base(campaign)}/bulk-decision/",
                                     {"decision": "approve", "reason": "ok", "filter": {}}, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "updated": 12,
        "skipped": {"self_review": 1, "recommended_revoke": 7},
        "recommended_revoke_causes": {"terminated": 3, "dormant": 4},
    }


def test_api_bulk_approval_by_ids_includes_revoke_recommendations_when_asked(campaign, analyst, mixed, api_for):
    ids = [i.pk for i in mixed["terminated"] + mixed["own"] + mixed["ok"][:2]]
    api = api_for(analyst)
    guarded = api.post(f"{base(campaign)}/bulk-decision/", {"decision": "approve", "item_ids": ids}, format="json")
    assert guarded.json()["updated"] == 2
    assert guarded.json()["skipped"] == {"self_review": 1, "recommended_revoke": 3}
    included = api.post(f"{base(campaign)}/bulk-decision/",
                        {"decision": "approve", "item_ids": ids, "include_recommended_revoke": True}, format="json")
    assert included.json() == {"updated": 5, "skipped": {"self_review": 1}, "recommended_revoke_causes": {}}
    assert fresh(mixed["terminated"][0]).decision == "approve"


def test_api_rejects_a_non_boolean_include_flag(campaign, analyst, mixed, api_for):
    response = api_for(analyst).post(f"{base(campaign)}/bulk-decision/",
                                     {"decision": "approve", "filter": {}, "include_recommended_revoke": "maybe"},
                                     format="json")
    assert response.status_code == 400 and "include_recommended_revoke" in response.json()["detail"]
    assert not ReviewItem.objects.model.unscoped.exclude(decision="").exists()


# Guarded bulk approval: pages ------------------------------------------------------------------------


def confirm_url(campaign, **params):
    from urllib.parse import urlencode

    return reverse("review_bulk_confirm", args=["acme", campaign.pk]) + "?" + urlencode(params)


def test_confirm_page_states_the_breakdown_and_offers_to_include(campaign, analyst, mixed, client_for):
    client = client_for(analyst)
    page = client.get(confirm_url(campaign, apply="approve")).content.decode()
    assert "20 items match the filters" in page
    assert "7 recommended for revoke — terminated 3, dormant 4 —" in page and "excluded" in page
    assert "1 item of your own access is excluded" in page
    assert "Approve 12 items?" in page and 'name="expected" value="12"' in page
    assert "include_recommended_revoke=1" in page
    included = client.get(confirm_url(campaign, apply="approve", include_recommended_revoke="1")).content.decode()
    assert "Approve 19 items?" in included and "included" in included
    assert 'name="include_recommended_revoke" value="on"' in included


def test_confirmed_guarded_approval_on_the_page_decides_only_what_it_stated(campaign, analyst, mixed, client_for):
    client = client_for(analyst)
    response = client.post(reverse("review_bulk", args=["acme", campaign.pk]),
                           {"mode": "all", "decision": "approve", "expected": "12", "reason": "ok"}, follow=True)
    body = response.content.decode()
    assert "Approve: 12 items decided." in body and "7 items recommended for revoke" in body
    assert {fresh(i).decision for i in mixed["dormant"]} == {""}
    client.post(reverse("review_bulk", args=["acme", campaign.pk]),
                {"mode": "all", "decision": "approve", "expected": "19", "include_recommended_revoke": "on"})
    assert {fresh(i).decision for i in mixed["dormant"] + mixed["terminated"]} == {"approve"}
    assert fresh(mixed["own"][0]).decision == ""


def test_confirm_page_outsider_gets_404_and_viewer_403(campaign, mixed, outsider, member, client):
    client.force_login(outsider.user)
    assert client.get(confirm_url(campaign, apply="approve").replace("/o/acme/", "/o/acme/")).status_code == 404
    client.force_login(member(Role.VIEWER).user)
    assert client.get(confirm_url(campaign, apply="approve")).status_code == 403
