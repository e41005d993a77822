"""Campaign launch: the freshness check, the launch worker (snapshot of the scope into review items), its progress,
its stale-claim sweep and its failure."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from entitlements import staging
from entitlements.models import Application, Entitlement, Identity
from thalian import broker, claims
from thalian.audit import audit_record
from thalian.events import CampaignLaunched, publish
from thalian.models import Membership, Organization, User
from thalian.permissions import Perm, has_perm
from thalian.tenancy import assert_same_organization, scope

from .delegation import delegations_apply_at_launch
from .guests import guest_link_expiry, guest_links_send_all, guests_create_for_snapshot
from .models import (
    Campaign,
    CampaignDecisionCount,
    CampaignStage,
    CampaignStatus,
    Decision,
    GuestReviewer,
    ReviewerStrategy,
    ReviewItem,
)
from .remediation import remediation_owners_assign
from .selectors import (
    REVIEWER_ROLES,
    campaign_stale_applications,
    entitlement_id_bounds,
    entitlements_in_scope,
    scope_application_ids,
    scope_identity_kinds,
)
from .services import LAUNCHABLE_STATUSES, CampaignError, FreshnessError, _actor_user, _require
from .stages import stages_start_at_launch

logger = logging.getLogger(__name__)


def campaign_launch(
    *,
    campaign: Campaign,
    actor: Membership | None,
    freshness_override_reason: str = "",
    request=None,
) -> Campaign:
    """Check freshness, mark the campaign `launching` and enqueue the snapshot.

    `actor` None is a scheduled launch by the system. Stale or never-loaded applications block the launch
    unless a member allowed to override gives a reason, which is recorded on the campaign and audited."""
    if actor is not None:
        _require(actor, Perm.MANAGE_CAMPAIGNS)
        assert_same_organization(campaign, actor)
    reason = (freshness_override_reason or "").strip()
    if reason and actor is not None and not has_perm(actor.role, Perm.OVERRIDE_FRESHNESS):
        raise CampaignError(
            f"only an admin may override the data freshness check (your role: {actor.get_role_display()})",
            field="freshness_override_reason",
        )
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status not in LAUNCHABLE_STATUSES:
            raise CampaignError(
                f"the campaign is {campaign.get_status_display().lower()}; only draft or scheduled campaigns can "
                "be launched",
                field="status",
            )
        if campaign.fallback_reviewer is None:
            raise CampaignError("a fallback reviewer is required before launch", field="fallback_reviewer")
        organization = campaign.organization
        app_ids = scope_application_ids(organization=organization, scope=campaign.scope)
        if not entitlements_in_scope(organization=organization, scope=campaign.scope,
                                     application_ids=app_ids).exists():
            raise CampaignError("no entitlements match this campaign's scope: nothing to review", field="scope")
        stale = campaign_stale_applications(campaign=campaign)
        if stale and not reason:
            names = ", ".join(s.name for s in stale[:20]) + (f" and {len(stale) - 20} more" if len(stale) > 20 else "")
            raise FreshnessError(
                f"data of {len(stale)} application(s) is older than {organization.freshness_days} days or was never "
                f"loaded: {names}. Refresh the data, or an admin may launch anyway with a recorded reason.",
                stale=stale,
            )
        now = timezone.now()
        campaign.status = CampaignStatus.LAUNCHING
        campaign.launched_at = now
        campaign.launched_by = _actor_user(actor)
        campaign.launch_progress = 0
        campaign.launch_attempts = 1
        campaign.launch_error = ""
        campaign.stale_applications = [s.as_dict() for s in stale]
        if stale:
            campaign.freshness_override_reason = reason
            campaign.freshness_override_by = _actor_user(actor)
        campaign.updated_at = now
        campaign.save()
        if stale:
            audit_record(
                action="campaign_freshness_overridden",
                organization_id=campaign.organization_id,
                actor=_actor_user(actor),
                request=request,
                target=campaign,
                system=actor is None,
                details={"reason": reason, "stale_applications": campaign.stale_applications},
            )
        _launch_progress_set(campaign.pk, 0)
        _enqueue_snapshot(campaign)
    return campaign


def _enqueue_snapshot(campaign: Campaign) -> None:
    from .tasks import campaign_snapshot_task

    organization_id, campaign_id = campaign.organization_id, str(campaign.pk)
    # One quick broker attempt: with the broker down the launch still answers, and the stale-launch sweep
    # sends the snapshot once the broker is back.
    transaction.on_commit(
        lambda: broker.send_quickly(
            campaign_snapshot_task, [{"organization_id": organization_id, "campaign_id": campaign_id}]
        )
    )


# Name of the advisory lock a worker holds while it takes a campaign's snapshot (thalian/claims.py).
SNAPSHOT_CLAIM = "campaign-snapshot"


def campaign_launches_sweep() -> dict[str, int]:
    """Hand back launches whose snapshot was abandoned (the message was lost, or the worker died mid-way):
    re-send the snapshot, or after the last attempt put the campaign back to draft with the reason on its page.
    A live snapshot is never touched: its worker holds the claim's lock and the campaign row. Platform code:
    spans organizations."""
    cutoff = timezone.now() - claims.stale_after()
    outcome = {"resent": 0, "failed": 0}
    candidates = list(
        Campaign.unscoped.filter(status=CampaignStatus.LAUNCHING, updated_at__lt=cutoff).values_list(
            "pk", "organization_id"
        )
    )
    for campaign_id, organization_id in candidates:
        if claims.claim_alive(SNAPSHOT_CLAIM, campaign_id):
            continue
        with scope(organization_id=organization_id), transaction.atomic():
            campaign = (
                Campaign.objects.select_for_update(skip_locked=True)
                .filter(pk=campaign_id, status=CampaignStatus.LAUNCHING, updated_at__lt=cutoff)
                .first()
            )
            if campaign is None:
                continue
            if campaign.launch_attempts >= claims.max_attempts():
                outcome["failed"] += 1
                campaign_launch_failed(
                    campaign_id=campaign_id,
                    error=f"The snapshot did not finish after {campaign.launch_attempts} attempt(s) (the worker "
                    "stopped or the task was lost). Launch again, or cancel the campaign.",
                )
                continue
            campaign.launch_attempts += 1
            campaign.updated_at = timezone.now()
            campaign.save(update_fields=["launch_attempts", "updated_at"])
            audit_record(
                action="campaign_launch_resumed",
                organization_id=organization_id,
                target=campaign,
                system=True,
                details={"attempt": campaign.launch_attempts},
            )
            _enqueue_snapshot(campaign)
            outcome["resent"] += 1
    return outcome


def launch_progress_key(campaign_id) -> str:
    return f"campaign-launch-progress:{campaign_id}"


def _launch_progress_set(campaign_id, percent: int, *, timeout: int = 24 * 3600) -> None:
    """Progress is a courtesy to the page that polls it: a cache that is down (Redis restarting) must never
    abort the launch or its snapshot transaction."""
    try:
        cache.set(launch_progress_key(campaign_id), percent, timeout=timeout)
    except Exception:  # noqa: BLE001 - any cache failure; the campaign row still has launch_progress
        logger.warning("could not record launch progress of campaign %s", campaign_id, exc_info=True)


def campaign_launch_progress(*, campaign: Campaign) -> int:
    """Percent of the snapshot taken. The snapshot commits as one transaction, so the figure travels
    through the cache, which other connections can read while it runs."""
    if campaign.status != CampaignStatus.LAUNCHING:
        return 100 if campaign.snapshot_at else campaign.launch_progress
    try:
        value = cache.get(launch_progress_key(campaign.pk))
    except Exception:  # noqa: BLE001 - cache down: fall back to the figure on the row
        value = None
    return int(value) if value is not None else campaign.launch_progress


# Span of entitlement ids per INSERT ... SELECT: keeps progress moving on large inventories while each
# statement still covers tens of thousands of rows.
SNAPSHOT_CHUNK_IDS = 100_000


@dataclass
class _Sql:
    text: str
    params: dict
    # INSERT of the campaign's guest reviewers over the same rows (empty when the campaign has none), run
    # before `text` so each item is written with its guest at once rather than updated afterwards.
    guests_text: str = ""


def _in_list(params: dict, prefix: str, values: list) -> str:
    names = []
    for n, value in enumerate(values):
        params[f"{prefix}{n}"] = value
        names.append(f"%({prefix}{n})s")
    return "(" + ", ".join(names) + ")"


def _named_reviewers_table(params: dict, prefix: str, rows: list[tuple[int, int, int, str]]) -> str:
    """A derived table (app_id, slot, n, email) of named reviewers, portable across databases."""
    selects = []
    for n, (app_id, slot, count, email) in enumerate(rows):
        params.update({f"{prefix}a{n}": app_id, f"{prefix}s{n}": slot, f"{prefix}n{n}": count, f"{prefix}e{n}": email})
        selects.append(
            f"SELECT CAST(%({prefix}a{n})s AS bigint) AS app_id, CAST(%({prefix}s{n})s AS bigint) AS slot, "
            f"CAST(%({prefix}n{n})s AS bigint) AS n, CAST(%({prefix}e{n})s AS text) AS email"
        )
    return "(" + " UNION ALL ".join(selects) + ")"


def snapshot_sql(*, campaign: Campaign, now: dt.datetime, lo: int, hi: int) -> _Sql:
    """One INSERT ... SELECT copying the in-scope grants with entitlement ids in (lo, hi] into review items:
    frozen identity and application fields, findings as of now, the recommendation with its reason, and the
    reviewer, all resolved in the same statement (no per-row work in Python).

    Reviewer resolution: the strategy yields a candidate e-mail per row (application owner, the identity's
    manager, or the named member whose turn it is for that identity); it joins to the members who may review.
    Unresolvable candidates and self-review (candidate is the identity) go to the fallback reviewer, and the
    assignment note says why. The conditions are exactly those of selectors.entitlements_in_scope."""
    organization = campaign.organization
    scope = campaign.scope
    item = ReviewItem._meta.db_table
    fallback = campaign.fallback_reviewer
    params: dict[str, Any] = {
        "org": organization.pk,
        "campaign": ReviewItem._meta.get_field("campaign").get_db_prep_save(campaign.pk, connection),
        "lo": lo,
        "hi": hi,
        "dormant_before": now - dt.timedelta(days=organization.dormant_days),
        "fb_id": fallback.pk,
        "fb_email": fallback.user.email.lower(),
        "dormant_reason": f"Not used in the last {organization.dormant_days} days",
        "never_used_reason": f"Never used in {organization.dormant_days} days since granted",
        "new_grant_reason": f"Active identity; granted within the last {organization.dormant_days} days, not used yet",
        "active_reason": f"Active identity, used in the last {organization.dormant_days} days",
    }
    where = ["e.organization_id = %(org)s", "e.present", "e.id > %(lo)s", "e.id <= %(hi)s"]
    app_ids = scope_application_ids(organization=organization, scope=scope)
    if app_ids is not None:
        where.append(f"e.application_id IN {_in_list(params, 'app', app_ids)}" if app_ids else "1 = 0")
    if scope.get("departments"):
        where.append(f"i.department IN {_in_list(params, 'dept', scope['departments'])}")
    kinds = scope_identity_kinds(scope)
    if kinds is not None:
        where.append(f"i.kind IN {_in_list(params, 'kind', kinds)}" if kinds else "1 = 0")
    if scope.get("privileged_only"):
        where.append("e.is_privileged")

    joins = ""
    strategy = campaign.reviewer_strategy
    if strategy == ReviewerStrategy.APPLICATION_OWNER:
        candidate = "lower(a.owner_email)"
        why_none = "The application has no owner"
        who = "Application owner "
    elif strategy == ReviewerStrategy.MANAGER:
        candidate = "lower(m.email)"
        why_none = "The identity has no manager in the inventory"
        who = "Manager "
    else:
        named = campaign.reviewers or {}
        apps = {a.name: a.pk for a in Application.objects.filter(organization=organization, name__in=list(named))}
        specific = [(apps[name], slot, len(emails), email) for name, emails in named.items() if name in apps
                    for slot, email in enumerate(emails)]
        everyone = [(0, slot, len(named.get("*", [])), email) for slot, email in enumerate(named.get("*", []))]
        parts = []
        # Several named reviewers of one application share its items; one identity's grants stay together.
        if specific:
            joins += (f" LEFT JOIN {_named_reviewers_table(params, 'nx', specific)} nx "
                      "ON nx.app_id = e.application_id AND nx.slot = e.identity_id %% nx.n")
            parts.append("nx.email")
        if everyone:
            joins += (f" LEFT JOIN {_named_reviewers_table(params, 'ns', everyone)} ns "
                      "ON ns.slot = e.identity_id %% ns.n")
            parts.append("ns.email")
        candidate = f"COALESCE({', '.join(parts)})" if len(parts) > 1 else (parts[0] if parts else "NULL")
        why_none = "No reviewer is named for this application"
        who = "Named reviewer "
    params["who"] = who
    params["why_none"] = why_none
    reviewer_roles = _in_list(params, "role", REVIEWER_ROLES)
    membership = Membership._meta.db_table
    user = User._meta.db_table
    ok = "(r.id IS NOT NULL AND r.email <> lower(i.email))"
    # A manager or application owner who is not a member reviews as a guest (when the organization allows it);
    # self-review still falls to the fallback.
    guests = strategy != ReviewerStrategy.MEMBERS and organization.allows_guest_reviewers
    guest_ok = (
        f"(r.id IS NULL AND {candidate} IS NOT NULL AND {candidate} <> '' AND {candidate} <> lower(i.email))"
        if guests else "(1 = 0)"
    )
    fb_ok = "%(fb_email)s <> lower(i.email)"
    why = (
        f"CASE WHEN {candidate} IS NULL OR {candidate} = '' THEN %(why_none)s "
        f"WHEN {candidate} = lower(i.email) THEN 'Self-review avoided: ' || {candidate} || ' is the identity under "
        "review' "
        f"ELSE %(who)s || {candidate} || ' is not a member who can review' END"
    )
    dormant = "(e.last_used IS NOT NULL AND e.last_used < %(dormant_before)s)"
    terminated = "(i.status = 'terminated')"
    orphaned = "(i.status = 'unknown')"
    # A grant nobody has used is judged by its age: older than the dormant threshold it is as stale as a
    # dormant one; a newer grant may simply not have been used yet.
    never_used_old = "(e.last_used IS NULL AND e.first_seen < %(dormant_before)s)"
    computed = {
        "organization_id": "e.organization_id",
        "campaign_id": "%(campaign)s",
        "entitlement_id": "e.id",
        "application_id": "e.application_id",
        "identity_email": "i.email",
        "identity_name": "i.name",
        "identity_department": "i.department",
        "identity_manager_email": "COALESCE(m.email, '')",
        "identity_kind": "i.kind",
        "identity_status": "i.status",
        "application_name": "a.name",
        "application_category": "a.category",
        "application_sanctioned": "a.sanctioned",
        "role": "e.role",
        "last_used": "e.last_used",
        "is_dormant": dormant,
        "is_terminated": terminated,
        "is_privileged": "e.is_privileged",
        "is_orphaned": orphaned,
        "is_never_used": "(e.last_used IS NULL)",
        "recommendation": (
            f"CASE WHEN {terminated} OR {orphaned} OR {dormant} OR {never_used_old} THEN '{Decision.REVOKE.value}' "
            f"ELSE '{Decision.APPROVE.value}' END"
        ),
        "recommendation_reason": (
            f"CASE WHEN {terminated} THEN 'Identity is terminated' "
            f"WHEN {orphaned} THEN 'Orphaned account: no matching person in the identity source' "
            f"WHEN {dormant} THEN %(dormant_reason)s "
            f"WHEN {never_used_old} THEN %(never_used_reason)s "
            f"WHEN e.last_used IS NULL THEN %(new_grant_reason)s "
            f"ELSE %(active_reason)s END"
        ),
        "reviewer_id": f"CASE WHEN {ok} THEN r.id WHEN {guest_ok} THEN NULL WHEN {fb_ok} THEN %(fb_id)s ELSE NULL END",
        "reviewer_email": (
            f"CASE WHEN {ok} THEN r.email WHEN {guest_ok} THEN {candidate} WHEN {fb_ok} THEN %(fb_email)s ELSE '' END"
        ),
        "assignment_note": (
            f"CASE WHEN {ok} THEN '' WHEN {guest_ok} THEN %(who)s || {candidate} || ' is not a member: guest reviewer' "
            f"WHEN {fb_ok} THEN {why} || ': assigned to the fallback reviewer' "
            f"ELSE {why} || '; the fallback reviewer is also the identity under review, so the item is "
            "unassigned until an admin reassigns it' END"
        ),
    }
    guest_table = GuestReviewer._meta.db_table
    if guests:
        joins += (f" LEFT JOIN {guest_table} g ON g.organization_id = %(org)s AND g.campaign_id = %(campaign)s "
                  f"AND g.email = {candidate}")
        computed["guest_id"] = f"CASE WHEN {ok} THEN NULL WHEN {guest_ok} THEN g.id ELSE NULL END"
    if campaign.is_multi_stage:
        # Stage 1's deadline runs from the snapshot; later stages' from when an item enters them.
        first = CampaignStage.objects.filter(campaign_id=campaign.pk, number=1).first()
        if first is not None:
            params["stage_due"] = now + dt.timedelta(days=first.duration_days)
            computed["stage_due_at"] = "%(stage_due)s"
    # Every other column takes its model default, so columns added later need no change here.
    for f in ReviewItem._meta.concrete_fields:
        if f.primary_key or f.column in computed:
            continue
        params[f"d_{f.column}"] = f.get_db_prep_save(f.get_default(), connection)
        computed[f.column] = f"%(d_{f.column})s"
    columns = list(computed)
    source = f"""
        FROM {Entitlement._meta.db_table} e
        JOIN {Identity._meta.db_table} i ON i.id = e.identity_id
        JOIN {Application._meta.db_table} a ON a.id = e.application_id
        LEFT JOIN {Identity._meta.db_table} m ON m.id = i.manager_id
        {joins}
        LEFT JOIN (
            SELECT mm.id AS id, lower(u.email) AS email
            FROM {membership} mm JOIN {user} u ON u.id = mm.user_id
            WHERE mm.organization_id = %(org)s AND u.is_active AND mm.role IN {reviewer_roles}
        ) r ON r.email = {candidate}
        WHERE {" AND ".join(where)}
    """
    text = f"""
        INSERT INTO {item} ({", ".join(columns)})
        SELECT {", ".join(f"{computed[c]} AS {c}" for c in columns)}
        {source}
    """
    guests_text = ""
    if guests:
        params["guest_expires"] = guest_link_expiry(campaign)
        params["guest_now"] = now
        guest_columns = {"organization_id": "%(org)s", "campaign_id": "%(campaign)s", "email": candidate,
                         "expires_at": "%(guest_expires)s", "created_at": "%(guest_now)s"}
        for f in GuestReviewer._meta.concrete_fields:
            # Nullable columns are left out (NULL): a NULL parameter under DISTINCT would be typed text.
            if f.primary_key or f.column in guest_columns or f.null:
                continue
            params[f"g_{f.column}"] = f.get_db_prep_save(f.get_default(), connection)
            guest_columns[f.column] = f"%(g_{f.column})s"
        guests_text = f"""
            INSERT INTO {guest_table} ({", ".join(guest_columns)})
            SELECT DISTINCT {", ".join(f"{v} AS {c}" for c, v in guest_columns.items())}
            {source} AND {guest_ok}
            ON CONFLICT (organization_id, campaign_id, email) DO NOTHING
        """
    return _Sql(text, params, guests_text)


# Insert triggers on review items whose work the snapshot does itself when it skips row triggers.
SNAPSHOT_REPLACED_TRIGGERS = frozenset({"campaigns_item_counts_insert"})


def snapshot_skippable_triggers_only() -> bool:
    """Whether every insert trigger on review items that `session_replication_role = replica` would skip is
    one the snapshot replaces (PostgreSQL). A trigger added later makes the snapshot keep row triggers on
    (and a test fail) until the snapshot does that trigger's work too."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal "
            "AND tgenabled IN ('O', 'R') AND tgtype & 4 <> 0",
            [ReviewItem._meta.db_table],
        )
        return {row[0] for row in cursor.fetchall()} <= SNAPSHOT_REPLACED_TRIGGERS


def _snapshot_row_triggers_off(cursor, campaign: Campaign) -> bool:
    """Let the snapshot's inserts skip PostgreSQL's per-row triggers, when the role may.

    Each item has five foreign keys with a value (organization, campaign, entitlement, application,
    reviewer) and four NULL ones; checked row by row they cost more than the rows themselves. Every id
    the snapshot writes comes from a join in this transaction, so the checks are replaced by what each
    would have locked, taken once per parent row: the organization, its applications and its members
    (a member removed meanwhile waits for the launch, then fails on its items as before). The campaign row
    is held FOR UPDATE already. Entitlements are not locked one by one: they are deleted only with their
    application or organization, whose deletion waits for these locks or for the campaign row. The
    statement trigger that counts items per decision is skipped too; _undecided_count_add does its work."""
    if connection.vendor != "postgresql" or not snapshot_skippable_triggers_only():
        return False
    if not staging.row_triggers_off(cursor, work="Campaign snapshot"):
        return False
    org = campaign.organization_id
    staging.lock_for_key_share(cursor, Organization._meta.db_table, "%s", [org])
    for model in (Application, Membership):
        staging.lock_for_key_share(
            cursor, model._meta.db_table, f"SELECT id FROM {model._meta.db_table} WHERE organization_id = %s", [org]
        )
    return True


def _undecided_count_add(cursor, campaign: Campaign, count: int) -> None:
    """What the count trigger (migration 0004) does for an insert of `count` undecided items."""
    table = CampaignDecisionCount._meta.db_table
    cursor.execute(
        f"INSERT INTO {table} (organization_id, campaign_id, decision, count) VALUES (%s, %s, '', %s) "
        f"ON CONFLICT (campaign_id, decision) DO UPDATE SET count = {table}.count + EXCLUDED.count",
        [campaign.organization_id, ReviewItem._meta.get_field("campaign").get_db_prep_save(campaign.pk, connection),
         count],
    )


def campaign_snapshot(*, campaign_id, on_progress=None) -> int:
    """Take the snapshot of a launching campaign in one transaction and make it active. Safe to run twice:
    the campaign row is locked and anything but `launching` is left alone. Returns the item count."""
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(of=("self",))
            .select_related("organization", "fallback_reviewer__user")
            .filter(pk=campaign_id)
            .first()
        )
        if campaign is None or campaign.status != CampaignStatus.LAUNCHING:
            return 0
        if ReviewItem.objects.filter(campaign=campaign).exists():
            raise RuntimeError(f"campaign {campaign.pk} is launching but already has items")
        now = timezone.now()
        lo, hi = entitlement_id_bounds(organization=campaign.organization)
        count = 0
        if lo is not None:
            start = lo - 1
            span = max(hi - start, 1)
            sql = snapshot_sql(campaign=campaign, now=now, lo=start, hi=hi)
            with connection.cursor() as cursor:
                if sql.guests_text:
                    cursor.execute(sql.guests_text, sql.params)
                bulk = _snapshot_row_triggers_off(cursor, campaign)
                while start < hi:
                    end = min(start + SNAPSHOT_CHUNK_IDS, hi)
                    cursor.execute(sql.text, {**sql.params, "lo": start, "hi": end})
                    count += cursor.rowcount
                    start = end
                    percent = min(99, int((end - lo + 1) * 100 / span))
                    _launch_progress_set(campaign.pk, percent)
                    if on_progress is not None:
                        on_progress(percent)
                if bulk:
                    staging.row_triggers_on(cursor)
                    _undecided_count_add(cursor, campaign, count)
        if count == 0:
            raise CampaignError("no entitlements matched the scope when the snapshot was taken", field="scope")
        remediation_owners_assign(campaign=campaign)
        delegations_apply_at_launch(campaign=campaign)
        stages_start_at_launch(campaign=campaign, now=now)
        guest_count = guests_create_for_snapshot(campaign=campaign)
        campaign.status = CampaignStatus.ACTIVE
        campaign.snapshot_at = now
        campaign.item_count = count
        campaign.launch_progress = 100
        campaign.updated_at = timezone.now()
        campaign.save(update_fields=["status", "snapshot_at", "item_count", "launch_progress", "updated_at"])
        audit_record(
            action="campaign_launched",
            organization_id=campaign.organization_id,
            actor=campaign.launched_by,
            target=campaign,
            system=campaign.launched_by_id is None,
            details={
                "items": count,
                "freshness_override_reason": campaign.freshness_override_reason,
                "stale_applications": [s["name"] for s in campaign.stale_applications],
                "guest_reviewers": guest_count,
            },
        )
        publish(CampaignLaunched(organization_id=campaign.organization_id, campaign_id=str(campaign.pk)))
        if guest_count:
            organization_id, campaign_pk = campaign.organization_id, campaign.pk
            transaction.on_commit(lambda: guest_links_send_all(organization_id=organization_id, campaign_id=campaign_pk))
    _launch_progress_set(campaign.pk, 100, timeout=3600)
    return count


def campaign_launch_failed(*, campaign_id, error: str) -> None:
    """A launch that cannot complete goes back to draft with the error shown on the campaign page."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is None or campaign.status != CampaignStatus.LAUNCHING:
            return
        campaign.status = CampaignStatus.DRAFT
        campaign.launch_error = error[:2000]
        campaign.launch_progress = 0
        campaign.updated_at = timezone.now()
        campaign.save(update_fields=["status", "launch_error", "launch_progress", "updated_at"])
        audit_record(
            action="campaign_launch_failed",
            organization_id=campaign.organization_id,
            target=campaign,
            system=True,
            details={"error": error[:500]},
        )
    try:
        cache.delete(launch_progress_key(campaign_id))
    except Exception:  # noqa: BLE001 - the entry expires by itself
        logger.warning("could not clear launch progress of campaign %s", campaign_id, exc_info=True)
