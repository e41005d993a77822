"""Evidence packages: each generated evidence ZIP of a campaign, its hashes and who generated it."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from campaigns.models import Campaign
from thalian.tenancy import TenantModel


class EvidencePackageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


def evidence_package_path(instance: EvidencePackage, filename: str) -> str:
    return f"evidence/{instance.organization_id}/{instance.campaign_id}/{instance.id}.zip"


class EvidencePackage(TenantModel):
    """One generated evidence ZIP: its hashes and who generated it. Large packages are built in the
    background and kept in storage (``file``); small ones are streamed and only recorded here."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="evidence_packages")
    status = models.CharField(
        max_length=20, choices=EvidencePackageStatus.choices, default=EvidencePackageStatus.BUILDING
    )
    stored = models.BooleanField(default=False)  # built in the background and kept for download
    progress = models.PositiveSmallIntegerField(default=0)  # percent while building
    progress_label = models.CharField(max_length=200, blank=True)
    file = models.FileField(upload_to=evidence_package_path, max_length=300, blank=True)
    file_name = models.CharField(max_length=200)
    sha256 = models.CharField(max_length=64, blank=True)  # of the whole ZIP
    size = models.BigIntegerField(null=True, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    chain_head = models.CharField(max_length=64, blank=True)
    # evidence_state_digest() of the campaign when the package was requested: the same state reuses the package.
    state_digest = models.CharField(max_length=64, blank=True)
    item_count = models.PositiveIntegerField(default=0)
    decision_count = models.PositiveIntegerField(default=0)
    public_key_fingerprint = models.CharField(max_length=64, blank=True)
    generated_by = models.ForeignKey(
        "thalian.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    generated_by_email = models.CharField(max_length=254)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Background builds: how often the build was sent to a worker, and when last (queued) or claimed
    # (building). The stale-claim sweep re-sends an abandoned build and fails it after CLAIM_MAX_ATTEMPTS.
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table keeps the name it had when packages were part of campaigns, so moving the model into
        # its own app copied no data.
        db_table = "campaigns_evidencepackage"
        indexes = [
            # The Evidence page lists an organization's packages newest first, optionally per campaign.
            models.Index(fields=["organization", "-created_at"], name="evidencepkg_org_created"),
            models.Index(fields=["organization", "campaign", "-created_at"], name="evidencepkg_org_campaign"),
        ]

    def __str__(self) -> str:
        return self.file_name
