"""Periodic tasks of the notifications area (merged into CELERY_BEAT_SCHEDULE by thalian/settings.py)."""

SCHEDULE = {
    "notifications-retry-due": {"task": "notifications.retry_due", "schedule": 60.0},
    # Reminder periods are days long; a quarter-hour tick keeps them timely without extra load.
    "notifications-cadence": {"task": "notifications.cadence_all", "schedule": 900.0},
}
