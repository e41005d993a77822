"""The review item's remediation record: the one place that writes ``ReviewItem.ticket_*`` and
``ReviewItem.remediation_*``.

The ticket itself (its remote key, state, attempts, comments) lives in the itsm app; the item keeps the copy
that the review pages, filters and exports show, and itsm changes it only through these functions. Every
function locks the items' campaigns first, in primary-key order, before it touches items: decision writers
lock the campaign and then its items, so working in the same order cannot deadlock with them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import transaction
from django.db.models import QuerySet

from .models import Campaign, Decision, RemediationStatus, ReviewItem


def lock_campaigns_of_items(item_ids: Iterable[int]) -> list:
    """Inside the caller's transaction: lock the campaigns of these items (FOR UPDATE, in pk order) and return
    their ids. Call it before writing items or rows that reference the campaign."""
    campaign_ids = sorted(
        set(ReviewItem.objects.filter(pk__in=list(item_ids)).order_by().values_list("campaign_id", flat=True)),
        key=str,
    )
    return lock_campaigns(campaign_ids)


def lock_campaigns(campaign_ids: Iterable) -> list:
    ids = sorted(set(campaign_ids), key=str)
    if ids:
        list(Campaign.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))
    return ids


def review_items_remediation_open(*, item_ids: Iterable[int]) -> None:
    """After decisions: revoked items await removal; items no longer revoked need none."""
    item_ids = list(item_ids)
    with transaction.atomic():
        lock_campaigns_of_items(item_ids)
        ReviewItem.objects.filter(
            pk__in=item_ids, decision=Decision.REVOKE, remediation_status=RemediationStatus.NONE
        ).update(remediation_status=RemediationStatus.PENDING)
        ReviewItem.objects.filter(pk__in=item_ids).exclude(decision=Decision.REVOKE).exclude(
            remediation_status=RemediationStatus.NONE
        ).update(remediation_status=RemediationStatus.NONE, remediation_checked_at=None)


def review_items_ticket_record(
    *, item_ids: Iterable[int], status: str, key: str = "", url: str = "", error: str = "",
    only_without: bool = False,
) -> int:
    """Record on the items what their ticket is now (status "" clears it). With ``only_without``, items that
    already show a ticket are left as they are."""
    items: QuerySet = ReviewItem.objects.filter(pk__in=list(item_ids))
    if only_without:
        items = items.filter(ticket_status="")
    return items.update(ticket_status=status, ticket_key=key, ticket_url=url, ticket_error=error)


def review_items_remediation_verify(
    *, application_ids: list[int], present_entitlements: QuerySet, now: dt.datetime
) -> tuple[list, int, int]:
    """After an import or sync: revoked items of these applications whose entitlement is gone are verified
    removed; those still present need action. Returns (campaign ids touched, verified, action required)."""
    with transaction.atomic():
        open_items = ReviewItem.objects.filter(
            application_id__in=application_ids,
            decision=Decision.REVOKE,
            remediation_status__in=[RemediationStatus.PENDING, RemediationStatus.ACTION_REQUIRED],
        )
        campaign_ids = lock_campaigns(open_items.order_by().values_list("campaign_id", flat=True).distinct())
        # Set-based: two UPDATEs whatever the number of items.
        verified = open_items.exclude(entitlement__in=present_entitlements).update(
            remediation_status=RemediationStatus.VERIFIED_REMOVED, remediation_checked_at=now
        )
        action_required = open_items.filter(entitlement__in=present_entitlements).update(
            remediation_status=RemediationStatus.ACTION_REQUIRED, remediation_checked_at=now
        )
    return campaign_ids, verified, action_required
