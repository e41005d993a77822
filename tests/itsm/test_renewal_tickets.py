"""Revoking an expired exception in its renewal campaign opens a ticket like any revoke (fake Jira on
127.0.0.1)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from campaigns.decisions import review_item_decide
from campaigns.exceptions import exception_renewals_gather
from campaigns.models import ReviewItem
from tests.campaigns.review_support import active_campaign, add_items, fresh
from tests.factories import ApplicationFactory
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


def test_revoking_a_renewal_opens_a_ticket(org, campaign, reviewer, member, traveller, jira, connect,
                                           django_capture_on_commit_callbacks):
    github = ApplicationFactory(organization=org, name="GitHub", owner_email="")
    item, = add_items(campaign, reviewer, 1, application=github, application_name="GitHub")
    with scope(org):
        review_item_decide(item=item, actor=reviewer, decision="exception", reason="Temporary",
                           expires_on=dt.date(2026, 3, 5))
    connect(jira)
    traveller.move_to(dt.datetime(2026, 3, 6, 1, 0, tzinfo=dt.UTC))
    renewal = exception_renewals_gather(organization=org)
    with scope(org):
        renewal_item = ReviewItem.objects.get(campaign=renewal)
    with scope(org), django_capture_on_commit_callbacks(execute=True):
        review_item_decide(item=renewal_item, actor=member(Role.SECURITY_ANALYST, email="fallback@acme.test"),
                           decision="revoke", reason="No longer needed")
    assert fresh(renewal_item).ticket_key == "OPS-1"
    assert "No longer needed" in jira.tickets["OPS-1"]["description"]
