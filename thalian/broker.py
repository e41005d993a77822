"""Handing work to Celery from a request without ever waiting on a broker that is down.

Celery's own publishing retries a lost broker connection for seconds (and, with its default retry policy,
longer). Work handed over after a commit is always also recorded in the database (an outbox event, a pending
ticket, a queued notification) and found by a periodic sweep, so here one quick attempt is enough."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from .celery import app

logger = logging.getLogger(__name__)

# One connection attempt, no retry loop.
QUICK = {"max_retries": 0, "interval_start": 0}


def _split(call: Sequence | Mapping) -> tuple[tuple, dict]:
    return ((), dict(call)) if isinstance(call, Mapping) else (tuple(call), {})


def send_quickly(task, calls: Iterable[Sequence | Mapping]) -> bool:
    """``task.apply_async(...)`` for each call of ``calls`` (positional args, or a mapping of keyword args) on one
    short-lived broker connection. Returns False (and logs) when the broker cannot be reached; never raises for
    that."""
    calls = list(calls)
    if not calls:
        return True
    if app.conf.task_always_eager:
        # apply() rather than apply_async(): Celery's eager apply_async flips a process-wide "joining results
        # would block" flag and restores it without a lock, so decisions committing in several threads at
        # once could leave it set.
        for call in calls:
            args, kwargs = _split(call)
            task.apply(args, kwargs)
        return True
    try:
        timeout = app.conf.broker_connection_timeout
        options = {**(app.conf.broker_transport_options or {}), **QUICK}
        if str(app.conf.broker_url).startswith(("redis://", "rediss://")):
            # Both timeouts bound a broker that accepts connections but does not answer (a hung Redis).
            options.update(socket_connect_timeout=timeout, socket_timeout=timeout)
        with app.connection_for_write(connect_timeout=timeout, transport_options=options) as connection:
            for call in calls:
                args, kwargs = _split(call)
                task.apply_async(args, kwargs, connection=connection, retry=False)
    except Exception:  # noqa: BLE001 - broker unreachable: the database row is the record, a sweep resends
        logger.warning("could not hand %d %s message(s) to the broker; a sweep will resend them", len(calls),
                       task.name, exc_info=True)
        return False
    return True
