# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Launch: freshness check, the frozen snapshot, recommendations, reviewer assignment and self-review."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from campaigns import launch, services
from campaigns.models import CampaignStatus, ReviewItem
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401

pytestmark = pytest.mark.django_db


def items_by_grant(campaign):
    with scopes_disabled():
        return {(i.identity_email, i.application_name): i for i in ReviewItem.objects.filter(campaign=campaign)}


def test_launch_is_blocked_by_stale_data_and_lists_the_applications(inventory, make_campaign):
    campaign = make_campaign()
    with scope(inventory.org):
        with pytest.raises(services.FreshnessError) as err:
            launch.campaign_launch(campaign=campaign, actor=inventory.admin)
        campaign.refresh_from_db()
        assert ReviewItem.objects.filter(campaign=campaign).count() == 0
    assert [s.name for s in err.value.stale] == ["Slack"]
    assert "Slack" in str(err.value) and "7 days" in str(err.value)
    assert campaign.status == CampaignStatus.DRAFT


def test_application_synced_longer_ago_than_the_limit_is_stale(inventory, make_campaign):
    with scopes_disabled():
        inventory.github.last_synced_at = timezone.now() - dt.timedelta(days=8)
        inventory.github.save()
    campaign = make_campaign(scope={"applications": ["GitHub"]})
    with scope(inventory.org), pytest.raises(services.FreshnessError) as err:
        launch.campaign_launch(campaign=campaign, actor=inventory.admin)
    assert [s.name for s in err.value.stale] == ["GitHub"]


def test_security_analyst_cannot_override_freshness(inventory, make_campaign):
    campaign = make_campaign()
    with scope(inventory.org), pytest.raises(services.CampaignError, match="only an admin"):
        launch.campaign_launch(campaign=campaign, actor=inventory.mia_member, freshness_override_reason="trust me")


def test_admin_override_is_recorded_and_audited(inventory, launched):
    campaign = launched()
    assert campaign.status == CampaignStatus.ACTIVE
    assert campaign.freshness_override_reason == "Slack is loaded by hand"
    assert campaign.freshness_override_by == inventory.admin.user
    assert [s["name"] for s in campaign.stale_applications] == ["Slack"]
    override = AuditEvent.objects.get(action="campaign_freshness_overridden", target_id=str(campaign.pk))
    assert override.actor_email == inventory.admin.user.email
    assert override.details["reason"] == "Slack is loaded by hand"


def test_fresh_scope_launches_without_override(inventory, make_campaign, django_capture_on_commit_callbacks):
    campaign = make_campaign(scope={"applications": ["github"]})
    with scope(inventory.org), django_capture_on_commit_callbacks(execute=True):
        launch.campaign_launch(campaign=campaign, actor=inventory.mia_member)
    with scope(inventory.org):
        campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE
    assert campaign.item_count == 4
    assert campaign.snapshot_at is not None
    assert campaign.freshness_override_reason == ""
    launched_event = AuditEvent.objects.get(action="campaign_launched", target_id=str(campaign.pk))
    assert launched_event.details["items"] == 4


def test_viewer_cannot_launch(inventory, make_campaign, member):
    campaign = make_campaign(scope={"applications": ["GitHub"]})
    with scope(inventory.org), pytest.raises(PermissionDenied):
        launch.campaign_launch(campaign=campaign, actor=member(Role.VIEWER))


def test_empty_scope_cannot_launch(inventory, make_campaign):
    campaign = make_campaign(scope={"departments": ["Legal"]})
    with scope(inventory.org), pytest.raises(services.CampaignError, match="no entitlements match"):
        launch.campaign_launch(campaign=campaign, actor=inventory.admin)


def test_snapshot_freezes_what_the_reviewer_sees(inventory, launched):
    campaign = launched()
    items = items_by_grant(campaign)
    assert len(items) == 8
    ann = items[("ann@acme.test", "GitHub")]
    assert (ann.identity_name, ann.identity_department, ann.identity_manager_email) == (
        "Ann Dev", "Engineering", "mia@acme.test")
    assert (ann.identity_kind, ann.identity_status) == ("human", "active")
    assert (ann.application_category, ann.application_sanctioned, ann.role) == ("Engineering tools", True, "admin")
    assert ann.is_privileged and not ann.is_dormant
    assert ann.entitlement_id == inventory.grants.ann_github.pk
    assert ann.decision == "" and ann.version == 0 and ann.ticket_url == ""
    sf = items[("bob@acme.test", "Salesforce")]
    assert sf.application_sanctioned is False and sf.application_category == "CRM"


def test_later_inventory_changes_never_alter_items(inventory, launched):
    campaign = launched()
    before = {k: (i.identity_name, i.identity_department, i.identity_status, i.application_name, i.role,
                  i.last_used, i.recommendation, i.findings) for k, i in items_by_grant(campaign).items()}
    with scopes_disabled():
        ann = inventory.identities.ann
        ann.name, ann.department, ann.status = "Ann Renamed", "Marketing", "terminated"
        ann.save()
        inventory.github.name = "GitHub Enterprise"
        inventory.github.sanctioned = False
        inventory.github.save()
        grant = inventory.grants.mia_github
        grant.role, grant.last_used = "admin", timezone.now()
        grant.save()
        inventory.grants.bob_salesforce.delete()
    after = {k: (i.identity_name, i.identity_department, i.identity_status, i.application_name, i.role,
                 i.last_used, i.recommendation, i.findings) for k, i in items_by_grant(campaign).items()}
    assert after == before
    with scopes_disabled():
        assert ReviewItem.objects.filter(campaign=campaign).count() == 8


def test_recommendations_with_reasons(inventory, launched):
    items = items_by_grant(launched())
    bob = items[("bob@acme.test", "Salesforce")]
    assert (bob.recommendation, bob.recommendation_reason) == ("revoke", "Identity is terminated")
    assert bob.is_terminated
    ghost = items[("ghost@acme.test", "Salesforce")]
    assert ghost.recommendation == "revoke" and "Orphaned" in ghost.recommendation_reason and ghost.is_orphaned
    mia = items[("mia@acme.test", "GitHub")]
    assert (mia.recommendation, mia.recommendation_reason) == ("revoke", "Not used in the last 90 days")
    assert mia.is_dormant
    ann = items[("ann@acme.test", "GitHub")]
    assert ann.recommendation == "approve" and ann.recommendation_reason == "Active identity, used in the last 90 days"
    svc = items[("ci-bot@acme.test", "GitHub")]
    assert svc.recommendation == "approve" and svc.is_never_used
    assert svc.recommendation_reason == "Active identity; granted within the last 90 days, not used yet"


def test_never_used_grant_older_than_the_dormant_threshold_is_recommended_for_revoke(inventory, launched):
    with scope(inventory.org):
        inventory.org.dormant_days = 30
        inventory.org.save(update_fields=["dormant_days"])
        type(inventory.grants.svc_github).objects.filter(pk=inventory.grants.svc_github.pk).update(
            first_seen=timezone.now() - dt.timedelta(days=31)
        )
    campaign = launched()
    svc = items_by_grant(campaign)[("ci-bot@acme.test", "GitHub")]
    assert (svc.recommendation, svc.recommendation_reason) == ("revoke", "Never used in 30 days since granted")
    assert svc.is_never_used and not svc.is_dormant


def test_application_owner_strategy_and_fallbacks(inventory, launched):
    items = items_by_grant(launched())
    ann = items[("ann@acme.test", "GitHub")]
    assert ann.reviewer_id == inventory.owner_member.pk and ann.reviewer_email == "owner@acme.test"
    assert ann.assignment_note == ""
    sf = items[("bob@acme.test", "Salesforce")]
    assert sf.reviewer_id == inventory.fallback.pk
    assert sf.assignment_note == (
        "Application owner someone@elsewhere.test is not a member who can review: assigned to the fallback reviewer")
    slack = items[("ann@acme.test", "Slack")]
    assert slack.reviewer_id == inventory.fallback.pk
    assert slack.assignment_note.startswith("The application has no owner")


def test_no_self_review_item_goes_to_fallback_with_the_reason(inventory, launched):
    items = items_by_grant(launched())
    own = items[("owner@acme.test", "GitHub")]
    assert own.reviewer_id == inventory.fallback.pk
    assert own.reviewer_email == "fallback@acme.test"
    assert own.assignment_note == (
        "Self-review avoided: owner@acme.test is the identity under review: assigned to the fallback reviewer")


def test_owner_whose_role_cannot_review_falls_back(inventory, launched, member):
    member(Role.VIEWER, email="viewer-owner@acme.test")
    with scopes_disabled():
        inventory.github.owner_email = "Viewer-Owner@acme.test"
        inventory.github.save()
    items = items_by_grant(launched(scope={"applications": ["GitHub"]}))
    assert {i.reviewer_id for i in items.values()} == {inventory.fallback.pk}
    assert "viewer-owner@acme.test is not a member who can review" in items[("ann@acme.test", "GitHub")].assignment_note


def test_manager_strategy(inventory, launched):
    items = items_by_grant(launched(reviewer_strategy="manager"))
    assert items[("ann@acme.test", "GitHub")].reviewer_id == inventory.mia_member.pk
    assert items[("bob@acme.test", "Salesforce")].reviewer_id == inventory.mia_member.pk
    mia = items[("mia@acme.test", "GitHub")]
    assert mia.reviewer_id == inventory.fallback.pk
    assert mia.assignment_note.startswith("The identity has no manager")
    svc = items[("ci-bot@acme.test", "GitHub")]  # managed by ann, who is not a member
    assert svc.reviewer_id == inventory.fallback.pk
    assert svc.assignment_note.startswith("Manager ann@acme.test is not a member who can review")


def test_members_strategy_shares_an_application_between_several_reviewers(inventory, launched, member):
    second = member(Role.REVIEWER, email="second@acme.test")
    campaign = launched(
        reviewer_strategy="members",
        reviewers={"GitHub": ["owner@acme.test", "second@acme.test"], "*": ["mia@acme.test"]},
    )
    items = items_by_grant(campaign)
    named = [inventory.owner_member, second]
    ids = vars(inventory.identities)
    for who in ("ann", "mia", "svc"):
        item = items[(ids[who].email, "GitHub")]
        # Each identity's turn among the application's named reviewers is fixed by its id.
        assert item.reviewer_id == named[ids[who].pk % 2].pk
        assert item.assignment_note == ""
    own = items[("owner@acme.test", "GitHub")]
    expected = inventory.fallback.pk if ids["owner"].pk % 2 == 0 else second.pk
    assert own.reviewer_id == expected
    others = {k: i for k, i in items.items() if k[1] != "GitHub"}
    assert {i.reviewer_id for i in others.values()} == {inventory.mia_member.pk}


def test_members_strategy_self_review_goes_to_fallback(inventory, launched):
    campaign = launched(reviewer_strategy="members", reviewers=["mia@acme.test"])
    items = items_by_grant(campaign)
    own = items[("mia@acme.test", "GitHub")]
    assert own.reviewer_id == inventory.fallback.pk
    assert own.assignment_note.startswith("Self-review avoided: mia@acme.test")
    assert items[("ann@acme.test", "GitHub")].reviewer_id == inventory.mia_member.pk


def test_fallback_who_is_the_identity_leaves_the_item_unassigned(inventory, launched):
    campaign = launched(reviewer_strategy="manager", fallback_reviewer="mia@acme.test")
    own = items_by_grant(campaign)[("mia@acme.test", "GitHub")]
    assert own.reviewer_id is None and own.reviewer_email == ""
    assert "fallback reviewer is also the identity under review" in own.assignment_note


def test_snapshot_runs_once(inventory, launched):
    campaign = launched()
    with scope(inventory.org):
        assert launch.campaign_snapshot(campaign_id=campaign.pk) == 0
        assert ReviewItem.objects.filter(campaign=campaign).count() == 8


def test_launch_twice_is_refused(inventory, launched):
    campaign = launched()
    with scope(inventory.org), pytest.raises(services.CampaignError, match="only draft or scheduled"):
        launch.campaign_launch(campaign=campaign, actor=inventory.admin, freshness_override_reason="again")
