"""Reads for notifications: pending work per reviewer, recipients, the delivery log."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Q, QuerySet

from campaigns.models import Campaign, GuestReviewer, ReviewItem
from entitlements.models import Identity
from thalian.models import Membership
from thalian.permissions import Role

from .models import Notification, NotificationPreference, NotificationSettings


def notification_settings_for(*, organization_id: int) -> NotificationSettings:
    found = NotificationSettings.objects.filter(organization_id=organization_id).first()
    if found is not None:
        return found
    settings_row, _ = NotificationSettings.objects.get_or_create(organization_id=organization_id)
    return settings_row


def pending_items(*, campaign: Campaign) -> QuerySet[ReviewItem]:
    return ReviewItem.objects.filter(campaign=campaign, decision="", reviewer__isnull=False)


def _of_application(items: QuerySet[ReviewItem], application: str | None) -> QuerySet[ReviewItem]:
    if application is None:
        return items
    condition = Q(application_name=application)
    if application.isdigit():
        condition |= Q(application_id=int(application))
    return items.filter(condition)


def pending_counts_by_reviewer(*, campaign: Campaign, application: str | None = None) -> dict[int, int]:
    """Undecided items per member (membership id -> count), of one application (name or id) when given."""
    rows = (
        _of_application(pending_items(campaign=campaign), application)
        .values("reviewer_id").annotate(n=Count("id")).order_by()
    )
    return {row["reviewer_id"]: row["n"] for row in rows}


def pending_guest_items(*, campaign: Campaign) -> QuerySet[ReviewItem]:
    """Undecided items of the campaign's guest reviewers whose link is not revoked."""
    return ReviewItem.objects.filter(campaign=campaign, decision="", guest__isnull=False,
                                     guest__revoked_at__isnull=True)


def pending_counts_by_guest(*, campaign: Campaign, application: str | None = None) -> dict[int, int]:
    rows = (
        _of_application(pending_guest_items(campaign=campaign), application)
        .values("guest_id").annotate(n=Count("id")).order_by()
    )
    return {row["guest_id"]: row["n"] for row in rows}


def pending_items_of(*, campaign: Campaign, reviewer: Membership | GuestReviewer) -> QuerySet[ReviewItem]:
    if isinstance(reviewer, GuestReviewer):
        return ReviewItem.objects.filter(campaign=campaign, decision="", guest=reviewer)
    return pending_items(campaign=campaign).filter(reviewer=reviewer)


def guests_by_id(*, campaign: Campaign, ids) -> dict[int, GuestReviewer]:
    found = GuestReviewer.objects.filter(campaign=campaign, pk__in=list(ids), revoked_at__isnull=True).order_by("email")
    guests = {}
    for guest in found:
        guest.campaign = campaign
        guests[guest.pk] = guest
    return guests


def item_counts_by_reviewer(*, campaign: Campaign) -> dict[int, int]:
    rows = (
        ReviewItem.objects.filter(campaign=campaign, reviewer__isnull=False)
        .values("reviewer_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["reviewer_id"]: row["n"] for row in rows}


def memberships_by_id(*, organization_id: int, ids) -> dict[int, Membership]:
    return {
        m.pk: m
        for m in Membership.objects.select_related("user").filter(
            organization_id=organization_id, pk__in=list(ids), user__is_active=True
        )
    }


def admin_memberships(*, organization_id: int) -> list[Membership]:
    return list(
        Membership.objects.select_related("user").filter(
            organization_id=organization_id, role__in=[Role.SUPER_ADMIN, Role.ADMIN], user__is_active=True
        )
    )


def membership_by_email(*, organization_id: int, email: str) -> Membership | None:
    if not email:
        return None
    return (
        Membership.objects.select_related("user")
        .filter(organization_id=organization_id, user__email__iexact=email, user__is_active=True)
        .first()
    )


def manager_membership(*, organization_id: int, email: str) -> Membership | None:
    """The manager of the person with this e-mail (a reviewer, member or guest) as recorded in the identity
    inventory, if that manager is a member."""
    identity = (
        Identity.objects.select_related("manager")
        .filter(email__iexact=email, manager__isnull=False)
        .first()
    )
    if identity is None:
        return None
    return membership_by_email(organization_id=organization_id, email=identity.manager.email)


def preferences_for(*, membership_ids) -> dict[int, NotificationPreference]:
    return {
        p.membership_id: p
        for p in NotificationPreference.objects.filter(membership_id__in=list(membership_ids))
    }


# The columns of a notification log entry, in the order the API and the evidence package show them.
NOTIFICATION_LOG_FIELDS = (
    "id",
    "event",
    "channel",
    "recipient",
    "status",
    "attempts",
    "error",
    "title",
    "created_at",
    "last_attempt_at",
    "sent_at",
)


def notifications_for_campaign(*, campaign: Campaign) -> QuerySet[Notification]:
    return (
        Notification.objects.filter(campaign=campaign)
        .only(*NOTIFICATION_LOG_FIELDS)
        .order_by("-created_at", "id")
    )


def notification_log_rows(*, campaign: Campaign) -> Iterator[dict]:
    """Every notification of one campaign, oldest first, streamed (for the evidence package)."""
    queryset = (
        Notification.objects.filter(campaign=campaign)
        .order_by("created_at", "id")
        .values(*NOTIFICATION_LOG_FIELDS)
    )
    for row in queryset.iterator(chunk_size=2000):
        yield {**row, "id": str(row["id"])}


def failed_notifications(*, organization_id: int, limit: int = 20) -> list[Notification]:
    return list(
        Notification.objects.filter(organization_id=organization_id, status="failed")
        .select_related("campaign")
        .order_by("-created_at")[:limit]
    )


def failed_notifications_all() -> QuerySet[Notification]:
    """Every undelivered notification of the active organization (the API pages through them)."""
    return Notification.objects.filter(status="failed").only(*NOTIFICATION_LOG_FIELDS, "campaign_id")


def preference_of(*, membership) -> NotificationPreference:
    """The member's channel choices, or the defaults when they never chose."""
    return NotificationPreference.objects.filter(membership=membership).first() or NotificationPreference()
