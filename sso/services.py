"""Writes of single sign-on: settings, identity providers, verified domains and the SSO sign-in itself."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from thalian import tenancy
from thalian.audit import audit_record
from thalian.models import Membership, Organization, User
from thalian.permissions import Role

from . import dns as sso_dns
from . import oidc, saml
from .http import FetchError, check_url
from .models import IdentityProvider, Protocol, SsoIdentity, SsoSettings, VerifiedDomain
from .selectors import email_domain, sso_settings_for

SETTINGS_FIELDS = ("enforce_sso", "jit_enabled", "jit_default_role", "break_glass_emails", "require_mfa_for_admins")
PROVIDER_FIELDS = (
    "name", "protocol", "enabled", "issuer", "client_id", "client_secret", "scopes", "metadata_url", "metadata_xml",
    "groups_claim", "role_mapping",
)
# Roles an identity provider may hand out (JIT default and group mapping): super admins are named by people.
IDP_GRANTABLE_ROLES = {r.value for r in Role} - {Role.SUPER_ADMIN.value}
_DOMAIN_RE = re.compile(r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class SsoLoginRefused(Exception):
    """An SSO sign-in that must not go through; the message is shown to the person."""


def _audit(action: str, *, actor: Membership | None, organization_id: int, request=None, **kwargs) -> None:
    audit_record(
        action=action,
        organization_id=organization_id,
        actor=actor.user if actor else None,
        request=request,
        system=actor is None,
        **kwargs,
    )


# Settings ------------------------------------------------------------------------------------------------


def _clean_settings(organization: Organization, data: dict) -> dict:
    errors: dict[str, list[str]] = {}
    role = data.get("jit_default_role")
    if role is not None and role not in IDP_GRANTABLE_ROLES:
        errors["jit_default_role"] = [
            f"{role!r} cannot be given on first sign-in; choose one of {', '.join(sorted(IDP_GRANTABLE_ROLES))}."
        ]
    if "break_glass_emails" in data:
        emails = list(dict.fromkeys(e.strip().lower() for e in data["break_glass_emails"] if e.strip()))
        super_admins = set(
            Membership.objects.filter(
                organization=organization, role=Role.SUPER_ADMIN, user__email__in=emails
            ).values_list("user__email", flat=True)
        )
        wrong = [e for e in emails if e not in super_admins]
        if wrong:
            errors["break_glass_emails"] = [f"{', '.join(wrong)}: not super admins of this organization."]
        data["break_glass_emails"] = emails
    if data.get("enforce_sso"):
        if not VerifiedDomain.objects.filter(verified_at__isnull=False).exists():
            errors.setdefault("enforce_sso", []).append("Verify at least one domain before enforcing single sign-on.")
        if not IdentityProvider.objects.filter(enabled=True).exists():
            errors.setdefault("enforce_sso", []).append(
                "Add and enable an identity provider before enforcing single sign-on."
            )
    if errors:
        raise ValidationError(errors)
    return data


@transaction.atomic
def sso_settings_update(*, actor: Membership, request=None, **changes) -> SsoSettings:
    organization = actor.organization
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise ValidationError({f: ["not an SSO setting"] for f in sorted(unknown)})
    current = sso_settings_for(organization)
    merged = {f: getattr(current, f) for f in SETTINGS_FIELDS} | changes
    merged = _clean_settings(organization, merged)
    changed = {f: merged[f] for f in SETTINGS_FIELDS if getattr(current, f) != merged[f]}
    if not changed:
        return current
    for field, value in merged.items():
        setattr(current, field, value)
    current.save()
    _audit(
        "sso_settings_changed", actor=actor, organization_id=organization.pk, request=request,
        target_type="sso_settings", target_label="Single sign-on settings", details={"changed": changed},
    )
    return current


# Identity providers --------------------------------------------------------------------------------------


def _clean_provider(provider: IdentityProvider) -> None:
    errors: dict[str, list[str]] = {}
    if not provider.name.strip():
        errors["name"] = ["Give the identity provider a name."]
    if provider.protocol not in Protocol.values:
        errors["protocol"] = [f"Choose {' or '.join(Protocol.values)}."]
    mapping = provider.role_mapping
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and k for k in mapping):
        errors["role_mapping"] = ["Give an object of group name to role."]
    else:
        bad = sorted({str(v) for v in mapping.values() if v not in IDP_GRANTABLE_ROLES})
        if bad:
            errors["role_mapping"] = [
                f"Unknown or not grantable role(s) {', '.join(bad)}; use {', '.join(sorted(IDP_GRANTABLE_ROLES))}."
            ]
        if mapping and not provider.groups_claim:
            errors["groups_claim"] = ["Name the claim or attribute that carries the groups of the mapping."]
    if provider.protocol == Protocol.OIDC:
        for field, label in (("issuer", "issuer or discovery URL"), ("client_id", "client id")):
            if not getattr(provider, field).strip():
                errors[field] = [f"An OpenID Connect provider needs its {label}."]
        if provider.issuer:
            try:
                check_url(provider.issuer, what="issuer")
            except FetchError as exc:
                errors["issuer"] = [str(exc)]
        if "openid" not in provider.scopes.split():
            errors["scopes"] = ["The scopes must include 'openid'."]
    elif provider.protocol == Protocol.SAML:
        if not provider.metadata_url and not provider.metadata_xml.strip():
            errors["metadata_url"] = ["A SAML provider needs its metadata URL or metadata XML."]
        else:
            try:
                if provider.metadata_url:
                    provider.metadata_xml = saml.metadata_fetch(provider.metadata_url)
                provider.idp_entity_id = saml.idp_entity_id_from_metadata(provider.metadata_xml)
            except FetchError as exc:
                errors["metadata_url" if provider.metadata_url else "metadata_xml"] = [str(exc)]
    if errors:
        raise ValidationError(errors)


def provider_save(
    *, actor: Membership, data: dict, provider: IdentityProvider | None = None, request=None
) -> IdentityProvider:
    """Creates or changes an identity provider. An empty client_secret keeps the stored one."""
    organization = actor.organization
    creating = provider is None
    if provider is None:
        provider = IdentityProvider(organization=organization)
    tenancy.assert_same_organization(actor, provider)
    for field in PROVIDER_FIELDS:
        if field not in data:
            continue
        if field == "client_secret" and not data[field]:
            continue
        value = data[field]
        setattr(provider, field, value.strip() if isinstance(value, str) and field != "metadata_xml" else value)
    _clean_provider(provider)
    if IdentityProvider.objects.filter(name=provider.name).exclude(pk=provider.pk).exists():
        raise ValidationError({"name": [f"Another identity provider is already called {provider.name!r}."]})
    with transaction.atomic():
        provider.save()
        _audit(
            "sso_settings_changed", actor=actor, organization_id=organization.pk, request=request, target=provider,
            details={"provider": provider.name, "change": "created" if creating else "changed",
                     "fields": sorted(f for f in data if f in PROVIDER_FIELDS and f != "client_secret")
                     + (["client_secret"] if data.get("client_secret") else [])},
        )
    return provider


@transaction.atomic
def provider_delete(*, actor: Membership, provider: IdentityProvider, request=None) -> None:
    tenancy.assert_same_organization(actor, provider)
    settings = sso_settings_for(actor.organization)
    if settings.enforce_sso and not IdentityProvider.objects.filter(enabled=True).exclude(pk=provider.pk).exists():
        raise ValidationError("Single sign-on is enforced and this is the last enabled identity provider.")
    _audit(
        "sso_settings_changed", actor=actor, organization_id=provider.organization_id, request=request,
        target=provider, details={"provider": provider.name, "change": "deleted"},
    )
    provider.delete()


def provider_test(*, provider: IdentityProvider) -> tuple[bool, list[str]]:
    """Fetches discovery (OIDC) or metadata (SAML) as configured; (ok, lines saying what was found or wrong)."""
    try:
        if provider.protocol == Protocol.OIDC:
            return True, oidc.connection_test(provider)
        xml = saml.metadata_fetch(provider.metadata_url) if provider.metadata_url else provider.metadata_xml
        eid = saml.idp_entity_id_from_metadata(xml)
        lines = [f"Metadata describes the identity provider {eid} with a signing certificate."]
        if provider.idp_entity_id and eid != provider.idp_entity_id:
            return False, lines + [f"It no longer matches the saved entity id {provider.idp_entity_id}: save again."]
        return True, lines
    except FetchError as exc:
        return False, [str(exc)]


# Verified domains ----------------------------------------------------------------------------------------


def _normalize_domain(domain: str) -> str:
    value = (domain or "").strip().lower().rstrip(".")
    try:
        value = value.encode("idna").decode()
    except UnicodeError:
        raise ValidationError({"domain": [f"{domain!r} is not a domain name."]}) from None
    if not _DOMAIN_RE.match(value):
        raise ValidationError({"domain": [f"{domain!r} is not a domain name such as example.com."]})
    return value


@transaction.atomic
def domain_claim(*, actor: Membership, domain: str, request=None) -> VerifiedDomain:
    value = _normalize_domain(domain)
    if VerifiedDomain.objects.filter(domain=value).exists():
        raise ValidationError({"domain": [f"{value} is already claimed by this organization."]})
    with tenancy.scopes_disabled():  # platform check: one organization owns a verified domain
        if VerifiedDomain.objects.filter(domain=value, verified_at__isnull=False).exists():
            raise ValidationError({"domain": [f"{value} is verified by another organization."]})
    claim = VerifiedDomain.objects.create(organization=actor.organization, domain=value)
    _audit("domain_claimed", actor=actor, organization_id=claim.organization_id, request=request, target=claim)
    return claim


def domain_verify(
    *, actor: Membership, domain: VerifiedDomain, request=None, resolve: sso_dns.Resolve | None = None
) -> VerifiedDomain:
    """Looks for the TXT record; marks the domain verified when it is there. Errors say what was found."""
    tenancy.assert_same_organization(actor, domain)
    if domain.is_verified:
        return domain
    try:
        records = (resolve or sso_dns.txt_records)(domain.record_name)
    except sso_dns.DnsLookupError as exc:
        raise ValidationError({"domain": [str(exc)]}) from None
    if domain.record_value not in records:
        found = f"found {', '.join(repr(r) for r in records[:5])}" if records else "found no TXT record"
        raise ValidationError(
            {"domain": [f"Add a TXT record {domain.record_name} with the value {domain.record_value} ({found})."]}
        )
    try:
        with transaction.atomic():
            updated = VerifiedDomain.objects.filter(pk=domain.pk, verified_at__isnull=True).update(
                verified_at=timezone.now()
            )
    except IntegrityError:
        raise ValidationError({"domain": [f"{domain.domain} was verified by another organization first."]}) from None
    domain.refresh_from_db()
    if updated:
        _audit("domain_verified", actor=actor, organization_id=domain.organization_id, request=request, target=domain)
    return domain


@transaction.atomic
def domain_delete(*, actor: Membership, domain: VerifiedDomain, request=None) -> None:
    tenancy.assert_same_organization(actor, domain)
    settings = sso_settings_for(actor.organization)
    if (
        settings.enforce_sso
        and domain.is_verified
        and not VerifiedDomain.objects.filter(verified_at__isnull=False).exclude(pk=domain.pk).exists()
    ):
        raise ValidationError("Single sign-on is enforced and this is the last verified domain.")
    _audit("domain_removed", actor=actor, organization_id=domain.organization_id, request=request, target=domain)
    domain.delete()


# Signing in through an identity provider -----------------------------------------------------------------


def _mapped_role(provider: IdentityProvider, groups) -> str | None:
    if not provider.groups_claim or not provider.role_mapping:
        return None
    if isinstance(groups, str):
        groups = [groups]
    names = {str(g) for g in (groups or [])}
    # The most powerful mapped role wins; Role's order runs from most to least powerful.
    order = [r.value for r in Role]
    roles = [provider.role_mapping[g] for g in names if g in provider.role_mapping]
    return min(roles, key=order.index) if roles else None


def sso_login(*, provider: IdentityProvider, subject: str, email: str, groups=None, request=None) -> User:
    """The person the identity provider vouched for, with a membership of the provider's organization.

    The e-mail's domain must be verified by this organization: an identity provider speaks only for its own
    domains, so an assertion about any other address is refused and never linked to an existing account.
    """
    with tenancy.scope(provider.organization):
        try:
            with transaction.atomic():
                return _sso_login(provider=provider, subject=subject, email=email, groups=groups, request=request)
        except SsoLoginRefused as exc:
            _audit(
                "sso_login_refused", actor=None, organization_id=provider.organization_id, request=request,
                target=provider, details={"email": (email or "").strip().lower(), "reason": str(exc)},
            )
            raise


def _sso_login(*, provider: IdentityProvider, subject: str, email: str, groups, request) -> User:
    organization = provider.organization
    email = (email or "").strip().lower()
    if not email or "@" not in email:
        raise SsoLoginRefused("The identity provider did not send an e-mail address.")
    if not subject:
        raise SsoLoginRefused("The identity provider did not identify the person (no subject).")
    domain = email_domain(email)
    if not VerifiedDomain.objects.filter(domain=domain, verified_at__isnull=False).exists():
        raise SsoLoginRefused(
            f"{domain} is not a verified domain of {organization.name}, so {provider.name} cannot sign in {email}."
        )
    link = SsoIdentity.objects.select_related("user").filter(provider=provider, subject=subject).first()
    user = link.user if link else User.objects.filter(email=email).first()
    if user is not None and user.email != email:
        raise SsoLoginRefused(
            f"{provider.name} signed in {email}, but this identity belongs to {user.email}; ask an administrator."
        )
    if user is not None and not user.is_active:
        raise SsoLoginRefused("This account is deactivated.")
    settings = sso_settings_for(organization)
    mapped = _mapped_role(provider, groups)
    membership = Membership.objects.filter(user=user, organization=organization).first() if user else None
    if membership is None:
        if not settings.jit_enabled:
            raise SsoLoginRefused(
                f"You are not a member of {organization.name} yet; ask an administrator to invite {email}."
            )
        if user is None:
            user = User.objects.create_user(email=email, password=None)
        membership = Membership.objects.create(
            user=user, organization=organization, role=mapped or settings.jit_default_role
        )
        _audit(
            "jit_membership_created", actor=None, organization_id=organization.pk, request=request,
            target=membership, target_label=email,
            details={"email": email, "role": membership.role, "provider": provider.name},
        )
    elif mapped and membership.role != mapped and membership.role != Role.SUPER_ADMIN:
        old = membership.role
        membership.role = mapped
        membership.save(update_fields=["role"])
        _audit(
            "member_role_changed", actor=None, organization_id=organization.pk, request=request,
            target=membership, target_label=email,
            details={"email": email, "from": old, "to": mapped, "provider": provider.name, "groups": True},
        )
    now = timezone.now()
    if link is None:
        SsoIdentity.objects.create(organization=organization, provider=provider, subject=subject, user=user)
    else:
        SsoIdentity.objects.filter(pk=link.pk).update(last_login_at=now)
    audit_record(
        action="sso_login", organization_id=organization.pk, actor=user, request=request, target=provider,
        details={"email": email, "provider": provider.name, "protocol": provider.protocol},
    )
    return user


def sso_login_failed(*, organization: Organization, reason: str, provider: IdentityProvider | None = None,
                     request=None) -> None:
    """Records a refused identity provider response (bad signature, expired, wrong audience, ...)."""
    _audit(
        "sso_login_failed", actor=None, organization_id=organization.pk, request=request,
        target=provider, target_type="identityprovider" if provider is None else "",
        details={"reason": reason, "provider": provider.name if provider else ""},
    )


@transaction.atomic
def sso_configuration_replace(
    *, actor: Membership, settings: dict, providers: list[dict], request=None
) -> SsoSettings:
    """PUT of the whole configuration: providers with an id are changed, without one created, missing ones
    deleted; then the settings. All or nothing."""
    existing = {str(p.public_id): p for p in IdentityProvider.objects.all()}
    keep: set[str] = set()
    errors: dict[str, list] = {}
    for index, data in enumerate(providers):
        pid = str(data.pop("id", "") or "")
        if pid and pid not in existing:
            errors[f"providers[{index}].id"] = [f"No identity provider {pid} in this organization."]
            continue
        try:
            saved = provider_save(actor=actor, data=data, provider=existing.get(pid), request=request)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors[f"providers[{index}].{field}"] = messages
            continue
        keep.add(str(saved.public_id))
    if errors:
        raise ValidationError(errors)
    for pid, provider in existing.items():
        if pid not in keep:
            _audit(
                "sso_settings_changed", actor=actor, organization_id=provider.organization_id, request=request,
                target=provider, details={"provider": provider.name, "change": "deleted"},
            )
            provider.delete()
    return sso_settings_update(actor=actor, request=request, **settings)
