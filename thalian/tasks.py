from celery import shared_task

from . import outbox


@shared_task(name="thalian.ping")
def ping(value: str = "pong") -> str:
    """Round trip used by health checks and the worker smoke test."""
    return value


@shared_task(name="thalian.outbox_dispatch")
def outbox_dispatch(event_ids: list[int]) -> dict[str, int]:
    """Run the receivers of freshly committed events (sent by the on-commit kick)."""
    return outbox.outbox_dispatch_many(list(event_ids))


@shared_task(name="thalian.outbox_sweep")
def outbox_sweep() -> dict[str, int]:
    """Periodic: events the kick could not hand over, retries that are due, claims abandoned by dead workers."""
    return outbox.outbox_sweep()
