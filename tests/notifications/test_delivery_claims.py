"""Notifications claimed as `sending` by a worker that died: the sweep sends them again with the usual backoff,
exactly once (an e-mail with the same Message-ID), fails them visibly after the last attempt, and Retry works
in the browser and through the API."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from notifications import delivery, services
from notifications.models import Notification, NotificationSettings, Status
from notifications.tasks import deliver_notification, retry_due_notifications
from tests.claims_support import held_lock, wait_for_lock_waiter
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from ..conftest import wait_until

pytestmark = pytest.mark.django_db

SETTINGS_LOCK = "LOCK TABLE notifications_notificationsettings IN ACCESS EXCLUSIVE MODE"


def _notification(org, membership, *, channel="email", campaign=None, key="", **fields) -> Notification:
    with scopes_disabled():
        NotificationSettings.objects.get_or_create(organization=org)
        return Notification.objects.create(
            organization=org, campaign=campaign, event="review_assigned", channel=channel,
            recipient_membership=membership, recipient=membership.user.email,
            dedupe_key=f"test:{channel}:{membership.pk}:{key}", title="Access review assigned",
            body="You have 3 items to review.", action_url="https://thalian.example.com/o/acme/",
            action_label="Open my reviews", **fields,
        )


def _reload(notification) -> Notification:
    with scopes_disabled():
        return Notification.objects.get(pk=notification.pk)


def _claimed_long_ago(org, membership, *, attempts=1, **fields) -> Notification:
    """A delivery a worker claimed an hour ago and never finished (it died after the claim)."""
    return _notification(
        org, membership, status=Status.SENDING, attempts=attempts,
        last_attempt_at=timezone.now() - dt.timedelta(hours=1), **fields,
    )


def test_an_email_left_sending_by_a_dead_worker_is_sent_once_with_the_message_id_it_was_given(
    mailbox, org, people
):
    stale = _claimed_long_ago(org, people["rita"], provider_reference="<fixed.1@thalian.test>")
    fresh = _notification(
        org, people["sam"], status=Status.SENDING, attempts=1, last_attempt_at=timezone.now(), key="fresh"
    )

    retry_due_notifications()
    retry_due_notifications()

    [message] = mailbox.messages
    assert message["to"] == ["rita@acme.test"] and message["message_id"] == "<fixed.1@thalian.test>"
    sent = _reload(stale)
    assert (sent.status, sent.attempts, sent.provider_reference) == (Status.SENT, 2, "<fixed.1@thalian.test>")
    assert _reload(fresh).status == Status.SENDING  # not stale: never taken from its worker


def test_an_interrupted_delivery_waits_out_its_backoff_counted_from_the_attempt(mailbox, org, people, settings):
    settings.CLAIM_STALE_SECONDS = 60
    notification = _notification(
        org, people["rita"], status=Status.SENDING, attempts=3,
        last_attempt_at=timezone.now() - dt.timedelta(seconds=90),
    )

    assert delivery.notifications_resume_interrupted() == {"resent": 1, "failed": 0}

    waiting = _reload(notification)
    assert waiting.status == Status.RETRYING
    assert waiting.next_attempt_at == notification.last_attempt_at + delivery.retry_delay(3)  # 4 min after it
    assert "interrupted" in waiting.error
    assert retry_due_notifications() == 0 and mailbox.messages == []


def test_every_attempt_of_an_email_carries_the_same_message_id(mailbox, org, people):
    notification = _notification(org, people["rita"])
    mailbox.refuse_with = "451 4.7.1 Try again later"

    assert deliver_notification(org.pk, str(notification.pk)) == Status.RETRYING
    first_id = _reload(notification).provider_reference
    assert first_id.startswith("<") and mailbox.messages == []
    with scopes_disabled():
        Notification.objects.filter(pk=notification.pk).update(next_attempt_at=timezone.now())
    mailbox.refuse_with = ""

    assert deliver_notification(org.pk, str(notification.pk)) == Status.SENT
    assert [m["message_id"] for m in mailbox.messages] == [first_id]


def test_after_the_last_attempt_the_notification_is_undelivered_on_the_pages_and_api_and_retry_sends_it(
    mailbox, org, people, campaign, client_for, api_for, django_capture_on_commit_callbacks
):
    notification = _claimed_long_ago(org, people["rita"], attempts=services.MAX_ATTEMPTS, campaign=campaign)

    retry_due_notifications()

    failed = _reload(notification)
    assert failed.status == Status.FAILED and mailbox.messages == []
    assert f"interrupted on attempt {services.MAX_ATTEMPTS} of {services.MAX_ATTEMPTS}" in failed.error
    admin = client_for(people["admin"])
    settings_page = admin.get("/o/acme/settings/notifications/").content.decode()
    assert "may or may not have arrived" in settings_page
    assert "Retry Review assigned to rita@acme.test by E-mail" in settings_page
    campaign_page = admin.get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    assert "1 notification of this campaign could not be delivered" in campaign_page
    api = api_for(people["admin"])
    [row] = api.get("/api/v1/orgs/acme/notifications/failed/").json()["results"]
    assert (row["id"], row["status"], row["campaign"]) == (str(notification.pk), "failed", str(campaign.pk))

    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post("/o/acme/settings/notifications/retry/", {"notification": str(notification.pk)}, follow=True)

    assert "1 notification queued to be sent again." in response.content.decode()
    [message] = mailbox.messages
    assert message["to"] == ["rita@acme.test"]
    delivered = _reload(notification)
    assert (delivered.status, delivered.attempts, delivered.error) == (Status.SENT, 1, "")
    assert api.get("/api/v1/orgs/acme/notifications/failed/").json()["results"] == []
    retried = AuditEvent.objects.get(action="notifications.retried")
    assert retried.actor == people["admin"].user and retried.details["count"] == 1


def test_retry_through_the_api_all_or_by_id(mailbox, org, people, api_for, django_capture_on_commit_callbacks):
    first = _notification(org, people["rita"], status=Status.FAILED, attempts=6, error="Mail server refused")
    second = _notification(org, people["sam"], status=Status.FAILED, attempts=6, error="Mail server refused")
    api = api_for(people["admin"])

    bad = api.post("/api/v1/orgs/acme/notifications/retry/", {"notification_ids": ["nope"]}, format="json")
    assert bad.status_code == 400 and "notification_ids" in bad.json()["errors"]
    unknown = api.post(
        "/api/v1/orgs/acme/notifications/retry/",
        {"notification_ids": ["00000000-0000-0000-0000-000000000000"]}, format="json",
    )
    assert unknown.status_code == 400
    assert unknown.json()["errors"]["notification_ids"] == ["There is no failed notification to retry."]
    assert _reload(first).status == Status.FAILED

    with django_capture_on_commit_callbacks(execute=True):
        one = api.post("/api/v1/orgs/acme/notifications/retry/", {"notification_ids": [str(first.pk)]}, format="json")
    assert one.status_code == 202 and one.json() == {"retried": 1}
    assert [m["to"] for m in mailbox.messages] == [["rita@acme.test"]]
    with django_capture_on_commit_callbacks(execute=True):
        rest = api.post("/api/v1/orgs/acme/notifications/retry/", {}, format="json")
    assert rest.json() == {"retried": 1}
    assert sorted(m["to"][0] for m in mailbox.messages) == ["rita@acme.test", "sam@acme.test"]
    assert _reload(second).status == Status.SENT


def test_outsiders_get_404_and_roles_without_settings_rights_403(org, people, member, outsider, api_for, client_for):
    notification = _notification(org, people["rita"], status=Status.FAILED, attempts=6, error="refused")

    assert api_for(outsider).get("/api/v1/orgs/globex/notifications/failed/").json()["results"] == []
    assert api_for(outsider).get("/api/v1/orgs/acme/notifications/failed/").status_code == 404
    assert api_for(outsider).post("/api/v1/orgs/acme/notifications/retry/", {}, format="json").status_code == 404
    assert client_for(outsider).post("/o/acme/settings/notifications/retry/").status_code == 404
    # Through their own organization, acme's notification is not theirs to retry.
    other = api_for(outsider).post(
        "/api/v1/orgs/globex/notifications/retry/", {"notification_ids": [str(notification.pk)]}, format="json"
    )
    assert other.status_code == 400
    analyst = member(Role.SECURITY_ANALYST)
    assert api_for(analyst).get("/api/v1/orgs/acme/notifications/failed/").status_code == 403
    assert api_for(analyst).post("/api/v1/orgs/acme/notifications/retry/", {}, format="json").status_code == 403
    assert client_for(analyst).post("/o/acme/settings/notifications/retry/").status_code == 403
    assert _reload(notification).status == Status.FAILED


def test_the_failed_list_costs_the_same_queries_for_one_row_or_twenty(
    org, people, api_for, django_assert_max_num_queries
):
    api = api_for(people["admin"])
    _notification(org, people["rita"], status=Status.FAILED, key="0")
    with django_assert_max_num_queries(15) as one:
        assert len(api.get("/api/v1/orgs/acme/notifications/failed/").json()["results"]) == 1
    for n in range(1, 20):
        _notification(org, people["rita"], status=Status.FAILED, key=str(n))
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert len(api.get("/api/v1/orgs/acme/notifications/failed/").json()["results"]) == 20


# Real workers on Redis and PostgreSQL ----------------------------------------------------------------------


@pytest.fixture
def worker_mail(mailbox, monkeypatch, settings):
    monkeypatch.setenv("EMAIL_URL", f"smtp://{settings.EMAIL_HOST}:{settings.EMAIL_PORT}")
    monkeypatch.setenv("SITE_URL", "http://thalian.test")
    return mailbox


@pytest.fixture
def worker_slack(channels_configured, slack, monkeypatch, settings):
    """Point the worker processes (started after this fixture) at the Slack fake."""
    monkeypatch.setenv("SLACK_API_URL", settings.SLACK_API_URL)
    return slack


def _age_claim(notification) -> None:
    with scopes_disabled():
        Notification.objects.filter(pk=notification.pk).update(last_attempt_at=timezone.now() - dt.timedelta(hours=1))


def _killed_after_claiming(start_worker, notification, settings) -> Notification:
    """Let a worker claim the delivery, hold it before it sends anything, and kill it there."""
    with held_lock(SETTINGS_LOCK):
        start_worker()
        deliver_notification.delay(notification.organization_id, str(notification.pk))
        wait_for_lock_waiter()  # claimed; waiting to read the channel settings
        claimed = _reload(notification)
        assert claimed.status == Status.SENDING
        settings.CLAIM_STALE_SECONDS = 1
        time.sleep(1.1)
        # Stale by the clock, but its worker holds the claim: never taken over.
        assert delivery.notifications_resume_interrupted() == {"resent": 0, "failed": 0}
        start_worker.kill()
    time.sleep(1)
    _age_claim(notification)
    return claimed


def _sweep_with_a_new_worker_until_sent(start_worker, notification) -> None:
    """Start a worker, let beat's sweep run until the notification is sent, then twice more (beat keeps firing)."""
    start_worker()
    retry_due_notifications.delay().get(timeout=60)
    wait_until(lambda: _reload(notification).status == Status.SENT, timeout=60)
    retry_due_notifications.delay().get(timeout=60)
    time.sleep(1.5)


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_after_claiming_an_email_is_finished_by_the_sweep_exactly_once(
    worker_mail, celery_worker_factory, org, people, settings
):
    notification = _notification(org, people["rita"])
    claimed = _killed_after_claiming(celery_worker_factory, notification, settings)
    assert worker_mail.messages == [] and claimed.provider_reference

    _sweep_with_a_new_worker_until_sent(celery_worker_factory, notification)

    [message] = worker_mail.messages
    assert message["to"] == ["rita@acme.test"] and message["message_id"] == claimed.provider_reference
    assert _reload(notification).attempts == 2


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_after_claiming_a_slack_message_is_finished_by_the_sweep_exactly_once(
    worker_slack, celery_worker_factory, org, people, settings
):
    slack = worker_slack
    notification = _notification(org, people["rita"], channel="slack")
    _killed_after_claiming(celery_worker_factory, notification, settings)
    assert slack.posts == []

    _sweep_with_a_new_worker_until_sent(celery_worker_factory, notification)

    [post] = slack.posts
    assert post["channel"] == "URITA" and "Access review assigned" in post["text"]


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_while_the_mail_server_accepts_the_email_resends_it_with_the_same_message_id(
    worker_mail, celery_worker_factory, org, people
):
    """At least once: the server had the message when the worker died, so a second copy goes out; it carries
    the same Message-ID, which mail systems that de-duplicate (and people reading it) recognise."""
    notification = _notification(org, people["rita"])
    worker_mail.answer_late = 20
    celery_worker_factory()
    deliver_notification.delay(org.pk, str(notification.pk))
    wait_until(lambda: worker_mail.messages, timeout=30)
    celery_worker_factory.kill()
    worker_mail.answer_late = 0
    time.sleep(1)
    _age_claim(notification)

    celery_worker_factory()
    retry_due_notifications.delay().get(timeout=60)
    wait_until(lambda: _reload(notification).status == Status.SENT, timeout=60)

    first, second = worker_mail.messages
    assert first["message_id"] == second["message_id"] == _reload(notification).provider_reference


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_on_the_last_attempt_shows_the_notification_undelivered_and_retry_sends_it(
    worker_mail, celery_worker_factory, org, people, settings, api_for
):
    notification = _notification(org, people["rita"], attempts=services.MAX_ATTEMPTS - 1)
    _killed_after_claiming(celery_worker_factory, notification, settings)

    celery_worker_factory()
    retry_due_notifications.delay().get(timeout=60)

    assert _reload(notification).status == Status.FAILED
    api = api_for(people["admin"])
    [row] = api.get("/api/v1/orgs/acme/notifications/failed/").json()["results"]
    assert row["id"] == str(notification.pk) and "may or may not have arrived" in row["error"]
    assert worker_mail.messages == []

    assert api.post("/api/v1/orgs/acme/notifications/retry/", {}, format="json").json() == {"retried": 1}
    wait_until(lambda: _reload(notification).status == Status.SENT, timeout=60)
    time.sleep(1)
    assert [m["to"] for m in worker_mail.messages] == [["rita@acme.test"]]
