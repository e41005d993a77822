"""Helpers for tests that stop a real worker in the middle of claimed work."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import psycopg
from django.db import connection


def _connect() -> psycopg.Connection:
    params = connection.settings_dict
    return psycopg.connect(
        host=params.get("HOST") or "127.0.0.1", port=params.get("PORT") or 5432,
        user=params.get("USER") or "postgres", password=params.get("PASSWORD") or None, dbname=params["NAME"],
    )  # fmt: skip


@contextlib.contextmanager
def held_lock(sql: str, params: tuple = ()) -> Iterator[None]:
    """Hold the lock `sql` takes from a second connection, in an open transaction, until the block ends: a
    worker that needs it waits there, in the middle of its task."""
    with _connect() as other, other.transaction():
        other.execute(sql, params)
        yield


def wait_for_lock_waiter(timeout: float = 60.0) -> None:
    """Until some session of the test database waits for a lock (the worker reached the held lock)."""
    deadline = time.monotonic() + timeout
    with _connect() as probe:
        probe.autocommit = True
        while time.monotonic() < deadline:
            waiting = probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            if waiting:
                return
            time.sleep(0.1)
    raise AssertionError(f"no worker reached the held lock within {timeout}s")
