"""Scheduled and recurring campaigns: parsing the schedule, computing occurrences, launching when due.

A recurring campaign is a series: the first campaign is the series root, every later occurrence is a new
campaign with `series` pointing at the root. When an occurrence's launch time comes, its scope filters are
evaluated afresh; if they match no application the occurrence is archived with the reason
"no applications matched". Either way the next occurrence is scheduled.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from campaigns.models import Campaign, CampaignStage, CampaignStatus, Recurrence
from entitlements.models import Application
from thalian.audit import audit_record

NO_APPLICATIONS_MATCHED = "no applications matched"
NO_ENTITLEMENTS_MATCHED = "no entitlements matched"
MONTHS = {Recurrence.MONTHLY: 1, Recurrence.QUARTERLY: 3, Recurrence.SEMIANNUAL: 6, Recurrence.YEARLY: 12}
MAX_EVERY_DAYS = 3660
MAX_DURATION_DAYS = 366


class ScheduleError(ValueError):
    """Invalid schedule input; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Schedule:
    launch_at: dt.datetime | None  # None: launch now
    recurrence: str  # "" when it does not recur
    recurrence_every_days: int | None
    duration_days: int | None

    @property
    def is_future(self) -> bool:
        return self.launch_at is not None and self.launch_at > timezone.now()

    def due_date(self, start: dt.datetime | None = None) -> dt.date | None:
        if not self.duration_days:
            return None
        start = start or self.launch_at or timezone.now()
        return timezone.localdate(start) + dt.timedelta(days=self.duration_days)


def parse_recurrence(value) -> tuple[str, int | None]:
    """API and form input: "monthly" | "quarterly" | "semiannual" | "yearly" | {"every_days": N} | None/""."""
    if value in (None, "", Recurrence.NONE):
        return "", None
    if isinstance(value, dict):
        if set(value) != {"every_days"}:
            raise ScheduleError("recurrence", 'an object must be exactly {"every_days": N}')
        days = value["every_days"]
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_EVERY_DAYS:
            raise ScheduleError("recurrence", f"every_days must be a whole number from 1 to {MAX_EVERY_DAYS}")
        return Recurrence.EVERY_DAYS, days
    if isinstance(value, str) and value in MONTHS:
        return value, None
    raise ScheduleError(
        "recurrence", 'must be "monthly", "quarterly", "semiannual", "yearly" or {"every_days": N}'
    )


def parse_schedule(
    *, launch_at=None, recurrence=None, duration_days=None, now: dt.datetime | None = None
) -> Schedule:
    now = now or timezone.now()
    parsed_launch: dt.datetime | None = None
    if launch_at not in (None, ""):
        if isinstance(launch_at, str):
            try:
                parsed_launch = dt.datetime.fromisoformat(launch_at.replace("Z", "+00:00"))
            except ValueError as exc:
                raise ScheduleError(
                    "launch_at", "must be an ISO 8601 date and time, e.g. 2027-01-15T09:00:00Z"
                ) from exc
        elif isinstance(launch_at, dt.datetime):
            parsed_launch = launch_at
        else:
            raise ScheduleError("launch_at", "must be an ISO 8601 date and time")
        if timezone.is_naive(parsed_launch):
            parsed_launch = timezone.make_aware(parsed_launch)
        if parsed_launch <= now:
            parsed_launch = None  # a past or present time means: launch now
    kind, every = parse_recurrence(recurrence)
    if duration_days in (None, ""):
        duration = None
    else:
        try:
            duration = int(duration_days)
        except (TypeError, ValueError) as exc:
            raise ScheduleError("duration_days", "must be a whole number of days") from exc
        if isinstance(duration_days, bool) or not 1 <= duration <= MAX_DURATION_DAYS:
            raise ScheduleError("duration_days", f"must be from 1 to {MAX_DURATION_DAYS} days")
    if kind and not duration:
        raise ScheduleError("duration_days", "is required for a recurring campaign (it sets each due date)")
    if kind == Recurrence.EVERY_DAYS and duration and duration > every:
        raise ScheduleError("duration_days", f"cannot be longer than the {every}-day recurrence")
    if kind in MONTHS and duration and duration > MONTHS[kind] * 28:
        raise ScheduleError("duration_days", "cannot be longer than the recurrence period")
    return Schedule(parsed_launch, kind, every, duration)


def add_months(value: dt.datetime, months: int) -> dt.datetime:
    month_index = value.month - 1 + months
    year, month = value.year + month_index // 12, month_index % 12 + 1
    day = min(value.day, calendar.monthrange(year, month)[1])
    return value.replace(year=year, month=month, day=day)


def occurrence_at(*, anchor: dt.datetime, recurrence: str, every_days: int | None, n: int) -> dt.datetime:
    """The n-th occurrence after the anchor, computed from the anchor so month-end dates do not drift."""
    if recurrence == Recurrence.EVERY_DAYS:
        return anchor + dt.timedelta(days=every_days * n)
    return add_months(anchor, MONTHS[recurrence] * n)


def next_occurrence(*, campaign: Campaign, after: dt.datetime) -> dt.datetime | None:
    """The first occurrence of the campaign's series strictly after `after` (missed ones are not piled up)."""
    if not campaign.recurrence:
        return None
    root = campaign.series or campaign
    # A series launched by hand ("launch now") is anchored at its first launch.
    anchor = root.launch_at or root.launched_at or campaign.launch_at or campaign.launched_at
    if anchor is None:
        return None
    n = 1
    while True:
        candidate = occurrence_at(
            anchor=anchor, recurrence=campaign.recurrence, every_days=campaign.recurrence_every_days, n=n
        )
        if candidate > after:
            return candidate
        n += 1


def campaigns_due_for_launch(*, now: dt.datetime) -> list[tuple[int, str]]:
    """(organization_id, id) of scheduled campaigns whose time has come. Platform code: spans organizations."""
    return [
        (org_id, str(pk))
        for org_id, pk in Campaign.unscoped.filter(status=CampaignStatus.SCHEDULED, launch_at__lte=now)
        .order_by("launch_at")
        .values_list("organization_id", "pk")[:500]
    ]


COPIED_FIELDS = (
    "title",
    "description",
    "scope",
    "reviewer_strategy",
    "reviewers",
    "fallback_reviewer_id",
    "reason_required",
    "default_outcome",
    "created_by_id",
    "recurrence",
    "recurrence_every_days",
    "duration_days",
    "stage_count",
)


def occurrence_schedule_next(*, campaign: Campaign, now: dt.datetime) -> Campaign | None:
    launch_at = next_occurrence(
        campaign=campaign, after=max(now, campaign.launch_at or campaign.launched_at or now)
    )
    if launch_at is None:
        return None
    root = campaign.series or campaign
    existing = Campaign.objects.filter(series=root, launch_at=launch_at).first()
    if existing is not None or (root.launch_at == launch_at):
        return existing
    values = {name: getattr(campaign, name) for name in COPIED_FIELDS}
    occurrence = Campaign.objects.create(
        organization_id=campaign.organization_id,
        series=root,
        launch_at=launch_at,
        status=CampaignStatus.SCHEDULED,
        due_date=timezone.localdate(launch_at) + dt.timedelta(days=campaign.duration_days or 14),
        **values,
    )
    CampaignStage.objects.bulk_create([
        CampaignStage(organization_id=occurrence.organization_id, campaign=occurrence, number=s.number,
                      reviewer_strategy=s.reviewer_strategy, reviewers=s.reviewers,
                      fallback_reviewer_id=s.fallback_reviewer_id, duration_days=s.duration_days,
                      advance_on=s.advance_on, show_earlier_decisions=s.show_earlier_decisions,
                      deadline_outcome=s.deadline_outcome)
        for s in CampaignStage.objects.filter(campaign=campaign)
    ])
    audit_record(
        action="campaign_occurrence_scheduled",
        organization_id=campaign.organization_id,
        target=occurrence,
        system=True,
        details={"series": str(root.pk), "launch_at": launch_at.isoformat(), "after": str(campaign.pk)},
    )
    return occurrence


def series_ensure_next(*, campaign: Campaign, now: dt.datetime | None = None) -> Campaign | None:
    """After a recurring campaign launches (by hand or on schedule), make sure its next occurrence exists."""
    if not campaign.recurrence:
        return None
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        return occurrence_schedule_next(campaign=locked, now=now or timezone.now())


def _matches_nothing(campaign: Campaign) -> str:
    """The archive reason when the campaign's filters select nothing right now, else ""."""
    from campaigns.selectors import entitlements_in_scope, scope_application_ids

    organization = campaign.organization
    app_ids = scope_application_ids(organization=organization, scope=campaign.scope)
    if app_ids is not None and not app_ids:
        return NO_APPLICATIONS_MATCHED
    if app_ids is None and not Application.objects.filter(organization=organization).exists():
        return NO_APPLICATIONS_MATCHED
    if not entitlements_in_scope(
        organization=organization, scope=campaign.scope, application_ids=app_ids
    ).exists():
        return NO_ENTITLEMENTS_MATCHED
    return ""


def campaign_occurrence_launch(*, campaign: Campaign, now: dt.datetime) -> str:
    """Launch one due scheduled campaign (or archive it when its filters match nothing) and schedule the
    next occurrence. The row lock plus the status check make a second tick or worker a no-op."""
    from campaigns.launch import campaign_launch
    from campaigns.services import CampaignError

    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().select_related("organization").get(pk=campaign.pk)
        if (
            campaign.status != CampaignStatus.SCHEDULED
            or campaign.launch_at is None
            or campaign.launch_at > now
        ):
            return "skipped"
        next_campaign = occurrence_schedule_next(campaign=campaign, now=now)
        next_at = next_campaign.launch_at.isoformat() if next_campaign else None
        if campaign.duration_days:
            campaign.due_date = timezone.localdate(now) + dt.timedelta(days=campaign.duration_days)
        reason = _matches_nothing(campaign)
        if reason:
            campaign.status = CampaignStatus.ARCHIVED
            campaign.archived_reason = reason
            campaign.updated_at = now
            campaign.save(update_fields=["status", "archived_reason", "due_date", "updated_at"])
            audit_record(
                action="campaign_occurrence_skipped",
                organization_id=campaign.organization_id,
                target=campaign,
                system=True,
                details={"reason": reason, "next_launch_at": next_at},
            )
            return "archived"
        campaign.save(update_fields=["due_date"])
        try:
            with transaction.atomic():
                campaign_launch(campaign=campaign, actor=None)
        except CampaignError as exc:
            # Stale data, a missing fallback reviewer...: back to draft with the reason, for an admin to fix
            # and launch by hand. The next occurrence stays scheduled.
            Campaign.objects.filter(pk=campaign.pk).update(
                status=CampaignStatus.DRAFT,
                launch_error=f"Scheduled launch failed: {exc}"[:2000],
                updated_at=now,
            )
            audit_record(
                action="campaign_scheduled_launch_failed",
                organization_id=campaign.organization_id,
                target=campaign,
                system=True,
                details={"error": str(exc), "next_launch_at": next_at},
            )
            return "failed"
    return "launched"


def schedule_clean(values: dict, *, creating: bool) -> dict:
    """Shared by the campaign API and wizard: normalises `recurrence` (a name or {"every_days": N}) into
        `recurrence` + `recurrence_every_days`, checks the combination, and on creation derives `due_date` from
        `duration_days` when no due date is given (the combination is checked on creation; the campaign service
    validates edits). Raises ScheduleError naming the field."""
    values = dict(values)
    if "recurrence" in values:
        raw = values["recurrence"]
        if raw == Recurrence.EVERY_DAYS and values.get("recurrence_every_days"):
            raw = {"every_days": values["recurrence_every_days"]}
        kind, every = parse_recurrence(raw)
        values["recurrence"] = kind
        values["recurrence_every_days"] = every
    if creating:
        schedule = parse_schedule(
            launch_at=values.get("launch_at"),
            recurrence=(
                {"every_days": values["recurrence_every_days"]}
                if values.get("recurrence") == Recurrence.EVERY_DAYS
                else values.get("recurrence")
            ),
            duration_days=values.get("duration_days"),
        )
        if "launch_at" in values and values["launch_at"] not in (None, "") and schedule.launch_at is None:
            raise ScheduleError("launch_at", "must be in the future (leave it empty to launch now)")
        if not values.get("due_date"):
            due = schedule.due_date()
            if due is None:
                raise ScheduleError("due_date", "is required unless duration_days is given")
            values["due_date"] = due
    return values


DELETABLE_STATUSES = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)


class CampaignNotDeletable(ValueError):
    pass


def campaign_delete(*, campaign: Campaign, actor, request=None) -> None:
    """Delete a draft or scheduled campaign (deleting the scheduled occurrence of a series ends the series).
    Launched campaigns are records and stay."""
    from thalian.permissions import Perm, has_perm

    if not has_perm(actor.role, Perm.MANAGE_CAMPAIGNS):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied(f"Your role ({actor.role}) does not allow this.")
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status not in DELETABLE_STATUSES:
            raise CampaignNotDeletable(
                f"the campaign is {locked.get_status_display().lower()}: only draft and scheduled campaigns can be "
                "deleted (cancel an active one instead)"
            )
        audit_record(
            action="campaign_deleted",
            organization_id=locked.organization_id,
            actor=actor.user,
            request=request,
            target=locked,
            details={
                "status": locked.status,
                "launch_at": locked.launch_at.isoformat() if locked.launch_at else None,
                "recurrence": locked.recurrence,
            },
        )
        locked.delete()
