"""A delegate's decisions record "on behalf of" the member who delegated: in the item, its history, the items API,
the CSV export and the evidence package, covered by the decision hash chain."""

from __future__ import annotations

import base64
import csv
import io
import json
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.utils import timezone

from campaigns.models import DecisionEvent
from evidence import formats
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .review_support import active_campaign, add_items, assert_chain_intact, events_of, fresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def signing_key(settings):
    key = Ed25519PrivateKey.generate()
    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(key.private_bytes_raw()).decode()
    return key


@pytest.fixture
def delegated(org, member):
    """mara delegated to dev with her open items moved: dev reviews mara's three items on her behalf."""
    admin = member(Role.ADMIN)
    mara = member(Role.REVIEWER, email="mara@acme.test")
    dev = member(Role.REVIEWER, email="dev@acme.test")
    campaign = active_campaign(org, title="Q2 review", created_by=admin.user)
    items = add_items(campaign, mara, 3)
    own = add_items(campaign, dev, 1)
    with scopes_disabled():
        from campaigns.delegation import delegation_create

        delegation_create(member=mara, delegate="dev@acme.test", starts_on=timezone.localdate(), ends_on=None,
                          move_open_items=True)
    return {"admin": admin, "mara": mara, "dev": dev, "campaign": campaign, "items": items, "own": own[0]}


def item_url(campaign, item, suffix=""):
    return f"/api/v1/orgs/acme/campaigns/{campaign.pk}/items/{item.pk}/{suffix}"


def test_a_delegate_deciding_one_item_decides_on_behalf_of_the_delegator(delegated, api_for, client_for):
    campaign, item = delegated["campaign"], delegated["items"][0]
    assert fresh(item).delegated_from_email == "mara@acme.test"
    answer = api_for(delegated["dev"]).post(item_url(campaign, item, "decision/"),
                                            {"decision": "revoke", "reason": "left the team"}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["decided_by"] == "dev@acme.test"
    assert answer.json()["decided_on_behalf_of"] == "mara@acme.test"
    detail = api_for(delegated["dev"]).get(item_url(campaign, item)).json()
    assert [(h["actor_email"], h["on_behalf_of_email"]) for h in detail["history"]] == [
        ("dev@acme.test", "mara@acme.test")]
    page = client_for(delegated["dev"]).get(f"/o/acme/campaigns/{campaign.pk}/items/{item.pk}/").content.decode()
    assert "dev@acme.test on behalf of mara@acme.test" in page
    with scopes_disabled():
        audit = AuditEvent.objects.get(action="campaign_decision")
    assert audit.details["on_behalf_of"] == "mara@acme.test"
    assert_chain_intact(campaign)


def test_a_delegate_deciding_in_bulk_records_the_delegator_only_on_delegated_items(delegated, api_for):
    campaign = delegated["campaign"]
    answer = api_for(delegated["dev"]).post(
        f"/api/v1/orgs/acme/campaigns/{campaign.pk}/bulk-decision/",
        {"decision": "approve", "reason": "still needed", "filter": {"reviewer": "me"}}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["updated"] == 4
    by_item = {e.item_id: e.on_behalf_of_email for e in events_of(campaign)}
    assert by_item == {**{i.pk: "mara@acme.test" for i in delegated["items"]}, delegated["own"].pk: ""}
    assert fresh(delegated["own"]).decided_on_behalf_of_email == ""
    assert {fresh(i).decided_on_behalf_of_email for i in delegated["items"]} == {"mara@acme.test"}
    listed = api_for(delegated["dev"]).get(f"/api/v1/orgs/acme/campaigns/{campaign.pk}/items/").json()["results"]
    assert sorted((r["decided_on_behalf_of"] or "") for r in listed) == ["", *["mara@acme.test"] * 3]
    assert_chain_intact(campaign)


def test_an_admin_deciding_a_delegated_item_decides_for_no_one(delegated, api_for):
    campaign, item = delegated["campaign"], delegated["items"][1]
    api_for(delegated["admin"]).post(item_url(campaign, item, "decision/"), {"decision": "approve"}, format="json")
    assert fresh(item).decided_on_behalf_of_email == ""
    assert events_of(campaign)[-1].on_behalf_of_email == ""


def test_a_reassignment_after_the_delegation_ends_the_on_behalf(delegated, member, api_for):
    member(Role.REVIEWER, email="ravi@acme.test")
    campaign, item = delegated["campaign"], delegated["items"][2]
    moved = api_for(delegated["dev"]).post(item_url(campaign, item, "reassign/"),
                                           {"to": "ravi@acme.test", "reason": "knows the app"}, format="json")
    assert moved.status_code == 200, moved.content
    assert fresh(item).delegated_from_email == ""
    ravi = member(Role.REVIEWER, email="ravi@acme.test")
    api_for(ravi).post(item_url(campaign, item, "decision/"), {"decision": "approve"}, format="json")
    assert fresh(item).decided_on_behalf_of_email == ""


def test_chained_delegation_moves_keep_the_first_delegator(delegated, member):
    member(Role.REVIEWER, email="zoe@acme.test")
    with scopes_disabled():
        from campaigns.delegation import delegation_create

        delegation_create(member=delegated["dev"], delegate="zoe@acme.test", starts_on=timezone.localdate(),
                          ends_on=None, move_open_items=True)
    item = fresh(delegated["items"][0])
    assert (item.reviewer_email, item.delegated_from_email) == ("zoe@acme.test", "mara@acme.test")
    assert fresh(delegated["own"]).delegated_from_email == "dev@acme.test"


def test_csv_and_evidence_carry_on_behalf_of_and_the_package_verifies(delegated, api_for, client_for, member,
                                                                      signing_key, tmp_path, capsys):
    campaign, item = delegated["campaign"], delegated["items"][0]
    api_for(delegated["dev"]).post(item_url(campaign, item, "decision/"), {"decision": "approve"}, format="json")
    api_for(delegated["dev"]).post(item_url(campaign, delegated["own"], "decision/"), {"decision": "approve"},
                                   format="json")
    auditor = client_for(member(Role.AUDITOR))
    response = auditor.get(f"/o/acme/campaigns/{campaign.pk}/export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {r["identity_email"]: r["on_behalf_of"] for r in rows if r["decision"]} == {
        item.identity_email: "mara@acme.test", delegated["own"].identity_email: ""}
    package = auditor.get(f"/o/acme/campaigns/{campaign.pk}/export.zip")
    assert package.status_code == 200
    path = tmp_path / "evidence.zip"
    path.write_bytes(b"".join(package.streaming_content) if package.streaming else package.content)
    with zipfile.ZipFile(path) as archive:
        log = list(csv.DictReader(io.StringIO(archive.read("decisions_log.csv").decode())))
        manifest = json.loads(archive.read("manifest.json"))
    assert [(r["actor_email"], r["on_behalf_of_email"]) for r in log] == [
        ("dev@acme.test", "mara@acme.test"), ("dev@acme.test", "")]
    assert "on_behalf_of_email" in manifest["decisions_log_hashed_columns"]
    key = tmp_path / "key.pem"
    key.write_text(formats.public_key_pem(signing_key))
    call_command("verify_evidence", str(path), "--public-key", str(key))
    assert capsys.readouterr().out.startswith("OK ")
    # Changing who it was decided for breaks the chain.
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "decisions_log.csv":
                data = data.replace(b"mara@acme.test", b"mary@acme.test")
            dst.writestr(info, data)
    assert formats.verify_package(tampered, key.read_text())


def test_history_events_store_on_behalf_of(delegated, api_for):
    campaign, item = delegated["campaign"], delegated["items"][0]
    api_for(delegated["dev"]).post(item_url(campaign, item, "decision/"), {"decision": "approve"}, format="json")
    with scopes_disabled():
        event = DecisionEvent.objects.get(item=item)
    assert (event.actor_email, event.on_behalf_of_email) == ("dev@acme.test", "mara@acme.test")


def test_sql_writers_that_do_not_name_the_new_columns_still_insert(delegated):
    """The benchmark's raw INSERT ... SELECT and set-based snapshot statements name only the columns they set."""
    from django.db import connection

    campaign, item = delegated["campaign"], delegated["items"][0]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DecisionEvent._meta.db_table} (organization_id, campaign_id, item_id, decision, reason, "
            "comment, actor_email, actor_role, kind, created_at, prev_hash, hash) "
            "VALUES (%s, %s, %s, 'approve', '', '', 'dev@acme.test', 'reviewer', 'bulk', now(), '', '')",
            [campaign.organization_id, campaign.pk, item.pk],
        )
    with scopes_disabled():
        assert DecisionEvent.objects.get(item=item).on_behalf_of_email == ""
