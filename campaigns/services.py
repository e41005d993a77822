"""Campaign lifecycle: create, edit, cancel, close, complete, reassign. The launch is in ``campaigns.launch``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from entitlements.models import Application, IdentityKind
from thalian.audit import audit_record
from thalian.events import CampaignCancelled, publish
from thalian.models import Membership, Organization, User
from thalian.permissions import Perm, has_perm
from thalian.tenancy import assert_same_organization
from thalian.text import single_line

from .models import (
    MAX_STAGES,
    Campaign,
    CampaignStage,
    CampaignStatus,
    DeadlineOutcome,
    Decision,
    DefaultOutcome,
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
    remediation_owners_clean,
)
from .selectors import (
    PRESETS,
    REVIEWER_ROLES,
    StaleApplication,
    scope_identity_kinds,
)


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
