"""Platform core: users, organizations, memberships, invitations, API tokens and the audit log."""

from __future__ import annotations

import hashlib
import secrets
import uuid

import pgtrigger
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone

from .permissions import ROLE_CHOICES, Perm, Role, has_perm
from .tenancy import TenantModel


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra):
        if not email:
            raise ValueError("an e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in; e-mail is the login name. Rights come from memberships, not from here."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email


class Plan(models.TextChoices):
    FREE = "free", "Free"
    PRO = "pro", "Pro"
    ENTERPRISE = "enterprise", "Enterprise"


class TicketTrigger(models.TextChoices):
    ON_DECISION = "decision", "When the revoke decision is made"
    ON_SIGN_OFF = "sign_off", "When the reviewer signs off"


def default_privileged_patterns() -> list[str]:
    return ["admin", "owner", "root"]


def default_decision_quality_thresholds() -> dict:
    """When a reviewer's decisions are flagged as rubber-stamping (tunable per organization)."""
    return {
        "burst_gap_seconds": 60,  # decisions closer than this belong to one burst
        "burst_min_decisions": 50,  # a burst of at least this many single decisions ...
        "burst_max_median_seconds": 3,  # ... at a median gap under this ...
        "burst_min_approve_percent": 98,  # ... with at least this share of approvals is flagged
        "privileged_min_seconds": 5,  # a privileged item approved sooner after the previous decision is flagged
        "flag_bulk_recommended_revoke": True,  # a bulk approval that included recommended-revoke items
    }


class Organization(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    plan = models.CharField(max_length=20, choices=Plan.choices, default=Plan.FREE)
    # Inventory and review settings.
    dormant_days = models.PositiveIntegerField(default=90)
    privileged_patterns = models.JSONField(default=default_privileged_patterns)
    freshness_days = models.PositiveIntegerField(default=7)
    ticket_trigger = models.CharField(max_length=20, choices=TicketTrigger.choices, default=TicketTrigger.ON_DECISION)
    # Exception decisions expire: the default when a reviewer gives no date, and the longest allowed.
    exception_default_days = models.PositiveIntegerField(default=90)
    exception_max_days = models.PositiveIntegerField(default=365)
    decision_quality_thresholds = models.JSONField(default=default_decision_quality_thresholds)
    # Managers and application owners who are not members review their items through a personal link.
    guest_reviewers_enabled = models.BooleanField(default=True)
    # Access requests: members may ask for access on behalf of others (managers for their reports, admins and
    # analysts for anyone), and a temporary grant lasts at most this many days.
    access_requests_for_others = models.BooleanField(default=True)
    access_request_max_days = models.PositiveIntegerField(default=90)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def clean(self):
        from django.core.exceptions import ValidationError

        if self.exception_default_days and self.exception_max_days and (
            self.exception_default_days > self.exception_max_days
        ):
            raise ValidationError(
                {
                    "exception_default_days": f"The default exception length ({self.exception_default_days} days) "
                    f"is longer than the maximum ({self.exception_max_days} days)."
                }
            )

    @property
    def has_access_reviews(self) -> bool:
        return self.plan in (Plan.PRO, Plan.ENTERPRISE)

    @property
    def allows_guest_reviewers(self) -> bool:
        """Guest reviewers are a Pro and Enterprise feature, on unless the organization turned it off."""
        return self.has_access_reviews and self.guest_reviewers_enabled


PLAN_REQUIRED_MESSAGE = (
    "Access reviews require the Pro or Enterprise plan. This organization is on the Free plan: a super admin "
    "can upgrade it under Organization settings."
)


class Membership(models.Model):
    """A user's role in one organization. Not a TenantModel: resolving memberships is how scope starts."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=ROLE_CHOICES, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="membership_unique_user")]
        indexes = [models.Index(fields=["organization", "role"], name="membership_org_role")]

    def __str__(self) -> str:
        return f"{self.user.email} ({self.role}) in {self.organization.slug}"

    def can(self, perm: Perm | str) -> bool:
        return has_perm(self.role, perm)

    @property
    def email(self) -> str:
        return self.user.email


class Invitation(TenantModel):
    email = models.EmailField()
    role = models.CharField(max_length=20, choices=ROLE_CHOICES)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "email"], name="invitation_org_email")]

    @property
    def is_open(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > timezone.now()


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_raw_token(prefix: str = "thl") -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


class ApiToken(TenantModel):
    """Personal API token of one membership. Only the SHA-256 of the token is stored."""

    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="api_tokens")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)  # first characters, shown so people can tell tokens apart
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "membership"], name="apitoken_org_membership")]

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# Body of the audit table's append-only triggers (PostgreSQL, installed by django-pgtrigger's migrations).
AUDIT_APPEND_ONLY_REFUSAL = (
    "RAISE EXCEPTION 'audit events are append-only: % of thalian_auditevent % refused', TG_OP, OLD.id "
    "USING ERRCODE = 'insufficient_privilege';"
)
# Trigger that thalian.services.organization_delete ignores (pgtrigger.ignore) to remove an organization's trail.
AUDIT_DELETE_TRIGGER = "thalian.AuditEvent:audit_append_only_delete"


class AuditEvent(models.Model):
    """Append-only record of who did what. Rows are never updated or deleted (enforced in save/delete and,
    on PostgreSQL, by the triggers below)."""

    organization = models.ForeignKey(Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_email = models.CharField(max_length=254, blank=True)  # kept even if the user is deleted; "system" for jobs
    action = models.CharField(max_length=80)
    target_type = models.CharField(max_length=80, blank=True)
    target_id = models.CharField(max_length=80, blank=True)
    target_label = models.CharField(max_length=300, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="audit_org_created"),
            models.Index(fields=["organization", "action", "-created_at"], name="audit_org_action"),
        ]
        triggers = [
            # Any change but the actor is refused; the actor may only be cleared (deleting a user sets it to
            # NULL, and actor_email keeps who it was).
            pgtrigger.Trigger(
                name="audit_append_only_update",
                when=pgtrigger.Before,
                operation=pgtrigger.Update,
                condition=pgtrigger.AnyChange(exclude=["actor"]),
                func=AUDIT_APPEND_ONLY_REFUSAL,
            ),
            pgtrigger.Trigger(
                name="audit_append_only_actor",
                when=pgtrigger.Before,
                operation=pgtrigger.Update,
                condition=pgtrigger.Q(new__actor__isnull=False, old__actor__df=pgtrigger.F("new__actor")),
                func=AUDIT_APPEND_ONLY_REFUSAL,
            ),
            # Deletes are refused except inside organization_delete, which ignores this trigger.
            pgtrigger.Trigger(
                name="audit_append_only_delete",
                when=pgtrigger.Before,
                operation=pgtrigger.Delete,
                func=AUDIT_APPEND_ONLY_REFUSAL,
            ),
        ]

    @property
    def detail_pairs(self) -> list[tuple[str, object]]:
        """The details as (key, value) pairs for display. Templates must not look up ``details.items``: a
        detail may itself be called ``items`` (the item count of a launch or sign-off)."""
        details = self.details if isinstance(self.details, dict) else {"value": self.details}
        return list(details.items())

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise RuntimeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("audit events are append-only")


class OutboxState(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class OutboxEvent(TenantModel):
    """A domain event written in the same transaction as the change it reports (thalian/events.py).

    The dispatcher claims a row (``claimed_at``/``claim_id``), runs every receiver registered for ``name``
    that has not succeeded yet, and records each receiver's outcome in ``outcomes``:
    ``{receiver: {"state": "done"|"retry"|"failed", "attempts": n, "error": "...", "at": iso}}``. A failed
    receiver is retried with backoff (``next_attempt_at``) without re-running the ones that succeeded."""

    name = models.CharField(max_length=80)
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=10, choices=OutboxState.choices, default=OutboxState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    outcomes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_id = models.UUIDField(null=True, blank=True)
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The sweep and the backlog gauge read unhandled rows across organizations, oldest due first; a
            # partial index keeps that small however many handled rows are kept.
            models.Index(
                fields=["next_attempt_at"],
                name="outbox_pending_due",
                condition=models.Q(state="pending"),
            ),
            models.Index(fields=["created_at"], name="outbox_failed_created", condition=models.Q(state="failed")),
            models.Index(fields=["organization", "state", "-created_at"], name="outbox_org_state"),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}"

    @property
    def failed_receivers(self) -> list[str]:
        return sorted(name for name, outcome in self.outcomes.items() if outcome.get("state") == "failed")
