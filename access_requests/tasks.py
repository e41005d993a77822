"""Celery tasks: each takes ids, calls one service, and is safe to run twice (the services claim their rows)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="access_requests.sweep")
def sweep() -> int:
    """Periodic: one task per organization with open requests."""
    organization_ids = services.organizations_with_open_requests()
    for organization_id in organization_ids:
        sweep_organization.delay(organization_id)
    return len(organization_ids)


@shared_task(name="access_requests.sweep_organization")
def sweep_organization(organization_id: int) -> dict[str, int]:
    """Undecided requests past their deadline expire; temporary grants past their end are to be removed."""
    return {
        "expired": services.access_requests_expire_due(organization_id=organization_id),
        "access_ended": services.temporary_access_end_due(organization_id=organization_id),
    }
