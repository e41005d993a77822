from celery.schedules import crontab

SCHEDULE = {
    "entitlements-scim-sync-due": {"task": "entitlements.tasks.scim_sync_due_task", "schedule": 15 * 60},
    "entitlements-import-uploads-sweep": {
        "task": "entitlements.tasks.import_uploads_sweep_task",
        "schedule": 60 * 60,
    },
    "entitlements-sweep-stale-runs": {"task": "entitlements.tasks.sync_runs_sweep_task", "schedule": 60.0},
    "entitlements-findings-refresh": {
        "task": "entitlements.tasks.findings_refresh_all_task",
        "schedule": crontab(hour=3, minute=17),
    },
}
