from celery import shared_task


@shared_task(name="thalian.ping")
def ping(value: str = "pong") -> str:
    """Round trip used by health checks and the worker smoke test."""
    return value
