"""Platform writes: organizations, memberships, API tokens."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from . import tenancy
from .audit import audit_record
from .models import ApiToken, Membership, Organization, User, hash_token, new_raw_token
from .permissions import Role


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


@transaction.atomic
def apitoken_create(*, membership: Membership, name: str, request=None) -> tuple[ApiToken, str]:
    """Creates a personal token; returns it with the raw value, which is shown once and never stored."""
    raw = new_raw_token()
    with tenancy.scope(membership.organization):
        token = ApiToken.objects.create(
            organization=membership.organization,
            membership=membership,
            name=name.strip() or "API token",
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
