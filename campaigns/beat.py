"""Periodic tasks of the campaigns area (merged into CELERY_BEAT_SCHEDULE by thalian/settings.py)."""

SCHEDULE = {
    "campaigns-sweep-stale-launches": {"task": "campaigns.sweep_stale_launches", "schedule": 60.0},
}
