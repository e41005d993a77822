"""Campaign background work: the launch snapshot, scheduled launches and the sweep of abandoned launches."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError
from django.utils import timezone

from thalian import claims
from thalian.tenancy import scope

from . import launch, scheduling, services, stages
from .models import Campaign

log = logging.getLogger(__name__)


@shared_task(name="campaigns.snapshot", bind=True, max_retries=4)
def campaign_snapshot_task(self, *, organization_id: int, campaign_id: str) -> int:
    """Take a launching campaign's snapshot. Running it twice is harmless: the second run finds the campaign
    active and does nothing. Database hiccups are retried with exponential backoff; anything else, the last
    retry or the task's time limit, puts the campaign back to draft with the error shown on its page. The
    claim's lock tells the stale-claim sweep that this worker is alive."""
    with scope(organization_id=organization_id), claims.claim_held(launch.SNAPSHOT_CLAIM, campaign_id):
        try:
            return launch.campaign_snapshot(campaign_id=campaign_id)
        except OperationalError as exc:
            if self.request.retries < self.max_retries and not self.request.is_eager:
                raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc
            launch.campaign_launch_failed(campaign_id=campaign_id, error=f"Database error: {exc}")
            log.exception("snapshot of campaign %s failed", campaign_id)
            return 0
        except services.CampaignError as exc:
            launch.campaign_launch_failed(campaign_id=campaign_id, error=exc.message)
            return 0
        except SoftTimeLimitExceeded:
            launch.campaign_launch_failed(
                campaign_id=campaign_id,
                error=f"The snapshot took longer than the time limit ({self.soft_time_limit or 'default'} s); "
                "nothing was created. Narrow the scope or ask the operator to raise TASK_LONG_SOFT_TIME_LIMIT.",
            )
            log.warning("snapshot of campaign %s hit its soft time limit", campaign_id)
            return 0
        except Exception as exc:
            launch.campaign_launch_failed(campaign_id=campaign_id, error=f"{exc.__class__.__name__}: {exc}")
            raise


@shared_task(name="campaigns.launch_due")
def launch_due_campaigns() -> int:
    """Beat: start every scheduled campaign whose launch time has come."""
    due = scheduling.campaigns_due_for_launch(now=timezone.now())
    for organization_id, campaign_id in due:
        launch_scheduled_campaign.delay(organization_id, campaign_id)
    return len(due)


@shared_task(name="campaigns.launch_scheduled", acks_late=True)
def launch_scheduled_campaign(organization_id: int, campaign_id: str) -> str:
    with scope(organization_id=organization_id):
        campaign = Campaign.objects.select_related("organization").filter(pk=campaign_id).first()
        if campaign is None:
            return "missing"
        return scheduling.campaign_occurrence_launch(campaign=campaign, now=timezone.now())


@shared_task(name="campaigns.sweep_stale_launches")
def campaign_launches_sweep_task() -> dict[str, int]:
    """Periodic: re-send or fail launches whose snapshot was abandoned."""
    return launch.campaign_launches_sweep()


@shared_task(name="campaigns.stage_deadlines")
def stage_deadlines_task() -> dict[str, int]:
    """Periodic: items of multi-stage campaigns past their stage deadline get the stage's deadline outcome.
    Safe to run twice: what one run changed no longer matches the next."""
    return stages.stage_deadlines_sweep()


@shared_task(name="campaigns.exception_renewals", acks_late=True, soft_time_limit=600, time_limit=660)
def exception_renewals_for(organization_id: int, fallback_membership_id: int | None = None) -> str:
    """Gathers an organization's expired exceptions into its renewal campaign (enqueued daily by the
    notifications area with the organization's fallback reviewer). Safe to run twice: an expired exception is
    gathered once."""
    from thalian.models import Membership, Organization

    from .exceptions import exception_renewals_gather

    organization = Organization.objects.get(pk=organization_id)
    fallback = (
        Membership.objects.select_related("user").filter(pk=fallback_membership_id, organization=organization).first()
        if fallback_membership_id
        else None
    )
    campaign = exception_renewals_gather(organization=organization, fallback=fallback)
    return str(campaign.pk) if campaign else ""
