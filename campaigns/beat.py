"""Periodic tasks of the campaigns area (merged into CELERY_BEAT_SCHEDULE by thalian/settings.py)."""

from celery.schedules import crontab

SCHEDULE = {
    # Exceptions hold through their expiry date: the day after, they are gathered for renewal.
    "campaigns-exception-renewals": {"task": "campaigns.exception_renewals_all", "schedule": crontab(hour=0, minute=20)},
}
