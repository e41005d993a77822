"""Evidence of one campaign: the summary report and sampling.

The items CSV is in ``evidence.items_csv``, what a package holds in ``evidence.contents`` and the packages
themselves in ``evidence.packages``. Selectors build querysets inside the caller's organization scope. The
byte-level formats (safe cells, manifest, signature, chain) live in ``evidence.formats`` and
``campaigns.hashchain``.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Count, Max, Min, Q

from campaigns.models import Campaign, Decision, DecisionEvent, ReviewItem
from thalian.audit import audit_record
from thalian.models import Membership, User

from .contents import population_certificate
from .items_csv import ITERATOR_CHUNK, ExportError
from .models import EvidencePackage

# --------------------------------------------------------------------------------------------------
# Summary report
# --------------------------------------------------------------------------------------------------


def campaign_summary(*, campaign: Campaign) -> dict[str, Any]:
    """Figures of the printable campaign report, from a handful of aggregate queries."""
    items = ReviewItem.objects.filter(campaign=campaign)
    totals = items.aggregate(
        total=Count("id"),
        decided=Count("id", filter=~Q(decision="")),
        approve=Count("id", filter=Q(decision=Decision.APPROVE)),
        revoke=Count("id", filter=Q(decision=Decision.REVOKE)),
        exception=Count("id", filter=Q(decision=Decision.EXCEPTION)),
        system=Count("id", filter=Q(decided_by_email="system")),
        identities=Count("identity_email", distinct=True),
        applications=Count("application_name", distinct=True),
        first_decision=Min("decided_at"),
        last_decision=Max("decided_at"),
    )
    total = totals["total"] or 0
    totals["pending"] = total - totals["decided"]
    totals["percent"] = round(100 * totals["decided"] / total) if total else 0
    chart = [
        {"key": key, "label": label, "count": totals[key], "width": _width_class(totals[key], total)}
        for key, label in (
            ("approve", "Approved"),
            ("revoke", "Revoked"),
            ("exception", "Exception"),
            ("pending", "Undecided"),
        )
    ]
    reviewers = list(
        items.values("reviewer_email")
        .annotate(
            items=Count("id"),
            decided=Count("id", filter=~Q(decision="")),
            revoked=Count("id", filter=Q(decision=Decision.REVOKE)),
            signed_off=Max("signed_off_at"),
        )
        .order_by("reviewer_email")
    )
    revocations = list(
        items.filter(decision=Decision.REVOKE)
        .values("application_name")
        .annotate(
            total=Count("id"),
            ticketed=Count("id", filter=~Q(ticket_url="")),
            pending=Count("id", filter=Q(remediation_status="pending")),
            verified=Count("id", filter=Q(remediation_status="verified_removed")),
            confirmed=Count("id", filter=Q(remediation_status="confirmed_removed")),
            action_required=Count("id", filter=Q(remediation_status="action_required")),
            untracked=Count("id", filter=Q(remediation_status="")),
        )
        .order_by("application_name")
    )
    return {
        "totals": totals,
        "chart": chart,
        "reviewers": reviewers,
        "revocations": revocations,
        "population": population_certificate(campaign=campaign),
    }


def _width_class(count: int, total: int) -> str:
    if not total:
        return "w-0"
    return f"w-{round(20 * count / total) * 5}"


# --------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------

MAX_SAMPLE = 200


@dataclass
class Sample:
    seed: int
    size: int
    population: int
    items: list[ReviewItem]
    trails: dict[int, list[DecisionEvent]]


def evidence_sample_draw(
    *, campaign: Campaign, size: int, seed: int | None, actor: User, request=None
) -> Sample:
    """Pick ``size`` items at random (reproducible from ``seed`` over the same campaign), record the draw
    in the audit log, and return each item with its full decision trail."""
    if not 1 <= size <= MAX_SAMPLE:
        raise ExportError(f"sample size must be between 1 and {MAX_SAMPLE}; got {size}")
    if seed is None:
        seed = secrets.randbelow(2**31)
    elif not 0 <= seed < 2**63:
        raise ExportError("seed must be a non-negative integer below 2^63")
    ids = ReviewItem.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True)
    population = ids.count()
    positions = sorted(random.Random(seed).sample(range(population), min(size, population)))
    chosen: list[int] = []
    if positions:
        wanted = iter(positions)
        target = next(wanted)
        for index, item_id in enumerate(ids.iterator(chunk_size=ITERATOR_CHUNK)):
            if index == target:
                chosen.append(item_id)
                target = next(wanted, None)
                if target is None:
                    break
    items = list(ReviewItem.objects.filter(pk__in=chosen).order_by("id"))
    trails: dict[int, list[DecisionEvent]] = {item_id: [] for item_id in chosen}
    for event in DecisionEvent.objects.filter(item_id__in=chosen).order_by("id"):
        trails[event.item_id].append(event)
    audit_record(
        action="evidence_sample_drawn",
        organization_id=campaign.organization_id,
        actor=actor,
        request=request,
        target=campaign,
        details={"seed": seed, "size": size, "population": population, "item_ids": chosen},
    )
    return Sample(seed=seed, size=size, population=population, items=items, trails=trails)


def evidence_packages_for(*, membership: Membership, campaign: Campaign | None = None) -> models.QuerySet:
    qs = EvidencePackage.objects.select_related("campaign").order_by("-created_at")
    if campaign is not None:
        qs = qs.filter(campaign=campaign)
    return qs
