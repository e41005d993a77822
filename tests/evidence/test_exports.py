"""Campaign evidence: the items CSV, the signed ZIP, verification, permissions and the audit trail."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from campaigns import hashchain
from campaigns.decisions import decisions_apply_default_outcome, review_item_decide
from campaigns.models import CampaignStatus, DecisionEvent, ReviewItem
from entitlements.models import SyncRun, SyncRunApplication, SyncRunStatus
from evidence import formats
from evidence.items_csv import ITEM_COLUMNS
from evidence.models import EvidencePackage
from tests.factories import ApplicationFactory, CampaignFactory, ReviewItemFactory
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

SNAPSHOT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
EXPECTED_HEADER = [
    "identity_email", "application", "role", "last_used", "decision", "decision_reason", "reviewer", "decided_at",
    "ticket_url", "identity_name", "department", "manager_email", "identity_kind", "identity_status", "findings",
    "recommendation", "assigned_reviewer", "reviewer_role", "remediation_status", "campaign", "snapshot_at",
    "exception_expires_on", "stage", "stage_decisions", "on_behalf_of",
]  # fmt: skip


@pytest.fixture(name="signing_key")
def signing_key_fixture(settings):
    key = Ed25519PrivateKey.generate()
    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(key.private_bytes_raw()).decode()
    return key


@pytest.fixture
def public_key_file(tmp_path, signing_key) -> Path:
    path = tmp_path / "thalian-evidence.pem"
    path.write_text(formats.public_key_pem(signing_key))
    return path


@pytest.fixture(name="world")
def world_fixture(org, member, signing_key):
    """An active campaign on GitHub and Okta: approve, revoke with ticket, exception, changed, undecided."""
    admin = member(Role.ADMIN)
    reviewer = member(Role.REVIEWER, email="rita@acme.test")
    github = ApplicationFactory(organization=org, name="GitHub")
    okta = ApplicationFactory(organization=org, name="Okta", feed="scim")
    with scopes_disabled():
        run = SyncRun.objects.create(
            organization=org, source="scim", kind="scim", status=SyncRunStatus.SUCCEEDED,
            started_at=SNAPSHOT - dt.timedelta(hours=2), finished_at=SNAPSHOT - dt.timedelta(hours=1),
            total_rows=40, created=3, updated=2, removed=1, unchanged=34,
        )  # fmt: skip
        SyncRunApplication.objects.create(organization=org, sync_run=run, application=okta)
        later = SyncRun.objects.create(
            organization=org, source="scim", kind="scim", status=SyncRunStatus.SUCCEEDED,
            started_at=SNAPSHOT + dt.timedelta(hours=1), finished_at=SNAPSHOT + dt.timedelta(hours=2), total_rows=99,
        )  # fmt: skip
        SyncRunApplication.objects.create(organization=org, sync_run=later, application=okta)
    campaign = CampaignFactory(
        organization=org, title="Q1 access review", status=CampaignStatus.ACTIVE, snapshot_at=SNAPSHOT,
        launched_at=SNAPSHOT, launched_by=admin.user, reason_required=True,
    )  # fmt: skip
    common = {
        "organization": org,
        "campaign": campaign,
        "reviewer": reviewer,
        "reviewer_email": "rita@acme.test",
    }
    items = {
        "approve": ReviewItemFactory(
            **common, application=github, application_name="GitHub", identity_email="ann@corp.test",
            identity_name="Ann Lee", identity_manager_email="boss@corp.test", role="admin",
            last_used=dt.datetime(2026, 2, 20, 8, 30, tzinfo=dt.UTC), is_privileged=True,
        ),
        "revoke": ReviewItemFactory(
            **common, application=github, application_name="GitHub", identity_email="bob@corp.test",
            identity_status="terminated", is_terminated=True, is_dormant=True, recommendation="revoke",
        ),
        "exception": ReviewItemFactory(
            **common, application=okta, application_name="Okta", identity_email="svc-build@corp.test",
            identity_kind="service_account",
        ),
        "undecided": ReviewItemFactory(
            **common, application=okta, application_name="Okta", identity_email="=HYPERLINK(\"http://evil.test\")",
            identity_name="+1 caller", identity_department="-2 dept", role="@SUM(A1:A2)",
            identity_manager_email="\tboss@corp.test",
        ),
    }  # fmt: skip
    with scope(org):
        review_item_decide(item=items["approve"], actor=reviewer, decision="approve", reason="still needed")
        review_item_decide(item=items["revoke"], actor=reviewer, decision="approve", reason="first look")
        review_item_decide(item=items["revoke"], actor=admin, decision="revoke", reason="left the company")
        review_item_decide(
            item=items["exception"], actor=reviewer, decision="exception", reason="=cmd|' /C calc'!A0"
        )
        ReviewItem.objects.filter(pk=items["revoke"].pk).update(
            ticket_url="https://itsm.example.test/browse/SEC-7",
            ticket_key="SEC-7",
            remediation_status="pending",
        )
    return {"campaign": campaign, "admin": admin, "reviewer": reviewer, "items": items, "org": org}


def parse_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def download(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def csv_url(campaign, prefix="/o/acme"):
    return f"{prefix}/campaigns/{campaign.pk}/export.csv"


# --------------------------------------------------------------------------------------------------- CSV


def test_csv_header_has_the_exact_columns_in_order(world, client_for):
    response = client_for(world["admin"]).get(csv_url(world["campaign"]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="q1-access-review-')
    body = download(response)
    header = next(csv.reader(io.StringIO(body.decode(), newline="")))
    assert header == EXPECTED_HEADER == list(ITEM_COLUMNS)


def test_csv_values_for_approve_revoke_exception_and_undecided(world, client_for):
    rows = parse_csv(download(client_for(world["admin"]).get(csv_url(world["campaign"]))))
    by_email = {row["identity_email"]: row for row in rows}
    assert len(rows) == 4
    approve = by_email["ann@corp.test"]
    assert approve == {
        "identity_email": "ann@corp.test", "application": "GitHub", "role": "admin",
        "last_used": "2026-02-20T08:30:00Z", "decision": "approve", "decision_reason": "still needed",
        "reviewer": "rita@acme.test", "decided_at": approve["decided_at"], "ticket_url": "",
        "identity_name": "Ann Lee", "department": "Engineering", "manager_email": "boss@corp.test",
        "identity_kind": "human", "identity_status": "active", "findings": "privileged",
        "recommendation": "approve", "assigned_reviewer": "rita@acme.test", "reviewer_role": "reviewer",
        "remediation_status": "", "campaign": "Q1 access review", "snapshot_at": "2026-03-02T09:00:00Z",
        "exception_expires_on": "", "stage": "1", "stage_decisions": "", "on_behalf_of": "",
    }  # fmt: skip
    decided_at = dt.datetime.fromisoformat(approve["decided_at"].replace("Z", "+00:00"))
    assert approve["decided_at"].endswith("Z") and abs(timezone.now() - decided_at) < dt.timedelta(minutes=5)

    revoke = by_email["bob@corp.test"]
    assert revoke["decision"] == "revoke"
    assert revoke["decision_reason"] == "left the company"
    assert revoke["reviewer"] == "admin@acme.test"  # who decided last, not who was assigned
    assert revoke["reviewer_role"] == "admin"
    assert revoke["assigned_reviewer"] == "rita@acme.test"
    assert revoke["ticket_url"] == "https://itsm.example.test/browse/SEC-7"
    assert revoke["remediation_status"] == "pending"
    assert revoke["findings"] == "dormant; terminated"
    assert revoke["identity_status"] == "terminated"
    assert revoke["recommendation"] == "revoke"

    exception = by_email["svc-build@corp.test"]
    assert exception["decision"] == "exception"
    assert exception["exception_expires_on"] == (timezone.localdate() + dt.timedelta(days=90)).isoformat()
    assert exception["decision_reason"] == "'=cmd|' /C calc'!A0"
    assert exception["identity_kind"] == "service_account"

    undecided = by_email['\'=HYPERLINK("http://evil.test")']
    for column in ("decision", "decision_reason", "reviewer", "decided_at", "ticket_url", "reviewer_role"):
        assert undecided[column] == "", column
    assert undecided["assigned_reviewer"] == "rita@acme.test"


def test_csv_formula_injection_cells_read_back_as_text(world, client_for):
    rows = parse_csv(download(client_for(world["admin"]).get(csv_url(world["campaign"]))))
    row = next(r for r in rows if r["application"] == "Okta" and r["decision"] == "")
    assert row["identity_email"] == '\'=HYPERLINK("http://evil.test")'
    assert row["identity_name"] == "'+1 caller"
    assert row["department"] == "'-2 dept"
    assert row["role"] == "'@SUM(A1:A2)"
    assert row["manager_email"] == "'\tboss@corp.test"
    for r in rows:
        for value in r.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value


def test_system_default_outcome_shows_system_as_reviewer(world, client_for):
    campaign = world["campaign"]
    with scope(world["org"]):
        campaign.default_outcome = "approve"
        campaign.save(update_fields=["default_outcome"])
        assert decisions_apply_default_outcome(campaign=campaign, actor=world["admin"]) == 1
    rows = parse_csv(download(client_for(world["admin"]).get(csv_url(campaign) + "?application=Okta")))
    system_row = next(r for r in rows if r["identity_name"] == "'+1 caller")
    assert system_row["decision"] == "approve"
    assert system_row["reviewer"] == "system"
    assert system_row["reviewer_role"] == "system"
    assert system_row["decision_reason"].startswith("Default outcome of the campaign")


def test_copy_and_csv_module_paths_write_identical_bytes(world):
    from evidence.items_csv import campaign_items_for_export, items_csv_stream

    with scope(world["org"]):
        ReviewItem.objects.filter(pk=world["items"]["approve"].pk).update(
            identity_name='Quote " and, comma', identity_department="line\r\nbreak", role="   "
        )
        queryset = campaign_items_for_export(campaign=world["campaign"])
        copied = b"".join(items_csv_stream(queryset, campaign=world["campaign"], use_copy=True))
        written = b"".join(items_csv_stream(queryset, campaign=world["campaign"], use_copy=False))
    assert copied == written
    row = next(r for r in parse_csv(copied) if r["identity_email"] == "ann@corp.test")
    assert (row["identity_name"], row["department"], row["role"]) == (
        'Quote " and, comma',
        "line\r\nbreak",
        "   ",
    )


def test_csv_filters_of_the_items_view_apply(world, client_for):
    client = client_for(world["admin"])
    revokes = parse_csv(download(client.get(csv_url(world["campaign"]) + "?decision=revoke")))
    assert [r["identity_email"] for r in revokes] == ["bob@corp.test"]
    pending = parse_csv(download(client.get(csv_url(world["campaign"]) + "?decision=pending")))
    assert [r["identity_name"] for r in pending] == ["'+1 caller"]
    okta = parse_csv(
        download(client.get(csv_url(world["campaign"]) + "?application=Okta&identity_kind=service_account"))
    )
    assert [r["identity_email"] for r in okta] == ["svc-build@corp.test"]
    terminated = parse_csv(download(client.get(csv_url(world["campaign"]) + "?finding=terminated")))
    assert [r["identity_email"] for r in terminated] == ["bob@corp.test"]


def test_csv_bad_filter_is_refused_and_not_recorded(world, client_for, api_for):
    response = client_for(world["admin"]).get(csv_url(world["campaign"]) + "?decision=maybe")
    assert response.status_code == 400
    assert (
        "decision must be one of pending, approve, revoke, exception; got 'maybe'"
        in response.content.decode()
    )
    api_response = api_for(world["admin"]).get(
        csv_url(world["campaign"], "/api/v1/orgs/acme") + "?finding=nope"
    )
    assert api_response.status_code == 400
    assert "finding must be one of" in api_response.json()["detail"]
    with scopes_disabled():
        assert not AuditEvent.objects.filter(action="evidence_csv_exported").exists()


def test_every_csv_download_is_an_audit_event(world, client_for, api_for):
    client_for(world["admin"]).get(csv_url(world["campaign"]) + "?decision=revoke")
    api_for(_auditor(world)).get(csv_url(world["campaign"], "/api/v1/orgs/acme"))
    with scopes_disabled():
        events = list(AuditEvent.objects.filter(action="evidence_csv_exported").order_by("id"))
    assert [(e.actor_email, e.details["filters"]) for e in events] == [
        ("admin@acme.test", {"decision": "revoke"}),
        ("auditor@acme.test", {}),
    ]
    assert events[0].target_id == str(world["campaign"].pk)


def _auditor(world):
    from tests.factories import UserFactory
    from thalian.models import Membership

    user = UserFactory(email="auditor@acme.test")
    membership, _ = Membership.objects.get_or_create(
        user=user, organization=world["org"], defaults={"role": Role.AUDITOR}
    )
    return membership


def test_api_csv_matches_the_page_export(world, client_for, api_for):
    page = download(client_for(world["admin"]).get(csv_url(world["campaign"])))
    api = download(api_for(_auditor(world)).get(csv_url(world["campaign"], "/api/v1/orgs/acme")))
    assert page == api


# --------------------------------------------------------------------------------------------------- ZIP


def zip_url(campaign, prefix="/o/acme"):
    return f"{prefix}/campaigns/{campaign.pk}/export.zip"


def fetch_zip(world, client_for, tmp_path) -> Path:
    response = client_for(_auditor(world)).get(zip_url(world["campaign"]))
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"] == "application/zip"
    path = tmp_path / "evidence.zip"
    path.write_bytes(download(response))
    return path


def test_zip_contents(world, client_for, tmp_path, signing_key):
    path = fetch_zip(world, client_for, tmp_path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        items = parse_csv(archive.read("items.csv"))
        github = parse_csv(archive.read("applications/github.csv"))
        okta = parse_csv(archive.read("applications/okta.csv"))
        log = parse_csv(archive.read("decisions_log.csv"))
        campaign_doc = json.loads(archive.read("campaign.json"))
        population = json.loads(archive.read("population.json"))
    assert names[:7] == [
        "items.csv", "applications/github.csv", "applications/okta.csv", "decisions_log.csv", "campaign.json",
        "population.json", names[6],
    ]  # fmt: skip
    assert names[-2:] == ["SHA256SUMS", "manifest.json"]
    assert len(items) == 4 and len(github) == 2 and len(okta) == 2
    assert {r["application"] for r in github} == {"GitHub"}
    assert list(items[0].keys()) == EXPECTED_HEADER

    # Every decision event in order, including the changed decision on bob.
    assert [(r["identity_email"], r["decision"], r["actor_email"]) for r in log] == [
        ("ann@corp.test", "approve", "rita@acme.test"),
        ("bob@corp.test", "approve", "rita@acme.test"),
        ("bob@corp.test", "revoke", "admin@acme.test"),
        ("svc-build@corp.test", "exception", "rita@acme.test"),
    ]
    assert [r["sequence"] for r in log] == ["1", "2", "3", "4"]
    # The exception's expiry (the organization's default of 90 days) is in the hashed log and the items.
    expiry = (timezone.localdate() + dt.timedelta(days=90)).isoformat()
    assert [r["expires_on"] for r in log] == ["", "", "", expiry]
    assert [r["exception_expires_on"] for r in items if r["decision"] == "exception"] == [expiry]
    assert {r["exception_expires_on"] for r in items if r["decision"] != "exception"} == {""}
    assert "expires_on" in manifest["decisions_log_hashed_columns"]
    assert log[0]["prev_hash"] == hashchain.GENESIS_HASH
    assert log[1]["prev_hash"] == log[0]["hash"]
    with scope(world["org"]):
        stored = list(DecisionEvent.objects.order_by("id").values_list("hash", flat=True))
        world["campaign"].refresh_from_db()
    assert [r["hash"] for r in log] == stored
    assert manifest["chain_head"] == world["campaign"].chain_head == stored[-1]
    assert manifest["decision_count"] == 4
    assert manifest["item_count"] == 4
    assert manifest["campaign_id"] == str(world["campaign"].pk)
    assert manifest["generated_by"] == "auditor@acme.test"
    assert manifest["public_key_fingerprint"] == formats.key_fingerprint(signing_key)
    assert {f["name"] for f in manifest["files"]} == set(names) - {"manifest.json"}

    assert campaign_doc["title"] == "Q1 access review"
    assert campaign_doc["lifecycle"]["launched_by"] == "admin@acme.test"
    assert campaign_doc["lifecycle"]["snapshot_at"] == "2026-03-02T09:00:00Z"
    assert campaign_doc["options"] == {"reason_required": True, "default_outcome": "none"}
    assert campaign_doc["reviewers"] == [
        {"email": "rita@acme.test", "items": 4, "decided": 3, "signed_off_at": None}
    ]

    okta_cert = next(a for a in population["applications"] if a["application"] == "Okta")
    assert okta_cert["data_source"] == "scim"
    assert okta_cert["last_sync_before_snapshot"] == "2026-03-02T08:00:00Z"  # not the sync after the snapshot
    assert okta_cert["sync_run"]["rows"] == 40 and okta_cert["sync_run"]["removed"] == 1
    assert okta_cert["items_snapshotted"] == 2
    github_cert = next(a for a in population["applications"] if a["application"] == "GitHub")
    assert github_cert["sync_run"] is None and github_cert["last_sync_before_snapshot"] is None
    assert population["total_items"] == 4


def test_zip_includes_ticket_and_notification_logs_when_present(world, client_for, tmp_path, public_key_file):
    from itsm.models import Ticket
    from notifications.models import Notification

    with scopes_disabled():
        Ticket.objects.create(
            organization=world["org"], item=world["items"]["revoke"], campaign=world["campaign"], state="open",
            key="SEC-7", url="https://itsm.example.test/browse/SEC-7",
        )  # fmt: skip
        Notification.objects.create(
            organization=world["org"], campaign=world["campaign"], event="campaign_reminder", channel="email",
            recipient="rita@acme.test", dedupe_key="reminder-1", title="=Reminder", body="b",
            action_url="https://thalian.test/x", action_label="Review", status="sent",
        )  # fmt: skip
    path = fetch_zip(world, client_for, tmp_path)
    with zipfile.ZipFile(path) as archive:
        tickets = parse_csv(archive.read("tickets_log.csv"))
        notifications = parse_csv(archive.read("notifications_log.csv"))
    assert [(t["item_identity_email"], t["state"], t["key"], t["url"]) for t in tickets] == [
        ("bob@corp.test", "open", "SEC-7", "https://itsm.example.test/browse/SEC-7")
    ]
    assert [(n["recipient"], n["title"], n["status"]) for n in notifications] == [
        ("rita@acme.test", "'=Reminder", "sent")
    ]
    assert formats.verify_package(path, public_key_file.read_text()) == []


def test_streamed_zip_is_recorded_with_its_hash_and_author(world, client_for, tmp_path):
    path = fetch_zip(world, client_for, tmp_path)
    with scopes_disabled():
        package = EvidencePackage.objects.get()
        event = AuditEvent.objects.get(action="evidence_package_downloaded")
    assert package.status == "ready" and package.stored and package.file
    assert package.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert package.size == path.stat().st_size
    assert package.generated_by_email == "auditor@acme.test"
    assert package.decision_count == 4 and package.item_count == 4
    assert event.details["package_id"] == str(package.pk)


def test_untouched_package_verifies(world, client_for, tmp_path, public_key_file, capsys):
    path = fetch_zip(world, client_for, tmp_path)
    call_command("verify_evidence", str(path), "--public-key", str(public_key_file))
    assert capsys.readouterr().out.startswith(f"OK {path}: every file matches manifest.json")
    # Without --public-key the installation's own key is used.
    call_command("verify_evidence", str(path))


def rezip(path: Path, change) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def verify_failures(path: Path, key_file: Path, capsys) -> list[str]:
    with pytest.raises(CommandError) as excinfo:
        call_command("verify_evidence", str(path), "--public-key", str(key_file))
    assert excinfo.value.returncode == 1
    assert "verification failed" in str(excinfo.value)
    return [line.removeprefix("FAIL ") for line in capsys.readouterr().err.splitlines()]


def test_changed_csv_byte_fails_verification_naming_the_file(
    world, client_for, tmp_path, public_key_file, capsys
):
    path = fetch_zip(world, client_for, tmp_path)

    def flip(members):
        data = bytearray(members["items.csv"])
        position = data.index(b"still needed")
        data[position] = ord("S")
        members["items.csv"] = bytes(data)

    rezip(path, flip)
    failures = verify_failures(path, public_key_file, capsys)
    assert len(failures) == 1
    assert failures[0].startswith("items.csv: SHA-256 is ") and "manifest.json says" in failures[0]


def test_removed_decision_row_fails_verification_naming_the_chain_break(
    world, client_for, tmp_path, public_key_file, capsys
):
    path = fetch_zip(world, client_for, tmp_path)

    def drop_second_decision(members):
        lines = members["decisions_log.csv"].split(b"\n")
        members["decisions_log.csv"] = b"\n".join(lines[:2] + lines[3:])

    rezip(path, drop_second_decision)
    failures = verify_failures(path, public_key_file, capsys)
    assert any(f.startswith("decisions_log.csv: SHA-256 is") for f in failures)
    assert any(f.startswith("decisions_log.csv line 3: prev_hash is") and "removed" in f for f in failures)
    assert "decisions_log.csv has 3 decisions, manifest.json decision_count is 4" in failures


def test_manifest_resigned_with_another_key_fails_verification(
    world, client_for, tmp_path, public_key_file, signing_key, capsys
):
    path = fetch_zip(world, client_for, tmp_path)
    attacker = Ed25519PrivateKey.generate()

    def resign(members):
        manifest = json.loads(members["manifest.json"])
        manifest.pop("signature")
        manifest["generated_by"] = "someone-else@acme.test"
        manifest["public_key_fingerprint"] = formats.key_fingerprint(attacker)
        manifest["signature"] = formats.sign(hashchain.canonical_json(manifest), attacker)
        members["manifest.json"] = json.dumps(manifest).encode()

    rezip(path, resign)
    failures = verify_failures(path, public_key_file, capsys)
    ours, theirs = formats.key_fingerprint(signing_key), formats.key_fingerprint(attacker)
    assert failures == [
        f"manifest.json signature does not verify with public key {ours}; the manifest names key {theirs}, "
        f"not the expected key {ours} (re-signed with another key)"
    ]


def test_verify_evidence_reports_unreadable_inputs(tmp_path, public_key_file, signing_key):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("verify_evidence", str(tmp_path / "missing.zip"))
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello")
    package = tmp_path / "p.zip"
    package.write_bytes(b"PK")
    with pytest.raises(CommandError, match="not a readable PEM public key"):
        call_command("verify_evidence", str(package), "--public-key", str(not_a_key))


def test_public_key_endpoint_publishes_the_signing_key(client, signing_key):
    response = client.get("/api/v1/evidence/public-key")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pem-file"
    assert response.content.decode() == formats.public_key_pem(signing_key)
    assert response["X-Key-Fingerprint"] == formats.key_fingerprint(signing_key)


def test_embedded_default_generates_the_key_once_in_the_data_dir(client, settings, tmp_path):
    settings.EVIDENCE_SIGNING_KEY = ""
    settings.DEBUG = True
    settings.DATA_DIR = tmp_path
    first = client.get("/api/v1/evidence/public-key").content
    assert (tmp_path / "evidence_signing_key.pem").stat().st_mode & 0o777 == 0o600
    assert client.get("/api/v1/evidence/public-key").content == first
    settings.DEBUG = False
    response = client.get("/api/v1/evidence/public-key")
    assert response.status_code == 503
    assert "EVIDENCE_SIGNING_KEY is not set" in response.json()["detail"]


# --------------------------------------------------------------------------------------------------- large


def test_large_campaign_is_built_in_the_background_and_downloadable(
    world, api_for, settings, tmp_path, public_key_file, django_capture_on_commit_callbacks
):
    settings.EVIDENCE_ASYNC_THRESHOLD_ITEMS = 3
    settings.MEDIA_ROOT = tmp_path / "media"
    api = api_for(_auditor(world))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.get(zip_url(world["campaign"], "/api/v1/orgs/acme"))
        again = api.get(zip_url(world["campaign"], "/api/v1/orgs/acme"))
    assert response.status_code == 202 and again.status_code == 202
    body = response.json()
    assert body["stored"] is True and body["status"] == "queued"
    assert again.json()["id"] == body["id"]  # a second request while queued does not start another build
    assert len(callbacks) == 1
    callbacks[0]()
    callbacks[0]()  # the task runs twice (redelivery): the second run finds the package claimed
    detail = api.get(body["status_url"]).json()
    assert detail["status"] == "ready", detail
    assert detail["progress"] == 100
    assert detail["item_count"] == 4 and detail["decision_count"] == 4
    download_response = api.get(detail["download_url"])
    assert download_response.status_code == 200
    path = tmp_path / "large.zip"
    path.write_bytes(download(download_response))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == detail["sha256"]
    call_command("verify_evidence", str(path), "--public-key", str(public_key_file))
    listing = api.get("/api/v1/orgs/acme/evidence/packages/").json()
    assert [p["id"] for p in listing["results"]] == [detail["id"]]


# --------------------------------------------------------------------------------------------------- access


@pytest.mark.parametrize("role", [Role.VIEWER, Role.REVIEWER])
def test_roles_without_export_permission_get_403(world, member, client_for, api_for, role):
    membership = world["reviewer"] if role == Role.REVIEWER else member(role)
    campaign = world["campaign"]
    client = client_for(membership)
    for url in (
        csv_url(campaign),
        zip_url(campaign),
        "/o/acme/evidence/",
        f"/o/acme/campaigns/{campaign.pk}/sample/",
    ):
        assert client.get(url).status_code == 403, url
    api = api_for(membership)
    for url in (
        csv_url(campaign, "/api/v1/orgs/acme"),
        zip_url(campaign, "/api/v1/orgs/acme"),
        "/api/v1/orgs/acme/evidence/packages/",
    ):
        assert api.get(url).status_code == 403, url


def test_other_organization_gets_404(world, outsider, client_for, api_for):
    campaign = world["campaign"]
    client = client_for(outsider)
    for url in (
        csv_url(campaign),
        zip_url(campaign),
        f"/o/acme/campaigns/{campaign.pk}/report/",
        "/o/acme/evidence/",
    ):
        assert client.get(url).status_code == 404, url
    # Through the outsider's own organization, acme's campaign does not exist either.
    for url in (
        csv_url(campaign, "/o/globex"),
        zip_url(campaign, "/o/globex"),
        f"/o/globex/campaigns/{campaign.pk}/report/",
        f"/o/globex/campaigns/{campaign.pk}/sample/",
    ):
        assert client.get(url).status_code == 404, url
    api = api_for(outsider)
    assert api.get(csv_url(campaign, "/api/v1/orgs/acme")).status_code == 404
    assert api.get(csv_url(campaign, "/api/v1/orgs/globex")).status_code == 404
    assert api.get(zip_url(campaign, "/api/v1/orgs/globex")).status_code == 404


def test_other_organizations_packages_are_not_listed_or_downloadable(
    world, outsider, client_for, api_for, tmp_path
):
    fetch_zip(world, client_for, tmp_path)
    with scopes_disabled():
        package = EvidencePackage.objects.get()
    api = api_for(outsider)
    assert api.get("/api/v1/orgs/globex/evidence/packages/").json()["results"] == []
    assert api.get(f"/api/v1/orgs/globex/evidence/packages/{package.pk}/").status_code == 404
    assert api.get(f"/api/v1/orgs/globex/evidence/packages/{package.pk}/download").status_code == 404


# --------------------------------------------------------------------------------------------------- pages


def test_evidence_page_lists_packages_with_hash_and_author(world, client_for, tmp_path):
    fetch_zip(world, client_for, tmp_path)
    with scopes_disabled():
        package = EvidencePackage.objects.get()
    page = client_for(_auditor(world)).get("/o/acme/evidence/")
    assert page.status_code == 200
    html = page.content.decode()
    assert package.sha256 in html
    assert "auditor@acme.test" in html
    assert "Q1 access review" in html
    assert f"/o/acme/campaigns/{world['campaign'].pk}/export.csv" in html


def test_evidence_page_polls_while_a_package_is_building(world, client_for):
    with scopes_disabled():
        EvidencePackage.objects.create(
            organization=world["org"], campaign=world["campaign"], stored=True, status="building", progress=40,
            file_name="big.zip", generated_by_email="auditor@acme.test",
        )  # fmt: skip
    client = client_for(_auditor(world))
    page = client.get("/o/acme/evidence/").content.decode()
    assert 'hx-trigger="every 2s"' in page
    assert '<progress id="progress-' in page and 'value="40"' in page
    fragment = client.get("/o/acme/evidence/", HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith('<div id="packages"')
    assert "Campaigns" not in fragment


def test_summary_report_shows_completion_decisions_reviewers_and_remediation(world, client_for):
    page = client_for(_auditor(world)).get(f"/o/acme/campaigns/{world['campaign'].pk}/report/")
    assert page.status_code == 200
    summary = page.context["summary"]
    assert summary["totals"]["total"] == 4
    assert summary["totals"]["decided"] == 3
    assert summary["totals"]["percent"] == 75
    assert {bar["key"]: bar["count"] for bar in summary["chart"]} == {
        "approve": 1, "revoke": 1, "exception": 1, "pending": 1,
    }  # fmt: skip
    assert summary["revocations"] == [
        {"application_name": "GitHub", "total": 1, "ticketed": 1, "pending": 1, "verified": 0, "confirmed": 0,
         "action_required": 0, "untracked": 0}
    ]  # fmt: skip
    html = page.content.decode()
    assert "Campaign report: Q1 access review" in html
    assert "rita@acme.test" in html


def test_viewer_may_read_the_report_but_not_export(world, member, client_for):
    client = client_for(member(Role.VIEWER))
    assert client.get(f"/o/acme/campaigns/{world['campaign'].pk}/report/").status_code == 200
    assert client.get(csv_url(world["campaign"])).status_code == 403


def test_sample_is_seeded_recorded_and_shows_the_decision_trail(world, client_for):
    client = client_for(_auditor(world))
    url = f"/o/acme/campaigns/{world['campaign'].pk}/sample/"
    first = client.post(url, {"size": "2", "seed": "42"})
    second = client.post(url, {"size": "2", "seed": "42"})
    assert first.status_code == 200
    chosen = [item.pk for item in first.context["sample"].items]
    assert chosen == [item.pk for item in second.context["sample"].items]
    assert len(chosen) == 2
    with scopes_disabled():
        events = list(AuditEvent.objects.filter(action="evidence_sample_drawn").order_by("id"))
    assert [e.details["item_ids"] for e in events] == [chosen, chosen]
    assert events[0].details["seed"] == 42 and events[0].details["population"] == 4
    everything = client.post(url, {"size": "4", "seed": "7"})
    trails = dict((item.identity_email, trail) for item, trail in everything.context["trails"])
    assert [(e.decision, e.actor_email) for e in trails["bob@corp.test"]] == [
        ("approve", "rita@acme.test"),
        ("revoke", "admin@acme.test"),
    ]
    assert "left the company" in everything.content.decode()


@pytest.mark.parametrize(
    "data, message",
    [({"size": "0"}, "Sample size must be between 1 and 200; got 0."), ({"size": "x"}, "whole number")],
)
def test_bad_sample_input_is_refused_and_not_recorded(world, client_for, data, message):
    response = client_for(_auditor(world)).post(f"/o/acme/campaigns/{world['campaign'].pk}/sample/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    with scopes_disabled():
        assert not AuditEvent.objects.filter(action="evidence_sample_drawn").exists()


def test_report_api_has_the_report_pages_figures(world, member, api_for):
    url = f"/api/v1/orgs/acme/campaigns/{world['campaign'].pk}/report/"
    body = api_for(member(Role.VIEWER)).get(url).json()
    assert body["campaign"]["title"] == "Q1 access review"
    assert (body["totals"]["total"], body["totals"]["decided"], body["totals"]["percent"]) == (4, 3, 75)
    assert body["revocations"] == [
        {"application_name": "GitHub", "total": 1, "ticketed": 1, "pending": 1, "verified": 0,
         "action_required": 0, "untracked": 0}
    ]  # fmt: skip
    assert [r["reviewer_email"] for r in body["reviewers"]] == ["rita@acme.test"]
    assert {entry["application"] for entry in body["population"]["applications"]} == {"GitHub", "Okta"}


def test_sample_api_draws_the_same_items_as_the_page_for_a_seed_and_records_it(world, client_for, api_for):
    auditor = _auditor(world)
    page = client_for(auditor).post(f"/o/acme/campaigns/{world['campaign'].pk}/sample/", {"size": "2", "seed": "42"})
    api = api_for(auditor)
    url = f"/api/v1/orgs/acme/campaigns/{world['campaign'].pk}/sample/"
    body = api.post(url, {"size": 2, "seed": 42}, format="json").json()
    assert (body["seed"], body["size"], body["population"]) == (42, 2, 4)
    assert [i["id"] for i in body["items"]] == [item.pk for item in page.context["sample"].items]
    everything = api.post(url, {"size": 4, "seed": 7}, format="json").json()
    trails = {item["identity_email"]: item["trail"] for item in everything["items"]}
    assert [(e["decision"], e["actor_email"]) for e in trails["bob@corp.test"]] == [
        ("approve", "rita@acme.test"),
        ("revoke", "admin@acme.test"),
    ]
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="evidence_sample_drawn").count() == 3


@pytest.mark.parametrize(("body", "field"), [({"size": 0}, "size"), ({"size": 2, "seed": -1}, "seed"), ({}, "size")])
def test_bad_sample_api_input_is_400_naming_the_field_and_not_recorded(world, api_for, body, field):
    response = api_for(_auditor(world)).post(
        f"/api/v1/orgs/acme/campaigns/{world['campaign'].pk}/sample/", body, format="json"
    )
    assert response.status_code == 400 and field in response.json()["errors"]
    with scopes_disabled():
        assert not AuditEvent.objects.filter(action="evidence_sample_drawn").exists()


def test_report_and_sample_api_permissions_follow_the_pages(world, member, outsider, api_for):
    campaign = world["campaign"]
    report, sample = (f"/api/v1/orgs/acme/campaigns/{campaign.pk}/{tail}/" for tail in ("report", "sample"))
    viewer = api_for(member(Role.VIEWER))
    assert viewer.get(report).status_code == 200
    assert viewer.post(sample, {"size": 1}, format="json").status_code == 403
    assert api_for(member(Role.REVIEWER, email="rita@acme.test")).get(report).status_code == 403
    stranger = api_for(outsider)
    assert stranger.get(report).status_code == 404
    assert stranger.post(sample, {"size": 1}, format="json").status_code == 404
    globex = f"/api/v1/orgs/globex/campaigns/{campaign.pk}/"
    assert stranger.get(globex + "report/").status_code == 404
    assert stranger.post(globex + "sample/", {"size": 1}, format="json").status_code == 404


def test_report_api_queries_do_not_grow_with_the_items(world, member, api_for):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import ReviewItemFactory

    api = api_for(member(Role.VIEWER))
    url = f"/api/v1/orgs/acme/campaigns/{world['campaign'].pk}/report/"
    api.get(url)
    with CaptureQueriesContext(connection) as small:
        api.get(url)
    for n in range(10):
        ReviewItemFactory(organization=world["org"], campaign=world["campaign"], application_name="GitHub",
                          identity_email=f"more{n}@corp.test", reviewer_email=f"r{n}@acme.test")
    with CaptureQueriesContext(connection) as large:
        api.get(url)
    assert len(large) == len(small)


def _make_packages(world, count):
    with scopes_disabled():
        EvidencePackage.objects.bulk_create(
            EvidencePackage(
                organization=world["org"], campaign=world["campaign"], status="ready", file_name=f"p{n}.zip",
                generated_by_email="auditor@acme.test", sha256=f"{n:064x}", size=n,
            )
            for n in range(count)
        )  # fmt: skip


def test_package_list_queries_do_not_grow_with_the_number_of_packages(world, client_for, api_for):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    auditor = _auditor(world)
    client, api = client_for(auditor), api_for(auditor)

    def counts():
        with CaptureQueriesContext(connection) as page:
            assert client.get("/o/acme/evidence/").status_code == 200
        with CaptureQueriesContext(connection) as listing:
            assert api.get("/api/v1/orgs/acme/evidence/packages/").status_code == 200
        return len(page), len(listing)

    _make_packages(world, 2)
    counts()  # the first API call also records when the token was last used
    few = counts()
    _make_packages(world, 30)
    many = counts()
    assert many == few
    assert api.get("/api/v1/orgs/acme/evidence/packages/").json()["count"] == 32


@pytest.fixture
def signing_key_in_environment(monkeypatch, settings):
    """The signing key in the environment too, so a worker process started afterwards signs with it."""
    key = Ed25519PrivateKey.generate()
    value = base64.b64encode(key.private_bytes_raw()).decode()
    monkeypatch.setenv("EVIDENCE_SIGNING_KEY", value)
    settings.EVIDENCE_SIGNING_KEY = value
    return key


@pytest.mark.celery_worker
def test_real_worker_builds_a_large_package_with_progress(
    signing_key_in_environment, celery_worker_factory, org, member, settings, api_for, tmp_path
):
    from tests.conftest import wait_until

    settings.EVIDENCE_ASYNC_THRESHOLD_ITEMS = 10
    campaign = CampaignFactory(organization=org, status=CampaignStatus.ACTIVE, snapshot_at=SNAPSHOT)
    with scopes_disabled():
        ReviewItem.objects.bulk_create(
            ReviewItem(
                organization=org, campaign=campaign, identity_email=f"p{n}@corp.test", identity_kind="human",
                identity_status="active", application_name=f"App {n % 3}", role="member", recommendation="approve",
            )
            for n in range(40)
        )  # fmt: skip
    celery_worker_factory()
    api = api_for(member(Role.AUDITOR))
    response = api.get(zip_url(campaign, "/api/v1/orgs/acme"))
    assert response.status_code == 202
    status_url = response.json()["status_url"]
    detail = wait_until(lambda: (d := api.get(status_url).json())["status"] in ("ready", "failed") and d, 60)
    assert detail["status"] == "ready", detail["error"]
    assert detail["progress"] == 100 and detail["item_count"] == 40
    path = tmp_path / "worker.zip"
    path.write_bytes(download(api.get(detail["download_url"])))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == detail["sha256"]
    assert formats.verify_package(path, formats.public_key_pem(signing_key_in_environment)) == []
    with zipfile.ZipFile(path) as archive:
        assert {"applications/app-0.csv", "applications/app-1.csv", "applications/app-2.csv"} <= set(
            archive.namelist()
        )
    with scopes_disabled():
        EvidencePackage.objects.get(pk=detail["id"]).file.delete(save=False)


# --------------------------------------------------------------------------------------------------- reuse


def test_the_same_campaign_state_gives_the_same_package(world, client_for, api_for, tmp_path, signing_key):
    first = fetch_zip(world, client_for, tmp_path).read_bytes()
    api = api_for(world["admin"])
    again = api.get(zip_url(world["campaign"], "/api/v1/orgs/acme"))
    assert again.status_code == 200 and download(again) == first
    with scopes_disabled():
        [package] = EvidencePackage.objects.all()
    assert again["X-Evidence-Package"] == str(package.pk) and package.generated_by_email == "auditor@acme.test"
    assert AuditEvent.objects.filter(action="evidence_package_downloaded").count() == 2

    # A decision moves the chain head: a new package.
    with scope(world["org"]):
        review_item_decide(item=world["items"]["undecided"], actor=world["reviewer"], decision="approve")
    after_decision = download(api.get(zip_url(world["campaign"], "/api/v1/orgs/acme")))
    # A remediation change without a decision is also a new state.
    with scope(world["org"]):
        ReviewItem.objects.filter(pk=world["items"]["revoke"].pk).update(remediation_status="verified_removed")
    after_remediation = download(api.get(zip_url(world["campaign"], "/api/v1/orgs/acme")))
    assert len({first, after_decision, after_remediation}) == 3
    with scopes_disabled():
        assert EvidencePackage.objects.count() == 3
        assert EvidencePackage.objects.values("state_digest").distinct().count() == 3
    # ... and asking again for that state reuses its package.
    assert download(api.get(zip_url(world["campaign"], "/api/v1/orgs/acme"))) == after_remediation
    with scopes_disabled():
        assert EvidencePackage.objects.count() == 3


def test_a_failed_package_of_the_same_state_is_not_reused(world, client_for, signing_key):
    from evidence.packages import evidence_state_digest

    with scope(world["org"]):
        failed = EvidencePackage.objects.create(
            organization=world["org"], campaign=world["campaign"], stored=True, status="failed",
            file_name="x.zip", generated_by_email="auditor@acme.test",
            state_digest=evidence_state_digest(world["campaign"]), error="The download was interrupted.",
        )
    response = client_for(_auditor(world)).get(zip_url(world["campaign"]))
    assert response.status_code == 200 and response["X-Evidence-Package"] != str(failed.pk)
    download(response)
    with scopes_disabled():
        assert EvidencePackage.objects.filter(status="ready").count() == 1


# --------------------------------------------------------------------------------------------------- one pass


def test_application_files_hold_exactly_the_rows_of_the_export_filtered_by_that_application(
    world, client_for, tmp_path
):
    """The per-application files come from the same pass as items.csv: each is byte for byte the CSV export
    filtered by its application, whatever the cells hold (quotes, commas, line breaks, formulas, any script)."""
    org, campaign = world["org"], world["campaign"]
    with scope(org):
        ReviewItem.objects.filter(pk=world["items"]["approve"].pk).update(
            identity_name='Quote " and, comma', identity_department="line\r\nbreak", decision_reason="a,\nb"
        )
        for n, name in enumerate(["Zürich, \"HR\"", "", "Ünïcode ✓", "line\nbreak app"]):
            ReviewItemFactory(
                organization=org, campaign=campaign, application_name=name, identity_email=f"p{n}@corp.test",
                role="-admin" if n % 2 else "member",
            )
    admin = client_for(world["admin"])
    with zipfile.ZipFile(fetch_zip(world, client_for, tmp_path)) as archive:
        files = {name: archive.read(name) for name in archive.namelist() if name.startswith("applications/")}
        items = archive.read("items.csv")
    with scope(org):
        names = sorted(set(ReviewItem.objects.filter(campaign=campaign).values_list("application_name", flat=True)))
    assert len(files) == len(names) == 6
    exported = {
        name: download(admin.get(csv_url(campaign), {"application": name})) for name in names if name
    }
    header = items.split(b"\n", 1)[0] + b"\n"
    rows_in_files = sorted(tuple(row.items()) for data in files.values() for row in parse_csv(data))
    assert rows_in_files == sorted(tuple(row.items()) for row in parse_csv(items))
    for data in files.values():
        assert data.startswith(header)
        application = {row["application"] for row in parse_csv(data)}
        assert len(application) == 1
        [name] = application
        if name:
            assert data == exported[name]


def test_state_digest_lines_match_the_documented_format(world):
    """The digest the database computes is the one of the lines ``id|signed_off_at|ticket_key|ticket_status|
    remediation_status`` (signed_off_at in ISO 8601 with microseconds when there are any)."""
    from evidence.packages import evidence_state_digest

    org, campaign = world["org"], world["campaign"]
    signed = dt.datetime(2026, 3, 3, 10, 15, 30, 123456, tzinfo=dt.UTC)
    with scope(org):
        ReviewItem.objects.filter(pk=world["items"]["approve"].pk).update(signed_off_at=signed)
        ReviewItem.objects.filter(pk=world["items"]["exception"].pk).update(signed_off_at=signed.replace(microsecond=0))
        campaign.refresh_from_db()
        rows = ReviewItem.objects.filter(campaign=campaign).order_by("id").values_list(
            "id", "signed_off_at", "ticket_key", "ticket_status", "remediation_status"
        )
        expected = hashlib.sha256(f"{campaign.status}|{campaign.chain_head}\n".encode())
        for pk, at, key, status, remediation in rows:
            expected.update(f"{pk}|{at.isoformat() if at else ''}|{key}|{status}|{remediation}\n".encode())
        assert evidence_state_digest(campaign) == expected.hexdigest()


def test_decisions_log_written_by_copy_equals_the_python_log_and_stops_at_the_recorded_head(world):
    from evidence.contents import PackageState, decisions_log

    org, campaign = world["org"], world["campaign"]
    with scope(org):
        review_item_decide(
            item=world["items"]["undecided"], actor=world["reviewer"], decision="approve",
            reason='Quote " and, comma\r\nline',
        )
        campaign.refresh_from_db()
        head = campaign.chain_head
        review_item_decide(item=world["items"]["approve"], actor=world["admin"], decision="revoke", reason="-2")
        logs = {}
        for use_copy in (True, False):
            state = PackageState()
            logs[use_copy] = (
                b"".join(decisions_log(campaign=campaign, state=state, recorded_head=head, use_copy=use_copy)),
                state.decision_count,
                state.chain_head,
            )
    assert logs[True] == logs[False]
    data, count, chain_head = logs[True]
    assert count == 5 and chain_head == head  # the decision made after the head was recorded is left out
    rows = parse_csv(data)
    assert [r["sequence"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert rows[3]["reason"] == "'=cmd|' /C calc'!A0"
    assert rows[4]["reason"] == 'Quote " and, comma\r\nline' and rows[4]["identity_email"].startswith("'=")


def test_removals_written_by_copy_equal_the_python_log(world, member):
    from campaigns.models import CampaignRemediationOwner
    from evidence.contents import removals_log

    org, campaign = world["org"], world["campaign"]
    confirmed_at = dt.datetime(2026, 3, 5, 8, 0, 1, 250000, tzinfo=dt.UTC)
    with scope(org):
        CampaignRemediationOwner.objects.create(
            organization=org, campaign=campaign, application_name="GitHub", owner_email="=ops@acme.test"
        )
        review_item_decide(item=world["items"]["undecided"], actor=world["admin"], decision="revoke", reason="x")
        ReviewItem.objects.filter(pk=world["items"]["undecided"].pk).update(
            remediation_status="confirmed_removed", removal_confirmed_by_email="owner@acme.test",
            removal_confirmed_at=confirmed_at, removal_comment='Deleted, "really"\nby hand',
        )  # fmt: skip
        logs = {use_copy: b"".join(removals_log(campaign=campaign, use_copy=use_copy)) for use_copy in (True, False)}
    assert logs[True] == logs[False]
    rows = {r["identity_email"]: r for r in parse_csv(logs[True])}
    assert rows["bob@corp.test"]["remediation_owner"] == "'=ops@acme.test"
    assert rows["bob@corp.test"]["removal_status"] == "pending"
    confirmed = rows["'=HYPERLINK(\"http://evil.test\")"]
    assert (confirmed["proof"], confirmed["proven_at"]) == ("manually confirmed", "2026-03-05T08:00:01.250000Z")
