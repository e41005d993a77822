"""Background work of the inventory: queued imports, SCIM syncs, daily findings refresh."""

from __future__ import annotations

import logging

from celery import shared_task

from thalian import claims
from thalian.models import Organization
from thalian.tenancy import scope, scopes_disabled

from . import services
from .models import SyncRun
from .scim import ScimError

log = logging.getLogger(__name__)


@shared_task(acks_late=True)
def inventory_import_task(organization_id: int, sync_run_id: int) -> None:
    organization = Organization.objects.get(pk=organization_id)
    with scope(organization), claims.claim_held(services.RUN_CLAIM, sync_run_id):
        services.inventory_import_queued_run(organization=organization, run_id=sync_run_id)


@shared_task(acks_late=True)
def scim_sync_task(organization_id: int, sync_run_id: int) -> None:
    organization = Organization.objects.get(pk=organization_id)
    with scope(organization), claims.claim_held(services.RUN_CLAIM, sync_run_id):
        try:
            services.scim_sync_run(organization=organization, run_id=sync_run_id)
        except ScimError as exc:
            run = SyncRun.objects.select_related("connector").get(pk=sync_run_id)
            if not exc.retryable or run.connector is None or run.attempt >= services.SCIM_MAX_ATTEMPTS:
                log.warning("SCIM sync run %s failed for good: %s", sync_run_id, exc)
                return
            # Exponential backoff; each attempt is its own run so every failure stays visible.
            countdown = 60 * 2 ** (run.attempt - 1)
            services.scim_sync_request(connector=run.connector, attempt=run.attempt + 1, countdown=countdown)
            SyncRun.objects.filter(pk=sync_run_id).update(
                error=f"{run.error} Retrying in {countdown} seconds (attempt {run.attempt + 1} of "
                f"{services.SCIM_MAX_ATTEMPTS})."
            )


@shared_task
def import_uploads_sweep_task() -> int:
    """Hourly: uploads of imports that ended (or never started) do not stay on disk."""
    return services.import_uploads_sweep()


@shared_task
def sync_runs_sweep_task() -> dict[str, int]:
    """Periodic: re-send or fail imports and syncs nobody works on any more."""
    return services.sync_runs_sweep()


@shared_task
def scim_sync_due_task() -> int:
    return len(services.scim_sync_due())


@shared_task
def findings_refresh_all_task() -> int:
    """Daily: access crosses the dormant threshold as time passes, without any import."""
    changed = 0
    with scopes_disabled():
        organizations = list(Organization.objects.all())
    for organization in organizations:
        with scope(organization):
            changed += services.findings_refresh(organization=organization)
    return changed


@shared_task
def findings_refresh_task(organization_id: int) -> int:
    """After the dormant days or privileged patterns of an organization change."""
    organization = Organization.objects.get(pk=organization_id)
    with scope(organization):
        return services.findings_refresh(organization=organization)
