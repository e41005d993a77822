"""Guest reviewers are reminded, warned when overdue, escalated and reminded by hand exactly like members; their
messages carry their personal link (read here from a real SMTP server on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from campaigns.guests import guest_link_issue
from campaigns.models import GuestReviewer, ItemReassignment, ReviewItem
from notifications.models import Event, Notification, NotificationSettings
from notifications.tasks import run_cadence
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from ..factories import CampaignFactory, ReviewItemFactory

pytestmark = pytest.mark.django_db(transaction=True)

LINK = re.compile(r"https?://[^\s]+/guest/[^\s]+/")
GAIL = "gail@partner.test"


def at(day: int, hour: int = 10):
    return time_machine.travel(dt.datetime(2026, 3, day, hour, 0, tzinfo=dt.UTC), tick=False)


def link_path(message: dict) -> str:
    url = LINK.search(message["text/plain"]).group(0)
    return "/" + url.split("/", 3)[3]


@pytest.fixture
def guest(org, campaign):
    """gail (not a member) reviews two pending GitHub items of the campaign through her link."""
    with scopes_disabled():
        gail = GuestReviewer.objects.create(organization=org, campaign=campaign, email=GAIL)
        for n in range(2):
            ReviewItemFactory(organization=org, campaign=campaign, reviewer=None, guest=gail, reviewer_email=GAIL,
                              application_name="GitHub", identity_email=f"contractor{n}@partner.test")
        with time_machine.travel(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC), tick=False):
            gail.launch_link = guest_link_issue(guest=gail)
    return gail


def test_guest_gets_periodic_reminder_carrying_the_same_personal_link(org, campaign, guest, mailbox):
    with at(5):
        run_cadence()
        run_cadence()  # the beat firing twice
    (mail,) = mailbox.to(GAIL)
    assert mail["subject"] == "Reminder: 2 access items waiting in Q1 access review"
    assert guest.launch_link in mail["text/plain"]  # the link sent at launch, not a replacement
    with time_machine.travel(dt.datetime(2026, 3, 5, 11, 0, tzinfo=dt.UTC), tick=False):
        page = Client().get(link_path(mail))
    assert page.status_code == 200
    assert "contractor0@partner.test" in page.content.decode()
    with scope(org):
        row = Notification.objects.get(recipient=GAIL)
    assert row.recipient_guest_id == guest.pk and row.channel == "email"
    assert "/guest/" not in row.action_url  # the log never holds a working link


def test_revoked_guest_is_not_reminded(org, campaign, guest, mailbox):
    with scopes_disabled():
        GuestReviewer.objects.filter(pk=guest.pk).update(revoked_at=dt.datetime(2026, 3, 3, tzinfo=dt.UTC),
                                                         token_hash="", link_nonce="")
    with at(5):
        run_cadence()
    assert mailbox.to(GAIL) == []
    assert mailbox.to("rita@acme.test")  # members still are


def test_guest_overdue_notice_and_escalation_moves_their_open_items(org, campaign, guest, people, mailbox):
    with scopes_disabled():
        NotificationSettings.objects.create(organization=org, escalation_reassign=True,
                                            fallback_reviewer=people["admin"])
    with at(17):
        run_cadence()
    assert [m["subject"] for m in mailbox.to(GAIL)] == ["Overdue: Q1 access review"]
    assert LINK.search(mailbox.to(GAIL)[0]["text/plain"])
    assert "6 access items are still pending" in next(
        m for m in mailbox.to("admin@acme.test") if m["subject"].startswith("Campaign overdue"))["text/plain"]
    with at(19):
        run_cadence()
        run_cadence()
    escalated = [m for m in mailbox.to("admin@acme.test") if m["subject"].startswith("Escalated")]
    assert any("gail@partner.test did not decide 2 access items" in m["text/plain"] for m in escalated)
    with scope(org):
        moved = ReviewItem.objects.filter(campaign=campaign, identity_email__startswith="contractor")
        assert {(i.reviewer_id, i.guest_id) for i in moved} == {(people["admin"].pk, None)}
        hops = ItemReassignment.objects.filter(item__in=moved)
        assert {(h.from_email, h.to_email, h.kind) for h in hops} == {(GAIL, "admin@acme.test", "escalation")}
        assert Notification.objects.filter(event=Event.ESCALATED, recipient="admin@acme.test").count() == 2
    with scopes_disabled():
        audit = AuditEvent.objects.get(action="campaign.escalated", organization=org, details__reviewer=GAIL)
    assert audit.details["reviewer_kind"] == "guest" and audit.details["reassigned"] is True


def _remind_url(campaign):
    return reverse("campaign_remind", args=["acme", campaign.pk])


def test_send_reminder_button_on_the_guest_row_reaches_the_guest(org, campaign, guest, people, client_for, mailbox):
    client = client_for(people["admin"])
    page = client.get(reverse("campaign_detail", args=["acme", campaign.pk])).content.decode()
    assert 'aria-label="Send reminder to gail@partner.test"' in page
    response = client.post(_remind_url(campaign), {"reviewer": GAIL}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Reminder sent" in response.content.decode()
    (mail,) = mailbox.to(GAIL)
    assert mail["subject"] == "Reminder: 2 access items waiting in Q1 access review"
    assert guest.launch_link in mail["text/plain"]
    again = client.post(_remind_url(campaign), {"reviewer": GAIL}, HTTP_HX_REQUEST="true")
    assert "Already reminded today" in again.content.decode()
    assert len(mailbox.to(GAIL)) == 1


def test_remind_api_reaches_guests_by_email_and_by_application(org, campaign, guest, people, api_for, mailbox):
    api = api_for(people["admin"])
    url = f"/api/v1/orgs/acme/campaigns/{campaign.pk}/remind/"
    answer = api.post(url, {"application": "GitHub"}, format="json")
    assert answer.status_code == 202
    assert answer.json()["reminded"] == [GAIL, "rita@acme.test"]
    assert [m["subject"] for m in mailbox.to(GAIL)] == ["Reminder: 2 access items waiting in Q1 access review"]
    again = api.post(url, {"reviewer": GAIL}, format="json")
    assert again.json() == {"reminded": [], "already_reminded_today": [GAIL]}
    unknown = api.post(url, {"reviewer": "nobody@partner.test"}, format="json")
    assert unknown.status_code == 400
    assert "nobody@partner.test" in unknown.json()["errors"]["reviewer"][0]


def test_remind_api_refuses_a_revoked_guest_naming_the_problem(org, campaign, guest, people, api_for, mailbox):
    with scopes_disabled():
        GuestReviewer.objects.filter(pk=guest.pk).update(revoked_at=dt.datetime(2026, 3, 3, tzinfo=dt.UTC))
    answer = api_for(people["admin"]).post(f"/api/v1/orgs/acme/campaigns/{campaign.pk}/remind/",
                                           {"reviewer": GAIL}, format="json")
    assert answer.status_code == 400
    assert "The link of gail@partner.test is revoked" in answer.json()["detail"]
    assert mailbox.to(GAIL) == []


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.AUDITOR, Role.VIEWER])
def test_reminding_a_guest_needs_manage_campaigns(org, campaign, guest, member, api_for, client_for, mailbox, role):
    who = member(role)
    assert api_for(who).post(f"/api/v1/orgs/acme/campaigns/{campaign.pk}/remind/", {"reviewer": GAIL},
                             format="json").status_code == 403
    assert client_for(who).post(_remind_url(campaign), {"reviewer": GAIL}).status_code == 403
    assert mailbox.to(GAIL) == []


def test_reminding_a_guest_is_404_for_outsiders_and_other_campaigns(org, other_org, campaign, guest, people,
                                                                    outsider, api_for, client_for, mailbox):
    assert api_for(outsider).post(f"/api/v1/orgs/acme/campaigns/{campaign.pk}/remind/", {"reviewer": GAIL},
                                  format="json").status_code == 404
    assert client_for(outsider).post(_remind_url(campaign), {"reviewer": GAIL}).status_code == 404
    with scopes_disabled():
        other = CampaignFactory(organization=org, status="active")
    # A guest of another campaign is not a reviewer of this one.
    answer = api_for(people["admin"]).post(f"/api/v1/orgs/acme/campaigns/{other.pk}/remind/", {"reviewer": GAIL},
                                           format="json")
    assert answer.status_code == 400
    assert mailbox.to(GAIL) == []
