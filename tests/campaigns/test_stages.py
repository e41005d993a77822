# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures and the ITSM fakes are requested by name
"""Multi-stage reviews: application owners decide first, a named analyst second; approvals move on, revokes are
final, nobody decides an item in two stages, and a stage's deadline applies its outcome."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from campaigns import decisions, stages
from campaigns.models import (
    Campaign,
    CampaignStage,
    CampaignStatus,
    DecisionEvent,
    ItemReassignment,
    ReviewItem,
)
from campaigns.review_selectors import ItemFilter, review_items_matching
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from ..itsm.conftest import connect, fake_vendor, itsm_ca, itsm_ca_bundle, itsm_settings, jira  # noqa: F401
from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401
from .review_support import assert_chain_intact

pytestmark = pytest.mark.django_db


def two_stages(**second) -> list[dict]:
    return [
        {"reviewer_strategy": "application_owner", "fallback_reviewer": "fallback@acme.test", "duration_days": 7},
        {"reviewer_strategy": "members", "reviewers": ["analyst@acme.test"], "fallback_reviewer": "mia@acme.test",
         "duration_days": 5, **second},
    ]


@pytest.fixture
def analyst(member):
    return member(Role.SECURITY_ANALYST, email="analyst@acme.test")


@pytest.fixture
def act(inventory, django_capture_on_commit_callbacks):
    """act(service, **kwargs): run a service in acme's scope with its after-commit work (outbox, tasks)."""

    def run(service, **kwargs):
        with scope(inventory.org), django_capture_on_commit_callbacks(execute=True):
            return service(**kwargs)

    return run


@pytest.fixture
def staged(inventory, analyst, launched):
    """A launched two-stage campaign over GitHub: the owner (owner@acme.test) reviews stage 1, except the owner's
    own access, which falls back to fallback@acme.test; the analyst reviews stage 2."""

    def make(**second):
        return launched(stages=two_stages(**second), scope={"applications": ["GitHub"]})

    return make


def item(campaign: Campaign, grant) -> ReviewItem:
    with scopes_disabled():
        return ReviewItem.objects.select_related("campaign").get(campaign=campaign, entitlement=grant)


def test_two_stage_campaign_moves_approvals_to_the_analyst_and_keeps_stage_one_revokes_final(
    inventory, analyst, staged, act, jira, connect
):
    connect(jira)
    campaign = staged()
    g = inventory.grants
    owner, fallback, mia = inventory.owner_member, inventory.fallback, inventory.mia_member
    ann, svc, mia_item, own = (item(campaign, x) for x in (g.ann_github, g.svc_github, g.mia_github, g.owner_github))
    assert campaign.stage_count == 2
    assert {ann.reviewer_email, svc.reviewer_email, mia_item.reviewer_email} == {"owner@acme.test"}
    assert own.reviewer_email == "fallback@acme.test"  # the owner never reviews their own access
    assert {i.stage for i in (ann, svc, own)} == {1}
    assert ann.stage_due_at is not None

    decide = decisions.review_item_decide
    act(decide, item=ann, actor=owner, decision="approve", reason="still on the team")
    act(decide, item=svc, actor=owner, decision="revoke", reason="build bot retired")
    act(decide, item=mia_item, actor=owner, decision="approve")
    # The analyst decides any item, so she takes the owner's own access at stage 1 ...
    act(decide, item=own, actor=analyst, decision="approve", reason="owner of the org")
    # The stage-1 revoke is final: its ticket opens now; approvals that move on open nothing.
    assert len(jira.tickets) == 1
    assert item(campaign, g.svc_github).ticket_key

    act(decisions.review_sign_off, campaign=campaign, actor=owner)
    act(decisions.review_sign_off, campaign=campaign, actor=fallback)
    ann, svc, mia_item, own = (item(campaign, x) for x in (g.ann_github, g.svc_github, g.mia_github, g.owner_github))
    assert (ann.stage, ann.reviewer_email, ann.decision, ann.signed_off_at) == (2, "analyst@acme.test", "", None)
    assert (svc.stage, svc.decision) == (1, "revoke") and svc.signed_off_at is not None
    # ... and so, by the distinct-reviewer rule, stage 2 of that item goes to stage 2's fallback, saying why.
    assert own.stage == 2 and own.reviewer_email == "mia@acme.test"
    assert "analyst@acme.test decided this item at stage 1" in own.assignment_note
    assert "assigned to the fallback reviewer" in own.assignment_note
    with scopes_disabled():
        hop = ItemReassignment.objects.filter(item=own, kind="stage").get()
    assert (hop.from_email, hop.to_email) == ("fallback@acme.test", "mia@acme.test")
    assert [(e["stage"], e["decision"], e["decided_by"]) for e in ann.stage_decisions] == [
        (1, "approve", "owner@acme.test")
    ]
    # Nobody decides one item in two stages, whatever their role.
    with scope(inventory.org), pytest.raises(PermissionDenied, match="at stage 1"):
        decide(item=own, actor=analyst, decision="revoke", reason="second look")

    act(decide, item=ann, actor=analyst, decision="revoke", reason="no longer needs admin")
    act(decide, item=mia_item, actor=analyst, decision="approve")
    act(decide, item=own, actor=mia, decision="approve")
    assert len(jira.tickets) == 2  # one per final revoke: svc at stage 1, ann at stage 2
    act(decisions.review_sign_off, campaign=campaign, actor=analyst)
    act(decisions.review_sign_off, campaign=campaign, actor=mia)

    ann = item(campaign, g.ann_github)
    assert stages.decision_path_text(ann) == (
        "Revoked at stage 2 by analyst@acme.test after approval at stage 1 by owner@acme.test"
    )
    assert len(jira.tickets) == 2
    with scopes_disabled():
        assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.REMEDIATING
        events = list(DecisionEvent.objects.filter(item=ann).order_by("id").values_list("stage", "decision"))
        advanced = AuditEvent.objects.filter(action="campaign_stage_advanced", target_id=str(campaign.pk))
        assert {(a.details["from_stage"], a.details["to_stage"], a.details["count"]) for a in advanced} == {
            (1, 2, 2), (1, 2, 1)
        }
    assert events == [(1, "approve"), (2, "revoke")]
    assert_chain_intact(campaign)


def test_a_revoke_that_moves_on_opens_no_ticket_only_the_final_revoke_does(inventory, analyst, launched, act, jira,
                                                                           connect):
    connect(jira)
    first = {"reviewer_strategy": "application_owner", "fallback_reviewer": "fallback@acme.test", "duration_days": 7,
             "advance_on": ["approve", "exception", "revoke"]}
    campaign = launched(stages=[first, two_stages()[1]], scope={"applications": ["GitHub"]})
    ann = item(campaign, inventory.grants.ann_github)
    act(decisions.review_item_decide, item=ann, actor=inventory.owner_member, decision="revoke", reason="moved")
    act(decisions.review_item_decide, item=item(campaign, inventory.grants.svc_github), actor=inventory.owner_member,
        decision="approve")
    act(decisions.review_item_decide, item=item(campaign, inventory.grants.mia_github), actor=inventory.owner_member,
        decision="approve")
    act(decisions.review_sign_off, campaign=campaign, actor=inventory.owner_member)
    assert jira.tickets == {}  # the stage-1 revoke was not the last word
    ann = item(campaign, inventory.grants.ann_github)
    assert (ann.stage, ann.decision, ann.reviewer_email) == (2, "", "analyst@acme.test")
    act(decisions.review_item_decide, item=ann, actor=analyst, decision="revoke", reason="confirmed")
    assert len(jira.tickets) == 1
    [ticket] = jira.tickets.values()
    assert "ann@acme.test" in ticket["summary"]


def test_a_fallback_who_decided_an_earlier_stage_is_not_assigned_the_item_says_so(
    inventory, analyst, launched, act
):
    # Stage 2's named reviewer and fallback both decided the owner's own access at stage 1: nobody is left.
    second = {"reviewer_strategy": "members", "reviewers": ["analyst@acme.test"],
              "fallback_reviewer": "fallback@acme.test", "duration_days": 5}
    campaign = launched(stages=[two_stages()[0], second], scope={"applications": ["GitHub"]})
    own = item(campaign, inventory.grants.owner_github)
    assert own.reviewer_email == "fallback@acme.test"
    act(decisions.review_item_decide, item=own, actor=inventory.fallback, decision="approve")
    act(decisions.review_sign_off, campaign=campaign, actor=inventory.fallback)
    own = item(campaign, inventory.grants.owner_github)
    # The analyst did not decide it, so she gets it.
    assert own.reviewer_email == "analyst@acme.test"

    campaign = launched(
        title="Second", stages=[two_stages()[0], {**second, "reviewers": ["fallback@acme.test"],
                                                  "fallback_reviewer": "fallback@acme.test"}],
        scope={"applications": ["GitHub"]},
    )
    own = item(campaign, inventory.grants.owner_github)
    act(decisions.review_item_decide, item=own, actor=inventory.fallback, decision="approve")
    act(decisions.review_sign_off, campaign=campaign, actor=inventory.fallback)
    own = item(campaign, inventory.grants.owner_github)
    assert own.stage == 2 and own.reviewer_id is None and own.reviewer_email == ""
    assert "the fallback reviewer fallback@acme.test also decided this item at stage 1" in own.assignment_note
    assert "unassigned until an admin reassigns it" in own.assignment_note


def test_bulk_decisions_leave_out_items_the_member_decided_in_an_earlier_stage(inventory, analyst, staged, act):
    campaign = staged(reviewers=["owner@acme.test"])
    g = inventory.grants
    for grant in (g.ann_github, g.mia_github, g.svc_github):
        act(decisions.review_item_decide, item=item(campaign, grant), actor=analyst, decision="approve")
    act(decisions.review_item_decide, item=item(campaign, g.owner_github), actor=inventory.fallback,
        decision="approve")
    act(decisions.review_sign_off, campaign=campaign, actor=inventory.owner_member)
    act(decisions.review_sign_off, campaign=campaign, actor=inventory.fallback)
    with scope(inventory.org):
        everything = review_items_matching(campaign=campaign, membership=analyst, flt=ItemFilter(stage="2"))
        assert everything.count() == 4
        result = decisions.decisions_bulk_apply(campaign=campaign, actor=analyst, items=everything,
                                                decision="revoke", reason="all out")
    # The three the analyst approved at stage 1 are left out; the owner's own access, which fell back to mia at
    # stage 2, she may still decide.
    assert result.skipped == {"earlier_stage": 3}
    assert result.updated == 1


def test_stage_deadlines_carry_forward_then_escalate_once(inventory, analyst, launched, act):
    first = {**two_stages()[0], "deadline_outcome": "carry_forward"}
    second = {**two_stages()[1], "deadline_outcome": "escalate"}
    start = timezone.now()
    campaign = launched(stages=[first, second], scope={"applications": ["GitHub"]})
    ann = item(campaign, inventory.grants.ann_github)
    act(decisions.review_item_decide, item=ann, actor=inventory.owner_member, decision="revoke", reason="gone")

    with time_machine.travel(start + dt.timedelta(days=6), tick=False):
        assert stages.stage_deadlines_sweep() == {"campaigns": 0, "carried_forward": 0, "approve": 0, "revoke": 0,
                                                  "escalated": 0}
    with time_machine.travel(start + dt.timedelta(days=8), tick=False):
        first_run = stages.stage_deadlines_sweep()
        second_run = stages.stage_deadlines_sweep()
    assert first_run["carried_forward"] == 3  # the three undecided items; ann's revoke stays with the owner
    assert second_run["carried_forward"] == 0 and second_run["campaigns"] == 0
    svc = item(campaign, inventory.grants.svc_github)
    assert (svc.stage, svc.reviewer_email) == (2, "analyst@acme.test")
    assert svc.stage_decisions[0]["decision"] is None
    assert "carried forward to stage 2" in svc.stage_decisions[0]["reason"]
    assert item(campaign, inventory.grants.ann_github).stage == 1

    with time_machine.travel(start + dt.timedelta(days=14), tick=False):
        escalated = stages.stage_deadlines_sweep()
        again = stages.stage_deadlines_sweep()
    assert escalated["escalated"] == 3 and again["escalated"] == 0
    svc = item(campaign, inventory.grants.svc_github)
    assert (svc.stage, svc.decision, svc.reviewer_email, svc.stage_due_at) == (2, "", "mia@acme.test", None)
    with scopes_disabled():
        outcomes = list(AuditEvent.objects.filter(action="campaign_stage_deadline").order_by("id")
                        .values_list("details", flat=True))
    assert outcomes == [{"stage": 1, "outcome": "carry_forward", "count": 3},
                        {"stage": 2, "outcome": "escalate", "count": 3}]


def test_a_stage_deadline_that_approves_moves_items_on_and_one_that_revokes_is_final(
    inventory, analyst, launched, act
):
    first = {**two_stages()[0], "deadline_outcome": "approve"}
    second = {**two_stages()[1], "deadline_outcome": "revoke"}
    start = timezone.now()
    campaign = launched(stages=[first, second], scope={"applications": ["GitHub"]})
    with time_machine.travel(start + dt.timedelta(days=8), tick=False):
        assert stages.stage_deadlines_sweep()["approve"] == 4
    svc = item(campaign, inventory.grants.svc_github)
    assert (svc.stage, svc.decision) == (2, "")
    assert svc.stage_decisions[0]["decision"] == "approve" and svc.stage_decisions[0]["decided_by"] == "system"
    with time_machine.travel(start + dt.timedelta(days=14), tick=False):
        assert stages.stage_deadlines_sweep()["revoke"] == 4
        assert stages.stage_deadlines_sweep()["revoke"] == 0
    svc = item(campaign, inventory.grants.svc_github)
    assert (svc.stage, svc.decision, svc.decided_by_email) == (2, "revoke", "system")
    assert svc.signed_off_at is not None
    with scopes_disabled():
        assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.REMEDIATING
        kinds = set(DecisionEvent.objects.filter(campaign=campaign).values_list("stage", "kind", "decision"))
    assert kinds == {(1, "system", "approve"), (2, "system", "revoke")}
    assert_chain_intact(campaign)


def test_single_stage_campaigns_are_unchanged(inventory, launched, act):
    campaign = launched(scope={"applications": ["GitHub"]})
    assert campaign.stage_count == 1
    with scopes_disabled():
        assert not CampaignStage.objects.filter(campaign=campaign).exists()
    ann = item(campaign, inventory.grants.ann_github)
    act(decisions.review_item_decide, item=ann, actor=inventory.owner_member, decision="approve")
    ann = item(campaign, inventory.grants.ann_github)
    assert (ann.stage, ann.stage_decisions, ann.stage_due_at) == (1, [], None)
    with scopes_disabled():
        assert DecisionEvent.objects.get(item=ann).stage is None  # hashed exactly as before stages existed
    assert_chain_intact(campaign)


def test_a_later_stage_assigns_as_launch_does_with_guests_delegation_and_fallback(
    inventory, analyst, launched, act, mailoutbox, client
):
    import re
    from urllib.parse import urlparse

    from campaigns.models import Delegation, GuestReviewer

    inventory.org.guest_reviewers_enabled = True
    inventory.org.save(update_fields=["guest_reviewers_enabled"])
    with scopes_disabled():
        Delegation.objects.create(organization=inventory.org, member=inventory.mia_member, delegate=analyst,
                                  starts_on=timezone.localdate())
    second = {"reviewer_strategy": "manager", "fallback_reviewer": "admin@acme.test", "duration_days": 5}
    campaign = launched(stages=[two_stages()[0], second], scope={"applications": ["GitHub"]})
    g = inventory.grants
    for grant in (g.ann_github, g.svc_github, g.mia_github):
        act(decisions.review_item_decide, item=item(campaign, grant), actor=inventory.owner_member,
            decision="approve")
    mailoutbox.clear()
    act(decisions.review_sign_off, campaign=campaign, actor=inventory.owner_member)

    ann, svc, mia_item = (item(campaign, x) for x in (g.ann_github, g.svc_github, g.mia_github))
    # ann's manager mia has delegated to the analyst.
    assert ann.reviewer_email == "analyst@acme.test"
    assert "standing delegation to analyst@acme.test" in ann.assignment_note
    # The build bot's manager, ann, is not a member: she reviews stage 2 as a guest, through an e-mailed link.
    with scopes_disabled():
        guest = GuestReviewer.objects.get(campaign=campaign, email="ann@acme.test")
    assert (svc.reviewer_id, svc.guest_id, svc.reviewer_email) == (None, guest.pk, "ann@acme.test")
    [link] = [m for m in mailoutbox if m.to == ["ann@acme.test"]]
    portal = client.get(urlparse(re.search(r"https?://\S+/guest/\S+/", link.body).group(0)).path)
    assert portal.status_code == 200
    assert "Stage 2 of 2" in portal.content.decode()
    assert "Stage 1: approve by owner@acme.test" in portal.content.decode()
    # mia has no manager in the inventory: stage 2's fallback.
    assert mia_item.reviewer_email == "admin@acme.test"
    assert "The identity has no manager in the inventory: assigned to the fallback reviewer" in mia_item.assignment_note


def test_beat_runs_the_stage_deadlines_task(inventory, analyst, launched, settings):
    from campaigns.tasks import stage_deadlines_task

    assert settings.CELERY_BEAT_SCHEDULE["campaigns-stage-deadlines"]["task"] == "campaigns.stage_deadlines"
    start = timezone.now()
    campaign = launched(stages=two_stages(), scope={"applications": ["GitHub"]})
    with time_machine.travel(start + dt.timedelta(days=8), tick=False):
        result = stage_deadlines_task.delay().get(timeout=30)
    assert result["campaigns"] == 1 and result["carried_forward"] == 4
    with scopes_disabled():
        assert set(ReviewItem.objects.filter(campaign=campaign).values_list("stage", flat=True)) == {2}


def test_a_sign_off_with_the_broker_down_moves_items_at_once_and_the_sweep_tells_the_next_reviewer(
    inventory, analyst, staged, act, broker_down, mailoutbox, django_capture_on_commit_callbacks
):
    from thalian.models import OutboxEvent, OutboxState
    from thalian.tasks import outbox_sweep

    campaign = staged()
    for grant in (inventory.grants.ann_github, inventory.grants.mia_github, inventory.grants.svc_github):
        act(decisions.review_item_decide, item=item(campaign, grant), actor=inventory.owner_member,
            decision="approve")
    mailoutbox.clear()
    with broker_down():
        act(decisions.review_sign_off, campaign=campaign, actor=inventory.owner_member)
    # The move is part of the sign-off: nothing waits for the broker.
    assert item(campaign, inventory.grants.ann_github).reviewer_email == "analyst@acme.test"
    with scopes_disabled():
        pending = OutboxEvent.objects.filter(name="campaigns.items_reassigned", state=OutboxState.PENDING)
        assert pending.count() == 1
    assert not [m for m in mailoutbox if m.to == ["analyst@acme.test"]]
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=5)), \
            django_capture_on_commit_callbacks(execute=True):
        outbox_sweep.delay().get(timeout=30)
    with scopes_disabled():
        assert not OutboxEvent.objects.filter(name="campaigns.items_reassigned").exclude(
            state=OutboxState.DONE).exists()
    assert [m for m in mailoutbox if m.to == ["analyst@acme.test"]]
