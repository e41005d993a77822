"""Domain events: what happened, said by the app that made it happen, to whichever apps care.

A producer calls ``publish(SomeEvent(...))`` inside the transaction that makes the change: the event is an
``OutboxEvent`` row that commits or rolls back with that change. After commit the dispatcher is asked to run
(``thalian.outbox``); if the broker cannot be reached then, the periodic sweep finds the row later. Receivers
register in their app's ``AppConfig.ready()`` with ``register(EventClass, "app.what_it_does", function)``; a
receiver takes the event and must be idempotent (it may see the same event again after a crash).

Events carry ids and plain values only (JSON), never model instances. The list, with producers and consumers,
is in docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar, TypeVar

from django.db import transaction

logger = logging.getLogger(__name__)

EVENT_TYPES: dict[str, type[Event]] = {}
_RECEIVERS: dict[str, dict[str, Callable[[Any], None]]] = {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    name: ClassVar[str] = ""
    organization_id: int

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.name in EVENT_TYPES:
                raise RuntimeError(f"two events are named {cls.name!r}")
            EVENT_TYPES[cls.name] = cls

    def payload(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("organization_id")
        return data

    @classmethod
    def from_row(cls, *, organization_id: int, payload: dict) -> Event:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(organization_id=organization_id, **{k: v for k, v in payload.items() if k in known})


# Campaigns --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecisionsRecorded(Event):
    """Revoke decisions were recorded on these items (removal must follow)."""

    name: ClassVar[str] = "campaigns.decisions_recorded"
    campaign_id: str
    decision: str
    item_ids: list[int]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ItemDecisionsWithdrawn(Event):
    """Items that were revoked got another decision: the removal asked for is no longer wanted."""

    name: ClassVar[str] = "campaigns.item_decisions_withdrawn"
    campaign_id: str
    decision: str
    item_ids: list[int]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReviewerSignedOff(Event):
    name: ClassVar[str] = "campaigns.reviewer_signed_off"
    campaign_id: str
    reviewer_id: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class CampaignLaunched(Event):
    """The snapshot is taken and the campaign is active."""

    name: ClassVar[str] = "campaigns.launched"
    campaign_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class CampaignCancelled(Event):
    name: ClassVar[str] = "campaigns.cancelled"
    campaign_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class CampaignRemediating(Event):
    """The review ended (every sign-off in, or closed) with revoked access still to be proven removed."""

    name: ClassVar[str] = "campaigns.remediating"
    campaign_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class CampaignCompleted(Event):
    """The campaign is over: reviewed with nothing left to remove, or every removal proven."""

    name: ClassVar[str] = "campaigns.completed"
    campaign_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class ItemsReassigned(Event):
    name: ClassVar[str] = "campaigns.items_reassigned"
    campaign_id: str
    reviewer_id: int
    count: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class ItemsDelegated(Event):
    """Items moved to a delegate because of a standing delegation (at launch or on a move). The delegate is a
    member (``reviewer_id``) or a guest reviewer of the campaign (``guest_id``); the other id is 0."""

    name: ClassVar[str] = "campaigns.items_delegated"
    campaign_id: str
    reviewer_id: int
    guest_id: int = 0
    delegator_email: str
    count: int
    move_id: str  # one per move: the delegate hears once about each


# Access requests --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccessApprovalRequested(Event):
    """A stage of an access request is waiting for this approver (a member, or a guest by e-mail)."""

    name: ClassVar[str] = "access_requests.approval_requested"
    request_id: str
    approval_id: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccessRequestDecided(Event):
    """An access request left `pending`: "approved", "denied", "expired" (nobody decided in time) or
    "cancelled" (by its requester)."""

    name: ClassVar[str] = "access_requests.decided"
    request_id: str
    outcome: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccessRequestVerified(Event):
    """An import or sync showed the requested change made: "fulfilled" (granted or removed as asked) or
    "revoked" (temporary access was removed after its end)."""

    name: ClassVar[str] = "access_requests.verified"
    request_id: str
    status: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class TemporaryAccessEnded(Event):
    """The end date of a temporary grant came: the access must be removed."""

    name: ClassVar[str] = "access_requests.temporary_access_ended"
    request_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccessRequestTicketFailed(Event):
    """The ticket of an access request could not be opened (after its last attempt, or permanently)."""

    name: ClassVar[str] = "itsm.access_request_ticket_failed"
    request_id: str
    purpose: str  # "fulfil" or "expiry"
    error: str


# Inventory and platform -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class InventoryChanged(Event):
    """An inventory import or a SCIM sync finished and changed these applications' grants."""

    name: ClassVar[str] = "entitlements.inventory_changed"
    application_ids: list[int]
    source: str  # "import" or "scim"


@dataclasses.dataclass(frozen=True, kw_only=True)
class OrganizationSettingsChanged(Event):
    name: ClassVar[str] = "thalian.organization_settings_changed"
    fields: list[str]


# Remediation ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class TicketFailed(Event):
    """A remediation ticket could not be opened (after its last attempt, or permanently)."""

    name: ClassVar[str] = "itsm.ticket_failed"
    ticket_id: int
    campaign_id: str
    application: str
    identity: str
    error: str
    url: str
    attempt: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class RemediationOutcome(Event):
    """Remediation of a campaign finished: "verified", "partial" or "failed"."""

    name: ClassVar[str] = "itsm.remediation_outcome"
    campaign_id: str
    outcome: str
    # [label, number] pairs: their order is the order people read them in (a JSON object would be reordered
    # by PostgreSQL's jsonb).
    counts: list[list]


# Registry ---------------------------------------------------------------------------------------------------

E = TypeVar("E", bound=Event)


def register(event_type: type[E], receiver_name: str, function: Callable[[E], None]) -> None:
    """Called from an AppConfig.ready(): ``function(event)`` runs for every ``event_type`` published."""
    receivers = _RECEIVERS.setdefault(event_type.name, {})
    if receivers.get(receiver_name, function) is not function:
        raise RuntimeError(f"receiver {receiver_name!r} is already registered for {event_type.name}")
    receivers[receiver_name] = function


def receivers_for(event_name: str) -> dict[str, Callable[[Any], None]]:
    return dict(_RECEIVERS.get(event_name, {}))


def all_receivers() -> dict[str, list[str]]:
    return {name: list(receivers) for name, receivers in sorted(_RECEIVERS.items())}


def publish(*events: Event) -> list[int]:
    """Write the events to the outbox in the caller's transaction; the dispatcher runs after commit.

    Returns the outbox row ids."""
    from .models import OutboxEvent

    if not events:
        return []
    for event in events:
        if not event.name:
            raise TypeError(f"{type(event).__name__} is not a concrete event")
    rows = OutboxEvent.unscoped.bulk_create(
        [OutboxEvent(organization_id=e.organization_id, name=e.name, payload=e.payload()) for e in events]
    )
    ids = [row.pk for row in rows]
    if ids[0] is None:  # backends that return no ids from bulk_create: the sweep still finds the rows
        return []
    transaction.on_commit(partial(kick, ids), robust=True)
    return ids


def kick(event_ids: list[int]) -> None:
    """Ask a worker to dispatch these events now. Never raises and never waits on a broker that is down:
    the rows are durable and the periodic sweep dispatches whatever this could not hand over."""
    from .broker import send_quickly
    from .tasks import outbox_dispatch

    try:
        send_quickly(outbox_dispatch, [(event_ids,)])
    except Exception:  # noqa: BLE001 - eager mode runs the dispatcher here; it records its own failures
        logger.exception("dispatching outbox events %s failed; the sweep will retry them", event_ids)
