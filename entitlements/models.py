"""Entitlement inventory: who (identity) has what (role) in which application, and where the data came from."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from thalian.crypto import EncryptedTextField
from thalian.tenancy import TenantModel


class IdentityKind(models.TextChoices):
    HUMAN = "human", "Human"
    SERVICE_ACCOUNT = "service_account", "Service account"
    BOT = "bot", "Bot"
    AI_AGENT = "ai_agent", "AI agent"


NON_HUMAN_KINDS = [IdentityKind.SERVICE_ACCOUNT, IdentityKind.BOT, IdentityKind.AI_AGENT]


class IdentityStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    TERMINATED = "terminated", "Terminated"
    UNKNOWN = "unknown", "Unknown"


class Identity(TenantModel):
    email = models.CharField(max_length=254)  # lower-cased; the natural key within an organization
    name = models.CharField(max_length=200, blank=True)
    department = models.CharField(max_length=200, blank=True)
    title = models.CharField(max_length=200, blank=True)
    manager = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reports")
    kind = models.CharField(max_length=20, choices=IdentityKind.choices, default=IdentityKind.HUMAN)
    status = models.CharField(max_length=20, choices=IdentityStatus.choices, default=IdentityStatus.ACTIVE)
    external_ids = models.JSONField(default=dict, blank=True)  # {"scim:<connector id>": "<id>", ...}
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [models.UniqueConstraint(fields=["organization", "email"], name="identity_unique_email")]
        indexes = [
            models.Index(fields=["organization", "department"], name="identity_org_dept"),
            models.Index(fields=["organization", "kind"], name="identity_org_kind"),
            models.Index(fields=["organization", "status"], name="identity_org_status"),
        ]

    def __str__(self) -> str:
        return self.email


class FeedKind(models.TextChoices):
    FILE = "file", "File upload"
    SCIM = "scim", "SCIM connector"


class Application(TenantModel):
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=100, blank=True)
    sanctioned = models.BooleanField(default=True)
    owner_email = models.CharField(max_length=254, blank=True)
    remediation_owner_email = models.CharField(max_length=254, blank=True)  # empty: the owner remediates
    feed = models.CharField(max_length=10, choices=FeedKind.choices, default=FeedKind.FILE)
    # "Data as of": the finish time of the last successful sync run that covered this application.
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_sync_run = models.ForeignKey("SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="application_unique_name")]
        indexes = [models.Index(fields=["organization", "category"], name="application_org_category")]

    def __str__(self) -> str:
        return self.name

    @property
    def effective_remediation_owner_email(self) -> str:
        return self.remediation_owner_email or self.owner_email


class Finding(models.TextChoices):
    DORMANT = "dormant", "Dormant"
    TERMINATED = "terminated", "Terminated identity"
    PRIVILEGED = "privileged", "Privileged"
    ORPHANED = "orphaned", "Orphaned"
    NEVER_USED = "never_used", "Never used"


# Findings are stored as one boolean column each so every filter is an indexable equality.
FINDING_FIELDS = {
    Finding.DORMANT: "is_dormant",
    Finding.TERMINATED: "is_terminated",
    Finding.PRIVILEGED: "is_privileged",
    Finding.ORPHANED: "is_orphaned",
    Finding.NEVER_USED: "is_never_used",
}


class FindingsMixin(models.Model):
    is_dormant = models.BooleanField(default=False)
    is_terminated = models.BooleanField(default=False)
    is_privileged = models.BooleanField(default=False)
    is_orphaned = models.BooleanField(default=False)
    is_never_used = models.BooleanField(default=False)

    class Meta:
        abstract = True

    @property
    def findings(self) -> list[str]:
        return [f.value for f, field in FINDING_FIELDS.items() if getattr(self, field)]


class Entitlement(FindingsMixin, TenantModel):
    # Every index here is paid for on each row of a million-row import, so single-column foreign key
    # indexes that a composite index already covers are left out: organization (every composite
    # starts with it) and removed_by_run (runs are never deleted).
    organization = models.ForeignKey(
        "thalian.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    identity = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="entitlements")
    # Covered by ent_org_app_present: every query of the scoped manager filters the organization first.
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="entitlements", db_index=False
    )
    role = models.CharField(max_length=255)
    last_used = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=20, default=FeedKind.FILE)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    present = models.BooleanField(default=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by_run = models.ForeignKey(
        "SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "application", "identity", "role"], name="entitlement_unique_grant"
            )
        ]
        indexes = [
            # Browsing and snapshots walk one organization's present grants per application in id order.
            models.Index(fields=["organization", "application", "present", "id"], name="ent_org_app_present"),
            # Grants of one identity use the identity foreign key index (identities belong to one organization).
            models.Index(fields=["organization", "present", "id"], name="ent_org_present_id"),
            # Partial indexes for the findings that are usually rare, so "show me orphaned access" walks
            # only those rows. Common findings (dormant, privileged, never used) need none: a walk of
            # ent_org_present_id in id order meets them within a few pages, and not indexing them keeps
            # a million-row import from maintaining a million extra index entries.
            *[
                models.Index(
                    fields=["organization", "id"],
                    condition=models.Q(present=True, **{flag: True}),
                    name=f"ent_org_{flag.removeprefix('is_')}"[:30],
                )
                for flag in ("is_terminated", "is_orphaned")
            ],
        ]

    def __str__(self) -> str:
        return f"{self.identity_id} {self.application_id} {self.role}"


class SyncRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class SyncRun(TenantModel):
    """One import or connector run."""

    source = models.CharField(max_length=20, default=FeedKind.FILE)  # file | scim
    kind = models.CharField(max_length=20)  # identities | applications | entitlements | scim
    mode = models.CharField(max_length=10, default="merge")  # merge | replace
    file_name = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=20, choices=SyncRunStatus.choices, default=SyncRunStatus.QUEUED)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    errors = models.JSONField(default=list, blank=True)  # [{"row": n, "column": c, "message": m}, ...]
    triggered_by = models.ForeignKey("thalian.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    connector = models.ForeignKey(
        "ScimConnector", null=True, blank=True, on_delete=models.SET_NULL, related_name="sync_runs"
    )
    identities_created = models.PositiveIntegerField(default=0)  # unknown identities an import had to create
    attempt = models.PositiveSmallIntegerField(default=1)
    # Where a queued upload waits for the worker; emptied once the run is over.
    upload_path = models.CharField(max_length=500, blank=True)
    applications = models.ManyToManyField(Application, through="SyncRunApplication", related_name="sync_runs")

    class Meta:
        indexes = [models.Index(fields=["organization", "-started_at"], name="syncrun_org_started")]

    def __str__(self) -> str:
        return f"{self.kind} run {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (SyncRunStatus.SUCCEEDED, SyncRunStatus.FAILED)

    @property
    def duration(self):
        return self.finished_at - self.started_at if self.finished_at else None


class SyncRunApplication(TenantModel):
    sync_run = models.ForeignKey(SyncRun, on_delete=models.CASCADE)
    application = models.ForeignKey(Application, on_delete=models.CASCADE)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "sync_run", "application"], name="syncrunapp_unique")
        ]
        indexes = [models.Index(fields=["organization", "application", "sync_run"], name="syncrunapp_org_app")]


class ScimConnector(TenantModel):
    """A SCIM 2.0 service provider feeding one application's accounts and groups."""

    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="scim_connector")
    base_url = models.URLField(max_length=500)
    token = EncryptedTextField()
    enabled = models.BooleanField(default=True)
    sync_interval_hours = models.PositiveIntegerField(default=24)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["organization", "enabled"], name="scimconn_org_enabled")]

    def __str__(self) -> str:
        return f"SCIM {self.base_url}"
