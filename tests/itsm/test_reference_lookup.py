"""Exactly one ticket per revoke when the vendor's answer is lost: every create carries the item's reference,
and after an unknown outcome the next attempt looks the reference up before creating again."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from campaigns.models import ReviewItem
from itsm import services, sweeps
from itsm.clients import ItsmTransientError, build_client
from itsm.models import Ticket, TicketState
from tests.conftest import wait_until
from thalian.models import AuditEvent
from thalian.tenancy import scope

from .test_clients import CONTENT, vendor  # noqa: F401 - the parametrized fake of each vendor

REFERENCE_FIELD = {
    "jira": lambda fake, ticket: ticket["labels"],
    "servicenow": lambda fake, ticket: [ticket["correlation_id"]],
    "freshservice": lambda fake, ticket: ticket["tags"],
    "zendesk": lambda fake, ticket: [ticket["external_id"]],
}


def test_every_create_carries_the_reference_where_the_vendor_can_search_it(vendor):  # noqa: F811
    remote = vendor.client().create_ticket(CONTENT)

    (created,) = vendor.fake.tickets.values()
    assert CONTENT.reference in REFERENCE_FIELD[vendor.kind](vendor.fake, created)
    assert vendor.client().find_ticket(CONTENT.reference) == remote
    assert vendor.client().find_ticket("thalian-item-someone-else") is None


def test_a_create_answered_after_the_timeout_is_found_by_its_reference(vendor):  # noqa: F811
    client = vendor.client(timeout=0.5)
    vendor.fake.answer_late_next(1.5)

    with pytest.raises(ItsmTransientError) as error:
        client.create_ticket(CONTENT)

    assert error.value.outcome_unknown
    assert len(vendor.fake.tickets) == 1
    found = client.find_ticket(CONTENT.reference)
    assert found is not None and found.remote_id in vendor.fake.tickets


def test_a_hung_create_creates_nothing_and_the_lookup_says_so(vendor):  # noqa: F811
    client = vendor.client(timeout=0.5)
    vendor.fake.hang_next(1.5)

    with pytest.raises(ItsmTransientError) as error:
        client.create_ticket(CONTENT)

    assert error.value.outcome_unknown
    assert client.find_ticket(CONTENT.reference) is None
    assert not vendor.fake.tickets


@pytest.mark.parametrize("status,unknown", [(500, True), (502, True), (504, True), (503, False), (429, False)])
def test_only_answers_that_may_follow_a_write_leave_the_outcome_unknown(itsm_http_server, status, unknown):
    from tests.fakes.itsm import FakeJira

    fake = FakeJira().install(itsm_http_server)
    client = build_client(
        "jira", base_url=fake.base_url, values={"email": fake.email, "api_token": fake.api_token, "project_key": "OPS"}
    )
    fake.fail_next(status, {"errorMessages": ["busy"]})

    with pytest.raises(ItsmTransientError) as error:
        client.create_ticket(CONTENT)

    assert error.value.outcome_unknown is unknown


def test_a_refused_connection_is_a_known_outcome():
    client = build_client(
        "jira", base_url="http://127.0.0.1:9", values={"email": "a@b.c", "api_token": "t", "project_key": "OPS"}
    )

    with pytest.raises(ItsmTransientError) as error:
        client.create_ticket(CONTENT)

    assert not error.value.outcome_unknown


def _ticket(item) -> Ticket:
    with scope(item.organization):
        return Ticket.objects.get(item=item)


def test_a_late_jira_answer_ends_with_one_issue_found_by_label(jira, connect, revoked_item, decide, itsm_settings):
    itsm_settings.ITSM_TIMEOUT_SECONDS = 0.5
    connect(jira)
    jira.answer_late_next(1.5)
    item = revoked_item()

    decide(item)

    assert len(jira.tickets) == 1
    assert len(jira.calls("POST", r"/rest/api/2/issue")) == 1
    assert len(jira.calls("GET", r"/rest/api/2/search/jql")) == 1
    ticket = _ticket(item)
    assert ticket.state == TicketState.OPEN and ticket.key == "OPS-1" and not ticket.lookup_before_create
    assert item.ticket_url == f"{jira.base_url}/browse/OPS-1"
    with scope(item.organization):
        opened = AuditEvent.objects.get(action="itsm.ticket_opened", target_id=str(ticket.pk))
    assert opened.details["found_by_reference"] is True


def test_a_retry_after_a_known_failure_creates_without_looking_up(jira, connect, revoked_item, decide):
    connect(jira)
    jira.fail_next(503, {"errorMessages": ["Service unavailable"]})
    item = revoked_item()

    decide(item)

    assert len(jira.tickets) == 1
    assert not jira.calls("GET", r"/rest/api/2/search/jql")


@pytest.mark.parametrize("kind", ["jira", "servicenow", "freshservice", "zendesk"])
def test_a_stale_opening_claim_finds_the_ticket_its_dead_worker_created(
    kind, fake_vendor, connect, revoked_item, org, itsm_settings, settings
):
    """The worker created the remote ticket and was killed before recording it: the sweep hands the claim
    back, and the next attempt records the existing ticket instead of creating a second."""
    settings.CLAIM_STALE_SECONDS = 5
    fake = fake_vendor(kind)
    connection = connect(fake)
    item = revoked_item()
    with scope(org):
        ticket = Ticket.objects.create(
            organization=org, item=item, campaign=item.campaign, connection=connection,
            state=TicketState.OPENING, claimed_at=timezone.now() - dt.timedelta(seconds=6), attempts=1,
        )  # fmt: skip
        content = services.ticket_content(ReviewItem.objects.select_related("campaign", "organization").get(pk=item.pk))
        created = connection.client().create_ticket(content)

    assert (org.pk, ticket.pk) in sweeps.tickets_due()
    outcome, _ = services.ticket_open(organization_id=org.pk, ticket_id=ticket.pk)

    assert outcome == "opened"
    assert len(fake.tickets) == 1
    ticket.refresh_from_db()
    assert (ticket.state, ticket.key, ticket.attempts) == (TicketState.OPEN, created.key, 2)


def test_a_fresh_opening_claim_is_left_alone(jira, connect, revoked_item, org, settings):
    settings.CLAIM_STALE_SECONDS = 60
    connect(jira)
    item = revoked_item()
    with scope(org):
        ticket = Ticket.objects.create(
            organization=org, item=item, campaign=item.campaign, state=TicketState.OPENING, claimed_at=timezone.now()
        )

    assert (org.pk, ticket.pk) not in sweeps.tickets_due()
    ticket.refresh_from_db()
    assert ticket.state == TicketState.OPENING and not ticket.lookup_before_create


@pytest.mark.celery_worker
def test_ten_revokes_against_a_jira_that_answers_after_the_timeout_make_ten_issues(
    celery_worker_factory, jira, connect, revoked_item, org, monkeypatch, settings
):
    monkeypatch.setenv("ITSM_TIMEOUT_SECONDS", "0.5")
    settings.ITSM_TIMEOUT_SECONDS = 0.5
    celery_worker_factory(concurrency=2)
    connect(jira)
    items = [revoked_item() for _ in range(10)]
    jira.answer_late_next(1.5, times=10)

    services.tickets_on_decisions(organization_id=org.pk, item_ids=[i.pk for i in items])
    with scope(org):
        ticket_ids = list(Ticket.objects.filter(item__in=items).values_list("pk", flat=True))
    from itsm.tasks import open_tickets

    open_tickets.delay(org.pk, ticket_ids)

    def all_open():
        with scope(org):
            states = list(Ticket.objects.filter(pk__in=ticket_ids).values_list("state", flat=True))
        return states.count(TicketState.OPEN) == len(items)

    # Each first create times out (the issue exists); the retry comes after the backoff (15 s) and finds it.
    wait_until(all_open, timeout=90)
    assert len(jira.tickets) == 10
    assert len(jira.calls("POST", r"/rest/api/2/issue")) == 10
    labels = sorted(t["labels"][0] for t in jira.tickets.values())
    assert labels == sorted(f"thalian-item-{i.pk}" for i in items)
    with scope(org):
        keys = set(Ticket.objects.filter(pk__in=ticket_ids).values_list("key", flat=True))
    assert keys == set(jira.tickets)


@pytest.mark.celery_worker
def test_a_worker_killed_while_jira_creates_the_issue_ends_with_one_issue(
    celery_worker_factory, jira, connect, revoked_item, org, settings
):
    """Jira creates the issue, then the worker waiting for the answer is killed: the sweep hands the claim back
    and the next worker finds the issue by its label instead of creating a second."""
    from itsm.tasks import open_ticket

    connect(jira)
    item = revoked_item()
    services.tickets_on_decisions(organization_id=org.pk, item_ids=[item.pk])
    ticket = _ticket(item)
    jira.answer_late_next(8)  # the issue exists at once; the answer would come after 8 s
    celery_worker_factory()
    open_ticket.delay(org.pk, ticket.pk)
    wait_until(lambda: jira.tickets, timeout=30)
    assert _ticket(item).state == TicketState.OPENING
    celery_worker_factory.kill()

    settings.CLAIM_STALE_SECONDS = 1
    time.sleep(1.1)
    celery_worker_factory()
    # The periodic sweep (itsm.resume_due), run here so that it sees the one-second threshold.
    assert (org.pk, ticket.pk) in sweeps.tickets_due()
    open_ticket.delay(org.pk, ticket.pk)

    wait_until(lambda: _ticket(item).state == TicketState.OPEN, timeout=60)
    assert len(jira.tickets) == 1 and len(jira.calls("POST", r"/rest/api/2/issue")) == 1
    assert _ticket(item).key == next(iter(jira.tickets))
