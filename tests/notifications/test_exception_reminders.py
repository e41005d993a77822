"""Exceptions expiring: the granting reviewer is reminded 14 and 3 days before, once each (e-mail
through a real SMTP server on 127.0.0.1, time-machine for the days); the day after expiry the daily renewal
gathers them with the organization's fallback reviewer."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from campaigns.decisions import review_item_decide
from tests.campaigns.review_support import active_campaign, add_items, fresh
from thalian.permissions import Role
from thalian.tenancy import scope

pytestmark = pytest.mark.django_db

DAY0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def traveller():
    with time_machine.travel(DAY0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def campaign(org, member, traveller):
    fallback = member(Role.SECURITY_ANALYST, email="fallback@acme.test")
    return active_campaign(org, title="Q1 access review", fallback_reviewer=fallback)


@pytest.fixture
def reviewer(member):
    return member(Role.REVIEWER, email="rita@acme.test")



def test_reviewer_is_reminded_14_and_3_days_before_expiry_once(org, campaign, reviewer, traveller, mailbox,
                                                               django_capture_on_commit_callbacks):
    from notifications.services import exception_reminders_send
    from notifications.tasks import exception_reminders_all

    items = add_items(campaign, reviewer, 2)
    with scope(org):
        for item in items:
            review_item_decide(item=item, actor=reviewer, decision="exception", reason="Contract until April",
                               expires_on=dt.date(2026, 4, 1))
    traveller.move_to(dt.datetime(2026, 3, 17, 9, 0, tzinfo=dt.UTC))  # 15 days before: nothing yet
    with django_capture_on_commit_callbacks(execute=True):
        assert exception_reminders_send(organization_id=org.pk) == 0
    traveller.move_to(dt.datetime(2026, 3, 18, 9, 0, tzinfo=dt.UTC))  # 14 days before
    with django_capture_on_commit_callbacks(execute=True):
        assert exception_reminders_all() == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert exception_reminders_send(organization_id=org.pk) == 0  # deduplicated
    [mail] = mailbox.to("rita@acme.test")
    assert "2 exceptions you granted expire in 14 days" in mail["subject"]
    assert items[0].identity_email in mail["text/plain"] and "Contract until April" in mail["text/plain"]
    assert "2026-04-01" in mail["text/plain"]
    traveller.move_to(dt.datetime(2026, 3, 29, 9, 0, tzinfo=dt.UTC))  # 3 days before
    with django_capture_on_commit_callbacks(execute=True):
        exception_reminders_send(organization_id=org.pk)
    assert len(mailbox.to("rita@acme.test")) == 2
    assert "expire in 3 days" in mailbox.to("rita@acme.test")[1]["subject"]


def test_daily_renewals_use_the_organizations_fallback_reviewer(org, campaign, reviewer, member, traveller,
                                                               django_capture_on_commit_callbacks):
    from campaigns.models import Campaign, ReviewItem
    from notifications.selectors import notification_settings_for
    from notifications.tasks import exception_renewals_all
    from thalian.tenancy import scopes_disabled

    org_fallback = member(Role.ADMIN, email="desk@acme.test")
    with scope(org):
        settings_row = notification_settings_for(organization_id=org.pk)
        settings_row.fallback_reviewer = org_fallback
        settings_row.save()
    [item] = add_items(campaign, reviewer, 1, application_name="Unowned tool")
    with scope(org):
        review_item_decide(item=item, actor=reviewer, decision="exception", reason="Pilot",
                           expires_on=dt.date(2026, 3, 5))
    traveller.move_to(dt.datetime(2026, 3, 6, 0, 20, tzinfo=dt.UTC))
    with django_capture_on_commit_callbacks(execute=True):
        assert exception_renewals_all() == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert exception_renewals_all() == 0  # nothing is gathered twice
    with scopes_disabled():
        renewal = Campaign.objects.get(title="Exception renewals 2026-03-06")
        [renewal_item] = ReviewItem.objects.filter(campaign=renewal)
    assert renewal_item.renewal_of_id == item.pk and renewal_item.reviewer_email == "desk@acme.test"
    assert "no owner who can review" in renewal_item.assignment_note
    assert fresh(item).decision == "exception"
