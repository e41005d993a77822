import pytest

from notifications.models import Event, Notification, NotificationSettings
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from ..factories import CampaignFactory

pytestmark = pytest.mark.django_db
# Tests that follow a notification to the SMTP server need real commits (deliveries run on commit).
delivered = pytest.mark.django_db(transaction=True)


def _url(campaign, slug="acme"):
    return f"/api/v1/orgs/{slug}/campaigns/{campaign.pk}/remind/"


@delivered
def test_remind_one_reviewer_by_email_then_again_the_same_day(org, campaign, people, api_for, mailbox):
    api = api_for(people["admin"])
    response = api.post(_url(campaign), {"reviewer": "rita@acme.test"}, format="json")
    assert response.status_code == 202
    assert response.json() == {"reminded": ["rita@acme.test"], "already_reminded_today": []}
    assert (
        mailbox.to("rita@acme.test")[0]["subject"] == "Reminder: 3 access items waiting in Q1 access review"
    )

    response = api.post(_url(campaign), {"reviewer": str(people["rita"].pk)}, format="json")
    assert response.status_code == 202
    assert response.json() == {"reminded": [], "already_reminded_today": ["rita@acme.test"]}
    assert len(mailbox.to("rita@acme.test")) == 1
    with scope(org):
        assert Notification.objects.filter(event=Event.REMINDER).count() == 1


@delivered
def test_remind_by_application_reaches_its_reviewers_with_pending_items(
    org, campaign, people, api_for, mailbox
):
    response = api_for(people["admin"]).post(_url(campaign), {"application": "GitHub"}, format="json")
    assert response.status_code == 202
    assert response.json()["reminded"] == ["rita@acme.test"]  # done@ decided all GitHub items
    assert [m["to"] for m in mailbox.messages] == [["rita@acme.test"]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Give either reviewer or application."),
        ({"reviewer": "rita@acme.test", "application": "GitHub"}, "Give either reviewer or application."),
        ({"reviewer": "nobody@acme.test"}, "No member 'nobody@acme.test'"),
        ({"reviewer": "done@acme.test"}, "done@acme.test has no pending items"),
        ({"application": "Jira"}, "No reviewer has pending items for application 'Jira'"),
    ],
)
def test_bad_remind_requests_explain_and_send_nothing(org, campaign, people, api_for, mailbox, body, message):
    response = api_for(people["admin"]).post(_url(campaign), body, format="json")
    assert response.status_code == 400
    assert message in str(response.json())
    assert_nothing_logged(org)


def test_remind_refused_for_campaign_that_is_not_active(org, campaign, people, api_for, mailbox):
    with scopes_disabled():
        campaign.status = "cancelled"
        campaign.save()
    response = api_for(people["admin"]).post(_url(campaign), {"reviewer": "rita@acme.test"}, format="json")
    assert response.status_code == 400
    assert "only be sent for active campaigns" in response.json()["detail"]
    assert_nothing_logged(org)


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.VIEWER, Role.AUDITOR])
def test_remind_forbidden_for_roles_without_manage_campaigns(org, campaign, member, api_for, mailbox, role):
    response = api_for(member(role)).post(_url(campaign), {"reviewer": "rita@acme.test"}, format="json")
    assert response.status_code == 403
    assert_nothing_logged(org)


def test_remind_is_404_for_outsiders_and_foreign_or_malformed_ids(
    org, other_org, campaign, people, outsider, api_for, mailbox
):
    assert (
        api_for(outsider).post(_url(campaign), {"reviewer": "rita@acme.test"}, format="json").status_code
        == 404
    )
    # The outsider's token used against its own organization still cannot reach acme's campaign.
    assert (
        api_for(outsider)
        .post(_url(campaign, slug="globex"), {"reviewer": "rita@acme.test"}, format="json")
        .status_code
        == 404
    )
    foreign = CampaignFactory(organization=other_org, status="active")
    assert (
        api_for(people["admin"]).post(_url(foreign), {"reviewer": "x@y.z"}, format="json").status_code == 404
    )
    response = api_for(people["admin"]).post(
        "/api/v1/orgs/acme/campaigns/not-a-uuid/remind/", {"reviewer": "x@y.z"}, format="json"
    )
    assert response.status_code == 404
    assert_nothing_logged(org)


SETTINGS_API = "/api/v1/orgs/acme/notification-settings/"


def test_settings_api_accepts_secrets_but_never_returns_them(org, member, api_for, settings):
    settings.ALLOW_INSECURE_HTTP_INTEGRATIONS = False
    api = api_for(member(Role.ADMIN))
    token = "xoxb-9999-8888-verysecretvalue"
    webhook = "https://prod.workflows.example/hook?sig=topsecret"
    response = api.patch(
        SETTINGS_API,
        {
            "slack_bot_token": token,
            "teams_webhook_url": webhook,
            "slack_channel_id": "C0REVIEWS",
            "fallback_reviewer": "admin@acme.test",
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["slack_configured"] is True and body["teams_configured"] is True
    assert body["fallback_reviewer"] == "admin@acme.test"
    assert token not in response.content.decode() and "topsecret" not in response.content.decode()
    response = api.get(SETTINGS_API)
    assert "slack_bot_token" not in response.json() and "teams_webhook_url" not in response.json()
    assert token not in response.content.decode() and "topsecret" not in response.content.decode()


def test_settings_api_rejects_bad_values_and_changes_nothing(org, member, api_for, settings):
    settings.ALLOW_INSECURE_HTTP_INTEGRATIONS = False
    api = api_for(member(Role.ADMIN))
    response = api.patch(
        SETTINGS_API, {"teams_webhook_url": "ftp://x", "reminder_every_days": 2}, format="json"
    )
    assert response.status_code == 400
    assert "teams_webhook_url" in response.json()["errors"]
    response = api.patch(SETTINGS_API, {"fallback_reviewer": "ghost@acme.test"}, format="json")
    assert response.status_code == 400
    with scopes_disabled():
        config = NotificationSettings.objects.filter(organization=org).first()
    assert config is None or (config.reminder_every_days == 3 and config.teams_webhook_url == "")


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.VIEWER, Role.SECURITY_ANALYST, Role.AUDITOR])
def test_settings_api_forbidden_without_manage_settings(org, member, api_for, role):
    assert api_for(member(role)).get(SETTINGS_API).status_code == 403
    assert (
        api_for(member(role)).patch(SETTINGS_API, {"reminder_every_days": 1}, format="json").status_code
        == 403
    )


def test_settings_api_404_for_outsider(org, outsider, api_for):
    assert api_for(outsider).get(SETTINGS_API).status_code == 404


def assert_nothing_logged(org):
    with scopes_disabled():
        assert not Notification.objects.filter(organization=org).exists()


# A member's own notification preferences -----------------------------------------------------------------

PREFS = "/api/v1/orgs/acme/me/notification-preferences/"


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.VIEWER, Role.ADMIN])
def test_a_member_reads_and_changes_their_own_channels(org, member, api_for, role):
    from notifications.models import NotificationPreference

    me = member(role)
    api = api_for(me)
    body = api.get(PREFS).json()
    assert (body["email"], body["slack"], body["teams"]) == (True, True, False)
    assert "review_assigned" in body["mandatory_email_events"]
    changed = api.patch(PREFS, {"slack": False, "teams": True}, format="json")
    assert changed.status_code == 200
    assert (changed.json()["email"], changed.json()["slack"], changed.json()["teams"]) == (True, False, True)
    with scopes_disabled():
        preference = NotificationPreference.objects.get(membership=me)
    assert (preference.email, preference.slack, preference.teams) == (True, False, True)
    # Someone else's choices are untouched and unseen.
    other = member(Role.VIEWER, email="other@acme.test")
    assert api_for(other).get(PREFS).json()["teams"] is False


def test_bad_preference_input_is_400_and_changes_nothing(org, member, api_for):
    from notifications.models import NotificationPreference

    api = api_for(member(Role.REVIEWER))
    assert api.patch(PREFS, {"pager": True}, format="json").json()["errors"] == {
        "pager": ["not a channel; use email, slack or teams"]
    }
    assert "errors" in api.patch(PREFS, {"slack": "maybe"}, format="json").json()
    with scopes_disabled():
        assert not NotificationPreference.objects.exists()


def test_preferences_api_is_404_for_outsiders(org, outsider, api_for):
    api = api_for(outsider)
    assert api.get(PREFS).status_code == 404
    assert api.patch(PREFS, {"slack": False}, format="json").status_code == 404
def test_a_reminder_whose_enqueue_was_lost_is_sent_by_the_next_press_and_by_the_sweep(
    org, campaign, people, api_for, django_capture_on_commit_callbacks, settings
):
    """The broker was down when the reminder committed: the row waits `queued`. Once it is older than the
    claim threshold, the retry sweep sends it and pressing the button again the same day sends it too (the
    de-duplication key does not refuse it)."""
    import datetime as dt

    from django.utils import timezone

    from notifications.delivery import notifications_due_for_retry

    api = api_for(people["admin"])
    with django_capture_on_commit_callbacks(execute=False):  # the enqueue after commit never happens
        api.post(_url(campaign), {"reviewer": "rita@acme.test"}, format="json")
    with scope(org):
        lost = Notification.objects.get(event=Event.REMINDER)
    assert lost.status == "queued"
    settings.CLAIM_STALE_SECONDS = 60
    assert (org.pk, str(lost.pk)) not in notifications_due_for_retry()
    later = timezone.now() + dt.timedelta(seconds=61)
    assert (org.pk, str(lost.pk)) in notifications_due_for_retry(now=later)

    fresh = api.post(_url(campaign), {"reviewer": "rita@acme.test"}, format="json")
    assert fresh.json() == {"reminded": [], "already_reminded_today": ["rita@acme.test"]}  # on its way
    with scope(org):
        Notification.objects.filter(pk=lost.pk).update(created_at=timezone.now() - dt.timedelta(seconds=61))
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(_url(campaign), {"reviewer": "rita@acme.test"}, format="json")

    assert response.json() == {"reminded": ["rita@acme.test"], "already_reminded_today": []}
    with scope(org):
        assert list(Notification.objects.filter(event=Event.REMINDER).values_list("status", flat=True)) == ["sent"]
    again = api.post(_url(campaign), {"reviewer": "rita@acme.test"}, format="json")
    assert again.json() == {"reminded": [], "already_reminded_today": ["rita@acme.test"]}
