"""Home section of access requests: what waits for the member's approval, and their own requests under way."""

from __future__ import annotations

from django.urls import reverse

from thalian.home import Section

from .models import OPEN_STATUSES
from .selectors import requests_list


def access_requests_home_section(request) -> Section | None:
    member = request.membership
    to_approve = list(requests_list(member=member, tab="approve")[:5])
    mine = requests_list(member=member, tab="mine").filter(status__in=OPEN_STATUSES).count()
    if not to_approve and not mine:
        return None
    return Section(template="access_requests/home.html", order=25, data={
        "to_approve": to_approve, "mine": mine, "url": reverse("access_request_list", args=[request.organization.slug]),
    })
