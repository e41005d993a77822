"""Exactly-once delivery with two real Celery workers on Redis and a real SMTP server."""

import datetime as dt
import time

import pytest
from django.utils import timezone

from notifications.models import Event, Notification, Status
from notifications.tasks import campaign_cadence, deliver_notification, run_cadence
from thalian.tenancy import scopes_disabled

from ..conftest import wait_until


@pytest.fixture
def worker_mail(mailbox, monkeypatch, settings):
    """Point the worker processes (started after this fixture) at the test SMTP server."""
    monkeypatch.setenv("EMAIL_URL", f"smtp://{settings.EMAIL_HOST}:{settings.EMAIL_PORT}")
    monkeypatch.setenv("SITE_URL", "http://thalian.test")
    return mailbox


@pytest.mark.celery_worker
def test_beat_fired_twice_on_two_workers_sends_each_reminder_once(
    worker_mail, celery_worker_factory, org, campaign
):
    with scopes_disabled():
        # Launched three days and an hour ago: the first periodic reminder is due now.
        campaign.launched_at = timezone.now() - dt.timedelta(days=3, hours=1)
        campaign.due_date = timezone.localdate() + dt.timedelta(days=10)
        campaign.save()
    celery_worker_factory(concurrency=2, count=2)

    results = [
        run_cadence.delay(),
        run_cadence.delay(),
        campaign_cadence.delay(org.pk, str(campaign.pk)),
        campaign_cadence.delay(org.pk, str(campaign.pk)),
    ]
    for result in results:
        result.get(timeout=60)

    def delivered():
        with scopes_disabled():
            rows = list(Notification.objects.filter(event=Event.CAMPAIGN_REMINDER))
        return rows if rows and all(r.status == Status.SENT for r in rows) else None

    rows = wait_until(delivered, timeout=60)
    time.sleep(2)  # let any duplicate that slipped through arrive
    assert sorted(m["to"][0] for m in worker_mail.messages) == ["rita@acme.test", "sam@acme.test"]
    assert sorted(r.recipient for r in rows) == ["rita@acme.test", "sam@acme.test"]
    assert all(r.attempts == 1 for r in rows)
    assert "http://thalian.test/o/acme/" in worker_mail.messages[0]["text/plain"]

    # A redelivered or retried task for a row already sent is a no-op.
    assert deliver_notification.delay(org.pk, str(rows[0].pk)).get(timeout=30) == "skipped"
    time.sleep(1)
    assert len(worker_mail.messages) == 2
