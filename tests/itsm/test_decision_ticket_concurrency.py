"""Eight deciders flipping revoke and approve on the same items while real workers open tickets at a fake
Jira: no decision fails (no deadlock, no 500), and every item ends with at most one issue, an open unwithdrawn
ticket when its last decision is revoke, and a withdrawn or no ticket otherwise."""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.db import connections

from campaigns.decisions import decisions_bulk_apply, review_item_decide
from campaigns.models import ReviewItem
from itsm.models import Ticket, TicketState
from thalian.models import OutboxEvent, OutboxState
from thalian.tasks import outbox_sweep
from thalian.tenancy import scope

from ..conftest import wait_until
from .test_outbox_handoffs import _undecided

pytestmark = pytest.mark.celery_worker

DECIDERS = 8
SECONDS = 20


def test_eight_concurrent_deciders_never_deadlock_and_every_revoke_ends_with_exactly_one_ticket(
    celery_worker_factory, jira, connect, revoked_item, reviewer, org
):
    connect(jira)
    items = _undecided(revoked_item, 12)
    campaign = revoked_item.campaign
    ids = [i.pk for i in items]
    celery_worker_factory(concurrency=2)

    errors: list[str] = []
    decisions = {"count": 0}
    deadline = time.monotonic() + SECONDS
    start = threading.Barrier(DECIDERS)

    def decider(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait(timeout=10)
            while time.monotonic() < deadline:
                decision = rng.choice(["revoke", "revoke", "approve"])
                reason = "no longer needed" if decision == "revoke" else ""
                try:
                    with scope(org):
                        if rng.random() < 0.25:
                            chosen = rng.sample(ids, 3)
                            decisions_bulk_apply(
                                campaign=campaign, actor=reviewer, items=ReviewItem.objects.filter(pk__in=chosen),
                                decision=decision, reason=reason,
                            )
                        else:
                            item = ReviewItem.objects.get(pk=rng.choice(ids))
                            review_item_decide(item=item, actor=reviewer, decision=decision, reason=reason)
                    decisions["count"] += 1
                except Exception as exc:  # noqa: BLE001 - any exception here would be a 500
                    errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=decider, args=(n,)) for n in range(DECIDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 60)
    assert errors == []
    assert decisions["count"] > DECIDERS * 5

    def settled():
        outbox_sweep.delay().get(timeout=60)
        if OutboxEvent.unscoped.exclude(state=OutboxState.DONE).exists():
            return False
        with scope(org):
            return not Ticket.objects.filter(state__in=[TicketState.PENDING, TicketState.OPENING]).exists()

    wait_until(settled, timeout=120, interval=1.0)
    time.sleep(1.5)

    with scope(org):
        final = dict(ReviewItem.objects.filter(pk__in=ids).values_list("pk", "decision"))
        tickets = {t.item_id: t for t in Ticket.objects.filter(item_id__in=ids)}
        shown = dict(ReviewItem.objects.filter(pk__in=ids).values_list("pk", "ticket_status"))
    creates = jira.calls("POST", r"/rest/api/2/issue$")
    assert len(creates) == len(jira.tickets) == len([t for t in tickets.values() if t.key])
    for pk, decision in final.items():
        ticket = tickets.get(pk)
        if decision == "revoke":
            assert ticket is not None and ticket.state == TicketState.OPEN, (pk, ticket and ticket.state)
            assert ticket.withdrawn_at is None, f"item {pk} is revoked but its ticket is marked withdrawn"
            assert shown[pk] == "open"
        elif ticket is not None:
            assert ticket.withdrawn_at is not None, f"item {pk} is {decision} but its ticket is not withdrawn"
