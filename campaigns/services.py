"""Campaign lifecycle: create, edit, launch (freshness check, snapshot), cancel, close, complete, reassign."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from entitlements import staging
from entitlements.models import Application, Entitlement, Identity, IdentityKind
from thalian import broker, claims
from thalian.audit import audit_record
from thalian.events import CampaignCancelled, CampaignLaunched, publish
from thalian.models import Membership, Organization, User
from thalian.permissions import Perm, has_perm
from thalian.tenancy import assert_same_organization, scope
from thalian.text import single_line

from .delegation import delegations_apply_at_launch
from .guests import guest_link_expiry, guest_links_send_all, guests_create_for_snapshot
from .models import (
    MAX_STAGES,
    Campaign,
    CampaignDecisionCount,
    CampaignStage,
    CampaignStatus,
    DeadlineOutcome,
    Decision,
    DefaultOutcome,
    GuestReviewer,
    Recurrence,
    ReviewerStrategy,
    ReviewItem,
    default_advance_on,
    default_scope,
)
from .reassignment import review_items_move
from .remediation import (
    RemediationError,
    campaign_review_finished,
    member_with_role,
    remediation_member,
    remediation_owners_assign,
    remediation_owners_clean,
)
from .selectors import (
    PRESETS,
    REVIEWER_ROLES,
    StaleApplication,
    campaign_stale_applications,
    entitlement_id_bounds,
    entitlements_in_scope,
    scope_application_ids,
    scope_identity_kinds,
)
from .stages import stages_start_at_launch


class CampaignError(ValueError):
    """Bad input or a transition the campaign's state does not allow; `field` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class CampaignLocked(CampaignError):
    pass


class FreshnessError(CampaignError):
    """Launch blocked: some applications in scope have stale or never-loaded data."""

    def __init__(self, message: str, *, stale: list[StaleApplication]):
        super().__init__(message, field="freshness_override_reason")
        self.stale = stale


EDITABLE_STATUSES = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
LAUNCHABLE_STATUSES = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
CANCELLABLE_STATUSES = (
    CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.LAUNCHING, CampaignStatus.ACTIVE,
)
# While active, only these may change: the scope and the reviewers are locked.
ACTIVE_EDITABLE_FIELDS = {"title", "description", "due_date"}
SCHEDULING_FIELDS = ("launch_at", "recurrence", "recurrence_every_days", "duration_days")


# ---------------------------------------------------------------------------------------------
# Validation


def _clean_str_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [v for v in value.split(",")]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise CampaignError(f"{field} must be a list of strings", field=field)
    seen: list[str] = []
    for v in value:
        v = v.strip()
        if v and v not in seen:
            seen.append(v)
    return seen


def scope_clean(*, organization: Organization, scope: dict | None) -> dict:
    """Validate a scope and return it with every key present. Unknown applications, kinds or keys are errors."""
    scope = dict(scope or {})
    allowed = set(default_scope())
    unknown = sorted(set(scope) - allowed)
    if unknown:
        raise CampaignError(f"unknown scope key(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
                            field="scope")
    clean = default_scope()
    clean["applications"] = _clean_str_list(scope.get("applications"), "scope.applications")
    clean["categories"] = _clean_str_list(scope.get("categories"), "scope.categories")
    clean["departments"] = _clean_str_list(scope.get("departments"), "scope.departments")
    kinds = _clean_str_list(scope.get("identity_kinds"), "scope.identity_kinds")
    bad_kinds = [k for k in kinds if k not in IdentityKind.values]
    if bad_kinds:
        raise CampaignError(
            f"unknown identity kind(s): {', '.join(bad_kinds)}; choose from {', '.join(IdentityKind.values)}",
            field="scope.identity_kinds",
        )
    clean["identity_kinds"] = kinds
    for key in ("sanctioned_only", "privileged_only"):
        value = scope.get(key, False)
        if value in (None, ""):
            value = False
        if not isinstance(value, bool):
            raise CampaignError(f"scope.{key} must be true or false", field=f"scope.{key}")
        clean[key] = value
    min_users = scope.get("min_users")
    if min_users in (None, "", 0):
        clean["min_users"] = None
    else:
        try:
            min_users = int(min_users)
        except (TypeError, ValueError):
            raise CampaignError("scope.min_users must be a whole number", field="scope.min_users") from None
        if min_users < 1 or isinstance(scope.get("min_users"), bool):
            raise CampaignError("scope.min_users must be at least 1", field="scope.min_users")
        clean["min_users"] = min_users
    preset = scope.get("preset") or None
    if preset is not None and preset not in PRESETS:
        raise CampaignError(f"unknown preset {preset!r}; choose non_human, ai_agents or null", field="scope.preset")
    clean["preset"] = preset
    if preset and kinds and scope_identity_kinds(clean) == []:
        raise CampaignError(
            f"the identity kinds {', '.join(kinds)} do not overlap the preset {preset}", field="scope.identity_kinds"
        )
    if clean["applications"]:
        known = {
            n.lower(): n
            for n in Application.objects.filter(organization=organization).values_list("name", flat=True)
        }
        missing = [n for n in clean["applications"] if n.lower() not in known]
        if missing:
            raise CampaignError(f"unknown application(s): {', '.join(missing)}", field="scope.applications")
        clean["applications"] = [known[n.lower()] for n in clean["applications"]]
    return clean


def _reviewer_member(*, organization: Organization, email: str, field: str) -> Membership:
    return member_with_role(
        organization=organization, email=email, field=field, roles=REVIEWER_ROLES, cannot="review items",
        error=CampaignError,
    )  # fmt: skip


def reviewers_clean(*, organization: Organization, strategy: str, reviewers: Any) -> dict[str, list[str]]:
    """Named reviewers for the `members` strategy: a list of e-mails (every application) or a mapping of
    application name (or "*" for the rest) to e-mails. Several reviewers share an application's items."""
    if strategy not in ReviewerStrategy.values:
        raise CampaignError(
            f"unknown reviewer_strategy {strategy!r}; choose from {', '.join(ReviewerStrategy.values)}",
            field="reviewer_strategy",
        )
    if strategy != ReviewerStrategy.MEMBERS:
        if reviewers:
            raise CampaignError(
                f"reviewers are named only with the members strategy, not {strategy}", field="reviewers"
            )
        return {}
    if isinstance(reviewers, list | tuple | str):
        reviewers = {"*": _clean_str_list(reviewers, "reviewers")}
    if not isinstance(reviewers, dict):
        raise CampaignError("reviewers must be a list of e-mails or an object of application name to e-mails",
                            field="reviewers")
    known = {n.lower(): n for n in Application.objects.filter(organization=organization).values_list("name", flat=True)}
    clean: dict[str, list[str]] = {}
    for key, emails in reviewers.items():
        emails = _clean_str_list(emails, "reviewers")
        if not emails:
            continue
        if key != "*":
            if key.strip().lower() not in known:
                raise CampaignError(f"reviewers: unknown application {key!r}", field="reviewers")
            key = known[key.strip().lower()]
        clean[key] = [
            _reviewer_member(organization=organization, email=e, field="reviewers").user.email for e in emails
        ]
    if not clean:
        raise CampaignError("the members strategy needs at least one reviewer e-mail", field="reviewers")
    return clean


STAGE_KEYS = ("reviewer_strategy", "reviewers", "fallback_reviewer", "duration_days", "advance_on",
              "show_earlier_decisions", "deadline_outcome")


def stages_clean(*, organization: Organization, stages: Any) -> list[dict]:
    """Validate review stages: 1 to MAX_STAGES objects of STAGE_KEYS. An error names the stage (1-based) and the
    field; its ``field`` is ``stages[<index>].<key>`` (0-based, as the list in the request)."""
    if not isinstance(stages, list | tuple):
        raise CampaignError("stages must be a list of stage objects", field="stages")
    if not 1 <= len(stages) <= MAX_STAGES:
        raise CampaignError(f"a campaign has 1 to {MAX_STAGES} stages; got {len(stages)}", field="stages")
    clean: list[dict] = []
    for index, raw in enumerate(stages):
        number, where = index + 1, f"stages[{index}]"

        def fail(key: str, message: str, number=number, where=where):
            raise CampaignError(f"stage {number}: {key}: {message}", field=f"{where}.{key}")

        if not isinstance(raw, dict):
            raise CampaignError(f"stage {number}: must be an object with {', '.join(STAGE_KEYS)}", field=where)
        unknown = sorted(set(raw) - set(STAGE_KEYS))
        if unknown:
            fail(unknown[0], f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(STAGE_KEYS)}")
        strategy = raw.get("reviewer_strategy") or ""
        if strategy not in ReviewerStrategy.values:
            fail("reviewer_strategy", f"unknown reviewer strategy {strategy!r}; choose from "
                                      f"{', '.join(ReviewerStrategy.values)}")
        if not isinstance(raw.get("fallback_reviewer") or "", str):
            fail("fallback_reviewer", "give the fallback reviewer's e-mail")
        try:
            reviewers = reviewers_clean(organization=organization, strategy=strategy, reviewers=raw.get("reviewers"))
            fallback = _fallback_member(organization=organization, fallback_reviewer=raw.get("fallback_reviewer"))
        except CampaignError as exc:
            key = exc.field or "reviewers"
            message = exc.message.removeprefix(f"{key}: ")
            fail(key, message)
        duration = raw.get("duration_days")
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < 1:
            fail("duration_days", "give the stage's length as a whole number of days, at least 1")
        advance_on = raw.get("advance_on", default_advance_on())
        if advance_on is None:
            advance_on = default_advance_on()
        if not isinstance(advance_on, list | tuple) or not all(isinstance(d, str) for d in advance_on):
            fail("advance_on", f"must be a list of decisions ({', '.join(Decision.values)})")
        bad = [d for d in advance_on if d not in Decision.values]
        if bad:
            fail("advance_on", f"unknown decision(s) {', '.join(map(repr, bad))}; choose from "
                               f"{', '.join(Decision.values)}")
        show = raw.get("show_earlier_decisions", True)
        if not isinstance(show, bool):
            fail("show_earlier_decisions", "must be true or false")
        outcome = raw.get("deadline_outcome") or DeadlineOutcome.CARRY_FORWARD
        if outcome not in DeadlineOutcome.values:
            fail("deadline_outcome", f"unknown outcome {outcome!r}; choose from {', '.join(DeadlineOutcome.values)}")
        clean.append({
            "number": number, "reviewer_strategy": strategy, "reviewers": reviewers, "fallback_reviewer": fallback,
            "duration_days": duration, "advance_on": [d for d in Decision.values if d in advance_on],
            "show_earlier_decisions": show, "deadline_outcome": outcome,
        })
    return clean


def _stages_store(*, campaign: Campaign, stages: list[dict]) -> None:
    """Stage 1 is the campaign's own reviewer fields (the snapshot assigns it); every stage is also a row once
    there are two or more."""
    first = stages[0]
    campaign.reviewer_strategy = first["reviewer_strategy"]
    campaign.reviewers = first["reviewers"]
    campaign.fallback_reviewer = first["fallback_reviewer"]
    campaign.stage_count = len(stages)
    CampaignStage.objects.filter(campaign=campaign).delete()
    if len(stages) > 1:
        CampaignStage.objects.bulk_create(
            [CampaignStage(organization_id=campaign.organization_id, campaign=campaign, **stage) for stage in stages]
        )


def stages_audit_details(stages: list[dict]) -> list[dict]:
    return [
        {"stage": s["number"], "reviewer_strategy": s["reviewer_strategy"], "reviewers": s["reviewers"],
         "fallback_reviewer": s["fallback_reviewer"].user.email, "duration_days": s["duration_days"],
         "advance_on": s["advance_on"], "show_earlier_decisions": s["show_earlier_decisions"],
         "deadline_outcome": s["deadline_outcome"]}
        for s in stages
    ]


def _clean_common(*, organization: Organization, values: dict, creating: bool) -> dict:
    clean: dict[str, Any] = {}
    if "title" in values:
        title = single_line(values["title"])  # titles go into e-mail subjects and ticket summaries
        if not title:
            raise CampaignError("title is required", field="title")
        if len(title) > 200:
            raise CampaignError("title is longer than 200 characters", field="title")
        clean["title"] = title
    if "description" in values:
        clean["description"] = (values["description"] or "").strip()
    if "due_date" in values:
        due = values["due_date"]
        if isinstance(due, str):
            try:
                due = dt.date.fromisoformat(due)
            except ValueError:
                raise CampaignError(f"due_date {due!r} is not a date (YYYY-MM-DD)", field="due_date") from None
        if not isinstance(due, dt.date):
            raise CampaignError("due_date is required", field="due_date")
        if due < timezone.localdate():
            raise CampaignError(f"due_date {due.isoformat()} is in the past", field="due_date")
        clean["due_date"] = due
    if "scope" in values:
        clean["scope"] = scope_clean(organization=organization, scope=values["scope"])
    if "default_outcome" in values:
        if values["default_outcome"] not in DefaultOutcome.values:
            raise CampaignError(
                f"unknown default_outcome {values['default_outcome']!r}; choose from "
                f"{', '.join(DefaultOutcome.values)}",
                field="default_outcome",
            )
        clean["default_outcome"] = values["default_outcome"]
    if "reason_required" in values:
        clean["reason_required"] = bool(values["reason_required"])
    if "launch_at" in values:
        launch_at = values["launch_at"]
        if launch_at is not None and launch_at <= timezone.now():
            raise CampaignError("launch_at must be in the future", field="launch_at")
        clean["launch_at"] = launch_at
    if "recurrence" in values:
        recurrence = values["recurrence"] or ""
        if recurrence not in Recurrence.values:
            raise CampaignError(f"unknown recurrence {recurrence!r}", field="recurrence")
        clean["recurrence"] = recurrence
    for key in ("recurrence_every_days", "duration_days"):
        if key in values:
            value = values[key]
            if value is not None and (not isinstance(value, int) or value < 1):
                raise CampaignError(f"{key} must be a whole number of days, at least 1", field=key)
            clean[key] = value
    if clean.get("recurrence") == Recurrence.EVERY_DAYS and not (
        clean.get("recurrence_every_days") or values.get("recurrence_every_days")
    ):
        raise CampaignError("recurrence_every_days is required for the every_days recurrence",
                            field="recurrence_every_days")
    return clean


def _actor_user(actor: Membership | None) -> User | None:
    return actor.user if actor is not None else None


def _require(actor: Membership, perm: Perm) -> None:
    if not has_perm(actor.role, perm):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied(f"Your role ({actor.role}) does not allow this.")


logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Create and edit


@transaction.atomic
def campaign_create(
    *,
    organization: Organization,
    actor: Membership,
    title: str,
    due_date: dt.date | str,
    scope: dict | None = None,
    reviewer_strategy: str = ReviewerStrategy.APPLICATION_OWNER,
    reviewers: Any = None,
    fallback_reviewer: str | Membership | None = None,
    remediation_owners: dict | None = None,
    fallback_remediation_owner: str | Membership | None = None,
    description: str = "",
    reason_required: bool = True,
    default_outcome: str = DefaultOutcome.NONE,
    launch_at: dt.datetime | None = None,
    recurrence: str = Recurrence.NONE,
    recurrence_every_days: int | None = None,
    duration_days: int | None = None,
    series: Campaign | None = None,
    stages: list[dict] | None = None,
    request=None,
) -> Campaign:
    """A draft campaign, or a scheduled one when `launch_at` is in the future. ``stages`` (1 to 5) replaces the
    reviewer arguments: stage 1 is reviewed first, later stages get the items whose decision moves them on."""
    _require(actor, Perm.MANAGE_CAMPAIGNS)
    assert_same_organization(actor, series)
    clean = _clean_common(
        organization=organization,
        values={
            "title": title, "description": description, "due_date": due_date, "scope": scope,
            "default_outcome": default_outcome, "reason_required": reason_required, "launch_at": launch_at,
            "recurrence": recurrence, "recurrence_every_days": recurrence_every_days, "duration_days": duration_days,
        },
        creating=True,
    )
    staged = stages_clean(organization=organization, stages=stages) if stages is not None else None
    if staged:
        reviewer_strategy = staged[0]["reviewer_strategy"]
        clean["reviewers"] = staged[0]["reviewers"]
        fallback = staged[0]["fallback_reviewer"]
    else:
        clean["reviewers"] = reviewers_clean(organization=organization, strategy=reviewer_strategy,
                                             reviewers=reviewers)
        fallback = _fallback_member(organization=organization, fallback_reviewer=fallback_reviewer)
    clean.update(_remediation_clean(
        organization=organization, owners=remediation_owners, fallback=fallback_remediation_owner, default=fallback
    ))
    campaign = Campaign.objects.create(
        organization=organization,
        reviewer_strategy=reviewer_strategy,
        fallback_reviewer=fallback,
        status=CampaignStatus.SCHEDULED if clean.get("launch_at") else CampaignStatus.DRAFT,
        created_by=actor.user,
        series=series,
        **clean,
    )
    if staged:
        _stages_store(campaign=campaign, stages=staged)
        campaign.save(update_fields=["stage_count"])
    audit_record(
        action="campaign_created",
        organization=organization,
        actor=actor.user,
        request=request,
        target=campaign,
        details={"status": campaign.status, "scope": campaign.scope, "reviewer_strategy": reviewer_strategy,
                 "fallback_reviewer": fallback.user.email, "default_outcome": campaign.default_outcome,
                 "remediation_owners": campaign.remediation_owners,
                 "fallback_remediation_owner": campaign.fallback_remediation_owner.user.email,
                 **({"stages": stages_audit_details(staged)} if staged and len(staged) > 1 else {})},
    )
    return campaign


def _remediation_clean(
    *, organization: Organization, owners: Any, fallback: str | Membership | None, default: Membership | None
) -> dict:
    """Remediation owner overrides and the fallback remediation owner (the fallback reviewer when not given)."""
    try:
        clean: dict[str, Any] = {"remediation_owners": remediation_owners_clean(organization=organization, owners=owners)}
        if isinstance(fallback, Membership):
            if fallback.organization_id != organization.pk:
                raise RemediationError("fallback_remediation_owner is not a member of this organization",
                                       field="fallback_remediation_owner")
            fallback = fallback.user.email
        if fallback or default is None:
            clean["fallback_remediation_owner"] = remediation_member(
                organization=organization, email=fallback or "", field="fallback_remediation_owner"
            )
        else:
            clean["fallback_remediation_owner"] = default
    except RemediationError as exc:
        raise CampaignError(exc.message, field=exc.field) from None
    return clean


def _stage_rows_as_clean(campaign: Campaign) -> list[dict]:
    """The stored stages in the shape ``stages_clean`` returns (stage 1 alone: the campaign's reviewer fields)."""
    rows = list(CampaignStage.objects.filter(campaign=campaign).select_related("fallback_reviewer__user"))
    if not rows:
        if campaign.fallback_reviewer is None:
            return []
        return [{"number": 1, "reviewer_strategy": campaign.reviewer_strategy, "reviewers": campaign.reviewers,
                 "fallback_reviewer": campaign.fallback_reviewer, "duration_days": None, "advance_on": [],
                 "show_earlier_decisions": True, "deadline_outcome": ""}]
    return [{"number": r.number, "reviewer_strategy": r.reviewer_strategy, "reviewers": r.reviewers,
             "fallback_reviewer": r.fallback_reviewer, "duration_days": r.duration_days, "advance_on": r.advance_on,
             "show_earlier_decisions": r.show_earlier_decisions, "deadline_outcome": r.deadline_outcome}
            for r in rows]


def _fallback_member(*, organization: Organization, fallback_reviewer: str | Membership | None) -> Membership:
    if isinstance(fallback_reviewer, Membership):
        if fallback_reviewer.organization_id != organization.pk:
            raise CampaignError("fallback_reviewer is not a member of this organization", field="fallback_reviewer")
        fallback_reviewer = fallback_reviewer.user.email
    return _reviewer_member(organization=organization, email=fallback_reviewer or "", field="fallback_reviewer")


@transaction.atomic
def campaign_update(*, campaign: Campaign, actor: Membership, request=None, **changes) -> Campaign:
    """Edit a draft or scheduled campaign. Once launched, only title, description and due date may change."""
    _require(actor, Perm.MANAGE_CAMPAIGNS)
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    allowed = {"title", "description", "due_date", "scope", "reviewer_strategy", "reviewers", "fallback_reviewer",
               "reason_required", "default_outcome", "remediation_owners", "fallback_remediation_owner",
               "stages", *SCHEDULING_FIELDS}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise CampaignError(f"cannot change {', '.join(unknown)}", field=unknown[0])
    if campaign.status not in EDITABLE_STATUSES:
        locked = sorted(set(changes) - ACTIVE_EDITABLE_FIELDS)
        if campaign.status != CampaignStatus.ACTIVE or locked:
            what = ", ".join(locked) if locked else "it"
            raise CampaignLocked(
                f"the campaign is {campaign.get_status_display().lower()}: {what} can no longer be changed "
                "(the scope and reviewers of a launched campaign are locked)",
                field=locked[0] if locked else None,
            )
    organization = campaign.organization
    staged = None
    if changes.get("stages") is not None:
        staged = stages_clean(organization=organization, stages=changes.pop("stages"))
        for key in ("reviewer_strategy", "reviewers", "fallback_reviewer"):
            changes.pop(key, None)  # stage 1 holds them
    changes.pop("stages", None)
    clean = _clean_common(organization=organization, values=changes, creating=False)
    if "reviewer_strategy" in changes or "reviewers" in changes:
        strategy = changes.get("reviewer_strategy", campaign.reviewer_strategy)
        reviewers = changes.get("reviewers", campaign.reviewers if strategy == campaign.reviewer_strategy else None)
        clean["reviewers"] = reviewers_clean(organization=organization, strategy=strategy, reviewers=reviewers)
        clean["reviewer_strategy"] = strategy
    if "fallback_reviewer" in changes:
        clean["fallback_reviewer"] = _fallback_member(
            organization=organization, fallback_reviewer=changes["fallback_reviewer"]
        )
    if "remediation_owners" in changes or "fallback_remediation_owner" in changes:
        # An empty fallback remediation owner means the fallback reviewer, as when creating.
        remediation = _remediation_clean(
            organization=organization,
            owners=changes.get("remediation_owners", campaign.remediation_owners),
            fallback=changes["fallback_remediation_owner"] if "fallback_remediation_owner" in changes
            else campaign.fallback_remediation_owner,
            default=clean.get("fallback_reviewer") or campaign.fallback_reviewer,
        )
        clean.update({k: v for k, v in remediation.items() if k in changes})
    if campaign.status in EDITABLE_STATUSES and "launch_at" in clean:
        clean["status"] = CampaignStatus.SCHEDULED if clean["launch_at"] else CampaignStatus.DRAFT
    changed = {}
    if staged is not None:
        before = stages_audit_details(_stage_rows_as_clean(campaign))
        _stages_store(campaign=campaign, stages=staged)
        if stages_audit_details(staged) != before:
            changed.update({"stages": True, "reviewer_strategy": campaign.reviewer_strategy,
                            "reviewers": campaign.reviewers, "fallback_reviewer": campaign.fallback_reviewer,
                            "stage_count": campaign.stage_count})
    elif {"reviewer_strategy", "reviewers", "fallback_reviewer"} & set(clean) and campaign.is_multi_stage:
        # Reviewer fields alone make the campaign single-stage again (its later stages are dropped).
        CampaignStage.objects.filter(campaign=campaign).delete()
        campaign.stage_count = 1
        changed["stage_count"] = 1
    for key, value in clean.items():
        if getattr(campaign, key) != value:
            changed[key] = value
            setattr(campaign, key, value)
    if changed:
        campaign.updated_at = timezone.now()
        campaign.save(update_fields=[*(k for k in changed if k != "stages"), "updated_at"])
        audit_record(
            action="campaign_updated",
            organization_id=campaign.organization_id,
            actor=actor.user,
            request=request,
            target=campaign,
            details={"changed": sorted(changed)},
        )
    return campaign


# ---------------------------------------------------------------------------------------------
# Launch


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


# ---------------------------------------------------------------------------------------------
# Cancel, close, complete


@transaction.atomic
def campaign_cancel(*, campaign: Campaign, actor: Membership, reason: str, request=None) -> Campaign:
    _require(actor, Perm.MANAGE_CAMPAIGNS)
    reason = (reason or "").strip()
    if not reason:
        raise CampaignError("a reason is required to cancel a campaign", field="reason")
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status not in CANCELLABLE_STATUSES:
        raise CampaignError(
            f"the campaign is {campaign.get_status_display().lower()} and cannot be cancelled", field="status"
        )
    previous = campaign.status
    now = timezone.now()
    campaign.status = CampaignStatus.CANCELLED
    campaign.cancelled_at = now
    campaign.cancelled_by = actor.user
    campaign.cancel_reason = reason
    campaign.updated_at = now
    campaign.save(update_fields=["status", "cancelled_at", "cancelled_by", "cancel_reason", "updated_at"])
    audit_record(
        action="campaign_cancelled",
        organization_id=campaign.organization_id,
        actor=actor.user,
        request=request,
        target=campaign,
        details={"reason": reason, "previous_status": previous},
    )
    publish(CampaignCancelled(organization_id=campaign.organization_id, campaign_id=str(campaign.pk)))
    return campaign


@transaction.atomic
def campaign_close(*, campaign: Campaign, actor: Membership, request=None) -> Campaign:
    """An admin ends an active campaign: undecided items get the default outcome as system decisions, then the
    campaign completes."""
    from .decisions import decisions_apply_default_outcome

    _require(actor, Perm.MANAGE_CAMPAIGNS)
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status != CampaignStatus.ACTIVE:
        raise CampaignError(
            f"the campaign is {campaign.get_status_display().lower()}; only active campaigns can be closed",
            field="status",
        )
    applied = decisions_apply_default_outcome(campaign=campaign, actor=actor)
    now = timezone.now()
    Campaign.objects.filter(pk=campaign.pk).update(closed_at=now, closed_by=actor.user, updated_at=now)
    audit_record(
        action="campaign_closed",
        organization_id=campaign.organization_id,
        actor=actor.user,
        request=request,
        target=campaign,
        details={"default_outcome": campaign.default_outcome, "items_decided_by_default": applied or 0},
    )
    # With revokes still to be removed the campaign is `remediating`; otherwise it completes now.
    campaign_review_finished(campaign=campaign, how="closed", actor=actor.user, request=request)
    campaign.refresh_from_db()
    return campaign


def campaign_complete_if_done(*, campaign: Campaign) -> bool:
    """End the review of an active campaign once every item is decided and signed off: it then completes,
    or becomes `remediating` while revoked access is still to be proven removed. Returns True when it did."""
    with transaction.atomic():
        if ReviewItem.objects.filter(campaign_id=campaign.pk).filter(
            decision=""
        ).exists() or ReviewItem.objects.filter(campaign_id=campaign.pk, signed_off_at__isnull=True).exists():
            return False
        # The conditional lock makes a second caller (two last sign-offs at once) find nothing to do.
        locked = Campaign.objects.select_for_update().filter(pk=campaign.pk, status=CampaignStatus.ACTIVE).first()
        if locked is None:
            return False
        campaign_review_finished(campaign=locked, how="all items decided and signed off")
    campaign.refresh_from_db()
    return True


# ---------------------------------------------------------------------------------------------
# Reassignment


@dataclass
class ReassignResult:
    reassigned: int
    skipped_self_review: int


@transaction.atomic
def items_reassign(
    *,
    campaign: Campaign,
    actor: Membership,
    from_reviewer: Membership | None,
    to_reviewer: Membership,
    reason: str = "",
    request=None,
) -> ReassignResult:
    """Move an active campaign's items that are not signed off from one reviewer (None: unassigned items) to
    another. Items whose identity is the new reviewer stay where they are (no self-review)."""
    _require(actor, Perm.MANAGE_CAMPAIGNS)
    assert_same_organization(campaign, actor, from_reviewer, to_reviewer)
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status != CampaignStatus.ACTIVE:
        raise CampaignError("items can be reassigned only in an active campaign", field="status")
    if to_reviewer.role not in REVIEWER_ROLES:
        raise CampaignError(
            f"to_reviewer: {to_reviewer.user.email} has the role {to_reviewer.get_role_display()}, which cannot "
            "review items",
            field="to_reviewer",
        )
    if from_reviewer is not None and from_reviewer.pk == to_reviewer.pk:
        raise CampaignError("from_reviewer and to_reviewer are the same member", field="to_reviewer")
    items = ReviewItem.objects.filter(campaign=campaign, signed_off_at__isnull=True)
    items = (items.filter(reviewer=from_reviewer) if from_reviewer is not None
             else items.filter(reviewer__isnull=True, guest__isnull=True))
    source = from_reviewer.user.email if from_reviewer is not None else "unassigned"
    result = review_items_move(campaign=campaign, items=items, to_reviewer=to_reviewer, by_email=actor.user.email,
                               by_user=actor.user, reason=(reason or "").strip(), request=request)
    moved, skipped = result.moved, result.skipped_self_review
    if moved == 0 and skipped == 0:
        raise CampaignError(f"{source} has no items that can be reassigned", field="from_reviewer")
    return ReassignResult(reassigned=moved, skipped_self_review=skipped)
