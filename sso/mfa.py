"""Two-factor sign-in for password logins: TOTP (pyotp, RFC 6238) with one-time recovery codes."""

from __future__ import annotations

import hashlib
import secrets
import time

import pyotp
import segno
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from thalian import tenancy
from thalian.audit import audit_record
from thalian.models import Membership, User
from thalian.permissions import Role

from .models import MfaDevice, RecoveryCode, VerifiedDomain

ISSUER = "Thalian"
RECOVERY_CODE_COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def _hash(code: str) -> str:
    normalized = "".join(ch for ch in code.lower() if ch.isalnum())
    return hashlib.sha256(normalized.encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def _audit_all_orgs(action: str, *, user: User, actor: User | None, request=None, details=None) -> None:
    for org_id in Membership.objects.filter(user=user).values_list("organization_id", flat=True):
        audit_record(
            action=action, organization_id=org_id, actor=actor, request=request, target=user,
            target_label=user.email, details=details or {"email": user.email},
        )


def provisioning_uri(device: MfaDevice) -> str:
    return pyotp.TOTP(device.secret).provisioning_uri(name=device.user.email, issuer_name=ISSUER)


def qr_svg_data_uri(device: MfaDevice) -> str:
    """The provisioning address as an SVG QR code in a data: URI (allowed by the img-src policy)."""
    return segno.make(provisioning_uri(device), error="m").svg_data_uri(scale=5, border=2, dark="#111")


def mfa_setup_start(*, user: User) -> MfaDevice:
    """A fresh, unconfirmed authenticator secret (replacing an earlier unconfirmed one)."""
    device = MfaDevice.objects.filter(user=user).first()
    if device is not None and device.is_active:
        raise ValidationError("Two-factor sign-in is already on; turn it off first to enrol a new authenticator.")
    if device is None:
        device = MfaDevice(user=user)
    device.secret = pyotp.random_base32()
    device.confirmed_at = None
    device.last_step = None
    device.save()
    return device


def _recovery_codes_replace(user: User) -> list[str]:
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    RecoveryCode.objects.filter(user=user).delete()
    RecoveryCode.objects.bulk_create([RecoveryCode(user=user, code_hash=_hash(c)) for c in codes])
    return codes


def _totp_step(device: MfaDevice, code: str) -> int | None:
    """The time step a code belongs to (now, or one step either side for clock drift), or None."""
    code = "".join(ch for ch in code if ch.isdigit())
    if len(code) != 6:
        return None
    totp = pyotp.TOTP(device.secret)
    now = int(time.time())
    for offset in (0, -1, 1):
        at = now + offset * totp.interval
        if secrets.compare_digest(totp.at(at), code):
            return at // totp.interval
    return None


@transaction.atomic
def mfa_setup_confirm(*, user: User, code: str, request=None) -> list[str]:
    """Turns two-factor sign-in on when the code matches; returns the recovery codes (shown once)."""
    device = MfaDevice.objects.select_for_update().filter(user=user, confirmed_at__isnull=True).first()
    if device is None:
        raise ValidationError("Start the set-up again: no authenticator is waiting for confirmation.")
    step = _totp_step(device, code)
    if step is None:
        raise ValidationError("That code does not match; enter the 6-digit code your authenticator app shows now.")
    device.confirmed_at = timezone.now()
    device.last_step = step
    device.save(update_fields=["confirmed_at", "last_step"])
    codes = _recovery_codes_replace(user)
    _audit_all_orgs("mfa_enabled", user=user, actor=user, request=request)
    return codes


@transaction.atomic
def mfa_verify(*, user: User, code: str) -> str | None:
    """Checks a sign-in code: 'totp' or 'recovery_code' when accepted (a recovery code is used up), else None.
    A TOTP code is accepted once: a replay within its 30 seconds is refused."""
    device = MfaDevice.objects.select_for_update().filter(user=user, confirmed_at__isnull=False).first()
    if device is None:
        return None
    step = _totp_step(device, code)
    if step is not None:
        if device.last_step is not None and step <= device.last_step:
            return None
        MfaDevice.objects.filter(pk=device.pk).update(last_step=step)
        return "totp"
    updated = RecoveryCode.objects.filter(user=user, code_hash=_hash(code), used_at__isnull=True).update(
        used_at=timezone.now()
    )
    return "recovery_code" if updated else None


def _failures_key(user: User) -> str:
    return f"mfa-fail:user:{user.pk}"


def mfa_locked_out(user: User) -> bool:
    """Too many wrong codes for this person within the lock-out window (across sign-in attempts)."""
    return cache.get(_failures_key(user), 0) >= settings.LOGIN_FAILURE_LIMIT


def mfa_failure_record(user: User) -> None:
    key = _failures_key(user)
    cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    try:
        cache.incr(key)
    except ValueError:
        cache.set(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def mfa_failures_clear(user: User) -> None:
    cache.delete(_failures_key(user))


def recovery_codes_left(user: User) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()


@transaction.atomic
def recovery_codes_regenerate(*, user: User, code: str, request=None) -> list[str]:
    if mfa_verify(user=user, code=code) != "totp":
        raise ValidationError("Enter a current code from your authenticator app to make new recovery codes.")
    codes = _recovery_codes_replace(user)
    _audit_all_orgs("mfa_recovery_codes_regenerated", user=user, actor=user, request=request)
    return codes


@transaction.atomic
def mfa_disable(*, user: User, code: str, request=None) -> None:
    from .selectors import mfa_required_by

    required = mfa_required_by(user)
    if required:
        names = ", ".join(o.name for o in required)
        raise ValidationError(f"{names} requires two-factor sign-in for your role; it cannot be turned off.")
    if mfa_verify(user=user, code=code) is None:
        raise ValidationError("That code does not match; enter an authenticator code or a recovery code.")
    MfaDevice.objects.filter(user=user).delete()
    RecoveryCode.objects.filter(user=user).delete()
    _audit_all_orgs("mfa_disabled", user=user, actor=user, request=request)


@transaction.atomic
def mfa_reset(*, actor: Membership, membership: Membership, request=None) -> None:
    """A super admin removes a member's authenticator (lost phone); the member enrols again."""
    tenancy.assert_same_organization(actor, membership)
    if actor.role != Role.SUPER_ADMIN:
        raise ValidationError("Only super admins can reset two-factor sign-in.")
    user = membership.user
    # The reset also affects the person's other organizations: allowed when this organization verified their
    # e-mail domain or they belong to no other organization.
    from .selectors import email_domain

    with tenancy.scope(actor.organization):
        owns_domain = VerifiedDomain.objects.filter(domain=email_domain(user.email), verified_at__isnull=False).exists()
    if not owns_domain and Membership.objects.filter(user=user).exclude(organization=actor.organization).exists():
        raise ValidationError(
            f"{user.email} also belongs to other organizations and is not of a domain verified here: "
            "they must reset it with a recovery code, or ask Thalian support."
        )
    if not MfaDevice.objects.filter(user=user).exists():
        raise ValidationError(f"{user.email} has no two-factor sign-in to reset.")
    MfaDevice.objects.filter(user=user).delete()
    RecoveryCode.objects.filter(user=user).delete()
    _audit_all_orgs("mfa_reset", user=user, actor=actor.user, request=request, details={
        "email": user.email, "reset_by": actor.user.email, "organization": actor.organization.slug,
    })
