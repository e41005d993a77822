"""Organization settings through the API: the same rules as the settings page, for super admins only."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from thalian.models import AuditEvent
from thalian.permissions import Role

pytestmark = pytest.mark.django_db

URL = "/api/v1/orgs/acme/settings/"


def test_super_admin_reads_the_settings(api_for, member, org):
    response = api_for(member(Role.SUPER_ADMIN)).get(URL)

    assert response.status_code == 200
    assert response.json() == {
        "slug": "acme",
        "name": org.name,
        "plan": org.plan,
        "dormant_days": 90,
        "privileged_patterns": ["admin", "owner", "root"],
        "freshness_days": org.freshness_days,
        "ticket_trigger": org.ticket_trigger,
        "exception_default_days": 90,
        "exception_max_days": 365,
        "decision_quality_thresholds": {
            "burst_gap_seconds": 60.0,
            "burst_min_decisions": 50,
            "burst_max_median_seconds": 3.0,
            "burst_min_approve_percent": 98.0,
            "privileged_min_seconds": 5.0,
            "flag_bulk_recommended_revoke": True,
        },
        "guest_reviewers_enabled": True,
        "access_requests_for_others": True,
        "access_request_max_days": 90,
    }


def test_changing_findings_thresholds_is_audited_and_recomputes_findings(
    api_for, member, org, django_capture_on_commit_callbacks
):
    from entitlements.models import Entitlement
    from tests.factories import EntitlementFactory
    from thalian.tenancy import scope

    grant = EntitlementFactory(organization=org, role="Billing", last_used=timezone.now() - dt.timedelta(days=40))
    api = api_for(member(Role.SUPER_ADMIN))

    with django_capture_on_commit_callbacks(execute=True):
        response = api.patch(URL, {"dormant_days": 30, "privileged_patterns": [" billing ", "admin", ""]}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["dormant_days"] == 30
    assert response.json()["privileged_patterns"] == ["billing", "admin"]
    with scope(org):
        grant = Entitlement.objects.get(pk=grant.pk)
    assert (grant.is_dormant, grant.is_privileged) == (True, True)
    event = AuditEvent.objects.get(organization=org, action="organization_settings_changed")
    assert event.details["dormant_days"] == {"from": 90, "to": 30}


def test_plan_change_through_the_api_is_audited(api_for, member, org):
    response = api_for(member(Role.SUPER_ADMIN)).patch(URL, {"plan": "enterprise"}, format="json")

    assert response.status_code == 200
    assert AuditEvent.objects.filter(organization=org, action="plan_changed", details__to="enterprise").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dormant_days": 0}, "dormant_days"),
        ({"plan": "platinum"}, "plan"),
        ({"ticket_trigger": "whenever"}, "ticket_trigger"),
        ({"privileged_patterns": "admin"}, "privileged_patterns"),
        ({"slug": "elsewhere"}, "slug"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_settings_answer_400_naming_the_field_and_change_nothing(api_for, member, org, body, field):
    before = api_for(member(Role.SUPER_ADMIN)).get(URL).json()
    api = api_for(member(Role.SUPER_ADMIN))

    response = api.patch(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert api.get(URL).json() == before
    assert not AuditEvent.objects.filter(organization=org, action__in=["organization_settings_changed", "plan_changed"]).exists()


@pytest.mark.parametrize("role", [r for r in Role if r != Role.SUPER_ADMIN])
def test_other_roles_get_403(api_for, member, org, role):
    api = api_for(member(role))

    assert api.get(URL).status_code == 403
    assert api.patch(URL, {"dormant_days": 5}, format="json").status_code == 403
    org.refresh_from_db()
    assert org.dormant_days == 90


def test_outsider_gets_404(api_for, outsider):
    api = api_for(outsider)

    assert api.get(URL).status_code == 404
    assert api.patch(URL, {"dormant_days": 5}, format="json").status_code == 404
