"""Platform writes: organizations, memberships, invitations, API tokens."""

from __future__ import annotations

import datetime as dt
import smtplib
from typing import Any

import pgtrigger
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import ProtectedError
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from . import tenancy
from .audit import audit_record
from .events import OrganizationSettingsChanged, publish
from .models import (
    AUDIT_DELETE_TRIGGER,
    ApiToken,
    Invitation,
    Membership,
    Organization,
    Plan,
    TicketTrigger,
    User,
    default_decision_quality_thresholds,
    hash_token,
    new_raw_token,
)
from .permissions import GRANTABLE_BY, Perm, Role, has_perm

INVITATION_VALID_DAYS = 7


class MembershipError(ValidationError):
    """A membership change that the rules forbid (last super admin, granting super_admin as an admin...)."""


def organization_ensure(*, slug: str, name: str, plan: str) -> Organization:
    org, created = Organization.objects.get_or_create(slug=slug, defaults={"name": name, "plan": plan})
    if not created and (org.name != name or org.plan != plan):
        org.name, org.plan = name, plan
        org.save(update_fields=["name", "plan"])
    return org


def member_ensure(*, organization: Organization, email: str, role: str, password: str | None = None,
                  name: str = "") -> Membership:
    email = email.strip().lower()
    user = User.objects.filter(email=email).first()
    if user is None:
        user = User.objects.create_user(email, password, name=name)
    elif password is not None:
        user.set_password(password)
        user.save(update_fields=["password"])
    membership, created = Membership.objects.get_or_create(
        user=user, organization=organization, defaults={"role": Role(role)}
    )
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


# Members and invitations ---------------------------------------------------------------------------------


def _check_can_grant(*, actor: Membership, role: str) -> Role:
    try:
        role = Role(role)
    except ValueError:
        raise MembershipError(
            f"'{role}' is not a role; choose one of: {', '.join(r.value for r in Role)}.", code="invalid_role"
        ) from None
    if role not in GRANTABLE_BY.get(Role(actor.role), set()):
        raise MembershipError(
            f"Your role ({actor.role}) cannot grant the role {role.value}; only a super admin can.",
            code="cannot_grant",
        )
    return role


def _check_can_manage(*, actor: Membership, target: Membership) -> None:
    """Admins manage members, but only super admins touch super admins."""
    if not has_perm(actor.role, Perm.MANAGE_SETTINGS):
        raise MembershipError(f"Your role ({actor.role}) cannot manage members.", code="forbidden")
    if target.role == Role.SUPER_ADMIN and not has_perm(actor.role, Perm.MANAGE_ORGANIZATION):
        raise MembershipError("Only a super admin can change or remove a super admin.", code="cannot_manage")


def _lock_super_admins(organization_id: int) -> list[int]:
    # Locking every super admin row of the organization serialises concurrent demotions/removals, so two
    # requests cannot each remove one of the last two super admins.
    return list(
        Membership.objects.select_for_update()
        .filter(organization_id=organization_id, role=Role.SUPER_ADMIN)
        .values_list("pk", flat=True)
    )


def invitation_url(raw_token: str) -> str:
    return f"{settings.SITE_URL}{reverse('invitation_accept', args=[raw_token])}"


@transaction.atomic
def invitation_create(*, actor: Membership, email: str, role: str, request=None) -> tuple[Invitation, str]:
    """Invites a person by e-mail. The link (with the raw token) is e-mailed and returned; only its hash is
    stored. An earlier open invitation for the same address is replaced."""
    organization = actor.organization
    email = (email or "").strip().lower()
    if not email or "@" not in email:
        raise MembershipError("Enter a valid e-mail address.", code="invalid_email")
    role = _check_can_grant(actor=actor, role=role)
    if Membership.objects.filter(organization=organization, user__email=email).exists():
        raise MembershipError(f"{email} is already a member of {organization.name}.", code="already_member")
    now = timezone.now()
    raw = new_raw_token("inv")
    with tenancy.scope(organization):
        Invitation.objects.filter(email=email, accepted_at__isnull=True, revoked_at__isnull=True).update(
            revoked_at=now
        )
        invitation = Invitation.objects.create(
            organization=organization,
            email=email,
            role=role,
            token_hash=hash_token(raw),
            invited_by=actor.user,
            expires_at=now + dt.timedelta(days=INVITATION_VALID_DAYS),
        )
    link = invitation_url(raw)
    context = {
        "organization": organization,
        "inviter": actor.user,
        "role_label": role.label,
        "link": link,
        "expires_at": invitation.expires_at,
    }
    message = render_to_string("thalian/email/invitation.txt", context)
    subject = f"You are invited to {organization.name} on Thalian"
    audit_record(
        action="member_invited",
        organization=organization,
        actor=actor.user,
        request=request,
        target=invitation,
        target_label=email,
        details={"email": email, "role": role.value},
    )
    # Sent last, inside the transaction: when the mail server refuses, nothing is saved and the admin is told.
    try:
        send_mail(subject, message, settings.DEFAULT_FROM_EMAIL, [email], fail_silently=False)
    except (OSError, smtplib.SMTPException) as exc:
        raise MembershipError(
            f"The invitation e-mail to {email} could not be sent ({exc.__class__.__name__}: {exc}). Nothing was "
            "saved; check the mail server settings (EMAIL_URL) and try again.",
            code="email_failed",
        ) from exc
    return invitation, raw


@transaction.atomic
def invitation_revoke(*, actor: Membership, invitation: Invitation, request=None) -> Invitation:
    tenancy.assert_same_organization(actor, invitation)
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit_record(
            action="invitation_revoked",
            organization_id=invitation.organization_id,
            actor=actor.user,
            request=request,
            target=invitation,
            target_label=invitation.email,
        )
    return invitation


def invitation_for_token(raw_token: str) -> Invitation | None:
    """Platform lookup across organizations (the invitee is not a member yet)."""
    with tenancy.scopes_disabled():
        return (
            Invitation.objects.select_related("organization", "invited_by")
            .filter(token_hash=hash_token(raw_token or ""))
            .first()
        )


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User | None = None, name: str = "",
                      password: str | None = None, request=None) -> Membership:
    """Accepts an open invitation: attaches the signed-in `user` (whose e-mail must match) or, when nobody
    with that e-mail exists yet, creates the user with `password`."""
    with tenancy.scopes_disabled():
        invitation = Invitation.objects.select_for_update().select_related("organization").get(pk=invitation.pk)
    if not invitation.is_open:
        raise MembershipError("This invitation has expired or was already used or withdrawn.", code="closed")
    if user is None:
        if User.objects.filter(email=invitation.email).exists():
            raise MembershipError(
                f"An account for {invitation.email} already exists: sign in to accept the invitation.",
                code="sign_in",
            )
        if not password:
            raise MembershipError("Choose a password.", code="password")
        user = User.objects.create_user(invitation.email, password, name=name.strip())
    elif user.email.lower() != invitation.email:
        raise MembershipError(
            f"This invitation is for {invitation.email}, but you are signed in as {user.email}.",
            code="wrong_user",
        )
    membership, created = Membership.objects.get_or_create(
        user=user, organization=invitation.organization, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    audit_record(
        action="member_joined",
        organization=invitation.organization,
        actor=user,
        request=request,
        target=membership,
        target_label=user.email,
        details={"role": membership.role, "invitation": invitation.pk, "new_membership": created},
    )
    return membership


@transaction.atomic
def membership_role_change(*, actor: Membership, membership: Membership, role: str, request=None) -> Membership:
    if actor.organization_id != membership.organization_id:
        raise tenancy.ScopeError("actor and member belong to different organizations")
    _check_can_manage(actor=actor, target=membership)
    new_role = _check_can_grant(actor=actor, role=role)
    super_admins = _lock_super_admins(membership.organization_id)
    membership.refresh_from_db(fields=["role"])
    old_role = membership.role
    if old_role == new_role:
        return membership
    if old_role == Role.SUPER_ADMIN and super_admins == [membership.pk]:
        raise MembershipError(
            "This is the last super admin of the organization: make someone else super admin first.",
            code="last_super_admin",
        )
    membership.role = new_role
    membership.save(update_fields=["role"])
    audit_record(
        action="member_role_changed",
        organization_id=membership.organization_id,
        actor=actor.user,
        request=request,
        target=membership,
        target_label=membership.user.email,
        details={"email": membership.user.email, "from": old_role, "to": new_role.value},
    )
    return membership


@transaction.atomic
def membership_remove(*, actor: Membership, membership: Membership, request=None) -> None:
    if actor.organization_id != membership.organization_id:
        raise tenancy.ScopeError("actor and member belong to different organizations")
    _check_can_manage(actor=actor, target=membership)
    super_admins = _lock_super_admins(membership.organization_id)
    membership.refresh_from_db(fields=["role"])
    if membership.role == Role.SUPER_ADMIN and super_admins == [membership.pk]:
        raise MembershipError(
            "This is the last super admin of the organization and cannot be removed.", code="last_super_admin"
        )
    email, role, pk = membership.user.email, membership.role, membership.pk
    try:
        with transaction.atomic():
            membership.delete()  # cascades to the membership's API tokens
    except ProtectedError as exc:
        # Campaigns keep their fallback reviewer (PROTECT): name them so the admin can pick another one first.
        names = sorted({str(getattr(obj, "title", obj)) for obj in exc.protected_objects})
        shown = ", ".join(f"“{name}”" for name in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise MembershipError(
            f"{email} is the fallback reviewer of {len(names)} campaign{'s' if len(names) != 1 else ''} ({shown}); "
            "choose another fallback reviewer for them before removing this member.",
            code="in_use",
            params={"campaigns": names},
        ) from None
    audit_record(
        action="member_removed",
        organization_id=actor.organization_id,
        actor=actor.user,
        request=request,
        target_type="membership",
        target_id=str(pk),
        target_label=email,
        details={"email": email, "role": role},
    )


# Organization ------------------------------------------------------------------------------------------

SETTINGS_FIELDS = (
    "name", "dormant_days", "privileged_patterns", "freshness_days", "ticket_trigger", "exception_default_days",
    "exception_max_days", "decision_quality_thresholds", "guest_reviewers_enabled", "access_requests_for_others",
    "access_request_max_days",
)
# Decision-quality thresholds: (smallest, largest) for numbers; booleans are switches.
DECISION_QUALITY_LIMITS: dict[str, tuple[float, float] | None] = {
    "burst_gap_seconds": (1, 3600),
    "burst_min_decisions": (2, 100000),
    "burst_max_median_seconds": (0.1, 3600),
    "burst_min_approve_percent": (0, 100),
    "privileged_min_seconds": (0, 3600),
    "flag_bulk_recommended_revoke": None,
}


def decision_quality_thresholds_clean(*, changes: Any, current: dict) -> dict:
    """Merge a partial change into the organization's decision-quality thresholds; every bad key or value is
    named in the error and nothing changes."""
    if not isinstance(changes, dict):
        raise ValidationError({"decision_quality_thresholds": "must be an object of threshold name to value."})
    merged = {**default_decision_quality_thresholds(), **(current or {})}
    errors = []
    for key, value in changes.items():
        if key not in DECISION_QUALITY_LIMITS:
            errors.append(f"unknown threshold {key!r}; use {', '.join(DECISION_QUALITY_LIMITS)}")
            continue
        limits = DECISION_QUALITY_LIMITS[key]
        if limits is None:
            if not isinstance(value, bool):
                errors.append(f"{key} must be true or false")
                continue
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors.append(f"{key} must be a number")
                continue
            low, high = limits
            if not low <= value <= high:
                errors.append(f"{key} must be between {low:g} and {high:g}")
                continue
            if key == "burst_min_decisions" and value != int(value):
                errors.append(f"{key} must be a whole number")
                continue
        merged[key] = value
    if errors:
        raise ValidationError({"decision_quality_thresholds": errors})
    return merged


@transaction.atomic
def organization_update(*, actor: Membership, request=None, **changes) -> Organization:
    """Changes organization settings (super admins). The plan change is recorded as its own audit event."""
    if not has_perm(actor.role, Perm.MANAGE_ORGANIZATION):
        raise MembershipError("Only a super admin can change organization settings.", code="forbidden")
    org = Organization.objects.select_for_update().get(pk=actor.organization_id)
    unknown = set(changes) - set(SETTINGS_FIELDS) - {"plan"}
    if unknown:
        raise ValidationError(f"unknown organization setting(s): {', '.join(sorted(unknown))}")
    if "plan" in changes and changes["plan"] not in Plan.values:
        raise ValidationError({"plan": f"'{changes['plan']}' is not a plan; choose one of {', '.join(Plan.values)}."})
    if "ticket_trigger" in changes and changes["ticket_trigger"] not in TicketTrigger.values:
        raise ValidationError({"ticket_trigger": f"choose one of {', '.join(TicketTrigger.values)}."})
    if "decision_quality_thresholds" in changes:
        changes["decision_quality_thresholds"] = decision_quality_thresholds_clean(
            changes=changes["decision_quality_thresholds"], current=org.decision_quality_thresholds
        )
    old_plan = org.plan
    changed = {}
    for field, value in changes.items():
        if getattr(org, field) != value:
            changed[field] = {"from": getattr(org, field), "to": value}
            setattr(org, field, value)
    if not changed:
        return org
    org.full_clean()
    org.save(update_fields=list(changed))
    if "plan" in changed:
        audit_record(
            action="plan_changed",
            organization=org,
            actor=actor.user,
            request=request,
            target=org,
            details={"from": old_plan, "to": org.plan},
        )
    others = {k: v for k, v in changed.items() if k != "plan"}
    if others:
        audit_record(
            action="organization_settings_changed",
            organization=org,
            actor=actor.user,
            request=request,
            target=org,
            details=others,
        )
    if others:
        # Findings stored on each entitlement follow the thresholds: the inventory recomputes them.
        publish(OrganizationSettingsChanged(organization_id=org.pk, fields=sorted(others)))
    actor.organization = org
    return org


def _audit_purge_allowed():
    """Lets the append-only delete trigger of the audit table accept deletes for the duration of the block
    (django-pgtrigger's ignore: set per statement, in the current transaction only; a no-op on SQLite)."""
    return pgtrigger.ignore(AUDIT_DELETE_TRIGGER)


@transaction.atomic
def organization_delete(*, actor: Membership, confirm_slug: str, request=None) -> None:
    """Deletes the organization and everything it owns, its audit trail included. A platform-level audit
    event (no organization) records who deleted what."""
    if not has_perm(actor.role, Perm.MANAGE_ORGANIZATION):
        raise MembershipError("Only a super admin can delete the organization.", code="forbidden")
    org = actor.organization
    if (confirm_slug or "").strip() != org.slug:
        raise ValidationError(
            {"confirm": f"Type the organization's identifier '{org.slug}' exactly to confirm the deletion."}
        )
    summary = {"slug": org.slug, "name": org.name, "plan": org.plan, "members": org.memberships.count()}
    with _audit_purge_allowed(), tenancy.scopes_disabled():
        Organization.objects.filter(pk=org.pk).delete()
    audit_record(
        action="organization_deleted",
        organization_id=None,
        actor=actor.user,
        request=request,
        target_type="organization",
        target_id=str(org.pk),
        target_label=org.slug,
        details=summary,
    )


# API tokens --------------------------------------------------------------------------------------------


@transaction.atomic
def apitoken_create(*, membership: Membership, name: str, request=None) -> tuple[ApiToken, str]:
    """Creates a personal token; returns it with the raw value, which is shown once and never stored."""
    name = (name or "").strip()
    if len(name) > 100:
        raise ValidationError({"name": "A token name has at most 100 characters."})
    raw = new_raw_token()
    with tenancy.scope(membership.organization):
        token = ApiToken.objects.create(
            organization=membership.organization,
            membership=membership,
            name=name or "API token",
            prefix=raw[:10],
            token_hash=hash_token(raw),
        )
    audit_record(
        action="token_created",
        organization=membership.organization,
        actor=membership.user,
        request=request,
        target=token,
        target_label=f"{token.name} ({token.prefix}…)",
        details={"member": membership.user.email},
    )
    return token, raw


@transaction.atomic
def apitoken_revoke(*, token: ApiToken, actor: User, request=None) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(
            action="token_revoked",
            organization_id=token.organization_id,
            actor=actor,
            request=request,
            target=token,
            target_label=f"{token.name} ({token.prefix}…)",
        )
    return token
