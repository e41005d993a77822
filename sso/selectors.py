"""Reads of single sign-on: routing an e-mail to its identity provider and the password-login policy."""

from __future__ import annotations

from django.db.models import Q

from thalian import tenancy
from thalian.models import Membership, Organization, User
from thalian.permissions import Role

from .models import IdentityProvider, MfaDevice, SsoSettings, VerifiedDomain


def email_domain(email: str) -> str:
    return (email or "").rpartition("@")[2].strip().lower().rstrip(".")


def sso_settings_for(organization: Organization) -> SsoSettings:
    """The organization's settings row, or an unsaved one with the defaults."""
    with tenancy.scope(organization):
        found = SsoSettings.objects.filter().first()
    return found or SsoSettings(organization=organization)


def verified_domain_for_email(email: str) -> VerifiedDomain | None:
    """The verified domain of an e-mail address, across organizations (platform lookup for sign-in)."""
    domain = email_domain(email)
    if not domain:
        return None
    with tenancy.scopes_disabled():
        return (
            VerifiedDomain.objects.select_related("organization")
            .filter(domain=domain, verified_at__isnull=False)
            .first()
        )


def sso_providers_for_email(email: str) -> list[IdentityProvider]:
    """The enabled identity providers of the organization that verified the e-mail's domain."""
    domain = verified_domain_for_email(email)
    if domain is None:
        return []
    with tenancy.scope(domain.organization):
        return list(
            IdentityProvider.objects.select_related("organization").filter(enabled=True).order_by("name")
        )


def password_login_refusal(email: str) -> str | None:
    """Why a password sign-in of this address is refused (single sign-on enforced), or None."""
    domain = verified_domain_for_email(email)
    if domain is None:
        return None
    settings = sso_settings_for(domain.organization)
    if not settings.enforce_sso:
        return None
    address = (email or "").strip().lower()
    if address in settings.break_glass_emails and Membership.objects.filter(
        organization=domain.organization, role=Role.SUPER_ADMIN, user__email=address
    ).exists():
        return None
    return (
        f"{domain.organization.name} requires single sign-on for {domain.domain} addresses: "
        "use “Continue with single sign-on”."
    )


def mfa_device_for(user: User) -> MfaDevice | None:
    return MfaDevice.objects.filter(user=user, confirmed_at__isnull=False).first()


def mfa_required_by(user: User) -> list[Organization]:
    """Organizations that require two-factor sign-in of this user (admins and super admins)."""
    return list(
        Organization.objects.filter(
            memberships__user=user,
            memberships__role__in=[Role.SUPER_ADMIN, Role.ADMIN],
        )
        .filter(Q(pk__in=_orgs_requiring_mfa()))
        .distinct()
    )


def _orgs_requiring_mfa():
    with tenancy.scopes_disabled():
        return SsoSettings.objects.filter(require_mfa_for_admins=True).values("organization_id")


def providers_for_organization() -> list[IdentityProvider]:
    return list(IdentityProvider.objects.order_by("name"))


def domains_for_organization() -> list[VerifiedDomain]:
    return list(VerifiedDomain.objects.order_by("domain"))


def members_with_mfa(organization: Organization) -> list[Membership]:
    """Members of the organization who have two-factor sign-in on (for the reset list)."""
    return list(
        Membership.objects.select_related("user")
        .filter(organization=organization, user__mfa_device__confirmed_at__isnull=False)
        .order_by("user__email")
    )
