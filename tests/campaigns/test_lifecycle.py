# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Lifecycle services: create/schedule, locking, cancel, close with each default outcome, completion, reassign."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.decisions import review_item_decide, review_sign_off
from campaigns.models import CampaignStatus, DecisionEvent, ReviewItem
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import ScopeError, scope, scopes_disabled

from ..factories import OrganizationFactory
from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401

pytestmark = pytest.mark.django_db


def test_future_launch_at_makes_the_campaign_scheduled(inventory, make_campaign):
    campaign = make_campaign(launch_at=timezone.now() + dt.timedelta(days=1), recurrence="quarterly")
    assert campaign.status == CampaignStatus.SCHEDULED
    assert campaign.recurrence == "quarterly"
    with pytest.raises(services.CampaignError, match="launch_at must be in the future"):
        make_campaign(launch_at=timezone.now() - dt.timedelta(minutes=1))


def test_draft_can_be_edited_but_active_scope_and_reviewers_are_locked(inventory, make_campaign, launched):
    draft = make_campaign()
    with scope(inventory.org):
        draft = services.campaign_update(campaign=draft, actor=inventory.admin, scope={"departments": ["Sales"]},
                                         reviewer_strategy="manager")
    assert draft.scope["departments"] == ["Sales"] and draft.reviewer_strategy == "manager"
    active = launched()
    with scope(inventory.org):
        for change in ({"scope": {}}, {"reviewer_strategy": "manager"}, {"fallback_reviewer": "mia@acme.test"}):
            with pytest.raises(services.CampaignLocked, match="locked"):
                services.campaign_update(campaign=active, actor=inventory.admin, **change)
        services.campaign_update(campaign=active, actor=inventory.admin, title="Renamed")
        active.refresh_from_db()
    assert active.title == "Renamed" and active.reviewer_strategy == "application_owner"
    assert AuditEvent.objects.filter(action="campaign_updated", target_id=str(active.pk)).exists()


def test_cancel_needs_a_reason_and_is_audited(inventory, launched):
    campaign = launched()
    with scope(inventory.org):
        with pytest.raises(services.CampaignError, match="reason is required"):
            services.campaign_cancel(campaign=campaign, actor=inventory.admin, reason="   ")
        campaign.refresh_from_db()
        assert campaign.status == CampaignStatus.ACTIVE
        services.campaign_cancel(campaign=campaign, actor=inventory.admin, reason="Wrong scope")
        campaign.refresh_from_db()
    assert (campaign.status, campaign.cancel_reason, campaign.cancelled_by) == (
        "cancelled", "Wrong scope", inventory.admin.user)
    event = AuditEvent.objects.get(action="campaign_cancelled", target_id=str(campaign.pk))
    assert event.details == {"reason": "Wrong scope", "previous_status": "active"}


EXPECTED_OUTCOMES = {
    "none": {"": 8},
    "approve": {"approve": 8},
    "revoke": {"revoke": 8},
    # bob (terminated), ghost (orphaned) and mia (dormant) are recommended for revocation.
    "recommendation": {"approve": 5, "revoke": 3},
}


@pytest.mark.parametrize("outcome", list(EXPECTED_OUTCOMES))
def test_close_applies_each_default_outcome_as_system_decisions(inventory, launched, outcome):
    campaign = launched(default_outcome=outcome)
    with scope(inventory.org):
        decided = ReviewItem.objects.filter(campaign=campaign, identity_email="ann@acme.test",
                                            application_name="GitHub").get()
        review_item_decide(item=decided, actor=inventory.owner_member, decision="exception",
                           reason="Needed for the release")
        services.campaign_close(campaign=campaign, actor=inventory.admin)
        campaign.refresh_from_db()
        counts = {}
        for item in ReviewItem.objects.filter(campaign=campaign).exclude(pk=decided.pk):
            counts[item.decision] = counts.get(item.decision, 0) + 1
            if item.decision:
                assert item.decided_by_email == "system"
        decided.refresh_from_db()
        system_events = DecisionEvent.objects.filter(campaign=campaign, actor_email="system").count()
    expected = dict(EXPECTED_OUTCOMES[outcome])
    key = next(iter(expected))
    expected[key] -= 1  # the item decided by its reviewer keeps that decision
    assert counts == {k: v for k, v in expected.items() if v}
    assert decided.decision == "exception" and decided.decided_by_email == "owner@acme.test"
    assert system_events == (0 if outcome == "none" else 7)
    actions = set(AuditEvent.objects.filter(target_id=str(campaign.pk)).values_list("action", flat=True))
    assert campaign.closed_by == inventory.admin.user
    if "revoke" in expected:
        # Revoked access must be proven removed before the campaign completes.
        assert campaign.status == CampaignStatus.REMEDIATING and campaign.completed_at is None
        assert {"campaign_closed", "campaign_remediating"} <= actions and "campaign_completed" not in actions
    else:
        assert campaign.status == CampaignStatus.COMPLETED and campaign.completed_at is not None
        assert {"campaign_closed", "campaign_completed"} <= actions


def test_only_active_campaigns_close(inventory, make_campaign):
    campaign = make_campaign()
    with scope(inventory.org), pytest.raises(services.CampaignError, match="only active campaigns"):
        services.campaign_close(campaign=campaign, actor=inventory.admin)


def test_campaign_completes_when_every_item_is_decided_and_signed_off(inventory, launched,
                                                                      django_capture_on_commit_callbacks):
    campaign = launched(scope={"applications": ["GitHub"]}, reviewer_strategy="members",
                        reviewers=["owner@acme.test"])
    with scope(inventory.org):
        assert services.campaign_complete_if_done(campaign=campaign) is False
        reviewers = {}
        for item in ReviewItem.objects.filter(campaign=campaign).select_related("reviewer__user"):
            reviewers.setdefault(item.reviewer_id, item.reviewer)
            review_item_decide(item=item, actor=item.reviewer, decision="approve", reason="ok")
        with django_capture_on_commit_callbacks(execute=True):
            for reviewer in reviewers.values():
                review_sign_off(campaign=campaign, actor=reviewer)
        campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    event = AuditEvent.objects.get(action="campaign_completed", target_id=str(campaign.pk))
    assert event.actor_email == "system"


def test_reassign_moves_open_items_and_records_why(inventory, launched):
    campaign = launched()
    with scope(inventory.org):
        result = services.items_reassign(campaign=campaign, actor=inventory.admin, from_reviewer=inventory.fallback,
                                         to_reviewer=inventory.mia_member, reason="Fallback is away")
        moved = list(ReviewItem.objects.filter(campaign=campaign, reviewer=inventory.mia_member))
        stayed = ReviewItem.objects.get(campaign=campaign, identity_email="mia@acme.test")
    assert result.reassigned == 5 and result.skipped_self_review == 0
    assert {i.reviewer_email for i in moved} == {"mia@acme.test"}
    assert moved[0].assignment_note.startswith("Reassigned from fallback@acme.test to mia@acme.test by admin@acme.test")
    assert moved[0].assignment_note.endswith(": Fallback is away")
    assert stayed.reviewer_id == inventory.owner_member.pk
    event = AuditEvent.objects.get(action="campaign_items_reassigned", target_id=str(campaign.pk))
    assert event.details["count"] == 5 and event.details["to"] == "mia@acme.test"


def test_reassign_never_creates_self_review_and_keeps_signed_off_items(inventory, launched):
    campaign = launched()
    with scope(inventory.org):
        ReviewItem.objects.filter(campaign=campaign, identity_email="ann@acme.test").update(
            signed_off_at=timezone.now(), decision="approve")
        result = services.items_reassign(campaign=campaign, actor=inventory.admin,
                                         from_reviewer=inventory.owner_member, to_reviewer=inventory.mia_member)
        mia_own = ReviewItem.objects.get(campaign=campaign, identity_email="mia@acme.test")
        ann = ReviewItem.objects.get(campaign=campaign, identity_email="ann@acme.test", application_name="GitHub")
    assert result.reassigned == 1 and result.skipped_self_review == 1
    assert mia_own.reviewer_id == inventory.owner_member.pk
    assert ann.reviewer_id == inventory.owner_member.pk


def test_reassign_refuses_members_who_cannot_review_and_other_organizations(inventory, launched, member):
    campaign = launched()
    viewer = member(Role.VIEWER)
    stranger = member(Role.REVIEWER, organization=OrganizationFactory(slug="umbrella"), email="r@umbrella.test")
    with scope(inventory.org):
        with pytest.raises(services.CampaignError, match="cannot review items"):
            services.items_reassign(campaign=campaign, actor=inventory.admin, from_reviewer=inventory.fallback,
                                    to_reviewer=viewer)
        with pytest.raises(ScopeError):
            services.items_reassign(campaign=campaign, actor=inventory.admin, from_reviewer=inventory.fallback,
                                    to_reviewer=stranger)
        assert ReviewItem.objects.filter(campaign=campaign, reviewer=inventory.fallback).count() == 5


def test_audit_trail_of_a_campaign(inventory, launched):
    campaign = launched()
    with scopes_disabled():
        actions = list(AuditEvent.objects.filter(target_id=str(campaign.pk)).order_by("id")
                       .values_list("action", flat=True))
    assert actions == ["campaign_created", "campaign_freshness_overridden", "campaign_launched"]
