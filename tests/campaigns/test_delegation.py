# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Standing delegation: a member names a delegate for a period; chains are followed and validated; open items move
only when asked; assignments at launch go to the end of the chain; every move is a hop in the item's history."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from campaigns.models import ItemReassignment, ReviewItem
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401


def url(inventory, suffix=""):
    return f"/api/v1/orgs/{inventory.org.slug}/me/delegates/{suffix}"


def today():
    return timezone.localdate().isoformat()


def test_delegation_moves_open_items_when_asked_and_records_the_hop(inventory, launched, api_for):
    campaign = launched()
    response = api_for(inventory.owner_member).post(
        url(inventory), {"delegate": "mia@acme.test", "starts_on": today(), "ends_on": None,
                         "move_open_items": True}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["final_delegate"] == "mia@acme.test" and body["moved_items"] >= 2
    with scopes_disabled():
        items = ReviewItem.objects.filter(campaign=campaign, application_name="GitHub")
        # Everything moves except mia's own access, which mia may not review.
        assert list(items.filter(reviewer=inventory.owner_member).values_list("identity_email", flat=True)) == [
            "mia@acme.test"]
        hop = ItemReassignment.objects.filter(kind="delegation").first()
        assert (hop.from_email, hop.to_email, hop.by_email) == ("owner@acme.test", "mia@acme.test",
                                                                "owner@acme.test")
    listed = api_for(inventory.owner_member).get(url(inventory)).json()
    assert [d["delegate"] for d in listed] == ["mia@acme.test"]


def test_without_moving_items_only_new_campaigns_go_to_the_delegate(inventory, launched, api_for):
    first = launched()
    assert api_for(inventory.owner_member).post(
        url(inventory), {"delegate": "mia@acme.test", "starts_on": today()}, format="json").status_code == 201
    with scopes_disabled():
        assert ReviewItem.objects.filter(campaign=first, reviewer=inventory.owner_member).exists()
    second = launched(title="Second review")
    with scopes_disabled():
        ann = ReviewItem.objects.get(campaign=second, identity_email="ann@acme.test", application_name="GitHub")
        assert ann.reviewer_id == inventory.mia_member.pk
        assert ann.reassignments.get().kind == "delegation"


def test_chains_are_followed_and_loops_and_bad_delegates_refused(inventory, api_for, member):
    member(Role.VIEWER, email="viewer@acme.test")
    owner, mia = api_for(inventory.owner_member), api_for(inventory.mia_member)
    assert mia.post(url(inventory), {"delegate": "fallback@acme.test", "starts_on": today()},
                    format="json").status_code == 201
    chained = owner.post(url(inventory), {"delegate": "mia@acme.test", "starts_on": today()}, format="json")
    assert chained.status_code == 201 and chained.json()["final_delegate"] == "fallback@acme.test"
    loop = api_for(inventory.fallback).post(url(inventory), {"delegate": "owner@acme.test", "starts_on": today()},
                                            format="json")
    assert loop.status_code == 400 and "loop" in str(loop.json())
    for body, words in [
        ({"delegate": "viewer@acme.test", "starts_on": today()}, "may not review"),
        ({"delegate": "nobody@acme.test", "starts_on": today()}, "not a member"),
        ({"delegate": "admin@acme.test", "starts_on": today(),
          "ends_on": (timezone.localdate() - dt.timedelta(days=1)).isoformat()}, "ends before it starts"),
    ]:
        response = api_for(inventory.admin).post(url(inventory), body, format="json")
        assert response.status_code == 400 and words in str(response.json()), response.json()


def test_delete_ends_a_delegation_and_only_ones_own(inventory, api_for):
    created = api_for(inventory.owner_member).post(url(inventory), {"delegate": "mia@acme.test",
                                                                    "starts_on": today()}, format="json").json()
    assert api_for(inventory.mia_member).delete(url(inventory, f"{created['id']}/")).status_code == 404
    assert api_for(inventory.owner_member).delete(url(inventory, f"{created['id']}/")).status_code == 204
    assert api_for(inventory.owner_member).get(url(inventory)).json() == []


def test_outsider_404_and_viewer_403(inventory, api_for, outsider, member):
    assert api_for(outsider).get(url(inventory)).status_code == 404
    viewer = api_for(member(Role.VIEWER, email="v@acme.test"))
    assert viewer.get(url(inventory)).status_code == 403
    assert viewer.post(url(inventory), {"delegate": "mia@acme.test", "starts_on": today()},
                       format="json").status_code == 403
