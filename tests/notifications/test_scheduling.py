import datetime as dt

import pytest
import time_machine

from campaigns import scheduling
from campaigns.models import Campaign, CampaignStatus, ReviewItem
from campaigns.scheduling import ScheduleError, add_months, parse_recurrence, parse_schedule
from campaigns.tasks import launch_due_campaigns
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from ..factories import ApplicationFactory, CampaignFactory, EntitlementFactory

NOW = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)


# Parsing ---------------------------------------------------------------------------------------------


def test_future_launch_at_is_scheduled_and_past_means_now():
    schedule = parse_schedule(launch_at="2026-02-01T09:00:00Z", duration_days=14, now=NOW)
    assert schedule.launch_at == dt.datetime(2026, 2, 1, 9, 0, tzinfo=dt.UTC)
    assert schedule.due_date() == dt.date(2026, 2, 15)
    assert parse_schedule(launch_at="2026-01-01T09:00:00+00:00", now=NOW).launch_at is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("monthly", ("monthly", None)),
        ("quarterly", ("quarterly", None)),
        ("semiannual", ("semiannual", None)),
        ("yearly", ("yearly", None)),
        ({"every_days": 10}, ("every_days", 10)),
        (None, ("", None)),
    ],
)
def test_recurrence_values(value, expected):
    assert parse_recurrence(value) == expected


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"launch_at": "next tuesday"}, "launch_at", "ISO 8601"),
        ({"recurrence": "weekly", "duration_days": 5}, "recurrence", '"monthly"'),
        ({"recurrence": {"every_days": 0}, "duration_days": 5}, "recurrence", "from 1"),
        ({"recurrence": {"every": 3}, "duration_days": 5}, "recurrence", "every_days"),
        ({"recurrence": {"every_days": "7"}, "duration_days": 5}, "recurrence", "whole number"),
        ({"recurrence": "monthly"}, "duration_days", "required"),
        ({"recurrence": {"every_days": 7}, "duration_days": 10}, "duration_days", "longer than the 7-day"),
        ({"duration_days": 0}, "duration_days", "from 1"),
        ({"duration_days": "two weeks"}, "duration_days", "whole number"),
    ],
)
def test_bad_schedule_input_names_the_field(kwargs, field, message):
    with pytest.raises(ScheduleError) as info:
        parse_schedule(now=NOW, **kwargs)
    assert info.value.field == field
    assert message in info.value.message


def test_monthly_occurrences_do_not_drift_from_month_end():
    anchor = dt.datetime(2026, 1, 31, 9, 0, tzinfo=dt.UTC)
    assert add_months(anchor, 1) == dt.datetime(2026, 2, 28, 9, 0, tzinfo=dt.UTC)
    assert scheduling.occurrence_at(anchor=anchor, recurrence="monthly", every_days=None, n=2) == dt.datetime(
        2026, 3, 31, 9, 0, tzinfo=dt.UTC
    )
    assert scheduling.occurrence_at(anchor=anchor, recurrence="quarterly", every_days=None, n=4).year == 2027


# Launching -------------------------------------------------------------------------------------------


@pytest.fixture
def inventory(org, member):
    """Two applications with grants, fresh data; rita owns both."""
    rita = member(Role.REVIEWER, email="rita@acme.test")
    with scopes_disabled():
        github = ApplicationFactory(
            organization=org,
            name="GitHub",
            category="Engineering",
            sanctioned=True,
            owner_email="rita@acme.test",
        )
        figma = ApplicationFactory(
            organization=org, name="Figma", category="Design", sanctioned=False, owner_email="rita@acme.test"
        )
        for app in (github, figma):
            for _ in range(2):
                EntitlementFactory(organization=org, application=app)
    return {"rita": rita, "github": github, "figma": figma}


db_tx = pytest.mark.django_db(transaction=True)


def _scheduled(org, admin, **overrides):
    values = {
        "organization": org,
        "title": "Quarterly review",
        "status": CampaignStatus.SCHEDULED,
        "launch_at": dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC),
        "recurrence": "quarterly",
        "duration_days": 14,
        "scope": {**Campaign().scope, "sanctioned_only": True},
        "fallback_reviewer": admin,
        "created_by": admin.user,
        "due_date": dt.date(2026, 4, 15),
    }
    values.update(overrides)
    return CampaignFactory(**values)


def _fresh(org):
    from django.utils import timezone

    from entitlements.models import Application

    with scopes_disabled():
        Application.objects.filter(organization=org).update(last_synced_at=timezone.now())


@db_tx
def test_scheduled_campaign_launches_at_its_time_notifies_and_schedules_next(org, member, inventory, mailbox):
    admin = member(Role.ADMIN)
    campaign = _scheduled(org, admin)
    with time_machine.travel(dt.datetime(2026, 4, 1, 8, 59, tzinfo=dt.UTC), tick=False):
        _fresh(org)
        assert launch_due_campaigns() == 0
    with time_machine.travel(dt.datetime(2026, 4, 1, 9, 0, 30, tzinfo=dt.UTC), tick=False):
        _fresh(org)
        assert launch_due_campaigns() == 1
        assert launch_due_campaigns() == 0  # the next tick finds nothing scheduled and due

    with scope(org):
        campaign.refresh_from_db()
        assert campaign.status == CampaignStatus.ACTIVE
        assert campaign.due_date == dt.date(2026, 4, 15)
        # Only the sanctioned application matched when the occurrence launched.
        assert set(
            ReviewItem.objects.filter(campaign=campaign).values_list("application_name", flat=True)
        ) == {"GitHub"}
        (following,) = Campaign.objects.filter(series=campaign)
    assert following.status == CampaignStatus.SCHEDULED
    assert following.launch_at == dt.datetime(2026, 7, 1, 9, 0, tzinfo=dt.UTC)
    assert following.due_date == dt.date(2026, 7, 15)
    assert following.scope == campaign.scope
    assert [m["subject"] for m in mailbox.to("rita@acme.test")] == [
        "Access review assigned: Quarterly review"
    ]


@db_tx
def test_next_occurrence_evaluates_filters_again(org, member, inventory, mailbox):
    admin = member(Role.ADMIN)
    first = _scheduled(org, admin)
    with time_machine.travel(dt.datetime(2026, 4, 1, 9, 1, tzinfo=dt.UTC), tick=False):
        _fresh(org)
        launch_due_campaigns()
    with scopes_disabled():
        inventory["figma"].sanctioned = True
        inventory["figma"].save()
    with time_machine.travel(dt.datetime(2026, 7, 1, 9, 1, tzinfo=dt.UTC), tick=False):
        _fresh(org)
        assert launch_due_campaigns() == 1
    with scope(org):
        second = Campaign.objects.get(series=first, launch_at=dt.datetime(2026, 7, 1, 9, 0, tzinfo=dt.UTC))
        assert second.status == CampaignStatus.ACTIVE
        assert set(ReviewItem.objects.filter(campaign=second).values_list("application_name", flat=True)) == {
            "GitHub",
            "Figma",
        }
        # Both occurrences belong to the same series; the third is scheduled.
        assert Campaign.objects.filter(series=first, status=CampaignStatus.SCHEDULED).get().launch_at == (
            dt.datetime(2026, 10, 1, 9, 0, tzinfo=dt.UTC)
        )


@db_tx
def test_occurrence_matching_no_application_is_archived_and_series_continues(org, member, inventory, mailbox):
    admin = member(Role.ADMIN)
    campaign = _scheduled(
        org,
        admin,
        scope={**Campaign().scope, "categories": ["Finance"]},
        recurrence="every_days",
        recurrence_every_days=30,
    )
    with time_machine.travel(dt.datetime(2026, 4, 1, 9, 5, tzinfo=dt.UTC), tick=False):
        launch_due_campaigns()
        launch_due_campaigns()
    with scope(org):
        campaign.refresh_from_db()
        assert campaign.status == CampaignStatus.ARCHIVED
        assert campaign.archived_reason == "no applications matched"
        assert ReviewItem.objects.filter(campaign=campaign).count() == 0
        assert list(Campaign.objects.filter(series=campaign).values_list("launch_at", flat=True)) == [
            dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
        ]
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="campaign_occurrence_skipped", organization=org).count() == 1
    assert mailbox.messages == []


@db_tx
def test_scheduled_launch_blocked_by_stale_data_goes_back_to_draft_with_reason(org, member, inventory):
    admin = member(Role.ADMIN)
    campaign = _scheduled(org, admin, recurrence="")
    with time_machine.travel(dt.datetime(2026, 4, 1, 9, 5, tzinfo=dt.UTC), tick=False):
        from entitlements.models import Application

        with scopes_disabled():
            Application.objects.filter(organization=org).update(last_synced_at=None)
        launch_due_campaigns()
    with scope(org):
        campaign.refresh_from_db()
        assert campaign.status == CampaignStatus.DRAFT
        assert "Scheduled launch failed" in campaign.launch_error
        assert "GitHub" in campaign.launch_error
        assert not Campaign.objects.filter(series=campaign).exists()


@db_tx
def test_campaign_launched_by_hand_with_recurrence_schedules_the_next(org, member, inventory, mailbox):
    from campaigns import launch as campaigns_launch

    admin = member(Role.ADMIN)
    with time_machine.travel(dt.datetime(2026, 5, 3, 10, 0, tzinfo=dt.UTC), tick=False):
        _fresh(org)
        campaign = _scheduled(
            org,
            admin,
            status=CampaignStatus.DRAFT,
            launch_at=None,
            recurrence="monthly",
            duration_days=10,
            due_date=dt.date(2026, 5, 13),
        )
        with scope(org):
            campaigns_launch.campaign_launch(campaign=campaign, actor=admin)
            following = Campaign.objects.get(series=campaign)
    assert following.launch_at == dt.datetime(2026, 6, 3, 10, 0, tzinfo=dt.UTC)
    assert following.status == CampaignStatus.SCHEDULED
