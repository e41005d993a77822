"""Reads for ITSM pages and endpoints. Callers run inside the organization's scope."""

from __future__ import annotations

from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Lower, NullIf

from campaigns.models import (
    Campaign,
    CampaignRemediationOwner,
    CampaignStatus,
    Decision,
    RemediationStatus,
    ReviewItem,
)
from campaigns.remediation import owned_by
from entitlements.models import Application
from thalian.models import Membership, Organization, TicketTrigger
from thalian.permissions import Perm

from .models import ApplicationRoute, CommentState, ItsmConnection, Ticket, TicketComment, TicketState


def connections_list() -> QuerySet[ItsmConnection]:
    return (
        ItsmConnection.objects.annotate(route_count=Count("routes"))
        .prefetch_related(
            Prefetch(
                "routes",
                queryset=ApplicationRoute.objects.select_related("application").only(
                    "id", "connection_id", "application__id", "application__name"
                ),
            )
        )
        .order_by("-is_default", "name")
    )


def routed_application_ids(connection: ItsmConnection) -> list[int]:
    return list(
        ApplicationRoute.objects.filter(connection=connection).values_list("application_id", flat=True)
    )


def sees_all_remediation(membership: Membership) -> bool:
    return membership.can(Perm.MANAGE_CAMPAIGNS)


def remediation_applications(membership: Membership) -> QuerySet[Application]:
    """Applications whose remediation the member owns (the remediation owner, else the application owner)."""
    owner = Lower(Coalesce(NullIf(F("remediation_owner_email"), Value("")), F("owner_email")))
    return Application.objects.annotate(remediation_owner=owner).filter(
        remediation_owner=membership.user.email.lower()
    )


def owner_id_of_item():
    return Subquery(
        CampaignRemediationOwner.objects.filter(
            campaign_id=OuterRef("campaign_id"), application_name=OuterRef("application_name")
        ).values("owner_id")[:1]
    )


def has_owner_rows() -> Exists:
    return Exists(CampaignRemediationOwner.objects.filter(campaign_id=OuterRef("campaign_id")))


REMEDIATION_FILTERS = {
    "action_required": Q(remediation_status=RemediationStatus.ACTION_REQUIRED),
    "pending": Q(remediation_status=RemediationStatus.PENDING),
    "verified_removed": Q(remediation_status=RemediationStatus.VERIFIED_REMOVED),
    "confirmed_removed": Q(remediation_status=RemediationStatus.CONFIRMED_REMOVED),
    "ticket_failed": Q(ticket_status="failed"),
}


def remediation_queue(*, membership: Membership, state: str = "") -> QuerySet[ReviewItem]:
    """Revoked items with their ticket and removal state; action_required first, then failed tickets."""
    items = ReviewItem.objects.filter(decision=Decision.REVOKE)
    if not sees_all_remediation(membership):
        # The campaign's remediation owner of the application (named at launch); campaigns launched before
        # owners were recorded per campaign fall back to the application's current remediation owner.
        items = items.filter(
            owned_by(membership)
            | (~has_owner_rows() & Q(application__in=remediation_applications(membership)))
        )
    if state in REMEDIATION_FILTERS:
        items = items.filter(REMEDIATION_FILTERS[state])
    return (
        items.select_related("campaign")
        .only(
            "id",
            "organization_id",
            "identity_email",
            "identity_name",
            "application_name",
            "role",
            "decision_reason",
            "decided_by_email",
            "decided_at",
            "ticket_key",
            "ticket_url",
            "ticket_status",
            "ticket_error",
            "remediation_status",
            "remediation_checked_at",
            "removal_confirmed_by_email",
            "removal_confirmed_at",
            "campaign__id",
            "campaign__title",
            "campaign__due_date",
        )
        .annotate(
            remediation_owner_id=owner_id_of_item(),
            ticket_comment_failed=Exists(
                TicketComment.objects.filter(ticket__item_id=OuterRef("pk"), state=CommentState.FAILED)
            ),
            urgency=Case(
                When(remediation_status=RemediationStatus.ACTION_REQUIRED, then=Value(0)),
                When(ticket_status="failed", then=Value(1)),
                When(remediation_status=RemediationStatus.PENDING, then=Value(2)),
                default=Value(3),
                output_field=IntegerField(),
            )
        )
        .order_by("urgency", "-decided_at", "id")
    )


def remediation_counts(items: QuerySet[ReviewItem]) -> dict[str, int]:
    return items.aggregate(
        total=Count("id"),
        action_required=Count("id", filter=Q(remediation_status=RemediationStatus.ACTION_REQUIRED)),
        pending=Count("id", filter=Q(remediation_status=RemediationStatus.PENDING)),
        verified_removed=Count("id", filter=Q(remediation_status=RemediationStatus.VERIFIED_REMOVED)),
        confirmed_removed=Count("id", filter=Q(remediation_status=RemediationStatus.CONFIRMED_REMOVED)),
        ticket_failed=Count("id", filter=Q(ticket_status="failed")),
    )


def campaign_remediation_summary(campaign: Campaign) -> dict:
    """Counts per ticket state and per removal state for the campaign page, in one query."""
    revoked = ReviewItem.objects.filter(campaign=campaign, decision=Decision.REVOKE)
    counts = revoked.aggregate(
        revoked=Count("id"),
        ticket_pending=Count("id", filter=Q(ticket_status="pending")),
        ticket_open=Count("id", filter=Q(ticket_status="open")),
        ticket_in_progress=Count("id", filter=Q(ticket_status="in_progress")),
        ticket_resolved=Count("id", filter=Q(ticket_status="resolved")),
        ticket_failed=Count("id", filter=Q(ticket_status="failed")),
        removal_pending=Count("id", filter=Q(remediation_status=RemediationStatus.PENDING)),
        verified_removed=Count("id", filter=Q(remediation_status=RemediationStatus.VERIFIED_REMOVED)),
        action_required=Count("id", filter=Q(remediation_status=RemediationStatus.ACTION_REQUIRED)),
        confirmed_removed=Count("id", filter=Q(remediation_status=RemediationStatus.CONFIRMED_REMOVED)),
    )
    return counts


def failed_tickets(*, campaign: Campaign, limit: int = 100) -> QuerySet[Ticket]:
    return (
        Ticket.objects.filter(campaign=campaign, state=TicketState.FAILED)
        .select_related("item", "connection")
        .only(
            "id",
            "organization_id",
            "state",
            "error",
            "attempts",
            "item__id",
            "item__identity_email",
            "item__application_name",
            "item__role",
            "connection__id",
            "connection__name",
        )
        .order_by("id")[:limit]
    )


def failed_comments(*, campaign: Campaign, limit: int = 100) -> QuerySet[TicketComment]:
    """Comments of the campaign's tickets that could not be added after their last attempt, by ticket."""
    return (
        TicketComment.objects.filter(ticket__campaign=campaign, state=CommentState.FAILED)
        .select_related("ticket__item", "ticket__connection")
        .only(
            "id",
            "organization_id",
            "body",
            "state",
            "error",
            "attempts",
            "created_at",
            "ticket__id",
            "ticket__key",
            "ticket__url",
            "ticket__item__id",
            "ticket__item__identity_email",
            "ticket__item__application_name",
            "ticket__connection__id",
            "ticket__connection__name",
        )
        .order_by("ticket_id", "id")[:limit]
    )


def ticket_comments(*, ticket: Ticket) -> QuerySet[TicketComment]:
    return TicketComment.objects.filter(ticket=ticket).order_by("created_at", "id")


# Revokes recorded before any connection applied to their application, and so without a ticket, are opened
# later from here. Campaigns in these states keep their revokes' remediation open.
UNTICKETED_CAMPAIGN_STATUSES = (CampaignStatus.ACTIVE, CampaignStatus.COMPLETED)


def unticketed_revokes(*, organization: Organization, campaign: Campaign | None = None) -> QuerySet[ReviewItem]:
    """Revoked items of active or completed campaigns that have no ticket although a connection now applies
    to their application (its route, or the default connection). With the sign-off trigger, items of an
    active campaign wait for their reviewer's sign-off, as they would have anyway."""
    items = ReviewItem.objects.filter(
        decision=Decision.REVOKE,
        itsm_ticket__isnull=True,
        campaign__status__in=UNTICKETED_CAMPAIGN_STATUSES,
    )
    if campaign is not None:
        items = items.filter(campaign=campaign)
    if not ItsmConnection.objects.filter(is_default=True).exists():
        items = items.filter(application_id__in=ApplicationRoute.objects.values("application_id"))
    if organization.ticket_trigger == TicketTrigger.ON_SIGN_OFF:
        items = items.filter(Q(signed_off_at__isnull=False) | Q(campaign__status=CampaignStatus.COMPLETED))
    return items


def unticketed_revokes_by_campaign(*, organization: Organization) -> list[dict]:
    """[{campaign_id, campaign__title, count}] for the remediation queue, largest first."""
    return list(
        unticketed_revokes(organization=organization)
        .values("campaign_id", "campaign__title")
        .annotate(count=Count("id"))
        .order_by("-count", "campaign__title")
    )


def unticketed_revokes_sample(*, organization: Organization, campaign: Campaign, limit: int = 100):
    return (
        unticketed_revokes(organization=organization, campaign=campaign)
        .only("id", "identity_email", "application_name", "role", "decided_at", "decided_by_email")
        .order_by("id")[:limit]
    )
