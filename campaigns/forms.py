"""The campaign wizard and the lifecycle action forms."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.utils import timezone

from entitlements.models import IdentityKind
from thalian.models import Organization

from . import selectors
from .models import (
    MAX_STAGES,
    DeadlineOutcome,
    Decision,
    DefaultOutcome,
    Recurrence,
    ReviewerStrategy,
    default_advance_on,
)
from .scheduling import ScheduleError, schedule_clean

PRESET_CHOICES = [("", "All identities"), ("non_human", "Non-human identities only (service accounts, bots, "
                                                         "AI agents)"), ("ai_agents", "AI agents only")]

# Service error fields -> wizard fields.
ERROR_FIELDS = {
    "scope.applications": "applications",
    "scope.categories": "categories",
    "scope.departments": "departments",
    "scope.identity_kinds": "identity_kinds",
    "scope.preset": "preset",
    "scope.min_users": "min_users",
    "scope.sanctioned_only": "sanctioned_only",
    "scope.privileged_only": "privileged_only",
}


class CampaignForm(forms.Form):
    title = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    due_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    # Step 1: applications.
    applications = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple(attrs={"class": "picker-option"}),
        help_text="Leave empty to select applications by the filters below (or all of them).",
    )
    categories = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    sanctioned_only = forms.BooleanField(required=False, label="Sanctioned applications only")
    min_users = forms.IntegerField(required=False, min_value=1, label="At least this many users")
    # Step 2: identities.
    departments = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    identity_kinds = forms.MultipleChoiceField(
        required=False, choices=IdentityKind.choices, widget=forms.CheckboxSelectMultiple, label="Identity kinds"
    )
    preset = forms.ChoiceField(required=False, choices=PRESET_CHOICES, widget=forms.RadioSelect,
                               label="Identity preset")
    privileged_only = forms.BooleanField(required=False, label="Privileged access only")
    # Step 3: reviewers.
    reviewer_strategy = forms.ChoiceField(choices=ReviewerStrategy.choices, widget=forms.RadioSelect,
                                          initial=ReviewerStrategy.APPLICATION_OWNER)
    reviewers = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label="Named reviewers",
        help_text="For named members: one line per application as “Application: a@example.com, b@example.com”; "
                  "a line of e-mails alone applies to every other application. Several reviewers share an "
                  "application's items.",
    )
    fallback_reviewer = forms.ChoiceField(
        help_text="Gets the items the strategy cannot resolve, and items that would be self-reviews."
    )
    remediation_owners = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Remediation owners",
        help_text="Who removes revoked access, one line per application as “Application: it-ops@example.com”. "
                  "Other applications: their remediation owner, else their owner.",
    )
    fallback_remediation_owner = forms.ChoiceField(
        required=False, label="Fallback remediation owner",
        help_text="Removes revoked access of applications whose owner is not a member who can. Empty: the "
                  "fallback reviewer.",
    )
    # Step 4: options.
    reason_required = forms.BooleanField(required=False, initial=True,
                                         label="Require a reason for revoke and exception")
    default_outcome = forms.ChoiceField(choices=DefaultOutcome.choices, initial=DefaultOutcome.NONE,
                                        label="When the campaign is closed, undecided items are")
    # Step 6: schedule.
    launch_at = forms.DateTimeField(
        required=False, label="Launch at", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Leave empty to launch by hand; a future time schedules the campaign.",
    )
    recurrence = forms.ChoiceField(choices=Recurrence.choices, required=False, label="Repeat")
    recurrence_every_days = forms.IntegerField(required=False, min_value=1, label="Every N days",
                                               help_text="Only for “Every N days”.")
    duration_days = forms.IntegerField(
        required=False, min_value=1, label="Duration (days)",
        help_text="Sets each occurrence's due date from its launch date; required when the campaign repeats.",
    )

    stage_count = forms.TypedChoiceField(
        coerce=int, choices=[(n, str(n)) for n in range(1, MAX_STAGES + 1)], initial=1, required=False,
        empty_value=1, label="Review stages",
        help_text="With more than one, items go from stage to stage: each stage's decision that moves an item on "
                  "hands it to the next stage's reviewers; any other decision is final.",
    )

    def __init__(self, *args, organization: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_stage_fields()
        choices = selectors.scope_choices(organization=organization)
        self.fields["applications"].choices = [(n, n) for n in choices["applications"]]
        self.fields["categories"].choices = [(c, c) for c in choices["categories"]]
        self.fields["departments"].choices = [(d, d) for d in choices["departments"]]
        members = [
            (m.user.email, f"{m.user.email} ({m.get_role_display()})")
            for m in selectors.reviewer_memberships(organization=organization)
        ]
        self.fields["fallback_reviewer"].choices = [("", "Choose a member"), *members]
        for number in range(2, MAX_STAGES + 1):
            self.fields[f"stage{number}_fallback_reviewer"].choices = [("", "Choose a member"), *members]
        self.fields["fallback_remediation_owner"].choices = [("", "Same as the fallback reviewer"), *members]
        if not self.is_bound and "due_date" not in self.initial:
            self.initial["due_date"] = timezone.localdate() + dt.timedelta(days=14)

    def _add_stage_fields(self) -> None:
        """Stage 1 is the reviewer fields above plus its length, what moves an item on and its deadline outcome;
        stages 2..MAX_STAGES each have all of them."""
        for number in range(1, MAX_STAGES + 1):
            p = f"stage{number}_"
            if number > 1:
                self.fields[p + "reviewer_strategy"] = forms.ChoiceField(
                    choices=ReviewerStrategy.choices, initial=ReviewerStrategy.MEMBERS, required=False,
                    widget=forms.RadioSelect, label=f"Stage {number} reviewers")
                self.fields[p + "reviewers"] = forms.CharField(
                    required=False, widget=forms.Textarea(attrs={"rows": 2}), label=f"Members named for stage {number}",
                    help_text="For named members, as above.")
                self.fields[p + "fallback_reviewer"] = forms.ChoiceField(
                    required=False, label=f"Fallback for stage {number}",
                    help_text="Also takes items whose reviewer decided them in an earlier stage.")
                self.fields[p + "show_earlier_decisions"] = forms.BooleanField(
                    required=False, initial=True, label=f"Stage {number} reviewers see earlier stages' decisions")
            self.fields[p + "duration_days"] = forms.IntegerField(
                required=False, min_value=1, initial=7, label=f"Stage {number} length (days)",
                help_text="Counted from when an item enters the stage.")
            self.fields[p + "advance_on"] = forms.MultipleChoiceField(
                required=False, choices=Decision.choices, initial=default_advance_on(),
                widget=forms.CheckboxSelectMultiple, label=f"Decisions that move an item on from stage {number}",
                help_text="The others are final. In the last stage every decision is final.")
            self.fields[p + "deadline_outcome"] = forms.ChoiceField(
                choices=DeadlineOutcome.choices, initial=DeadlineOutcome.CARRY_FORWARD, required=False,
                label=f"Undecided at the stage {number} deadline",
                help_text="In the last stage, carrying forward escalates to the stage's fallback reviewer.")

    def stage_blocks(self) -> list[tuple[int, list]]:
        """The fields of each stage for the template: (number, bound fields); stage 1's are its extras."""
        names = ("reviewer_strategy", "reviewers", "fallback_reviewer", "duration_days", "advance_on",
                 "show_earlier_decisions", "deadline_outcome")
        return [
            (number, [self[f"stage{number}_{n}"] for n in names if f"stage{number}_{n}" in self.fields])
            for number in range(1, MAX_STAGES + 1)
        ]

    def stages(self) -> list[dict] | None:
        """The stages for the service (None for a single-stage campaign: the reviewer fields are enough)."""
        data = self.cleaned_data
        count = data.get("stage_count") or 1
        if count < 2:
            return None
        stages = []
        for number in range(1, count + 1):
            p = f"stage{number}_"
            if number == 1:
                strategy, reviewers, fallback = (data["reviewer_strategy"], data.get("reviewers"),
                                                 data.get("fallback_reviewer"))
            else:
                strategy = data.get(p + "reviewer_strategy") or ReviewerStrategy.MEMBERS
                reviewers = self._named(data.get(p + "reviewers") or "")
                fallback = data.get(p + "fallback_reviewer")
            stages.append({
                "reviewer_strategy": strategy,
                "reviewers": (reviewers or None) if strategy == ReviewerStrategy.MEMBERS else None,
                "fallback_reviewer": fallback,
                "duration_days": data.get(p + "duration_days"),
                "advance_on": list(data.get(p + "advance_on") or []),
                "show_earlier_decisions": bool(data.get(p + "show_earlier_decisions", True)) if number > 1 else True,
                "deadline_outcome": data.get(p + "deadline_outcome") or DeadlineOutcome.CARRY_FORWARD,
            })
        return stages

    @classmethod
    def initial_from(cls, campaign) -> dict:
        scope = campaign.scope or {}
        lines = []
        for key, emails in (campaign.reviewers or {}).items():
            lines.append(", ".join(emails) if key == "*" else f"{key}: {', '.join(emails)}")
        stage_initial: dict = {"stage_count": campaign.stage_count}
        for stage in campaign.stages.select_related("fallback_reviewer__user") if campaign.is_multi_stage else []:
            p = f"stage{stage.number}_"
            stage_initial.update({
                p + "duration_days": stage.duration_days, p + "advance_on": stage.advance_on,
                p + "deadline_outcome": stage.deadline_outcome,
            })
            if stage.number > 1:
                stage_initial.update({
                    p + "reviewer_strategy": stage.reviewer_strategy,
                    p + "reviewers": "\n".join(
                        ", ".join(emails) if key == "*" else f"{key}: {', '.join(emails)}"
                        for key, emails in (stage.reviewers or {}).items()
                    ),
                    p + "fallback_reviewer": stage.fallback_reviewer.user.email,
                    p + "show_earlier_decisions": stage.show_earlier_decisions,
                })
        return {
            **stage_initial,
            "title": campaign.title, "description": campaign.description, "due_date": campaign.due_date,
            "applications": scope.get("applications") or [], "categories": scope.get("categories") or [],
            "sanctioned_only": scope.get("sanctioned_only"), "min_users": scope.get("min_users"),
            "departments": scope.get("departments") or [], "identity_kinds": scope.get("identity_kinds") or [],
            "preset": scope.get("preset") or "", "privileged_only": scope.get("privileged_only"),
            "reviewer_strategy": campaign.reviewer_strategy, "reviewers": "\n".join(lines),
            "fallback_reviewer": campaign.fallback_reviewer.user.email if campaign.fallback_reviewer else "",
            "remediation_owners": "\n".join(f"{app}: {email}" for app, email in (campaign.remediation_owners or {}).items()),
            "fallback_remediation_owner": (
                campaign.fallback_remediation_owner.user.email if campaign.fallback_remediation_owner else ""
            ),
            "reason_required": campaign.reason_required, "default_outcome": campaign.default_outcome,
            "launch_at": campaign.launch_at, "recurrence": campaign.recurrence,
            "recurrence_every_days": campaign.recurrence_every_days, "duration_days": campaign.duration_days,
        }

    def scope(self) -> dict:
        data = self.cleaned_data
        return {
            "applications": data.get("applications") or [],
            "categories": data.get("categories") or [],
            "sanctioned_only": bool(data.get("sanctioned_only")),
            "min_users": data.get("min_users"),
            "departments": data.get("departments") or [],
            "identity_kinds": data.get("identity_kinds") or [],
            "preset": data.get("preset") or None,
            "privileged_only": bool(data.get("privileged_only")),
        }

    def clean_reviewers(self) -> dict[str, list[str]]:
        return self._named(self.cleaned_data.get("reviewers") or "")

    @staticmethod
    def _named(text: str) -> dict[str, list[str]]:
        named: dict[str, list[str]] = {}
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            app, sep, emails = line.rpartition(":")
            key = app.strip() if sep else "*"
            values = [e.strip() for e in emails.replace(";", ",").replace(" ", ",").split(",") if e.strip()]
            named.setdefault(key, []).extend(values)
        return named

    def clean_remediation_owners(self) -> dict[str, str]:
        owners: dict[str, str] = {}
        for number, line in enumerate((self.cleaned_data.get("remediation_owners") or "").splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            app, sep, email = line.rpartition(":")
            if not sep or not app.strip() or not email.strip():
                raise forms.ValidationError(f"Line {number}: write “Application: e-mail”.")
            owners[app.strip()] = email.strip()
        return owners

    def clean(self):
        cleaned = super().clean()
        schedule = {key: cleaned.get(key) for key in ("launch_at", "recurrence", "recurrence_every_days",
                                                       "duration_days", "due_date")}
        try:
            cleaned.update(schedule_clean(schedule, creating=True))
        except ScheduleError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return cleaned

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        strategy = data["reviewer_strategy"]
        return {
            "title": data["title"],
            "description": data.get("description") or "",
            "due_date": data["due_date"],
            "scope": self.scope(),
            "reviewer_strategy": strategy,
            "reviewers": data.get("reviewers") if strategy == ReviewerStrategy.MEMBERS else None,
            "fallback_reviewer": data["fallback_reviewer"],
            "remediation_owners": data.get("remediation_owners") or {},
            "fallback_remediation_owner": data.get("fallback_remediation_owner") or None,
            "reason_required": bool(data.get("reason_required")),
            "default_outcome": data["default_outcome"],
            "launch_at": data.get("launch_at"),
            "recurrence": data.get("recurrence") or "",
            "recurrence_every_days": data.get("recurrence_every_days"),
            "duration_days": data.get("duration_days"),
            "stages": self.stages(),
        }

    def summary(self) -> list[tuple[str, str]]:
        """What the campaign will be, in words, for the wizard's last step (tolerates fields not filled yet)."""
        data = getattr(self, "cleaned_data", {})

        def listed(key: str, everything: str) -> str:
            values = data.get(key) or []
            return ", ".join(str(v) for v in values) if values else everything

        labels = dict(IdentityKind.choices)
        kinds = ", ".join(labels.get(k, k) for k in data.get("identity_kinds") or []) or dict(PRESET_CHOICES).get(
            data.get("preset") or "", "All identities"
        )
        filters = [text for key, text in (("sanctioned_only", "sanctioned only"), ("privileged_only",
                                                                                    "privileged access only"))
                   if data.get(key)]
        if data.get("min_users"):
            filters.append(f"at least {data['min_users']} users")
        strategy = dict(ReviewerStrategy.choices).get(data.get("reviewer_strategy") or "", "—")
        schedule = "Launch by hand"
        if data.get("launch_at"):
            schedule = f"Launches {timezone.localtime(data['launch_at']):%Y-%m-%d %H:%M}"
        if data.get("recurrence"):
            schedule += f", repeats {dict(Recurrence.choices).get(data['recurrence'], data['recurrence']).lower()}"
        return [
            ("Title", data.get("title") or "—"),
            ("Due", f"{data['due_date']:%Y-%m-%d}" if data.get("due_date") else "—"),
            ("Applications", listed("applications", "All") + (f" ({'; '.join(filters)})" if filters else "")),
            ("Categories", listed("categories", "All")),
            ("Departments", listed("departments", "All")),
            ("Identities", kinds),
            ("Reviewers", strategy if (data.get("stage_count") or 1) < 2 else f"Stage 1: {strategy}"),
            ("Fallback reviewer", data.get("fallback_reviewer") or "—"),
            *self._stage_summary(data),
            ("Reason required", "Yes" if data.get("reason_required") else "No"),
            ("Undecided at close", dict(DefaultOutcome.choices).get(data.get("default_outcome") or "", "—")),
            ("Schedule", schedule),
        ]

    def _stage_summary(self, data) -> list[tuple[str, str]]:
        count = data.get("stage_count") or 1
        if count < 2:
            return []
        labels = dict(ReviewerStrategy.choices)
        rows = [("Stages", str(count))]
        for number in range(2, count + 1):
            p = f"stage{number}_"
            strategy = labels.get(data.get(p + "reviewer_strategy") or "", "—")
            named = ", ".join(e for emails in self._named(data.get(p + "reviewers") or "").values() for e in emails)
            rows.append((f"Stage {number}", f"{strategy}{f' ({named})' if named else ''}; fallback "
                                            f"{data.get(p + 'fallback_reviewer') or '—'}; "
                                            f"{data.get(p + 'duration_days') or '—'} days"))
        return rows

    def add_service_error(self, exc) -> None:
        field = exc.field or ""
        if field.startswith("stages["):
            index, _sep, key = field[len("stages["):].partition("].")
            number = int(index) + 1 if index.isdigit() else 1
            field = key if number == 1 and key in ("reviewer_strategy", "reviewers", "fallback_reviewer") else (
                f"stage{number}_{key}")
        field = ERROR_FIELDS.get(field, field)
        self.add_error(field if field in self.fields else None, exc.message)


class ScopePreviewForm(CampaignForm):
    """The wizard's scope fields alone, for the live preview (other fields may still be empty)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("title", "due_date", "reviewer_strategy", "fallback_reviewer", "default_outcome"):
            self.fields[name].required = False


class LaunchForm(forms.Form):
    freshness_override_reason = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Reason for launching on stale data",
        help_text="Admins only. Recorded on the campaign and in the audit log.",
    )


class ConfirmRemovedForm(forms.Form):
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=4000,
        label="How was the access removed?",
        help_text="Recorded with your name in the audit log and in the evidence as “manually confirmed”.",
    )


class CancelForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), label="Reason for cancelling")


class ReassignForm(forms.Form):
    from_reviewer = forms.ChoiceField(label="From")
    to_reviewer = forms.ChoiceField(label="To")
    reason = forms.CharField(required=False, max_length=200, label="Reason")

    def __init__(self, *args, sources, targets, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["from_reviewer"].choices = [("", "Choose")] + [(str(m.pk), m.user.email) for m in sources] + [
            ("unassigned", "Unassigned items")]
        self.fields["to_reviewer"].choices = [("", "Choose")] + [(str(m.pk), m.user.email) for m in targets]
