"""Evidence packages as stored records: create or reuse, stream, request a background build, cancel, retry,
the stale-claim sweep and the build worker."""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
import time
from collections.abc import Iterator

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Campaign, ReviewItem
from thalian import broker, claims, tenancy
from thalian.audit import audit_record
from thalian.models import User

from .contents import PackageState, _iso_utc_sql, _record_result, package_stream
from .items_csv import ExportError, _id_ranges, export_file_stem, scoped_stream
from .models import EvidencePackage, EvidencePackageStatus


def package_file_name(campaign: Campaign, created_at: dt.datetime) -> str:
    return f"{export_file_stem(campaign)}-evidence-{created_at.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}.zip"


def evidence_state_digest(campaign: Campaign) -> str:
    """A digest of what an evidence package proves about the campaign: its status and decision chain head, and
    every item's sign-off, ticket and remediation state. The same digest means the same package can be reused."""
    head = Campaign.objects.filter(pk=campaign.pk).values_list("status", "chain_head").first() or ("", "")
    digest = hashlib.sha256(f"{head[0]}|{head[1]}\n".encode())
    items = ReviewItem.objects.filter(campaign=campaign).order_by("id")
    if connections[items.db].vendor == "postgresql":
        # The same lines, written by the database a range of ids at a time: a million items in Python
        # (a datetime and a string per row) would take longer than the package they decide about.
        signed = _iso_utc_sql("signed_off_at", "+00:00")
        sql = (
            f"SELECT string_agg(id || '|' || COALESCE({signed}, '') || '|' || ticket_key || '|' || ticket_status "
            f"|| '|' || remediation_status || E'\\n', '' ORDER BY id) FROM {ReviewItem._meta.db_table} "
            "WHERE organization_id = %s AND campaign_id = %s AND id > %s AND id <= %s"
        )
        with connections[items.db].cursor() as cursor:
            for window in _id_ranges(items):
                cursor.execute(sql, [campaign.organization_id, campaign.pk, window.lower, window.upper])
                text = cursor.fetchone()[0] or ""
                window.rows = text.count("\n")
                digest.update(text.encode())
        return digest.hexdigest()
    rows = items.values_list("id", "signed_off_at", "ticket_key", "ticket_status", "remediation_status")
    for pk, signed_off_at, key, ticket_status, remediation in rows.iterator(chunk_size=5000):
        signed = signed_off_at.isoformat() if signed_off_at else ""
        digest.update(f"{pk}|{signed}|{key}|{ticket_status}|{remediation}\n".encode())
    return digest.hexdigest()


def evidence_package_reusable(*, campaign: Campaign, state_digest: str) -> EvidencePackage | None:
    """The package already kept for this campaign state, if any (ready, or still being built)."""
    return (
        EvidencePackage.objects.filter(campaign=campaign, state_digest=state_digest, stored=True)
        .filter(
            Q(status=EvidencePackageStatus.READY) & ~Q(file="")
            | Q(status__in=[EvidencePackageStatus.QUEUED, EvidencePackageStatus.BUILDING])
        )
        .order_by("-created_at")
        .first()
    )


def evidence_package_create(
    *, campaign: Campaign, actor: User, stored: bool, request=None, state_digest: str = ""
) -> EvidencePackage:
    now = timezone.now()
    package = EvidencePackage.objects.create(
        organization_id=campaign.organization_id,
        campaign=campaign,
        stored=stored,
        state_digest=state_digest,
        status=EvidencePackageStatus.QUEUED if stored else EvidencePackageStatus.BUILDING,
        attempts=1 if stored else 0,
        claimed_at=now,
        file_name=package_file_name(campaign, now),
        generated_by=actor,
        generated_by_email=actor.email,
        created_at=now,
    )
    audit_record(
        action="evidence_package_requested" if stored else "evidence_package_downloaded",
        organization_id=campaign.organization_id,
        actor=actor,
        request=request,
        target=campaign,
        details={"package_id": str(package.pk), "stored": stored},
    )
    return package


def _store_package_file(package: EvidencePackage, handle) -> str:
    handle.seek(0)
    name = package.file.field.generate_filename(package, package.file_name)
    if default_storage.exists(name):
        default_storage.delete(name)
    return default_storage.save(name, File(handle))


def evidence_package_stream(*, package: EvidencePackage, campaign: Campaign) -> Iterator[bytes]:
    """Stream a small package straight to the client, keeping a copy, and record its hashes once the last
    byte is out. The kept copy is what a later request for the same campaign state gets, byte for byte."""
    chunks, result = package_stream(package=package, campaign=campaign)
    organization_id = campaign.organization_id

    def body() -> Iterator[bytes]:
        completed = False
        with tempfile.TemporaryFile(dir=settings.DATA_DIR) as handle:
            try:
                for chunk in chunks:
                    handle.write(chunk)
                    yield chunk
                completed = True
            finally:
                with tenancy.scope(organization_id=organization_id):
                    if completed and result.complete:
                        # A slow download the sweep already gave up on still counts once its last byte is out.
                        _record_result(
                            package,
                            result,
                            from_statuses=(EvidencePackageStatus.BUILDING, EvidencePackageStatus.FAILED),
                            stored=True,
                            file=_store_package_file(package, handle),
                        )
                    else:
                        EvidencePackage.objects.filter(pk=package.pk).update(
                            status=EvidencePackageStatus.FAILED, error="The download was interrupted."
                        )

    return scoped_stream(organization_id, body())


def needs_background_build(campaign: Campaign) -> bool:
    count = ReviewItem.objects.filter(campaign=campaign).count()
    return count > settings.EVIDENCE_ASYNC_THRESHOLD_ITEMS


# Name of the advisory lock a worker holds while it builds a package (thalian/claims.py).
BUILD_CLAIM = "evidence-build"
IN_PROGRESS = (EvidencePackageStatus.QUEUED, EvidencePackageStatus.BUILDING)


def _is_abandoned(package: EvidencePackage) -> bool:
    """A queued or building package nobody works on: its last send or claim is stale and no worker holds it."""
    claimed_at = package.claimed_at or package.created_at
    return claimed_at < timezone.now() - claims.stale_after() and not claims.claim_alive(BUILD_CLAIM, package.pk)


def _enqueue_build(package: EvidencePackage) -> None:
    from .tasks import build_evidence_package

    organization_id, package_id = package.organization_id, str(package.pk)
    # One quick broker attempt; with the broker down the queued package is sent by the stale-package sweep.
    transaction.on_commit(lambda: broker.send_quickly(build_evidence_package, [(organization_id, package_id)]))


def _fail_package(package_id, *, error: str, statuses=IN_PROGRESS) -> int:
    return EvidencePackage.objects.filter(pk=package_id, status__in=statuses).update(
        status=EvidencePackageStatus.FAILED, error=error[:2000], claimed_at=None
    )


def evidence_package_request(*, campaign: Campaign, actor: User, request=None) -> EvidencePackage:
    """Queue a background build, or return the package of this campaign state (ready, queued or building),
    or the one already queued or building for this campaign. One in progress that is abandoned (stale, no
    live worker) is failed and replaced, so a stuck build never blocks an export."""
    digest = evidence_state_digest(campaign)
    existing = evidence_package_reusable(campaign=campaign, state_digest=digest) or (
        EvidencePackage.objects.filter(campaign=campaign, stored=True, status__in=IN_PROGRESS)
        .order_by("-created_at")
        .first()
    )
    if existing is not None:
        if existing.status not in IN_PROGRESS or not _is_abandoned(existing):
            return existing
        _fail_package(existing.pk, error="The build stopped without finishing; a new package was requested.")
    package = evidence_package_create(
        campaign=campaign, actor=actor, stored=True, request=request, state_digest=digest
    )
    _enqueue_build(package)
    return package


def evidence_package_cancel(*, package: EvidencePackage, actor: User, request=None) -> EvidencePackage:
    """Stop waiting for a queued or building package: it is marked failed at once; a worker still building
    it discards its file when it finishes."""
    if _fail_package(package.pk, error=f"Cancelled by {actor.email}.") != 1:
        raise ExportError("only a queued or building package can be cancelled")
    audit_record(
        action="evidence_package_cancelled",
        organization_id=package.organization_id,
        actor=actor,
        request=request,
        target=package.campaign,
        details={"package_id": str(package.pk)},
    )
    package.refresh_from_db()
    return package


def evidence_package_retry(*, package: EvidencePackage, actor: User, request=None) -> EvidencePackage:
    """Request a new package for the campaign of a failed one (the failed one stays listed as it was)."""
    if package.status != EvidencePackageStatus.FAILED:
        raise ExportError("only a failed package can be retried")
    if not package.stored:
        raise ExportError("a streamed download cannot be retried here; export the ZIP again")
    return evidence_package_request(campaign=package.campaign, actor=actor, request=request)


def evidence_packages_sweep() -> dict[str, int]:
    """Re-send abandoned background builds (a lost message, a killed worker) and fail them visibly after
    CLAIM_MAX_ATTEMPTS sends; streamed downloads whose web process died are marked failed. Platform code:
    spans organizations."""
    cutoff = timezone.now() - claims.stale_after()
    outcome = {"resent": 0, "failed": 0}
    interrupted = EvidencePackage.unscoped.filter(
        stored=False, status=EvidencePackageStatus.BUILDING, created_at__lt=cutoff
    ).update(status=EvidencePackageStatus.FAILED, error="The download was interrupted.")
    outcome["failed"] += interrupted
    stale = EvidencePackage.unscoped.filter(stored=True, status__in=IN_PROGRESS, claimed_at__lt=cutoff)
    for package in stale.only("pk", "organization_id", "status", "attempts", "claimed_at", "created_at"):
        if claims.claim_alive(BUILD_CLAIM, package.pk):
            continue
        with tenancy.scope(organization_id=package.organization_id), transaction.atomic():
            if package.attempts >= claims.max_attempts():
                outcome["failed"] += _fail_package(
                    package.pk,
                    error=f"The build did not finish after {package.attempts} attempt(s) (the worker stopped or "
                    "the task was lost). Press Retry to request a new package.",
                )
                continue
            resent = EvidencePackage.objects.filter(
                pk=package.pk, status=package.status, claimed_at=package.claimed_at
            ).update(
                status=EvidencePackageStatus.QUEUED,
                attempts=package.attempts + 1,
                claimed_at=timezone.now(),
                progress=0,
                progress_label=f"Waiting for a worker (attempt {package.attempts + 1})",
            )
            if resent == 1:
                _enqueue_build(package)
                outcome["resent"] += 1
    return outcome


def evidence_package_build(*, package_id: str) -> EvidencePackage | None:
    """Build a queued package into storage. Claims it first, so a second run of the same task does nothing;
    the caller holds the claim's lock (BUILD_CLAIM) while this runs."""
    claimed = EvidencePackage.objects.filter(pk=package_id, status=EvidencePackageStatus.QUEUED).update(
        status=EvidencePackageStatus.BUILDING, progress_label="Starting", claimed_at=timezone.now()
    )
    if claimed != 1:
        return None
    package = EvidencePackage.objects.select_related("campaign", "organization").get(pk=package_id)
    campaign = package.campaign
    total_rows = max(1, 2 * ReviewItem.objects.filter(campaign=campaign).count())
    state = PackageState()

    reported = [0.0]

    def report(label: str) -> None:
        # Twice a second at most: a package has a file per application, and there may be thousands.
        if time.monotonic() - reported[0] >= 0.5:
            reported[0] = time.monotonic()
            EvidencePackage.objects.filter(pk=package_id).update(progress_label=f"Writing {label}"[:200])

    shown = [0]

    def on_rows(count: int) -> None:
        # Item rows dominate the work: items.csv and the per-application files hold each item once.
        state.rows_written += count
        percent = min(99, state.rows_written * 100 // total_rows)
        if percent != shown[0]:
            shown[0] = percent
            EvidencePackage.objects.filter(pk=package_id).update(progress=percent)

    chunks, result = package_stream(
        package=package, campaign=campaign, state=state, on_rows=on_rows, progress=report
    )
    try:
        with tempfile.TemporaryFile(dir=settings.DATA_DIR) as handle:
            for chunk in chunks:
                handle.write(chunk)
            saved = _store_package_file(package, handle)
        if not _record_result(package, result, file=saved):
            default_storage.delete(saved)  # cancelled while building
    except SoftTimeLimitExceeded:
        # Stop the ZIP stream first: a COPY it left open holds the connection the update needs.
        chunks.close()
        _fail_package(
            package_id,
            error="The build took longer than the time limit and was stopped. Ask the operator to raise "
            "TASK_LONG_SOFT_TIME_LIMIT, then press Retry.",
        )
        raise
    except Exception as exc:
        chunks.close()
        _fail_package(package_id, error=f"{type(exc).__name__}: {exc}")
        raise
    package.refresh_from_db()
    return package
