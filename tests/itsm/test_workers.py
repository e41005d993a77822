"""Exactly once with real Celery worker processes on Redis."""

import pytest

from campaigns.models import ReviewItem
from itsm import services
from itsm.models import Ticket
from itsm.tasks import open_ticket, open_tickets
from tests.conftest import wait_until
from thalian.tenancy import scope


@pytest.mark.celery_worker
def test_two_workers_and_duplicate_deliveries_open_one_ticket_per_item(
    celery_worker_factory, jira, connect, revoked_item, org
):
    celery_worker_factory(concurrency=2, count=2)
    connect(jira)
    items = [revoked_item() for _ in range(12)]
    # Slow first answers keep claims in flight while the duplicate deliveries arrive.
    jira.stall_next(0.5, times=3)

    services.tickets_on_decisions(organization_id=org.pk, item_ids=[i.pk for i in items])
    with scope(org):
        ticket_ids = list(Ticket.objects.filter(item__in=items).values_list("pk", flat=True))
    for ticket_id in ticket_ids:
        open_ticket.delay(org.pk, ticket_id)
        open_ticket.delay(org.pk, ticket_id)
    open_tickets.delay(org.pk, ticket_ids)

    def all_open():
        with scope(org):
            statuses = list(
                ReviewItem.objects.filter(pk__in=[i.pk for i in items]).values_list(
                    "ticket_status", flat=True
                )
            )
        return statuses.count("open") == len(items)

    wait_until(all_open, timeout=60)
    creates = jira.calls("POST", r"/rest/api/2/issue")
    assert len(creates) == len(items)
    assert len(jira.tickets) == len(items)
    references = [c.body["fields"]["description"].rsplit("Review item: ", 1)[1].split()[0] for c in creates]
    assert len(set(references)) == len(items)
    with scope(org):
        urls = set(
            ReviewItem.objects.filter(pk__in=[i.pk for i in items]).values_list("ticket_url", flat=True)
        )
    assert urls == {f"{jira.base_url}/browse/OPS-{n}" for n in range(1, len(items) + 1)}
