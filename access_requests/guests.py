"""Guest approvers: a manager or application owner who is not a member decides their stage of an access request
through a personal link, as guest reviewers of campaigns do. The link is a random secret signed for this one
purpose; only its SHA-256 is stored on the stage, it stops working once the stage is decided, and it expires
with the request's approval deadline."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from campaigns.guests import GuestLinkError, link_rate_limited
from thalian.audit import audit_record
from thalian.tenancy import scope, scopes_disabled

from .models import Approval, ApprovalDecision, RequestStatus

SIGNING_SALT = "thalian.access_requests.approval-link"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def approval_link_issue(*, approval: Approval) -> str:
    """A new link for the stage's guest (an earlier one stops working). Returns the absolute URL."""
    secret = secrets.token_urlsafe(32)
    approval.token_hash = _hash(secret)
    approval.link_expires_at = approval.access_request.approval_deadline
    approval.save(update_fields=["token_hash", "link_expires_at"])
    token = signing.Signer(salt=SIGNING_SALT).sign(secret)
    return settings.SITE_URL + reverse("access_request_guest", kwargs={"token": token})


@transaction.atomic
def approval_link_send(*, organization_id: int, approval_id: int) -> bool:
    """E-mail the guest approver of a pending stage their link, once. Returns whether a mail went out."""
    with scope(organization_id=organization_id):
        approval = (Approval.objects.select_for_update(of=("self",))
                    .select_related("access_request__identity", "access_request__application",
                                    "access_request__organization")
                    .filter(pk=approval_id, decision=ApprovalDecision.PENDING, approver__isnull=True).first())
        if approval is None or not approval.approver_email or approval.token_hash:
            return False
        req = approval.access_request
        if req.status != RequestStatus.PENDING or req.current_stage != approval.stage:
            return False
        url = approval_link_issue(approval=approval)
        context = {"req": req, "approval": approval, "url": url, "organization": req.organization}
        send_mail(
            subject=f"Access request to approve: {req.role} in {req.application.name} for {req.identity.email}",
            message=render_to_string("access_requests/email/guest_link.txt", context),
            from_email=None,
            recipient_list=[approval.approver_email],
        )
        audit_record(action="access_request.guest_link_sent", organization_id=organization_id,
                     target_type="access_request", target_id=str(req.pk), actor_email="system", system=True,
                     details={"guest": approval.approver_email, "stage": approval.stage})
    return True


def approval_resolve(*, token: str, request=None) -> Approval:
    """The pending stage a link belongs to, or GuestLinkError saying why it cannot be used."""
    try:
        secret = signing.Signer(salt=SIGNING_SALT).unsign(token)
    except signing.BadSignature:
        raise GuestLinkError("This approval link is not valid.", status=404) from None
    if link_rate_limited(_hash(secret)):
        raise GuestLinkError("Too many requests with this link; wait a minute and try again.", status=429)
    with scopes_disabled():  # the link is the only credential: the organization is found through it
        approval = (Approval.objects.select_related("access_request__organization", "access_request__identity",
                                                    "access_request__application")
                    .filter(token_hash=_hash(secret)).first())
    if approval is None:
        raise GuestLinkError("This approval link is no longer valid: the request was decided, reassigned or "
                             "withdrawn.", status=410)
    if approval.link_expires_at is not None and approval.link_expires_at <= timezone.now():
        raise GuestLinkError(f"This approval link expired on {approval.link_expires_at:%Y-%m-%d}.", status=410)
    with scope(organization_id=approval.organization_id):
        audit_record(action="access_request.guest_link_used", organization_id=approval.organization_id,
                     request=request, target_type="access_request", target_id=str(approval.access_request_id),
                     actor_email=approval.approver_email,
                     details={"guest": approval.approver_email, "method": getattr(request, "method", "")})
    return approval
