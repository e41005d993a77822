from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from entitlements.models import Application

from .clients import KINDS
from .models import ConnectionKind, ItsmConnection

SECRET_FIELDS = ("api_token", "password", "api_key")
TEXT_FIELDS = (
    "email",
    "username",
    "project_key",
    "issue_type",
    "table",
    "assignment_group",
    "group_id",
    "priority",
    "tags",
)


class ConnectionForm(forms.Form):
    """Parses the connection page; validation of what each kind needs lives in
    itsm_connections.connection_clean."""

    kind = forms.ChoiceField(choices=ConnectionKind.choices)
    name = forms.CharField(max_length=100)
    base_url = forms.CharField(label="Base URL", max_length=300, help_text="e.g. https://acme.atlassian.net")
    email = forms.CharField(label="E-mail (Jira, Zendesk)", required=False, max_length=254)
    api_token = forms.CharField(
        label="API token (Jira, Zendesk)", required=False, widget=forms.PasswordInput(render_value=False)
    )
    username = forms.CharField(label="User name (ServiceNow)", required=False, max_length=200)
    password = forms.CharField(
        label="Password (ServiceNow)", required=False, widget=forms.PasswordInput(render_value=False)
    )
    api_key = forms.CharField(
        label="API key (Freshservice)", required=False, widget=forms.PasswordInput(render_value=False)
    )
    project_key = forms.CharField(label="Project key (Jira)", required=False, max_length=50)
    issue_type = forms.CharField(label="Issue type (Jira)", required=False, max_length=100, initial="Task")
    table = forms.CharField(label="Table (ServiceNow)", required=False, max_length=80, initial="incident")
    assignment_group = forms.CharField(label="Assignment group (ServiceNow)", required=False, max_length=200)
    group_id = forms.CharField(label="Group ID (Freshservice, Zendesk)", required=False, max_length=20)
    priority = forms.CharField(
        label="Priority (Freshservice 1–4, Zendesk low/normal/high/urgent)", required=False, max_length=20
    )
    tags = forms.CharField(label="Tags (Zendesk, space separated)", required=False, max_length=500)
    is_default = forms.BooleanField(label="Default connection of the organization", required=False)
    applications = forms.ModelMultipleChoiceField(
        queryset=None,
        required=False,
        label="Applications that use this connection instead of the default",
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )

    def __init__(self, *args, connection: ItsmConnection | None = None, route_ids=(), **kwargs):
        self.connection = connection
        if connection is not None and "data" not in kwargs and not args:
            initial = {
                "kind": connection.kind,
                "name": connection.name,
                "base_url": connection.base_url,
                "is_default": connection.is_default,
                "applications": list(route_ids),
            }
            for name, value in connection.config.items():
                if name in TEXT_FIELDS and value not in (None, ""):
                    initial[name] = " ".join(value) if isinstance(value, list) else value
            kwargs["initial"] = initial
        super().__init__(*args, **kwargs)
        self.fields["applications"].queryset = Application.objects.order_by("name").only("id", "name")
        if connection is not None:
            self.fields["kind"].disabled = True
            self.fields["kind"].initial = connection.kind
            for name in KINDS[connection.kind].secret_fields:
                self.fields[
                    name
                ].help_text = "Stored. Leave empty to keep it; type a new value to replace it."

    def vendor_kinds(self) -> dict[str, str]:
        """Fields that only some kinds use -> the kinds, for showing only the chosen vendor's fields."""
        kinds: dict[str, list[str]] = {}
        for kind, spec in KINDS.items():
            for name in (*spec.identity_fields, *spec.secret_fields, *spec.setting_fields):
                kinds.setdefault(name, []).append(kind)
        return {name: ",".join(values) for name, values in kinds.items()}

    def service_data(self) -> dict:
        data = {name: self.cleaned_data.get(name) or "" for name in ("name", "base_url", *TEXT_FIELDS)}
        data["kind"] = self.connection.kind if self.connection else self.cleaned_data["kind"]
        data["is_default"] = bool(self.cleaned_data.get("is_default"))
        for name in SECRET_FIELDS:
            if self.cleaned_data.get(name):
                data[name] = self.cleaned_data[name]
        data["application_ids"] = [a.pk for a in self.cleaned_data.get("applications") or []]
        return data

    def apply_errors(self, exc: ValidationError) -> None:
        if hasattr(exc, "error_dict"):
            for field, errors in exc.message_dict.items():
                target = "applications" if field == "application_ids" else field
                for message in errors:
                    self.add_error(target if target in self.fields else None, message)
        else:
            for message in exc.messages:
                self.add_error(None, message)
