import datetime as dt

import pytest
import time_machine
from django.db import transaction

from notifications import hooks, reminders, services
from notifications.models import Event, Notification, NotificationPreference, NotificationSettings, Status
from notifications.tasks import retry_due_notifications
from thalian.tenancy import scope, scopes_disabled

pytestmark = pytest.mark.django_db(transaction=True)


def _log(org, **filters):
    with scope(org):
        return list(Notification.objects.filter(**filters).order_by("recipient", "channel"))


def test_review_assigned_reaches_each_reviewer_by_email_and_slack_dm(
    org, campaign, people, mailbox, slack, channels_configured
):
    hooks.notify_reviewers_assigned(campaign=campaign)

    rita = mailbox.to("rita@acme.test")
    assert len(rita) == 1
    assert rita[0]["subject"] == "Access review assigned: Q1 access review"
    assert "3 access items" in rita[0]["text/plain"]
    # "Review now" opens her own undecided items in this campaign.
    assert f"http://127.0.0.1:8000/o/acme/campaigns/{campaign.pk}/items/?reviewer=me&decision=pending" in rita[0]["text/plain"]
    assert "Start review" in rita[0]["text/html"]
    assert "2 access items" in mailbox.to("sam@acme.test")[0]["text/plain"]
    assert len(mailbox.to("done@acme.test")) == 1  # assigned even though already decided since
    assert mailbox.to("admin@acme.test") == []
    assert sorted(slack.lookups) == ["done@acme.test", "rita@acme.test", "sam@acme.test"]
    dm = slack.to("URITA")[0]
    assert dm["blocks"][1]["elements"][0]["url"].startswith("http")
    assert "3 access items" in dm["blocks"][0]["text"]["text"]
    rows = _log(org, event=Event.REVIEW_ASSIGNED)
    assert {(r.recipient, r.channel, r.status) for r in rows} == {
        (email, channel, Status.SENT)
        for email in ("rita@acme.test", "sam@acme.test", "done@acme.test")
        for channel in ("email", "slack")
    }
    assert all(r.attempts == 1 and r.sent_at for r in rows)


def test_assignment_hook_called_twice_sends_once(org, campaign, mailbox):
    hooks.notify_reviewers_assigned(campaign=campaign)
    hooks.notify_reviewers_assigned(campaign=campaign)
    assert len(mailbox.to("rita@acme.test")) == 1
    assert len(_log(org, event=Event.REVIEW_ASSIGNED, recipient="rita@acme.test")) == 1


def test_failing_slack_does_not_stop_email(org, campaign, mailbox, slack, channels_configured):
    slack.failure = (200, {"ok": False, "error": "invalid_auth"}, {})

    hooks.notify_reviewers_assigned(campaign=campaign)

    assert len(mailbox.to("rita@acme.test")) == 1
    slack_rows = _log(org, channel="slack")
    assert slack_rows and all(r.status == Status.FAILED for r in slack_rows)
    assert "invalid_auth" in slack_rows[0].error
    assert all(r.status == Status.SENT for r in _log(org, channel="email"))


def test_rate_limited_slack_retries_with_backoff_then_sends(
    org, campaign, mailbox, slack, channels_configured
):
    slack.failure = (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "120"})
    with time_machine.travel(dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.UTC), tick=False):
        hooks.notify_reviewers_assigned(campaign=campaign)
        (row,) = _log(org, channel="slack", recipient="rita@acme.test")
        assert row.status == Status.RETRYING
        assert row.attempts == 1
        assert row.next_attempt_at == dt.datetime(2026, 3, 3, 9, 2, tzinfo=dt.UTC)
        assert retry_due_notifications() == 0  # not due yet

    slack.failure = None
    with time_machine.travel(dt.datetime(2026, 3, 3, 9, 2, 30, tzinfo=dt.UTC), tick=False):
        assert retry_due_notifications() == 3
    (row,) = _log(org, channel="slack", recipient="rita@acme.test")
    assert row.status == Status.SENT
    assert row.attempts == 2
    assert len(slack.to("URITA")) == 1
    assert len(mailbox.to("rita@acme.test")) == 1


def test_transient_failures_give_up_after_max_attempts_and_show_the_error(
    org, campaign, slack, channels_configured, mailbox
):
    slack.failure = (503, {"ok": False, "error": "service_unavailable"}, {})
    start = dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        hooks.notify_reviewers_assigned(campaign=campaign)
        for _ in range(services.MAX_ATTEMPTS):
            traveller.shift(dt.timedelta(hours=2))
            retry_due_notifications()
    (row,) = _log(org, channel="slack", recipient="rita@acme.test")
    assert row.status == Status.FAILED
    assert row.attempts == services.MAX_ATTEMPTS
    assert "gave up" in row.error


def test_member_without_email_choice_still_gets_mandatory_assignment_email(org, campaign, people, mailbox):
    with scopes_disabled():
        NotificationPreference.objects.create(
            organization=org, membership=people["rita"], email=False, slack=False
        )
    hooks.notify_reviewers_assigned(campaign=campaign)
    assert len(mailbox.to("rita@acme.test")) == 1

    with scope(org):
        reminders.reminder_send(campaign=campaign, actor=people["admin"], reviewer=people["rita"])
    assert len(mailbox.to("rita@acme.test")) == 1  # reminders respect the choice
    assert _log(org, event=Event.REMINDER, recipient="rita@acme.test") == []


def test_teams_only_member_gets_adaptive_card(org, campaign, people, mailbox, teams, channels_configured):
    with scopes_disabled():
        NotificationPreference.objects.create(
            organization=org, membership=people["sam"], email=False, slack=False, teams=True
        )
    with scope(org):
        reminders.reminder_send(campaign=campaign, actor=people["admin"], reviewer=people["sam"])
    assert mailbox.to("sam@acme.test") == []
    (card,) = teams.cards
    content = card["attachments"][0]["content"]
    assert content["body"][0]["text"] == "Reminder: 1 access item waiting in Q1 access review"
    assert content["actions"][0]["type"] == "Action.OpenUrl"
    assert "sam@acme.test" in content["body"][2]["text"]


def test_campaign_completed_goes_to_creator_slack_channel_and_teams(
    org, campaign, people, mailbox, slack, teams, channels_configured
):
    hooks.notify_event(organization_id=org.pk, event=Event.CAMPAIGN_COMPLETED, campaign_id=campaign.pk)

    (mail,) = mailbox.messages
    assert mail["to"] == ["admin@acme.test"]
    assert mail["subject"] == "Campaign completed: Q1 access review"
    (channel_post,) = slack.to("C0REVIEWS")
    assert "Campaign completed" in channel_post["text"]
    assert (
        teams.cards[0]["attachments"][0]["content"]["body"][0]["text"]
        == "Campaign completed: Q1 access review"
    )
    assert "C0REVIEWS" in {r.recipient.split()[-1] for r in _log(org, channel="slack")}


def test_campaign_cancelled_tells_reviewers_with_pending_items(org, campaign, people, mailbox):
    with scopes_disabled():
        campaign.cancel_reason = "scope was wrong"
        campaign.save()
    hooks.notify_event(organization_id=org.pk, event=Event.CAMPAIGN_CANCELLED, campaign_id=campaign.pk)
    assert sorted(m["to"][0] for m in mailbox.messages) == [
        "admin@acme.test",
        "rita@acme.test",
        "sam@acme.test",
    ]
    assert "scope was wrong" in mailbox.to("rita@acme.test")[0]["text/plain"]


def test_ticket_failed_goes_to_admins(org, campaign, people, member, mailbox):
    super_admin = member("super_admin")
    details = {
        "ticket": "42",
        "application": "GitHub",
        "identity": "pat@corp.test",
        "error": "Jira answered 400",
    }
    hooks.notify_event(
        organization_id=org.pk, event=Event.TICKET_FAILED, campaign_id=campaign.pk, details=details
    )
    hooks.notify_event(
        organization_id=org.pk, event=Event.TICKET_FAILED, campaign_id=campaign.pk, details=details
    )
    recipients = sorted(m["to"][0] for m in mailbox.messages)
    assert recipients == sorted(["admin@acme.test", super_admin.user.email])
    assert "Jira answered 400" in mailbox.messages[0]["text/plain"]
    assert "Remediation ticket failed: GitHub" == mailbox.messages[0]["subject"]


def test_remediation_outcome_partial(org, campaign, people, mailbox):
    hooks.notify_event(
        organization_id=org.pk,
        event=Event.REMEDIATION_OUTCOME,
        campaign_id=campaign.pk,
        details={"outcome": "partial", "counts": {"verified": 3, "action required": 1}},
    )
    (mail,) = mailbox.messages
    assert mail["subject"] == "Remediation of Q1 access review: partially removed"
    assert "3 verified, 1 action required" in mail["text/plain"]


def test_unknown_event_is_refused(org, campaign):
    with pytest.raises(services.NotificationError, match="unknown notification event"):
        hooks.notify_event(organization_id=org.pk, event="party", campaign_id=campaign.pk)


def test_hook_via_on_commit_sends_only_after_commit(org, campaign, mailbox):
    with transaction.atomic():
        transaction.on_commit(lambda: hooks.notify_reviewers_assigned(campaign=campaign))
        assert mailbox.messages == []
    assert len(mailbox.messages) == 3


def test_secrets_are_encrypted_at_rest(org, channels_configured):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT slack_bot_token, teams_webhook_url FROM notifications_notificationsettings WHERE organization_id = %s",
            [org.pk],
        )
        token, webhook = cursor.fetchone()
    assert "xoxb" not in token
    assert "teams-hook" not in webhook
    with scopes_disabled():
        assert NotificationSettings.objects.get(organization=org).slack_bot_token.startswith("xoxb-")


def test_cancelling_through_the_campaign_service_notifies_via_hook(org, campaign, people, mailbox):
    from campaigns import services as campaign_services

    with scope(org):
        campaign_services.campaign_cancel(campaign=campaign, actor=people["admin"], reason="wrong scope")
    assert sorted(m["to"][0] for m in mailbox.messages) == [
        "admin@acme.test",
        "rita@acme.test",
        "sam@acme.test",
    ]
    assert mailbox.to("rita@acme.test")[0]["subject"] == "Campaign cancelled: Q1 access review"
    assert "wrong scope" in mailbox.to("rita@acme.test")[0]["text/plain"]


def test_reassignment_through_the_campaign_service_tells_the_new_reviewer(
    org, campaign, people, member, mailbox
):
    from campaigns import services as campaign_services

    analyst = member("security_analyst", email="ana@acme.test")
    with scope(org):
        campaign_services.items_reassign(
            campaign=campaign, actor=people["admin"], from_reviewer=people["rita"], to_reviewer=analyst
        )
    (mail,) = mailbox.to("ana@acme.test")
    assert mail["subject"] == "Access review assigned: Q1 access review"
    assert "3 access items" in mail["text/plain"]


def test_ticket_failed_hook_once_per_ticket_and_attempt(org, campaign, people, mailbox):
    hooks.notify_ticket_failed(
        ticket_id=7,
        campaign_id=campaign.pk,
        application="GitHub",
        identity="pat@corp.test",
        error="401 Unauthorized",
    )
    hooks.notify_ticket_failed(
        ticket_id=7,
        campaign_id=campaign.pk,
        application="GitHub",
        identity="pat@corp.test",
        error="401 Unauthorized",
    )
    assert len(mailbox.to("admin@acme.test")) == 1
    hooks.notify_ticket_failed(
        ticket_id=7,
        campaign_id=campaign.pk,
        application="GitHub",
        identity="pat@corp.test",
        error="401 again",
        attempt=2,
    )
    assert len(mailbox.to("admin@acme.test")) == 2


def test_remediation_outcome_hook_rejects_unknown_outcome(org, campaign):
    with pytest.raises(services.NotificationError, match="remediation outcome must be one of"):
        hooks.notify_remediation_outcome(campaign_id=campaign.pk, outcome="mostly")


def test_row_left_sending_by_a_dead_worker_is_sent_again_once_its_claim_is_stale(org, campaign, people, mailbox):
    start = dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.UTC)
    with scopes_disabled():
        row = Notification.objects.create(
            organization=org,
            campaign=campaign,
            event=Event.REMINDER,
            channel="email",
            recipient_membership=people["rita"],
            recipient="rita@acme.test",
            dedupe_key="stuck",
            title="t",
            body="b",
            action_url="http://x",
            action_label="Open",
            status=Status.SENDING,
            attempts=1,
            last_attempt_at=start,
        )
    with time_machine.travel(start + dt.timedelta(minutes=5), tick=False):
        retry_due_notifications()
    with scopes_disabled():
        row.refresh_from_db()
    assert row.status == Status.SENDING
    assert mailbox.messages == []
    with time_machine.travel(start + dt.timedelta(minutes=16), tick=False):
        retry_due_notifications()
        retry_due_notifications()
    with scopes_disabled():
        row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.SENT, 2)
    assert [m["to"] for m in mailbox.messages] == [["rita@acme.test"]]


def test_unreachable_mail_server_retries_and_slack_still_goes_out(
    org, campaign, slack, channels_configured, settings
):
    from .conftest import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    hooks.notify_reviewers_assigned(campaign=campaign)
    email_rows = _log(org, channel="email")
    assert email_rows and all(r.status == Status.RETRYING for r in email_rows)
    assert "Mail server unavailable" in email_rows[0].error
    assert len(slack.to("URITA")) == 1
