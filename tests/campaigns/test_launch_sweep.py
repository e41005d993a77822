# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Launches whose snapshot was abandoned are re-sent or fail visibly; a launching campaign can be cancelled."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from campaigns import launch
from campaigns.models import Campaign, CampaignStatus, ReviewItem
from campaigns.tasks import campaign_snapshot_task
from tests.claims_support import held_lock, wait_for_lock_waiter
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from ..conftest import wait_until
from .lifecycle_fixtures import inventory, make_campaign  # noqa: F401


def _launching(inventory, make_campaign, **changes) -> Campaign:
    """A campaign left `launching` by a launch whose snapshot task never ran (its message was lost)."""
    campaign = make_campaign(scope={"applications": ["GitHub", "Salesforce"]}, reviewer_strategy="manager")
    with scope(inventory.org):
        launch.campaign_launch(campaign=campaign, actor=inventory.admin)  # on_commit not run: task lost
        Campaign.objects.filter(pk=campaign.pk).update(**changes)
    return campaign


def _reload(campaign) -> Campaign:
    with scopes_disabled():
        return Campaign.objects.get(pk=campaign.pk)


@pytest.mark.django_db
def test_a_launch_whose_snapshot_was_lost_is_sent_again_once_stale(
    inventory, make_campaign, settings, django_capture_on_commit_callbacks
):
    settings.CLAIM_STALE_SECONDS = 60
    campaign = _launching(inventory, make_campaign)
    assert launch.campaign_launches_sweep() == {"resent": 0, "failed": 0}  # fresh: left alone

    with scope(inventory.org):
        Campaign.objects.filter(pk=campaign.pk).update(updated_at=timezone.now() - dt.timedelta(seconds=61))
    with django_capture_on_commit_callbacks(execute=True):
        assert launch.campaign_launches_sweep() == {"resent": 1, "failed": 0}

    campaign = _reload(campaign)
    assert campaign.status == CampaignStatus.ACTIVE and campaign.launch_attempts == 2
    assert AuditEvent.objects.filter(action="campaign_launch_resumed", target_id=str(campaign.pk)).exists()


@pytest.mark.django_db
def test_after_the_last_attempt_the_launch_fails_visibly_and_can_be_launched_again(
    inventory, make_campaign, settings, client_for, django_capture_on_commit_callbacks
):
    settings.CLAIM_MAX_ATTEMPTS = 2
    campaign = _launching(inventory, make_campaign, launch_attempts=2, updated_at=timezone.now() - dt.timedelta(hours=1))

    assert launch.campaign_launches_sweep() == {"resent": 0, "failed": 1}

    campaign = _reload(campaign)
    assert campaign.status == CampaignStatus.DRAFT
    assert "did not finish after 2 attempt(s)" in campaign.launch_error
    page = client_for(inventory.admin).get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    assert "The last launch failed: The snapshot did not finish after 2 attempt(s)" in page
    with scope(inventory.org), django_capture_on_commit_callbacks(execute=True):
        launch.campaign_launch(campaign=campaign, actor=inventory.admin, freshness_override_reason="known")
    campaign = _reload(campaign)
    assert campaign.status == CampaignStatus.ACTIVE and campaign.launch_attempts == 1


@pytest.mark.django_db
def test_a_launching_campaign_can_be_cancelled_in_the_browser_and_the_late_snapshot_does_nothing(
    inventory, make_campaign, client_for
):
    campaign = _launching(inventory, make_campaign)
    page = client_for(inventory.admin).get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    assert "Cancel the campaign" in page

    response = client_for(inventory.admin).post(
        f"/o/acme/campaigns/{campaign.pk}/cancel/", {"reason": "wrong scope"}, follow=True
    )

    assert "Campaign cancelled." in response.content.decode()
    assert campaign_snapshot_task(organization_id=inventory.org.pk, campaign_id=str(campaign.pk)) == 0
    campaign = _reload(campaign)
    assert campaign.status == CampaignStatus.CANCELLED
    with scopes_disabled():
        assert not ReviewItem.objects.filter(campaign=campaign).exists()
    assert launch.campaign_launches_sweep() == {"resent": 0, "failed": 0}


@pytest.mark.django_db
def test_a_launching_campaign_can_be_cancelled_through_the_api(inventory, make_campaign, api_for, member, outsider):
    campaign = _launching(inventory, make_campaign)
    url = f"/api/v1/orgs/acme/campaigns/{campaign.pk}/cancel/"

    assert api_for(outsider).post(f"/api/v1/orgs/globex/campaigns/{campaign.pk}/cancel/", {"reason": "x"}).status_code == 404
    assert api_for(member(Role.VIEWER)).post(url, {"reason": "x"}).status_code == 403
    response = api_for(inventory.admin).post(url, {"reason": "launched by mistake"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_snapshot_is_recovered_by_the_sweep(
    celery_worker_factory, inventory, make_campaign, settings
):
    settings.CLAIM_STALE_SECONDS = 1
    campaign = make_campaign(scope={"applications": ["GitHub", "Salesforce"]}, reviewer_strategy="manager")
    start = celery_worker_factory
    with scope(inventory.org):
        launch.campaign_launch(campaign=campaign, actor=inventory.admin)  # the message waits in Redis
    with held_lock("SELECT 1 FROM campaigns_campaign WHERE id = %s FOR UPDATE", (campaign.pk,)):
        start()
        wait_for_lock_waiter()  # the worker claimed the snapshot and waits for the campaign row
        assert launch.campaign_launches_sweep() == {"resent": 0, "failed": 0}  # alive: never taken over
        start.kill()
    assert _reload(campaign).status == CampaignStatus.LAUNCHING
    time.sleep(1.1)

    started = time.monotonic()
    assert launch.campaign_launches_sweep() == {"resent": 1, "failed": 0}
    start()
    done = wait_until(lambda: (c := _reload(campaign)).status == CampaignStatus.ACTIVE and c, timeout=60)
    assert time.monotonic() - started < 60
    assert done.item_count == 6 and done.launch_attempts == 2
    with scopes_disabled():
        assert ReviewItem.objects.filter(campaign=campaign).count() == 6


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_snapshot_on_the_last_attempt_fails_the_launch_visibly(
    celery_worker_factory, inventory, make_campaign, settings
):
    settings.CLAIM_STALE_SECONDS = 1
    settings.CLAIM_MAX_ATTEMPTS = 1
    campaign = make_campaign(scope={"applications": ["GitHub"]}, reviewer_strategy="manager")
    with scope(inventory.org):
        launch.campaign_launch(campaign=campaign, actor=inventory.admin)
    with held_lock("SELECT 1 FROM campaigns_campaign WHERE id = %s FOR UPDATE", (campaign.pk,)):
        celery_worker_factory()
        wait_for_lock_waiter()
        celery_worker_factory.kill()
    time.sleep(1.1)

    assert launch.campaign_launches_sweep() == {"resent": 0, "failed": 1}
    campaign = _reload(campaign)
    assert campaign.status == CampaignStatus.DRAFT and "did not finish after 1 attempt(s)" in campaign.launch_error
