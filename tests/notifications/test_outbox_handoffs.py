"""Launch, cancel and manual reminders with the broker down at commit time: the request answers at once, and
the notices go out exactly once when the broker is back (real workers on Redis, a real SMTP server)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import time_machine
from django.utils import timezone

from campaigns import launch as campaigns_launch
from campaigns.models import Campaign, CampaignStatus
from notifications.models import Event, Notification, Status
from notifications.tasks import retry_due_notifications
from thalian.models import OutboxEvent, OutboxState
from thalian.permissions import Role
from thalian.tasks import outbox_sweep
from thalian.tenancy import scope, scopes_disabled

from ..conftest import wait_until
from ..factories import ApplicationFactory, CampaignFactory, EntitlementFactory, IdentityFactory

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker_mail(mailbox, monkeypatch, settings):
    monkeypatch.setenv("EMAIL_URL", f"smtp://{settings.EMAIL_HOST}:{settings.EMAIL_PORT}")
    monkeypatch.setenv("SITE_URL", "http://thalian.test")
    return mailbox


def _sent(event: str, count: int):
    def check():
        with scopes_disabled():
            rows = list(Notification.objects.filter(event=event, channel="email"))
        return rows if len(rows) >= count and all(r.status == Status.SENT for r in rows) else None

    return check


def test_a_launch_committed_while_the_broker_is_down_tells_each_reviewer_once_it_is_back(
    worker_mail, celery_worker_factory, broker_down, org, member
):
    admin = member(Role.ADMIN)
    rita = member(Role.REVIEWER, email="rita@acme.test")
    with scopes_disabled():
        app = ApplicationFactory(organization=org, name="GitHub", owner_email="rita@acme.test",
                                 last_synced_at=timezone.now())
        for n in range(3):
            identity = IdentityFactory(organization=org, email=f"dev{n}@acme.test")
            EntitlementFactory(organization=org, application=app, identity=identity)
        campaign = CampaignFactory(
            organization=org, title="Q2 access review", status=CampaignStatus.LAUNCHING,
            fallback_reviewer=rita, created_by=admin.user, due_date=dt.date.today() + dt.timedelta(days=14),
            reviewer_strategy="fallback",
        )
    with broker_down(), scope(org):
        # The worker taking the snapshot loses the broker just as the snapshot commits.
        started = time.monotonic()
        assert campaigns_launch.campaign_snapshot(campaign_id=campaign.pk) == 3
        assert time.monotonic() - started < 3
    assert OutboxEvent.unscoped.get(name="campaigns.launched").state == OutboxState.PENDING
    assert worker_mail.messages == []

    celery_worker_factory()
    outbox_sweep.delay().get(timeout=60)
    wait_until(_sent(Event.REVIEW_ASSIGNED, 1), timeout=60)
    outbox_sweep.delay().get(timeout=60)
    time.sleep(1.5)
    assert [m["to"] for m in worker_mail.messages] == [["rita@acme.test"]]
    assert "Q2 access review" in worker_mail.messages[0]["subject"]


def test_cancel_and_remind_answer_at_once_with_the_broker_down_and_their_notices_follow(
    worker_mail, celery_worker_factory, broker_down, org, people, campaign, client_for, settings
):
    client = client_for(people["admin"])
    with broker_down():
        started = time.monotonic()
        reminded = client.post(f"/o/acme/campaigns/{campaign.pk}/remind/", {"reviewer": people["rita"].pk})
        remind_took = time.monotonic() - started
        started = time.monotonic()
        cancelled = client.post(f"/o/acme/campaigns/{campaign.pk}/cancel/", {"reason": "scope was wrong"})
        cancel_took = time.monotonic() - started
    assert reminded.status_code in (200, 302) and remind_took < 1.5
    assert cancelled.status_code in (200, 302) and cancel_took < 1.5
    assert Campaign.unscoped.get(pk=campaign.pk).status == CampaignStatus.CANCELLED
    with scopes_disabled():
        assert Notification.objects.get(event=Event.REMINDER).status == Status.QUEUED

    celery_worker_factory()
    outbox_sweep.delay().get(timeout=60)
    # The periodic retry tick hands over reminders that were never sent, once they are overdue.
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=settings.CLAIM_STALE_SECONDS + 60)):
        assert retry_due_notifications() == 1
    wait_until(_sent(Event.REMINDER, 1), timeout=60)
    wait_until(_sent(Event.CAMPAIGN_CANCELLED, 1), timeout=60)
    outbox_sweep.delay().get(timeout=60)
    time.sleep(1.5)
    subjects = sorted((m["to"][0], m["subject"]) for m in worker_mail.messages)
    reminders = [s for s in subjects if s[0] == "rita@acme.test" and "cancel" not in s[1].lower()]
    assert len(reminders) == 1
    cancellations = [s for s in subjects if "cancel" in s[1].lower()]
    assert len(cancellations) == len({to for to, _ in cancellations}) >= 1
