"""Builders for review tests: an active campaign with frozen items assigned to reviewers."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from campaigns.hashchain import GENESIS_HASH, decision_hash
from campaigns.models import Campaign, CampaignStatus, DecisionEvent, ReviewItem
from thalian.tenancy import scope, scopes_disabled

from ..factories import CampaignFactory


def active_campaign(org, **kwargs) -> Campaign:
    kwargs.setdefault("status", CampaignStatus.ACTIVE)
    kwargs.setdefault("snapshot_at", timezone.now())
    kwargs.setdefault("launched_at", timezone.now())
    return CampaignFactory(organization=org, **kwargs)


def add_items(campaign: Campaign, reviewer, count: int, **fields) -> list[ReviewItem]:
    """`count` items assigned to `reviewer` (a Membership or None); fields override the frozen snapshot."""
    base = {
        "identity_name": "Pat Doe",
        "identity_department": "Engineering",
        "identity_manager_email": "boss@corp.test",
        "identity_kind": "human",
        "identity_status": "active",
        "application_name": "GitHub",
        "application_category": "Engineering",
        "role": "member",
        "last_used": timezone.now() - dt.timedelta(days=3),
        "recommendation": "approve",
        "recommendation_reason": "Active and used recently",
    }
    email = fields.pop("identity_email", None)
    base.update(fields)
    start = ReviewItem.unscoped.filter(campaign=campaign).count()
    rows = [
        ReviewItem(
            organization_id=campaign.organization_id,
            campaign=campaign,
            identity_email=email or f"person{start + i}.{campaign.pk.hex[:6]}@corp.test",
            reviewer=reviewer,
            reviewer_email=reviewer.user.email if reviewer else "",
            **base,
        )
        for i in range(count)
    ]
    with scopes_disabled():
        created = ReviewItem.objects.bulk_create(rows)
        Campaign.objects.filter(pk=campaign.pk).update(item_count=ReviewItem.objects.filter(campaign=campaign).count())
    return created


def fresh(item: ReviewItem) -> ReviewItem:
    with scopes_disabled():
        return ReviewItem.objects.get(pk=item.pk)


def events_of(campaign: Campaign) -> list[DecisionEvent]:
    with scopes_disabled():
        return list(DecisionEvent.objects.filter(campaign=campaign).order_by("id"))


def assert_chain_intact(campaign: Campaign) -> None:
    """Recomputes every event's hash from its columns and checks the links and the campaign's chain head."""
    from campaigns.decisions import decision_event_fields

    prev = GENESIS_HASH
    events = events_of(campaign)
    for event in events:
        assert event.prev_hash == prev, f"event {event.pk} links to {event.prev_hash}, expected {prev}"
        assert event.hash == decision_hash(prev, decision_event_fields(event)), f"event {event.pk} hash mismatch"
        prev = event.hash
    with scopes_disabled():
        head = Campaign.objects.get(pk=campaign.pk).chain_head
    assert head == prev


def in_scope(org):
    return scope(org)
