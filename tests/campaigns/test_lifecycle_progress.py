# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Campaign progress stays exact whichever way items change; on PostgreSQL it is read from counters that
database triggers keep, so its cost does not depend on the campaign's size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Count

from campaigns import selectors, services
from campaigns.decisions import decisions_bulk_apply, review_item_decide
from campaigns.models import Campaign, CampaignDecisionCount, ReviewItem
from thalian.tenancy import scope, scopes_disabled

from ..factories import ReviewItemFactory
from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401

pytestmark = pytest.mark.django_db


def counted(campaign) -> dict:
    with scopes_disabled():
        return dict(ReviewItem.objects.filter(campaign=campaign).order_by().values_list("decision")
                    .annotate(n=Count("id")))


def progress_of(campaign) -> dict:
    with scope(campaign.organization):
        return selectors.campaign_progress(campaign=campaign).as_dict()


def assert_exact(campaign) -> None:
    truth = counted(campaign)
    progress = progress_of(campaign)
    assert progress["approve"] == truth.get("approve", 0)
    assert progress["revoke"] == truth.get("revoke", 0)
    assert progress["exception"] == truth.get("exception", 0)
    assert progress["pending"] == truth.get("", 0)
    assert progress["total"] == sum(truth.values())


def test_progress_follows_every_kind_of_change(inventory, launched):
    campaign = launched()
    assert progress_of(campaign)["pending"] == 8
    with scope(inventory.org):
        item = ReviewItem.objects.filter(campaign=campaign, reviewer=inventory.owner_member).first()
        review_item_decide(item=item, actor=inventory.owner_member, decision="revoke", reason="Left the team")
        assert_exact(campaign)
        review_item_decide(item=item, actor=inventory.owner_member, decision="approve", reason="")
        assert_exact(campaign)
        decisions_bulk_apply(campaign=campaign, actor=inventory.admin, decision="exception", reason="Audit hold",
                             items=ReviewItem.objects.filter(campaign=campaign, application_name="Salesforce"))
        assert_exact(campaign)
        ReviewItem.objects.filter(campaign=campaign, application_name="Slack").update(decision="revoke")
        assert_exact(campaign)
        ReviewItemFactory(organization=inventory.org, campaign=campaign)
        assert_exact(campaign)
        ReviewItem.objects.filter(campaign=campaign, decision="revoke").delete()
        assert_exact(campaign)
        services.campaign_close(campaign=campaign, actor=inventory.admin)
    assert_exact(campaign)
    assert progress_of(campaign)["pending"] == progress_of(campaign)["total"] - progress_of(campaign)["decided"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the counters are kept by PostgreSQL triggers")
def test_progress_reads_counters_not_items(inventory, launched, django_assert_num_queries):
    campaign = launched()
    with scopes_disabled():
        assert dict(CampaignDecisionCount.objects.filter(campaign=campaign).values_list("decision", "count")) == {
            "": 8}
    with scope(inventory.org), django_assert_num_queries(1) as queries:
        selectors.campaign_progress(campaign=campaign)
    assert "campaigndecisioncount" in queries.captured_queries[0]["sql"]


def test_deleting_a_campaign_removes_its_counters(inventory, launched):
    campaign = launched()
    with scope(inventory.org):
        Campaign.objects.filter(pk=campaign.pk).delete()
    with scopes_disabled():
        assert not CampaignDecisionCount.objects.filter(campaign_id=campaign.pk).exists()
        assert not ReviewItem.objects.filter(campaign_id=campaign.pk).exists()
