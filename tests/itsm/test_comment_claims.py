"""Ticket comments claimed as `sending` by a worker that died: the sweep posts them exactly once (looking for
the comment on the ticket first), fails them visibly after the last attempt, and Retry sends them again."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from itsm import sweeps
from itsm.comments import COMMENT_MAX_ATTEMPTS
from itsm.models import CommentState, Ticket, TicketComment, TicketState
from itsm.tasks import resume_due, send_comment
from tests.claims_support import held_lock, wait_for_lock_waiter
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from ..conftest import wait_until

pytestmark = pytest.mark.django_db

COMMENT_POSTS = r"/rest/api/2/issue/OPS-1/comment"


@pytest.fixture
def opened(jira, connect, revoked_item, decide):
    """A revoked item whose Jira issue OPS-1 is open."""
    connect(jira)
    item = revoked_item()
    decide(item)
    assert item.ticket_key == "OPS-1"
    return item


def _ticket(item) -> Ticket:
    with scopes_disabled():
        return Ticket.objects.get(item=item)


def _comment(comment_id) -> TicketComment:
    with scopes_disabled():
        return TicketComment.objects.get(pk=comment_id)


def _claimed_long_ago(item, *, attempts: int = 1, body: str = "The revoke decision was withdrawn.") -> TicketComment:
    """A comment a worker claimed an hour ago and never finished (it died after the claim)."""
    with scopes_disabled():
        ticket = Ticket.objects.get(item=item)
        return TicketComment.objects.create(
            organization_id=ticket.organization_id, ticket=ticket, body=body, state=CommentState.SENDING,
            attempts=attempts, claimed_at=timezone.now() - dt.timedelta(hours=1),
        )


def test_a_comment_left_sending_by_a_dead_worker_is_posted_once_by_the_sweep(opened, jira, settings):
    comment = _claimed_long_ago(opened)
    fresh = _claimed_long_ago(opened, body="A live worker is still posting this one.")
    with scopes_disabled():
        TicketComment.objects.filter(pk=fresh.pk).update(claimed_at=timezone.now())

    resume_due.delay()
    resume_due.delay()

    [posted] = jira.comments["OPS-1"]
    assert "The revoke decision was withdrawn." in posted
    assert f"(Thalian reference: thalian-comment-{comment.pk})" in posted
    sent = _comment(comment.pk)
    assert (sent.state, sent.attempts, sent.claimed_at) == (CommentState.SENT, 2, None)
    # It looked for an earlier copy first (the dead worker may have posted it), then posted.
    assert len(jira.calls("GET", COMMENT_POSTS)) == 1 and len(jira.calls("POST", COMMENT_POSTS)) == 1
    assert _comment(fresh.pk).state == CommentState.SENDING  # not stale: never taken from its worker


def test_a_comment_the_dead_worker_had_posted_is_found_by_its_reference_and_not_posted_again(opened, jira):
    comment = _claimed_long_ago(opened)
    jira.comments["OPS-1"].append(comment.text)  # it reached Jira; the worker died before recording it

    resume_due.delay()

    assert jira.comments["OPS-1"] == [comment.text]
    assert jira.calls("POST", COMMENT_POSTS) == []
    assert _comment(comment.pk).state == CommentState.SENT
    added = AuditEvent.objects.get(action="itsm.comment_added")
    assert added.details["found_by_reference"] is True


@pytest.mark.parametrize("kind", ["jira", "servicenow", "freshservice", "zendesk"])
@pytest.mark.parametrize("reached_the_vendor", [True, False])
def test_every_vendor_gets_the_abandoned_comment_exactly_once(
    kind, reached_the_vendor, fake_vendor, connect, revoked_item, decide
):
    fake = fake_vendor(kind)
    connect(fake)
    item = revoked_item()
    decide(item)
    comment = _claimed_long_ago(item)
    remote_id = _ticket(item).remote_id
    if reached_the_vendor:
        fake.comments[remote_id].append(comment.text)

    resume_due.delay()
    resume_due.delay()

    [posted] = fake.comments[remote_id]
    assert comment.reference in posted
    assert _comment(comment.pk).state == CommentState.SENT
    assert AuditEvent.objects.get(action="itsm.comment_added").details["found_by_reference"] is reached_the_vendor


def test_a_comment_waiting_out_its_backoff_is_not_sent_early(opened, jira):
    jira.fail_next(503, {"errorMessages": ["Service unavailable"]})
    with scopes_disabled():
        ticket = Ticket.objects.get(item=opened)
        comment = TicketComment.objects.create(organization_id=ticket.organization_id, ticket=ticket, body="Note")
        TicketComment.objects.filter(pk=comment.pk).update(created_at=timezone.now() - dt.timedelta(minutes=10))
    assert send_comment.delay(ticket.organization_id, comment.pk).get() == "retry"
    waiting = _comment(comment.pk)
    assert waiting.state == CommentState.PENDING and waiting.next_attempt_at > timezone.now()

    assert (ticket.organization_id, comment.pk) not in sweeps.comments_due()
    assert jira.comments["OPS-1"] == []


def test_after_the_last_attempt_the_comment_fails_visibly_and_retry_posts_it_once(
    opened, jira, member, client_for, api_for, django_capture_on_commit_callbacks
):
    comment = _claimed_long_ago(opened, attempts=COMMENT_MAX_ATTEMPTS)

    resume_due.delay()

    failed = _comment(comment.pk)
    assert failed.state == CommentState.FAILED
    assert f"did not finish after {COMMENT_MAX_ATTEMPTS} attempt(s)" in failed.error
    assert jira.comments["OPS-1"] == []
    assert AuditEvent.objects.filter(action="itsm.comment_failed").count() == 1
    admin = member(Role.ADMIN)
    page = client_for(admin).get(f"/o/acme/campaigns/{opened.campaign_id}/remediation/").content.decode()
    assert "Ticket comments not delivered" in page and "did not finish after" in page
    assert "Retry comments on OPS-1" in page
    queue = client_for(admin).get("/o/acme/remediation/").content.decode()
    assert "Comment not delivered" in queue
    api = api_for(admin)
    [row] = api.get(f"/api/v1/orgs/acme/itsm-tickets/{opened.pk}/comments/").json()
    assert (row["state"], row["reference"]) == ("failed", f"thalian-comment-{comment.pk}")
    [queued] = api.get("/api/v1/orgs/acme/remediation/").json()["results"]
    assert queued["ticket_comment_failed"] is True

    ticket = _ticket(opened)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin).post(f"/o/acme/remediation/tickets/{ticket.pk}/comments/retry/", follow=True)
    assert "1 comment on OPS-1 queued again" in response.content.decode()

    [posted] = jira.comments["OPS-1"]
    assert comment.reference in posted
    assert _comment(comment.pk).state == CommentState.SENT
    assert api.get("/api/v1/orgs/acme/remediation/").json()["results"][0]["ticket_comment_failed"] is False
    assert AuditEvent.objects.get(action="itsm.comments_retried").actor == admin.user
    again = api.post(f"/api/v1/orgs/acme/itsm-tickets/{opened.pk}/comments/retry/")
    assert again.status_code == 400
    assert again.json()["errors"]["non_field_errors"] == ["This ticket has no failed comment to retry."]


def test_retry_through_the_api(opened, jira, member, api_for, django_capture_on_commit_callbacks):
    comment = _claimed_long_ago(opened, attempts=COMMENT_MAX_ATTEMPTS)
    resume_due.delay()
    api = api_for(member(Role.ADMIN))

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/orgs/acme/itsm-tickets/{opened.pk}/comments/retry/")

    assert response.status_code == 202 and response.json() == {"retried": 1}
    assert len(jira.comments["OPS-1"]) == 1
    [row] = api.get(f"/api/v1/orgs/acme/itsm-tickets/{opened.pk}/comments/").json()
    assert (row["id"], row["state"], row["attempts"], row["error"]) == (comment.pk, "sent", 1, "")


def test_outsiders_get_404_and_roles_without_the_permission_403(opened, member, outsider, api_for, client_for):
    _claimed_long_ago(opened, attempts=COMMENT_MAX_ATTEMPTS)
    resume_due.delay()
    ticket = _ticket(opened)
    comments = f"/api/v1/orgs/acme/itsm-tickets/{opened.pk}/comments/"
    page_retry = f"/o/acme/remediation/tickets/{ticket.pk}/comments/retry/"

    assert api_for(outsider).get(f"/api/v1/orgs/globex/itsm-tickets/{opened.pk}/comments/").status_code == 404
    assert api_for(outsider).post(f"/api/v1/orgs/globex/itsm-tickets/{opened.pk}/comments/retry/").status_code == 404
    assert client_for(outsider).post(f"/o/globex/remediation/tickets/{ticket.pk}/comments/retry/").status_code == 404
    reviewer = member(Role.REVIEWER)
    assert api_for(reviewer).get(comments).status_code == 403
    viewer = member(Role.VIEWER)
    assert api_for(viewer).get(comments).status_code == 200
    assert api_for(viewer).post(comments + "retry/").status_code == 403
    assert client_for(viewer).post(page_retry).status_code == 403
    with scopes_disabled():
        assert TicketComment.objects.get().state == CommentState.FAILED


# Real workers on Redis and PostgreSQL ----------------------------------------------------------------------


def _pending_comment(item) -> TicketComment:
    with scopes_disabled():
        ticket = Ticket.objects.get(item=item)
        assert ticket.state == TicketState.OPEN
        return TicketComment.objects.create(
            organization_id=ticket.organization_id, ticket=ticket, body="The revoke decision was withdrawn."
        )


def _age_claim(comment) -> None:
    with scopes_disabled():
        TicketComment.objects.filter(pk=comment.pk).update(claimed_at=timezone.now() - dt.timedelta(hours=1))


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_after_claiming_a_comment_is_finished_by_the_sweep_exactly_once(
    opened, celery_worker_factory, jira, org, settings
):
    comment = _pending_comment(opened)
    with held_lock("LOCK TABLE itsm_itsmconnection IN ACCESS EXCLUSIVE MODE"):
        celery_worker_factory()
        send_comment.delay(org.pk, comment.pk)
        wait_for_lock_waiter()  # claimed; waiting to read the ticket's connection
        assert _comment(comment.pk).state == CommentState.SENDING
        settings.CLAIM_STALE_SECONDS = 1
        time.sleep(1.1)
        assert sweeps.comments_due() == []  # stale by the clock, but its worker is alive: never taken over
        assert _comment(comment.pk).state == CommentState.SENDING
        celery_worker_factory.kill()
    time.sleep(1)
    _age_claim(comment)
    assert jira.comments["OPS-1"] == []

    celery_worker_factory()
    resume_due.delay().get(timeout=60)
    wait_until(lambda: _comment(comment.pk).state == CommentState.SENT, timeout=60)
    resume_due.delay().get(timeout=60)
    time.sleep(1.5)
    [posted] = jira.comments["OPS-1"]
    assert comment.reference in posted and len(jira.calls("POST", COMMENT_POSTS)) == 1
    assert _comment(comment.pk).attempts == 2


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_while_jira_adds_the_comment_ends_with_one_comment(opened, celery_worker_factory, jira, org):
    """Jira adds the comment, then the worker waiting for the answer is killed: the sweep hands the claim back
    and the next worker finds the comment by its reference instead of posting it again."""
    comment = _pending_comment(opened)
    jira.answer_late_next(8)
    celery_worker_factory()
    send_comment.delay(org.pk, comment.pk)
    wait_until(lambda: jira.comments["OPS-1"], timeout=30)
    assert _comment(comment.pk).state == CommentState.SENDING
    celery_worker_factory.kill()
    time.sleep(1)
    _age_claim(comment)

    celery_worker_factory()
    resume_due.delay().get(timeout=60)
    wait_until(lambda: _comment(comment.pk).state == CommentState.SENT, timeout=60)
    assert len(jira.comments["OPS-1"]) == 1 and len(jira.calls("POST", COMMENT_POSTS)) == 1


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_on_the_last_attempt_fails_the_comment_visibly(
    opened, celery_worker_factory, jira, org, member, api_for
):
    comment = _pending_comment(opened)
    with scopes_disabled():
        TicketComment.objects.filter(pk=comment.pk).update(attempts=COMMENT_MAX_ATTEMPTS - 1)
    with held_lock("LOCK TABLE itsm_itsmconnection IN ACCESS EXCLUSIVE MODE"):
        celery_worker_factory()
        send_comment.delay(org.pk, comment.pk)
        wait_for_lock_waiter()
        celery_worker_factory.kill()
    time.sleep(1)
    _age_claim(comment)

    celery_worker_factory()
    resume_due.delay().get(timeout=60)

    failed = _comment(comment.pk)
    assert failed.state == CommentState.FAILED and "did not finish after" in failed.error
    assert jira.comments["OPS-1"] == []
    [row] = api_for(member(Role.ADMIN)).get(f"/api/v1/orgs/acme/itsm-tickets/{opened.pk}/comments/").json()
    assert row["state"] == "failed"
    with scope(org):
        assert AuditEvent.objects.filter(action="itsm.comment_failed", target_id=str(failed.ticket_id)).exists()
