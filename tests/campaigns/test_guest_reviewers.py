# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Guest reviewers: managers and application owners who are not members review through a personal e-mailed link."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from campaigns.models import DecisionEvent, GuestReviewer, ReviewItem
from thalian.models import AuditEvent, Organization, Plan
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from ..factories import EntitlementFactory, IdentityFactory
from ..notifications.conftest import mailbox  # noqa: F401  (a real SMTP server on 127.0.0.1)
from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401

LINK = re.compile(r"https?://[^\s]+/guest/[^\s]+/")


@pytest.fixture
def guests_on(inventory):
    inventory.org.guest_reviewers_enabled = True
    inventory.org.save(update_fields=["guest_reviewers_enabled"])
    return inventory


def items_by_grant(campaign):
    with scopes_disabled():
        return {(i.identity_email, i.application_name): i for i in ReviewItem.objects.filter(campaign=campaign)}


def link_path(message: dict) -> str:
    url = LINK.search(message["text/plain"]).group(0)
    return "/" + url.split("/", 3)[3]


@pytest.fixture
def guest_campaign(guests_on, launched, mailbox):
    """A manager-strategy campaign: ann (not a member) manages the CI bot and the agent, so she is a guest."""
    campaign = launched(reviewer_strategy="manager")
    return campaign


def test_guest_reviewers_are_on_by_default_for_paid_plans(db):
    assert Organization(plan=Plan.PRO).allows_guest_reviewers
    assert Organization(plan=Plan.ENTERPRISE).allows_guest_reviewers
    assert not Organization(plan=Plan.FREE).allows_guest_reviewers
    assert not Organization(plan=Plan.PRO, guest_reviewers_enabled=False).allows_guest_reviewers


def test_manager_strategy_assigns_managers_who_are_not_members_as_guests(guests_on, guest_campaign):
    items = items_by_grant(guest_campaign)
    for key in (("ci-bot@acme.test", "GitHub"), ("agent@acme.test", "Slack")):
        item = items[key]
        assert item.reviewer_id is None and item.guest_id is not None
        assert item.reviewer_email == "ann@acme.test"
        assert item.assignment_note == "Manager ann@acme.test is not a member: guest reviewer"
    assert items[("ann@acme.test", "GitHub")].reviewer_id == guests_on.mia_member.pk  # a member stays a member
    assert items[("mia@acme.test", "GitHub")].reviewer_id == guests_on.fallback.pk  # no manager: fallback
    with scopes_disabled():
        assert list(GuestReviewer.objects.filter(campaign=guest_campaign).values_list("email", flat=True)) == [
            "ann@acme.test"]


def test_guest_setting_off_sends_to_the_fallback(inventory, launched):
    items = items_by_grant(launched(reviewer_strategy="manager"))
    svc = items[("ci-bot@acme.test", "GitHub")]
    assert svc.reviewer_id == inventory.fallback.pk and svc.guest_id is None


def test_an_owner_who_is_the_identity_is_never_their_own_guest_reviewer(guests_on, launched):
    someone = IdentityFactory(organization=guests_on.org, email="someone@elsewhere.test", name="Sam")
    EntitlementFactory(organization=guests_on.org, identity=someone, application=guests_on.salesforce, role="admin")
    items = items_by_grant(launched(scope={"applications": ["Salesforce"]}))
    own = items[("someone@elsewhere.test", "Salesforce")]
    assert own.reviewer_id == guests_on.fallback.pk and own.guest_id is None
    assert own.assignment_note.startswith("Self-review avoided: someone@elsewhere.test")
    bob = items[("bob@acme.test", "Salesforce")]
    assert bob.guest_id is not None and bob.reviewer_email == "someone@elsewhere.test"


def test_guest_follows_the_emailed_link_decides_and_signs_off(guests_on, guest_campaign, mailbox, client):
    [message] = mailbox.to("ann@acme.test")
    assert "Q1 access review" in message["subject"] and "2 items" in message["subject"]
    path = link_path(message)
    page = client.get(path)
    assert page.status_code == 200
    body = page.content.decode()
    assert "ci-bot@acme.test" in body and "agent@acme.test" in body
    assert "owner@acme.test" not in body  # other reviewers' items are not shown
    items = items_by_grant(guest_campaign)
    svc, agent = items[("ci-bot@acme.test", "GitHub")], items[("agent@acme.test", "Slack")]

    # A missing reason is refused and changes nothing.
    refused = client.post(f"{path}items/{svc.pk}/decide/", {"decision": "revoke", "reason": ""})
    assert refused.status_code == 400 and "reason" in refused.content.decode().lower()
    with scopes_disabled():
        assert ReviewItem.objects.get(pk=svc.pk).decision == ""

    assert client.post(f"{path}items/{svc.pk}/decide/", {"decision": "approve", "reason": "Deploys"}).status_code == 302
    bulk = client.post(f"{path}bulk/", {"item_ids": [agent.pk], "decision": "revoke", "reason": "Not needed"})
    assert bulk.status_code == 302
    assert client.post(f"{path}sign-off/").status_code == 302
    with scopes_disabled():
        svc.refresh_from_db()
        agent.refresh_from_db()
        events = list(DecisionEvent.objects.filter(item__in=[svc, agent]).order_by("id"))
        used = AuditEvent.objects.filter(organization=guests_on.org, action="guest_link_used")
        assert used.count() == 5 and set(used.values_list("actor_email", flat=True)) == {"ann@acme.test"}
        assert AuditEvent.objects.filter(action="campaign_signed_off", actor_email="ann@acme.test").exists()
    assert (svc.decision, svc.decided_by_email, svc.decided_by_role) == ("approve", "ann@acme.test", "guest_reviewer")
    assert agent.decision == "revoke" and agent.signed_off_at is not None and svc.signed_off_at is not None
    assert [(e.actor_email, e.actor_role, e.kind) for e in events] == [
        ("ann@acme.test", "guest_reviewer", "single"), ("ann@acme.test", "guest_reviewer", "bulk")]
    assert "Signed off" in client.get(path).content.decode()


def test_the_guest_link_reaches_nothing_else(guests_on, guest_campaign, mailbox, client):
    path = link_path(mailbox.to("ann@acme.test")[0])
    assert client.get(path).status_code == 200
    slug = guests_on.org.slug
    # No session is created: member pages ask for a sign-in and the API for credentials.
    for page in (f"/o/{slug}/", f"/o/{slug}/campaigns/", f"/o/{slug}/campaigns/{guest_campaign.pk}/"):
        response = client.get(page)
        assert response.status_code == 302 and "/login" in response["Location"] or response.status_code == 404
    api = client.get(f"/api/v1/orgs/{slug}/campaigns/{guest_campaign.pk}/items/")
    assert api.status_code in (401, 403)
    # Another reviewer's item through the guest's link: not found, and nothing changes.
    other = items_by_grant(guest_campaign)[("ann@acme.test", "GitHub")]
    response = client.post(f"{path}items/{other.pk}/decide/", {"decision": "revoke", "reason": "x"})
    assert response.status_code == 404
    with scopes_disabled():
        assert ReviewItem.objects.get(pk=other.pk).decision == ""
    # A forged link is refused.
    assert client.get(path[:-3] + "xx/").status_code == 404


def test_expired_and_revoked_links_answer_clearly(guests_on, guest_campaign, mailbox, client, api_for):
    path = link_path(mailbox.to("ann@acme.test")[0])
    with scopes_disabled():
        guest = GuestReviewer.objects.get(campaign=guest_campaign)
        GuestReviewer.objects.filter(pk=guest.pk).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    expired = client.get(path)
    assert expired.status_code == 410 and "expired on" in expired.content.decode()

    api = api_for(guests_on.admin)
    base = f"/api/v1/orgs/{guests_on.org.slug}/campaigns/{guest_campaign.pk}/guests/"
    resent = api.post(f"{base}{guest.pk}/resend/")
    assert resent.status_code == 200 and resent.json()["status"] == "active"
    assert client.get(path).status_code == 410  # the old link was replaced
    new_path = link_path(mailbox.to("ann@acme.test")[-1])
    assert client.get(new_path).status_code == 200

    revoked = api.post(f"{base}{guest.pk}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    answer = client.get(new_path)
    assert answer.status_code == 410 and "revoked" in answer.content.decode()
    again = api.post(f"{base}{guest.pk}/revoke/")
    assert again.status_code == 400 and "already revoked" in again.json()["detail"]


def test_guest_links_are_rate_limited(guests_on, guest_campaign, mailbox, client, settings):
    settings.GUEST_LINK_RATE_LIMIT_PER_MINUTE = 3
    path = link_path(mailbox.to("ann@acme.test")[0])
    codes = [client.get(path).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_items_and_progress_apis_show_the_reviewer_kind(guests_on, guest_campaign, api_for):
    api = api_for(guests_on.admin)
    base = f"/api/v1/orgs/{guests_on.org.slug}/campaigns/{guest_campaign.pk}"
    items = api.get(f"{base}/items/?page_size=200").json()["results"]
    kinds = {(i["identity"]["email"], i["application"]["name"]): (i["reviewer"], i["reviewer_kind"]) for i in items}
    assert kinds[("ci-bot@acme.test", "GitHub")] == ("ann@acme.test", "guest")
    assert kinds[("ann@acme.test", "GitHub")] == ("mia@acme.test", "member")
    by_reviewer = {r["reviewer_email"]: r for r in api.get(f"{base}/progress/").json()["by_reviewer"]}
    assert by_reviewer["ann@acme.test"]["reviewer_kind"] == "guest" and by_reviewer["ann@acme.test"]["total"] == 2
    assert by_reviewer["mia@acme.test"]["reviewer_kind"] == "member"


def test_guest_admin_api_outsider_role_and_query_count(guests_on, guest_campaign, api_for, outsider, member,
                                                       django_assert_num_queries):
    base = f"/api/v1/orgs/{guests_on.org.slug}/campaigns/{guest_campaign.pk}/guests/"
    with scopes_disabled():
        guest = GuestReviewer.objects.get(campaign=guest_campaign)
    # A member of another organization: 404 (through their own organization's URL too).
    assert api_for(outsider).get(base).status_code == 404
    assert api_for(outsider).post(f"{base}{guest.pk}/revoke/").status_code == 404
    # A reviewer may not list or manage guests.
    reviewer = api_for(member(Role.REVIEWER, email="rev@acme.test"))
    assert reviewer.get(base).status_code == 403
    assert reviewer.post(f"{base}{guest.pk}/resend/").status_code == 403
    admin = api_for(guests_on.admin)
    assert admin.post(f"{base}999999/revoke/").status_code == 404
    listed = admin.get(base)
    assert listed.status_code == 200
    [row] = listed.json()
    assert (row["email"], row["items"], row["decided"], row["status"]) == ("ann@acme.test", 2, 0, "active")
    one_guest = _count_queries(admin, base)
    with scopes_disabled():  # a second guest with an item: the list still costs the same queries
        second = GuestReviewer.objects.create(organization=guests_on.org, campaign=guest_campaign,
                                              email="zed@corp.test")
        ReviewItem.objects.filter(pk=items_by_grant(guest_campaign)[("agent@acme.test", "Slack")].pk).update(
            guest=second, reviewer_email="zed@corp.test")
    with django_assert_num_queries(one_guest):
        assert len(admin.get(base).json()) == 2


def _count_queries(api, url) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        api.get(url)
    return len(ctx.captured_queries)


def test_campaign_page_lists_guests_and_admins_revoke_and_resend(guests_on, guest_campaign, mailbox, client_for,
                                                                 member, outsider, client):
    slug = guests_on.org.slug
    with scopes_disabled():
        guest = GuestReviewer.objects.get(campaign=guest_campaign)
    action = f"/o/{slug}/campaigns/{guest_campaign.pk}/guests/{guest.pk}"
    page = client_for(guests_on.admin).get(f"/o/{slug}/campaigns/{guest_campaign.pk}/")
    body = page.content.decode()
    assert "Guest reviewers" in body and "ann@acme.test" in body and "Active until" in body
    response = client.post(f"{action}/resend/", follow=True)
    assert "A new link was e-mailed to ann@acme.test" in response.content.decode()
    assert len(mailbox.to("ann@acme.test")) == 2
    response = client.post(f"{action}/revoke/", follow=True)
    assert "was revoked" in response.content.decode()
    assert client.get(link_path(mailbox.to("ann@acme.test")[-1])).status_code == 410
    # A reviewer may not manage guests (403); another organization's admin gets 404.
    assert client_for(member(Role.REVIEWER, email="rev2@acme.test")).post(f"{action}/resend/").status_code == 403
    assert client_for(outsider).post(f"{action}/resend/").status_code == 404
    assert len(mailbox.to("ann@acme.test")) == 2


def test_super_admin_turns_guest_reviewers_off_through_the_api(guests_on, api_for, member):
    url = f"/api/v1/orgs/{guests_on.org.slug}/settings/"
    assert api_for(guests_on.admin).patch(url, {"guest_reviewers_enabled": False}, format="json").status_code == 403
    owner = api_for(member(Role.SUPER_ADMIN, email="root@acme.test"))
    assert owner.get(url).json()["guest_reviewers_enabled"] is True
    response = owner.patch(url, {"guest_reviewers_enabled": False}, format="json")
    assert response.status_code == 200 and response.json()["guest_reviewers_enabled"] is False
    guests_on.org.refresh_from_db()
    assert not guests_on.org.allows_guest_reviewers
