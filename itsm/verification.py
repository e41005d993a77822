"""Verification of removal against imported data, and the remediation outcome it leads to."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from campaigns.models import Decision, RemediationStatus, ReviewItem
from campaigns.remediation import (
    campaign_remediation_complete_if_done,
    campaign_remediation_reopen,
    review_items_remediation_verify,
)
from entitlements.models import Entitlement
from thalian.audit import audit_record
from thalian.events import RemediationOutcome, publish
from thalian.models import AuditEvent
from thalian.tenancy import scope


def remediation_verify_for_applications(
    *, organization_id: int, application_ids: Iterable[int]
) -> dict[str, int]:
    """After an import or sync of these applications: a revoked item whose entitlement is gone becomes
    verified_removed, one whose entitlement is still present becomes action_required. A campaign whose revoked
    items are then all checked gets its remediation outcome announced, once per outcome."""
    application_ids = list(application_ids)
    result = {"verified_removed": 0, "action_required": 0}
    if not application_ids:
        return result
    now = timezone.now()
    with scope(organization_id=organization_id), transaction.atomic():
        verified = review_items_remediation_verify(
            application_ids=application_ids, present_entitlements=Entitlement.objects.filter(present=True), now=now
        )
        campaign_ids = verified.campaign_ids
        result["verified_removed"], result["action_required"] = verified.verified_removed, verified.action_required
        if verified.contradicted:
            audit_record(
                action="itsm.removal_confirmation_contradicted",
                organization_id=organization_id,
                target_type="application",
                target_id=",".join(map(str, application_ids))[:80],
                details={"applications": application_ids, "items": [pk for pk, _c in verified.contradicted][:1000]},
                system=True,
            )
            # In this transaction (the campaigns are locked already): completed campaigns whose manually
            # confirmed removal the import contradicts are remediating again.
            for campaign_id in sorted({str(c) for _pk, c in verified.contradicted}):
                campaign_remediation_reopen(campaign_id=campaign_id, why="an import still lists access confirmed removed")
        if result["verified_removed"] or result["action_required"]:
            audit_record(
                action="itsm.remediation_verified",
                organization_id=organization_id,
                target_type="application",
                target_id=",".join(map(str, application_ids))[:80],
                details={"applications": application_ids, **result},
                system=True,
            )
        _remediation_outcomes(organization_id=organization_id, campaign_ids=campaign_ids)
        if result["verified_removed"]:
            # Campaigns in `remediating` whose last revokes were just verified removed become completed.
            for campaign_id in campaign_ids:
                campaign_remediation_complete_if_done(campaign_id=campaign_id)
    return result


def _remediation_outcomes(*, organization_id: int, campaign_ids: list) -> None:
    """Announce the outcome of every campaign whose revoked items all have a checked removal: "verified" when
    every removal is verified, "failed" when none is, "partial" otherwise. Each campaign and outcome is
    recorded in the audit log and announced once; a later import that changes the outcome announces again."""
    if not campaign_ids:
        return
    tallies = (
        ReviewItem.objects.filter(campaign_id__in=campaign_ids, decision=Decision.REVOKE)
        .order_by()
        .values("campaign_id", "campaign__title")
        .annotate(
            total=Count("pk"),
            verified=Count("pk", filter=Q(remediation_status=RemediationStatus.VERIFIED_REMOVED)),
            still_present=Count("pk", filter=Q(remediation_status=RemediationStatus.ACTION_REQUIRED)),
        )
    )
    announced = set(
        AuditEvent.objects.filter(
            organization_id=organization_id,
            action="itsm.remediation_outcome",
            target_type="campaign",
            target_id__in=[str(pk) for pk in campaign_ids],
        ).values_list("target_id", "details__outcome")
    )
    for row in tallies:
        total, verified, still_present = row["total"], row["verified"], row["still_present"]
        if verified + still_present < total:
            continue  # some removals are not checked yet
        outcome = "verified" if verified == total else "failed" if verified == 0 else "partial"
        campaign_id = row["campaign_id"]
        if (str(campaign_id), outcome) in announced:
            continue
        counts = {"verified removed": verified, "action required": still_present}
        audit_record(
            action="itsm.remediation_outcome",
            organization_id=organization_id,
            target_type="campaign",
            target_id=str(campaign_id),
            target_label=row["campaign__title"],
            details={"outcome": outcome, **counts},
            system=True,
        )
        publish(
            RemediationOutcome(
                organization_id=organization_id,
                campaign_id=str(campaign_id),
                outcome=outcome,
                counts=[[label, number] for label, number in counts.items()],
            )
        )
