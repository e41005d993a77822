"""Access requests: a member asks for a role on an application to be granted or revoked; approvers decide in
stages; the approved change is ticketed and then verified against the next import or sync."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from thalian.tenancy import TenantModel


class RequestType(models.TextChoices):
    GRANT = "grant", "Grant"
    REVOKE = "revoke", "Revoke"


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"
    FULFILLING = "fulfilling", "Fulfilling"
    FULFILLED = "fulfilled", "Fulfilled"
    REVOKED = "revoked", "Revoked"


OPEN_STATUSES = (RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.FULFILLING)
# Waiting for the change to show up in the inventory.
AWAITING_VERIFICATION = (RequestStatus.APPROVED, RequestStatus.FULFILLING)


class StageKind(models.TextChoices):
    MANAGER = "manager", "The identity's manager"
    APPLICATION_OWNER = "application_owner", "The application owner"
    MEMBERS = "members", "Named members"


def default_stages() -> list[dict]:
    return [{"kind": StageKind.MANAGER.value}, {"kind": StageKind.APPLICATION_OWNER.value}]


class ApprovalPolicy(TenantModel):
    """Who approves access requests: the organization's policy (no application) or one application's
    override. ``stages`` is an ordered list of {"kind": manager|application_owner|members, "members": [...]}."""

    application = models.OneToOneField(
        "entitlements.Application", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    stages = models.JSONField(default=default_stages)
    fallback = models.ForeignKey("thalian.Membership", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    remind_every_days = models.PositiveSmallIntegerField(default=2)  # 0: no reminders
    escalate_after_days = models.PositiveSmallIntegerField(default=4)  # 0: never escalate
    expire_after_days = models.PositiveSmallIntegerField(default=14)  # an undecided request expires
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "approval policies"
        constraints = [
            models.UniqueConstraint(fields=["organization"], condition=models.Q(application__isnull=True),
                                    name="approvalpolicy_one_default"),
        ]

    @property
    def stages_text(self) -> str:
        labels = dict(StageKind.choices)
        return " → ".join(
            labels.get(s["kind"], s["kind"]) + (f" ({', '.join(s['members'])})" if s.get("members") else "")
            for s in self.stages
        )


class AccessRequest(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=10, choices=RequestType.choices)
    identity = models.ForeignKey("entitlements.Identity", on_delete=models.CASCADE, related_name="+")
    application = models.ForeignKey("entitlements.Application", on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=255)
    reason = models.TextField()
    ends_at = models.DateTimeField(null=True, blank=True)  # a temporary grant ends then
    status = models.CharField(max_length=12, choices=RequestStatus.choices, default=RequestStatus.PENDING)
    requested_by = models.ForeignKey("thalian.Membership", null=True, on_delete=models.SET_NULL, related_name="+")
    requested_by_email = models.CharField(max_length=254)
    # The approval stages as resolved from the policy when the request was made; later policy edits do not
    # change a request already under way.
    stages = models.JSONField(default=list)
    current_stage = models.PositiveSmallIntegerField(default=0)
    approval_deadline = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    access_ended_at = models.DateTimeField(null=True, blank=True)  # a temporary grant's end was processed
    revoked_at = models.DateTimeField(null=True, blank=True)  # its removal was verified
    ticket_state = models.CharField(max_length=20, blank=True)  # copy of the ticket's state, for lists
    ticket_key = models.CharField(max_length=100, blank=True)
    ticket_url = models.CharField(max_length=500, blank=True)
    ticket_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "status", "-created_at"], name="accessreq_org_status"),
            models.Index(fields=["organization", "requested_by", "-created_at"], name="accessreq_org_requester"),
            models.Index(fields=["organization", "application", "status"], name="accessreq_org_app_status"),
            # The beat sweep looks for temporary grants whose end has come.
            models.Index(fields=["ends_at"], name="accessreq_ends_at",
                         condition=models.Q(ends_at__isnull=False, access_ended_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} {self.role} in {self.application_id} for {self.identity_id}"

    @property
    def is_temporary(self) -> bool:
        return self.type == RequestType.GRANT and self.ends_at is not None

    @property
    def short_id(self) -> str:
        return str(self.pk)[:8]


class ApprovalDecision(models.TextChoices):
    WAITING = "waiting", "Waiting"
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    SKIPPED = "skipped", "Not needed"


class Approval(TenantModel):
    """One stage of one request: who decides it (a member, or a guest through a personal link), and how."""

    access_request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="approvals")
    stage = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=20, choices=StageKind.choices)
    approver = models.ForeignKey("thalian.Membership", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    approver_email = models.CharField(max_length=254, blank=True)  # empty: unassigned until an admin reassigns
    note = models.CharField(max_length=300, blank=True)
    decision = models.CharField(max_length=10, choices=ApprovalDecision.choices, default=ApprovalDecision.WAITING)
    reason = models.TextField(blank=True)
    decided_by_email = models.CharField(max_length=254, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    # Guests: only the SHA-256 of the link's secret is kept.
    token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    link_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "access_request", "stage"], name="approval_unique_stage"),
        ]
        indexes = [models.Index(fields=["organization", "approver", "decision"], name="approval_org_approver")]

    @property
    def is_guest(self) -> bool:
        return self.approver_id is None and bool(self.approver_email)


class TrailEvent(TenantModel):
    """The append-only trail of a request: created, each approval, ticket, verification, expiry."""

    access_request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="trail")
    at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=40)
    actor_email = models.CharField(max_length=254)  # "system" for automatic steps
    message = models.CharField(max_length=1000)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["organization", "access_request", "at"], name="trail_org_request_at")]

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise RuntimeError("the trail of an access request is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("the trail of an access request is append-only")
