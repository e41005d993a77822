"""What the inventory does when other areas publish events (registered in EntitlementsConfig.ready())."""

from __future__ import annotations

from thalian import events
from thalian.models import Organization

from . import services

# Settings that change which access is flagged (dormant, privileged).
FINDING_SETTINGS = frozenset({"dormant_days", "privileged_patterns"})


def refresh_findings(event: events.OrganizationSettingsChanged) -> None:
    """Recompute the stored finding flags with the new thresholds (set-based; running it twice is harmless)."""
    if FINDING_SETTINGS & set(event.fields):
        services.findings_refresh(organization=Organization.objects.get(pk=event.organization_id))


def register() -> None:
    events.register(events.OrganizationSettingsChanged, "entitlements.refresh_findings", refresh_findings)
