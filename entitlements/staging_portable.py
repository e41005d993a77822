"""Inventory loading for the embedded default database (SQLite), with the same functions as `staging`.

PostgreSQL deployments use `staging` (COPY into a temporary table and set-based SQL). The embedded default
has no COPY and no temporary tables that survive across statements in the same way, so this module keeps
the staged rows of the current import in memory (the embedded default is for trying Thalian out and for
small organizations) and writes with batched ORM statements: `bulk_create`, `bulk_update` and
`QuerySet.update`, never one `save()` per row. Validation and counts follow the PostgreSQL module exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.utils.dateparse import parse_datetime

from .csv_import import MAX_ERRORS, ImportValidationError, RowError
from .models import Application, Entitlement, Identity, IdentityStatus
from .staging import FINDING_COLUMNS, MergeCounts, StagedEntitlements

BATCH = 1000
_local = threading.local()


def _stage() -> list[tuple[Any, ...]]:
    return getattr(_local, "rows", [])


def _set_stage(rows: list[tuple[Any, ...]]) -> None:
    _local.rows = rows


def _duplicates(rows: list[tuple], key, column: str, label) -> list[RowError]:
    first: dict[Any, int] = {}
    errors: list[RowError] = []
    for row in rows:
        k = key(row)
        if k in first:
            errors.append(RowError(row[0], column, f"duplicate of row {first[k]} ({label(row)})"))
            if len(errors) >= MAX_ERRORS:
                break
        else:
            first[k] = row[0]
    return errors


def _findings(*, organization, now: datetime, role: str, last_used: datetime | None, status: str) -> dict:
    dormant_before = now - timedelta(days=organization.dormant_days)
    patterns = [p.strip().lower() for p in organization.privileged_patterns or [] if p.strip()]
    lowered = role.lower()
    return {
        "is_dormant": last_used is not None and last_used < dormant_before,
        "is_terminated": status == IdentityStatus.TERMINATED,
        "is_privileged": any(p in lowered for p in patterns),
        "is_orphaned": status == IdentityStatus.UNKNOWN,
        "is_never_used": last_used is None,
    }


def _as_datetime(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_datetime(value)


def prepare_session(organization) -> None:
    """SQLite serializes writers itself; nothing to lock."""
    _set_stage([])


# Entitlements -------------------------------------------------------------------------------------


def stage_entitlements(rows: Iterator[tuple[Any, ...]]) -> StagedEntitlements:
    staged = list(rows)
    _set_stage(staged)
    return StagedEntitlements(rows=len(staged), application_ids=sorted({r[1] for r in staged}))


def entitlement_duplicates() -> list[RowError]:
    return _duplicates(_stage(), lambda r: (r[1], r[2], r[3]), "role", lambda r: f"{r[2]} / {r[3]}")


def merge_entitlements(
    *,
    organization,
    staged: StagedEntitlements,
    now: datetime,
    replace: bool,
    source: str,
    run_id: int,
    keep_last_used: bool = False,
) -> MergeCounts:
    duplicates = entitlement_duplicates()
    if duplicates:
        raise ImportValidationError(duplicates)
    rows = _stage()
    counts = MergeCounts()
    counts.application_ids = list(staged.application_ids)
    emails = sorted({r[2] for r in rows})
    known = dict(Identity.objects.filter(email__in=emails).values_list("email", "id")) if emails else {}
    missing = [e for e in emails if e not in known]
    Identity.objects.bulk_create(
        [
            Identity(organization=organization, email=e, status=IdentityStatus.UNKNOWN, created_at=now, updated_at=now)
            for e in missing
        ],
        batch_size=BATCH,
    )
    counts.identities_created = len(missing)
    if missing:
        known.update(Identity.objects.filter(email__in=missing).values_list("email", "id"))
    statuses = dict(Identity.objects.filter(id__in=known.values()).values_list("id", "status"))
    existing = {
        (e.application_id, e.identity_id, e.role): e
        for e in Entitlement.objects.filter(application_id__in=counts.application_ids)
    }
    seen: set[int] = set()
    to_create, to_update = [], []
    for _row, app_id, email, role, last_used in rows:
        identity_id = known[email]
        new_used = _as_datetime(last_used)
        current = existing.get((app_id, identity_id, role))
        if keep_last_used and new_used is None and current is not None:
            new_used = current.last_used
        flags = _findings(
            organization=organization, now=now, role=role, last_used=new_used, status=statuses[identity_id]
        )
        if current is None:
            to_create.append(
                Entitlement(
                    organization=organization, identity_id=identity_id, application_id=app_id, role=role,
                    last_used=new_used, source=source, first_seen=now, last_seen=now, present=True, **flags,
                )
            )
            continue
        seen.add(current.pk)
        old = (current.last_used, current.present, *(getattr(current, c) for c in FINDING_COLUMNS))
        if old != (new_used, True, *(flags[c] for c in FINDING_COLUMNS)):
            current.last_used, current.source, current.last_seen = new_used, source, now
            current.present, current.removed_at, current.removed_by_run_id = True, None, None
            for column, value in flags.items():
                setattr(current, column, value)
            to_update.append(current)
    if replace and counts.application_ids:
        gone = [e.pk for e in existing.values() if e.present and e.pk not in seen]
        for start in range(0, len(gone), BATCH):
            Entitlement.objects.filter(pk__in=gone[start : start + BATCH]).update(
                present=False, removed_at=now, removed_by_run_id=run_id
            )
        counts.removed = len(gone)
    Entitlement.objects.bulk_update(
        to_update,
        ["last_used", "source", "last_seen", "present", "removed_at", "removed_by_run_id", *FINDING_COLUMNS],
        batch_size=BATCH,
    )
    Entitlement.objects.bulk_create(to_create, batch_size=BATCH)
    counts.updated, counts.created = len(to_update), len(to_create)
    counts.unchanged = len(rows) - counts.created - counts.updated
    return counts


def remove_all_for_applications(*, organization, application_ids: list[int], now: datetime, run_id: int) -> int:
    return Entitlement.objects.filter(application_id__in=application_ids, present=True).update(
        present=False, removed_at=now, removed_by_run_id=run_id
    )


# Identities ---------------------------------------------------------------------------------------


def stage_identities(rows: Iterator[tuple[Any, ...]], *, organization) -> list[RowError]:
    staged = list(rows)
    _set_stage(staged)
    errors = _duplicates(staged, lambda r: r[1], "email", lambda r: r[1])
    in_file = {r[1] for r in staged}
    wanted = {r[4] for r in staged if r[4] and r[4] not in in_file}
    in_inventory = set(Identity.objects.filter(email__in=wanted).values_list("email", flat=True)) if wanted else set()
    for r in staged:
        if r[4] and r[4] not in in_file and r[4] not in in_inventory:
            errors.append(RowError(r[0], "manager_email", f"manager {r[4]!r} is neither in this file nor in the inventory"))
            if len(errors) >= MAX_ERRORS:
                break
    return errors


def merge_identities(*, organization, now: datetime) -> MergeCounts:
    staged = _stage()
    counts = MergeCounts()
    emails = [r[1] for r in staged]
    existing = {i.email: i for i in Identity.objects.filter(email__in=emails).select_related("manager")}
    to_create, to_update = [], []
    for _row, email, name, department, manager_email, title, kind, status in staged:
        current = existing.get(email)
        if current is None:
            to_create.append(
                Identity(
                    organization=organization, email=email, name=name, department=department, title=title or "",
                    kind=kind, status=status, created_at=now, updated_at=now,
                )
            )
            continue
        new_title = current.title if title is None else title
        before = (current.name, current.department, current.kind, current.status, current.title,
                  current.manager.email if current.manager else "")
        if before != (name, department, kind, status, new_title, manager_email):
            counts.updated += 1
        if before[:5] != (name, department, kind, status, new_title):
            current.name, current.department, current.kind, current.status = name, department, kind, status
            current.title, current.updated_at = new_title, now
            to_update.append(current)
    Identity.objects.bulk_update(to_update, ["name", "department", "kind", "status", "title", "updated_at"],
                                 batch_size=BATCH)
    Identity.objects.bulk_create(to_create, batch_size=BATCH)
    counts.created = len(to_create)
    counts.unchanged = len(staged) - counts.created - counts.updated
    # Managers are linked once every identity of the file exists, so order in the file does not matter.
    managers = {r[4] for r in staged if r[4]}
    ids = dict(Identity.objects.filter(email__in=set(emails) | managers).values_list("email", "id"))
    manager_of = {r[1]: r[4] for r in staged}
    relink = []
    for identity in Identity.objects.filter(email__in=emails).only("id", "email", "manager_id"):
        manager_email = manager_of.get(identity.email, "")
        next_manager = ids.get(manager_email) if manager_email else None
        if identity.manager_id != next_manager:
            identity.manager_id, identity.updated_at = next_manager, now
            relink.append(identity)
    Identity.objects.bulk_update(relink, ["manager_id", "updated_at"], batch_size=BATCH)
    return counts


def staged_identity_ids(*, organization) -> list[int]:
    return list(Identity.objects.filter(email__in=[r[1] for r in _stage()]).values_list("id", flat=True))


# Applications -------------------------------------------------------------------------------------


def stage_applications(rows: Iterator[tuple[Any, ...]]) -> list[RowError]:
    staged = list(rows)
    _set_stage(staged)
    return _duplicates(staged, lambda r: r[1].lower(), "name", lambda r: r[1])


def merge_applications(*, organization, now: datetime) -> MergeCounts:
    staged = _stage()
    counts = MergeCounts()
    existing = {a.name.lower(): a for a in Application.objects.all()}
    to_create, to_update = [], []
    for _row, name, category, sanctioned, owner, remediation in staged:
        current = existing.get(name.lower())
        if current is None:
            to_create.append(
                Application(
                    organization=organization, name=name, category=category, sanctioned=sanctioned,
                    owner_email=owner, remediation_owner_email=remediation or "", feed="file",
                    created_at=now, updated_at=now,
                )
            )
            continue
        new_remediation = current.remediation_owner_email if remediation is None else remediation
        after = (name, category, sanctioned, owner, new_remediation)
        if (current.name, current.category, current.sanctioned, current.owner_email,
                current.remediation_owner_email) != after:
            (current.name, current.category, current.sanctioned, current.owner_email,
             current.remediation_owner_email) = after
            current.updated_at = now
            to_update.append(current)
    Application.objects.bulk_update(
        to_update, ["name", "category", "sanctioned", "owner_email", "remediation_owner_email", "updated_at"],
        batch_size=BATCH,
    )
    Application.objects.bulk_create(to_create, batch_size=BATCH)
    counts.created, counts.updated = len(to_create), len(to_update)
    counts.unchanged = len(staged) - counts.created - counts.updated
    return counts


# SCIM users ---------------------------------------------------------------------------------------


def upsert_scim_identities(*, organization, now: datetime, rows: list[tuple], connector_id: int) -> tuple[int, list[int]]:
    key = f"scim:{connector_id}"
    users: dict[str, tuple] = {}
    # Two accounts can share an e-mail; the active one speaks for the person.
    for row in sorted(rows, key=lambda r: (r[1], not r[3], r[0] or 0)):
        users.setdefault(row[1], row)
    existing = {i.email: i for i in Identity.objects.filter(email__in=list(users))}
    changed, to_update, to_create = [], [], []
    for email, (_row, _email, name, active, scim_id) in users.items():
        identity = existing.get(email)
        if identity is None:
            to_create.append(
                Identity(
                    organization=organization, email=email, name=name,
                    status=IdentityStatus.UNKNOWN if active else IdentityStatus.TERMINATED,
                    external_ids={key: scim_id}, created_at=now, updated_at=now,
                )
            )
            continue
        dirty = False
        if not active and identity.status != IdentityStatus.TERMINATED:
            identity.status, identity.updated_at = IdentityStatus.TERMINATED, now
            changed.append(identity.pk)
            dirty = True
        if not identity.name and name:
            identity.name, dirty = name, True
        if identity.external_ids.get(key) != scim_id:
            identity.external_ids = {**identity.external_ids, key: scim_id}
            dirty = True
        if dirty:
            to_update.append(identity)
    Identity.objects.bulk_update(to_update, ["status", "updated_at", "name", "external_ids"], batch_size=BATCH)
    Identity.objects.bulk_create(to_create, batch_size=BATCH)
    return len(to_create), changed


# Findings -----------------------------------------------------------------------------------------


def findings_recompute(
    *, organization, now: datetime, application_ids: list[int] | None = None, identity_ids: list[int] | None = None
) -> int:
    qs = Entitlement.objects.select_related("identity").only(
        "id", "role", "last_used", "identity__status", *FINDING_COLUMNS
    )
    if application_ids is not None:
        qs = qs.filter(application_id__in=application_ids)
    if identity_ids is not None:
        qs = qs.filter(identity_id__in=identity_ids)
    dirty = []
    for ent in qs.iterator(chunk_size=2000):
        flags = _findings(
            organization=organization, now=now, role=ent.role, last_used=ent.last_used, status=ent.identity.status
        )
        if any(getattr(ent, c) != v for c, v in flags.items()):
            for c, v in flags.items():
                setattr(ent, c, v)
            dirty.append(ent)
    Entitlement.objects.bulk_update(dirty, list(FINDING_COLUMNS), batch_size=BATCH)
    return len(dirty)
