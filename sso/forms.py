from __future__ import annotations

import json

from django import forms

from thalian.forms import LoginForm
from thalian.permissions import ROLE_CHOICES, Role

from .models import IdentityProvider, Protocol
from .selectors import password_login_refusal

JIT_ROLE_CHOICES = [(v, label) for v, label in ROLE_CHOICES if v != Role.SUPER_ADMIN]


class SsoLoginForm(LoginForm):
    """The password step of sign-in; refused before any password check when the address must use SSO."""

    error_messages = {**LoginForm.error_messages, "sso_required": "{message}"}

    def clean(self):
        refusal = password_login_refusal(self.cleaned_data.get("username") or "")
        if refusal:
            raise forms.ValidationError(refusal, code="sso_required")
        return super().clean()


class SsoSettingsForm(forms.Form):
    enforce_sso = forms.BooleanField(
        label="Require single sign-on for verified domains", required=False,
        help_text="Password sign-in is refused for addresses of verified domains, except break-glass super admins.",
    )
    jit_enabled = forms.BooleanField(
        label="Create memberships on first sign-in (just in time)", required=False,
        help_text="People of verified domains who sign in through an identity provider join with the default role.",
    )
    jit_default_role = forms.ChoiceField(label="Default role of new members", choices=JIT_ROLE_CHOICES)
    break_glass_emails = forms.CharField(
        label="Break-glass super admins", required=False, widget=forms.Textarea(attrs={"rows": 2}),
        help_text="E-mail addresses of super admins who may still sign in with a password, one per line.",
    )
    require_mfa_for_admins = forms.BooleanField(
        label="Require two-factor sign-in for admins and super admins", required=False,
        help_text="Applies to password sign-in; identity providers run their own second factor.",
    )

    def clean_break_glass_emails(self) -> list[str]:
        return [e.strip() for e in self.cleaned_data["break_glass_emails"].replace(",", "\n").splitlines() if e.strip()]


class ProviderForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100)
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)
    issuer = forms.URLField(
        label="Issuer or discovery URL", required=False, max_length=500, assume_scheme="https",
        help_text="For example https://login.example.com or …/.well-known/openid-configuration.",
    )
    client_id = forms.CharField(label="Client id", required=False, max_length=300)
    client_secret = forms.CharField(
        label="Client secret", required=False, widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="Stored encrypted. Leave empty to keep the saved secret.",
    )
    scopes = forms.CharField(label="Scopes", required=False, max_length=300, initial="openid email profile")
    metadata_url = forms.URLField(label="IdP metadata URL", required=False, max_length=500, assume_scheme="https")
    metadata_xml = forms.CharField(
        label="IdP metadata XML", required=False, widget=forms.Textarea(attrs={"rows": 6}),
        help_text="Paste the metadata when the identity provider does not publish it at a URL.",
    )
    groups_claim = forms.CharField(
        label="Groups claim or attribute", required=False, max_length=200,
        help_text="Optional: the claim (OIDC) or attribute (SAML) listing the person's groups.",
    )
    role_mapping = forms.CharField(
        label="Group to role mapping", required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line: group = role (admin, security_analyst, auditor, viewer, reviewer).",
    )

    def __init__(self, *args, protocol: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.protocol = protocol
        drop = ("metadata_url", "metadata_xml") if protocol == Protocol.OIDC else (
            "issuer", "client_id", "client_secret", "scopes"
        )
        for name in drop:
            del self.fields[name]

    def clean_role_mapping(self) -> dict:
        text = self.cleaned_data["role_mapping"].strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise forms.ValidationError("Not valid JSON.") from None
            return value
        mapping = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            group, sep, role = line.rpartition("=")
            if not sep or not group.strip() or not role.strip():
                raise forms.ValidationError(f"Line {number}: write it as group = role.")
            mapping[group.strip()] = role.strip()
        return mapping

    @staticmethod
    def initial_for(provider: IdentityProvider) -> dict:
        return {
            "name": provider.name, "enabled": provider.enabled, "issuer": provider.issuer,
            "client_id": provider.client_id, "scopes": provider.scopes, "metadata_url": provider.metadata_url,
            "metadata_xml": "" if provider.metadata_url else provider.metadata_xml,
            "groups_claim": provider.groups_claim,
            "role_mapping": "\n".join(f"{g} = {r}" for g, r in provider.role_mapping.items()),
        }


class DomainForm(forms.Form):
    domain = forms.CharField(label="Domain", max_length=253, help_text="For example example.com")


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code", max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}),
        help_text="The 6-digit code of your authenticator app, or one of your recovery codes.",
    )
