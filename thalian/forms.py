from __future__ import annotations

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm

from .audit import client_ip
from .auth import LoginThrottled, login_failure_record, login_is_throttled
from .models import Organization, Plan, TicketTrigger, default_decision_quality_thresholds
from .permissions import GRANTABLE_BY, ROLE_CHOICES, Role

THROTTLED_MESSAGE = "Too many failed sign-in attempts. Try again in a few minutes."


class LoginForm(AuthenticationForm):
    """E-mail sign-in that tells the person when repeated failures have locked the address out."""

    username = forms.EmailField(label="E-mail", widget=forms.EmailInput(attrs={"autofocus": True}))
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "The e-mail address and password do not match an account.",
        "throttled": THROTTLED_MESSAGE,
    }

    def _throttled(self) -> bool:
        email = (self.cleaned_data.get("username") or "").strip().lower()
        ip = client_ip(self.request)
        return login_is_throttled(email, ip)

    def clean(self):
        if self._throttled():
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            return super().clean()
        except LoginThrottled:
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled") from None
        except forms.ValidationError:
            # The failure that reaches the limit already locks the address: say so now.
            if self._throttled():
                raise forms.ValidationError(self.error_messages["throttled"], code="throttled") from None
            raise


class ThrottledPasswordChangeForm(PasswordChangeForm):
    """A wrong current password counts as a failed sign-in of the address, so this form is no way around the
    sign-in throttle for someone holding a session."""

    def __init__(self, user, *args, request=None, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.request = request

    def clean_old_password(self):
        email, ip = self.user.email, client_ip(self.request)
        if login_is_throttled(email, ip):
            raise forms.ValidationError(THROTTLED_MESSAGE, code="throttled")
        try:
            return super().clean_old_password()
        except forms.ValidationError:
            login_failure_record(email, ip)
            if login_is_throttled(email, ip):
                raise forms.ValidationError(THROTTLED_MESSAGE, code="throttled") from None
            raise


def grantable_role_choices(actor_role: str) -> list[tuple[str, str]]:
    allowed = GRANTABLE_BY.get(Role(actor_role), set())
    return [(value, label) for value, label in ROLE_CHOICES if Role(value) in allowed]


class InviteForm(forms.Form):
    email = forms.EmailField(label="E-mail address")
    role = forms.ChoiceField(label="Role", choices=ROLE_CHOICES, initial=Role.VIEWER)

    def __init__(self, *args, actor_role: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = grantable_role_choices(actor_role)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=ROLE_CHOICES)

    def __init__(self, *args, actor_role: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = grantable_role_choices(actor_role)


class AcceptInvitationForm(forms.Form):
    """For a person without an account yet: their name and a password."""

    name = forms.CharField(label="Your name", max_length=200, required=False)
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(
        label="Password again", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def __init__(self, *args, email: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self):
        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords differ.")
        elif p1:
            from .models import User

            try:
                password_validation.validate_password(p1, User(email=self.email, name=data.get("name", "")))
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data


class PatternsField(forms.CharField):
    """One pattern per line in a textarea; a list in Python."""

    widget = forms.Textarea(attrs={"rows": 4})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(value)
        return value

    def to_python(self, value):
        lines = [line.strip() for line in (value or "").splitlines()]
        return [line for line in lines if line]


class OrganizationSettingsForm(forms.ModelForm):
    privileged_patterns = PatternsField(
        label="Privileged role patterns",
        required=False,
        help_text="One per line. Roles or entitlement names containing any of these words are flagged privileged.",
    )

    class Meta:
        model = Organization
        fields = [
            "name", "plan", "dormant_days", "privileged_patterns", "freshness_days", "ticket_trigger",
            "exception_default_days", "exception_max_days", "guest_reviewers_enabled",
            "access_requests_for_others", "access_request_max_days",
        ]
        labels = {
            "exception_default_days": "Exceptions expire after (days, when the reviewer gives no date)",
            "exception_max_days": "Longest exception allowed (days)",
            "dormant_days": "Dormant after (days without use)",
            "freshness_days": "Inventory freshness limit (days)",
            "ticket_trigger": "Open remediation tickets",
            "guest_reviewers_enabled": "Guest reviewers",
            "access_requests_for_others": "Access requests for others",
            "access_request_max_days": "Longest temporary access (days)",
        }
        help_texts = {
            "guest_reviewers_enabled": "Managers and application owners who are not members review their items "
            "through a personal e-mailed link (Pro and Enterprise).",
            "plan": "Access reviews need the Pro or Enterprise plan.",
            "freshness_days": "Campaigns warn when inventory data is older than this.",
            "access_requests_for_others": "Managers may request access for their reports, admins and analysts for "
            "anyone; otherwise members request access for themselves only.",
            "access_request_max_days": "A temporary grant may not end later than this many days after the request.",
        }

    # Decision-quality thresholds, one field each; checked and merged by organization_update.
    dq_burst_min_decisions = forms.IntegerField(
        required=False, label="Flag a burst of at least (single decisions)", min_value=2, max_value=100000)
    dq_burst_max_median_seconds = forms.FloatField(
        required=False, label="… at a median gap under (seconds)", min_value=0.1, max_value=3600)
    dq_burst_min_approve_percent = forms.FloatField(
        required=False, label="… with at least this share approved (%)", min_value=0, max_value=100)
    dq_burst_gap_seconds = forms.FloatField(
        required=False, label="Decisions closer than this form one burst (seconds)", min_value=1, max_value=3600)
    dq_privileged_min_seconds = forms.FloatField(
        required=False, label="Flag privileged access approved sooner than (seconds after the previous decision)",
        min_value=0, max_value=3600)
    dq_flag_bulk_recommended_revoke = forms.TypedChoiceField(
        required=False, label="Flag bulk approvals that included items recommended for revoke",
        choices=[(True, "Yes"), (False, "No")], coerce=lambda value: value in (True, "True"), empty_value=None)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        thresholds = {**default_decision_quality_thresholds(), **(self.instance.decision_quality_thresholds or {})}
        for key, value in thresholds.items():
            if f"dq_{key}" in self.fields:
                self.initial.setdefault(f"dq_{key}", value)
        self.fields["plan"].choices = Plan.choices
        self.fields["ticket_trigger"].choices = TicketTrigger.choices
        self.fields["dormant_days"].min_value = 1
        self.fields["freshness_days"].min_value = 1
        for name in ("dormant_days", "freshness_days", "exception_default_days", "exception_max_days",
                     "access_request_max_days"):
            self.fields[name].widget.attrs["min"] = 1
            self.fields[name].validators.append(_at_least_one)

    def service_changes(self) -> dict:
        """What organization_update receives: the model fields and the decision-quality thresholds given
        (an empty threshold keeps its current value)."""
        changes = {f: self.cleaned_data[f] for f in self.Meta.fields}
        thresholds = {
            name.removeprefix("dq_"): value
            for name, value in self.cleaned_data.items()
            if name.startswith("dq_") and value is not None
        }
        if thresholds:
            changes["decision_quality_thresholds"] = thresholds
        return changes


def _at_least_one(value):
    if value is not None and value < 1:
        raise forms.ValidationError("Must be at least 1 day.")


class DeleteOrganizationForm(forms.Form):
    confirm = forms.CharField(label="Type the organization identifier to confirm")


class TokenCreateForm(forms.Form):
    name = forms.CharField(label="Token name", max_length=100, help_text="What the token is for, e.g. 'SIEM export'.")


class AuditFilterForm(forms.Form):
    action = forms.CharField(
        label="Action", required=False, max_length=80, widget=forms.TextInput(attrs={"list": "audit-actions"})
    )
    actor = forms.CharField(label="Actor e-mail contains", required=False, max_length=254)
    date_from = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", "The end date is before the start date.")
        return data
