"""Review campaigns: a frozen snapshot of entitlements, each item assigned to a reviewer and decided."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from entitlements.models import FindingsMixin
from thalian.tenancy import TenantModel


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    LAUNCHING = "launching", "Launching"
    ACTIVE = "active", "Active"
    # Every reviewer signed off (or the campaign was closed) but some revoked access is not yet proven removed.
    REMEDIATING = "remediating", "Remediating"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    ARCHIVED = "archived", "Archived"


class ReviewerStrategy(models.TextChoices):
    APPLICATION_OWNER = "application_owner", "Application owner"
    MANAGER = "manager", "Identity's manager"
    MEMBERS = "members", "Named members"


class DefaultOutcome(models.TextChoices):
    NONE = "none", "Leave undecided"
    APPROVE = "approve", "Approve"
    REVOKE = "revoke", "Revoke"
    RECOMMENDATION = "recommendation", "Follow the recommendation"


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REVOKE = "revoke", "Revoke"
    EXCEPTION = "exception", "Exception"


class DeadlineOutcome(models.TextChoices):
    """What happens to a stage's undecided items when the stage's deadline passes."""

    CARRY_FORWARD = "carry_forward", "Carry forward to the next stage"
    APPROVE = "approve", "Approve"
    REVOKE = "revoke", "Revoke"
    ESCALATE = "escalate", "Leave undecided and escalate to the stage's fallback reviewer"


MAX_STAGES = 5


def default_advance_on() -> list[str]:
    return [Decision.APPROVE.value, Decision.EXCEPTION.value]


class Recurrence(models.TextChoices):
    NONE = "", "Does not recur"
    MONTHLY = "monthly", "Monthly"
    QUARTERLY = "quarterly", "Quarterly"
    SEMIANNUAL = "semiannual", "Semi-annually"
    YEARLY = "yearly", "Yearly"
    EVERY_DAYS = "every_days", "Every N days"


def default_scope() -> dict:
    return {
        "applications": [],
        "categories": [],
        "sanctioned_only": False,
        "min_users": None,
        "departments": [],
        "identity_kinds": [],
        "preset": None,
        "privileged_only": False,
    }


class Campaign(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    due_date = models.DateField()
    status = models.CharField(max_length=20, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    scope = models.JSONField(default=default_scope)
    reviewer_strategy = models.CharField(
        max_length=30, choices=ReviewerStrategy.choices, default=ReviewerStrategy.APPLICATION_OWNER
    )
    # For the `members` strategy: {"*": ["a@x"], "<application name>": ["b@x", "c@x"]}.
    reviewers = models.JSONField(default=dict, blank=True)
    fallback_reviewer = models.ForeignKey(
        "thalian.Membership", null=True, on_delete=models.PROTECT, related_name="+"
    )
    # Remediation owners: {"<application name>": "<member e-mail>"} overrides of the application's remediation
    # owner (else its owner); the fallback takes applications whose owner is not a member who can remediate.
    remediation_owners = models.JSONField(default=dict, blank=True)
    fallback_remediation_owner = models.ForeignKey(
        "thalian.Membership", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason_required = models.BooleanField(default=True)
    default_outcome = models.CharField(max_length=20, choices=DefaultOutcome.choices, default=DefaultOutcome.NONE)
    # Data freshness override recorded at launch.
    freshness_override_reason = models.TextField(blank=True)
    freshness_override_by = models.ForeignKey(
        "thalian.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stale_applications = models.JSONField(default=list, blank=True)
    # Lifecycle.
    created_by = models.ForeignKey("thalian.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    launched_by = models.ForeignKey("thalian.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    launched_at = models.DateTimeField(null=True, blank=True)
    snapshot_at = models.DateTimeField(null=True, blank=True)
    launch_progress = models.PositiveIntegerField(default=0)  # percent while launching
    launch_error = models.TextField(blank=True)
    # Snapshot attempts of the current launch; the stale-claim sweep re-sends an abandoned one and fails the
    # launch visibly after CLAIM_MAX_ATTEMPTS. While launching, updated_at is when the last attempt was sent.
    launch_attempts = models.PositiveSmallIntegerField(default=0)
    item_count = models.PositiveIntegerField(default=0)
    closed_by = models.ForeignKey("thalian.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    closed_at = models.DateTimeField(null=True, blank=True)
    remediating_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        "thalian.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.TextField(blank=True)
    # Scheduling and recurrence.
    launch_at = models.DateTimeField(null=True, blank=True)
    recurrence = models.CharField(max_length=20, choices=Recurrence.choices, default=Recurrence.NONE, blank=True)
    recurrence_every_days = models.PositiveIntegerField(null=True, blank=True)
    duration_days = models.PositiveIntegerField(null=True, blank=True)
    series = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="occurrences")
    archived_reason = models.TextField(blank=True)
    # Head of the decision hash chain (hash of the last Decision row of this campaign).
    chain_head = models.CharField(max_length=64, blank=True)
    # Review stages (CampaignStage rows when more than one); 1: the reviewer fields above are the only stage.
    stage_count = models.PositiveSmallIntegerField(default=1)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "status", "-created_at"], name="campaign_org_status"),
            models.Index(fields=["organization", "launch_at"], name="campaign_org_launch_at"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_overdue(self) -> bool:
        return self.status == CampaignStatus.ACTIVE and self.due_date < timezone.localdate()

    @property
    def is_multi_stage(self) -> bool:
        return self.stage_count > 1


class CampaignStage(TenantModel):
    """One stage of a multi-stage campaign. Stage 1 mirrors the campaign's reviewer fields (the snapshot assigns
    it); an item moves to the next stage when its reviewer signs off a decision listed in ``advance_on``."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="stages")
    number = models.PositiveSmallIntegerField()  # 1 .. MAX_STAGES
    reviewer_strategy = models.CharField(max_length=30, choices=ReviewerStrategy.choices)
    reviewers = models.JSONField(default=dict, blank=True)  # as Campaign.reviewers
    fallback_reviewer = models.ForeignKey("thalian.Membership", on_delete=models.PROTECT, related_name="+")
    # An item's deadline in this stage: when it entered the stage plus this many days.
    duration_days = models.PositiveIntegerField()
    # Decisions that move an item on to the next stage; any other decision is final.
    advance_on = models.JSONField(default=default_advance_on)
    # Whether this stage's reviewers see the decisions of earlier stages.
    show_earlier_decisions = models.BooleanField(default=True)
    deadline_outcome = models.CharField(
        max_length=20, choices=DeadlineOutcome.choices, default=DeadlineOutcome.CARRY_FORWARD
    )
    started_at = models.DateTimeField(null=True, blank=True)  # when the first item entered the stage

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "campaign", "number"], name="campaignstage_unique_number")
        ]
        ordering = ["number"]

    def __str__(self) -> str:
        return f"Stage {self.number}"

    def advances(self, decision: str) -> bool:
        return decision in (self.advance_on or [])


class RemediationStatus(models.TextChoices):
    NONE = "", "—"
    PENDING = "pending", "Pending removal"
    VERIFIED_REMOVED = "verified_removed", "Verified removed"
    ACTION_REQUIRED = "action_required", "Action required"
    # The remediation owner stated, with a comment, that the access is gone (no import or sync proved it).
    CONFIRMED_REMOVED = "confirmed_removed", "Manually confirmed removed"


# Removal is proven for these; a campaign in `remediating` completes once every revoke holds one of them.
REMOVAL_PROVEN = (RemediationStatus.VERIFIED_REMOVED, RemediationStatus.CONFIRMED_REMOVED)


class TicketStatus(models.TextChoices):
    NONE = "", "—"
    PENDING = "pending", "Pending"
    OPEN = "open", "Open"
    IN_PROGRESS = "in_progress", "In progress"
    RESOLVED = "resolved", "Resolved"
    FAILED = "failed", "Failed"


class ReviewItem(FindingsMixin, TenantModel):
    """One entitlement in a campaign, frozen at snapshot time. Later inventory changes never alter it.

    A launch writes a million of these in one go, and each index is paid on every row: the table carries
    only the indexes a list, filter, sort or lookup uses (tests/campaigns/test_item_indexes.py proves each one
    with EXPLAIN, docs/campaigns.md has the table). Queries filter the organization first, so the
    (organization, campaign, ...) composites serve them, and the
    columns only decided items fill (guest, renewal, revoked items) have partial indexes that a launch
    does not touch. Four foreign keys keep an index for PostgreSQL's checks when a parent row is deleted."""

    organization = models.ForeignKey(
        "thalian.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # PostgreSQL checks a deleted campaign, entitlement, application or member against its items by this
    # column alone (an organization deleted, a member removed), so these four keep their own index: cheap
    # ones for a launch (one value per campaign, few reviewers and applications, ascending entitlements).
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items")
    entitlement = models.ForeignKey(
        "entitlements.Entitlement", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    application = models.ForeignKey(
        "entitlements.Application", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Frozen copy of what the reviewer sees.
    identity_email = models.CharField(max_length=254)
    identity_name = models.CharField(max_length=200, blank=True)
    identity_department = models.CharField(max_length=200, blank=True)
    identity_manager_email = models.CharField(max_length=254, blank=True)
    identity_kind = models.CharField(max_length=20)
    identity_status = models.CharField(max_length=20)
    application_name = models.CharField(max_length=200)
    application_category = models.CharField(max_length=100, blank=True)
    application_sanctioned = models.BooleanField(default=True)
    role = models.CharField(max_length=255)
    last_used = models.DateTimeField(null=True, blank=True)
    recommendation = models.CharField(max_length=20, choices=Decision.choices)
    recommendation_reason = models.CharField(max_length=300, blank=True)
    # Assignment.
    reviewer = models.ForeignKey("thalian.Membership", null=True, on_delete=models.SET_NULL, related_name="+")
    reviewer_email = models.CharField(max_length=254, blank=True)  # kept if the member is later removed
    # A reviewer who is not a member (a manager or application owner from the inventory) reviews through a link.
    guest = models.ForeignKey(
        "GuestReviewer", null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_items",
        db_index=False,
    )
    assignment_note = models.CharField(max_length=300, blank=True)  # e.g. why it went to the fallback reviewer
    # Multi-stage campaigns: the stage the item is pending in (or was finally decided in), its deadline there,
    # and the decisions of the stages it passed ({stage, decision, reason, decided_by, decided_by_role,
    # decided_at}), also as text ("stage 1: approve by a@x (reviewer) at …; ") for exports and the
    # distinct-reviewer rule.
    stage = models.PositiveSmallIntegerField(default=1)
    stage_due_at = models.DateTimeField(null=True, blank=True)
    stage_decisions = models.JSONField(default=list, blank=True)
    stage_path = models.TextField(blank=True)
    # Whose review the current reviewer does by standing delegation (the first delegator of a chain of
    # delegation moves); cleared by any other kind of move.
    delegated_from_email = models.CharField(max_length=254, blank=True, default="", db_default="")
    # Current decision (the history is in DecisionEvent).
    decision = models.CharField(max_length=20, choices=Decision.choices, blank=True, default="")
    decision_reason = models.TextField(blank=True)
    decision_comment = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        "thalian.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    decided_by_email = models.CharField(max_length=254, blank=True)  # "system" for default outcomes
    decided_by_role = models.CharField(max_length=20, blank=True)
    decided_on_behalf_of_email = models.CharField(max_length=254, blank=True, default="", db_default="")  # the delegator, for a delegate
    decided_at = models.DateTimeField(null=True, blank=True)
    signed_off_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=0)
    # An exception decision lasts until this date (inclusive); the day after, the access is re-reviewed.
    exception_expires_on = models.DateField(null=True, blank=True)
    # In an "Exception renewals" campaign: the expired exception this item re-reviews.
    renewal_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="renewals", db_index=False
    )
    # Remediation (filled by the ITSM area).
    ticket_key = models.CharField(max_length=100, blank=True)
    ticket_url = models.CharField(max_length=500, blank=True)
    ticket_status = models.CharField(max_length=20, choices=TicketStatus.choices, blank=True, default="")
    ticket_error = models.TextField(blank=True)
    remediation_status = models.CharField(
        max_length=20, choices=RemediationStatus.choices, blank=True, default=""
    )
    remediation_checked_at = models.DateTimeField(null=True, blank=True)
    # Manual confirmation of removal by the remediation owner (also in the audit log).
    removal_confirmed_by = models.ForeignKey(
        "thalian.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    removal_confirmed_by_email = models.CharField(max_length=254, blank=True)
    removal_confirmed_at = models.DateTimeField(null=True, blank=True)
    removal_comment = models.TextField(blank=True)

    class Meta:
        indexes = [
            # Written by every launch, one entry per item. Keyset pagination of one campaign's items in
            # (column, id) order for each sort, the pending filter, and the filter options (loose index scans
            # of application and department). The reviewer one also answers "which campaigns have items
            # of mine" with one probe per campaign.
            models.Index(fields=["organization", "campaign", "id"], name="item_org_campaign_id"),
            models.Index(fields=["organization", "campaign", "reviewer", "id"], name="item_org_campaign_reviewer"),
            models.Index(fields=["organization", "campaign", "decision", "id"], name="item_org_campaign_decision"),
            models.Index(fields=["organization", "campaign", "application_name", "id"], name="item_org_campaign_app"),
            models.Index(fields=["organization", "campaign", "identity_department", "id"], name="item_org_campaign_dept"),
            # Partial: a launch writes undecided items with no guest and no renewal, so these cost it nothing.
            # Removal verification after each import, and the remediation queue, read revoked items by
            # application and removal state across campaigns.
            models.Index(
                fields=["organization", "application", "remediation_status"],
                condition=models.Q(decision="revoke"),
                name="item_org_revoked_app",
            ),
            # The exceptions list and the daily expiry sweep read exception items by expiry date.
            models.Index(
                fields=["organization", "exception_expires_on", "id"],
                condition=models.Q(decision="exception"),
                name="item_org_exception_expiry",
            ),
            # A guest's portal lists their items; the renewal gatherer skips exceptions already renewed.
            models.Index(
                fields=["organization", "guest", "id"], condition=models.Q(guest__isnull=False), name="item_org_guest"
            ),
            models.Index(
                fields=["organization", "renewal_of"],
                condition=models.Q(renewal_of__isnull=False),
                name="item_org_renewal_of",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.identity_email} / {self.application_name} / {self.role}"


GUEST_REVIEWER_ROLE = "guest_reviewer"


class GuestReviewer(TenantModel):
    """A person from the inventory who is not a member and reviews their items of one campaign through a personal
    sign-in link. Only the link's hash is stored; sending a new link replaces it (the old one stops working)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="guests")
    email = models.CharField(max_length=254)  # lower-cased
    token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    # The link's secret is derived from this nonce and the server key, so a reminder can carry the same link
    # again; a new nonce (a new link) makes the previous one stop working. Empty for links issued before.
    link_nonce = models.CharField(max_length=64, blank=True, default="", db_default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    link_sent_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey("thalian.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # Whom the guest handed their open items to through their link (a member's or another guest's e-mail).
    delegate_email = models.CharField(max_length=254, blank=True, default="", db_default="")

    # What a decision service reads from its actor: a guest has no user account and its own role.
    role = GUEST_REVIEWER_ROLE
    user = None
    user_id = None

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "campaign", "email"], name="guestreviewer_unique_email")
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class Delegation(TenantModel):
    """A member's standing delegation: review assignments to them in [starts_on, ends_on] go to the delegate."""

    member = models.ForeignKey("thalian.Membership", on_delete=models.CASCADE, related_name="+")
    delegate = models.ForeignKey("thalian.Membership", on_delete=models.CASCADE, related_name="+")
    starts_on = models.DateField()
    ends_on = models.DateField(null=True, blank=True)  # open-ended when empty
    move_open_items = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["organization", "member", "starts_on"], name="delegation_org_member")]

    def covers(self, day) -> bool:
        return self.starts_on <= day and (self.ends_on is None or day <= self.ends_on)


class ReassignKind(models.TextChoices):
    REASSIGN = "reassign", "Reassigned"
    ESCALATION = "escalation", "Escalated"
    DELEGATION = "delegation", "Delegated"
    STAGE = "stage", "Next stage"


class ItemReassignment(TenantModel):
    """One hop of an item from one reviewer to another: who moved it, when and why (append-only)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey("ReviewItem", on_delete=models.CASCADE, related_name="reassignments")
    from_email = models.CharField(max_length=254, blank=True)  # empty: the item was unassigned
    to_email = models.CharField(max_length=254)
    by_email = models.CharField(max_length=254)  # "system" for escalations
    reason = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=ReassignKind.choices, default=ReassignKind.REASSIGN)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # An item's history reads its hops in order.
        indexes = [models.Index(fields=["organization", "item", "id"], name="reassignment_org_item_id")]


class DecisionEvent(TenantModel):
    """Append-only decision history, hash-chained per campaign: each row stores the previous row's hash."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="decision_events")
    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="history")
    decision = models.CharField(max_length=20, choices=Decision.choices)
    reason = models.TextField(blank=True)
    comment = models.TextField(blank=True)
    actor = models.ForeignKey("thalian.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_email = models.CharField(max_length=254)  # "system" for default outcomes
    actor_role = models.CharField(max_length=20, blank=True)
    # A delegate's decision: the member (or guest) whose review it was. Hashed only when set.
    on_behalf_of_email = models.CharField(max_length=254, blank=True, default="", db_default="")
    kind = models.CharField(max_length=20, default="single")  # single | bulk | system
    expires_on = models.DateField(null=True, blank=True)  # exception decisions only
    stage = models.PositiveSmallIntegerField(null=True, blank=True)  # multi-stage campaigns only
    bulk_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "campaign", "id"], name="decision_org_campaign_id"),
            models.Index(fields=["organization", "item", "id"], name="decision_org_item_id"),
        ]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise RuntimeError("decision history is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("decision history is append-only")


class CampaignDecisionCount(TenantModel):
    """How many of a campaign's items hold each decision ("" for undecided). On PostgreSQL, statement-level
    triggers on review items keep these rows current (migration 0004), so progress reads a few rows instead of
    counting a million items; elsewhere progress counts the items."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    decision = models.CharField(max_length=20, blank=True)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "decision"], name="decisioncount_unique_campaign_decision")
        ]


class RemediationOwnerSource(models.TextChoices):
    CAMPAIGN = "campaign", "Named for this campaign"
    APPLICATION = "application", "Application's remediation owner"
    OWNER = "owner", "Application owner"
    FALLBACK = "fallback", "Fallback remediation owner"


class CampaignRemediationOwner(TenantModel):
    """Who removes the revoked access of one application in one campaign, resolved when the snapshot is taken
    (the campaign's override, else the application's remediation owner, else its owner, else the fallback)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="remediation_owner_rows")
    application = models.ForeignKey(
        "entitlements.Application", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Items carry the frozen application name, so the queue joins on it (it survives a deleted application).
    application_name = models.CharField(max_length=200)
    owner = models.ForeignKey("thalian.Membership", null=True, on_delete=models.SET_NULL, related_name="+")
    owner_email = models.CharField(max_length=254)
    source = models.CharField(max_length=20, choices=RemediationOwnerSource.choices)
    note = models.CharField(max_length=300, blank=True)  # why the fallback took it

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "campaign", "application_name"], name="remediationowner_unique_app"
            )
        ]
        # The remediation queue of one member: "which campaign applications are mine".
        indexes = [models.Index(fields=["organization", "owner"], name="remediationowner_org_owner")]

    def __str__(self) -> str:
        return f"{self.application_name}: {self.owner_email}"
