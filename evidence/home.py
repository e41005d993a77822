"""Home section of audit evidence: completed campaigns and the evidence page, for members who export
evidence but do not run campaigns (auditors)."""

from __future__ import annotations

from django.urls import reverse

from campaigns.models import Campaign, CampaignStatus
from thalian.home import Section
from thalian.permissions import Perm, has_perm


def evidence_home_section(request) -> Section | None:
    """Completed campaigns and their evidence, for members who export evidence but do not run campaigns."""
    membership = request.membership
    role = membership.role
    if (
        not request.organization.has_access_reviews
        or not has_perm(role, Perm.EXPORT_EVIDENCE)
        or has_perm(role, Perm.MANAGE_CAMPAIGNS)
    ):
        return None
    slug = request.organization.slug
    completed = list(
        Campaign.objects.filter(status=CampaignStatus.COMPLETED).order_by("-completed_at", "-created_at")[:8]
    )
    return Section(
        template="evidence/home.html",
        order=15,
        wide=True,
        data={
            "completed": [
                {"campaign": c, "url": reverse("campaign_detail", args=[slug, c.pk])} for c in completed
            ],
            "evidence_url": reverse("evidence_list", args=[slug]),
        },
    )
