"""Organization settings for super admins: plan (audited), review settings, deletion with typed confirmation."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from thalian.models import AuditEvent, Membership, Organization

pytestmark = pytest.mark.django_db

URL = reverse("org_settings", args=["acme"])


def _form(org, **changes):
    data = {
        "name": org.name,
        "plan": org.plan,
        "dormant_days": org.dormant_days,
        "privileged_patterns": "\n".join(org.privileged_patterns),
        "freshness_days": org.freshness_days,
        "ticket_trigger": org.ticket_trigger,
        "exception_default_days": org.exception_default_days,
        "exception_max_days": org.exception_max_days,
        **({"guest_reviewers_enabled": "on"} if org.guest_reviewers_enabled else {}),
        **({"access_requests_for_others": "on"} if org.access_requests_for_others else {}),
        "access_request_max_days": org.access_request_max_days,
    }
    data.update(changes)
    return data


def test_super_admin_changes_plan_and_the_change_is_audited(client_for, member, org):
    boss = member("super_admin")
    client = client_for(boss)
    page = client.get(URL)
    assert page.status_code == 200 and "Organization settings" in page.content.decode()
    response = client.post(URL, _form(org, plan="free"))
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.plan == "free"
    event = AuditEvent.objects.get(organization=org, action="plan_changed")
    assert event.actor_email == "super_admin@acme.test" and event.details == {"from": "pro", "to": "free"}
    assert "Organization settings saved" in client.get(URL).content.decode()


def test_review_settings_are_saved(client_for, member, org):
    client = client_for(member("super_admin"))
    response = client.post(
        URL,
        _form(org, dormant_days=45, freshness_days=3, ticket_trigger="sign_off",
              privileged_patterns="admin\n  superuser \n\nDBA\n"),
    )
    assert response.status_code == 302
    org.refresh_from_db()
    assert (org.dormant_days, org.freshness_days, org.ticket_trigger) == (45, 3, "sign_off")
    assert org.privileged_patterns == ["admin", "superuser", "DBA"]
    event = AuditEvent.objects.get(organization=org, action="organization_settings_changed")
    assert set(event.details) == {"dormant_days", "freshness_days", "ticket_trigger", "privileged_patterns"}
    assert not AuditEvent.objects.filter(organization=org, action="plan_changed").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dormant_days", "0", "at least 1"),
        ("freshness_days", "-2", "greater than or equal to 0"),
        ("plan", "platinum", "Select a valid choice"),
        ("ticket_trigger", "never", "Select a valid choice"),
        ("dormant_days", "soon", "Enter a whole number"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message_and_change_nothing(client_for, member, org, field, value,
                                                                          message):
    client = client_for(member("super_admin"))
    response = client.post(URL, _form(org, name="Renamed", **{field: value}))
    assert response.status_code == 400
    assert message in response.content.decode()
    org.refresh_from_db()
    assert org.name == "Acme" and org.plan == "pro" and org.dormant_days == 90
    assert not AuditEvent.objects.filter(organization=org).exclude(action="login").exists()


def test_admin_cannot_open_organization_settings(client_for, member, org):
    client = client_for(member("admin"))
    assert client.get(URL).status_code == 403
    assert client.post(URL, _form(org, plan="enterprise")).status_code == 403
    assert client.post(reverse("org_delete", args=["acme"]), {"confirm": "acme"}).status_code == 403
    org.refresh_from_db()
    assert org.plan == "pro"


def test_delete_needs_the_typed_identifier(client_for, member, org):
    client = client_for(member("super_admin"))
    response = client.post(reverse("org_delete", args=["acme"]), {"confirm": "Acme"})
    assert response.status_code == 400
    assert "Type the organization&#x27;s identifier &#x27;acme&#x27; exactly" in response.content.decode()
    assert Organization.objects.filter(slug="acme").exists()


def test_delete_removes_the_organization_and_its_data(client_for, member, org, other_org, outsider, api_for):
    boss = member("super_admin")
    member("viewer")
    api = api_for(boss)
    client = client_for(boss)
    client.post(URL, _form(org, plan="enterprise"))  # leaves audit events behind
    other_events = AuditEvent.objects.filter(organization=other_org).count()
    response = client.post(reverse("org_delete", args=["acme"]), {"confirm": "acme"})
    assert response.status_code == 302 and response.url == reverse("home")
    assert not Organization.objects.filter(slug="acme").exists()
    assert not Membership.objects.filter(organization_id=org.pk).exists()
    assert not AuditEvent.objects.filter(organization_id=org.pk).exists()
    assert AuditEvent.objects.filter(organization=other_org).count() == other_events
    record = AuditEvent.objects.get(action="organization_deleted")
    assert record.organization_id is None and record.target_label == "acme"
    assert record.actor_email == "super_admin@acme.test" and record.details["members"] == 2
    assert client.get("/o/acme/").status_code == 404
    assert api.get("/api/v1/orgs/acme/me/").status_code == 401
    if connection.vendor == "postgresql":
        # Outside the deletion transaction the trigger protects the audit table again.
        from django.db import DatabaseError, transaction

        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            AuditEvent.objects.filter(action="organization_deleted").delete()


def test_changing_dormant_days_recomputes_the_findings_of_existing_access(
    member, org, django_capture_on_commit_callbacks
):
    import datetime as dt

    from django.utils import timezone

    from entitlements.models import Entitlement
    from tests.factories import EntitlementFactory
    from thalian.services import organization_update
    from thalian.tenancy import scope

    grant = EntitlementFactory(organization=org, last_used=timezone.now() - dt.timedelta(days=40))
    actor = member("super_admin")
    with django_capture_on_commit_callbacks(execute=True):
        organization_update(actor=actor, dormant_days=30)
    with scope(org):
        assert Entitlement.objects.get(pk=grant.pk).is_dormant is True
    with django_capture_on_commit_callbacks(execute=True):
        organization_update(actor=actor, dormant_days=60)
    with scope(org):
        assert Entitlement.objects.get(pk=grant.pk).is_dormant is False


def test_decision_quality_thresholds_are_set_on_the_settings_page(client_for, member, org):
    client = client_for(member("super_admin"))
    page = client.get(URL).content.decode()
    assert "Flag a burst of at least (single decisions)" in page
    response = client.post(URL, _form(org, dq_burst_min_decisions=30, dq_burst_max_median_seconds="2.5",
                                      dq_flag_bulk_recommended_revoke="False"))
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.decision_quality_thresholds["burst_min_decisions"] == 30
    assert org.decision_quality_thresholds["burst_max_median_seconds"] == 2.5
    assert org.decision_quality_thresholds["flag_bulk_recommended_revoke"] is False
    assert org.decision_quality_thresholds["privileged_min_seconds"] == 5  # left empty: unchanged
    bad = client.post(URL, _form(org, dq_burst_min_decisions=1))
    assert bad.status_code == 400
    assert "Ensure this value is greater than or equal to 2." in bad.content.decode()


def test_access_request_limits_are_saved_on_the_settings_page(client_for, member, org):
    client = client_for(member("super_admin"))
    data = _form(org, access_request_max_days=30)
    data.pop("access_requests_for_others", None)
    assert client.post(URL, data).status_code == 302
    org.refresh_from_db()
    assert (org.access_request_max_days, org.access_requests_for_others) == (30, False)
    refused = client.post(URL, _form(org, access_request_max_days=0))
    assert refused.status_code == 400
    org.refresh_from_db()
    assert org.access_request_max_days == 30
