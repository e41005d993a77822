from __future__ import annotations

import re
from urllib.parse import urlsplit

from django import forms
from django.conf import settings

from thalian import netguard
from thalian.models import Membership

SLACK_CHANNEL_RE = re.compile(r"^[CG][A-Z0-9]{4,30}$")


def validate_webhook_url(value: str) -> str:
    parts = urlsplit(value)
    allowed = ("https", "http") if settings.ALLOW_INSECURE_HTTP_INTEGRATIONS else ("https",)
    if parts.scheme not in allowed or not parts.netloc:
        raise forms.ValidationError("Enter the https:// address of the Teams Workflows webhook.")
    try:
        netguard.check_url(value)
    except netguard.AddressNotAllowed as exc:
        raise forms.ValidationError(str(exc)) from exc
    return value


def validate_slack_token(value: str) -> str:
    if not value.startswith("xoxb-") or len(value) < 20 or any(c.isspace() for c in value):
        raise forms.ValidationError(
            "A Slack bot token starts with xoxb- (find it under OAuth & Permissions)."
        )
    return value


def validate_slack_channel(value: str) -> str:
    if value and not SLACK_CHANNEL_RE.match(value):
        raise forms.ValidationError("Enter the channel ID (like C0123ABCD), not its name.")
    return value


class NotificationSettingsForm(forms.Form):
    slack_bot_token = forms.CharField(
        label="Slack bot token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave empty to keep the stored token.",
    )
    clear_slack_bot_token = forms.BooleanField(label="Remove the Slack token", required=False)
    slack_channel_id = forms.CharField(
        label="Slack channel ID for campaign notices",
        required=False,
        max_length=40,
        help_text="Campaign-wide notices (overdue, cancelled, completed, remediation) go here.",
    )
    teams_webhook_url = forms.CharField(
        label="Microsoft Teams Workflows webhook URL",
        required=False,
        strip=True,
        max_length=2000,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave empty to keep the stored address.",
    )
    clear_teams_webhook_url = forms.BooleanField(label="Remove the Teams webhook", required=False)
    reminder_every_days = forms.IntegerField(
        label="Remind reviewers every N days (0: never)", min_value=0, max_value=90
    )
    reminder_days_before_due = forms.IntegerField(
        label="Last reminder N days before the due date (0: none)", min_value=0, max_value=90
    )
    escalate_after_days = forms.IntegerField(
        label="Escalate after N days overdue (0: never)", min_value=0, max_value=90
    )
    escalation_reassign = forms.BooleanField(
        label="When escalating, reassign the pending items to the manager or fallback reviewer",
        required=False,
    )
    fallback_reviewer = forms.ModelChoiceField(
        label="Fallback reviewer when a reviewer has no manager in Thalian",
        queryset=Membership.objects.none(),
        required=False,
    )

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["fallback_reviewer"].queryset = (
            Membership.objects.filter(organization=organization, user__is_active=True)
            .select_related("user")
            .order_by("user__email")
        )
        self.fields["fallback_reviewer"].label_from_instance = lambda m: (
            f"{m.user.email} ({m.get_role_display()})"
        )

    def clean_slack_bot_token(self):
        value = self.cleaned_data["slack_bot_token"]
        return validate_slack_token(value) if value else value

    def clean_slack_channel_id(self):
        return validate_slack_channel(self.cleaned_data["slack_channel_id"].strip())

    def clean_teams_webhook_url(self):
        value = self.cleaned_data["teams_webhook_url"]
        return validate_webhook_url(value) if value else value


class PreferenceForm(forms.Form):
    email = forms.BooleanField(label="E-mail", required=False)
    slack = forms.BooleanField(label="Slack direct messages", required=False)
    teams = forms.BooleanField(label="Microsoft Teams (posted to the organization's channel)", required=False)


class RemindForm(forms.Form):
    reviewer = forms.CharField(required=False, max_length=254)
    application = forms.CharField(required=False, max_length=200)


def _override_days_field(
    label: str, help_text: str = "Empty: the organization's default."
) -> forms.IntegerField:
    return forms.IntegerField(label=label, min_value=0, max_value=90, required=False, help_text=help_text)


class CampaignPolicyForm(forms.Form):
    reminder_every_days = _override_days_field("Remind reviewers every N days")
    reminder_days_before_due = _override_days_field("Last reminder N days before the due date")
    escalate_after_days = _override_days_field(
        "Escalate after N days overdue", help_text="Empty: the organization's default; 0: never."
    )
    escalation_reassign = forms.NullBooleanField(
        label="Reassign pending items when escalating", required=False
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["escalation_reassign"].widget.choices = [
            ("unknown", "Organization default"),
            ("true", "Yes"),
            ("false", "No"),
        ]
