# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""A launch goes through a real Celery worker on Redis against the test database."""

from __future__ import annotations

import pytest

from campaigns import launch
from campaigns.models import Campaign, CampaignStatus, ReviewItem
from thalian.models import AuditEvent
from thalian.tenancy import scope, scopes_disabled

from ..conftest import wait_until
from .lifecycle_fixtures import inventory, make_campaign  # noqa: F401

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def test_launch_snapshot_runs_in_a_real_worker(celery_worker_factory, inventory, make_campaign, client_for):
    celery_worker_factory()
    campaign = make_campaign(scope={"applications": ["GitHub", "Salesforce"]}, reviewer_strategy="manager")
    with scope(inventory.org):
        launch.campaign_launch(campaign=campaign, actor=inventory.admin)

    def active():
        with scopes_disabled():
            return Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.ACTIVE).first()

    done = wait_until(active, timeout=60)
    assert done.item_count == 6 and done.snapshot_at is not None
    with scopes_disabled():
        assert ReviewItem.objects.filter(campaign=campaign).count() == 6
        assert ReviewItem.objects.filter(campaign=campaign, reviewer=inventory.mia_member).count() == 3
    assert AuditEvent.objects.filter(action="campaign_launched", target_id=str(campaign.pk)).exists()
    page = client_for(inventory.admin).get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    assert 'data-progress="total">6<' in page
