import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from campaigns.decisions import (
    KIND_BULK,
    KIND_SINGLE,
    KIND_SYSTEM,
    decisions_apply_default_outcome,
    decisions_bulk_apply,
    review_item_decide,
    review_sign_off,
)
from campaigns.models import Campaign, CampaignStatus, DefaultOutcome, ReviewItem
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import ScopeError, scope, scopes_disabled

from .review_support import active_campaign, add_items, assert_chain_intact, events_of, fresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(member):
    return member(Role.REVIEWER)


@pytest.fixture
def campaign(org):
    return active_campaign(org)


def test_decision_updates_item_and_appends_hashed_history(org, campaign, reviewer):
    [item] = add_items(campaign, reviewer, 1)
    with scope(org):
        review_item_decide(item=item, actor=reviewer, decision="approve", reason="", comment="needed for on-call")
    item = fresh(item)
    assert (item.decision, item.decision_comment, item.decided_by_email, item.decided_by_role, item.version) == (
        "approve", "needed for on-call", reviewer.user.email, "reviewer", 1
    )
    [event] = events_of(campaign)
    assert (event.item_id, event.decision, event.actor_email, event.actor_role, event.kind) == (
        item.pk, "approve", reviewer.user.email, "reviewer", KIND_SINGLE
    )
    assert_chain_intact(campaign)
    audit = AuditEvent.objects.get(action="campaign_decision")
    assert audit.details["decision"] == "approve" and audit.actor_email == reviewer.user.email


def test_changing_a_decision_keeps_both_in_history_and_shows_the_last(org, campaign, reviewer):
    [item] = add_items(campaign, reviewer, 1)
    with scope(org):
        review_item_decide(item=item, actor=reviewer, decision="approve")
        review_item_decide(item=item, actor=reviewer, decision="revoke", reason="left the team")
    item = fresh(item)
    assert (item.decision, item.decision_reason, item.version) == ("revoke", "left the team", 2)
    assert [(e.decision, e.reason) for e in events_of(campaign)] == [("approve", ""), ("revoke", "left the team")]
    assert_chain_intact(campaign)


@pytest.mark.parametrize("decision", ["revoke", "exception"])
def test_reason_is_required_for_revoke_and_exception(org, campaign, reviewer, decision):
    [item] = add_items(campaign, reviewer, 1)
    with scope(org), pytest.raises(ValidationError) as exc:
        review_item_decide(item=item, actor=reviewer, decision=decision, reason="   ")
    assert "reason is required" in str(exc.value)
    assert fresh(item).decision == "" and events_of(campaign) == []


def test_reason_is_optional_when_the_campaign_does_not_require_it(org, reviewer):
    campaign = active_campaign(org, reason_required=False)
    [item] = add_items(campaign, reviewer, 1)
    with scope(org):
        review_item_decide(item=item, actor=reviewer, decision="revoke")
    assert fresh(item).decision == "revoke"


def test_unknown_decision_is_rejected_naming_it(org, campaign, reviewer):
    [item] = add_items(campaign, reviewer, 1)
    with scope(org), pytest.raises(ValidationError) as exc:
        review_item_decide(item=item, actor=reviewer, decision="maybe")
    assert "'maybe'" in str(exc.value)
    assert fresh(item).version == 0


def test_reviewer_cannot_decide_item_assigned_to_someone_else(org, campaign, reviewer, member):
    other = member(Role.REVIEWER, email="other.reviewer@acme.test")
    [item] = add_items(campaign, other, 1)
    with scope(org), pytest.raises(PermissionDenied):
        review_item_decide(item=item, actor=reviewer, decision="approve")
    assert fresh(item).decision == ""


@pytest.mark.parametrize("role", [Role.SECURITY_ANALYST, Role.ADMIN, Role.SUPER_ADMIN])
def test_analysts_and_admins_decide_any_item(org, campaign, reviewer, member, role):
    staff = member(role)
    [item] = add_items(campaign, reviewer, 1)
    with scope(org):
        review_item_decide(item=item, actor=staff, decision="exception", reason="break-glass account")
    item = fresh(item)
    assert (item.decision, item.decided_by_role) == ("exception", role)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.AUDITOR])
def test_roles_without_decide_permission_are_refused(org, campaign, reviewer, member, role):
    [item] = add_items(campaign, member(role), 1)
    with scope(org), pytest.raises(PermissionDenied):
        review_item_decide(item=item, actor=member(role), decision="approve")


def test_decisions_only_while_campaign_is_active(org, reviewer):
    campaign = active_campaign(org, status=CampaignStatus.COMPLETED)
    [item] = add_items(campaign, reviewer, 1)
    with scope(org), pytest.raises(ValidationError) as exc:
        review_item_decide(item=item, actor=reviewer, decision="approve")
    assert "completed" in str(exc.value)


def test_actor_from_another_organization_cannot_decide(org, campaign, reviewer, outsider):
    [item] = add_items(campaign, reviewer, 1)
    outsider.role = Role.ADMIN
    with scope(org), pytest.raises(ScopeError):
        review_item_decide(item=item, actor=outsider, decision="approve")


def test_bulk_decision_is_one_update_with_a_history_row_per_item_and_one_audit_event(org, campaign, reviewer):
    sales = add_items(campaign, reviewer, 7, identity_department="Sales")
    add_items(campaign, reviewer, 3, identity_department="Finance")
    with scope(org):
        updated = decisions_bulk_apply(
            campaign=campaign,
            actor=reviewer,
            items=ReviewItem.objects.filter(identity_department="Sales"),
            decision="approve",
            scope_label="all in view",
        )
    assert updated.updated == 7 and updated.skipped == {}
    with scopes_disabled():
        decided = set(ReviewItem.objects.filter(campaign=campaign).exclude(decision="").values_list("pk", flat=True))
    assert decided == {i.pk for i in sales}
    events = events_of(campaign)
    assert [e.item_id for e in events] == sorted(i.pk for i in sales)
    assert {e.kind for e in events} == {KIND_BULK} and len({e.bulk_id for e in events}) == 1
    assert_chain_intact(campaign)
    audit = AuditEvent.objects.get(action="campaign_bulk_decision")
    assert audit.details["count"] == 7 and audit.details["decision"] == "approve"


def test_bulk_chain_continues_after_single_decisions(org, campaign, reviewer):
    items = add_items(campaign, reviewer, 5)
    with scope(org):
        review_item_decide(item=items[2], actor=reviewer, decision="approve")
        decisions_bulk_apply(
            campaign=campaign, actor=reviewer, items=ReviewItem.objects.all(), decision="revoke", reason="cleanup"
        )
        review_item_decide(item=items[0], actor=reviewer, decision="exception", reason="vendor contract")
    assert len(events_of(campaign)) == 7
    assert_chain_intact(campaign)


def test_bulk_decision_by_reviewer_only_touches_their_items(org, campaign, reviewer, member):
    other = member(Role.REVIEWER, email="other.reviewer@acme.test")
    mine = add_items(campaign, reviewer, 3)
    theirs = add_items(campaign, other, 2)
    with scope(org):
        updated = decisions_bulk_apply(
            campaign=campaign, actor=reviewer, items=ReviewItem.objects.all(), decision="approve"
        )
    assert updated.updated == 3
    assert {fresh(i).decision for i in mine} == {"approve"}
    assert {fresh(i).decision for i in theirs} == {""}


def test_bulk_decision_with_a_stale_confirmed_count_changes_nothing(org, campaign, reviewer):
    add_items(campaign, reviewer, 4)
    with scope(org), pytest.raises(ValidationError) as exc:
        decisions_bulk_apply(
            campaign=campaign, actor=reviewer, items=ReviewItem.objects.all(), decision="approve", expected_count=3
        )
    assert "4 items" in str(exc.value) and "3" in str(exc.value)
    with scopes_disabled():
        assert not ReviewItem.objects.exclude(decision="").exists()
        assert Campaign.objects.get(pk=campaign.pk).chain_head == ""
    assert events_of(campaign) == []


def test_bulk_revoke_without_reason_changes_nothing(org, campaign, reviewer):
    add_items(campaign, reviewer, 2)
    with scope(org), pytest.raises(ValidationError):
        decisions_bulk_apply(campaign=campaign, actor=reviewer, items=ReviewItem.objects.all(), decision="revoke")
    assert events_of(campaign) == []


def test_sign_off_requires_every_assigned_item_decided(org, campaign, reviewer):
    items = add_items(campaign, reviewer, 3)
    with scope(org):
        review_item_decide(item=items[0], actor=reviewer, decision="approve")
        with pytest.raises(ValidationError) as exc:
            review_sign_off(campaign=campaign, actor=reviewer)
    assert "2 of your 3 items are still undecided" in str(exc.value)
    assert all(fresh(i).signed_off_at is None for i in items)


def test_sign_off_locks_the_reviewers_decisions(org, campaign, reviewer, member):
    admin = member(Role.ADMIN)
    items = add_items(campaign, reviewer, 3)
    with scope(org):
        decisions_bulk_apply(campaign=campaign, actor=reviewer, items=ReviewItem.objects.all(), decision="approve")
        assert review_sign_off(campaign=campaign, actor=reviewer) == 3
        with pytest.raises(ValidationError) as exc:
            review_item_decide(item=items[0], actor=reviewer, decision="revoke", reason="changed my mind")
        assert "signed off" in str(exc.value)
        with pytest.raises(ValidationError):
            review_item_decide(item=items[0], actor=admin, decision="revoke", reason="admin override")
        assert (
            decisions_bulk_apply(
                campaign=campaign, actor=admin, items=ReviewItem.objects.all(), decision="revoke", reason="x"
            ).updated
            == 0
        )
    assert {fresh(i).decision for i in items} == {"approve"}
    assert AuditEvent.objects.filter(action="campaign_signed_off").count() == 1


def test_signing_off_twice_is_refused(org, campaign, reviewer):
    add_items(campaign, reviewer, 1)
    with scope(org):
        decisions_bulk_apply(campaign=campaign, actor=reviewer, items=ReviewItem.objects.all(), decision="approve")
        review_sign_off(campaign=campaign, actor=reviewer)
        with pytest.raises(ValidationError) as exc:
            review_sign_off(campaign=campaign, actor=reviewer)
    assert "already signed off" in str(exc.value)


def test_sign_off_without_items_is_refused(org, campaign, reviewer, member):
    add_items(campaign, member(Role.ADMIN), 1)
    with scope(org), pytest.raises(ValidationError) as exc:
        review_sign_off(campaign=campaign, actor=reviewer)
    assert "no items" in str(exc.value)


def test_campaign_completes_when_the_last_reviewer_signs_off(
    org, campaign, reviewer, member, django_capture_on_commit_callbacks
):
    other = member(Role.REVIEWER, email="other.reviewer@acme.test")
    add_items(campaign, reviewer, 2)
    add_items(campaign, other, 1)
    with scope(org):
        decisions_bulk_apply(
            campaign=campaign, actor=member(Role.ADMIN), items=ReviewItem.objects.all(), decision="approve"
        )
        with django_capture_on_commit_callbacks(execute=True):
            review_sign_off(campaign=campaign, actor=reviewer)
        assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.ACTIVE
        with django_capture_on_commit_callbacks(execute=True):
            review_sign_off(campaign=campaign, actor=other)
        assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.COMPLETED


@pytest.mark.parametrize(
    "outcome,expected",
    [
        (DefaultOutcome.NONE, ["approve", "", ""]),
        (DefaultOutcome.APPROVE, ["approve", "approve", "approve"]),
        (DefaultOutcome.REVOKE, ["approve", "revoke", "revoke"]),
        (DefaultOutcome.RECOMMENDATION, ["approve", "revoke", "approve"]),
    ],
)
def test_default_outcome_is_applied_to_undecided_items_as_system_decisions(
    org, reviewer, member, outcome, expected
):
    campaign = active_campaign(org, default_outcome=outcome)
    decided = add_items(campaign, reviewer, 1, recommendation="revoke")
    dormant = add_items(campaign, reviewer, 1, recommendation="revoke", is_dormant=True)
    active = add_items(campaign, reviewer, 1, recommendation="approve")
    with scope(org):
        review_item_decide(item=decided[0], actor=reviewer, decision="approve")
        count = decisions_apply_default_outcome(campaign=campaign, actor=member(Role.ADMIN))
    assert [fresh(i).decision for i in (*decided, *dormant, *active)] == expected
    assert count == sum(1 for d in expected[1:] if d)
    system = [e for e in events_of(campaign) if e.kind == KIND_SYSTEM]
    assert len(system) == count
    for event in system:
        assert event.actor_email == "system" and event.actor_id is None
        assert "Default outcome" in event.reason
    if count:
        assert fresh(dormant[0]).decided_by_email == "system"
    assert_chain_intact(campaign)


def test_remediation_follows_single_and_bulk_decisions(org, campaign, reviewer, django_capture_on_commit_callbacks):
    items = add_items(campaign, reviewer, 3)
    with scope(org):
        with django_capture_on_commit_callbacks(execute=True):
            review_item_decide(item=items[0], actor=reviewer, decision="revoke", reason="left")
        assert fresh(items[0]).remediation_status == "pending"
        with django_capture_on_commit_callbacks(execute=True):
            decisions_bulk_apply(campaign=campaign, actor=reviewer, items=ReviewItem.objects.all(), decision="approve")
        assert [fresh(i).remediation_status for i in items] == ["", "", ""]
        with django_capture_on_commit_callbacks(execute=True):
            decisions_bulk_apply(
                campaign=campaign, actor=reviewer, items=ReviewItem.objects.all(), decision="revoke", reason="gone"
            )
        assert [fresh(i).remediation_status for i in items] == ["pending"] * 3


def test_bulk_history_keeps_reason_and_comment_text_exactly(org, campaign, reviewer):
    add_items(campaign, reviewer, 3)
    reason = "Left 2024-05\tteam: \\\\share\\ops\nsee =HYPERLINK(\"x\") — é"
    comment = "line one\r\nline two \\N"
    with scope(org):
        decisions_bulk_apply(
            campaign=campaign, actor=reviewer, items=ReviewItem.objects.all(), decision="exception",
            reason=reason, comment=comment,
        )
    events = events_of(campaign)
    assert {(e.reason, e.comment, e.actor_email, e.actor_id) for e in events} == {
        (reason, comment, reviewer.user.email, reviewer.user_id)
    }
    assert {fresh(e.item).decision_reason for e in events} == {reason}
    assert_chain_intact(campaign)
