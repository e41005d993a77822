"""Periodic tasks of the notifications area (merged into CELERY_BEAT_SCHEDULE by thalian/settings.py)."""

SCHEDULE = {
    "notifications-launch-due-campaigns": {"task": "notifications.launch_due_campaigns", "schedule": 60.0},
    "notifications-retry-due": {"task": "notifications.retry_due", "schedule": 60.0},
    # Reminder periods are days long; a quarter-hour tick keeps them timely without extra load.
    "notifications-cadence": {"task": "notifications.cadence_all", "schedule": 900.0},
    # Exceptions expiring in 14 and 3 days: checked hourly, sent once per reviewer and date (deduplicated).
    "notifications-exception-reminders": {"task": "notifications.exception_reminders_all", "schedule": 3600.0},
}
