"""Exceptions that expire: expiry on decisions (default and maximum), the Exceptions page and API, and the daily
renewal campaign (time-machine). Reminders: tests/notifications; tickets of revoked renewals: tests/itsm."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse

from campaigns.decisions import decisions_bulk_apply, review_item_decide
from campaigns.exceptions import exception_renewals_gather
from campaigns.models import Campaign, CampaignStatus, DecisionEvent, ReviewItem
from tests.factories import ApplicationFactory
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from .review_support import active_campaign, add_items, assert_chain_intact, fresh

pytestmark = pytest.mark.django_db

DAY0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def traveller():
    with time_machine.travel(DAY0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def reviewer(member):
    return member(Role.REVIEWER, email="rita@acme.test")


@pytest.fixture
def campaign(org, member, traveller):
    fallback = member(Role.SECURITY_ANALYST, email="fallback@acme.test")
    return active_campaign(org, title="Q1 access review", fallback_reviewer=fallback)


def base(campaign):
    return f"/api/v1/orgs/acme/campaigns/{campaign.pk}"


# Expiry on decisions ---------------------------------------------------------------------------------------


def test_exception_without_a_date_gets_the_organization_default(org, campaign, reviewer):
    [item] = add_items(campaign, reviewer, 1)
    with scope(org):
        review_item_decide(item=item, actor=reviewer, decision="exception", reason="Break-glass account")
    assert fresh(item).exception_expires_on == dt.date(2026, 5, 31)  # 90 days
    with scopes_disabled():
        assert DecisionEvent.objects.get().expires_on == dt.date(2026, 5, 31)
    assert_chain_intact(campaign)


def test_expiry_past_the_maximum_or_not_in_the_future_is_refused(org, campaign, reviewer):
    [item] = add_items(campaign, reviewer, 1)
    with scope(org):
        org.exception_max_days = 30
        org.save()
        reviewer.organization.refresh_from_db()
        for bad, words in ((dt.date(2026, 4, 2), "more than 30 days away; the latest allowed is 2026-04-01"),
                           (dt.date(2026, 3, 2), "must be after today")):
            with pytest.raises(ValidationError) as exc:
                review_item_decide(item=item, actor=reviewer, decision="exception", reason="x", expires_on=bad)
            assert words in str(exc.value)
        with pytest.raises(ValidationError, match="Only exception decisions expire"):
            review_item_decide(item=item, actor=reviewer, decision="approve", expires_on=dt.date(2026, 3, 20))
    assert fresh(item).decision == ""


def test_api_decision_and_bulk_bodies_take_expires_on(org, campaign, reviewer, api_for):
    items = add_items(campaign, reviewer, 3)
    api = api_for(reviewer)
    single = api.post(f"{base(campaign)}/items/{items[0].pk}/decision/",
                      {"decision": "exception", "reason": "Vendor contract", "expires_on": "2026-06-30"},
                      format="json")
    assert single.status_code == 200 and single.json()["exception_expires_on"] == "2026-06-30"
    too_far = api.post(f"{base(campaign)}/items/{items[1].pk}/decision/",
                       {"decision": "exception", "reason": "x", "expires_on": "2027-12-31"}, format="json")
    assert too_far.status_code == 400 and "expires_on" in too_far.json()["errors"]
    assert fresh(items[1]).decision == ""
    bulk = api.post(f"{base(campaign)}/bulk-decision/",
                    {"decision": "exception", "reason": "Audit hold", "item_ids": [items[1].pk, items[2].pk]},
                    format="json")
    assert bulk.json()["updated"] == 2
    assert {fresh(i).exception_expires_on for i in items[1:]} == {dt.date(2026, 5, 31)}
    detail = api.get(f"{base(campaign)}/items/{items[1].pk}/").json()
    assert detail["history"][-1]["expires_on"] == "2026-05-31"
    # Approving afterwards ends the exception.
    api.post(f"{base(campaign)}/items/{items[2].pk}/decision/", {"decision": "approve"}, format="json")
    assert fresh(items[2]).exception_expires_on is None
    assert_chain_intact(campaign)


def test_the_item_page_shows_and_takes_the_expiry(org, campaign, reviewer, client_for):
    [item] = add_items(campaign, reviewer, 1)
    client = client_for(reviewer)
    url = reverse("review_item_decide", args=["acme", campaign.pk, item.pk])
    client.post(url, {"decision": "exception", "reason": "Needed for the audit", "expires_on": "2026-04-15"})
    assert fresh(item).exception_expires_on == dt.date(2026, 4, 15)
    page = client.get(reverse("review_item_detail", args=["acme", campaign.pk, item.pk])).content.decode()
    assert "Exception expires" in page and "2026-04-15" in page and 'type="date" name="expires_on"' in page
    rows = client.get(reverse("review_items", args=["acme", campaign.pk])).content.decode()
    assert "Expires 2026-04-15" in rows


def test_organization_settings_set_default_and_maximum(org, member, api_for):
    api = api_for(member(Role.SUPER_ADMIN))
    assert api.get("/api/v1/orgs/acme/settings/").json()["exception_default_days"] == 90
    ok = api.patch("/api/v1/orgs/acme/settings/", {"exception_default_days": 30, "exception_max_days": 180},
                   format="json")
    assert ok.status_code == 200 and ok.json()["exception_max_days"] == 180
    bad = api.patch("/api/v1/orgs/acme/settings/", {"exception_default_days": 200}, format="json")
    assert bad.status_code == 400 and "longer than the maximum" in bad.json()["detail"]
    org.refresh_from_db()
    assert (org.exception_default_days, org.exception_max_days) == (30, 180)


def test_organization_settings_page_has_the_exception_fields(org, member, client_for):
    client = client_for(member(Role.SUPER_ADMIN))
    page = client.get(reverse("org_settings", args=["acme"])).content.decode()
    assert "Longest exception allowed" in page and 'name="exception_default_days"' in page


# Exceptions page and API -------------------------------------------------------------------------------------


@pytest.fixture
def three_exceptions(org, campaign, reviewer, traveller):
    items = add_items(campaign, reviewer, 4)
    with scope(org):
        for item, days in zip(items, (5, 40, 300), strict=False):
            review_item_decide(item=item, actor=reviewer, decision="exception", reason=f"Kept {days}",
                               expires_on=dt.date(2026, 3, 2) + dt.timedelta(days=days))
        review_item_decide(item=items[3], actor=reviewer, decision="approve")
    traveller.move_to(DAY0 + dt.timedelta(days=10))  # the first has expired, the second expires in 30 days
    return items


def test_api_lists_exceptions_by_status(three_exceptions, member, api_for):
    api = api_for(member(Role.AUDITOR))
    every = api.get("/api/v1/orgs/acme/exceptions/").json()["results"]
    assert [(r["reason"], r["status"]) for r in every] == [
        ("Kept 5", "expired"), ("Kept 40", "active"), ("Kept 300", "active")
    ]
    assert every[0] == {
        "item_id": three_exceptions[0].pk, "identity": three_exceptions[0].identity_email,
        "identity_name": "Pat Doe", "application": "GitHub", "role": "member", "reason": "Kept 5",
        "decided_by": "rita@acme.test", "decided_at": every[0]["decided_at"], "expires_on": "2026-03-07",
        "status": "expired", "campaign_id": str(three_exceptions[0].campaign_id), "campaign": "Q1 access review",
    }  # fmt: skip
    assert [r["reason"] for r in api.get("/api/v1/orgs/acme/exceptions/?status=expired").json()["results"]] == [
        "Kept 5"
    ]
    assert [r["reason"] for r in api.get("/api/v1/orgs/acme/exceptions/?status=active").json()["results"]] == [
        "Kept 40", "Kept 300"
    ]
    assert api.get("/api/v1/orgs/acme/exceptions/?status=expiring").json()["results"] == []
    bad = api.get("/api/v1/orgs/acme/exceptions/?status=soon")
    assert bad.status_code == 400 and "status must be one of active, expiring, expired" in bad.json()["detail"]


def test_expiring_means_within_fourteen_days(three_exceptions, traveller, member, api_for):
    traveller.move_to(DAY0 + dt.timedelta(days=27))
    rows = api_for(member(Role.AUDITOR)).get("/api/v1/orgs/acme/exceptions/?status=expiring").json()["results"]
    assert [r["reason"] for r in rows] == ["Kept 40"]


def test_exceptions_page_lists_them_with_every_column(three_exceptions, member, client_for):
    page = client_for(member(Role.VIEWER)).get(reverse("exception_list", args=["acme"]) + "?status=expired")
    body = page.content.decode()
    assert page.status_code == 200
    for text in (three_exceptions[0].identity_email, "GitHub", "member", "Kept 5", "rita@acme.test", "2026-03-07",
                 "Q1 access review", "Expired"):
        assert text in body
    assert "Kept 40" not in body


def test_exceptions_page_and_api_outsider_404_and_reviewer_403(three_exceptions, outsider, reviewer, api_for,
                                                                client_for):
    assert api_for(outsider).get("/api/v1/orgs/acme/exceptions/").status_code == 404
    assert client_for(outsider).get(reverse("exception_list", args=["acme"])).status_code == 404
    assert api_for(reviewer).get("/api/v1/orgs/acme/exceptions/").status_code == 403
    assert client_for(reviewer).get(reverse("exception_list", args=["acme"])).status_code == 403
    # The outsider's own organization has none of acme's exceptions.
    assert api_for(outsider).get("/api/v1/orgs/globex/exceptions/").json()["results"] == []


def test_exception_list_query_count_does_not_grow(org, campaign, reviewer, member, api_for, client_for,
                                                  django_assert_max_num_queries):
    auditor = member(Role.AUDITOR)
    api, client = api_for(auditor), client_for(auditor)

    def add(n):
        items = add_items(campaign, reviewer, n)
        with scope(org):
            decisions_bulk_apply(campaign=campaign, actor=reviewer, decision="exception", reason="hold",
                                 items=ReviewItem.objects.filter(pk__in=[i.pk for i in items]))

    add(2)
    with django_assert_max_num_queries(20) as api_ctx:
        api.get("/api/v1/orgs/acme/exceptions/")
    with django_assert_max_num_queries(30) as page_ctx:
        client.get(reverse("exception_list", args=["acme"]))
    add(30)
    with django_assert_max_num_queries(len(api_ctx.captured_queries)):
        assert len(api.get("/api/v1/orgs/acme/exceptions/").json()["results"]) == 32
    with django_assert_max_num_queries(len(page_ctx.captured_queries)):
        client.get(reverse("exception_list", args=["acme"]))


# Renewals ----------------------------------------------------------------------------------------------------


def test_expired_exceptions_are_gathered_daily_into_a_launched_renewal_campaign(
    org, campaign, reviewer, member, traveller, django_capture_on_commit_callbacks
):
    owner = member(Role.REVIEWER, email="owner@acme.test")
    github = ApplicationFactory(organization=org, name="GitHub", owner_email="Owner@acme.test")
    slack = ApplicationFactory(organization=org, name="Slack", owner_email="")
    gh_item, = add_items(campaign, reviewer, 1, application=github, application_name="GitHub")
    slack_item, = add_items(campaign, reviewer, 1, application=slack, application_name="Slack")
    own, = add_items(campaign, reviewer, 1, application=github, application_name="GitHub",
                     identity_email="owner@acme.test")
    later, = add_items(campaign, reviewer, 1, application=github, application_name="GitHub")
    with scope(org):
        for item in (gh_item, slack_item, own):
            review_item_decide(item=item, actor=reviewer, decision="exception", reason="Migration project",
                               expires_on=dt.date(2026, 3, 10))
        review_item_decide(item=later, actor=reviewer, decision="exception", reason="Later",
                           expires_on=dt.date(2026, 3, 20))

    traveller.move_to(dt.datetime(2026, 3, 10, 23, 0, tzinfo=dt.UTC))  # the expiry day itself: still valid
    assert exception_renewals_gather(organization=org) is None
    traveller.move_to(dt.datetime(2026, 3, 11, 0, 30, tzinfo=dt.UTC))
    from campaigns.tasks import exception_renewals_for

    with django_capture_on_commit_callbacks(execute=True):
        assert exception_renewals_for(org.pk)
    with scopes_disabled():
        renewal = Campaign.objects.get(title="Exception renewals 2026-03-11")
        items = {i.renewal_of_id: i for i in ReviewItem.objects.filter(campaign=renewal)}
    assert renewal.status == CampaignStatus.ACTIVE and renewal.snapshot_at is not None
    assert set(items) == {gh_item.pk, slack_item.pk, own.pk}
    assert items[gh_item.pk].reviewer_email == "owner@acme.test"
    assert items[slack_item.pk].reviewer_email == "fallback@acme.test"
    assert items[own.pk].reviewer_email == "fallback@acme.test"  # never the identity under review
    assert "owner is the identity" in items[own.pk].assignment_note
    reason = items[gh_item.pk].recommendation_reason
    assert reason == "Exception by rita@acme.test expired 2026-03-10: Migration project"
    assert AuditEvent.objects.get(action="exception_renewals_launched").details["count"] == 3
    # Running again the same day or the next gathers nothing twice.
    assert exception_renewals_gather(organization=org) is None
    with scopes_disabled():
        assert ReviewItem.objects.filter(renewal_of__isnull=False).count() == 3

    # Renewing is a new exception with a new expiry; revoking is a revoke like any other.
    with scope(org):
        renewed = review_item_decide(item=items[gh_item.pk], actor=owner, decision="exception",
                                     reason="Project extended", expires_on=dt.date(2026, 6, 30))
        revoked = review_item_decide(item=items[slack_item.pk], actor=member(Role.SECURITY_ANALYST,
                                     email="fallback@acme.test"), decision="revoke", reason="Project over")
    assert renewed.exception_expires_on == dt.date(2026, 6, 30)
    assert revoked.remediation_status in ("pending", "")
    assert_chain_intact(renewal)


def test_api_pages_through_exceptions_with_equal_expiry_dates(org, campaign, reviewer, member, api_for):
    items = add_items(campaign, reviewer, 7)
    with scope(org):
        decisions_bulk_apply(campaign=campaign, actor=reviewer, decision="exception", reason="hold",
                             items=ReviewItem.objects.filter(pk__in=[i.pk for i in items[:5]]),
                             expires_on=dt.date(2026, 4, 1))
        decisions_bulk_apply(campaign=campaign, actor=reviewer, decision="exception", reason="hold",
                             items=ReviewItem.objects.filter(pk__in=[i.pk for i in items[5:]]),
                             expires_on=dt.date(2026, 3, 20))
    api = api_for(member(Role.AUDITOR))
    url, seen = "/api/v1/orgs/acme/exceptions/?page_size=2", []
    while url:
        page = api.get(url).json()
        seen += [(r["expires_on"], r["item_id"]) for r in page["results"]]
        url = page["next"]
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 7
