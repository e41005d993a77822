"""One organization with something behind every kind of id a URL can carry, and the route -> real ids mapping.

Used by the tenancy sweep (every route, a member of another organization) and the API fuzz (schemathesis with
real ids), so both reach real objects instead of answering 404 for ids that never existed.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field

from django.core.files.base import ContentFile
from django.utils import timezone

from access_requests.models import AccessRequest, Approval
from campaigns.models import CampaignStatus, DecisionEvent
from entitlements.models import ScimConnector, SyncRun, SyncRunApplication, SyncRunStatus
from evidence.models import EvidencePackage
from itsm.models import ItsmConnection, RequestTicket, Ticket
from sso.models import IdentityProvider, VerifiedDomain
from thalian.models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    OutboxEvent,
    hash_token,
    new_raw_token,
)
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

from .factories import (
    ApplicationFactory,
    CampaignFactory,
    EntitlementFactory,
    IdentityFactory,
    ReviewItemFactory,
    UserFactory,
)

PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


@dataclass
class World:
    organization: Organization
    admin: Membership
    viewer: Membership
    reviewer: Membership
    admin_token: str
    viewer_token: str
    ids: dict[str, object] = field(default_factory=dict)
    super_admin: Membership | None = None
    super_admin_token: str = ""

    def value_for(self, segment: str, name: str):
        """The real value of URL parameter `name` that follows the literal path `segment` ("members/", ...)."""
        owner = segment.rstrip("/").rsplit("/", 1)[-1]
        by_owner = {
            ("members", "pk"): "membership",
            ("invitations", "pk"): "invitation",
            ("applications", "pk"): "application",
            ("identities", "pk"): "identity",
            ("imports", "pk"): "sync_run",
            ("tokens", "public_id"): "token",
            ("itsm", "public_id"): "itsm_connection",
            ("itsm-connections", "public_id"): "itsm_connection",
            ("itsm-tickets", "item_id"): "revoked_item",
            ("tickets", "ticket_id"): "ticket",
            ("items", "item_id"): "item",
            ("campaigns", "campaign_id"): "campaign",
            ("packages", "package_id"): "package",
            ("test", "channel"): "channel",
            ("providers", "public_id"): "sso_provider",
            ("new", "protocol"): "sso_protocol",
            ("domains", "pk"): "sso_domain",
            ("events", "event_id"): "outbox_event",
            ("outbox", "event_id"): "outbox_event",
            ("guests", "guest_id"): "guest",
            ("delegates", "delegation_id"): "delegation",
            ("access-requests", "request_id"): "access_request",
            ("request-tickets", "ticket_id"): "request_ticket",
            ("my-delegation", "delegation_id"): "delegation",
        }
        if name == "action":
            return "resend"
        key = by_owner.get((owner, name))
        if key in ("guest", "delegation"):  # none in the world: an unknown id answers 404
            return self.ids.get(key, 999999)
        return self.ids.get(key) if key else None

    def kwargs_for(self, route: str) -> dict | None:
        """Real values for every parameter of `route` (a resolver pattern string), or None if one has none."""
        kwargs: dict[str, object] = {}
        for match in PARAM.finditer(route):
            name = match.group("name")
            if name == "org_slug":
                kwargs[name] = self.organization.slug
                continue
            value = self.value_for(route[: match.start()], name)
            if value is None:
                return None
            kwargs[name] = value
        return kwargs


def _token(membership: Membership) -> tuple[ApiToken, str]:
    raw = new_raw_token()
    token = ApiToken.objects.create(
        organization=membership.organization, membership=membership, name="world", prefix=raw[:10],
        token_hash=hash_token(raw),
    )
    return token, raw


def build_world(organization: Organization) -> World:
    """Members (super admin, admin, viewer, reviewer), an open invitation, API tokens, an application with a SCIM connector
    and a sync run, an identity with a grant, an active campaign with a decided revoke (ticketed) and a pending
    item, an ITSM connection and an evidence package, all in `organization`."""
    slug = organization.slug
    with scopes_disabled():
        members = {
            role: Membership.objects.create(
                organization=organization, role=role, user=UserFactory(email=f"{role}@{slug}.test")
            )
            for role in (Role.SUPER_ADMIN, Role.ADMIN, Role.VIEWER, Role.REVIEWER)
        }
        admin, viewer, reviewer = members[Role.ADMIN], members[Role.VIEWER], members[Role.REVIEWER]
        token, admin_raw = _token(admin)
        _viewer_token, viewer_raw = _token(viewer)
        _super_token, super_raw = _token(members[Role.SUPER_ADMIN])
        invitation = Invitation.objects.create(
            organization=organization, email=f"invited@{slug}.test", role=Role.VIEWER,
            token_hash=hash_token(new_raw_token()), invited_by=admin.user,
            expires_at=timezone.now() + dt.timedelta(days=7),
        )
        application = ApplicationFactory(organization=organization, name="GitHub", owner_email=admin.user.email)
        identity = IdentityFactory(organization=organization, email=f"ann@{slug}.test", name="Ann Archer")
        entitlement = EntitlementFactory(organization=organization, identity=identity, application=application,
                                         role="admin")
        ScimConnector.objects.create(organization=organization, application=application,
                                     base_url="https://scim.example.com/v2", token="scim-token")
        run = SyncRun.objects.create(organization=organization, kind="entitlements", status=SyncRunStatus.SUCCEEDED,
                                     started_at=timezone.now(), finished_at=timezone.now(), file_name="grants.csv")
        SyncRunApplication.objects.create(organization=organization, sync_run=run, application=application)
        campaign = CampaignFactory(
            organization=organization, title="Q3 access review", status=CampaignStatus.ACTIVE,
            snapshot_at=timezone.now(), launched_at=timezone.now(), fallback_reviewer=admin,
        )
        common = {"organization": organization, "campaign": campaign, "application": application,
                  "application_name": "GitHub", "reviewer": reviewer, "reviewer_email": reviewer.user.email}
        pending = ReviewItemFactory(**common, identity_email=identity.email, entitlement=entitlement, role="admin")
        revoked = ReviewItemFactory(
            **common, identity_email=f"bob@{slug}.test", role="member", decision="revoke", decision_reason="left",
            decided_by=reviewer.user, decided_by_email=reviewer.user.email, decided_at=timezone.now(),
            ticket_status="failed", remediation_status="pending",
        )
        DecisionEvent.objects.create(
            organization=organization, campaign=campaign, item=revoked, decision="revoke", reason="left",
            actor=reviewer.user, actor_email=reviewer.user.email, actor_role=reviewer.role,
        )
        connection = ItsmConnection.objects.create(
            organization=organization, kind="jira", name="Ops Jira", base_url="https://ops.example.com",
            config={"email": "bot@example.com", "project_key": "OPS", "issue_type": "Task"},
            secrets='{"api_token": "jira-token"}', is_default=True,
        )
        ticket = Ticket.objects.create(organization=organization, item=revoked, campaign=campaign,
                                       connection=connection, state="failed", error="HTTP 401")
        package = EvidencePackage.objects.create(
            organization=organization, campaign=campaign, status="ready", file_name="evidence.zip",
            generated_by_email=admin.user.email, stored=True,
        )
        package.file.save("evidence.zip", ContentFile(b"PK\x05\x06" + bytes(18)), save=True)
        provider = IdentityProvider.objects.create(
            organization=organization, name="Okta", protocol="oidc", issuer="https://idp.example.com",
            client_id="thalian", client_secret="sso-secret",
        )
        domain = VerifiedDomain.objects.create(organization=organization, domain=f"{slug}.example.com")
        # A hand-off whose receiver gave up (the operations page lists it with a Retry button).
        failed_event = OutboxEvent.unscoped.create(
            organization=organization, name="campaigns.cancelled", payload={"campaign_id": str(campaign.pk)},
            state="failed", outcomes={"notifications.campaign_cancelled": {"state": "failed", "attempts": 8,
                                                                           "error": "SMTP down"}},
        )
        # An access request of the identity, approved and ticketed (the ticket failed).
        access_request = AccessRequest.objects.create(
            organization=organization, type="grant", identity=identity, application=application, role="maintainer",
            reason="Release duty", status="approved", requested_by=admin, requested_by_email=admin.user.email,
            stages=[{"kind": "application_owner"}], approval_deadline=timezone.now() + dt.timedelta(days=14),
            decided_at=timezone.now(), ticket_state="failed", ticket_error="HTTP 401",
        )
        Approval.objects.create(organization=organization, access_request=access_request, stage=0,
                                kind="application_owner", approver=reviewer, approver_email=reviewer.user.email,
                                decision="approved", decided_by_email=reviewer.user.email, decided_at=timezone.now())
        request_ticket = RequestTicket.objects.create(organization=organization, access_request=access_request,
                                                      purpose="fulfil", connection=connection, state="failed",
                                                      error="HTTP 401")
    world = World(organization, admin, viewer, reviewer, admin_raw, viewer_raw,
                  super_admin=members[Role.SUPER_ADMIN], super_admin_token=super_raw)
    world.ids = {
        "membership": viewer.pk,
        "invitation": invitation.pk,
        "token": token.public_id,
        "application": application.pk,
        "identity": identity.pk,
        "sync_run": run.pk,
        "campaign": campaign.pk,
        "item": pending.pk,
        "revoked_item": revoked.pk,
        "ticket": ticket.pk,
        "itsm_connection": connection.public_id,
        "package": package.pk,
        "channel": "email",
        "sso_provider": provider.public_id,
        "sso_protocol": "oidc",
        "sso_domain": domain.pk,
        "outbox_event": failed_event.pk,
        "access_request": access_request.pk,
        "request_ticket": request_ticket.pk,
        "uuid": uuid.uuid4(),
    }
    return world
