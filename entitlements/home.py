"""Home section of the inventory: open findings and applications whose data is stale, for staff."""

from __future__ import annotations

import datetime as dt

from django.core.cache import cache
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from thalian.home import Bar, Section
from thalian.permissions import Perm, has_perm

from .models import FINDING_FIELDS, Application, Entitlement, Finding

# Counting findings reads every present grant of the organization: cached briefly, the page says "as of".
FINDINGS_CACHE_SECONDS = 300
FINDING_TONES = {Finding.TERMINATED: "bad", Finding.ORPHANED: "bad", Finding.PRIVILEGED: "warn"}


def findings_summary(*, organization) -> dict:
    key = f"home-findings:{organization.pk}"
    summary = cache.get(key)
    if summary is None:
        counts = Entitlement.objects.filter(present=True).aggregate(
            **{f.value: Count("id", filter=Q(**{FINDING_FIELDS[f]: True})) for f in Finding}
        )
        limit = timezone.now() - dt.timedelta(days=organization.freshness_days)
        stale = list(
            Application.objects.filter(Q(last_synced_at__isnull=True) | Q(last_synced_at__lt=limit))
            .order_by("last_synced_at", "name")
            .values_list("id", "name", "last_synced_at")[:6]
        )
        stale_total = Application.objects.filter(Q(last_synced_at__isnull=True) | Q(last_synced_at__lt=limit)).count()
        summary = {"counts": counts, "stale": stale, "stale_total": stale_total, "as_of": timezone.now()}
        cache.set(key, summary, FINDINGS_CACHE_SECONDS)
    return summary


def inventory_home_section(request) -> Section | None:
    if not has_perm(request.membership.role, Perm.MANAGE_INVENTORY):
        return None
    slug = request.organization.slug
    summary = findings_summary(organization=request.organization)
    entitlements_url = reverse("entitlement_list", args=[slug])
    bars = [
        Bar(label=f.label, value=summary["counts"][f.value], url=f"{entitlements_url}?finding={f.value}",
            tone=FINDING_TONES.get(f, ""))
        for f in Finding
    ]
    stale = [
        {"name": name, "last_synced_at": synced, "url": reverse("application_detail", args=[slug, pk])}
        for pk, name, synced in summary["stale"]
    ]
    return Section(
        template="entitlements/home_inventory.html",
        order=40,
        data={
            "bars": bars,
            "findings_total": sum(b.value for b in bars),
            "stale": stale,
            "stale_total": summary["stale_total"],
            "as_of": summary["as_of"],
            "applications_url": reverse("application_list", args=[slug]),
            "freshness_days": request.organization.freshness_days,
        },
    )
