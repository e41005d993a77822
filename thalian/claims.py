"""Claimed background work: when a claim counts as abandoned, and whether its worker is still alive.

Every claimed state (a campaign `launching`, an import run `running`, an evidence package `building`, a ticket
`opening`) is taken with a conditional update and swept by a periodic task. A claim is abandoned when it is
older than ``CLAIM_STALE_SECONDS`` and, on PostgreSQL, no worker holds its advisory lock: a worker takes the
lock (``claim_held``) for as long as it works on the claim, and the database drops it the moment the worker's
connection goes away (a killed process, a hard time limit), so the sweep never takes work from a live worker
however long the work runs. After ``CLAIM_MAX_ATTEMPTS`` attempts the sweep fails the work visibly instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import zlib
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError, connection


def stale_after() -> dt.timedelta:
    return dt.timedelta(seconds=settings.CLAIM_STALE_SECONDS)


def max_attempts() -> int:
    return settings.CLAIM_MAX_ATTEMPTS


def _lock_keys(kind: str, key: object) -> tuple[int, int]:
    # Two signed 32-bit keys: the kind of work and the claimed row. A (harmless) collision only makes a
    # dead claim look alive until the other holder finishes.
    def signed(value: int) -> int:
        return value - 2**32 if value >= 2**31 else value

    return signed(zlib.crc32(kind.encode())), signed(zlib.crc32(str(key).encode()))


@contextlib.contextmanager
def claim_held(kind: str, key: object) -> Iterator[None]:
    """Hold the advisory lock of claim (kind, key) while the body runs (PostgreSQL; elsewhere a no-op)."""
    if connection.vendor != "postgresql":
        yield
        return
    keys = _lock_keys(kind, key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", keys)
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", keys)
        except DatabaseError:
            # A broken connection cannot unlock; closing it ends the session and with it the lock.
            connection.close()


def claim_alive(kind: str, key: object) -> bool:
    """True when a worker holds claim (kind, key) right now. Without PostgreSQL nothing can tell, so False
    (the embedded default runs tasks in process, where nothing is ever abandoned mid-way)."""
    if connection.vendor != "postgresql":
        return False
    keys = _lock_keys(kind, key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", keys)
        taken = cursor.fetchone()[0]
        if taken:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", keys)
    return not taken
