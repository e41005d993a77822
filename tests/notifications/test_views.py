import pytest
from django.template import Context, Template
from django.urls import reverse

from notifications import hooks
from notifications.models import Notification, NotificationPreference, NotificationSettings
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from ..factories import CampaignFactory

pytestmark = pytest.mark.django_db
# Tests that follow a notification to the SMTP server need real commits (deliveries run on commit).
delivered = pytest.mark.django_db(transaction=True)

SETTINGS_URL = "/o/acme/settings/notifications/"


def _settings_row(org):
    with scopes_disabled():
        return NotificationSettings.objects.filter(organization=org).first()


def test_settings_page_for_admin_never_shows_secrets(org, member, client_for, channels_configured):
    response = client_for(member(Role.ADMIN)).get(SETTINGS_URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Send test message" in page
    assert "Configured" in page
    assert "xoxb-" not in page
    assert "teams-hook" not in page
    assert channels_configured.slack_bot_token not in page


@pytest.mark.parametrize("role", [Role.VIEWER, Role.REVIEWER, Role.AUDITOR, Role.SECURITY_ANALYST])
def test_settings_page_forbidden_for_roles_without_settings_permission(org, member, client_for, role):
    assert client_for(member(role)).get(SETTINGS_URL).status_code == 403
    assert client_for(member(role)).post(SETTINGS_URL, {"reminder_every_days": 1}).status_code == 403


def test_settings_page_is_404_for_outsider(org, outsider, client_for):
    assert client_for(outsider).get(SETTINGS_URL).status_code == 404
    assert client_for(outsider).post("/o/acme/settings/notifications/test/email/").status_code == 404


def _form(**overrides):
    data = {
        "slack_bot_token": "",
        "slack_channel_id": "",
        "teams_webhook_url": "",
        "reminder_every_days": 3,
        "reminder_days_before_due": 2,
        "escalate_after_days": 3,
        "fallback_reviewer": "",
    }
    data.update(overrides)
    return data


def test_admin_saves_channels_encrypted_and_audited_without_the_secret(org, member, client_for, settings):
    settings.ALLOW_INSECURE_HTTP_INTEGRATIONS = False
    admin = member(Role.ADMIN)
    token = "xoxb-1234-5678-secretsecretsecret"
    webhook = "https://prod.workflows.example/workflows/abc/triggers/manual/paths/invoke?sig=topsecret"
    response = client_for(admin).post(
        SETTINGS_URL,
        _form(
            slack_bot_token=token,
            slack_channel_id="C0REVIEWS",
            teams_webhook_url=webhook,
            reminder_every_days=5,
            fallback_reviewer=admin.pk,
            escalation_reassign="on",
        ),
        follow=True,
    )
    assert response.status_code == 200
    assert "Notification settings saved." in response.content.decode()
    assert token not in response.content.decode() and "topsecret" not in response.content.decode()
    config = _settings_row(org)
    assert (config.slack_bot_token, config.teams_webhook_url) == (token, webhook)
    assert (config.reminder_every_days, config.fallback_reviewer_id, config.escalation_reassign) == (
        5,
        admin.pk,
        True,
    )
    with scopes_disabled():
        event = AuditEvent.objects.get(action="notifications.settings_updated", organization=org)
    assert "slack_bot_token (replaced)" in event.details["changed"]
    assert token not in str(event.details) and "topsecret" not in str(event.details)

    # Saving again with empty secret fields keeps them.
    client_for(admin).post(SETTINGS_URL, _form(slack_channel_id="C0REVIEWS", reminder_every_days=4))
    config = _settings_row(org)
    assert (config.slack_bot_token, config.teams_webhook_url, config.reminder_every_days) == (
        token,
        webhook,
        4,
    )

    client_for(admin).post(SETTINGS_URL, _form(clear_slack_bot_token="on"))
    assert _settings_row(org).slack_bot_token == ""


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("slack_bot_token", "not-a-token", "starts with xoxb-"),
        ("slack_channel_id", "#reviews", "channel ID"),
        ("teams_webhook_url", "http://insecure.example/hook", "https://"),
        ("reminder_every_days", "-1", "greater than or equal to 0"),
    ],
)
def test_invalid_settings_name_the_problem_and_change_nothing(
    org, member, client_for, settings, field, value, error
):
    settings.ALLOW_INSECURE_HTTP_INTEGRATIONS = False
    response = client_for(member(Role.ADMIN)).post(SETTINGS_URL, _form(**{field: value}))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert _settings_row(org) is None or _settings_row(org).reminder_every_days == 3
    assert _settings_row(org) is None or _settings_row(org).slack_bot_token == ""


def test_send_test_message_per_channel(org, member, client_for, mailbox, slack, teams, channels_configured):
    client = client_for(member(Role.ADMIN))
    response = client.post("/o/acme/settings/notifications/test/email/", follow=True)
    assert "E-mail test message sent." in response.content.decode()
    (mail,) = mailbox.to("admin@acme.test")
    assert mail["subject"] == "Thalian test message"
    assert "http://127.0.0.1:8000/o/acme/" in mail["text/plain"]

    response = client.post("/o/acme/settings/notifications/test/slack/", follow=True)
    assert "Slack test message sent." in response.content.decode()
    assert slack.to("C0REVIEWS")[0]["blocks"][0]["text"]["text"].startswith("*Thalian test message*")

    response = client.post("/o/acme/settings/notifications/test/teams/", follow=True)
    assert "Microsoft Teams test message sent." in response.content.decode()
    assert teams.cards[0]["attachments"][0]["content"]["body"][0]["text"] == "Thalian test message"


def test_failed_test_message_shows_the_error(org, member, client_for, teams, channels_configured):
    teams.status = 404
    response = client_for(member(Role.ADMIN)).post("/o/acme/settings/notifications/test/teams/", follow=True)
    assert "Microsoft Teams test message failed: Teams webhook answered HTTP 404" in response.content.decode()


def test_unconfigured_slack_test_explains(org, member, client_for):
    response = client_for(member(Role.ADMIN)).post("/o/acme/settings/notifications/test/slack/", follow=True)
    assert "Slack is not configured: the bot token is missing." in response.content.decode()


@delivered
def test_failed_notifications_are_listed_for_admins(
    org, campaign, member, client_for, mailbox, slack, channels_configured
):
    slack.failure = (200, {"ok": False, "error": "users_not_found"}, {})
    hooks.notify_reviewers_assigned(campaign=campaign)
    page = client_for(member(Role.ADMIN)).get(SETTINGS_URL).content.decode()
    assert "users_not_found" in page
    assert "rita@acme.test" in page


@delivered
def test_failed_notifications_of_a_campaign_are_flagged_on_its_page_for_the_admin_who_can_fix_them(
    org, campaign, member, client_for, mailbox, slack, channels_configured
):
    slack.failure = (200, {"ok": False, "error": "users_not_found"}, {})
    hooks.notify_reviewers_assigned(campaign=campaign)
    page = client_for(member(Role.ADMIN)).get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    assert "of this campaign could not be delivered" in page
    assert f'href="{SETTINGS_URL}"' in page and "users_not_found" in page
    viewer_page = client_for(member(Role.VIEWER)).get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    assert "An admin can fix the channel" in viewer_page and f'href="{SETTINGS_URL}"' not in viewer_page


def test_member_chooses_channels(org, member, client_for):
    reviewer = member(Role.REVIEWER)
    client = client_for(reviewer)
    page = client.get("/o/acme/settings/my-notifications/").content.decode()
    assert "E-mail is always sent for:" in page
    client.post("/o/acme/settings/my-notifications/", {"slack": "on"})
    with scopes_disabled():
        preference = NotificationPreference.objects.get(membership=reviewer)
    assert (preference.email, preference.slack, preference.teams) == (False, True, False)


def test_preferences_page_is_404_for_outsider(org, outsider, client_for):
    assert client_for(outsider).get("/o/acme/settings/my-notifications/").status_code == 404


def _remind_url(campaign):
    return reverse("campaign_remind", args=["acme", campaign.pk])


@delivered
def test_send_reminder_button_for_a_reviewer_row(org, campaign, people, client_for, mailbox):
    client = client_for(people["admin"])
    response = client.post(_remind_url(campaign), {"reviewer": people["rita"].pk}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Reminder sent" in response.content.decode()
    assert (
        mailbox.to("rita@acme.test")[0]["subject"] == "Reminder: 3 access items waiting in Q1 access review"
    )

    response = client.post(_remind_url(campaign), {"reviewer": people["rita"].pk}, HTTP_HX_REQUEST="true")
    assert "Already reminded today" in response.content.decode()
    assert len(mailbox.to("rita@acme.test")) == 1


@delivered
def test_send_reminder_button_for_an_application_row(org, campaign, people, client_for, mailbox):
    response = client_for(people["admin"]).post(
        _remind_url(campaign), {"application": "Salesforce"}, follow=True
    )
    assert response.status_code == 200
    assert "Reminder sent to sam@acme.test." in response.content.decode()
    assert [m["to"] for m in mailbox.messages] == [["sam@acme.test"]]


def test_send_reminder_errors_are_explained(org, campaign, people, client_for, mailbox):
    response = client_for(people["admin"]).post(
        _remind_url(campaign), {"reviewer": people["done"].pk}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 400
    assert "done@acme.test has no pending items in this campaign." in response.content.decode()
    assert_nothing_logged(org)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.REVIEWER, Role.AUDITOR])
def test_send_reminder_forbidden_without_manage_campaigns(
    org, campaign, people, member, client_for, mailbox, role
):
    response = client_for(member(role)).post(_remind_url(campaign), {"reviewer": people["rita"].pk})
    assert response.status_code == 403
    assert_nothing_logged(org)


def test_send_reminder_is_404_for_outsider_and_foreign_campaign(
    org, other_org, campaign, people, outsider, client_for, mailbox
):
    assert (
        client_for(outsider).post(_remind_url(campaign), {"reviewer": people["rita"].pk}).status_code == 404
    )
    foreign = CampaignFactory(organization=other_org, status="active")
    url = reverse("campaign_remind", args=["acme", foreign.pk])
    assert client_for(people["admin"]).post(url, {"reviewer": people["rita"].pk}).status_code == 404
    assert_nothing_logged(org)


@delivered
def test_campaign_notification_log_include(org, campaign, people, mailbox):
    hooks.notify_reviewers_assigned(campaign=campaign)
    with scope(org):
        html = Template("{% load notifications_tags %}{% notification_log campaign %}").render(
            Context({"campaign": campaign})
        )
    assert html.count("Review assigned") == 3
    assert "rita@acme.test" in html
    assert "Sent" in html


def assert_nothing_logged(org):
    with scopes_disabled():
        assert not Notification.objects.filter(organization=org).exists()
