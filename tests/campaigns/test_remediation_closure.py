# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Remediation closure: remediation owners chosen in the wizard and the API, the `remediating` state, removal
verified by a later import or confirmed by the remediation owner, progress, evidence, queue and notices."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import re
import zipfile

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.decisions import review_item_decide, review_sign_off
from campaigns.models import Campaign, CampaignRemediationOwner, CampaignStatus, ReviewItem
from entitlements.services import inventory_import
from notifications.models import Notification
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401

pytestmark = pytest.mark.django_db

BASE = "/api/v1/orgs/acme/campaigns/"


def _payload(**overrides):
    body = {
        "title": "Q3 review",
        "due_date": (timezone.localdate() + dt.timedelta(days=10)).isoformat(),
        "scope": {"applications": ["GitHub", "Salesforce", "Slack"]},
        "reviewer_strategy": "application_owner",
        "fallback_reviewer": "fallback@acme.test",
    }
    body.update(overrides)
    return body


def _items(campaign, **filters):
    with scopes_disabled():
        return list(ReviewItem.objects.filter(campaign=campaign, **filters).order_by("id"))


def _status(campaign) -> str:
    with scopes_disabled():
        return Campaign.objects.get(pk=campaign.pk).status


def _import_entitlements(org, rows, commit):
    text = "application,identity_email,role,last_used\n" + "".join(f"{a},{e},{r},2026-01-01\n" for a, e, r in rows)
    with scope(org), commit(execute=True):
        inventory_import(organization=org, kind="entitlements", stream=io.BytesIO(text.encode()), mode="replace",
                         file_name="ent.csv")


@pytest.fixture
def owners_member(member):
    return member(Role.REVIEWER, email="it-ops@acme.test")


@pytest.fixture
def review_done(inventory, launched, owners_member, django_capture_on_commit_callbacks):
    """A launched campaign where GitHub's removals go to it-ops (named in the campaign), the rest to the fallback;
    bob's Salesforce access and mia's GitHub access are revoked, everything else approved, every reviewer signed
    off. Returns (campaign, {name: item})."""
    campaign = launched(remediation_owners={"GitHub": "it-ops@acme.test"})
    items = {f"{i.identity_email.split('@')[0]}_{i.application_name.lower()}": i for i in _items(campaign)}
    revoke = {"bob_salesforce", "mia_github"}
    with scope(inventory.org), django_capture_on_commit_callbacks(execute=True):
        for name, item in items.items():
            review_item_decide(item=item, actor=inventory.admin, decision="revoke" if name in revoke else "approve",
                               reason="left" if name in revoke else "")
        reviewers = {i.reviewer_id for i in items.values()}
        for membership in (inventory.owner_member, inventory.fallback, inventory.admin, inventory.mia_member):
            if membership.pk in reviewers:
                review_sign_off(campaign=campaign, actor=membership)
    return campaign, {k: v for k, v in items.items()}


# Choosing remediation owners ---------------------------------------------------------------------------------


def test_launch_records_each_applications_remediation_owner_and_why(inventory, launched, owners_member):
    campaign = launched(remediation_owners={"github": "it-ops@acme.test"}, fallback_remediation_owner="mia@acme.test")
    with scopes_disabled():
        rows = {r.application_name: r for r in CampaignRemediationOwner.objects.filter(campaign=campaign)}
    assert campaign.remediation_owners == {"GitHub": "it-ops@acme.test"}
    assert (rows["GitHub"].owner, rows["GitHub"].source) == (owners_member, "campaign")
    # Salesforce's owner is not a member, Slack names nobody: both go to the fallback remediation owner.
    assert (rows["Salesforce"].owner_email, rows["Salesforce"].source) == ("mia@acme.test", "fallback")
    assert "someone@elsewhere.test cannot remediate" in rows["Salesforce"].note
    assert (rows["Slack"].owner_email, rows["Slack"].source) == ("mia@acme.test", "fallback")


def test_default_remediation_owner_is_the_applications_remediation_owner_else_its_owner(
    inventory, launched, owners_member
):
    with scopes_disabled():
        inventory.salesforce.remediation_owner_email = "it-ops@acme.test"
        inventory.salesforce.save()
    campaign = launched()
    with scopes_disabled():
        rows = {r.application_name: (r.owner_email, r.source) for r in campaign.remediation_owner_rows.all()}
    assert rows["Salesforce"] == ("it-ops@acme.test", "application")
    assert rows["GitHub"] == ("owner@acme.test", "owner")
    # No fallback remediation owner given: the fallback reviewer takes it.
    assert rows["Slack"] == ("fallback@acme.test", "fallback")
    assert campaign.fallback_remediation_owner == inventory.fallback


def test_create_api_takes_remediation_owners_and_shows_them(inventory, owners_member, api_for):
    response = api_for(inventory.admin).post(
        BASE, _payload(remediation_owners={"Slack": "it-ops@acme.test"}, fallback_remediation_owner="mia@acme.test"),
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["remediation_owners"] == {"Slack": "it-ops@acme.test"}
    assert body["fallback_remediation_owner"] == "mia@acme.test"
    assert body["remediation"] is None  # not launched yet


@pytest.mark.parametrize(
    ("owners", "fallback", "message"),
    [
        ({"Jira": "it-ops@acme.test"}, None, "unknown application 'Jira'"),
        ({"GitHub": "nobody@acme.test"}, None, "nobody@acme.test is not a member"),
        ({"GitHub": "auditor@acme.test"}, None, "cannot remediate access"),
        ({}, "not-an-email", "Enter a valid email address"),
        (["it-ops@acme.test"], None, "must be an object"),
    ],
)
def test_create_api_rejects_bad_remediation_owners_and_creates_nothing(
    inventory, owners_member, member, api_for, owners, fallback, message
):
    member(Role.AUDITOR, email="auditor@acme.test")
    with scopes_disabled():
        before = Campaign.objects.count()
    body = _payload(remediation_owners=owners)
    if fallback:
        body["fallback_remediation_owner"] = fallback
    response = api_for(inventory.admin).post(BASE, body, format="json")
    assert response.status_code == 400
    assert message in str(response.json())
    with scopes_disabled():
        assert Campaign.objects.count() == before


def test_wizard_saves_remediation_owners_and_previews_them(inventory, owners_member, client_for):
    client = client_for(inventory.admin)
    form = {
        "title": "Wizard review", "due_date": (timezone.localdate() + dt.timedelta(days=10)).isoformat(),
        "applications": ["GitHub", "Slack"], "reviewer_strategy": "application_owner",
        "fallback_reviewer": "fallback@acme.test", "default_outcome": "none",
        "remediation_owners": "Slack: it-ops@acme.test", "fallback_remediation_owner": "mia@acme.test",
    }
    preview = client.post("/o/acme/campaigns/preview/", form, HTTP_HX_REQUEST="true")
    html = preview.content.decode()
    assert re.search(r'data-remediation-owner="Slack"[^>]*>it-ops@acme.test', html)
    assert re.search(r'data-remediation-owner="GitHub"[^>]*>owner@acme.test', html)
    response = client.post("/o/acme/campaigns/new/", form)
    assert response.status_code == 302
    with scopes_disabled():
        campaign = Campaign.objects.get(title="Wizard review")
    assert campaign.remediation_owners == {"Slack": "it-ops@acme.test"}
    assert campaign.fallback_remediation_owner.user.email == "mia@acme.test"


def test_wizard_names_a_bad_remediation_owner_line(inventory, client_for):
    form = {
        "title": "Bad", "due_date": (timezone.localdate() + dt.timedelta(days=10)).isoformat(),
        "reviewer_strategy": "application_owner", "fallback_reviewer": "fallback@acme.test",
        "default_outcome": "none", "remediation_owners": "GitHub it-ops@acme.test",
    }
    response = client_for(inventory.admin).post("/o/acme/campaigns/new/", form)
    assert response.status_code == 200
    assert "Line 1: write “Application: e-mail”." in response.content.decode()
    with scopes_disabled():
        assert not Campaign.objects.filter(title="Bad").exists()


# The remediating state ---------------------------------------------------------------------------------------


def test_last_sign_off_with_revokes_makes_the_campaign_remediating(review_done):
    campaign, _items_by_name = review_done
    assert _status(campaign) == CampaignStatus.REMEDIATING
    assert AuditEvent.objects.filter(action="campaign_remediating", target_id=str(campaign.pk)).exists()
    assert not AuditEvent.objects.filter(action="campaign_completed", target_id=str(campaign.pk)).exists()


def test_last_sign_off_without_revokes_completes(inventory, launched, django_capture_on_commit_callbacks):
    campaign = launched()
    with scope(inventory.org), django_capture_on_commit_callbacks(execute=True):
        for item in _items(campaign):
            review_item_decide(item=item, actor=inventory.admin, decision="approve")
        for membership in (inventory.owner_member, inventory.fallback):
            review_sign_off(campaign=campaign, actor=membership)
    assert _status(campaign) == CampaignStatus.COMPLETED


def test_close_with_revokes_is_remediating_until_a_later_import_verifies_every_removal(
    inventory, launched, django_capture_on_commit_callbacks
):
    campaign = launched(scope={"applications": ["Salesforce"]}, default_outcome="revoke")
    with scope(inventory.org), django_capture_on_commit_callbacks(execute=True):
        services.campaign_close(campaign=campaign, actor=inventory.admin)
    assert _status(campaign) == CampaignStatus.REMEDIATING
    # bob's access is gone from the next full import; ghost's is still there.
    _import_entitlements(inventory.org, [("Salesforce", "ghost@acme.test", "user")], django_capture_on_commit_callbacks)
    assert {i.identity_email: i.remediation_status for i in _items(campaign)} == {
        "bob@acme.test": "verified_removed", "ghost@acme.test": "action_required"}
    assert _status(campaign) == CampaignStatus.REMEDIATING
    _import_entitlements(inventory.org, [("Salesforce", "ann@acme.test", "user")], django_capture_on_commit_callbacks)
    assert _status(campaign) == CampaignStatus.COMPLETED
    event = AuditEvent.objects.get(action="campaign_completed", target_id=str(campaign.pk))
    assert event.details == {"how": "every revoked access proven removed", "verified_removed": 2,
                             "confirmed_removed": 0}


# Confirming a removal ----------------------------------------------------------------------------------------


def _confirm_url(campaign, item):
    return f"{BASE}{campaign.pk}/items/{item.pk}/confirm-removed/"


def test_remediation_owner_confirms_removal_and_the_campaign_completes(
    review_done, inventory, owners_member, api_for, django_capture_on_commit_callbacks
):
    campaign, items = review_done
    with django_capture_on_commit_callbacks(execute=True):
        first = api_for(owners_member).post(_confirm_url(campaign, items["mia_github"]),
                                            {"comment": "Removed from the GitHub org on 2 May"}, format="json")
    assert first.status_code == 200, first.json()
    assert first.json()["remediation_status"] == "confirmed_removed"
    assert first.json()["removal_confirmed_by"] == "it-ops@acme.test"
    assert first.json()["campaign_status"] == "remediating"  # bob's Salesforce access is still open

    detail = api_for(inventory.admin).get(f"{BASE}{campaign.pk}/").json()
    assert detail["remediation"] == {"revoked": 2, "proven": 1, "verified_removed": 0, "confirmed_removed": 1,
                                     "action_required": 0, "pending": 1, "percent": 50}
    assignments = {r["application_name"]: (r["owner_email"], r["open"]) for r in detail["remediation_owner_assignments"]}
    assert assignments["GitHub"] == ("it-ops@acme.test", 0)
    assert assignments["Salesforce"] == ("fallback@acme.test", 1)

    with django_capture_on_commit_callbacks(execute=True):
        last = api_for(inventory.fallback).post(_confirm_url(campaign, items["bob_salesforce"]),
                                                {"comment": "Deactivated in Salesforce setup"}, format="json")
    assert last.status_code == 200
    assert last.json()["campaign_status"] == "completed"
    event = AuditEvent.objects.get(action="remediation_confirmed_removed", target_id=str(items["bob_salesforce"].pk))
    assert event.actor_email == "fallback@acme.test"
    assert event.details["comment"] == "Deactivated in Salesforce setup"


@pytest.mark.parametrize(
    ("body", "message"),
    [({}, "comment"), ({"comment": "   "}, "may not be blank"), ({"comment": "x" * 4001}, "comment")],
)
def test_confirm_removed_needs_a_comment_and_changes_nothing_without_it(
    review_done, owners_member, api_for, body, message
):
    campaign, items = review_done
    response = api_for(owners_member).post(_confirm_url(campaign, items["mia_github"]), body, format="json")
    assert response.status_code == 400
    assert message in str(response.json())
    assert _items(campaign, pk=items["mia_github"].pk)[0].remediation_status == "pending"


def test_only_the_remediation_owner_or_an_admin_confirms(review_done, inventory, owners_member, member, api_for):
    campaign, items = review_done
    # it-ops owns GitHub only; the security analyst is not an admin.
    wrong_owner = api_for(owners_member).post(_confirm_url(campaign, items["bob_salesforce"]),
                                              {"comment": "done"}, format="json")
    assert wrong_owner.status_code == 403
    assert "Only the remediation owner of Salesforce" in wrong_owner.json()["detail"]
    analyst = api_for(inventory.mia_member).post(_confirm_url(campaign, items["bob_salesforce"]),
                                                 {"comment": "done"}, format="json")
    assert analyst.status_code == 403
    admin = api_for(inventory.admin).post(_confirm_url(campaign, items["bob_salesforce"]),
                                          {"comment": "done for the owner"}, format="json")
    assert admin.status_code == 200


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.VIEWER])
def test_read_only_roles_cannot_confirm_removals(review_done, member, api_for, role):
    campaign, items = review_done
    response = api_for(member(role)).post(_confirm_url(campaign, items["mia_github"]), {"comment": "x"},
                                          format="json")
    assert response.status_code == 403


def test_outsider_gets_404_for_confirm_removed(review_done, outsider, api_for):
    campaign, items = review_done
    response = api_for(outsider).post(
        f"/api/v1/orgs/globex/campaigns/{campaign.pk}/items/{items['mia_github'].pk}/confirm-removed/",
        {"comment": "x"}, format="json")
    assert response.status_code == 404


def test_confirming_twice_or_an_approved_item_is_refused(review_done, owners_member, inventory, api_for):
    campaign, items = review_done
    url = _confirm_url(campaign, items["mia_github"])
    assert api_for(owners_member).post(url, {"comment": "gone"}, format="json").status_code == 200
    again = api_for(owners_member).post(url, {"comment": "gone again"}, format="json")
    assert again.status_code == 409 and "already proven" in again.json()["detail"]
    approved = api_for(inventory.admin).post(_confirm_url(campaign, items["ann_github"]), {"comment": "x"},
                                             format="json")
    assert approved.status_code == 400 and "only revoked access" in str(approved.json())


def test_nobody_confirms_the_removal_of_their_own_access(inventory, launched, api_for,
                                                         django_capture_on_commit_callbacks):
    campaign = launched(scope={"applications": ["GitHub"]}, default_outcome="revoke",
                        remediation_owners={"GitHub": "mia@acme.test"})
    with scope(inventory.org), django_capture_on_commit_callbacks(execute=True):
        services.campaign_close(campaign=campaign, actor=inventory.admin)
    [own] = _items(campaign, identity_email="mia@acme.test")
    response = api_for(inventory.mia_member).post(_confirm_url(campaign, own), {"comment": "x"}, format="json")
    assert response.status_code == 403 and "your own access" in response.json()["detail"]


def test_later_import_upgrades_a_manual_confirmation_to_verified(
    review_done, inventory, owners_member, api_for, django_capture_on_commit_callbacks
):
    campaign, items = review_done
    api_for(owners_member).post(_confirm_url(campaign, items["mia_github"]), {"comment": "gone"}, format="json")
    rows = [("GitHub", "ann@acme.test", "admin"), ("GitHub", "ci-bot@acme.test", "deploy"),
            ("GitHub", "owner@acme.test", "owner")]
    _import_entitlements(inventory.org, rows, django_capture_on_commit_callbacks)
    [item] = _items(campaign, pk=items["mia_github"].pk)
    assert item.remediation_status == "verified_removed"
    assert item.removal_confirmed_by_email == "it-ops@acme.test"  # the owner's word stays on record


# Pages --------------------------------------------------------------------------------------------------------


def test_remediation_owner_confirms_from_the_queue_page(
    review_done, owners_member, client_for, django_capture_on_commit_callbacks
):
    campaign, items = review_done
    client = client_for(owners_member)
    queue = client.get("/o/acme/remediation/").content.decode()
    mia = items["mia_github"]
    assert f"/o/acme/campaigns/{campaign.pk}/items/{mia.pk}/confirm-removed/" in queue
    assert "bob@acme.test" not in queue  # Salesforce is not theirs
    page = client.get(f"/o/acme/campaigns/{campaign.pk}/items/{mia.pk}/confirm-removed/")
    assert page.status_code == 200 and "How was the access removed?" in page.content.decode()
    empty = client.post(f"/o/acme/campaigns/{campaign.pk}/items/{mia.pk}/confirm-removed/", {"comment": ""})
    assert empty.status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(f"/o/acme/campaigns/{campaign.pk}/items/{mia.pk}/confirm-removed/",
                           {"comment": "Removed in the GitHub admin console"})
    assert done.status_code == 302
    assert _items(campaign, pk=mia.pk)[0].remediation_status == "confirmed_removed"
    assert "Confirmed removed" in client.get("/o/acme/remediation/?state=confirmed_removed").content.decode()


def test_confirm_page_refuses_other_roles_and_organizations(review_done, member, outsider, client_for):
    campaign, items = review_done
    url = f"/o/acme/campaigns/{campaign.pk}/items/{items['mia_github'].pk}/confirm-removed/"
    assert client_for(member(Role.VIEWER)).get(url).status_code == 403
    assert client_for(outsider).get(url).status_code == 404
    other_org = f"/o/globex/campaigns/{campaign.pk}/items/{items['mia_github'].pk}/confirm-removed/"
    assert client_for(outsider).get(other_org).status_code == 404


def test_campaign_page_shows_remediation_progress(review_done, inventory, client_for):
    campaign, _items_by_name = review_done
    html = client_for(inventory.admin).get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    assert "Remediation progress" in html
    assert '<strong data-remediation="proven">0</strong> of <strong data-remediation="revoked">2</strong>' in html
    assert "it-ops@acme.test" in html


# Evidence ------------------------------------------------------------------------------------------------------


@pytest.fixture
def signing_key(settings):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(key.private_bytes_raw()).decode()
    return key


def test_evidence_package_states_how_each_removal_was_proven(
    review_done, inventory, owners_member, api_for, django_capture_on_commit_callbacks, signing_key
):
    campaign, items = review_done
    api_for(owners_member).post(_confirm_url(campaign, items["mia_github"]),
                                {"comment": "=HYPERLINK(\"x\") removed by hand"}, format="json")
    _import_entitlements(inventory.org, [("Salesforce", "ghost@acme.test", "user")],
                         django_capture_on_commit_callbacks)
    response = api_for(inventory.admin).get(f"{BASE}{campaign.pk}/export.zip")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    rows = {r["identity_email"]: r for r in csv.DictReader(io.StringIO(archive.read("removals.csv").decode()))}
    assert rows["mia@acme.test"]["proof"] == "manually confirmed"
    assert rows["mia@acme.test"]["confirmed_by"] == "it-ops@acme.test"
    assert rows["mia@acme.test"]["confirmation_comment"].startswith("'=HYPERLINK")  # formula neutralised
    assert rows["bob@acme.test"]["proof"] == "verified by import or sync"
    assert rows["bob@acme.test"]["remediation_owner"] == "fallback@acme.test"
    assert rows["bob@acme.test"]["proven_at"]
    assert "decision_quality.csv" in archive.namelist()
    assert "removals.csv" in archive.read("SHA256SUMS").decode()


# Notifications ---------------------------------------------------------------------------------------------------


def test_remediation_owners_are_told_once_then_reminded_and_escalated(
    review_done, inventory, owners_member, django_capture_on_commit_callbacks
):
    from notifications.remediation import REMOVAL_DUE_DAYS, removal_cadence_run

    campaign, _items_by_name = review_done
    with scopes_disabled():
        needed = Notification.objects.filter(campaign=campaign, event="removal_needed", channel="email")
        assert sorted(needed.values_list("recipient", flat=True)) == ["fallback@acme.test", "it-ops@acme.test"]
        assert "1 access item revoked" in needed.get(recipient="it-ops@acme.test").body
    with scope(inventory.org):
        campaign = Campaign.objects.select_related("organization").get(pk=campaign.pk)
        start = campaign.remediating_at
        assert removal_cadence_run(campaign=campaign, now=start + dt.timedelta(hours=1)) == {
            "removal_needed": 0, "reminders": 0, "escalated": 0}
        assert removal_cadence_run(campaign=campaign, now=start + dt.timedelta(days=3, hours=1))["reminders"] == 2
        removal_cadence_run(campaign=campaign, now=start + dt.timedelta(days=3, hours=2))
        late = start + dt.timedelta(days=REMOVAL_DUE_DAYS + 3, hours=1)
        assert removal_cadence_run(campaign=campaign, now=late)["escalated"] == 2
        removal_cadence_run(campaign=campaign, now=late)
    with scopes_disabled():
        # One reminder per owner and period (day 3 and day 17), however often the cadence runs in a period.
        reminders = Notification.objects.filter(campaign=campaign, event="removal_reminder", channel="email")
        assert sorted(reminders.values_list("recipient", flat=True)) == [
            "fallback@acme.test", "fallback@acme.test", "it-ops@acme.test", "it-ops@acme.test"]
    with scopes_disabled():
        escalated = Notification.objects.filter(campaign=campaign, event="removal_escalated", channel="email")
        # The creator (the admin) hears about both owners; the fallback owner also about it-ops.
        assert sorted(escalated.values_list("recipient", flat=True)) == [
            "admin@acme.test", "admin@acme.test", "fallback@acme.test"]


def test_remediation_owners_can_change_until_launch(inventory, owners_member, make_campaign, launched, api_for):
    draft = make_campaign()
    url = f"{BASE}{draft.pk}/"
    changed = api_for(inventory.admin).patch(
        url, {"remediation_owners": {"Slack": "it-ops@acme.test"}, "fallback_remediation_owner": "mia@acme.test"},
        format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["remediation_owners"] == {"Slack": "it-ops@acme.test"}
    assert changed.json()["fallback_remediation_owner"] == "mia@acme.test"
    cleared = api_for(inventory.admin).patch(url, {"fallback_remediation_owner": None}, format="json")
    assert cleared.json()["fallback_remediation_owner"] == "fallback@acme.test"  # back to the fallback reviewer
    active = launched()
    locked = api_for(inventory.admin).patch(f"{BASE}{active.pk}/", {"remediation_owners": {}}, format="json")
    assert locked.status_code == 409


def test_remediating_campaigns_have_their_own_tab_and_status_filter(review_done, inventory, client_for, api_for):
    campaign, _items_by_name = review_done
    page = client_for(inventory.admin).get("/o/acme/campaigns/?tab=remediating").content.decode()
    assert campaign.title in page and "Remediating" in page
    listed = api_for(inventory.admin).get(f"{BASE}?status=remediating").json()["results"]
    assert [c["id"] for c in listed] == [str(campaign.pk)]
    assert listed[0]["remediation"] is None  # progress is on the single campaign only


def test_quarter_hour_cadence_covers_remediating_campaigns(review_done, inventory):
    from notifications.tasks import campaign_cadence, run_cadence

    campaign, _items_by_name = review_done
    assert run_cadence() >= 1
    with scopes_disabled():
        Campaign.objects.filter(pk=campaign.pk).update(remediating_at=timezone.now() - dt.timedelta(days=4))
    sent = campaign_cadence(inventory.org.pk, str(campaign.pk))
    assert sent["reminders"] == 2 and sent["removal_needed"] == 0


def test_import_that_still_lists_confirmed_access_reopens_the_campaign(
    review_done, inventory, owners_member, api_for, django_capture_on_commit_callbacks
):
    campaign, items = review_done
    with django_capture_on_commit_callbacks(execute=True):
        api_for(owners_member).post(_confirm_url(campaign, items["mia_github"]), {"comment": "gone"}, format="json")
        api_for(inventory.fallback).post(_confirm_url(campaign, items["bob_salesforce"]), {"comment": "gone"},
                                         format="json")
    assert _status(campaign) == CampaignStatus.COMPLETED
    # The next Salesforce import still lists bob's access: the confirmation is contradicted.
    _import_entitlements(inventory.org, [("Salesforce", "bob@acme.test", "user")], django_capture_on_commit_callbacks)
    [bob] = _items(campaign, pk=items["bob_salesforce"].pk)
    assert bob.remediation_status == "action_required"
    assert bob.removal_confirmed_by_email == "fallback@acme.test"  # the confirmation stays on record
    assert _status(campaign) == CampaignStatus.REMEDIATING
    assert AuditEvent.objects.filter(action="itsm.removal_confirmation_contradicted").exists()
    reopened = AuditEvent.objects.filter(action="campaign_remediating", target_id=str(campaign.pk)).last()
    assert reopened.details["how"].startswith("reopened: an import still lists access confirmed removed")


def test_admin_reminds_a_remediation_owner_from_the_campaign_page_and_the_api(
    review_done, inventory, owners_member, client_for, api_for
):
    campaign, _items_by_name = review_done
    client = client_for(inventory.admin)
    page = client.get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    assert "Send reminder to it-ops@acme.test for GitHub" in page
    sent = client.post(f"/o/acme/campaigns/{campaign.pk}/remind-removal/",
                       {"remediation_owner": owners_member.pk}, HTTP_HX_REQUEST="true")
    assert sent.status_code == 200 and "Reminder sent" in sent.content.decode()
    url = f"{BASE}{campaign.pk}/remind-removal/"
    again = api_for(inventory.admin).post(url, {"remediation_owner": "it-ops@acme.test"}, format="json")
    assert again.status_code == 202
    with scopes_disabled():
        # One reminder per owner and day, however often the button is pressed.
        assert Notification.objects.filter(campaign=campaign, event="removal_reminder", channel="email").count() == 1
    nothing = api_for(inventory.admin).post(url, {"remediation_owner": "mia@acme.test"}, format="json")
    assert nothing.status_code == 400 and "no revoked access left" in str(nothing.json())


def test_removal_reminders_refuse_other_roles_organizations_and_states(
    review_done, inventory, member, outsider, api_for, client_for, launched
):
    campaign, _items_by_name = review_done
    body = {"remediation_owner": "it-ops@acme.test"}
    assert api_for(member(Role.AUDITOR)).post(f"{BASE}{campaign.pk}/remind-removal/", body,
                                              format="json").status_code == 403
    assert client_for(member(Role.VIEWER)).post(f"/o/acme/campaigns/{campaign.pk}/remind-removal/",
                                                {"remediation_owner": "it-ops@acme.test"}).status_code == 403
    assert api_for(outsider).post(f"/api/v1/orgs/globex/campaigns/{campaign.pk}/remind-removal/", body,
                                  format="json").status_code == 404
    active = launched()
    refused = api_for(inventory.admin).post(f"{BASE}{active.pk}/remind-removal/", body, format="json")
    assert refused.status_code == 400 and "remediating campaigns" in str(refused.json())
