"""Concurrent decisions on PostgreSQL: separate threads, separate connections, real row locks."""

import threading

import pytest
from django.db import connection, connections

from campaigns.decisions import decisions_bulk_apply, review_item_decide
from campaigns.models import ReviewItem
from thalian.permissions import Role
from thalian.tenancy import scope

from .review_support import active_campaign, add_items, assert_chain_intact, events_of, fresh

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("row locking needs PostgreSQL (set DATABASE_URL)")


def _run_concurrently(*calls):
    """Starts every call in its own thread and database connection at the same moment; returns errors."""
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call):
        try:
            barrier.wait(timeout=10)
            call()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_concurrent_decisions_on_one_item_never_lose_an_update(org, member):
    reviewer = member(Role.REVIEWER)
    analyst = member(Role.SECURITY_ANALYST)
    campaign = active_campaign(org)
    [item] = add_items(campaign, reviewer, 1)

    def decide(actor, decision, reason):
        def call():
            with scope(org):
                stale = ReviewItem.objects.get(pk=item.pk)
                review_item_decide(item=stale, actor=actor, decision=decision, reason=reason)

        return call

    for round_no in range(5):
        errors = _run_concurrently(
            decide(reviewer, "approve", f"still needed {round_no}"),
            decide(analyst, "revoke", f"not used {round_no}"),
        )
        assert errors == []

    events = events_of(campaign)
    assert len(events) == 10
    current = fresh(item)
    assert current.version == 10
    last = events[-1]
    assert (current.decision, current.decision_reason, current.decided_by_email) == (
        last.decision, last.reason, last.actor_email
    )
    assert_chain_intact(campaign)


def test_bulk_and_single_decisions_at_once_keep_one_unbroken_chain(org, member):
    reviewer = member(Role.REVIEWER)
    admin = member(Role.ADMIN)
    campaign = active_campaign(org)
    items = add_items(campaign, reviewer, 40)

    def bulk():
        with scope(org):
            decisions_bulk_apply(
                campaign=campaign, actor=admin, items=ReviewItem.objects.all(), decision="approve"
            )

    def single():
        with scope(org):
            review_item_decide(item=items[7], actor=reviewer, decision="exception", reason="shared mailbox")

    assert _run_concurrently(bulk, single, single) == []
    events = events_of(campaign)
    assert len(events) == 42
    assert fresh(items[7]).version == 3
    assert_chain_intact(campaign)
