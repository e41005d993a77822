"""Ticketing connections and the remediation tickets opened through them."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from thalian.crypto import EncryptedTextField
from thalian.tenancy import TenantModel

from .clients import KINDS, TIMEOUT_SECONDS, TicketClient, build_client

_CLIENTS: dict[tuple, TicketClient] = {}


class ConnectionKind(models.TextChoices):
    JIRA = "jira", "Jira"
    SERVICENOW = "servicenow", "ServiceNow"
    FRESHSERVICE = "freshservice", "Freshservice"
    ZENDESK = "zendesk", "Zendesk"


class ItsmConnection(TenantModel):
    """One ticketing system of an organization. Secrets (API token, password, API key) are stored encrypted
    and are never rendered or returned once saved."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=20, choices=ConnectionKind.choices)
    name = models.CharField(max_length=100)
    base_url = models.CharField(max_length=300)
    # Non-secret values: the login name (email / username) and the kind's settings (project_key, table, ...).
    config = models.JSONField(default=dict, blank=True)
    # JSON object of the secret fields, encrypted with ENCRYPTION_KEY.
    secrets = EncryptedTextField(blank=True, default="")
    is_default = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        "thalian.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    last_tested_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_message = models.CharField(max_length=500, blank=True)
    applications = models.ManyToManyField(
        "entitlements.Application", through="ApplicationRoute", related_name="itsm_connections", blank=True
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="itsmconnection_unique_name"),
            # At most one default per organization; the database settles races between two saves.
            models.UniqueConstraint(
                fields=["organization"],
                condition=models.Q(is_default=True),
                name="itsmconnection_one_default",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def spec(self):
        return KINDS[self.kind]

    def secret_values(self) -> dict[str, Any]:
        return json.loads(self.secrets) if self.secrets else {}

    def secret_fields_set(self) -> list[str]:
        values = self.secret_values()
        return [name for name in self.spec.secret_fields if values.get(name)]

    def client(self) -> TicketClient:
        verify: bool | str = getattr(settings, "ITSM_CA_BUNDLE", "") or True
        timeout = float(getattr(settings, "ITSM_TIMEOUT_SECONDS", TIMEOUT_SECONDS))
        # A worker reuses one client (and its keep-alive session) per connection version; saving the
        # connection changes updated_at and so builds a new one.
        key = (self.pk, self.updated_at, self.base_url, verify, timeout)
        client = _CLIENTS.get(key)
        if client is None:
            client = build_client(
                self.kind,
                base_url=self.base_url,
                values={**self.config, **self.secret_values()},
                verify=verify,
                timeout=timeout,
            )
            if len(_CLIENTS) >= 64:
                _CLIENTS.clear()
            _CLIENTS[key] = client
        return client


class ApplicationRoute(TenantModel):
    """An application whose tickets go to a connection other than the organization's default."""

    application = models.ForeignKey("entitlements.Application", on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(ItsmConnection, on_delete=models.CASCADE, related_name="routes")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "application"], name="applicationroute_unique_app"
            )
        ]


class TicketState(models.TextChoices):
    PENDING = "pending", "Pending"
    OPENING = "opening", "Opening"  # claimed by a worker, remote call in flight
    OPEN = "open", "Open"
    IN_PROGRESS = "in_progress", "In progress"
    RESOLVED = "resolved", "Resolved"
    FAILED = "failed", "Failed"


# What the review item (table, API, CSV) shows for each ticket state.
ITEM_TICKET_STATUS = {
    TicketState.PENDING: "pending",
    TicketState.OPENING: "pending",
    TicketState.OPEN: "open",
    TicketState.IN_PROGRESS: "in_progress",
    TicketState.RESOLVED: "resolved",
    TicketState.FAILED: "failed",
}
REMOTE_STATES = (TicketState.OPEN, TicketState.IN_PROGRESS, TicketState.RESOLVED)


class RemoteTicket(TenantModel):
    """What every ticket Thalian opens in an ITSM keeps: its remote identity and state, and the claim, attempt
    count and backoff of the worker that opens it."""

    state = models.CharField(max_length=20, choices=TicketState.choices, default=TicketState.PENDING)
    key = models.CharField(max_length=100, blank=True)
    url = models.CharField(max_length=500, blank=True)
    remote_id = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # An earlier create may have reached the vendor (it timed out after sending, the connection dropped, or
    # the worker died holding the claim): the next attempt looks the ticket's reference up before creating.
    lookup_before_create = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    opened_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class Ticket(RemoteTicket):
    """The remediation ticket of one revoked review item. The one-to-one column makes a second ticket for the
    same item impossible; workers claim a pending ticket with a conditional update before calling out."""

    item = models.OneToOneField("campaigns.ReviewItem", on_delete=models.CASCADE, related_name="itsm_ticket")
    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(
        ItsmConnection, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets"
    )
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    status_checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # Campaign page counts and the failed list; the sweeper and status sync scan by state.
            models.Index(fields=["organization", "campaign", "state"], name="ticket_org_campaign_state"),
            models.Index(fields=["state", "next_attempt_at"], name="ticket_state_next_attempt"),
        ]

    def __str__(self) -> str:
        return self.key or f"ticket for item {self.item_id}"


class CommentState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class TicketComment(TenantModel):
    """A note to add to an opened ticket (e.g. the revoke was withdrawn). Sent once, claimed like tickets:
    pending -> sending by a conditional update; a claim a dead worker left is handed back by the sweep."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="comments")
    body = models.TextField()
    state = models.CharField(max_length=20, choices=CommentState.choices, default=CommentState.PENDING)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # An earlier attempt may have reached the vendor (no answer came back, or the worker died holding the
    # claim): the next attempt looks for a comment carrying this comment's reference before posting.
    lookup_before_send = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    @property
    def reference(self) -> str:
        return f"thalian-comment-{self.pk}"

    @property
    def text(self) -> str:
        """What is posted: the body and the reference a later attempt looks for."""
        return f"{self.body}\n\n(Thalian reference: {self.reference})"

    class Meta:
        indexes = [models.Index(fields=["state", "created_at"], name="ticketcomment_state")]


class RequestTicketPurpose(models.TextChoices):
    FULFIL = "fulfil", "Make the requested change"
    EXPIRY = "expiry", "Remove temporary access at its end"


class RequestTicket(RemoteTicket):
    """The ticket of one approved access request: the requested grant or revoke (``fulfil``) and, for a
    temporary grant, its removal at the end (``expiry``). One per request and purpose (unique); opened,
    retried and looked up by reference exactly like remediation tickets."""

    access_request = models.ForeignKey("access_requests.AccessRequest", on_delete=models.CASCADE,
                                       related_name="tickets")
    purpose = models.CharField(max_length=10, choices=RequestTicketPurpose.choices)
    connection = models.ForeignKey(
        ItsmConnection, null=True, blank=True, on_delete=models.SET_NULL, related_name="request_tickets"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "access_request", "purpose"],
                                    name="requestticket_one_per_purpose"),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="requestticket_state_next")]

    def __str__(self) -> str:
        return self.key or f"ticket for access request {self.access_request_id}"

    @property
    def reference(self) -> str:
        return f"thalian-request-{self.access_request_id}-{self.purpose}"
