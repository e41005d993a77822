"""Periodic tasks of the platform core (added to CELERY_BEAT_SCHEDULE by ThalianConfig.ready())."""

SCHEDULE = {
    # Short enough that an event published while the broker was down is handled soon after it returns.
    "thalian-outbox-sweep": {"task": "thalian.outbox_sweep", "schedule": 30.0},
}
