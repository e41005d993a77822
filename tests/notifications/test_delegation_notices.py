"""The delegate is told when assignments come to them because of a standing delegation, at launch and on moves,
by e-mail (a real SMTP server on 127.0.0.1), Slack and Teams as they chose; once per move, also after the broker
was down."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns import launch as campaigns_launch
from campaigns.delegation import delegation_create
from campaigns.models import CampaignStatus, Delegation
from notifications.models import Event, Notification, NotificationPreference
from thalian import outbox
from thalian.models import OutboxEvent, OutboxState
from thalian.permissions import Role
from thalian.tasks import outbox_sweep
from thalian.tenancy import scope, scopes_disabled

from ..factories import (
    ApplicationFactory,
    CampaignFactory,
    EntitlementFactory,
    IdentityFactory,
    ReviewItemFactory,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pair(org, member):
    admin = member(Role.ADMIN)
    mara = member(Role.REVIEWER, email="mara@acme.test")
    dev = member(Role.REVIEWER, email="dev@acme.test")
    return {"admin": admin, "mara": mara, "dev": dev}


def active_with_items_of(org, reviewer, n=3, title="Q1 access review"):
    with scopes_disabled():
        campaign = CampaignFactory(organization=org, title=title, status=CampaignStatus.ACTIVE,
                                   due_date=timezone.localdate() + dt.timedelta(days=10))
        for _ in range(n):
            ReviewItemFactory(organization=org, campaign=campaign, reviewer=reviewer,
                              reviewer_email=reviewer.user.email)
    return campaign


def delegate_now(member, to="dev@acme.test", move=True):
    with scope(member.organization):
        return delegation_create(member=member, delegate=to, starts_on=timezone.localdate(), ends_on=None,
                                 move_open_items=move)


def test_moving_open_items_tells_the_delegate_by_their_channels(org, pair, mailbox, slack, teams,
                                                                 channels_configured):
    campaign = active_with_items_of(org, pair["mara"])
    with scopes_disabled():
        NotificationPreference.objects.create(organization=org, membership=pair["dev"], email=True, slack=True,
                                              teams=True)
    delegate_now(pair["mara"])
    (mail,) = mailbox.to("dev@acme.test")
    assert mail["subject"] == "Delegated to you: 3 access items in Q1 access review"
    assert "mara@acme.test delegated their access review to you" in mail["text/plain"]
    assert f"/campaigns/{campaign.pk}/items/?reviewer=me&decision=pending" in mail["text/plain"]
    assert len(slack.posts) == 1 and "Delegated to you" in str(slack.posts[0])
    assert len(teams.cards) == 1
    assert mailbox.to("mara@acme.test") == []
    with scope(org):
        assert not Notification.objects.filter(event=Event.REVIEW_ASSIGNED).exists()  # not told twice


def test_a_delegate_who_turned_email_off_hears_on_slack_only(org, pair, mailbox, slack, channels_configured):
    active_with_items_of(org, pair["mara"])
    with scopes_disabled():
        NotificationPreference.objects.create(organization=org, membership=pair["dev"], email=False, slack=True,
                                              teams=False)
    delegate_now(pair["mara"])
    assert mailbox.to("dev@acme.test") == []
    assert len(slack.posts) == 1


def test_a_launch_under_a_delegation_tells_the_delegate_once_even_when_dispatched_again(org, pair, mailbox):
    with scopes_disabled():
        app = ApplicationFactory(organization=org, name="GitHub", owner_email="mara@acme.test",
                                 last_synced_at=timezone.now())
        for n in range(2):
            EntitlementFactory(organization=org, application=app,
                               identity=IdentityFactory(organization=org, email=f"dev{n}@corp.test"))
        Delegation.objects.create(organization=org, member=pair["mara"], delegate=pair["dev"],
                                  starts_on=timezone.localdate())
        campaign = CampaignFactory(organization=org, title="Q3 access review", status=CampaignStatus.LAUNCHING,
                                   fallback_reviewer=pair["admin"], reviewer_strategy="application_owner",
                                   due_date=timezone.localdate() + dt.timedelta(days=14))
    with scope(org):
        campaigns_launch.campaign_snapshot(campaign_id=campaign.pk)
    subjects = sorted(m["subject"] for m in mailbox.to("dev@acme.test"))
    assert subjects == ["Access review assigned: Q3 access review",
                        "Delegated to you: 2 access items in Q3 access review"]
    with scopes_disabled():
        event = OutboxEvent.unscoped.get(name="campaigns.items_delegated")
        # A second dispatch of the same event (a redelivery) sends nothing new.
        OutboxEvent.unscoped.filter(pk=event.pk).update(state=OutboxState.PENDING, outcomes={}, claim_id=None,
                                                        claimed_at=None, handled_at=None)
    assert outbox.outbox_dispatch(event_id=event.pk) == "done"
    assert len([m for m in mailbox.to("dev@acme.test") if m["subject"].startswith("Delegated")]) == 1


def test_with_the_broker_down_the_notice_follows_from_the_sweep(org, pair, mailbox, broker_down):
    active_with_items_of(org, pair["mara"], n=2)
    with broker_down():
        delegate_now(pair["mara"])
    assert OutboxEvent.unscoped.get(name="campaigns.items_delegated").state == OutboxState.PENDING
    assert mailbox.to("dev@acme.test") == []
    outbox_sweep()
    (mail,) = mailbox.to("dev@acme.test")
    assert mail["subject"] == "Delegated to you: 2 access items in Q1 access review"


def test_each_delegation_move_is_its_own_notice(org, pair, member, mailbox):
    active_with_items_of(org, pair["mara"], n=1)
    active_with_items_of(org, pair["mara"], n=2, title="Q1 vendor review")
    delegate_now(pair["mara"])
    assert sorted(m["subject"] for m in mailbox.to("dev@acme.test")) == [
        "Delegated to you: 1 access item in Q1 access review",
        "Delegated to you: 2 access items in Q1 vendor review",
    ]


@pytest.fixture
def worker_mail(mailbox, monkeypatch, settings):
    """The real SMTP server, for worker processes too (set before they start)."""
    monkeypatch.setenv("EMAIL_URL", f"smtp://{settings.EMAIL_HOST}:{settings.EMAIL_PORT}")
    monkeypatch.setenv("SITE_URL", "http://thalian.test")
    return mailbox


@pytest.mark.celery_worker
def test_a_guest_delegating_with_the_broker_down_gets_the_new_guest_told_by_a_real_worker(
        org, member, worker_mail, broker_down, celery_worker_factory):
    """The hand-off waits in the outbox; a real worker on Redis dispatches it and e-mails the new guest their own
    link, built when the message is sent."""
    import re
    import time

    from campaigns.delegation import guest_delegate
    from campaigns.models import GuestReviewer

    from ..conftest import wait_until

    mailbox = worker_mail
    with scopes_disabled():
        campaign = CampaignFactory(organization=org, title="Q1 access review", status=CampaignStatus.ACTIVE,
                                   due_date=timezone.localdate() + dt.timedelta(days=10))
        gail = GuestReviewer.objects.create(organization=org, campaign=campaign, email="gail@partner.test")
        for _ in range(2):
            ReviewItemFactory(organization=org, campaign=campaign, reviewer=None, guest=gail,
                              reviewer_email=gail.email)
    with broker_down(), scope(org):
        guest_delegate(guest=gail, to="pat@partner.test", reason="Pat runs the vendor side")
    assert OutboxEvent.unscoped.get(name="campaigns.items_delegated").state == OutboxState.PENDING
    celery_worker_factory()
    outbox_sweep.delay().get(timeout=60)
    wait_until(lambda: mailbox.to("pat@partner.test") or None, timeout=60)
    outbox_sweep.delay().get(timeout=60)
    time.sleep(1.5)
    (mail,) = mailbox.to("pat@partner.test")
    assert mail["subject"] == "Delegated to you: 2 access items in Q1 access review"
    assert re.search(r"http://thalian\.test/guest/[^\s]+/", mail["text/plain"])
    with scopes_disabled():
        pat = GuestReviewer.objects.get(campaign=campaign, email="pat@partner.test")
        assert pat.link_sent_at is not None and pat.token_hash
        assert Notification.objects.get(recipient="pat@partner.test").action_url == "(personal review link)"
