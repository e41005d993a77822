# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Reassigning review items: one item or a selection, by its reviewer or an admin, with refusals that say why;
every hop is in the item's history, and the admin and escalation moves share the same implementation."""

from __future__ import annotations

import pytest

from campaigns.models import ItemReassignment, ReviewItem
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401


@pytest.fixture
def campaign(inventory, launched):
    return launched()  # application owners: GitHub -> owner@acme.test; others -> fallback@acme.test


def item(campaign, email, app):
    with scopes_disabled():
        return ReviewItem.objects.get(campaign=campaign, identity_email=email, application_name=app)


def url(inventory, campaign, suffix):
    return f"/api/v1/orgs/{inventory.org.slug}/campaigns/{campaign.pk}/items/{suffix}"


def test_reviewer_hands_one_item_to_another_member_with_history(inventory, campaign, api_for, member):
    other = member(Role.REVIEWER, email="other@acme.test")
    ann = item(campaign, "ann@acme.test", "GitHub")
    response = api_for(inventory.owner_member).post(
        url(inventory, campaign, f"{ann.pk}/reassign/"), {"to": "Other@acme.test", "reason": "On leave"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"reassigned": 1, "skipped_self_review": 0, "to": "other@acme.test"}
    ann = item(campaign, "ann@acme.test", "GitHub")
    assert (ann.reviewer_id, ann.reviewer_email) == (other.pk, "other@acme.test")
    detail = api_for(inventory.admin).get(url(inventory, campaign, f"{ann.pk}/")).json()
    assert detail["reassignments"][0] | {"created_at": None} == {
        "from_email": "owner@acme.test", "to_email": "other@acme.test", "by_email": "owner@acme.test",
        "reason": "On leave", "kind": "reassign", "created_at": None}
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="campaign_items_reassigned", actor_email="owner@acme.test").exists()


def test_refusals_say_why_and_change_nothing(inventory, campaign, api_for, member):
    member(Role.VIEWER, email="viewer@acme.test")
    api = api_for(inventory.owner_member)
    ann = item(campaign, "ann@acme.test", "GitHub")
    cases = [
        ({"to": "ann@acme.test", "reason": "x"}, "not a member"),
        ({"to": "viewer@acme.test", "reason": "x"}, "may not review"),
        ({"to": "mia@acme.test", "reason": ""}, "reason"),
    ]
    for body, words in cases:
        response = api.post(url(inventory, campaign, f"{ann.pk}/reassign/"), body, format="json")
        assert response.status_code == 400 and words in str(response.json()), (body, response.json())
    # The target is the item's identity.
    mia_item = item(campaign, "mia@acme.test", "GitHub")
    response = api.post(url(inventory, campaign, f"{mia_item.pk}/reassign/"), {"to": "mia@acme.test", "reason": "x"},
                        format="json")
    assert response.status_code == 400 and "identity under review" in str(response.json())
    assert item(campaign, "ann@acme.test", "GitHub").reviewer_id == inventory.owner_member.pk
    with scopes_disabled():
        assert not ItemReassignment.objects.exists()


def test_reviewer_cannot_move_someone_elses_item_but_an_admin_can(inventory, campaign, api_for):
    bob = item(campaign, "bob@acme.test", "Salesforce")  # assigned to the fallback reviewer
    body = {"to": "mia@acme.test", "reason": "Knows Sales"}
    assert api_for(inventory.owner_member).post(url(inventory, campaign, f"{bob.pk}/reassign/"), body,
                                                format="json").status_code == 404
    assert api_for(inventory.admin).post(url(inventory, campaign, f"{bob.pk}/reassign/"), body,
                                         format="json").status_code == 200
    assert item(campaign, "bob@acme.test", "Salesforce").reviewer_email == "mia@acme.test"


def test_bulk_reassign_by_filter_skips_the_targets_own_access(inventory, campaign, api_for):
    response = api_for(inventory.owner_member).post(
        url(inventory, campaign, "reassign/"),
        {"to": "mia@acme.test", "reason": "Team lead takes over", "filter": {"application": "GitHub"}}, format="json")
    assert response.status_code == 200, response.content
    # GitHub items of the owner: ann, mia, ci-bot (owner's own item went to the fallback); mia's stays.
    assert response.json()["skipped_self_review"] == 1
    assert item(campaign, "ann@acme.test", "GitHub").reviewer_email == "mia@acme.test"
    assert item(campaign, "mia@acme.test", "GitHub").reviewer_email == "owner@acme.test"
    ids = [item(campaign, "ann@acme.test", "Slack").pk]
    by_ids = api_for(inventory.fallback).post(url(inventory, campaign, "reassign/"),
                                              {"to": "owner@acme.test", "reason": "Owner knows", "item_ids": ids},
                                              format="json")
    assert by_ids.status_code == 200 and by_ids.json()["reassigned"] == 1


def test_outsider_gets_404_and_a_viewer_403(inventory, campaign, api_for, outsider, member):
    ann = item(campaign, "ann@acme.test", "GitHub")
    body = {"to": "mia@acme.test", "reason": "x"}
    assert api_for(outsider).post(url(inventory, campaign, f"{ann.pk}/reassign/"), body,
                                  format="json").status_code == 404
    assert api_for(outsider).post(url(inventory, campaign, "reassign/"), {**body, "item_ids": [ann.pk]},
                                  format="json").status_code == 404
    viewer = api_for(member(Role.VIEWER, email="v@acme.test"))
    assert viewer.post(url(inventory, campaign, f"{ann.pk}/reassign/"), body, format="json").status_code == 403
    assert viewer.post(url(inventory, campaign, "reassign/"), {**body, "item_ids": [ann.pk]},
                       format="json").status_code == 403


def test_admin_reassign_all_of_a_reviewer_records_each_hop(inventory, campaign, api_for):
    response = api_for(inventory.admin).post(
        f"/api/v1/orgs/{inventory.org.slug}/campaigns/{campaign.pk}/reassign/",
        {"from_reviewer": "owner@acme.test", "to_reviewer": "mia@acme.test", "reason": "Owner left"}, format="json")
    assert response.status_code == 200 and response.json()["reassigned"] >= 2
    with scopes_disabled():
        hops = ItemReassignment.objects.filter(campaign=campaign)
        assert hops.count() == response.json()["reassigned"]
        assert set(hops.values_list("from_email", "to_email", "by_email", "kind")) == {
            ("owner@acme.test", "mia@acme.test", "admin@acme.test", "reassign")}
