"""Periodic tasks of the platform core (see thalian/celery.py for how each app's SCHEDULE is merged)."""

SCHEDULE = {
    # Short enough that an event published while the broker was down is handled soon after it returns.
    "thalian-outbox-sweep": {"task": "thalian.outbox_sweep", "schedule": 30.0},
}
