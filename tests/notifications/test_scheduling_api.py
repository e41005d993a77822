"""Scheduling fields of the campaign API and wizard."""

import datetime as dt

import pytest
import time_machine

from campaigns.models import Campaign, CampaignStatus
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from ..factories import ApplicationFactory, EntitlementFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)
API = "/api/v1/orgs/acme/campaigns/"


@pytest.fixture
def admin(org, member):
    admin = member(Role.ADMIN)
    with scopes_disabled():
        app = ApplicationFactory(organization=org, name="GitHub", owner_email=admin.user.email)
        EntitlementFactory(organization=org, application=app)
    return admin


def _body(**extra):
    return {"title": "Monthly privileged review", "fallback_reviewer": "admin@acme.test", **extra}


@time_machine.travel(NOW, tick=False)
def test_future_launch_at_answers_scheduled_with_due_date_from_duration(org, admin, api_for):
    response = api_for(admin).post(
        API,
        _body(launch_at="2026-07-01T09:00:00Z", recurrence={"every_days": 30}, duration_days=10),
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "scheduled"
    assert body["launch_at"] == "2026-07-01T09:00:00Z"
    assert body["recurrence"] == {"every_days": 30}
    assert body["duration_days"] == 10
    assert body["due_date"] == "2026-07-11"
    with scopes_disabled():
        campaign = Campaign.objects.get(pk=body["id"])
    assert (campaign.recurrence, campaign.recurrence_every_days) == ("every_days", 30)


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("recurrence", ["monthly", "quarterly", "semiannual", "yearly"])
def test_named_recurrences_are_accepted(org, admin, api_for, recurrence):
    response = api_for(admin).post(
        API,
        _body(launch_at="2026-06-02T09:00:00+02:00", recurrence=recurrence, duration_days=14),
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["recurrence"] == recurrence
    assert response.json()["status"] == "scheduled"


@time_machine.travel(NOW, tick=False)
def test_without_launch_at_the_campaign_is_a_draft(org, admin, api_for):
    response = api_for(admin).post(API, _body(due_date="2026-06-20"), format="json")
    assert response.status_code == 201
    assert response.json()["status"] == "draft"


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        (
            {"launch_at": "2026-07-01T09:00:00Z", "recurrence": "weekly", "duration_days": 5},
            "recurrence",
            "monthly",
        ),
        (
            {"launch_at": "2026-07-01T09:00:00Z", "recurrence": {"every_days": 0}, "duration_days": 5},
            "recurrence",
            "every_days",
        ),
        ({"launch_at": "2026-07-01T09:00:00Z", "recurrence": "monthly"}, "duration_days", "required"),
        ({"launch_at": "2026-05-01T09:00:00Z", "duration_days": 5}, "launch_at", "future"),
        ({"launch_at": "2026-07-01T09:00:00Z"}, "due_date", "duration_days"),
    ],
)
def test_bad_schedule_is_a_400_naming_the_field_and_creates_nothing(
    org, admin, api_for, extra, field, message
):
    response = api_for(admin).post(API, _body(**extra), format="json")
    assert response.status_code == 400
    assert message in " ".join(response.json()["errors"][field])
    with scopes_disabled():
        assert not Campaign.objects.filter(organization=org).exists()


@time_machine.travel(NOW, tick=False)
def test_scheduled_campaign_can_be_edited_and_active_one_is_locked(org, admin, api_for):
    api = api_for(admin)
    created = api.post(API, _body(launch_at="2026-07-01T09:00:00Z", duration_days=10), format="json").json()
    response = api.patch(
        f"{API}{created['id']}/", {"recurrence": "quarterly", "duration_days": 20}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["recurrence"] == "quarterly"
    with scopes_disabled():
        Campaign.objects.filter(pk=created["id"]).update(status=CampaignStatus.ACTIVE)
    response = api.patch(f"{API}{created['id']}/", {"recurrence": "monthly"}, format="json")
    assert response.status_code == 409


@time_machine.travel(NOW, tick=False)
def test_wizard_schedules_a_recurring_campaign(org, admin, client_for):
    response = client_for(admin).post(
        "/o/acme/campaigns/new/",
        {
            "title": "Wizard quarterly",
            "due_date": "2026-06-30",
            "reviewer_strategy": "application_owner",
            "fallback_reviewer": "admin@acme.test",
            "default_outcome": "none",
            "reason_required": "on",
            "launch_at": "2026-07-01T09:00",
            "recurrence": "quarterly",
            "duration_days": "14",
            "save": "1",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "is scheduled to launch on 2026-07-01" in response.content.decode()
    with scopes_disabled():
        campaign = Campaign.objects.get(title="Wizard quarterly")
    assert campaign.status == CampaignStatus.SCHEDULED
    assert (campaign.recurrence, campaign.duration_days) == ("quarterly", 14)


@time_machine.travel(NOW, tick=False)
def test_wizard_names_the_bad_schedule_field(org, admin, client_for):
    response = client_for(admin).post(
        "/o/acme/campaigns/new/",
        {
            "title": "Wizard bad",
            "due_date": "2026-06-30",
            "reviewer_strategy": "application_owner",
            "fallback_reviewer": "admin@acme.test",
            "default_outcome": "none",
            "launch_at": "2026-07-01T09:00",
            "recurrence": "monthly",
            "save": "1",
        },
    )
    assert response.status_code == 200
    assert "is required for a recurring campaign" in response.content.decode()
    with scopes_disabled():
        assert not Campaign.objects.filter(title="Wizard bad").exists()


@time_machine.travel(NOW, tick=False)
def test_scheduled_campaign_can_be_deleted_but_active_cannot(org, admin, api_for, member):
    api = api_for(admin)
    created = api.post(API, _body(launch_at="2026-07-01T09:00:00Z", duration_days=10), format="json").json()
    assert api_for(member(Role.REVIEWER)).delete(f"{API}{created['id']}/").status_code == 403
    assert api.delete(f"{API}{created['id']}/").status_code == 204
    with scopes_disabled():
        assert not Campaign.objects.filter(pk=created["id"]).exists()
        assert AuditEvent.objects.filter(action="campaign_deleted", organization=org).count() == 1

    active = api.post(API, _body(launch_at="2026-07-01T09:00:00Z", duration_days=10), format="json").json()
    with scopes_disabled():
        Campaign.objects.filter(pk=active["id"]).update(status=CampaignStatus.ACTIVE)
    response = api.delete(f"{API}{active['id']}/")
    assert response.status_code == 409
    assert "only draft and scheduled campaigns can be deleted" in response.json()["detail"]


@time_machine.travel(NOW, tick=False)
def test_delete_is_404_for_outsider(org, admin, api_for, outsider, client_for):
    created = (
        api_for(admin)
        .post(API, _body(launch_at="2026-07-01T09:00:00Z", duration_days=10), format="json")
        .json()
    )
    assert api_for(outsider).delete(f"{API}{created['id']}/").status_code == 404
    assert client_for(outsider).post(f"/o/acme/campaigns/{created['id']}/delete/").status_code == 404
    with scopes_disabled():
        assert Campaign.objects.filter(pk=created["id"]).exists()


@time_machine.travel(NOW, tick=False)
def test_delete_button_on_scheduled_campaign_page(org, admin, api_for, client_for):
    created = (
        api_for(admin)
        .post(API, _body(launch_at="2026-07-01T09:00:00Z", duration_days=10), format="json")
        .json()
    )
    client = client_for(admin)
    page = client.get(f"/o/acme/campaigns/{created['id']}/").content.decode()
    assert f'action="/o/acme/campaigns/{created["id"]}/delete/"' in page
    response = client.post(f"/o/acme/campaigns/{created['id']}/delete/", follow=True)
    assert "deleted." in response.content.decode()
    with scopes_disabled():
        assert not Campaign.objects.filter(pk=created["id"]).exists()
