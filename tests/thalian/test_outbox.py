"""The outbox: events commit or roll back with their change, every receiver runs once, a failing receiver is
retried with backoff without re-running the others, and the sweep finishes abandoned claims."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from typing import ClassVar

import pytest
from django.db import transaction
from django.utils import timezone

from thalian import events, outbox
from thalian.models import AuditEvent, OutboxEvent, OutboxState
from thalian.permissions import Role


@dataclasses.dataclass(frozen=True, kw_only=True)
class Probe(events.Event):
    name: ClassVar[str] = "tests.probe"
    value: str


CALLS: list[tuple[str, str]] = []
FAILURES = {"left": 0}


def _steady(event: Probe) -> None:
    CALLS.append(("steady", event.value))


def _flaky(event: Probe) -> None:
    CALLS.append(("flaky", event.value))
    if FAILURES["left"]:
        FAILURES["left"] -= 1
        raise RuntimeError("the receiving system is down")


events.register(Probe, "tests.steady", _steady)
events.register(Probe, "tests.flaky", _flaky)


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()
    FAILURES["left"] = 0


def _publish(org, value="one", *, capture=None) -> OutboxEvent:
    with transaction.atomic():
        [event_id] = events.publish(Probe(organization_id=org.pk, value=value))
    return OutboxEvent.unscoped.get(pk=event_id)


def test_an_event_rolled_back_with_its_change_is_never_dispatched(org):
    with pytest.raises(RuntimeError), transaction.atomic():
        events.publish(Probe(organization_id=org.pk, value="lost"))
        raise RuntimeError("the change failed")
    assert not OutboxEvent.unscoped.exists()
    outbox.outbox_sweep()
    assert CALLS == []


def test_each_receiver_runs_once_and_running_the_event_again_changes_nothing(org, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        row = _publish(org)
    row.refresh_from_db()
    assert CALLS == [("steady", "one"), ("flaky", "one")]
    assert row.state == OutboxState.DONE and row.handled_at is not None
    assert {name: o["state"] for name, o in row.outcomes.items()} == {"tests.steady": "done", "tests.flaky": "done"}
    assert outbox.outbox_dispatch(event_id=row.pk) == "skipped"
    assert outbox.outbox_sweep()["purged"] == 0
    assert CALLS == [("steady", "one"), ("flaky", "one")]


def test_a_failing_receiver_is_retried_with_backoff_without_running_the_others_again(org, time_machine):
    FAILURES["left"] = 1
    row = _publish(org)
    assert outbox.outbox_dispatch(event_id=row.pk) == "pending"
    row.refresh_from_db()
    assert row.state == OutboxState.PENDING
    assert row.outcomes["tests.steady"]["state"] == "done"
    assert row.outcomes["tests.flaky"]["state"] == "retry"
    assert row.outcomes["tests.flaky"]["error"] == "RuntimeError: the receiving system is down"
    assert row.next_attempt_at > timezone.now() + dt.timedelta(seconds=5)

    outbox.outbox_sweep()  # not due yet
    assert CALLS == [("steady", "one"), ("flaky", "one")]
    time_machine.move_to(timezone.now() + outbox.backoff(1) + dt.timedelta(seconds=1))
    assert outbox.outbox_sweep()["done"] == 1
    assert CALLS == [("steady", "one"), ("flaky", "one"), ("flaky", "one")]
    row.refresh_from_db()
    assert row.state == OutboxState.DONE
    assert row.outcomes["tests.flaky"]["attempts"] == 2


def test_a_receiver_that_keeps_failing_is_shown_failed_and_an_operator_can_retry_it(
    org, member, time_machine, django_capture_on_commit_callbacks
):
    FAILURES["left"] = 10_000
    row = _publish(org)
    for attempt in range(1, outbox.MAX_RECEIVER_ATTEMPTS + 1):
        outbox.outbox_sweep()
        time_machine.move_to(timezone.now() + outbox.backoff(attempt) + dt.timedelta(seconds=1))
    row.refresh_from_db()
    assert row.state == OutboxState.FAILED
    assert row.failed_receivers == ["tests.flaky"]
    assert CALLS.count(("steady", "one")) == 1
    assert CALLS.count(("flaky", "one")) == outbox.MAX_RECEIVER_ATTEMPTS
    assert outbox.outbox_backlog().failed == 1

    FAILURES["left"] = 0
    operator = member(Role.SUPER_ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        outbox.outbox_event_retry(event_id=row.pk, actor=operator.user)
    row.refresh_from_db()
    assert row.state == OutboxState.DONE
    assert CALLS.count(("steady", "one")) == 1
    assert AuditEvent.objects.filter(action="outbox.retried", target_id=str(row.pk)).exists()
    with pytest.raises(outbox.OutboxError, match="only failed events"):
        outbox.outbox_event_retry(event_id=row.pk, actor=operator.user)


def test_the_sweep_finishes_an_event_whose_worker_died_after_claiming_it_exactly_once(org):
    row = _publish(org)
    # A worker claimed it ten minutes ago and died: the claim is stale.
    OutboxEvent.unscoped.filter(pk=row.pk).update(
        claimed_at=timezone.now() - dt.timedelta(minutes=10), claim_id=uuid.uuid4(), attempts=1
    )
    fresh = _publish(org, "two")
    # Another worker is working on this one right now: the sweep leaves it alone.
    OutboxEvent.unscoped.filter(pk=fresh.pk).update(claimed_at=timezone.now(), claim_id=uuid.uuid4())

    assert outbox.outbox_sweep()["done"] == 1
    assert outbox.outbox_sweep().get("done", 0) == 0
    assert CALLS == [("steady", "one"), ("flaky", "one")]
    row.refresh_from_db()
    assert row.state == OutboxState.DONE and row.claimed_at is None and row.attempts == 2


def test_a_dispatcher_that_lost_its_claim_records_nothing(org):
    row = _publish(org)
    stolen = {}

    def steal(event):
        # Another dispatcher takes over (this one was presumed dead) while the receiver runs.
        OutboxEvent.unscoped.filter(pk=row.pk).update(claim_id=uuid.uuid4())
        stolen["yes"] = True

    events.register(Probe, "tests.steal", steal)
    try:
        assert outbox.outbox_dispatch(event_id=row.pk) == "skipped"
    finally:
        events._RECEIVERS[Probe.name].pop("tests.steal")
    row.refresh_from_db()
    assert stolen and row.state == OutboxState.PENDING
    assert "tests.steal" not in row.outcomes


def test_backlog_counts_unhandled_events_and_the_age_of_the_oldest(org, time_machine):
    assert outbox.outbox_backlog().as_dict() == {"pending": 0, "failed": 0, "oldest_pending_age_seconds": 0.0}
    _publish(org)
    time_machine.move_to(timezone.now() + dt.timedelta(seconds=90))
    _publish(org, "two")
    backlog = outbox.outbox_backlog()
    assert backlog.pending == 2
    assert 89 <= backlog.oldest_age_seconds <= 100


def test_handled_events_are_deleted_after_the_retention_period(org, settings, time_machine):
    settings.OUTBOX_KEEP_DAYS = 3
    row = _publish(org)
    outbox.outbox_dispatch(event_id=row.pk)
    time_machine.move_to(timezone.now() + dt.timedelta(days=2))
    assert outbox.outbox_sweep()["purged"] == 0
    time_machine.move_to(timezone.now() + dt.timedelta(days=2))
    assert outbox.outbox_sweep()["purged"] == 1


def test_kick_with_the_broker_unreachable_returns_at_once_and_leaves_the_event_for_the_sweep(
    org, broker_down, django_capture_on_commit_callbacks
):
    with broker_down():
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):
            row = _publish(org)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0
    row.refresh_from_db()
    assert row.state == OutboxState.PENDING and CALLS == []
    outbox.outbox_sweep()
    assert CALLS == [("steady", "one"), ("flaky", "one")]


def test_every_product_event_has_a_receiver_and_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    for name, event_type in events.EVENT_TYPES.items():
        if name.startswith("tests."):
            continue
        assert events.receivers_for(name), f"{name} is published but nobody receives it"
        assert f"`{event_type.__name__}` (`{name}`)" in doc, f"{name} is missing from docs/architecture.md"


def test_handing_over_to_a_broker_that_accepts_but_never_answers_gives_up_within_the_timeout(settings):
    """A hung Redis (the connection opens, nothing comes back) costs a request at most the broker timeout."""
    import socket
    import threading

    from thalian.broker import send_quickly
    from thalian.celery import app
    from thalian.tasks import ping

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    previous = app.conf.broker_url, app.conf.task_always_eager, app.conf.broker_connection_timeout
    app.conf.broker_url = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    app.conf.task_always_eager = False
    app.conf.broker_connection_timeout = 1.0
    try:
        started = time.monotonic()
        assert send_quickly(ping, [("x",)]) is False
        assert time.monotonic() - started < 2.5
    finally:
        app.conf.broker_url, app.conf.task_always_eager, app.conf.broker_connection_timeout = previous
        server.close()
