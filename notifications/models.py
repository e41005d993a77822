"""Notification settings per organization, channel choices per member, and the delivery log."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from thalian.crypto import EncryptedTextField
from thalian.tenancy import TenantModel

from .channels import EMAIL, SLACK, TEAMS


class Channel(models.TextChoices):
    EMAIL = EMAIL, "E-mail"
    SLACK = SLACK, "Slack"
    TEAMS = TEAMS, "Microsoft Teams"


class Event(models.TextChoices):
    REVIEW_ASSIGNED = "review_assigned", "Review assigned"
    REVIEW_DELEGATED = "review_delegated", "Review delegated to you"
    REMINDER = "reminder", "Reminder"
    CAMPAIGN_REMINDER = "campaign_reminder", "Campaign reminder"
    OVERDUE = "overdue", "Review overdue"
    ESCALATED = "escalated", "Review escalated"
    CAMPAIGN_OVERDUE = "campaign_overdue", "Campaign overdue"
    CAMPAIGN_CANCELLED = "campaign_cancelled", "Campaign cancelled"
    CAMPAIGN_COMPLETED = "campaign_completed", "Campaign completed"
    TICKET_FAILED = "ticket_failed", "Ticket failed"
    REMEDIATION_OUTCOME = "remediation_outcome", "Remediation outcome"
    EXCEPTION_EXPIRING = "exception_expiring", "Exception expiring"
    REMOVAL_NEEDED = "removal_needed", "Removal needed"
    REMOVAL_REMINDER = "removal_reminder", "Removal reminder"
    REMOVAL_ESCALATED = "removal_escalated", "Removal escalated"
    DECISION_QUALITY_FLAGGED = "decision_quality_flagged", "Decision quality flagged"
    ACCESS_APPROVAL_NEEDED = "access_approval_needed", "Access request to approve"
    ACCESS_APPROVAL_REMINDER = "access_approval_reminder", "Access request reminder"
    ACCESS_APPROVAL_ESCALATED = "access_approval_escalated", "Access request escalated"
    ACCESS_REQUEST_DECIDED = "access_request_decided", "Access request decided"
    ACCESS_REQUEST_VERIFIED = "access_request_verified", "Access request fulfilled"
    ACCESS_ENDING = "access_ending", "Temporary access ending"
    ACCESS_ENDED = "access_ended", "Temporary access ended"
    ACCESS_REQUEST_TICKET_FAILED = "access_request_ticket_failed", "Access request ticket failed"
    TEST = "test", "Test message"


# Members cannot switch e-mail off for these: they are the notices an auditor expects every reviewer got.
MANDATORY_EMAIL_EVENTS = frozenset({Event.REVIEW_ASSIGNED, Event.OVERDUE, Event.ESCALATED})
# Access request notices carry their own text (built by notifications.access_requests).
ACCESS_REQUEST_EVENTS = frozenset({
    Event.ACCESS_APPROVAL_NEEDED, Event.ACCESS_APPROVAL_REMINDER, Event.ACCESS_APPROVAL_ESCALATED,
    Event.ACCESS_REQUEST_DECIDED, Event.ACCESS_REQUEST_VERIFIED, Event.ACCESS_ENDING, Event.ACCESS_ENDED,
    Event.ACCESS_REQUEST_TICKET_FAILED,
})


class NotificationSettings(TenantModel):
    """Channel configuration and reminder defaults of one organization."""

    slack_bot_token = EncryptedTextField(blank=True)
    slack_channel_id = models.CharField(max_length=40, blank=True)
    teams_webhook_url = EncryptedTextField(blank=True)
    reminder_every_days = models.PositiveSmallIntegerField(default=3)  # 0: no periodic reminders
    reminder_days_before_due = models.PositiveSmallIntegerField(default=2)  # 0: none before the due date
    escalate_after_days = models.PositiveSmallIntegerField(default=3)  # days overdue; 0: never escalate
    escalation_reassign = models.BooleanField(default=False)
    fallback_reviewer = models.ForeignKey(
        "thalian.Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization"], name="notificationsettings_one_per_org"),
        ]

    @property
    def slack_configured(self) -> bool:
        return bool(self.slack_bot_token)

    @property
    def teams_configured(self) -> bool:
        return bool(self.teams_webhook_url)


class CampaignNotificationPolicy(TenantModel):
    """Per-campaign overrides of the organization's reminder defaults; empty fields use the default."""

    campaign = models.OneToOneField(
        "campaigns.Campaign", on_delete=models.CASCADE, related_name="notification_policy"
    )
    reminder_every_days = models.PositiveSmallIntegerField(null=True, blank=True)
    reminder_days_before_due = models.PositiveSmallIntegerField(null=True, blank=True)
    escalate_after_days = models.PositiveSmallIntegerField(null=True, blank=True)
    escalation_reassign = models.BooleanField(null=True, blank=True)


class NotificationPreference(TenantModel):
    """Which channels one member wants. E-mail stays on for MANDATORY_EMAIL_EVENTS whatever is chosen."""

    membership = models.OneToOneField(
        "thalian.Membership", on_delete=models.CASCADE, related_name="notification_preference"
    )
    email = models.BooleanField(default=True)
    slack = models.BooleanField(default=True)
    teams = models.BooleanField(default=False)

    def wants(self, channel: str) -> bool:
        return bool(getattr(self, channel))


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    RETRYING = "retrying", "Retrying"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Notification(TenantModel):
    """One message to one recipient over one channel. The row is created (and claimed by its unique
    dedupe key) before anything is sent, so repeated beat ticks, retries and parallel workers send it once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    campaign = models.ForeignKey(
        "campaigns.Campaign", null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    event = models.CharField(max_length=30, choices=Event.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    recipient_membership = models.ForeignKey(
        "thalian.Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A guest reviewer (not a member) of the campaign: e-mail only, the message carries their personal link.
    recipient_guest = models.ForeignKey(
        "campaigns.GuestReviewer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # E-mail address of the person, or a description of the channel for campaign-wide notices.
    recipient = models.CharField(max_length=254)
    dedupe_key = models.CharField(max_length=300)
    title = models.CharField(max_length=300)
    body = models.TextField()
    action_url = models.CharField(max_length=500)
    action_label = models.CharField(max_length=80)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    provider_reference = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # event + subject + recipient + channel + period, built by services.dedupe_key().
            models.UniqueConstraint(fields=["organization", "dedupe_key"], name="notification_dedupe"),
        ]
        indexes = [
            models.Index(
                fields=["organization", "campaign", "-created_at"], name="notification_org_campaign"
            ),
            models.Index(fields=["organization", "status", "-created_at"], name="notification_org_status"),
            # The retry sweep looks only at rows waiting for another attempt.
            models.Index(
                fields=["next_attempt_at"],
                name="notification_retry_due",
                condition=models.Q(status="retrying"),
            ),
            # ... and at rows still queued whose enqueue may have been lost (few at any time).
            models.Index(
                fields=["created_at"], name="notification_queued", condition=models.Q(status="queued")
            ),
            # ... and at claims whose worker may have died mid-send (a handful at most).
            models.Index(
                fields=["last_attempt_at"], name="notification_sending", condition=models.Q(status="sending")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_event_display()} to {self.recipient} by {self.get_channel_display()}"
