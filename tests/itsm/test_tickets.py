import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from campaigns.models import ReviewItem
from itsm import itsm_connections, services, sweeps
from itsm.models import CommentState, Ticket, TicketComment, TicketState
from itsm.tasks import open_ticket, resume_due
from thalian.models import AuditEvent, TicketTrigger
from thalian.tenancy import scope, scopes_disabled

pytestmark = pytest.mark.django_db

KINDS = ["jira", "servicenow", "freshservice", "zendesk"]


def _ticket(item) -> Ticket:
    with scopes_disabled():
        return Ticket.objects.get(item=item)


def _audit(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


@pytest.mark.parametrize("kind", KINDS)
def test_revoke_opens_one_ticket_with_the_review_details_and_stores_its_url(
    kind, fake_vendor, connect, revoked_item, decide
):
    fake = fake_vendor(kind)
    connect(fake)
    item = revoked_item(email="ada@acme.test", role="admin")

    decide(item)

    assert len(fake.tickets) == 1
    [stored] = fake.tickets.values()
    text = {
        "jira": lambda: stored["summary"] + "\n" + stored["description"],
        "servicenow": lambda: stored["short_description"] + "\n" + stored["description"],
        "freshservice": lambda: stored["subject"] + "\n" + stored["description"],
        "zendesk": lambda: stored["subject"] + "\n" + stored["comment"]["body"],
    }[kind]()
    assert "Remove admin access for ada@acme.test in " + item.application_name in text
    for expected in (
        "Ada Lovelace",
        "ada@acme.test",
        f"Application: {item.application_name}",
        "Role: admin",
        "Grace Hopper",
        "grace@acme.test",
        "left the team",
        "Q1 access review",
        "2026-03-31",
        f"Review item: https://thalian.example.com/o/acme/campaigns/{item.campaign_id}/items/{item.pk}/",
    ):
        assert expected in text
    ticket = _ticket(item)
    expected_url = {
        "jira": f"{fake.base_url}/browse/OPS-1",
        "servicenow": f"{fake.base_url}/nav_to.do?uri=incident.do?sys_id={ticket.remote_id}",
        "freshservice": f"{fake.base_url}/a/tickets/1",
        "zendesk": f"{fake.base_url}/agent/tickets/1",
    }[kind]
    assert ticket.state == TicketState.OPEN
    assert (item.ticket_url, item.ticket_status, item.ticket_error) == (expected_url, "open", "")
    assert item.ticket_key == ticket.key and item.ticket_key
    assert item.remediation_status == "pending"
    [event] = _audit("itsm.ticket_opened")
    assert event.details["url"] == expected_url


def test_task_delivered_twice_opens_one_ticket(jira, connect, revoked_item, decide, org):
    connect(jira)
    item = revoked_item()
    decide(item)
    ticket = _ticket(item)

    assert open_ticket.delay(org.pk, ticket.pk).get() == "skipped"
    assert open_ticket.delay(org.pk, ticket.pk).get() == "skipped"
    decide(item)

    assert len(jira.calls("POST", r"/rest/api/2/issue")) == 1
    with scopes_disabled():
        assert Ticket.objects.filter(item=item).count() == 1


def test_claim_lets_only_one_caller_through(jira, connect, revoked_item, org, itsm_settings):
    connect(jira)
    item = revoked_item()
    with scope(org):
        ticket = Ticket.objects.create(
            organization=org, item=item, campaign=item.campaign, state=TicketState.PENDING
        )

    outcomes = [services.ticket_open(organization_id=org.pk, ticket_id=ticket.pk)[0] for _ in range(3)]

    assert outcomes == ["opened", "skipped", "skipped"]
    assert len(jira.tickets) == 1


def test_server_error_then_success_opens_the_ticket(jira, connect, revoked_item, decide):
    connect(jira)
    jira.fail_next(500, {"errorMessages": ["Internal server error"]})
    item = revoked_item()

    decide(item)

    assert len(jira.calls("POST", r"/rest/api/2/issue")) == 2
    assert len(jira.tickets) == 1
    assert item.ticket_status == "open"
    assert _ticket(item).attempts == 2


def test_timeout_is_retried(jira, connect, revoked_item, decide, itsm_settings):
    itsm_settings.ITSM_TIMEOUT_SECONDS = 0.5
    connection = connect(jira)
    jira.stall_next(1.5)
    item = revoked_item()

    decide(item)

    assert item.ticket_status == "open"
    assert connection.pk == _ticket(item).connection_id
    assert len(jira.tickets) >= 1


def test_rate_limit_waits_for_retry_after(jira, connect, revoked_item, org, itsm_settings):
    connect(jira)
    item = revoked_item()
    with scope(org):
        ticket = Ticket.objects.create(organization=org, item=item, campaign=item.campaign)
    jira.fail_next(429, {"errorMessages": ["Rate limit exceeded"]}, headers={"Retry-After": "120"})

    outcome, retry_in = services.ticket_open(organization_id=org.pk, ticket_id=ticket.pk)

    assert (outcome, retry_in) == ("retry", 120)
    ticket.refresh_from_db()
    assert ticket.state == TicketState.PENDING
    assert "Rate limit exceeded" in ticket.error
    assert 110 <= (ticket.next_attempt_at - timezone.now()).total_seconds() <= 120
    with scope(org):
        assert ReviewItem.objects.get(pk=item.pk).ticket_status == "pending"
    assert (org.pk, ticket.pk) not in sweeps.tickets_due()
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=125)):
        assert (org.pk, ticket.pk) in sweeps.tickets_due()


def test_backoff_grows_exponentially_and_is_capped():
    delays = [services.backoff_seconds(n) for n in range(1, 12)]

    assert 15 <= delays[0] < 17 and 30 <= delays[1] < 34 and 60 <= delays[2] < 67
    assert all(b > a for a, b in zip(delays[:6], delays[1:7], strict=True))
    assert max(delays) <= services.BACKOFF_MAX_SECONDS * 1.1
    assert services.backoff_seconds(3, retry_after=7) == 7


def test_tickets_wait_out_a_long_outage_and_go_out_when_the_itsm_returns(
    jira, connect, revoked_item, decide, org
):
    connect(jira)
    jira.fail_next(503, {"errorMessages": ["Service unavailable"]}, times=200)
    items = [revoked_item() for _ in range(3)]

    decide(items)

    assert not jira.tickets
    assert {i.ticket_status for i in items} == {"pending"}
    assert all("Service unavailable" in i.ticket_error for i in items)
    jira._failures.clear()
    with time_machine.travel(timezone.now() + dt.timedelta(hours=6)):
        assert resume_due.delay().get() == 3
    with scope(org):
        statuses = set(
            ReviewItem.objects.filter(pk__in=[i.pk for i in items]).values_list("ticket_status", flat=True)
        )
    assert statuses == {"open"}
    assert len(jira.tickets) == 3


def test_worker_dying_mid_call_releases_the_claim(jira, connect, revoked_item, org, itsm_settings):
    connect(jira)
    item = revoked_item()
    with scope(org):
        ticket = Ticket.objects.create(
            organization=org,
            item=item,
            campaign=item.campaign,
            state=TicketState.OPENING,
            claimed_at=timezone.now(),
        )

    assert (org.pk, ticket.pk) not in sweeps.tickets_due()
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=20)):
        assert (org.pk, ticket.pk) in sweeps.tickets_due()
    ticket.refresh_from_db()
    assert ticket.state == TicketState.PENDING


def test_wrong_credentials_fail_with_the_vendor_message_and_retry_works_after_fixing(
    jira, connect, revoked_item, decide, org, django_capture_on_commit_callbacks
):
    connection = connect(jira, api_token="expired-token")
    item = revoked_item()

    decide(item)

    assert item.ticket_status == "failed"
    assert "401" in item.ticket_error and "You are not authenticated" in item.ticket_error
    assert not jira.tickets
    [failed] = _audit("itsm.ticket_failed")
    assert "You are not authenticated" in failed.details["error"]

    itsm_connections.itsm_connection_update(connection=connection, actor=None, data={"api_token": jira.api_token})
    with django_capture_on_commit_callbacks(execute=True):
        services.ticket_retry(ticket=_ticket(item), actor=None)

    with scope(org):
        item.refresh_from_db()
    assert (item.ticket_status, item.ticket_error, item.ticket_key) == ("open", "", "OPS-1")
    assert len(_audit("itsm.ticket_retried")) == 1


def test_only_failed_tickets_can_be_retried(jira, connect, revoked_item, decide):
    from django.core.exceptions import ValidationError

    connect(jira)
    item = revoked_item()
    decide(item)

    with pytest.raises(ValidationError):
        services.ticket_retry(ticket=_ticket(item), actor=None)
    assert len(jira.tickets) == 1


def test_revoke_changed_to_approve_adds_a_withdrawal_comment(jira, connect, revoked_item, decide, member):
    connect(jira)
    item = revoked_item()
    decide(item)
    admin = member("admin", email="alan@acme.test")

    decide(item, "approve", reason="still needed for the on-call rota", by=admin)

    [comment] = jira.comments["OPS-1"]
    assert "withdrawn" in comment
    assert "alan@acme.test" in comment
    assert "approve" in comment
    assert "still needed for the on-call rota" in comment
    assert item.ticket_key == "OPS-1"
    assert item.remediation_status == ""
    with scopes_disabled():
        assert TicketComment.objects.get().state == CommentState.SENT
    assert len(_audit("itsm.revoke_withdrawn")) == 1
    assert len(_audit("itsm.comment_added")) == 1

    decide(item, "exception", reason="temporary", by=admin)
    assert len(jira.comments["OPS-1"]) == 1


def test_withdrawal_before_the_ticket_went_out_cancels_it(jira, connect, revoked_item, decide, member):
    connect(jira)
    jira.fail_next(503, {"errorMessages": ["down"]}, times=50)
    item = revoked_item()
    decide(item)
    assert item.ticket_status == "pending"

    decide(item, "approve", reason="mistake", by=member("admin"))

    assert (item.ticket_status, item.ticket_key) == ("", "")
    with scopes_disabled():
        assert not Ticket.objects.filter(item=item).exists()
    jira._failures.clear()
    resume_due.delay()
    assert not jira.tickets


def test_revoked_again_after_withdrawal_says_so_on_the_same_ticket(
    jira, connect, revoked_item, decide, member
):
    connect(jira)
    item = revoked_item()
    decide(item)
    admin = member("admin")
    decide(item, "approve", reason="mistake", by=admin)

    decide(item, "revoke", reason="really leaving", by=admin)

    assert len(jira.tickets) == 1
    assert len(jira.comments["OPS-1"]) == 2
    assert "revoke again" in jira.comments["OPS-1"][1]


def test_sign_off_trigger_waits_for_the_sign_off(jira, connect, revoked_item, decide, org):
    org.ticket_trigger = TicketTrigger.ON_SIGN_OFF
    org.save()
    connect(jira)
    item = revoked_item()

    decide(item)
    assert not jira.tickets
    assert item.ticket_status == ""

    with scope(org):
        ReviewItem.objects.filter(pk=item.pk).update(signed_off_at=timezone.now())
    decide(item)
    assert len(jira.tickets) == 1


def test_no_connection_means_no_ticket(revoked_item, decide):
    item = revoked_item()

    result = decide(item)

    assert result["queued"] == 0
    assert item.ticket_status == ""
    assert item.remediation_status == "pending"


def test_application_override_routes_to_its_connection(fake_vendor, connect, revoked_item, decide, org):
    from tests.factories import ApplicationFactory

    default = fake_vendor("jira")
    other = fake_vendor("freshservice")
    connect(default)
    special = ApplicationFactory(organization=org, name="Payroll")
    connect(other, name="HR desk", is_default=False, application_ids=[special.pk])
    routine, payroll = revoked_item(), revoked_item(application=special)

    decide([routine, payroll])

    assert len(default.tickets) == 1 and len(other.tickets) == 1
    assert payroll.ticket_url.endswith("/a/tickets/1")
    assert routine.ticket_url.endswith("/browse/OPS-1")


@pytest.mark.parametrize("kind", KINDS)
def test_status_sync_follows_the_ticket(kind, fake_vendor, connect, revoked_item, decide, org):
    fake = fake_vendor(kind)
    connect(fake)
    item = revoked_item()
    decide(item)
    ticket = _ticket(item)
    progress, done = {
        "jira": (
            lambda: fake.set_status(ticket.remote_id, "indeterminate"),
            lambda: fake.set_status(ticket.remote_id, "done"),
        ),
        "servicenow": (
            lambda: fake.set_state(ticket.remote_id, "2"),
            lambda: fake.set_state(ticket.remote_id, "6", active=False),
        ),
        "freshservice": (
            lambda: fake.set_status(ticket.remote_id, 3),
            lambda: fake.set_status(ticket.remote_id, 4),
        ),
        "zendesk": (
            lambda: fake.set_status(ticket.remote_id, "open"),
            lambda: fake.set_status(ticket.remote_id, "solved"),
        ),
    }[kind]

    progress()
    sweeps.tickets_sync_status(organization_id=org.pk)
    with scope(org):
        assert ReviewItem.objects.get(pk=item.pk).ticket_status == "in_progress"
    done()
    counts = sweeps.tickets_sync_status(organization_id=org.pk)
    with scope(org):
        assert ReviewItem.objects.get(pk=item.pk).ticket_status == "resolved"
    assert counts == {"checked": 1, "changed": 1, "errors": 0}
    assert sweeps.tickets_sync_status(organization_id=org.pk)["checked"] == 0
    assert [e.details["to"] for e in _audit("itsm.ticket_status_changed")] == ["in_progress", "resolved"]


def test_status_sync_beat_covers_every_organization_with_open_tickets(
    jira, connect, revoked_item, decide, org
):
    from itsm.tasks import sync_statuses

    connect(jira)
    item = revoked_item()
    decide(item)
    jira.set_status("OPS-1", "done")

    assert sync_statuses.delay().get() == 1

    with scope(org):
        assert ReviewItem.objects.get(pk=item.pk).ticket_status == "resolved"


def test_beat_schedule_includes_itsm_jobs(settings):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"itsm.resume_due", "itsm.sync_statuses"} <= tasks


def test_decision_hook_rejects_nothing_from_another_organization(
    jira, connect, revoked_item, decide, other_org, org
):
    connect(jira)
    foreign = revoked_item(organization=other_org)

    result = decide([foreign], organization=org)

    assert result["queued"] == 0
    assert not jira.tickets


def _queries_to_open(org, tickets) -> tuple[list[tuple[int, str, float | None]], int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        outcomes = services.tickets_open(organization_id=org.pk, ticket_ids=[t.pk for t in tickets])
    return outcomes, len(queries)


def test_a_batch_of_tickets_is_claimed_read_and_recorded_in_as_many_queries_as_one(
    jira, connect, revoked_item, org, itsm_settings
):
    """Opening ten tickets costs the database what opening one does (claim, read, record: one statement each),
    so workers spend their time on the ticketing system rather than on round trips."""
    connection = connect(jira)
    with scope(org):
        tickets = [
            Ticket.objects.create(
                organization=org, item=item, campaign=item.campaign, connection=connection, state=TicketState.PENDING
            )
            for item in [revoked_item() for _ in range(11)]
        ]
    one, one_queries = _queries_to_open(org, tickets[:1])
    ten, ten_queries = _queries_to_open(org, tickets[1:])

    assert [outcome for _pk, outcome, _retry in one + ten] == ["opened"] * 11
    assert ten_queries == one_queries <= 10
    assert len(jira.calls("POST", r"/rest/api/2/issue")) == len(jira.tickets) == 11
    with scope(org):
        items = ReviewItem.objects.filter(pk__in=[t.item_id for t in tickets]).order_by("pk")
        shown = {(i.ticket_status, i.ticket_key, i.ticket_url) for i in items}
    assert shown == {("open", key, f"{jira.base_url}/browse/{key}") for key in jira.tickets}
    assert len(_audit("itsm.ticket_opened")) == 11
    # Claimed once: a second run over the same ids opens nothing.
    again, _queries = _queries_to_open(org, tickets)
    assert {outcome for _pk, outcome, _retry in again} == {"skipped"}

