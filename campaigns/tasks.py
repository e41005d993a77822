"""Campaign background work: the launch snapshot."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import OperationalError

from thalian.tenancy import scope

from . import services

log = logging.getLogger(__name__)


@shared_task(name="campaigns.snapshot", bind=True, max_retries=4)
def campaign_snapshot_task(self, *, organization_id: int, campaign_id: str) -> int:
    """Take a launching campaign's snapshot. Running it twice is harmless: the second run finds the campaign
    active and does nothing. Database hiccups are retried with exponential backoff; anything else, or the last
    retry, puts the campaign back to draft with the error shown on its page."""
    with scope(organization_id=organization_id):
        try:
            return services.campaign_snapshot(campaign_id=campaign_id)
        except OperationalError as exc:
            if self.request.retries < self.max_retries and not self.request.is_eager:
                raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc
            services.campaign_launch_failed(campaign_id=campaign_id, error=f"Database error: {exc}")
            log.exception("snapshot of campaign %s failed", campaign_id)
            return 0
        except services.CampaignError as exc:
            services.campaign_launch_failed(campaign_id=campaign_id, error=exc.message)
            return 0
        except Exception as exc:
            services.campaign_launch_failed(campaign_id=campaign_id, error=f"{exc.__class__.__name__}: {exc}")
            raise


@shared_task(name="campaigns.exception_renewals_all", soft_time_limit=600, time_limit=660)
def exception_renewals_all() -> int:
    """Beat, daily: each organization's expired exceptions go into its "Exception renewals <date>" campaign."""
    from .exceptions import organizations_with_expired_exceptions

    ids = organizations_with_expired_exceptions()
    for organization_id in ids:
        exception_renewals_for.delay(organization_id)
    return len(ids)


@shared_task(name="campaigns.exception_renewals", acks_late=True, soft_time_limit=600, time_limit=660)
def exception_renewals_for(organization_id: int) -> str:
    """Safe to run twice: an expired exception is gathered into a renewal campaign once."""
    from thalian.models import Organization

    from .exceptions import exception_renewals_gather

    campaign = exception_renewals_gather(organization=Organization.objects.get(pk=organization_id))
    return str(campaign.pk) if campaign else ""
