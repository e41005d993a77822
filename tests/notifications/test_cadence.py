"""Reminder cadence, overdue notices and escalation under controlled time (campaign launched 2 Mar 2026
09:00 UTC, due 16 Mar; organization defaults: every 3 days, last reminder 2 days before due, escalate after 3
days overdue)."""

import datetime as dt

import pytest
import time_machine

from campaigns.models import ReviewItem
from notifications.models import CampaignNotificationPolicy, Event, Notification, NotificationSettings
from notifications.tasks import run_cadence
from thalian.models import AuditEvent
from thalian.tenancy import scope, scopes_disabled

pytestmark = pytest.mark.django_db(transaction=True)


def at(day: int, hour: int = 10):
    return time_machine.travel(dt.datetime(2026, 3, day, hour, 0, tzinfo=dt.UTC), tick=False)


def subjects(mailbox, address):
    return [m["subject"] for m in mailbox.to(address)]


def test_periodic_reminders_go_only_to_reviewers_with_pending_items(campaign, mailbox):
    with at(3):
        run_cadence()
    assert mailbox.messages == []

    with at(5):
        run_cadence()
        run_cadence()  # the beat firing twice
    assert subjects(mailbox, "rita@acme.test") == ["Reminder: 3 access items waiting in Q1 access review"]
    assert subjects(mailbox, "sam@acme.test") == ["Reminder: 1 access item waiting in Q1 access review"]
    assert mailbox.to("done@acme.test") == []

    with at(6):
        run_cadence()
    assert len(mailbox.to("rita@acme.test")) == 1

    with at(8, 11):
        run_cadence()
    assert len(mailbox.to("rita@acme.test")) == 2


def test_last_reminder_before_due_date_is_sent_once(campaign, mailbox):
    with at(14):
        run_cadence()
    with at(15):
        run_cadence()
    with at(16, 23):
        run_cadence()
    assert len(mailbox.to("rita@acme.test")) == 1
    assert "before 16 Mar 2026" in mailbox.to("rita@acme.test")[0]["text/plain"]


def test_campaign_override_changes_the_cadence(org, campaign, mailbox):
    with scopes_disabled():
        CampaignNotificationPolicy.objects.create(
            organization=org, campaign=campaign, reminder_every_days=1, reminder_days_before_due=0
        )
    for day in (3, 4, 5):
        with at(day):
            run_cadence()
    assert len(mailbox.to("rita@acme.test")) == 3


def test_reminders_can_be_switched_off(org, campaign, mailbox):
    with scopes_disabled():
        NotificationSettings.objects.create(
            organization=org, reminder_every_days=0, reminder_days_before_due=0
        )
    for day in (5, 8, 14):
        with at(day):
            run_cadence()
    assert mailbox.messages == []


def test_overdue_notices_once_to_reviewers_creator_and_channel(
    org, campaign, mailbox, slack, channels_configured, teams
):
    with at(17):
        run_cadence()
        run_cadence()
    assert subjects(mailbox, "rita@acme.test") == ["Overdue: Q1 access review"]
    assert subjects(mailbox, "sam@acme.test") == ["Overdue: Q1 access review"]
    assert subjects(mailbox, "admin@acme.test") == ["Campaign overdue: Q1 access review"]
    assert "4 access items are still pending" in mailbox.to("admin@acme.test")[0]["text/plain"]
    assert len(slack.to("C0REVIEWS")) == 1
    assert len(teams.cards) == 1
    assert mailbox.to("boss@acme.test") == []  # not yet escalated


def test_escalation_to_manager_after_days_overdue(org, campaign, people, mailbox):
    with at(18):
        run_cadence()
    assert mailbox.to("boss@acme.test") == []
    with at(19):
        run_cadence()
    with at(20):
        run_cadence()
    (mail,) = mailbox.to("boss@acme.test")
    assert mail["subject"] == "Escalated: overdue access reviews in Q1 access review"
    assert "rita@acme.test has 3 access items overdue" in mail["text/plain"]
    # sam has no manager in the inventory and no fallback is configured: nobody to escalate to.
    with scope(org):
        escalations = Notification.objects.filter(event=Event.ESCALATED)
        assert [n.recipient for n in escalations] == ["boss@acme.test"]
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="campaign.escalated", organization=org).count() == 1


def test_escalation_reassigns_pending_items_to_fallback_reviewer(org, campaign, people, mailbox):
    with scopes_disabled():
        NotificationSettings.objects.create(
            organization=org, escalation_reassign=True, fallback_reviewer=people["admin"]
        )
    with at(19):
        run_cadence()
        run_cadence()
    (mail,) = [m for m in mailbox.to("admin@acme.test") if m["subject"].startswith("Escalated")]
    assert "They are now assigned to you" in mail["text/plain"]
    with scope(org):
        sam_items = ReviewItem.objects.filter(campaign=campaign, reviewer=people["sam"])
        assert list(sam_items.values_list("decision", flat=True)) == ["approve"]  # decided item stays
        moved = ReviewItem.objects.get(campaign=campaign, reviewer=people["admin"])
        assert moved.decision == ""
        assert "Escalated from sam@acme.test" in moved.assignment_note
        # The manager is a viewer, who cannot review: rita's items stay and the manager is only told.
        assert ReviewItem.objects.filter(campaign=campaign, reviewer=people["rita"], decision="").count() == 3


def test_escalation_switched_off(org, campaign, mailbox):
    with scopes_disabled():
        NotificationSettings.objects.create(organization=org, escalate_after_days=0)
    with at(25):
        run_cadence()
    assert mailbox.to("boss@acme.test") == []


def test_cadence_ignores_campaigns_that_are_not_active(org, campaign, mailbox):
    with scopes_disabled():
        campaign.status = "completed"
        campaign.save()
    with at(17):
        run_cadence()
    assert mailbox.messages == []
