"""Decision quality per reviewer: the measures, the flags with organization thresholds, the API, the page
section, decision_quality.csv and the once-per-reviewer notice to the campaign's creator."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.decision_quality import campaign_decision_quality
from campaigns.models import DecisionEvent
from notifications.models import Notification
from notifications.remediation import decision_quality_flags_notify
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from .review_support import active_campaign, add_items

pytestmark = pytest.mark.django_db

T0 = timezone.now() - dt.timedelta(days=1)


def _events(campaign, items, *, actor, seconds, decision="approve", kind="single", bulk_id=None, start=T0):
    """One decision event per item, `seconds` apart (a number, or a list of gaps), starting at `start`."""
    gaps = seconds if isinstance(seconds, list) else [seconds] * len(items)
    at = start
    rows = []
    for n, item in enumerate(items):
        if n:
            at = at + dt.timedelta(seconds=gaps[n - 1])
        rows.append(DecisionEvent(
            organization_id=campaign.organization_id, campaign=campaign, item=item, decision=decision,
            actor=actor.user, actor_email=actor.user.email, actor_role=actor.role, kind=kind, bulk_id=bulk_id,
            created_at=at,
        ))
    with scopes_disabled():
        DecisionEvent.objects.bulk_create(rows)
    return at


def _quality(campaign):
    with scope(campaign.organization):
        return {r.reviewer_email: r for r in campaign_decision_quality(campaign=campaign)}


@pytest.fixture
def campaign(org, member):
    return active_campaign(org, created_by=member(Role.ADMIN).user)


def test_measures_per_reviewer(campaign, member):
    alice = member(Role.REVIEWER, email="alice@acme.test")
    items = add_items(campaign, alice, 6)
    privileged = add_items(campaign, alice, 1, is_privileged=True, recommendation="revoke")
    # Singles 10 s, 20 s, 30 s apart (median 20 s), one revoke; then a bulk approval of three items.
    _events(campaign, items[:4], actor=alice, seconds=[10, 20, 30])
    _events(campaign, [items[3]], actor=alice, seconds=0, decision="revoke", start=T0 + dt.timedelta(seconds=61))
    _events(campaign, items[4:] + privileged, actor=alice, seconds=0, kind="bulk", bulk_id=uuid.uuid4(),
            start=T0 + dt.timedelta(hours=1))

    row = _quality(campaign)["alice@acme.test"]
    assert (row.decisions, row.single_decisions, row.bulk_decisions) == (8, 5, 3)
    assert row.bulk_share_percent == 37.5
    # Gaps between singles: 10, 20, 30, 1 -> median (10 + 20) / 2.
    assert row.median_seconds_between_single == 15.0
    assert row.approve_rate_percent == 87.5
    assert row.approvals_against_recommendation == 1
    assert row.privileged_approved == 1
    assert row.longest_burst == 5
    assert row.bulk_approvals_with_recommended_revoke == 1
    assert [f.code for f in row.flags] == ["bulk_approval_with_recommended_revoke"]


def test_system_decisions_are_not_a_reviewer(campaign, member):
    items = add_items(campaign, None, 3)
    with scopes_disabled():
        DecisionEvent.objects.bulk_create([
            DecisionEvent(organization_id=campaign.organization_id, campaign=campaign, item=i, decision="revoke",
                          actor_email="system", actor_role="system", kind="system", created_at=T0)
            for i in items
        ])
    assert _quality(campaign) == {}


def test_a_fast_burst_of_approvals_is_flagged_and_a_slow_one_is_not(campaign, member):
    fast, slow = member(Role.REVIEWER, email="fast@acme.test"), member(Role.REVIEWER, email="slow@acme.test")
    _events(campaign, add_items(campaign, fast, 60), actor=fast, seconds=2)
    _events(campaign, add_items(campaign, slow, 60), actor=slow, seconds=4)

    rows = _quality(campaign)
    assert rows["fast@acme.test"].longest_burst == 60
    assert rows["fast@acme.test"].median_seconds_between_single == 2.0
    assert [f.code for f in rows["fast@acme.test"].flags] == ["rubber_stamp_burst"]
    assert "largest: 60 decisions" in rows["fast@acme.test"].flags[0].message
    assert rows["slow@acme.test"].flags == []


def test_a_burst_is_split_by_a_pause_and_needs_mostly_approvals(campaign, member):
    split = member(Role.REVIEWER, email="split@acme.test")
    mixed = member(Role.REVIEWER, email="mixed@acme.test")
    items = add_items(campaign, split, 80)
    # 40 fast decisions, a two-minute pause, 40 more: two bursts of 40, both under the 50 threshold.
    _events(campaign, items, actor=split, seconds=[1] * 39 + [120] + [1] * 39)
    mixed_items = add_items(campaign, mixed, 60)
    _events(campaign, mixed_items[:55], actor=mixed, seconds=1)
    _events(campaign, mixed_items[55:], actor=mixed, seconds=1, decision="revoke",
            start=T0 + dt.timedelta(seconds=55))

    rows = _quality(campaign)
    assert rows["split@acme.test"].longest_burst == 40 and rows["split@acme.test"].flags == []
    # 55 of 60 approved is under 98%.
    assert rows["mixed@acme.test"].longest_burst == 60 and rows["mixed@acme.test"].flags == []


def test_privileged_item_approved_within_seconds_is_flagged(campaign, member):
    quick = member(Role.REVIEWER, email="quick@acme.test")
    items = add_items(campaign, quick, 2)
    privileged = add_items(campaign, quick, 2, is_privileged=True)
    _events(campaign, [items[0], privileged[0]], actor=quick, seconds=3)  # 3 s after the previous: flagged
    _events(campaign, [items[1], privileged[1]], actor=quick, seconds=30, start=T0 + dt.timedelta(hours=1))

    row = _quality(campaign)["quick@acme.test"]
    assert row.quick_privileged_approvals == 1 and row.privileged_approved == 2
    assert [f.code for f in row.flags] == ["quick_privileged_approval"]


def test_thresholds_are_tunable_per_organization(campaign, member, api_for, org):
    fast = member(Role.REVIEWER, email="fast@acme.test")
    _events(campaign, add_items(campaign, fast, 60), actor=fast, seconds=2)
    admin = api_for(member(Role.SUPER_ADMIN))
    response = admin.patch("/api/v1/orgs/acme/settings/",
                           {"decision_quality_thresholds": {"burst_max_median_seconds": 1.5}}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["decision_quality_thresholds"]["burst_max_median_seconds"] == 1.5
    assert response.json()["decision_quality_thresholds"]["burst_min_decisions"] == 50  # untouched keys stay
    campaign.organization.refresh_from_db()
    assert _quality(campaign)["fast@acme.test"].flags == []
    assert AuditEvent.objects.filter(action="organization_settings_changed").exists()


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ({"burst_min_decisions": 1}, "burst_min_decisions must be between 2 and 100000"),
        ({"burst_gap_seconds": "fast"}, "burst_gap_seconds must be a number"),
        ({"flag_bulk_recommended_revoke": "yes"}, "must be true or false"),
        ({"speed": 3}, "unknown threshold 'speed'"),
        ("strict", "must be an object"),
    ],
)
def test_bad_thresholds_are_refused_by_name(member, api_for, org, thresholds, message):
    response = api_for(member(Role.SUPER_ADMIN)).patch(
        "/api/v1/orgs/acme/settings/", {"decision_quality_thresholds": thresholds}, format="json")
    assert response.status_code == 400
    assert message in str(response.json())
    org.refresh_from_db()
    assert org.decision_quality_thresholds["burst_min_decisions"] == 50


# API ----------------------------------------------------------------------------------------------------------


def _url(campaign, slug="acme"):
    return f"/api/v1/orgs/{slug}/campaigns/{campaign.pk}/decision-quality/"


def test_api_lists_reviewers_with_flags(campaign, member, api_for):
    fast = member(Role.REVIEWER, email="fast@acme.test")
    _events(campaign, add_items(campaign, fast, 60), actor=fast, seconds=1)
    response = api_for(member(Role.AUDITOR)).get(_url(campaign))
    assert response.status_code == 200
    body = response.json()
    assert body["flagged_reviewers"] == 1
    assert body["thresholds"]["burst_min_decisions"] == 50
    [row] = body["reviewers"]
    assert row["reviewer_email"] == "fast@acme.test" and row["decisions"] == 60
    assert row["flags"][0]["code"] == "rubber_stamp_burst"
    assert row["flags"][0]["label"] == "Fast approval burst"


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.VIEWER])
def test_api_refuses_roles_without_the_permission(campaign, member, api_for, role):
    reviewer = member(role)
    add_items(campaign, reviewer, 1)
    assert api_for(reviewer).get(_url(campaign)).status_code == 403


def test_api_answers_404_to_other_organizations(campaign, outsider, api_for):
    assert api_for(outsider).get(_url(campaign, "globex")).status_code == 404
    assert api_for(outsider).get(_url(campaign)).status_code == 404


def test_api_query_count_does_not_grow_with_reviewers(campaign, member, api_for):
    client = api_for(member(Role.ADMIN))
    client.get(_url(campaign))  # the first request of a token records its use
    counts = []
    for n in range(2):
        for k in range(5):
            reviewer = member(Role.REVIEWER, email=f"r{n}-{k}@acme.test")
            _events(campaign, add_items(campaign, reviewer, 3), actor=reviewer, seconds=2)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(_url(campaign)).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


# Pages --------------------------------------------------------------------------------------------------------


def test_campaign_page_loads_the_section_with_a_chart_and_a_table(campaign, member, client_for):
    fast = member(Role.REVIEWER, email="fast@acme.test")
    _events(campaign, add_items(campaign, fast, 60), actor=fast, seconds=1)
    client = client_for(member(Role.SECURITY_ANALYST))
    detail = client.get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    assert f'hx-get="/o/acme/campaigns/{campaign.pk}/decision-quality/"' in detail
    fragment = client.get(f"/o/acme/campaigns/{campaign.pk}/decision-quality/", HTTP_HX_REQUEST="true")
    html = fragment.content.decode()
    assert "<svg" in html and "fast@acme.test: 60 single, 0 bulk, flagged" in html
    assert "Fast approval burst" in html and "1 reviewer flagged" in html
    assert "<html" not in html
    page = client.get(f"/o/acme/campaigns/{campaign.pk}/decision-quality/").content.decode()
    assert "<html" in page and "Decision quality" in page


def test_decision_quality_page_refuses_other_roles_and_organizations(campaign, member, outsider, client_for):
    url = f"/o/acme/campaigns/{campaign.pk}/decision-quality/"
    assert client_for(member(Role.VIEWER)).get(url).status_code == 403
    reviewer = member(Role.REVIEWER)
    add_items(campaign, reviewer, 1)
    assert client_for(reviewer).get(url).status_code == 403
    assert "decision-quality" not in client_for(reviewer).get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    assert client_for(outsider).get(url).status_code == 404
    assert client_for(outsider).get(f"/o/globex/campaigns/{campaign.pk}/decision-quality/").status_code == 404


# Notice to the creator ------------------------------------------------------------------------------------------


def test_flags_notify_the_creator_once_per_reviewer(campaign, member):
    fast, quick = member(Role.REVIEWER, email="fast@acme.test"), member(Role.REVIEWER, email="quick@acme.test")
    _events(campaign, add_items(campaign, fast, 60), actor=fast, seconds=1)
    _events(campaign, add_items(campaign, quick, 2, is_privileged=True), actor=quick, seconds=1)
    with scope(campaign.organization):
        assert decision_quality_flags_notify(campaign=campaign) == 2
        assert decision_quality_flags_notify(campaign=campaign) == 0
        # A new flag for a reviewer already reported adds nothing: once per reviewer.
        _events(campaign, add_items(campaign, fast, 2, is_privileged=True), actor=fast, seconds=1,
                start=T0 + dt.timedelta(hours=2))
        assert decision_quality_flags_notify(campaign=campaign) == 0
    with scopes_disabled():
        sent = Notification.objects.filter(campaign=campaign, event="decision_quality_flagged", channel="email")
        assert sent.count() == 2
        assert {n.recipient for n in sent} == {"admin@acme.test"}
        assert any("fast@acme.test" in n.title for n in sent)
    assert AuditEvent.objects.filter(action="campaign.decision_quality_flagged").count() == 2
