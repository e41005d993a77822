"""End to end: decisions through the campaign services, removal verified by real inventory imports."""

import io

import pytest

from campaigns.decisions import review_item_decide, review_sign_off
from campaigns.models import ReviewItem
from entitlements.services import inventory_import
from itsm import verification
from thalian.models import AuditEvent, TicketTrigger
from thalian.tenancy import scope

pytestmark = pytest.mark.django_db


def _refresh(org, item) -> ReviewItem:
    with scope(org):
        return ReviewItem.objects.get(pk=item.pk)


def _import_entitlements(org, rows: list[tuple[str, str, str]], mode: str = "replace"):
    text = "application,identity_email,role,last_used\n" + "".join(
        f"{a},{e},{r},2026-01-01\n" for a, e, r in rows
    )
    with scope(org):
        return inventory_import(
            organization=org,
            kind="entitlements",
            stream=io.BytesIO(text.encode()),
            mode=mode,
            file_name="ent.csv",
        )


def test_revoke_through_the_decision_service_opens_a_ticket(
    jira, connect, revoked_item, reviewer, org, django_capture_on_commit_callbacks
):
    connect(jira)
    item = revoked_item()
    with scope(org):
        ReviewItem.objects.filter(pk=item.pk).update(decision="", decision_reason="")
        item.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True), scope(org):
        review_item_decide(item=item, actor=reviewer, decision="revoke", reason="contractor left")

    item = _refresh(org, item)
    assert (item.ticket_key, item.ticket_status) == ("OPS-1", "open")
    assert "contractor left" in jira.tickets["OPS-1"]["description"]

    with django_capture_on_commit_callbacks(execute=True), scope(org):
        review_item_decide(item=item, actor=reviewer, decision="approve", reason="rehired")

    assert "rehired" in jira.comments["OPS-1"][0]


def test_sign_off_trigger_opens_tickets_when_the_reviewer_signs_off(
    jira, connect, revoked_item, reviewer, org, django_capture_on_commit_callbacks
):
    org.ticket_trigger = TicketTrigger.ON_SIGN_OFF
    org.save()
    connect(jira)
    item = revoked_item()
    with scope(org):
        ReviewItem.objects.filter(pk=item.pk).update(decision="", decision_reason="")
        item.refresh_from_db()
        with django_capture_on_commit_callbacks(execute=True):
            review_item_decide(item=item, actor=reviewer, decision="revoke", reason="left")
    assert not jira.tickets

    with django_capture_on_commit_callbacks(execute=True), scope(org):
        review_sign_off(campaign=item.campaign, actor=reviewer)

    assert len(jira.tickets) == 1
    assert _refresh(org, item).ticket_status == "open"


def test_replace_import_without_the_entitlement_verifies_removal(
    jira, connect, revoked_item, decide, org, django_capture_on_commit_callbacks
):
    connect(jira)
    removed = revoked_item(email="gone@acme.test")
    application = removed.application
    kept = revoked_item(application=application, email="stays@acme.test", role="admin")
    decide([removed, kept])

    with django_capture_on_commit_callbacks(execute=True):
        _import_entitlements(org, [(application.name, "stays@acme.test", "admin")])

    removed, kept = _refresh(org, removed), _refresh(org, kept)
    assert removed.remediation_status == "verified_removed"
    assert kept.remediation_status == "action_required"
    assert removed.remediation_checked_at is not None
    [event] = AuditEvent.objects.filter(action="itsm.remediation_verified")
    assert event.details["verified_removed"] == 1 and event.details["action_required"] == 1

    with django_capture_on_commit_callbacks(execute=True):
        _import_entitlements(org, [(application.name, "someone@acme.test", "member")])

    assert _refresh(org, kept).remediation_status == "verified_removed"


def test_verification_leaves_other_applications_and_undecided_items_alone(revoked_item, decide, org, member):
    item = revoked_item()
    other = revoked_item()
    decide([item, other])
    decide(other, "approve", reason="fine", by=member("admin"))

    result = verification.remediation_verify_for_applications(
        organization_id=org.pk, application_ids=[other.application_id]
    )

    assert result == {"verified_removed": 0, "action_required": 0}
    assert _refresh(org, item).remediation_status == "pending"
    assert _refresh(org, other).remediation_status == ""
