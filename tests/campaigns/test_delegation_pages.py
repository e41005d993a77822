# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures and test_guest_reviewers are requested by name
"""My settings → Delegation (members) and delegating through the guest link (guests): the same rules as the API,
messages naming the problem, audit-logged; a delegate's decisions are made on the delegator's behalf."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns.models import Delegation, GuestReviewer, ItemReassignment, ReviewItem
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from ..notifications.conftest import mailbox  # noqa: F401  (a real SMTP server on 127.0.0.1)
from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401
from .test_guest_reviewers import guest_campaign, guests_on, items_by_grant, link_path  # noqa: F401

PAGE = "/o/acme/settings/my-delegation/"


def today(days=0):
    return (timezone.localdate() + dt.timedelta(days=days)).isoformat()


def test_member_creates_lists_and_ends_a_delegation(inventory, launched, client_for):
    campaign = launched()
    client = client_for(inventory.owner_member)
    page = client.get(PAGE)
    assert page.status_code == 200
    body = page.content.decode()
    assert "You have not delegated your reviews." in body and 'value="mia@acme.test"' in body  # suggested
    created = client.post(PAGE, {"delegate": "mia@acme.test", "starts_on": today(), "ends_on": "",
                                 "move_open_items": "on"}, follow=True)
    body = created.content.decode()
    assert "mia@acme.test reviews in your place from" in body and "until you end it" in body
    assert "open items moved to them now" in body
    assert "In force" in body
    with scopes_disabled():
        row = Delegation.objects.get(member=inventory.owner_member)
        assert row.ends_on is None and row.move_open_items
        moved = ReviewItem.objects.filter(campaign=campaign, reviewer=inventory.mia_member,
                                          delegated_from_email="owner@acme.test")
        assert moved.count() >= 2
        assert AuditEvent.objects.filter(action="delegation_created", actor_email="owner@acme.test").exists()
    # mia sees who delegated to her.
    assert "owner@acme.test" in client_for(inventory.mia_member).get(PAGE).content.decode()
    ended = client_for(inventory.owner_member).post(f"{PAGE}{row.pk}/end/", follow=True)
    assert "The delegation is ended" in ended.content.decode()
    with scopes_disabled():
        assert not Delegation.objects.filter(pk=row.pk).exists()
        assert AuditEvent.objects.filter(action="delegation_deleted", target_id=str(row.pk)).exists()


@pytest.mark.parametrize("form, words", [
    ({"delegate": "owner@acme.test"}, "you cannot delegate to yourself"),
    ({"delegate": "viewer@acme.test"}, "delegate: viewer@acme.test has the role Viewer, which may not review"),
    ({"delegate": "nobody@acme.test"}, "delegate: nobody@acme.test is not a member of this organization"),
    ({"delegate": "mia@acme.test", "ends_on": today(-1)}, "ends before it starts"),
    ({"delegate": "not-an-email"}, "enter a valid e-mail address"),
    ({"delegate": "mia@acme.test", "starts_on": "yesterday"}, "enter the date as YYYY-MM-DD"),
])
def test_bad_delegations_are_refused_naming_the_problem(inventory, client_for, member, form, words):
    member(Role.VIEWER, email="viewer@acme.test")
    response = client_for(inventory.owner_member).post(PAGE, {"starts_on": today(), **form})
    assert response.status_code == 400
    assert words in response.content.decode()
    with scopes_disabled():
        assert not Delegation.objects.exists()


def test_the_api_names_the_delegate_field_when_the_delegate_may_not_review(inventory, api_for, member):
    member(Role.VIEWER, email="viewer@acme.test")
    response = api_for(inventory.owner_member).post("/api/v1/orgs/acme/me/delegates/",
                                                    {"delegate": "viewer@acme.test", "starts_on": today()},
                                                    format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["delegate"]


def test_a_loop_is_refused_on_the_page(inventory, client_for):
    assert client_for(inventory.mia_member).post(PAGE, {"delegate": "owner@acme.test",
                                                        "starts_on": today()}).status_code == 302
    response = client_for(inventory.owner_member).post(PAGE, {"delegate": "mia@acme.test", "starts_on": today()})
    assert response.status_code == 400
    assert "this makes a loop (owner@acme.test → mia@acme.test → owner@acme.test)" in response.content.decode()


def test_ending_someone_elses_delegation_is_404(inventory, client_for):
    client_for(inventory.mia_member).post(PAGE, {"delegate": "owner@acme.test", "starts_on": today()})
    with scopes_disabled():
        row = Delegation.objects.get()
    assert client_for(inventory.owner_member).post(f"{PAGE}{row.pk}/end/").status_code == 404
    with scopes_disabled():
        assert Delegation.objects.filter(pk=row.pk).exists()


def test_delegation_page_outsider_404_and_roles_without_review_403(inventory, client_for, outsider, member):
    client_for(inventory.owner_member).post(PAGE, {"delegate": "mia@acme.test", "starts_on": today()})
    with scopes_disabled():
        row = Delegation.objects.get()
    assert client_for(outsider).get(PAGE).status_code == 404
    assert client_for(outsider).post(PAGE, {"delegate": "mia@acme.test", "starts_on": today()}).status_code == 404
    assert client_for(outsider).post(f"{PAGE}{row.pk}/end/").status_code == 404
    assert client_for(outsider).post(f"/o/globex/settings/my-delegation/{row.pk}/end/").status_code == 404
    with scopes_disabled():
        assert Delegation.objects.filter(pk=row.pk).exists()
    for role in (Role.VIEWER, Role.AUDITOR):
        who = client_for(member(role, email=f"{role}@acme.test"))
        assert who.get(PAGE).status_code == 403
        assert who.post(PAGE, {"delegate": "mia@acme.test", "starts_on": today()}).status_code == 403
        assert who.post(f"{PAGE}1/end/").status_code == 403


def test_delegation_page_queries_do_not_grow_with_the_delegations(inventory, client_for, member,
                                                                  django_assert_max_num_queries):
    client = client_for(inventory.owner_member)
    client.post(PAGE, {"delegate": "mia@acme.test", "starts_on": today(1), "ends_on": today(2)})
    client.get(PAGE)
    with django_assert_max_num_queries(25) as few:
        client.get(PAGE)
    first = len(few.captured_queries)  # read now: the next request starts a new query log
    for n in range(3, 9, 2):
        client.post(PAGE, {"delegate": "fallback@acme.test", "starts_on": today(n), "ends_on": today(n + 1)})
    with django_assert_max_num_queries(first):
        assert client.get(PAGE).content.decode().count("Upcoming") == 4


# Guests ------------------------------------------------------------------------------------------------------


def test_guest_delegates_to_a_member_who_then_decides_on_the_guests_behalf(
        guests_on, guest_campaign, mailbox, client, api_for, django_capture_on_commit_callbacks):
    path = link_path(mailbox.to("ann@acme.test")[0])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{path}delegate/", {"to": "owner@acme.test", "reason": "On leave"}, follow=True)
    assert response.status_code == 200
    assert "Your open items now go to owner@acme.test" in response.content.decode()
    svc = items_by_grant(guest_campaign)[("ci-bot@acme.test", "GitHub")]
    assert (svc.reviewer_id, svc.guest_id, svc.delegated_from_email) == (
        guests_on.owner_member.pk, None, "ann@acme.test")
    with scopes_disabled():
        hop = ItemReassignment.objects.get(item=svc)
        audit = AuditEvent.objects.get(action="guest_delegated")
    assert (hop.from_email, hop.to_email, hop.by_email, hop.kind, hop.reason) == (
        "ann@acme.test", "owner@acme.test", "ann@acme.test", "delegation", "On leave")
    assert audit.actor_email == "ann@acme.test" and audit.details["moved_items"] == 2
    assert [m["subject"] for m in mailbox.to("owner@acme.test")] == [
        "Delegated to you: 2 access items in Q1 access review"]
    decided = api_for(guests_on.owner_member).post(
        f"/api/v1/orgs/acme/campaigns/{guest_campaign.pk}/items/{svc.pk}/decision/", {"decision": "approve"},
        format="json")
    assert decided.json()["decided_on_behalf_of"] == "ann@acme.test"
    assert "No items are assigned to you in this review." in client.get(path).content.decode()


def test_guest_delegates_to_another_person_who_gets_a_link_and_decides_on_their_behalf(
        guests_on, guest_campaign, mailbox, client, django_capture_on_commit_callbacks):
    ann = link_path(mailbox.to("ann@acme.test")[0])
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"{ann}delegate/", {"to": "Pat@Partner.test"}).status_code == 302
    (notice,) = mailbox.to("pat@partner.test")
    assert notice["subject"] == "Delegated to you: 2 access items in Q1 access review"
    assert "ann@acme.test delegated their access review to you" in notice["text/plain"]
    pat = link_path(notice)
    page = client.get(pat)
    assert page.status_code == 200 and "ci-bot@acme.test" in page.content.decode()
    svc = items_by_grant(guest_campaign)[("ci-bot@acme.test", "GitHub")]
    assert client.post(f"{pat}items/{svc.pk}/decide/", {"decision": "approve", "reason": "Deploys"}).status_code == 302
    svc = items_by_grant(guest_campaign)[("ci-bot@acme.test", "GitHub")]
    assert (svc.decided_by_email, svc.decided_on_behalf_of_email) == ("pat@partner.test", "ann@acme.test")
    # Back to ann would make a loop.
    back = client.post(f"{pat}delegate/", {"to": "ann@acme.test"})
    assert back.status_code == 400 and "would make a loop" in back.content.decode()
    with scopes_disabled():
        assert GuestReviewer.objects.get(email="ann@acme.test").delegate_email == "pat@partner.test"


@pytest.mark.parametrize("to, words", [
    ("ann@acme.test", "you cannot delegate to yourself"),
    ("viewer@acme.test", "which may not review items"),
    ("", "give the e-mail address"),
])
def test_guest_delegation_refusals_name_the_problem_and_change_nothing(
        guests_on, guest_campaign, mailbox, client, member, to, words):
    member(Role.VIEWER, email="viewer@acme.test")
    path = link_path(mailbox.to("ann@acme.test")[0])
    response = client.post(f"{path}delegate/", {"to": to})
    assert response.status_code == 400
    assert words in response.content.decode()
    with scopes_disabled():
        assert ReviewItem.objects.filter(guest__email="ann@acme.test").count() == 2
        assert not AuditEvent.objects.filter(action="guest_delegated").exists()


def test_guest_delegation_needs_a_valid_link(guests_on, guest_campaign, mailbox, client, api_for):
    path = link_path(mailbox.to("ann@acme.test")[0])
    assert client.post("/guest/forged-token/delegate/", {"to": "owner@acme.test"}).status_code == 404
    with scopes_disabled():
        guest = GuestReviewer.objects.get(email="ann@acme.test")
    api_for(guests_on.admin).post(f"/api/v1/orgs/acme/campaigns/{guest_campaign.pk}/guests/{guest.pk}/revoke/")
    assert client.post(f"{path}delegate/", {"to": "owner@acme.test"}).status_code == 410
    with scopes_disabled():
        assert ReviewItem.objects.filter(guest=guest).count() == 2
