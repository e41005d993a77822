"""What the access requests area does when lower areas publish events (registered in AccessRequestsConfig.ready())."""

from __future__ import annotations

from thalian import events

from . import services


def verify_requests(event: events.InventoryChanged) -> None:
    """The next import or sync shows whether an approved change was made (and ended access removed)."""
    services.access_requests_verify(organization_id=event.organization_id, application_ids=event.application_ids)


def register() -> None:
    events.register(events.InventoryChanged, "access_requests.verify", verify_requests)
