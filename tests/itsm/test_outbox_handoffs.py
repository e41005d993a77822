"""Revoke -> ticket and sign-off -> ticket survive a broker that is down when the decision commits: the decision
answers at once, and once the broker is back the sweep opens exactly one issue per revoke at the fake Jira.

Real Celery worker processes on Redis and PostgreSQL; the broker outage is this process pointing at a closed
port on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from campaigns.decisions import review_item_decide, review_sign_off
from campaigns.models import Campaign, CampaignStatus, ReviewItem
from itsm.models import Ticket
from thalian.models import OutboxEvent, OutboxState, TicketTrigger
from thalian.tasks import outbox_sweep
from thalian.tenancy import scope

from ..conftest import wait_until

pytestmark = pytest.mark.celery_worker


def _undecided(revoked_item, n: int) -> list[ReviewItem]:
    items = [revoked_item() for _ in range(n)]
    ReviewItem.unscoped.filter(pk__in=[i.pk for i in items]).update(
        decision="", decision_reason="", decided_by=None, decided_by_email="", decided_at=None
    )
    return items


def _issues_opened(org, items) -> bool:
    with scope(org):
        states = list(Ticket.objects.filter(item__in=items).values_list("state", flat=True))
    return len(states) == len(items) and all(s == "open" for s in states)


def test_revokes_made_while_the_broker_is_down_get_exactly_one_issue_each_once_it_is_back(
    celery_worker_factory, broker_down, jira, connect, revoked_item, reviewer, org
):
    connect(jira)
    items = _undecided(revoked_item, 3)
    with broker_down():
        for item in items:
            started = time.monotonic()
            with scope(org):
                review_item_decide(item=item, actor=reviewer, decision="revoke", reason="left the team")
            assert time.monotonic() - started < 1.5, "a decision must not wait on the broker"
    assert OutboxEvent.unscoped.filter(state=OutboxState.PENDING, name="campaigns.decisions_recorded").count() == 3
    assert jira.calls("POST", r"/rest/api/2/issue$") == []

    celery_worker_factory(concurrency=2)
    outbox_sweep.delay().get(timeout=60)
    wait_until(lambda: _issues_opened(org, items), timeout=60)
    # Sweeping again (beat keeps firing) and duplicate deliveries change nothing.
    outbox_sweep.delay().get(timeout=60)
    outbox_sweep.delay().get(timeout=60)
    time.sleep(1.5)
    assert len(jira.calls("POST", r"/rest/api/2/issue$")) == 3
    assert len(jira.tickets) == 3
    assert not OutboxEvent.unscoped.exclude(state=OutboxState.DONE).exists()
    with scope(org):
        assert set(ReviewItem.objects.filter(pk__in=[i.pk for i in items]).values_list("ticket_status", flat=True)) == {
            "open"
        }


def test_a_sign_off_while_the_broker_is_down_opens_its_tickets_and_completes_the_campaign_once_it_is_back(
    celery_worker_factory, broker_down, jira, connect, revoked_item, reviewer, org
):
    org.ticket_trigger = TicketTrigger.ON_SIGN_OFF
    org.save()
    connect(jira)
    items = _undecided(revoked_item, 2)
    campaign = revoked_item.campaign
    with broker_down():
        with scope(org):
            for item in items:
                review_item_decide(item=item, actor=reviewer, decision="revoke", reason="left the team")
            started = time.monotonic()
            review_sign_off(campaign=campaign, actor=reviewer)
            assert time.monotonic() - started < 1.5
    assert jira.calls("POST", r"/rest/api/2/issue$") == []

    celery_worker_factory()
    outbox_sweep.delay().get(timeout=60)
    wait_until(lambda: _issues_opened(org, items), timeout=60)
    outbox_sweep.delay().get(timeout=60)
    time.sleep(1.5)
    assert len(jira.calls("POST", r"/rest/api/2/issue$")) == 2
    assert Campaign.unscoped.get(pk=campaign.pk).status == CampaignStatus.COMPLETED


def test_a_revoke_withdrawn_while_the_broker_is_down_gets_exactly_one_comment_once_it_is_back(
    celery_worker_factory, broker_down, jira, connect, revoked_item, reviewer, org
):
    connect(jira)
    [item] = _undecided(revoked_item, 1)
    celery_worker_factory()
    with scope(org):
        review_item_decide(item=item, actor=reviewer, decision="revoke", reason="left the team")
    wait_until(lambda: _issues_opened(org, [item]), timeout=60)
    [key] = list(jira.tickets)

    with broker_down(), scope(org):
        started = time.monotonic()
        review_item_decide(item=ReviewItem.objects.get(pk=item.pk), actor=reviewer, decision="approve", reason="")
        assert time.monotonic() - started < 1.5
    assert jira.comments[key] == []

    outbox_sweep.delay().get(timeout=60)
    wait_until(lambda: len(jira.comments[key]) == 1, timeout=60)
    outbox_sweep.delay().get(timeout=60)
    time.sleep(1.5)
    assert len(jira.comments[key]) == 1 and "withdrawn" in jira.comments[key][0]
    assert len(jira.calls("POST", r"/rest/api/2/issue$")) == 1


def test_an_import_finished_while_the_broker_is_down_verifies_removals_once_it_is_back(
    celery_worker_factory, broker_down, jira, connect, revoked_item, reviewer, org
):
    import io

    from entitlements.services import inventory_import

    connect(jira)
    [item] = _undecided(revoked_item, 1)
    celery_worker_factory()
    with scope(org):
        review_item_decide(item=item, actor=reviewer, decision="revoke", reason="left the team")
    wait_until(lambda: _issues_opened(org, [item]), timeout=60)

    csv = f"application,identity_email,role,last_used\n{item.application_name},someone@acme.test,member,2026-01-01\n"
    with broker_down(), scope(org):
        started = time.monotonic()
        inventory_import(organization=org, kind="entitlements", stream=io.BytesIO(csv.encode()), mode="replace",
                         file_name="ent.csv")
        assert time.monotonic() - started < 3
    assert ReviewItem.unscoped.get(pk=item.pk).remediation_status == "pending"

    outbox_sweep.delay().get(timeout=60)
    wait_until(lambda: ReviewItem.unscoped.get(pk=item.pk).remediation_status == "verified_removed", timeout=60)
    assert OutboxEvent.unscoped.get(name="entitlements.inventory_changed").state == OutboxState.DONE
