from celery.schedules import crontab

SCHEDULE = {
    "itsm-resume-due": {"task": "itsm.resume_due", "schedule": 60.0},
    "itsm-sync-statuses": {"task": "itsm.sync_statuses", "schedule": crontab(minute="*/15")},
}
