"""Guest reviewers: managers and application owners from the inventory who are not members review their items
of one campaign through a personal sign-in link.

The link carries a random secret signed with the server key for this one purpose; only the secret's SHA-256 is
stored. It expires at the end of the campaign's due date plus ``GUEST_LINK_GRACE_DAYS``, an admin can revoke it,
and sending it again replaces it. It opens the guest portal only, for that guest's items only."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac

from thalian.audit import audit_record
from thalian.models import Membership
from thalian.permissions import Perm, has_perm
from thalian.tenancy import assert_same_organization, scope, scopes_disabled

from .models import Campaign, CampaignStatus, GuestReviewer, ReviewItem

SIGNING_SALT = "thalian.campaigns.guest-review-link"


class GuestLinkError(Exception):
    """The link cannot be used; the message says why, for the person holding it."""

    def __init__(self, message: str, *, status: int = 403):
        super().__init__(message)
        self.message = message
        self.status = status


class GuestAdminError(ValueError):
    pass


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def guest_link_expiry(campaign: Campaign) -> dt.datetime:
    """End of the due date plus the grace period, in UTC."""
    last_day = campaign.due_date + dt.timedelta(days=settings.GUEST_LINK_GRACE_DAYS)
    return dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)


def guests_create_for_snapshot(*, campaign: Campaign) -> int:
    """After the snapshot: one guest per distinct non-member reviewer e-mail, linked to their items (two
    statements whatever the item count). The snapshot statement creates the guests and writes each item with
    its guest already (launch.snapshot_sql), so this finds nothing left to link there; it links items
    written any other way. Returns how many guests the campaign has."""
    emails = (
        ReviewItem.objects.filter(campaign=campaign, reviewer__isnull=True, guest__isnull=True)
        .exclude(reviewer_email="")
        .values_list("reviewer_email", flat=True)
        .distinct()
        .order_by()
    )
    expires_at = guest_link_expiry(campaign)
    GuestReviewer.objects.bulk_create(
        [
            GuestReviewer(organization_id=campaign.organization_id, campaign=campaign, email=e.lower(),
                          expires_at=expires_at)
            for e in emails
        ],
        ignore_conflicts=True,
    )
    ReviewItem.objects.filter(campaign=campaign, reviewer__isnull=True, guest__isnull=True).exclude(
        reviewer_email=""
    ).update(
        guest_id=Subquery(
            GuestReviewer.objects.filter(campaign_id=campaign.pk, email=OuterRef("reviewer_email")).values("pk")[:1]
        )
    )
    return GuestReviewer.objects.filter(campaign=campaign).count()


def _secret(guest: GuestReviewer) -> str:
    return salted_hmac(SIGNING_SALT, f"{guest.pk}:{guest.link_nonce}", algorithm="sha256").hexdigest()


def _link(secret: str) -> str:
    token = signing.Signer(salt=SIGNING_SALT).sign(secret)
    return settings.SITE_URL + reverse("guest_review", kwargs={"token": token})


def guest_link_issue(*, guest: GuestReviewer) -> str:
    """A new link for the guest (the previous one stops working). Returns the absolute URL."""
    guest.link_nonce = secrets.token_urlsafe(32)
    secret = _secret(guest)
    guest.token_hash = _hash(secret)
    guest.expires_at = guest_link_expiry(guest.campaign)
    guest.link_sent_at = timezone.now()
    guest.save(update_fields=["link_nonce", "token_hash", "expires_at", "link_sent_at"])
    return _link(secret)


def guest_link_current(*, guest: GuestReviewer) -> str:
    """The guest's link as it works now, for a reminder: the same link again while it is valid, else (never
    sent, or issued before links could be derived again) a new one. Never for a revoked guest."""
    if guest.is_revoked:
        raise GuestAdminError(f"The link of {guest.email} was revoked; reminders do not restore it.")
    if guest.link_nonce and guest.token_hash == _hash(_secret(guest)):
        expires_at = guest_link_expiry(guest.campaign)
        if guest.expires_at != expires_at:  # the due date moved: the same link follows it
            guest.expires_at = expires_at
            guest.save(update_fields=["expires_at"])
        return _link(_secret(guest))
    return guest_link_issue(guest=guest)


def guest_link_send(*, guest: GuestReviewer, actor=None, request=None) -> None:
    """Issue a link and e-mail it to the guest, with what they are asked to review."""
    campaign = guest.campaign
    url = guest_link_issue(guest=guest)
    items = ReviewItem.objects.filter(campaign=campaign, guest=guest).count()
    context = {"campaign": campaign, "guest": guest, "url": url, "items": items,
               "organization": campaign.organization}
    send_mail(
        subject=f"Access review: {items} item{'s' if items != 1 else ''} to review in {campaign.title}",
        message=render_to_string("campaigns/email/guest_link.txt", context),
        from_email=None,
        recipient_list=[guest.email],
        html_message=render_to_string("campaigns/email/guest_link.html", context),
    )
    audit_record(
        action="guest_link_sent",
        organization_id=campaign.organization_id,
        actor=getattr(actor, "user", None),
        request=request,
        target=campaign,
        system=actor is None,
        details={"guest": guest.email, "expires_at": guest.expires_at.isoformat(), "items": items},
    )


def guest_links_send_all(*, organization_id: int, campaign_id) -> int:
    """At launch: e-mail every guest of the campaign who has not been sent a link yet."""
    sent = 0
    with scope(organization_id=organization_id):
        guests = GuestReviewer.objects.filter(campaign_id=campaign_id, link_sent_at__isnull=True,
                                              revoked_at__isnull=True).select_related("campaign__organization")
        for guest in guests:
            with transaction.atomic():
                guest_link_send(guest=guest)
            sent += 1
    return sent


def guest_status(guest: GuestReviewer) -> str:
    if guest.revoked_at is not None:
        return "revoked"
    if guest.link_sent_at is None:
        return "not_sent"
    if guest.expires_at is not None and guest.expires_at <= timezone.now():
        return "expired"
    return "active"


def _require_manage(actor: Membership, guest: GuestReviewer) -> None:
    from django.core.exceptions import PermissionDenied

    assert_same_organization(actor, guest)
    if not has_perm(actor.role, Perm.MANAGE_CAMPAIGNS):
        raise PermissionDenied(f"Your role ({actor.role}) does not allow managing guest reviewers.")


@transaction.atomic
def guest_revoke(*, guest: GuestReviewer, actor: Membership, request=None) -> GuestReviewer:
    """The guest's link stops working at once."""
    _require_manage(actor, guest)
    if guest.is_revoked:
        raise GuestAdminError(f"The link of {guest.email} was already revoked on {guest.revoked_at:%Y-%m-%d}.")
    guest.revoked_at = timezone.now()
    guest.revoked_by = actor.user
    guest.token_hash = ""
    guest.link_nonce = ""
    guest.save(update_fields=["revoked_at", "revoked_by", "token_hash", "link_nonce"])
    audit_record(action="guest_link_revoked", organization_id=guest.organization_id, actor=actor.user,
                 request=request, target=guest.campaign, details={"guest": guest.email})
    return guest


@transaction.atomic
def guest_resend(*, guest: GuestReviewer, actor: Membership, request=None) -> GuestReviewer:
    """A new link by e-mail (a revoked guest is restored); the previous link stops working."""
    _require_manage(actor, guest)
    if guest.campaign.status != CampaignStatus.ACTIVE:
        raise GuestAdminError(
            f"The campaign is {guest.campaign.get_status_display().lower()}; links are sent only while it is active."
        )
    guest.revoked_at = None
    guest.revoked_by = None
    guest.save(update_fields=["revoked_at", "revoked_by"])
    guest_link_send(guest=guest, actor=actor, request=request)
    return guest


def link_rate_limited(key: str) -> bool:
    """Whether the personal link with this hash was used more than GUEST_LINK_RATE_LIMIT_PER_MINUTE times this
    minute (guest reviewers and guest approvers alike)."""
    limit = settings.GUEST_LINK_RATE_LIMIT_PER_MINUTE
    bucket = f"guest-link-rate:{key}:{int(timezone.now().timestamp() // 60)}"
    cache.add(bucket, 0, timeout=120)
    try:
        count = cache.incr(bucket)
    except ValueError:
        cache.set(bucket, 1, timeout=120)
        count = 1
    return count > limit


def guest_resolve(*, token: str, request=None) -> GuestReviewer:
    """The guest a link belongs to, or GuestLinkError saying why it cannot be used. Every use is audited."""
    try:
        secret = signing.Signer(salt=SIGNING_SALT).unsign(token)
    except signing.BadSignature:
        raise GuestLinkError("This review link is not valid. Ask the campaign's administrator for a new one.",
                             status=404) from None
    token_hash = _hash(secret)
    if link_rate_limited(token_hash):
        raise GuestLinkError("Too many requests with this link; wait a minute and try again.", status=429)
    with scopes_disabled():  # the link is the only credential: the organization is found through it
        guest = (
            GuestReviewer.objects.select_related("campaign__organization")
            .filter(token_hash=token_hash)
            .first()
        )
    if guest is None:
        raise GuestLinkError(
            "This review link is no longer valid: it was revoked or replaced by a newer link. Ask the campaign's "
            "administrator to send you a new one.",
            status=410,
        )
    now = timezone.now()
    if guest.expires_at is not None and guest.expires_at <= now:
        raise GuestLinkError(
            f"This review link expired on {guest.expires_at:%Y-%m-%d}. Ask the campaign's administrator to send "
            "you a new one.",
            status=410,
        )
    if guest.campaign.status != CampaignStatus.ACTIVE:
        raise GuestLinkError(
            f"The review “{guest.campaign.title}” is {guest.campaign.get_status_display().lower()}; there is "
            "nothing left to review with this link.",
            status=410,
        )
    with scope(organization_id=guest.organization_id):
        GuestReviewer.objects.filter(pk=guest.pk).update(last_used_at=now)
        audit_record(
            action="guest_link_used",
            organization_id=guest.organization_id,
            request=request,
            target=guest.campaign,
            actor_email=guest.email,
            details={"guest": guest.email, "method": getattr(request, "method", ""),
                     "page": getattr(getattr(request, "resolver_match", None), "url_name", "") or ""},
        )
    return guest

