"""Home sections of campaigns: a reviewer's open reviews; active campaigns, and overdue reviewers for staff."""

from __future__ import annotations

from urllib.parse import urlencode

from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from thalian.home import Bar, Section
from thalian.permissions import Perm, has_perm

from . import review_selectors
from .models import Campaign, CampaignStatus, ReviewItem
from .selectors import campaign_progress_many

HOME_CAMPAIGNS = 6


def _items_url(slug: str, campaign_id, **params) -> str:
    url = reverse("review_items", args=[slug, campaign_id])
    return f"{url}?{urlencode(params)}" if params else url


def reviews_home_section(request) -> Section | None:
    """Open reviews of the member with counts and due dates; Start reviewing opens their first undecided item."""
    membership = request.membership
    if not request.organization.has_access_reviews or not has_perm(membership.role, Perm.DECIDE_ASSIGNED):
        return None
    reviews = review_selectors.my_reviews(membership=membership, limit=20)
    open_reviews = [r for r in reviews if r.campaign.status == CampaignStatus.ACTIVE and not r.is_signed_off]
    if not open_reviews and has_perm(membership.role, Perm.VIEW_ALL_CAMPAIGNS):
        return None  # staff without assigned items see their own sections only
    slug = request.organization.slug
    rows = [
        {
            "review": r,
            "start_url": _items_url(slug, r.campaign.pk, reviewer="me", decision="pending")
            if r.open
            else _items_url(slug, r.campaign.pk, reviewer="me"),
        }
        for r in open_reviews
    ]
    done = [r for r in reviews if r.is_signed_off][:3]
    return Section(
        template="campaigns/home_reviews.html",
        order=10,
        wide=True,
        data={
            "rows": rows,
            "done": done,
            "open_items": sum(r.open for r in open_reviews),
            "my_reviews_url": reverse("my_reviews", args=[slug]),
        },
    )


def campaigns_home_section(request) -> Section | None:
    """Active campaigns with their progress for everyone who sees all campaigns; staff also see overdue
    reviewers, each linking to their items."""
    membership = request.membership
    if not request.organization.has_access_reviews or not has_perm(membership.role, Perm.VIEW_ALL_CAMPAIGNS):
        return None
    slug = request.organization.slug
    active = list(Campaign.objects.filter(status=CampaignStatus.ACTIVE).order_by("due_date", "title")[:HOME_CAMPAIGNS])
    active_total = Campaign.objects.filter(status=CampaignStatus.ACTIVE).count()
    progress = campaign_progress_many(campaigns=active)
    today = timezone.localdate()
    bars = [
        Bar(
            label=c.title,
            value=progress[c.pk].percent,
            url=reverse("campaign_detail", args=[slug, c.pk]),
            tone="bad" if c.due_date < today else "ok",
        )
        for c in active
    ]
    overdue = []
    if has_perm(membership.role, Perm.MANAGE_CAMPAIGNS):
        rows = (
            ReviewItem.objects.filter(
                campaign__status=CampaignStatus.ACTIVE, campaign__due_date__lt=today, decision=""
            )
            .values("campaign_id", "campaign__title", "reviewer_email")
            .annotate(pending=Count("id"))
            .order_by("-pending", "reviewer_email")[:8]
        )
        overdue = [
            {**row, "url": _items_url(slug, row["campaign_id"], reviewer=row["reviewer_email"], decision="pending")}
            for row in rows
        ]
    return Section(
        template="campaigns/home_campaigns.html",
        order=20,
        data={
            "campaigns": [(c, progress[c.pk]) for c in active],
            "bars": bars,
            "active_total": active_total,
            "overdue": overdue,
            "can_manage": has_perm(membership.role, Perm.MANAGE_CAMPAIGNS),
            "list_url": reverse("campaign_list", args=[slug]),
            "new_url": reverse("campaign_new", args=[slug]),
        },
    )
