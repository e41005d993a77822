"""Reassign (delegate) from the review screen: one row, the checked rows or everything in view, to another member
with a reason, through the one move service; refusals are answered in the dialog and change nothing."""

from __future__ import annotations

import pytest

from campaigns.models import ItemReassignment
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .review_support import active_campaign, add_items, fresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(org, member):
    admin = member(Role.ADMIN)
    rita = member(Role.REVIEWER, email="rita@acme.test")
    sam = member(Role.REVIEWER, email="sam@acme.test")
    member(Role.VIEWER, email="viewer@acme.test")
    campaign = active_campaign(org, title="Q2 review", created_by=admin.user)
    github = add_items(campaign, rita, 3, application_name="GitHub")
    okta = add_items(campaign, rita, 2, application_name="Okta")
    [sams] = add_items(campaign, sam, 1, identity_email="sam@acme.test")  # sam's own access, given to sam
    [about_sam] = add_items(campaign, rita, 1, identity_email="sam@acme.test", application_name="Jira")
    return {"admin": admin, "rita": rita, "sam": sam, "campaign": campaign, "github": github, "okta": okta,
            "sams": sams, "about_sam": about_sam}


def url(campaign):
    return f"/o/acme/campaigns/{campaign.pk}/items/reassign/"


def items_page(campaign):
    return f"/o/acme/campaigns/{campaign.pk}/items/"


def test_rows_offer_reassign_for_the_reviewers_own_open_items(world, client_for):
    body = client_for(world["rita"]).get(items_page(world["campaign"])).content.decode()
    assert body.count('data-reassign="') == 6
    assert 'id="reassign-dialog"' in body and 'value="sam@acme.test"' in body  # suggestions
    assert client_for(world["admin"]).get(items_page(world["campaign"])).content.decode().count(
        'data-reassign="') == 7


def test_one_row_is_reassigned_with_a_reason_through_the_dialog(world, client_for):
    item = world["github"][0]
    response = client_for(world["rita"]).post(url(world["campaign"]), {
        "mode": "item", "item_id": item.pk, "to": "sam@acme.test", "reason": "Sam owns this repository",
        "next": items_page(world["campaign"])}, HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Redirect"] == items_page(world["campaign"])
    assert fresh(item).reviewer_id == world["sam"].pk
    with scopes_disabled():
        hop = ItemReassignment.objects.get(item=item)
    assert (hop.from_email, hop.to_email, hop.by_email, hop.reason, hop.kind) == (
        "rita@acme.test", "sam@acme.test", "rita@acme.test", "Sam owns this repository", "reassign")
    page = client_for(world["rita"]).get(items_page(world["campaign"])).content.decode()
    assert "1 item reassigned to sam@acme.test." in page


@pytest.mark.parametrize("to, reason, words", [
    ("sam@acme.test", "", "say why the items are handed to someone else"),
    ("viewer@acme.test", "busy", "viewer@acme.test has the role Viewer, which may not review items"),
    ("nobody@acme.test", "busy", "nobody@acme.test is not a member of this organization"),
    ("rita@acme.test", "busy", "the item is already assigned to rita@acme.test"),
    ("not-an-email", "busy", "Enter the e-mail address of the member"),
])
def test_refusals_are_shown_in_the_dialog_and_change_nothing(world, client_for, to, reason, words):
    item = world["github"][0]
    response = client_for(world["rita"]).post(url(world["campaign"]), {
        "mode": "item", "item_id": item.pk, "to": to, "reason": reason}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'role="alert"' in body and words in body
    assert fresh(item).reviewer_id == world["rita"].pk
    with scopes_disabled():
        assert not ItemReassignment.objects.exists()


def test_an_item_about_the_target_is_refused_as_their_own_access(world, client_for):
    response = client_for(world["rita"]).post(url(world["campaign"]), {
        "mode": "item", "item_id": world["about_sam"].pk, "to": "sam@acme.test", "reason": "busy"},
        HTTP_HX_REQUEST="true")
    assert "sam@acme.test is the identity under review in this item" in response.content.decode()
    assert fresh(world["about_sam"]).reviewer_id == world["rita"].pk


def test_checked_rows_move_and_the_targets_own_access_stays(world, client_for):
    ids = [world["okta"][0].pk, world["okta"][1].pk, world["about_sam"].pk]
    response = client_for(world["rita"]).post(url(world["campaign"]), {
        "mode": "selected", "item_ids": ids, "to": "sam@acme.test", "reason": "Sam runs Okta"}, follow=True)
    body = response.content.decode()
    assert "2 items reassigned to sam@acme.test. 1 stayed: they are sam@acme.test&#x27;s own access." in body
    assert [fresh(i).reviewer_id for i in world["okta"]] == [world["sam"].pk] * 2
    assert fresh(world["about_sam"]).reviewer_id == world["rita"].pk


def test_everything_in_view_moves_by_the_filter(world, client_for):
    response = client_for(world["rita"]).post(url(world["campaign"]), {
        "mode": "all", "filter_application": "GitHub", "to": "sam@acme.test", "reason": "GitHub to Sam"},
        HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert {fresh(i).reviewer_id for i in world["github"]} == {world["sam"].pk}
    assert {fresh(i).reviewer_id for i in world["okta"]} == {world["rita"].pk}
    with scopes_disabled():
        audit = AuditEvent.objects.get(action="campaign_items_reassigned")
    assert audit.details["count"] == 3 and audit.actor_email == "rita@acme.test"


def test_a_reviewer_cannot_reach_another_reviewers_items(world, client_for):
    client = client_for(world["rita"])
    assert client.post(url(world["campaign"]), {"mode": "item", "item_id": world["sams"].pk,
                                                "to": "admin@acme.test", "reason": "x"}).status_code == 404
    refused = client.post(url(world["campaign"]), {"mode": "selected", "item_ids": [world["sams"].pk],
                                                   "to": "admin@acme.test", "reason": "x"}, HTTP_HX_REQUEST="true")
    assert "role=\"alert\"" in refused.content.decode()
    assert fresh(world["sams"]).reviewer_id == world["sam"].pk


def test_an_admin_reassigns_anyones_items(world, client_for):
    response = client_for(world["admin"]).post(url(world["campaign"]), {
        "mode": "item", "item_id": world["sams"].pk, "to": "rita@acme.test", "reason": "Independent review"},
        HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert fresh(world["sams"]).reviewer_id == world["rita"].pk


@pytest.mark.parametrize("role", [Role.VIEWER, Role.AUDITOR])
def test_reassign_needs_a_reviewing_role(world, member, client_for, role):
    response = client_for(member(role, email=f"{role}@acme.test")).post(url(world["campaign"]), {
        "mode": "item", "item_id": world["github"][0].pk, "to": "sam@acme.test", "reason": "x"})
    assert response.status_code == 403
    assert fresh(world["github"][0]).reviewer_id == world["rita"].pk


def test_reassign_is_404_for_outsiders_and_other_organizations_campaigns(world, other_org, outsider, client_for):
    assert client_for(outsider).post(url(world["campaign"]), {
        "mode": "item", "item_id": world["github"][0].pk, "to": "sam@acme.test", "reason": "x"}).status_code == 404
    foreign = active_campaign(other_org)
    assert client_for(world["admin"]).post(url(foreign), {
        "mode": "all", "to": "sam@acme.test", "reason": "x"}).status_code == 404
    assert fresh(world["github"][0]).reviewer_id == world["rita"].pk
