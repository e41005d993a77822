"""Audit of sign-in events and login throttling bookkeeping."""

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from .audit import audit_record, client_ip
from .auth import login_failure_record, login_success_record


@receiver(user_logged_in)
def _on_login(sender, request, user, **kwargs):
    login_success_record(user.email, client_ip(request))
    for membership in user.memberships.all():
        audit_record(action="login", organization_id=membership.organization_id, actor=user, request=request)


@receiver(user_login_failed)
def _on_login_failed(sender, credentials, request=None, **kwargs):
    email = (credentials.get("username") or credentials.get("email") or "").strip().lower()
    ip = client_ip(request)
    login_failure_record(email, ip)
    from .models import User

    user = User.objects.filter(email=email).first()
    org_ids = list(user.memberships.values_list("organization_id", flat=True)) if user else [None]
    for org_id in org_ids:
        audit_record(
            action="login_failed",
            organization_id=org_id,
            request=request,
            target_label=email,
            details={"email": email},
            system=True,
        )
