"""Exceptions that expire: the list of exception decisions by expiry, the reviewers to remind before expiry,
and the daily "Exception renewals <date>" campaign that re-reviews expired exceptions.

An exception holds through its ``exception_expires_on`` date; the day after, it is expired. Renewing is a new
exception decision (with a new expiry) on the renewal item; revoking it opens a ticket like any revoke.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from entitlements.models import Application
from thalian.audit import audit_record
from thalian.events import CampaignLaunched, publish
from thalian.models import Membership, Organization
from thalian.tenancy import scope

from .models import Campaign, CampaignStatus, Decision, ReviewerStrategy, ReviewItem
from .selectors import REVIEWER_ROLES

EXCEPTION_STATUSES = ("active", "expiring", "expired")
EXPIRING_WITHIN_DAYS = 14
REMINDER_DAYS = (14, 3)
MAX_REMINDER_LINES = 20  # exceptions listed in one reminder; the rest are counted
RENEWAL_DUE_DAYS = 14
RENEWAL_TITLE = "Exception renewals {date}"

# Frozen snapshot fields a renewal item copies from the expired exception's item.
_COPIED_FIELDS = (
    "entitlement_id", "application_id", "identity_email", "identity_name", "identity_department",
    "identity_manager_email", "identity_kind", "identity_status", "application_name", "application_category",
    "application_sanctioned", "role", "last_used", "is_dormant", "is_terminated", "is_privileged", "is_orphaned",
    "is_never_used", "recommendation",
)  # fmt: skip


class ExceptionFilterError(ValueError):
    pass


def _exceptions() -> QuerySet[ReviewItem]:
    # The item's current decision is an exception: a later approve or revoke ends it.
    return ReviewItem.objects.filter(decision=Decision.EXCEPTION, exception_expires_on__isnull=False).exclude(
        campaign__status=CampaignStatus.CANCELLED
    )


def exceptions_list(*, status: str = "", today: dt.date | None = None) -> QuerySet[ReviewItem]:
    """Exception decisions, soonest expiry first. ``status``: ``active`` (not expired), ``expiring`` (expires
    within 14 days), ``expired`` (past its date), or empty for all."""
    today = today or timezone.localdate()
    items = _exceptions()
    if status == "active":
        items = items.filter(exception_expires_on__gte=today)
    elif status == "expiring":
        items = items.filter(
            exception_expires_on__gte=today, exception_expires_on__lte=today + dt.timedelta(days=EXPIRING_WITHIN_DAYS)
        )
    elif status == "expired":
        items = items.filter(exception_expires_on__lt=today)
    elif status:
        raise ExceptionFilterError(f"status must be one of {', '.join(EXCEPTION_STATUSES)}; got {status!r}")
    return (
        items.select_related("campaign")
        .only(
            "id", "organization_id", "identity_email", "identity_name", "application_name", "role",
            "decision_reason", "decided_by_email", "decided_at", "exception_expires_on", "campaign__id",
            "campaign__title", "campaign__status",
        )  # fmt: skip
        .order_by("exception_expires_on", "id")
    )


def exception_status(item: ReviewItem, today: dt.date | None = None) -> str:
    today = today or timezone.localdate()
    if item.exception_expires_on < today:
        return "expired"
    if item.exception_expires_on <= today + dt.timedelta(days=EXPIRING_WITHIN_DAYS):
        return "expiring"
    return "active"


# --------------------------------------------------------------------------------------------------
# Reminders (sent by the notifications area, which reads them here)
# --------------------------------------------------------------------------------------------------


@dataclass
class ExceptionReminder:
    membership: Membership
    days: int
    expires_on: dt.date
    items: list[ReviewItem] = field(default_factory=list)


def exception_reminders_due(*, today: dt.date | None = None) -> list[ExceptionReminder]:
    """Inside an organization's scope: for each reviewer who decided exceptions expiring in exactly 14 or 3
    days, one reminder listing them. Reviewers no longer members are skipped."""
    today = today or timezone.localdate()
    dates = {today + dt.timedelta(days=days): days for days in REMINDER_DAYS}
    items = list(
        _exceptions()
        .filter(exception_expires_on__in=list(dates), decided_by__isnull=False)
        .select_related("campaign")
        .order_by("exception_expires_on", "id")
    )
    if not items:
        return []
    members = {
        m.user_id: m
        for m in Membership.objects.select_related("user").filter(
            organization_id=items[0].organization_id, user_id__in={i.decided_by_id for i in items}
        )
    }
    grouped: dict[tuple[int, dt.date], ExceptionReminder] = {}
    for item in items:
        membership = members.get(item.decided_by_id)
        if membership is None:
            continue
        key = (membership.pk, item.exception_expires_on)
        if key not in grouped:
            grouped[key] = ExceptionReminder(
                membership=membership, days=dates[item.exception_expires_on], expires_on=item.exception_expires_on
            )
        grouped[key].items.append(item)
    return list(grouped.values())


# --------------------------------------------------------------------------------------------------
# Renewals
# --------------------------------------------------------------------------------------------------


def _reviewers_by_email(organization: Organization) -> dict[str, Membership]:
    members = Membership.objects.select_related("user").filter(
        organization=organization, role__in=REVIEWER_ROLES, user__is_active=True
    )
    return {m.user.email.lower(): m for m in members}


def exception_renewals_gather(
    *, organization: Organization, today: dt.date | None = None, fallback: Membership | None = None
) -> Campaign | None:
    """Gathers every exception that expired before ``today`` and is not yet renewed into the launched campaign
    "Exception renewals <today>" (created, or extended when it already exists), one item per exception,
    assigned to the application's owner, else the organization's fallback reviewer (``fallback``), else the
    fallback reviewer of the exception's campaign; never to the identity under review. Safe to run twice: an
    exception is gathered once. Returns the campaign, or None when nothing expired."""
    today = today or timezone.localdate()
    with scope(organization), transaction.atomic():
        # One gatherer per organization at a time.
        Organization.objects.select_for_update().get(pk=organization.pk)
        expired = list(
            _exceptions()
            .filter(exception_expires_on__lt=today, renewals__isnull=True)
            .select_related("campaign__fallback_reviewer__user")
            .order_by("id")
        )
        if not expired:
            return None
        title = RENEWAL_TITLE.format(date=today.isoformat())
        campaign = Campaign.objects.filter(title=title, status=CampaignStatus.ACTIVE, created_by__isnull=True).first()
        now = timezone.now()
        if fallback is not None and fallback.organization_id != organization.pk:
            raise ValueError("the fallback reviewer belongs to another organization")
        fallbacks = ([fallback] if fallback is not None else []) + [
            i.campaign.fallback_reviewer for i in expired if i.campaign.fallback_reviewer_id
        ]
        if campaign is None:
            campaign = Campaign.objects.create(
                organization=organization,
                title=title,
                description=(
                    "Exceptions that expired are reviewed again: renew with a new exception (and a new expiry) "
                    "or revoke the access."
                ),
                due_date=today + dt.timedelta(days=RENEWAL_DUE_DAYS),
                status=CampaignStatus.ACTIVE,
                scope={"applications": sorted({i.application_name for i in expired})},
                reviewer_strategy=ReviewerStrategy.APPLICATION_OWNER,
                fallback_reviewer=fallbacks[0] if fallbacks else None,
                launched_at=now,
                snapshot_at=now,
            )
        reviewers = _reviewers_by_email(organization)
        owners = {
            a.pk: (a.owner_email or "").lower()
            for a in Application.objects.filter(pk__in={i.application_id for i in expired if i.application_id})
        }
        rows = []
        for old in expired:
            identity = old.identity_email.lower()
            owner = reviewers.get(owners.get(old.application_id, ""))
            candidates = [m for m in (fallback, old.campaign.fallback_reviewer) if m is not None]
            backup = next((m for m in candidates if m.user.email.lower() != identity), None)
            if owner is not None and owner.user.email.lower() != identity:
                reviewer, note = owner, ""
            elif backup is not None:
                why = "the application has no owner who can review" if owner is None else (
                    "the application owner is the identity under review"
                )
                reviewer, note = backup, f"Assigned to the fallback reviewer: {why}"
            else:
                reviewer, note = None, "No reviewer can take this renewal; an admin must reassign it"
            row = ReviewItem(
                organization_id=organization.pk,
                campaign=campaign,
                renewal_of=old,
                recommendation_reason=(
                    f"Exception by {old.decided_by_email} expired {old.exception_expires_on.isoformat()}: "
                    f"{old.decision_reason}"
                )[:300],
                reviewer=reviewer,
                reviewer_email=reviewer.user.email if reviewer else "",
                assignment_note=note[:300],
                **{name: getattr(old, name) for name in _COPIED_FIELDS},
            )
            rows.append(row)
        ReviewItem.objects.bulk_create(rows, batch_size=1000)
        Campaign.objects.filter(pk=campaign.pk).update(
            item_count=ReviewItem.objects.filter(campaign=campaign).count(), updated_at=now
        )
        campaign.refresh_from_db()
        audit_record(
            action="exception_renewals_launched",
            organization=organization,
            target=campaign,
            system=True,
            details={"campaign": str(campaign.pk), "count": len(rows), "date": today.isoformat()},
        )
        publish(CampaignLaunched(organization_id=campaign.organization_id, campaign_id=str(campaign.pk)))
    return campaign


def organizations_with_expired_exceptions(*, today: dt.date | None = None) -> list[int]:
    """Platform code (unscoped): organizations that have expired exceptions not yet gathered."""
    from thalian.tenancy import scopes_disabled

    today = today or timezone.localdate()
    with scopes_disabled():
        return sorted(
            set(
                ReviewItem.objects.filter(
                    Q(decision=Decision.EXCEPTION, exception_expires_on__lt=today, renewals__isnull=True)
                    & ~Q(campaign__status=CampaignStatus.CANCELLED)
                ).values_list("organization_id", flat=True)
            )
        )


def organizations_with_exceptions_expiring(*, today: dt.date | None = None) -> list[int]:
    """Platform code (unscoped): organizations with exceptions expiring in exactly 14 or 3 days."""
    from thalian.tenancy import scopes_disabled

    today = today or timezone.localdate()
    dates = [today + dt.timedelta(days=days) for days in REMINDER_DAYS]
    with scopes_disabled():
        return sorted(
            set(
                ReviewItem.objects.filter(decision=Decision.EXCEPTION, exception_expires_on__in=dates).values_list(
                    "organization_id", flat=True
                )
            )
        )

