"""Admins hear about failed remediation tickets and about each campaign's remediation outcome."""

import io

import pytest
from django.urls import reverse

from entitlements.services import inventory_import
from itsm import services, verification
from itsm.models import Ticket
from notifications.models import Event, Notification, Status
from thalian.models import AuditEvent
from thalian.tenancy import scope, scopes_disabled

pytestmark = pytest.mark.django_db

ADMIN = "admin@acme.test"


@pytest.fixture
def admin(member):
    return member("admin", email=ADMIN)


def _import_entitlements(org, rows: list[tuple[str, str, str]]):
    text = "application,identity_email,role,last_used\n" + "".join(
        f"{a},{e},{r},2026-01-01\n" for a, e, r in rows
    )
    with scope(org):
        return inventory_import(
            organization=org,
            kind="entitlements",
            stream=io.BytesIO(text.encode()),
            mode="replace",
            file_name="ent.csv",
        )


def _log(event: str) -> list[Notification]:
    with scopes_disabled():
        return list(Notification.objects.filter(event=event).order_by("created_at"))


def _remediation_url(org, campaign) -> str:
    return "https://thalian.example.com" + reverse("campaign_remediation", args=[org.slug, campaign.pk])


def test_permanent_ticket_failure_emails_the_admins_with_the_vendor_error_and_remediation_link(
    jira, connect, revoked_item, decide, org, admin, reviewer, mailoutbox
):
    connect(jira, api_token="expired-token")
    item = revoked_item(email="ada@acme.test")

    decide(item)

    assert item.ticket_status == "failed"
    [row] = _log(Event.TICKET_FAILED)
    assert (row.channel, row.recipient, row.status, row.attempts) == ("email", ADMIN, Status.SENT, 1)
    assert row.campaign_id == item.campaign_id
    assert row.action_url == _remediation_url(org, item.campaign)
    [mail] = mailoutbox
    assert mail.to == [ADMIN]
    assert mail.subject == f"Remediation ticket failed: {item.application_name}"
    assert "ada@acme.test" in mail.body
    assert "Q1 access review" in mail.body
    assert "401" in mail.body and "You are not authenticated" in mail.body
    assert _remediation_url(org, item.campaign) in mail.body
    assert not [m for m in mailoutbox if reviewer.user.email in m.to]


def test_ticket_failing_again_after_a_retry_tells_the_admins_again(
    jira, connect, revoked_item, decide, admin, mailoutbox, django_capture_on_commit_callbacks
):
    connect(jira, api_token="expired-token")
    item = revoked_item()
    decide(item)
    assert len(mailoutbox) == 1

    with scopes_disabled():
        ticket = Ticket.objects.get(item=item)
    with django_capture_on_commit_callbacks(execute=True):
        services.ticket_retry(ticket=ticket, actor=None)

    assert [n.status for n in _log(Event.TICKET_FAILED)] == [Status.SENT, Status.SENT]
    assert [m.subject for m in mailoutbox] == [f"Remediation ticket failed: {item.application_name}"] * 2


def test_opened_ticket_sends_no_failure_notice(jira, connect, revoked_item, decide, admin, mailoutbox):
    connect(jira)
    item = revoked_item()

    decide(item)

    assert item.ticket_status == "open"
    assert _log(Event.TICKET_FAILED) == []
    assert mailoutbox == []


def test_replace_import_removing_every_revoked_access_announces_all_verified_once(
    jira, connect, revoked_item, decide, org, admin, mailoutbox, django_capture_on_commit_callbacks
):
    connect(jira)
    first = revoked_item(email="gone1@acme.test")
    second = revoked_item(application=first.application, email="gone2@acme.test")
    decide([first, second])
    application = first.application

    with django_capture_on_commit_callbacks(execute=True):
        _import_entitlements(org, [(application.name, "someone@acme.test", "member")])
    with django_capture_on_commit_callbacks(execute=True):
        verification.remediation_verify_for_applications(organization_id=org.pk, application_ids=[application.pk])

    [row] = _log(Event.REMEDIATION_OUTCOME)
    assert (row.recipient, row.status, row.campaign_id) == (ADMIN, Status.SENT, first.campaign_id)
    assert row.title == "Remediation of Q1 access review: all removals verified"
    [mail] = [m for m in mailoutbox if m.subject.startswith("Remediation of")]
    assert mail.to == [ADMIN]
    assert "2 verified removed, 0 action required" in mail.body
    [event] = AuditEvent.objects.filter(action="itsm.remediation_outcome")
    assert event.details == {"outcome": "verified", "verified removed": 2, "action required": 0}


def test_partial_removal_is_announced_once_however_often_verification_runs(
    jira, connect, revoked_item, decide, org, admin, mailoutbox, django_capture_on_commit_callbacks
):
    connect(jira)
    removed = revoked_item(email="gone@acme.test")
    application = removed.application
    kept = revoked_item(application=application, email="stays@acme.test", role="admin")
    decide([removed, kept])
    rows = [(application.name, "stays@acme.test", "admin")]

    with django_capture_on_commit_callbacks(execute=True):
        _import_entitlements(org, rows)
    with django_capture_on_commit_callbacks(execute=True):
        _import_entitlements(org, rows)
    with django_capture_on_commit_callbacks(execute=True):
        verification.remediation_verify_for_applications(organization_id=org.pk, application_ids=[application.pk])

    [row] = _log(Event.REMEDIATION_OUTCOME)
    assert row.title == "Remediation of Q1 access review: partially removed"
    assert "1 verified removed, 1 action required" in row.body
    assert len([m for m in mailoutbox if m.subject.startswith("Remediation of")]) == 1

    # The remaining access disappears later: the new outcome is announced, once.
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            _import_entitlements(org, [(application.name, "someone@acme.test", "member")])

    titles = [n.title for n in _log(Event.REMEDIATION_OUTCOME)]
    assert titles == [
        "Remediation of Q1 access review: partially removed",
        "Remediation of Q1 access review: all removals verified",
    ]


def test_no_removal_verified_is_announced_as_failed(
    revoked_item, decide, org, admin, mailoutbox, django_capture_on_commit_callbacks
):
    item = revoked_item(email="stays@acme.test", role="admin")
    decide(item)

    with django_capture_on_commit_callbacks(execute=True):
        _import_entitlements(org, [(item.application_name, "stays@acme.test", "admin")])

    [row] = _log(Event.REMEDIATION_OUTCOME)
    assert row.title == "Remediation of Q1 access review: removal failed"
    assert "0 verified removed, 1 action required" in row.body
    assert [m.to for m in mailoutbox] == [[ADMIN]]


def test_outcome_waits_until_every_revoked_item_of_the_campaign_is_checked(
    revoked_item, decide, org, admin, mailoutbox, django_capture_on_commit_callbacks
):
    github = revoked_item(email="gone@acme.test")
    slack = revoked_item(email="other@acme.test")
    decide([github, slack])

    with django_capture_on_commit_callbacks(execute=True):
        _import_entitlements(org, [(github.application_name, "someone@acme.test", "member")])

    assert _log(Event.REMEDIATION_OUTCOME) == []
    assert mailoutbox == []

    with django_capture_on_commit_callbacks(execute=True):
        _import_entitlements(org, [(slack.application_name, "someone@acme.test", "member")])

    [row] = _log(Event.REMEDIATION_OUTCOME)
    assert row.title == "Remediation of Q1 access review: all removals verified"
