"""Writes of the entitlement inventory: file imports, SCIM syncs, findings, connectors."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from thalian import broker, claims, netguard
from thalian.audit import audit_record
from thalian.events import InventoryChanged, publish
from thalian.models import Organization, User
from thalian.tenancy import ScopeError, assert_same_organization, scope, scopes_disabled

from . import staging as pg_staging
from . import staging_portable
from .csv_import import (
    DEFAULT_MAX_BYTES,
    ENTITLEMENTS,
    IDENTITIES,
    KINDS,
    CsvReader,
    ImportValidationError,
    RowError,
)
from .models import (
    Application,
    FeedKind,
    ScimConnector,
    SyncRun,
    SyncRunApplication,
    SyncRunStatus,
)
from .scim import ScimClient, ScimError

log = logging.getLogger(__name__)

MODES = ("merge", "replace")
PROGRESS_EVERY = 25_000
PROGRESS_TTL = 6 * 3600
SCIM_MAX_ATTEMPTS = 3


def _max_bytes() -> int:
    return getattr(settings, "IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES)


def _progress_key(run_id: int) -> str:
    return f"inventory-import-progress:{run_id}"


def import_progress(run_id: int) -> int | None:
    """Rows validated so far by a running import (kept outside the import transaction)."""
    return cache.get(_progress_key(run_id))


def _counting(rows: Iterator[tuple[Any, ...]], report: Callable[[int], None] | None) -> Iterator[tuple[Any, ...]]:
    if report is None:
        yield from rows
        return
    for n, row in enumerate(rows, 1):
        if n % PROGRESS_EVERY == 0:
            report(n)
        yield row



class _Staging:
    """Loads go through PostgreSQL COPY and set-based SQL (`staging`); on the embedded default database
    (SQLite) through batched ORM writes (`staging_portable`), with the same validation and counts."""

    def __getattr__(self, name: str):
        from django.db import connection

        return getattr(pg_staging if connection.vendor == "postgresql" else staging_portable, name)


staging = _Staging()


def _check_kind_and_mode(kind: str, mode: str) -> None:
    errors = []
    if kind not in KINDS:
        errors.append(RowError(0, "kind", f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}"))
    if mode not in MODES:
        errors.append(RowError(0, "mode", f"unknown mode {mode!r}; expected merge or replace"))
    elif mode == "replace" and kind != ENTITLEMENTS:
        errors.append(RowError(0, "mode", "replace applies to entitlements files only; use merge"))
    if errors:
        raise ImportValidationError(errors)


def _application_names() -> dict[str, int]:
    return dict(Application.objects.values_list("name", "id"))


def _after_inventory_change(*, organization: Organization, application_ids: list[int], source: str) -> None:
    """In the import's transaction: tell other areas which applications changed (removal verification)."""
    if application_ids:
        publish(InventoryChanged(organization_id=organization.pk, application_ids=list(application_ids), source=source))


def _finish_run(*, run: SyncRun, counts: pg_staging.MergeCounts, now) -> None:
    run.created, run.updated, run.removed, run.unchanged = (
        counts.created,
        counts.updated,
        counts.removed,
        counts.unchanged,
    )
    run.identities_created = counts.identities_created
    run.status = SyncRunStatus.SUCCEEDED
    run.finished_at = timezone.now()
    run.error = ""
    run.errors = []
    run.upload_path = ""
    run.save()
    if counts.application_ids:
        SyncRunApplication.objects.bulk_create(
            [
                SyncRunApplication(organization_id=run.organization_id, sync_run=run, application_id=app_id)
                for app_id in counts.application_ids
            ],
            ignore_conflicts=True,
        )
        Application.objects.filter(pk__in=counts.application_ids).update(
            last_synced_at=run.finished_at, last_sync_run=run, updated_at=now
        )


def inventory_import(
    *,
    organization: Organization,
    kind: str,
    stream: IO[bytes],
    mode: str = "merge",
    file_name: str = "",
    size: int | None = None,
    actor: User | None = None,
    run: SyncRun | None = None,
) -> SyncRun:
    """Import one CSV file, all or nothing.

    Raises ImportValidationError listing the problems (first 100, by row and column); then
    nothing at all has been written. On success returns the SyncRun with the counts.
    """
    _check_kind_and_mode(kind, mode)
    if run is not None and run.organization_id != organization.pk:
        raise ScopeError("the run belongs to another organization")
    applications = _application_names() if kind == ENTITLEMENTS else None
    reader = CsvReader(kind=kind, stream=stream, max_bytes=_max_bytes(), applications=applications, size=size)
    report = None
    if run is not None:
        run_id = run.pk

        def report(n: int) -> None:
            cache.set(_progress_key(run_id), n, PROGRESS_TTL)

    now = timezone.now()
    with transaction.atomic():
        staging.prepare_session(organization)
        if run is None:
            run = SyncRun.objects.create(
                organization=organization,
                source=FeedKind.FILE,
                kind=kind,
                mode=mode,
                file_name=file_name[:255],
                status=SyncRunStatus.RUNNING,
                started_at=now,
                triggered_by=actor,
            )
        rows = _counting(reader.rows(), report)
        if kind == ENTITLEMENTS:
            staged = staging.stage_entitlements(rows)
            # The merge finds repeated rows itself; listed here too when the file has other problems.
            set_errors = staging.entitlement_duplicates() if reader.errors else []
        elif kind == IDENTITIES:
            set_errors = staging.stage_identities(rows, organization=organization)
        else:
            set_errors = staging.stage_applications(rows)
        if reader.errors or set_errors:
            raise ImportValidationError(reader.errors + set_errors, reader.error_total + len(set_errors))
        if reader.rows_read == 0:
            raise ImportValidationError([RowError(2, "", "file has a header but no rows")])
        run.total_rows = run.processed_rows = reader.rows_read

        if kind == ENTITLEMENTS:
            counts = staging.merge_entitlements(
                organization=organization,
                staged=staged,
                now=now,
                replace=mode == "replace",
                source=FeedKind.FILE,
                run_id=run.pk,
            )
        elif kind == IDENTITIES:
            counts = staging.merge_identities(organization=organization, now=now)
            # Status changes (terminated, no longer unknown) move the findings of their access.
            staging.findings_recompute(
                organization=organization, now=now, identity_ids=staging.staged_identity_ids(organization=organization)
            )
        else:
            counts = staging.merge_applications(organization=organization, now=now)
        _finish_run(run=run, counts=counts, now=now)
        audit_record(
            action="inventory.import",
            organization=organization,
            actor=actor,
            system=actor is None,
            target=run,
            details={
                "kind": kind,
                "mode": mode,
                "file": file_name,
                "created": run.created,
                "updated": run.updated,
                "removed": run.removed,
                "unchanged": run.unchanged,
            },
        )
        if kind == ENTITLEMENTS:
            _after_inventory_change(organization=organization, application_ids=counts.application_ids, source="import")
    return run


def _count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            lines += chunk.count(b"\n")
    return lines


def _upload_dir() -> Path:
    path = Path(settings.MEDIA_ROOT) / "imports"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _private_file(path: Path) -> IO[bytes]:
    """A new file only the server's own user can read: uploads hold identity data."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def import_uploads_sweep(*, older_than: dt.timedelta = dt.timedelta(hours=1)) -> int:
    """Delete parked uploads no queued or running import needs (the run ended, or the upload never became a
    run because the process stopped in between). Files younger than `older_than` may still be being written
    or waiting for their run's transaction, so they stay. Platform code: looks across organizations."""
    directory = _upload_dir()
    cutoff = time.time() - older_than.total_seconds()
    candidates = {str(path): path for path in directory.glob("*.csv") if path.stat().st_mtime < cutoff}
    if not candidates:
        return 0
    with scopes_disabled():
        needed = set(
            SyncRun.objects.filter(
                upload_path__in=list(candidates), status__in=[SyncRunStatus.QUEUED, SyncRunStatus.RUNNING]
            ).values_list("upload_path", flat=True)
        )
    removed = 0
    for name, path in candidates.items():
        if name not in needed:
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("deleted %d import upload(s) no run needs", removed)
    return removed


@dataclass
class ImportSubmission:
    run: SyncRun
    queued: bool


def inventory_import_submit(
    *,
    organization: Organization,
    kind: str,
    upload: IO[bytes],
    mode: str = "merge",
    file_name: str = "",
    size: int | None = None,
    actor: User | None = None,
) -> ImportSubmission:
    """Import small files at once; park big ones on disk and queue them for a worker.

    Raises ImportValidationError for a file imported at once, or for problems found before
    queueing (kind, mode, size, encoding of the header).
    """
    _check_kind_and_mode(kind, mode)
    max_bytes = _max_bytes()
    if size is not None and size > max_bytes:
        CsvReader(kind=kind, stream=upload, max_bytes=max_bytes, size=size, applications={})
    path = _upload_dir() / f"{uuid.uuid4().hex}.csv"
    written = 0
    with _private_file(path) as out:
        while chunk := upload.read(1024 * 1024):
            written += len(chunk)
            if written > max_bytes:
                break
            out.write(chunk)
    try:
        if written > max_bytes or _count_lines(path) <= settings.IMPORT_ASYNC_THRESHOLD_ROWS:
            with path.open("rb") as handle:
                run = inventory_import(
                    organization=organization,
                    kind=kind,
                    stream=handle,
                    mode=mode,
                    file_name=file_name,
                    size=written if written > max_bytes else None,
                    actor=actor,
                )
            path.unlink(missing_ok=True)
            return ImportSubmission(run=run, queued=False)
        # The header is checked now so an obviously wrong file is refused at once.
        with path.open("rb") as handle:
            CsvReader(kind=kind, stream=handle, max_bytes=max_bytes, applications={})
    except BaseException:
        path.unlink(missing_ok=True)
        raise


    with transaction.atomic():
        run = SyncRun.objects.create(
            organization=organization,
            source=FeedKind.FILE,
            kind=kind,
            mode=mode,
            file_name=file_name[:255],
            status=SyncRunStatus.QUEUED,
            total_rows=max(_count_lines(path) - 1, 0),
            triggered_by=actor,
            upload_path=str(path),
        )
        _enqueue_import(run)
    return ImportSubmission(run=run, queued=True)


def _enqueue_import(run: SyncRun) -> None:
    from .tasks import inventory_import_task

    org_id, run_id = run.organization_id, run.pk
    # One quick broker attempt; with the broker down the queued run is sent by the stale-run sweep.
    transaction.on_commit(lambda: broker.send_quickly(inventory_import_task, [(org_id, run_id)]))


# Name of the advisory lock a worker holds while it runs an import or sync (thalian/claims.py).
RUN_CLAIM = "inventory-run"
IN_PROGRESS = (SyncRunStatus.QUEUED, SyncRunStatus.RUNNING)


def _abandoned(run: SyncRun) -> bool:
    """Queued or running, last sent or claimed longer ago than the claim threshold, and no worker holds it."""
    return (
        run.status in IN_PROGRESS
        and run.started_at < timezone.now() - claims.stale_after()
        and not claims.claim_alive(RUN_CLAIM, run.pk)
    )


def _resend_import(run: SyncRun) -> bool:
    """Send an abandoned file import to a worker again (attempt + 1); False if its state moved meanwhile."""
    resent = SyncRun.objects.filter(pk=run.pk, status=run.status, started_at=run.started_at).update(
        status=SyncRunStatus.QUEUED, attempt=run.attempt + 1, started_at=timezone.now(), error=""
    )
    if resent == 1:
        _enqueue_import(run)
    return resent == 1


def _end_run(run: SyncRun, message: str) -> None:
    upload = run.upload_path
    _fail_run(run, message=message)
    if upload:
        Path(upload).unlink(missing_ok=True)


def sync_runs_sweep() -> dict[str, int]:
    """Hand back file imports and SCIM syncs nobody works on any more (a lost message, a killed worker): a file
    import is sent again until CLAIM_MAX_ATTEMPTS, then failed with its upload deleted; a SCIM sync is failed
    (the next scheduled or manual sync repeats it). Platform code: spans organizations."""
    cutoff = timezone.now() - claims.stale_after()
    outcome = {"resent": 0, "failed": 0}
    stale = SyncRun.unscoped.filter(status__in=IN_PROGRESS, started_at__lt=cutoff).order_by("pk")
    for run in stale:
        if claims.claim_alive(RUN_CLAIM, run.pk):
            continue
        with scope(organization_id=run.organization_id), transaction.atomic():
            if run.source == FeedKind.FILE and run.attempt < claims.max_attempts() and run.upload_path:
                outcome["resent"] += _resend_import(run)
                continue
            what = "import" if run.source == FeedKind.FILE else "sync"
            _end_run(run, f"The {what} stopped without finishing after {run.attempt} attempt(s) (the worker "
                          f"stopped or the task was lost); nothing was imported. "
                          + ("Upload the file again." if what == "import" else "Press Sync now to run it again."))
            outcome["failed"] += 1
    return outcome


class RunActionError(ValueError):
    """A retry or cancel that does not apply to the run in its current state."""


def sync_run_cancel(*, run: SyncRun, actor: User, request=None) -> SyncRun:
    """Give up on a queued import or sync, or one whose worker is gone; the upload is deleted. A run a live
    worker is carrying out cannot be cancelled (it finishes or fails within its time limit)."""
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().get(pk=run.pk)
        if run.status not in IN_PROGRESS:
            raise RunActionError(f"the run is {run.get_status_display().lower()}; only a queued or running run can be cancelled")
        if run.status == SyncRunStatus.RUNNING and claims.claim_alive(RUN_CLAIM, run.pk):
            raise RunActionError("a worker is carrying out this run right now; it cannot be cancelled midway")
        _end_run(run, f"Cancelled by {actor.email}; nothing was imported.")
        audit_record(action="inventory_run_cancelled", organization_id=run.organization_id, actor=actor,
                     request=request, target=run, details={"run": run.pk, "kind": run.kind})
    run.refresh_from_db()
    return run


def sync_run_retry(*, run: SyncRun, actor: User, request=None) -> SyncRun:
    """Send an import nobody works on any more to a worker now, instead of waiting for the sweep."""
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().get(pk=run.pk)
        if run.source != FeedKind.FILE or not run.upload_path:
            raise RunActionError("only a file import whose upload is still kept can be retried; upload the file again")
        if run.status not in IN_PROGRESS or claims.claim_alive(RUN_CLAIM, run.pk):
            raise RunActionError("only a queued or interrupted import can be retried")
        _resend_import(run)
        audit_record(action="inventory_run_retried", organization_id=run.organization_id, actor=actor,
                     request=request, target=run, details={"run": run.pk, "attempt": run.attempt + 1})
    run.refresh_from_db()
    return run


def inventory_import_queued_run(*, organization: Organization, run_id: int) -> SyncRun | None:
    """Worker side of a queued import. Safe to run twice: only the call that claims the run works."""
    claimed = SyncRun.objects.filter(pk=run_id, status=SyncRunStatus.QUEUED).update(
        status=SyncRunStatus.RUNNING, started_at=timezone.now()
    )
    if claimed != 1:
        return None
    run = SyncRun.objects.get(pk=run_id)
    # Kept aside: finishing or failing the run empties run.upload_path, and the file goes either way.
    upload_path = run.upload_path
    path = Path(upload_path)
    try:
        with path.open("rb") as handle:
            return inventory_import(
                organization=organization,
                kind=run.kind,
                stream=handle,
                mode=run.mode,
                file_name=run.file_name,
                actor=run.triggered_by,
                run=run,
            )
    except ImportValidationError as exc:
        _fail_run(run, message=f"{exc.total} problem(s) found; nothing was imported.", errors=exc.errors)
        return run
    except FileNotFoundError:
        _fail_run(run, message="The uploaded file is no longer available; upload it again.")
        return run
    except SoftTimeLimitExceeded:
        _fail_run(run, message="The import took longer than the time limit and was stopped; nothing was imported.")
        raise
    except Exception as exc:
        log.exception("inventory import run %s failed", run_id)
        _fail_run(run, message=f"The import failed unexpectedly ({exc.__class__.__name__}); nothing was imported.")
        raise
    finally:
        if upload_path:
            path.unlink(missing_ok=True)
        cache.delete(_progress_key(run_id))


def _fail_run(run: SyncRun, *, message: str, errors: list[RowError] | None = None) -> None:
    run.refresh_from_db()
    run.status = SyncRunStatus.FAILED
    run.finished_at = timezone.now()
    run.error = message
    run.errors = [e.as_dict() for e in errors or []]
    run.upload_path = ""
    run.save(update_fields=["status", "finished_at", "error", "errors", "upload_path"])


# ---------------------------------------------------------------------------------------------
# Findings


def findings_refresh(
    *,
    organization: Organization,
    application_ids: list[int] | None = None,
    identity_ids: list[int] | None = None,
) -> int:
    """Recompute finding flags (after a settings change, or daily as access turns dormant)."""
    with transaction.atomic():
        return staging.findings_recompute(
            organization=organization,
            now=timezone.now(),
            application_ids=application_ids,
            identity_ids=identity_ids,
        )


# ---------------------------------------------------------------------------------------------
# SCIM connectors


class ConnectorError(ValueError):
    """A connector setting is refused; the message names the field and the reason."""


def _check_base_url(base_url: str) -> str:
    base_url = base_url.strip().rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        raise ConnectorError("Base URL must start with https://")
    if base_url.startswith("http://") and not settings.ALLOW_INSECURE_HTTP_INTEGRATIONS:
        raise ConnectorError("Base URL must use https:// (plain http is refused in production)")
    try:
        netguard.check_url(base_url)
    except netguard.AddressNotAllowed as exc:
        raise ConnectorError(f"Base URL: {exc}") from exc
    return base_url


def scim_connector_save(
    *,
    application: Application,
    base_url: str,
    token: str = "",
    enabled: bool = True,
    sync_interval_hours: int = 24,
    actor: User | None = None,
) -> ScimConnector:
    """Create or update the SCIM connector of an application. An empty token keeps the stored one."""
    base_url = _check_base_url(base_url)
    if sync_interval_hours < 1 or sync_interval_hours > 24 * 30:
        raise ConnectorError("Sync interval must be between 1 hour and 30 days")
    token = token.strip()
    now = timezone.now()
    with transaction.atomic():
        connector = ScimConnector.objects.filter(application=application).first()
        if connector is None:
            if not token:
                raise ConnectorError("Bearer token is required")
            connector = ScimConnector(organization_id=application.organization_id, application=application)
        assert_same_organization(connector, application)
        connector.base_url = base_url
        if token:
            connector.token = token
        connector.enabled = enabled
        connector.sync_interval_hours = sync_interval_hours
        connector.updated_at = now
        connector.save()
        Application.objects.filter(pk=application.pk).update(feed=FeedKind.SCIM, updated_at=now)
        audit_record(
            action="inventory.scim_connector.save",
            organization_id=application.organization_id,
            actor=actor,
            system=actor is None,
            target=application,
            details={"base_url": base_url, "enabled": enabled, "token_changed": bool(token)},
        )
    return connector


def scim_connector_delete(*, connector: ScimConnector, actor: User | None = None) -> None:
    with transaction.atomic():
        application = connector.application
        connector.delete()
        Application.objects.filter(pk=application.pk).update(feed=FeedKind.FILE, updated_at=timezone.now())
        audit_record(
            action="inventory.scim_connector.delete",
            organization_id=application.organization_id,
            actor=actor,
            system=actor is None,
            target=application,
        )


def scim_sync_request(*, connector: ScimConnector, actor: User | None = None, attempt: int = 1, countdown: int = 0) -> SyncRun:
    """Queue a sync of the connector; the worker claims the run."""
    from .tasks import scim_sync_task

    with transaction.atomic():
        run = SyncRun.objects.create(
            organization_id=connector.organization_id,
            source=FeedKind.SCIM,
            kind="scim",
            mode="replace",
            file_name=connector.base_url[:255],
            status=SyncRunStatus.QUEUED,
            triggered_by=actor,
            connector=connector,
            attempt=attempt,
        )
        SyncRunApplication.objects.create(
            organization_id=connector.organization_id, sync_run=run, application_id=connector.application_id
        )
        ScimConnector.objects.filter(pk=connector.pk).update(last_attempt_at=timezone.now())
        org_id, run_id = connector.organization_id, run.pk
        transaction.on_commit(lambda: scim_sync_task.apply_async((org_id, run_id), countdown=countdown))
    return run


def _scim_rows(client: ScimClient, application_id: int) -> tuple[list[tuple], list[tuple], int]:
    """Pull everything first: nothing is written unless the whole directory was read."""
    users = {}
    skipped = 0
    for user in client.iter_users():
        if not user.email:
            skipped += 1
            continue
        users[user.id] = user
    identity_rows = [(n, u.email, u.name, u.active, u.id) for n, u in enumerate(users.values(), 1)]
    seen: set[tuple[str, str]] = set()
    grants = []
    for group in client.iter_groups():
        for member_id in group.member_ids:
            user = users.get(member_id)
            if user is None:
                continue
            key = (user.email, group.display_name)
            if key not in seen:
                seen.add(key)
                grants.append((len(grants) + 1, application_id, user.email, group.display_name[:255], None))
    return identity_rows, grants, skipped


def scim_sync_run(*, organization: Organization, run_id: int) -> SyncRun | None:
    """Worker side of a SCIM sync. Returns None when another worker already took the run.

    Raises ScimError after recording it on the run, so the task can decide to retry.
    """
    claimed = SyncRun.objects.filter(pk=run_id, status=SyncRunStatus.QUEUED).update(
        status=SyncRunStatus.RUNNING, started_at=timezone.now()
    )
    if claimed != 1:
        return None
    run = SyncRun.objects.select_related("connector").get(pk=run_id)
    connector = run.connector
    if connector is None:
        _fail_run(run, message="The SCIM connector was deleted before the sync ran.")
        return run
    try:
        client = ScimClient(base_url=connector.base_url, token=connector.token)
        identity_rows, grants, skipped = _scim_rows(client, connector.application_id)
    except ScimError as exc:
        _fail_run(run, message=exc.message)
        raise
    try:
        return _scim_write(organization=organization, run=run, connector=connector, identity_rows=identity_rows,
                           grants=grants, skipped=skipped)
    except Exception as exc:
        log.exception("SCIM sync run %s failed", run_id)
        _fail_run(run, message=f"The sync failed unexpectedly ({exc.__class__.__name__}); nothing was changed.")
        raise


def _scim_write(*, organization, run, connector, identity_rows, grants, skipped) -> SyncRun:
    now = timezone.now()
    with transaction.atomic():
        staging.prepare_session(organization)
        created_identities, status_changed = staging.upsert_scim_identities(
            organization=organization, now=now, rows=identity_rows, connector_id=connector.pk
        )
        if grants:
            staged = staging.stage_entitlements(iter(grants))
            counts = staging.merge_entitlements(
                organization=organization,
                staged=staged,
                now=now,
                replace=True,
                source=FeedKind.SCIM,
                run_id=run.pk,
                keep_last_used=True,
            )
        else:
            counts = staging.MergeCounts(
                removed=staging.remove_all_for_applications(
                    organization=organization, application_ids=[connector.application_id], now=now, run_id=run.pk
                )
            )
        counts.application_ids = [connector.application_id]
        counts.identities_created += created_identities
        if status_changed:
            # An account turned inactive changes the terminated finding of its access elsewhere too.
            staging.findings_recompute(organization=organization, now=now, identity_ids=status_changed)
        run.total_rows = run.processed_rows = len(grants)
        _finish_run(run=run, counts=counts, now=now)
        if skipped:
            run.error = f"{skipped} SCIM user(s) without an e-mail address were skipped."
            run.save(update_fields=["error"])
        audit_record(
            action="inventory.scim_sync",
            organization=organization,
            system=True,
            target=run,
            details={"created": run.created, "updated": run.updated, "removed": run.removed},
        )
        _after_inventory_change(organization=organization, application_ids=[connector.application_id], source="scim")
    return run


def scim_sync_due(*, now=None) -> list[int]:
    """Queue the connectors whose interval has passed; called by the beat schedule for every organization."""
    from thalian.tenancy import scope, scopes_disabled

    now = now or timezone.now()
    queued = []
    with scopes_disabled():
        connectors = list(ScimConnector.objects.filter(enabled=True).only("pk", "organization_id"))
    for connector in connectors:
        with scope(organization_id=connector.organization_id):
            with transaction.atomic():
                # The row lock makes two overlapping beats queue one run, not two.
                locked = ScimConnector.objects.select_for_update(skip_locked=True).filter(pk=connector.pk).first()
                if locked is None:
                    continue
                due = locked.last_attempt_at is None or (
                    now - locked.last_attempt_at
                ).total_seconds() >= locked.sync_interval_hours * 3600
                if due:
                    queued.append(scim_sync_request(connector=locked).pk)
    return queued
