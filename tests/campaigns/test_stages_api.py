# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Stages through the API, the pages and the exports: create with stages, validation naming the stage and field,
items with their stage and stage decisions, the stage filter, progress per stage, tenancy and roles, query counts,
the CSV columns and the evidence package."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import decisions
from campaigns.models import Campaign, CampaignStage, ReviewItem
from evidence import formats
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401
from .test_stages import act, analyst, item, two_stages  # noqa: F401

pytestmark = pytest.mark.django_db
API = "/api/v1/orgs/acme"


def body(**extra) -> dict:
    return {"title": "Two-stage review", "due_date": (timezone.localdate() + dt.timedelta(days=20)).isoformat(),
            "scope": {"applications": ["GitHub"]}, "stages": two_stages(), **extra}


def test_create_a_two_stage_campaign_through_the_api_and_read_its_stages(inventory, analyst, api_for):
    api = api_for(inventory.admin)
    response = api.post(f"{API}/campaigns/", body(), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["stage_count"] == 2
    assert data["reviewer_strategy"] == "application_owner" and data["fallback_reviewer"] == "fallback@acme.test"
    assert [(s["number"], s["reviewer_strategy"], s["fallback_reviewer"], s["duration_days"], s["advance_on"],
             s["show_earlier_decisions"], s["deadline_outcome"]) for s in data["stages"]] == [
        (1, "application_owner", "fallback@acme.test", 7, ["approve", "exception"], True, "carry_forward"),
        (2, "members", "mia@acme.test", 5, ["approve", "exception"], True, "carry_forward"),
    ]
    assert data["stages"][1]["reviewers"] == {"*": ["analyst@acme.test"]}
    # A single-stage campaign reads as one stage made of its reviewer fields.
    single = api.post(f"{API}/campaigns/", {**body(), "stages": None, "reviewer_strategy": "manager",
                                            "fallback_reviewer": "fallback@acme.test"}, format="json").json()
    assert single["stage_count"] == 1 and [s["reviewer_strategy"] for s in single["stages"]] == ["manager"]


BAD_STAGES = [
    ([], "stages", "a campaign has 1 to 5 stages; got 0"),
    ([two_stages()[0]] * 6, "stages", "a campaign has 1 to 5 stages; got 6"),
    ([two_stages()[0], {**two_stages()[1], "reviewer_strategy": "random"}], "stages[1].reviewer_strategy",
     "stage 2: reviewer_strategy: unknown reviewer strategy 'random'"),
    ([two_stages()[0], {**two_stages()[1], "reviewers": ["nobody@acme.test"]}], "stages[1].reviewers",
     "stage 2: reviewers: nobody@acme.test is not a member of this organization"),
    ([two_stages()[0], {**two_stages()[1], "fallback_reviewer": "viewer@acme.test"}],
     "stages[1].fallback_reviewer", "stage 2: fallback_reviewer: viewer@acme.test has the role Viewer"),
    ([{**two_stages()[0], "advance_on": ["approve", "maybe"]}, two_stages()[1]], "stages[0].advance_on",
     "stage 1: advance_on: unknown decision(s) 'maybe'"),
    ([two_stages()[0], {**two_stages()[1], "duration_days": 0}], "stages[1].duration_days",
     "stage 2: duration_days: give the stage's length as a whole number of days"),
    ([two_stages()[0], {**two_stages()[1], "deadline_outcome": "ignore"}], "stages[1].deadline_outcome",
     "stage 2: deadline_outcome: unknown outcome 'ignore'"),
    ([two_stages()[0], {**two_stages()[1], "colour": "red"}], "stages[1].colour", "stage 2: colour: unknown key"),
    ("two", "stages", "stages must be a list"),
]


@pytest.mark.parametrize(("stages", "field", "message"), BAD_STAGES)
def test_bad_stages_answer_400_naming_the_stage_and_field_and_create_nothing(
    inventory, analyst, member, api_for, stages, field, message
):
    member(Role.VIEWER)
    response = api_for(inventory.admin).post(f"{API}/campaigns/", body(stages=stages), format="json")
    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]
    assert list(errors) == [field]
    assert errors[field][0].startswith(message), errors
    with scopes_disabled():
        assert not Campaign.objects.exists()


def test_stages_and_top_level_reviewers_together_are_refused(inventory, analyst, api_for):
    response = api_for(inventory.admin).post(
        f"{API}/campaigns/", body(reviewer_strategy="manager"), format="json"
    )
    assert response.status_code == 400
    assert "inside stages" in response.json()["errors"]["reviewer_strategy"][0]


@pytest.fixture
def lee(member):
    """A reviewer (sees only the items assigned to them)."""
    return member(Role.REVIEWER, email="lee@acme.test")


@pytest.fixture
def moved(inventory, analyst, lee, launched, act):
    """A launched two-stage campaign where the owner approved ann and mia, revoked svc and signed off: ann and
    mia are at stage 2 with the reviewer lee (stage 2 reviews blind: earlier decisions hidden from its
    reviewers)."""
    campaign = launched(stages=two_stages(show_earlier_decisions=False, reviewers=["lee@acme.test"]),
                        scope={"applications": ["GitHub"]})
    g, owner = inventory.grants, inventory.owner_member
    act(decisions.review_item_decide, item=item(campaign, g.ann_github), actor=owner, decision="approve",
        reason="needed")
    act(decisions.review_item_decide, item=item(campaign, g.mia_github), actor=owner, decision="approve")
    act(decisions.review_item_decide, item=item(campaign, g.svc_github), actor=owner, decision="revoke",
        reason="retired")
    act(decisions.review_sign_off, campaign=campaign, actor=owner)
    return campaign


def test_items_carry_their_stage_and_stage_decisions_and_filter_by_stage(inventory, lee, moved, api_for):
    api = api_for(inventory.admin)
    url = f"{API}/campaigns/{moved.pk}/items/"
    at_two = api.get(url, {"stage": "2"}).json()["results"]
    assert sorted(r["identity"]["email"] for r in at_two) == ["ann@acme.test", "mia@acme.test"]
    ann = next(r for r in at_two if r["identity"]["email"] == "ann@acme.test")
    assert ann["stage"] == 2 and ann["decision"] is None and ann["reviewer"] == "lee@acme.test"
    assert [(d["stage"], d["decision"], d["reason"], d["decided_by"], d["decided_by_role"]) for d in
            ann["stage_decisions"]] == [(1, "approve", "needed", "owner@acme.test", "reviewer")]
    assert ann["stage_decisions"][0]["decided_at"].endswith("Z")
    assert ann["decision_path"] == "Pending at stage 2 after approval at stage 1 by owner@acme.test"
    at_one = api.get(url, {"stage": "1"}).json()["results"]
    svc = next(r for r in at_one if r["identity"]["email"] == "ci-bot@acme.test")
    assert (svc["stage"], svc["decision"]) == (1, "revoke")
    assert [d["decision"] for d in svc["stage_decisions"]] == ["revoke"]
    assert api.get(url, {"stage": "6"}).status_code == 400
    # Stage 2 reviews blind: its reviewer sees only the current stage, in the list and on the item.
    mine = api_for(lee).get(url).json()["results"]
    assert sorted(r["identity"]["email"] for r in mine) == ["ann@acme.test", "mia@acme.test"]
    assert all(r["stage_decisions"] == [] and r["decision_path"] == "" for r in mine)
    detail = api_for(lee).get(f"{url}{ann['id']}/").json()
    assert detail["history"] == [] and detail["stage_decisions"] == []


def test_progress_shows_each_stage(inventory, analyst, moved, api_for):
    by_stage = api_for(inventory.admin).get(f"{API}/campaigns/{moved.pk}/progress/").json()["by_stage"]
    first, second = by_stage
    assert (first["stage"], first["reached"], first["moved_on"], first["final"], first["pending"]) == (1, 4, 2, 1, 1)
    assert (second["stage"], second["reached"], second["pending"], second["done"]) == (2, 2, 2, 0)


def test_outsiders_get_404_and_roles_without_permission_403_on_everything_stages_add(
    inventory, analyst, moved, outsider, member, api_for
):
    outside = api_for(outsider)
    assert outside.get(f"{API}/campaigns/{moved.pk}/items/", {"stage": "2"}).status_code == 404
    assert outside.get(f"{API}/campaigns/{moved.pk}/progress/").status_code == 404
    assert outside.get(f"{API}/campaigns/{moved.pk}/").status_code == 404
    assert outside.post(f"{API}/campaigns/", body(), format="json").status_code == 404
    viewer, reviewer = api_for(member(Role.VIEWER)), api_for(inventory.owner_member)
    assert viewer.post(f"{API}/campaigns/", body(), format="json").status_code == 403
    assert reviewer.post(f"{API}/campaigns/", body(), format="json").status_code == 403
    assert reviewer.get(f"{API}/campaigns/{moved.pk}/progress/").status_code == 403
    ann = item(moved, inventory.grants.ann_github)
    # The owner decided ann at stage 1: at stage 2 it is no longer theirs to see or decide.
    assert reviewer.get(f"{API}/campaigns/{moved.pk}/items/{ann.pk}/").status_code == 404
    assert viewer.post(f"{API}/campaigns/{moved.pk}/items/{ann.pk}/decision/", {"decision": "approve"},
                       format="json").status_code == 403
    with scopes_disabled():
        assert Campaign.objects.count() == 1


def test_item_list_queries_do_not_grow_with_page_size_in_a_multi_stage_campaign(inventory, lee, moved, api_for):
    for who in (inventory.admin, lee):
        api = api_for(who)
        url = f"{API}/campaigns/{moved.pk}/items/"
        api.get(url, {"page_size": 1})
        counts = []
        for size in (1, 2):
            with CaptureQueriesContext(connection) as ctx:
                response = api.get(url, {"page_size": size})
            assert response.status_code == 200
            counts.append(len(ctx.captured_queries))
        assert counts[0] == counts[1], who


@pytest.fixture
def signing_key(settings):
    key = Ed25519PrivateKey.generate()
    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(key.private_bytes_raw()).decode()
    return key


def test_exports_carry_every_stage_and_the_package_verifies(inventory, analyst, moved, act, client_for,
                                                            signing_key, tmp_path, member, capsys):
    act(decisions.review_item_decide, item=item(moved, inventory.grants.ann_github), actor=analyst,
        decision="revoke", reason="no longer needed")
    client = client_for(member(Role.AUDITOR))
    response = client.get(f"/o/acme/campaigns/{moved.pk}/export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    ann = next(r for r in rows if r["identity_email"] == "ann@acme.test")
    assert ann["stage"] == "2"
    stage_one, stage_two = ann["stage_decisions"].split("; ")
    assert stage_one.startswith("stage 1: approve by owner@acme.test (reviewer) at 20")
    assert stage_two.startswith("stage 2: revoke by analyst@acme.test (security_analyst) at 20")

    response = client.get(f"/o/acme/campaigns/{moved.pk}/export.zip")
    path = tmp_path / "evidence.zip"
    path.write_bytes(b"".join(response.streaming_content) if response.streaming else response.content)
    with zipfile.ZipFile(path) as archive:
        staged = list(csv.DictReader(io.StringIO(archive.read("stage_decisions.csv").decode(), newline="")))
        log = list(csv.DictReader(io.StringIO(archive.read("decisions_log.csv").decode(), newline="")))
        document = json.loads(archive.read("campaign.json"))
    assert [(r["stage"], r["decision"], r["decided_by"], r["decided_by_role"], r["final"]) for r in staged
            if r["identity_email"] == "ann@acme.test"] == [
        ("1", "approve", "owner@acme.test", "reviewer", "no"),
        ("2", "revoke", "analyst@acme.test", "security_analyst", "not signed off"),
    ]
    assert all(r["decided_at"].endswith("Z") for r in staged)
    assert [(r["identity_email"], r["stage"], r["decision"]) for r in log if r["identity_email"] == "ann@acme.test"
            ] == [("ann@acme.test", "1", "approve"), ("ann@acme.test", "2", "revoke")]
    assert [s["stage"] for s in document["stages"]] == [1, 2]
    key_file = tmp_path / "key.pem"
    key_file.write_text(formats.public_key_pem(signing_key))
    call_command("verify_evidence", str(path), "--public-key", str(key_file))
    assert capsys.readouterr().out.startswith("OK ")


def test_review_screen_shows_the_stage_and_earlier_decisions_where_allowed(inventory, analyst, launched, act,
                                                                           client_for):
    campaign = launched(stages=two_stages(), scope={"applications": ["GitHub"]})
    owner = inventory.owner_member
    for grant in (inventory.grants.ann_github, inventory.grants.mia_github, inventory.grants.svc_github):
        act(decisions.review_item_decide, item=item(campaign, grant), actor=owner, decision="approve",
            reason="still needed")
    act(decisions.review_sign_off, campaign=campaign, actor=owner)
    page = client_for(analyst).get(f"/o/acme/campaigns/{campaign.pk}/items/", {"stage": "2"})
    html = page.content.decode()
    assert page.status_code == 200
    assert html.count("Stage 2 of 2") == 3
    assert "Stage 1: approved by owner@acme.test: still needed" in html
    assert 'id="f-stage"' in html
    ann = item(campaign, inventory.grants.ann_github)
    detail = client_for(analyst).get(f"/o/acme/campaigns/{campaign.pk}/items/{ann.pk}/").content.decode()
    assert "Pending at stage 2 after approval at stage 1 by owner@acme.test" in detail
    assert "data-stage-decisions" in detail
    overview = client_for(inventory.admin).get(f"/o/acme/campaigns/{campaign.pk}/").content.decode()
    assert 'data-stage-row="1"' in overview and 'data-stage-row="2"' in overview


def test_the_wizard_creates_a_two_stage_campaign(inventory, analyst, client_for):
    due = (timezone.localdate() + dt.timedelta(days=20)).isoformat()
    response = client_for(inventory.admin).post("/o/acme/campaigns/new/", {
        "title": "Wizard stages", "due_date": due, "applications": ["GitHub"], "reviewer_strategy":
        "application_owner", "fallback_reviewer": "fallback@acme.test", "default_outcome": "none",
        "reason_required": "on", "stage_count": "2", "stage1_duration_days": "10",
        "stage1_advance_on": ["approve"], "stage1_deadline_outcome": "carry_forward",
        "stage2_reviewer_strategy": "members", "stage2_reviewers": "analyst@acme.test",
        "stage2_fallback_reviewer": "mia@acme.test", "stage2_duration_days": "4", "stage2_advance_on": ["approve"],
        "stage2_deadline_outcome": "escalate", "save": "1",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    with scope(inventory.org):
        campaign = Campaign.objects.get(title="Wizard stages")
        rows = list(CampaignStage.objects.filter(campaign=campaign).values_list(
            "number", "reviewer_strategy", "reviewers", "duration_days", "advance_on", "show_earlier_decisions",
            "deadline_outcome"))
    assert rows == [(1, "application_owner", {}, 10, ["approve"], True, "carry_forward"),
                    (2, "members", {"*": ["analyst@acme.test"]}, 4, ["approve"], False, "escalate")]


def test_the_wizard_names_the_stage_field_at_fault(inventory, analyst, client_for):
    due = (timezone.localdate() + dt.timedelta(days=20)).isoformat()
    response = client_for(inventory.admin).post("/o/acme/campaigns/new/", {
        "title": "Wizard stages", "due_date": due, "reviewer_strategy": "application_owner",
        "fallback_reviewer": "fallback@acme.test", "default_outcome": "none", "stage_count": "2",
        "stage1_duration_days": "10", "stage2_reviewer_strategy": "members", "stage2_reviewers": "nobody@acme.test",
        "stage2_fallback_reviewer": "mia@acme.test", "stage2_duration_days": "4", "save": "1",
    })
    assert response.status_code == 200
    assert "stage 2: reviewers: nobody@acme.test is not a member" in response.content.decode()
    with scopes_disabled():
        assert not Campaign.objects.exists() and not ReviewItem.objects.exists()


def test_stages_change_while_draft_and_lock_once_launched(inventory, analyst, api_for, launched):
    api = api_for(inventory.admin)
    created = api.post(f"{API}/campaigns/", body(), format="json").json()
    url = f"{API}/campaigns/{created['id']}/"
    third = {"reviewer_strategy": "members", "reviewers": ["admin@acme.test"], "fallback_reviewer": "mia@acme.test",
             "duration_days": 3, "deadline_outcome": "revoke"}
    changed = api.patch(url, {"stages": [*two_stages(), third]}, format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["stage_count"] == 3
    assert [s["deadline_outcome"] for s in changed.json()["stages"]] == ["carry_forward", "carry_forward", "revoke"]
    # Back to one stage: the reviewer fields alone.
    single = api.patch(url, {"reviewer_strategy": "manager", "fallback_reviewer": "fallback@acme.test"},
                       format="json").json()
    assert single["stage_count"] == 1 and len(single["stages"]) == 1
    with scopes_disabled():
        assert not CampaignStage.objects.filter(campaign_id=created["id"]).exists()

    active = launched(stages=two_stages(), scope={"applications": ["GitHub"]}, title="Active")
    refused = api.patch(f"{API}/campaigns/{active.pk}/", {"stages": two_stages()[:1]}, format="json")
    assert refused.status_code == 409
    with scopes_disabled():
        assert CampaignStage.objects.filter(campaign=active).count() == 2


def test_a_recurring_campaign_copies_its_stages_to_the_next_occurrence(inventory, analyst, make_campaign):
    from campaigns.scheduling import occurrence_schedule_next

    campaign = make_campaign(stages=two_stages(), recurrence="monthly", duration_days=14,
                             launch_at=timezone.now() + dt.timedelta(days=1))
    with scope(inventory.org):
        occurrence = occurrence_schedule_next(campaign=campaign, now=timezone.now() + dt.timedelta(days=2))
        rows = list(CampaignStage.objects.filter(campaign=occurrence).values_list(
            "number", "reviewer_strategy", "reviewers", "duration_days"))
    assert occurrence.stage_count == 2
    assert rows == [(1, "application_owner", {}, 7), (2, "members", {"*": ["analyst@acme.test"]}, 5)]


def test_review_screen_queries_do_not_grow_with_page_size_in_a_multi_stage_campaign(inventory, lee, moved,
                                                                                    client_for):
    for who in (inventory.admin, lee):
        client = client_for(who)
        url = f"/o/acme/campaigns/{moved.pk}/items/"
        client.get(url, {"page_size": 1})
        counts = []
        for size in (1, 2):
            with CaptureQueriesContext(connection) as ctx:
                response = client.get(url, {"page_size": size})
            assert response.status_code == 200
            assert response.content.decode().count("Stage 2 of 2") == size
            counts.append(len(ctx.captured_queries))
        assert counts[0] == counts[1], who
