"""Periodic tasks of the campaigns area (added to CELERY_BEAT_SCHEDULE by CampaignsConfig.ready())."""

SCHEDULE = {
    "campaigns-launch-due": {"task": "campaigns.launch_due", "schedule": 60.0},
    "campaigns-sweep-stale-launches": {"task": "campaigns.sweep_stale_launches", "schedule": 60.0},
    # Stage deadlines are days long; a few minutes late is nothing, and each run is one indexed probe per campaign.
    "campaigns-stage-deadlines": {"task": "campaigns.stage_deadlines", "schedule": 300.0},
}
