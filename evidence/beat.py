"""Periodic tasks of the evidence area (merged into CELERY_BEAT_SCHEDULE by thalian/settings.py)."""

SCHEDULE = {
    "evidence-sweep-stale-packages": {"task": "evidence.sweep_stale_packages", "schedule": 60.0},
}
