"""Single sign-on per organization (OIDC and SAML identity providers, verified domains, IdP subject links) and
two-factor sign-in (TOTP with recovery codes) for password logins."""

from __future__ import annotations

import secrets
import uuid

from django.db import models
from django.db.models import Q

from thalian.crypto import EncryptedTextField
from thalian.models import User
from thalian.permissions import ROLE_CHOICES, Role
from thalian.tenancy import TenantModel


class Protocol(models.TextChoices):
    OIDC = "oidc", "OpenID Connect"
    SAML = "saml", "SAML 2.0"


class SsoSettings(TenantModel):
    """One row per organization (created on first save); absent means the defaults below."""

    enforce_sso = models.BooleanField(default=False)
    jit_enabled = models.BooleanField(default=True)
    jit_default_role = models.CharField(max_length=20, choices=ROLE_CHOICES, default=Role.REVIEWER)
    # Super admins who may still sign in with a password while SSO is enforced (lower-case e-mails).
    break_glass_emails = models.JSONField(default=list, blank=True)
    require_mfa_for_admins = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization"], name="ssosettings_one_per_org")]


class IdentityProvider(TenantModel):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    protocol = models.CharField(max_length=10, choices=Protocol.choices)
    enabled = models.BooleanField(default=True)
    # OpenID Connect: the issuer or its discovery URL (…/.well-known/openid-configuration).
    issuer = models.URLField(max_length=500, blank=True)
    client_id = models.CharField(max_length=300, blank=True)
    client_secret = EncryptedTextField(blank=True)
    scopes = models.CharField(max_length=300, default="openid email profile", blank=True)
    # SAML 2.0: metadata from a URL (fetched on save and on Test connection) or pasted XML.
    metadata_url = models.URLField(max_length=500, blank=True)
    metadata_xml = models.TextField(blank=True)
    idp_entity_id = models.CharField(max_length=500, blank=True)  # read from the metadata
    # Optional group claim (OIDC) or attribute (SAML) and its mapping of group names to roles.
    groups_claim = models.CharField(max_length=200, blank=True)
    role_mapping = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="idp_unique_name")]
        indexes = [models.Index(fields=["organization", "protocol"], name="idp_org_protocol")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_protocol_display()})"

    @property
    def discovery_url(self) -> str:
        url = self.issuer.rstrip("/")
        if url.endswith("/.well-known/openid-configuration"):
            return url
        return f"{url}/.well-known/openid-configuration"


def new_verification_token() -> str:
    return secrets.token_urlsafe(24)


class VerifiedDomain(TenantModel):
    """An e-mail domain claimed by an organization; verified by a DNS TXT record. Several organizations may
    claim a domain, but only one can verify it."""

    domain = models.CharField(max_length=253)
    verification_token = models.CharField(max_length=64, default=new_verification_token)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "domain"], name="domain_unique_per_org"),
            # The sign-in page routes by domain, so a verified domain belongs to exactly one organization.
            models.UniqueConstraint(fields=["domain"], condition=Q(verified_at__isnull=False), name="domain_verified_once"),
        ]

    def __str__(self) -> str:
        return self.domain

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None

    @property
    def record_name(self) -> str:
        return f"_thalian-challenge.{self.domain}"

    @property
    def record_value(self) -> str:
        return f"thalian-verification={self.verification_token}"


class SsoIdentity(TenantModel):
    """Which user an IdP subject signed in as; later logins of that subject are the same user."""

    provider = models.ForeignKey(IdentityProvider, on_delete=models.CASCADE, related_name="identities")
    subject = models.CharField(max_length=500)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="sso_identities")
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "subject"], name="ssoidentity_unique_subject")]


class MfaDevice(models.Model):
    """A user's TOTP authenticator (platform-wide, like the password). The secret is encrypted at rest."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="mfa_device")
    secret = EncryptedTextField()
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # The last accepted 30-second time step: a code is accepted once.
    last_step = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    @property
    def is_active(self) -> bool:
        return self.confirmed_at is not None


class RecoveryCode(models.Model):
    """One-time recovery codes; only their SHA-256 is stored."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="mfa_recovery_codes")
    code_hash = models.CharField(max_length=64)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "code_hash"], name="recoverycode_user_hash")]
