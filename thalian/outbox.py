"""The outbox dispatcher: runs the receivers of each published event, once each, however workers fail.

- A dispatch claims the event row with a conditional UPDATE (pending, due, and unclaimed or claimed longer
  ago than ``OUTBOX_STALE_CLAIM_SECONDS``); only the claimant runs receivers.
- Each receiver runs in its own transaction, which also records its outcome on the event row, guarded by the
  claim: a receiver's changes commit together with "done", or not at all. A receiver that already succeeded
  is never run again for that event; one that raised is retried with exponential backoff, without holding up
  the others, and marked failed after ``MAX_RECEIVER_ATTEMPTS`` (the operations page can retry it).
- The periodic sweep dispatches due events that no worker claimed (the broker was down at commit time) or
  whose claim went stale (the worker died), and deletes handled events after ``OUTBOX_KEEP_DAYS``.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min, Q
from django.utils import timezone

from .audit import audit_record
from .events import EVENT_TYPES, kick, receivers_for
from .models import OutboxEvent, OutboxState, User
from .tenancy import scope

logger = logging.getLogger(__name__)

MAX_RECEIVER_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 10
BACKOFF_MAX_SECONDS = 1800
SWEEP_BATCH = 500
PURGE_BATCH = 5000


class OutboxError(ValueError):
    pass


class _ClaimLost(Exception):
    pass


def stale_claim() -> dt.timedelta:
    return dt.timedelta(seconds=getattr(settings, "OUTBOX_STALE_CLAIM_SECONDS", 300))


def backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))


def _claimable(now: dt.datetime) -> Q:
    return Q(state=OutboxState.PENDING, next_attempt_at__lte=now) & (
        Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - stale_claim())
    )


def _claim(event_id: int, now: dt.datetime) -> uuid.UUID | None:
    token = uuid.uuid4()
    updated = OutboxEvent.unscoped.filter(_claimable(now), pk=event_id).update(
        claimed_at=now, claim_id=token, attempts=F("attempts") + 1
    )
    return token if updated == 1 else None


def _save_outcomes(event_id: int, token: uuid.UUID, outcomes: dict) -> None:
    if OutboxEvent.unscoped.filter(pk=event_id, claim_id=token).update(outcomes=outcomes) != 1:
        raise _ClaimLost(event_id)


def outbox_dispatch(*, event_id: int) -> str:
    """Run the receivers of one event that still have to run. Returns "done", "pending" (a receiver will be
    retried), "failed", or "skipped" (not due, or another worker holds it)."""
    now = timezone.now()
    token = _claim(event_id, now)
    if token is None:
        return "skipped"
    row = OutboxEvent.unscoped.get(pk=event_id)
    event_type = EVENT_TYPES.get(row.name)
    outcomes: dict = dict(row.outcomes)
    receivers = receivers_for(row.name) if event_type is not None else {}
    if event_type is None:
        logger.error("outbox event %s has an unknown name %r", row.pk, row.name)
        outcomes["(unknown event)"] = {"state": "failed", "attempts": 1, "error": f"unknown event {row.name}",
                                       "at": now.isoformat()}
    else:
        event = event_type.from_row(organization_id=row.organization_id, payload=row.payload)
        try:
            for receiver_name, function in receivers.items():
                previous = outcomes.get(receiver_name, {})
                if previous.get("state") in ("done", "failed"):
                    continue
                if previous.get("next_at") and dt.datetime.fromisoformat(previous["next_at"]) > now:
                    continue
                outcomes[receiver_name] = _run(row, token, receiver_name, function, event, outcomes, previous)
        except _ClaimLost:
            logger.warning("outbox event %s was claimed by another dispatcher meanwhile", event_id)
            return "skipped"
    return _finish(row, token, outcomes, receivers)


def _run(row: OutboxEvent, token, receiver_name: str, function, event, outcomes: dict, previous: dict) -> dict:
    attempts = previous.get("attempts", 0) + 1
    try:
        with scope(organization_id=row.organization_id), transaction.atomic():
            function(event)
            outcome = {"state": "done", "attempts": attempts, "error": "", "at": timezone.now().isoformat()}
            _save_outcomes(row.pk, token, {**outcomes, receiver_name: outcome})
        return outcome
    except _ClaimLost:
        raise
    except Exception as exc:  # noqa: BLE001 - a receiver's failure is recorded and retried, never spread
        logger.exception("outbox receiver %s failed on event %s (attempt %s)", receiver_name, row.pk, attempts)
        now = timezone.now()
        failed = attempts >= MAX_RECEIVER_ATTEMPTS
        outcome = {
            "state": "failed" if failed else "retry",
            "attempts": attempts,
            "error": f"{exc.__class__.__name__}: {exc}"[:1000],
            "at": now.isoformat(),
        }
        if not failed:
            outcome["next_at"] = (now + backoff(attempts)).isoformat()
        _save_outcomes(row.pk, token, {**outcomes, receiver_name: outcome})
        return outcome


def _finish(row: OutboxEvent, token, outcomes: dict, receivers: dict) -> str:
    now = timezone.now()
    # Outcomes of receivers no longer registered (renamed or removed) only count when they failed.
    states = [outcomes.get(name, {}).get("state") for name in receivers] + [
        o.get("state") for name, o in outcomes.items() if name not in receivers and o.get("state") == "failed"
    ]
    retry_at = [
        dt.datetime.fromisoformat(outcomes[name]["next_at"])
        for name in receivers
        if outcomes.get(name, {}).get("state") == "retry" and outcomes[name].get("next_at")
    ]
    values: dict = {"outcomes": outcomes, "claimed_at": None, "claim_id": None}
    if any(state in (None, "retry") for state in states):
        values.update(state=OutboxState.PENDING, next_attempt_at=min(retry_at) if retry_at else now)
        result = "pending"
    elif "failed" in states:
        values.update(state=OutboxState.FAILED, handled_at=now)
        result = "failed"
    else:
        values.update(state=OutboxState.DONE, handled_at=now)
        result = "done"
    if OutboxEvent.unscoped.filter(pk=row.pk, claim_id=token).update(**values) != 1:
        return "skipped"
    return result


def outbox_dispatch_many(event_ids: list[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event_id in event_ids:
        outcome = outbox_dispatch(event_id=event_id)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def outbox_due(*, now: dt.datetime | None = None, limit: int = SWEEP_BATCH) -> list[int]:
    """Ids of events a dispatcher should run now: never claimed, due for a retry, or claimed and abandoned."""
    now = now or timezone.now()
    return list(
        OutboxEvent.unscoped.filter(_claimable(now)).order_by("next_attempt_at").values_list("pk", flat=True)[:limit]
    )


def outbox_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Periodic: dispatch every due event, then delete handled ones past the retention period."""
    now = now or timezone.now()
    counts = outbox_dispatch_many(outbox_due(now=now))
    keep = dt.timedelta(days=getattr(settings, "OUTBOX_KEEP_DAYS", 14))
    old = OutboxEvent.unscoped.filter(state=OutboxState.DONE, handled_at__lt=now - keep)
    purged, _ = OutboxEvent.unscoped.filter(pk__in=list(old.values_list("pk", flat=True)[:PURGE_BATCH])).delete()
    counts["purged"] = purged
    return counts


@dataclass(frozen=True)
class Backlog:
    pending: int
    failed: int
    oldest_pending_at: dt.datetime | None

    @property
    def oldest_age_seconds(self) -> float:
        if self.oldest_pending_at is None:
            return 0.0
        return max(0.0, (timezone.now() - self.oldest_pending_at).total_seconds())

    def as_dict(self) -> dict:
        return {
            "pending": self.pending,
            "failed": self.failed,
            "oldest_pending_age_seconds": round(self.oldest_age_seconds, 1),
        }


def outbox_backlog(*, organization_id: int | None = None) -> Backlog:
    """Events not handled yet (and the age of the oldest), and events with a failed receiver: platform-wide,
    or of one organization."""
    rows = OutboxEvent.unscoped.all()
    if organization_id is not None:
        rows = rows.filter(organization_id=organization_id)
    # Two narrow queries rather than one pass over every retained row: each is answered from a partial index.
    pending = rows.filter(state=OutboxState.PENDING).aggregate(n=Count("pk"), oldest=Min("created_at"))
    failed = rows.filter(state=OutboxState.FAILED).count()
    return Backlog(pending=pending["n"], failed=failed, oldest_pending_at=pending["oldest"])


def outbox_failed(*, organization_id: int, limit: int = 200) -> list[OutboxEvent]:
    """An organization's events with a receiver that gave up, newest first (the operations page)."""
    return list(
        OutboxEvent.unscoped.filter(organization_id=organization_id, state=OutboxState.FAILED)
        .only("pk", "name", "payload", "state", "attempts", "outcomes", "created_at", "handled_at")
        .order_by("-created_at")[:limit]
    )


def outbox_event_retry(
    *, event_id: int, actor: User, organization_id: int | None = None, request=None
) -> OutboxEvent:
    """Give the failed receivers of an event a new round of attempts and dispatch it now. With
    ``organization_id``, an event of another organization does not exist (OutboxEvent.DoesNotExist)."""
    with transaction.atomic():
        rows = OutboxEvent.unscoped.select_for_update()
        if organization_id is not None:
            rows = rows.filter(organization_id=organization_id)
        row = rows.filter(pk=event_id).first()
        if row is None:
            raise OutboxEvent.DoesNotExist(f"no outbox event {event_id}")
        if row.state != OutboxState.FAILED:
            raise OutboxError(f"Event {event_id} is {row.state}; only failed events can be retried.")
        receivers = row.failed_receivers
        outcomes = {
            name: ({**o, "state": "retry", "attempts": 0, "next_at": None} if o.get("state") == "failed" else o)
            for name, o in row.outcomes.items()
        }
        now = timezone.now()
        OutboxEvent.unscoped.filter(pk=row.pk).update(
            outcomes=outcomes, state=OutboxState.PENDING, next_attempt_at=now, handled_at=None,
            claimed_at=None, claim_id=None,
        )
        audit_record(
            action="outbox.retried",
            organization_id=row.organization_id,
            actor=actor,
            request=request,
            target_type="outboxevent",
            target_id=str(row.pk),
            target_label=row.name,
            details={"event": row.name, "receivers": receivers},
        )
        transaction.on_commit(lambda: kick([row.pk]), robust=True)
    row.refresh_from_db()
    return row
