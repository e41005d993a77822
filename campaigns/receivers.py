"""What the campaigns area does after its own events (registered in CampaignsConfig.ready()): follow-up work
that must not run inside the request or worker transaction that produced the event."""

from __future__ import annotations

from thalian import events

from . import scheduling, services
from .models import Campaign


def complete_when_done(event: events.ReviewerSignedOff) -> None:
    """The last sign-off completes the campaign (a conditional update: a second run finds it completed)."""
    campaign = Campaign.objects.filter(pk=event.campaign_id).first()
    if campaign is not None:
        services.campaign_complete_if_done(campaign=campaign)


def schedule_next_occurrence(event: events.CampaignLaunched) -> None:
    """A recurring campaign schedules its next occurrence once launched (one per series and time)."""
    campaign = Campaign.objects.filter(pk=event.campaign_id).first()
    if campaign is not None and campaign.recurrence:
        scheduling.series_ensure_next(campaign=campaign)


def register() -> None:
    events.register(events.ReviewerSignedOff, "campaigns.complete_when_done", complete_when_done)
    events.register(events.CampaignLaunched, "campaigns.schedule_next_occurrence", schedule_next_occurrence)
