"""Periodic tasks of the notifications area (merged into CELERY_BEAT_SCHEDULE by thalian/settings.py)."""

from celery.schedules import crontab

SCHEDULE = {
    "notifications-retry-due": {"task": "notifications.retry_due", "schedule": 60.0},
    # Reminder periods are days long; a quarter-hour tick keeps them timely without extra load.
    "notifications-cadence": {"task": "notifications.cadence_all", "schedule": 900.0},
    # Exceptions expiring in 14 and 3 days: checked hourly, sent once per reviewer and date (deduplicated).
    "notifications-exception-reminders": {"task": "notifications.exception_reminders_all", "schedule": 3600.0},
    # Access requests: reminders, escalations and notices before temporary access ends (deduplicated).
    "notifications-access-requests": {"task": "notifications.access_request_notices_all", "schedule": 3600.0},
    # Exceptions hold through their expiry date: the day after, they are gathered for renewal (00:20 UTC).
    "notifications-exception-renewals": {
        "task": "notifications.exception_renewals_all",
        "schedule": crontab(hour=0, minute=20),
    },
}
