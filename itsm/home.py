"""Home section of remediation: revoked access still awaiting removal, for staff."""

from __future__ import annotations

from django.urls import reverse

from thalian.home import Bar, Section
from thalian.permissions import Perm, has_perm

from .selectors import remediation_counts, remediation_queue


def remediation_home_section(request) -> Section | None:
    membership = request.membership
    if not request.organization.has_access_reviews or not has_perm(membership.role, Perm.MANAGE_CAMPAIGNS):
        return None
    counts = remediation_counts(remediation_queue(membership=membership).order_by())
    url = reverse("remediation_queue", args=[request.organization.slug])
    bars = [
        Bar(label="Action required", value=counts["action_required"], url=f"{url}?state=action_required", tone="bad"),
        Bar(label="Ticket failed", value=counts["ticket_failed"], url=f"{url}?state=ticket_failed", tone="bad"),
        Bar(label="Awaiting removal", value=counts["pending"], url=f"{url}?state=pending", tone="warn"),
        Bar(label="Verified removed", value=counts["verified_removed"], url=f"{url}?state=verified_removed", tone="ok"),
    ]
    return Section(
        template="itsm/home_remediation.html",
        order=30,
        data={"bars": bars, "awaiting": counts["pending"] + counts["action_required"], "url": url},
    )
