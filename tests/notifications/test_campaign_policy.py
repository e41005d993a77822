"""Per-campaign reminder settings, the campaign notification log (page and API), and query counts."""

import pytest
from django.template import Context, Template

from notifications import reminders, services
from notifications.models import CampaignNotificationPolicy, Event, Notification
from thalian.permissions import Role
from thalian.tenancy import ScopeError, scope, scopes_disabled

pytestmark = pytest.mark.django_db


def _page(campaign):
    return f"/o/acme/campaigns/{campaign.pk}/notifications/"


def _api(campaign, tail="notification-policy/"):
    return f"/api/v1/orgs/acme/campaigns/{campaign.pk}/{tail}"


def _log_rows(org, campaign, people, count):
    with scopes_disabled():
        Notification.objects.bulk_create(
            Notification(
                organization=org,
                campaign=campaign,
                event=Event.CAMPAIGN_REMINDER,
                channel="email",
                recipient_membership=people["rita"],
                recipient="rita@acme.test",
                dedupe_key=f"k{i}",
                title="Reminder",
                body="b",
                action_url="http://x",
                action_label="Open",
                status="sent",
                attempts=1,
            )
            for i in range(count)
        )


def test_manager_overrides_cadence_for_one_campaign(org, campaign, people, client_for):
    client = client_for(people["admin"])
    page = client.get(_page(campaign)).content.decode()
    assert "a reminder every 3 days" in page
    response = client.post(
        _page(campaign),
        {
            "reminder_every_days": "1",
            "reminder_days_before_due": "",
            "escalate_after_days": "0",
            "escalation_reassign": "unknown",
        },
        follow=True,
    )
    assert "Reminder settings for this campaign saved." in response.content.decode()
    assert "a reminder every 1 day;" in response.content.decode()
    assert "no escalation" in response.content.decode()
    with scopes_disabled():
        policy = CampaignNotificationPolicy.objects.get(campaign=campaign)
    assert (policy.reminder_every_days, policy.reminder_days_before_due, policy.escalate_after_days) == (
        1,
        None,
        0,
    )


def test_campaign_notifications_page_roles(org, campaign, people, member, client_for, outsider):
    assert client_for(member(Role.AUDITOR)).get(_page(campaign)).status_code == 200
    assert (
        "<form"
        not in client_for(member(Role.AUDITOR))
        .get(_page(campaign))
        .content.decode()
        .split("policy-heading")[1]
        .split("log-heading")[0]
    )
    assert (
        client_for(member(Role.AUDITOR)).post(_page(campaign), {"reminder_every_days": "1"}).status_code
        == 403
    )
    assert client_for(people["rita"]).get(_page(campaign)).status_code == 403
    assert client_for(outsider).get(_page(campaign)).status_code == 404


def test_policy_api(org, campaign, people, member, api_for, outsider):
    api = api_for(people["admin"])
    response = api.patch(
        _api(campaign), {"reminder_every_days": 7, "escalation_reassign": True}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["overrides"]["reminder_every_days"] == 7
    assert response.json()["effective"] == {
        "reminder_every_days": 7,
        "reminder_days_before_due": 2,
        "escalate_after_days": 3,
        "escalation_reassign": True,
    }
    assert api.patch(_api(campaign), {"reminder_every_days": -2}, format="json").status_code == 400
    assert api_for(member(Role.VIEWER)).get(_api(campaign)).status_code == 200
    assert (
        api_for(member(Role.VIEWER))
        .patch(_api(campaign), {"reminder_every_days": 1}, format="json")
        .status_code
        == 403
    )
    assert api_for(people["rita"]).get(_api(campaign)).status_code == 403
    assert api_for(outsider).get(_api(campaign)).status_code == 404


def test_policy_locked_on_finished_campaign(org, campaign, people, api_for):
    with scopes_disabled():
        campaign.status = "completed"
        campaign.save()
    response = api_for(people["admin"]).patch(_api(campaign), {"reminder_every_days": 1}, format="json")
    assert response.status_code == 400
    assert "cannot change on a completed campaign" in response.json()["detail"]


def test_notification_log_api_lists_rows_with_a_constant_number_of_queries(
    org, campaign, people, api_for, django_assert_max_num_queries
):
    _log_rows(org, campaign, people, 5)
    api = api_for(people["admin"])
    response = api.get(_api(campaign, "notifications/"))
    assert response.status_code == 200
    assert len(response.json()["results"]) == 5
    assert response.json()["results"][0]["recipient"] == "rita@acme.test"
    _log_rows(org, campaign, people, 0)
    with scopes_disabled():
        Notification.objects.filter(campaign=campaign).delete()
    _log_rows(org, campaign, people, 60)
    with django_assert_max_num_queries(8):
        assert len(api.get(_api(campaign, "notifications/")).json()["results"]) == 60


def test_log_include_query_count_does_not_grow(org, campaign, people, django_assert_num_queries):
    template = Template("{% load notifications_tags %}{% notification_log campaign %}")
    _log_rows(org, campaign, people, 3)
    with scope(org), django_assert_num_queries(1):
        html = template.render(Context({"campaign": campaign}))
    assert html.count("rita@acme.test") == 3
    with scopes_disabled():
        Notification.objects.filter(campaign=campaign).delete()
    _log_rows(org, campaign, people, 40)
    with scope(org), django_assert_num_queries(1):
        assert template.render(Context({"campaign": campaign})).count("rita@acme.test") == 40


def test_linking_a_member_of_another_organization_is_refused(org, campaign, people, outsider):
    with scope(org), pytest.raises(ScopeError):
        reminders.reminder_send(campaign=campaign, actor=people["admin"], reviewer=outsider)
    with scope(org), pytest.raises(ScopeError):
        services.notifications_create(
            organization_id=org.pk,
            event=Event.REMINDER,
            campaign=campaign,
            recipients=[services.Recipient(outsider, pending=1)],
        )
