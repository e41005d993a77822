# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Every page and GET endpoint of the product renders with realistic data.

The data holds campaigns in every state, decisions of every kind, tickets, notifications of every event kind
and an audit event for every action the code records. The URLs come from the URL resolver, so a page added
later is swept too; a page that answers 500 fails the suite.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from access_requests import services as access_request_services
from access_requests.models import AccessRequest
from campaigns import decisions
from campaigns import services as campaign_services
from campaigns.exceptions import exception_renewals_gather
from campaigns.models import Campaign, ReviewItem
from campaigns.remediation import review_item_confirm_removed
from entitlements.models import Application, Identity, SyncRun
from entitlements.services import inventory_import
from itsm.models import ItsmConnection, RequestTicket, Ticket
from notifications.models import Event, Notification
from sso.models import IdentityProvider, VerifiedDomain
from thalian.audit import audit_record
from thalian.models import ApiToken, AuditEvent, Invitation, Membership, OutboxEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from ..campaigns.lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401

pytestmark = pytest.mark.django_db

SOURCE_DIRS = ("thalian", "entitlements", "campaigns", "access_requests", "itsm", "notifications", "evidence")
ACTION_PATTERNS = (
    re.compile(r'\baction=f?"([a-z][a-z_.]+)"(?:\s+if\s+\w+\s+else\s+"([a-z][a-z_.]+)")?'),
    re.compile(r'\baudit_record\(\s*"([a-z][a-z_.]+)"'),
    re.compile(r'_audit\w*\([^)]*?"([a-z][a-z_]+\.[a-z_.]+)"'),
)


def audit_actions_in_code() -> set[str]:
    """Every literal audit action the product records (read from its source, so new actions are included)."""
    base = Path(settings.BASE_DIR)
    found: set[str] = set()
    for directory in SOURCE_DIRS:
        for path in (base / directory).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            text = path.read_text()
            if "audit" not in text:
                continue
            for pattern in ACTION_PATTERNS:
                for match in pattern.finditer(text):
                    found.update(group for group in match.groups() if group)
    return found


# Details as the product writes them, including keys that shadow dict methods in templates.
REALISTIC_DETAILS = {
    "items": 42,
    "keys": ["GitHub"],
    "values": {"from": "free", "to": "pro"},
    "count": 12,
    "reason": "Quarterly review =cmd|' /C calc'!A0",
    "changes": {"dormant_days": [90, 60]},
}


@pytest.fixture
def world(org, other_org, member, inventory, launched, make_campaign, django_capture_on_commit_callbacks, settings):
    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
    admin = inventory.admin
    superadmin = member(Role.SUPER_ADMIN)
    auditor = member(Role.AUDITOR)
    member(Role.VIEWER)
    plain_reviewer = member(Role.REVIEWER)
    with scope(org):
        run = inventory_import(
            organization=org,
            kind="entitlements",
            stream=io.BytesIO(
                (
                    "application,identity_email,role,last_used\n"
                    f"GitHub,ann@acme.test,admin,{timezone.now():%Y-%m-%d}\n"
                    "GitHub,mia@acme.test,member,\n"
                ).encode()
            ),
            file_name="github.csv",
            actor=admin.user,
        )

    active = launched(title="Q2 review")
    with scope(org), django_capture_on_commit_callbacks(execute=True):
        items = list(ReviewItem.objects.filter(campaign=active).order_by("id"))
        decisions.review_item_decide(item=items[0], actor=inventory.fallback, decision="revoke",
                                     reason="Left the team")
        decisions.review_item_decide(item=items[1], actor=inventory.fallback, decision="exception",
                                     reason="Needed for the audit period")
        decisions.review_item_decide(item=items[2], actor=inventory.fallback, decision="approve", reason="")
        decisions.decisions_bulk_apply(campaign=active, actor=inventory.fallback,
                                       items=ReviewItem.objects.filter(pk__in=[i.pk for i in items[3:5]]),
                                       decision="approve", reason="Still needed")
        owner_items = ReviewItem.objects.filter(campaign=active, reviewer=inventory.owner_member)
        if owner_items.exists():
            decisions.decisions_bulk_apply(campaign=active, actor=inventory.owner_member, items=owner_items,
                                           decision="approve", reason="Team members")
            decisions.review_sign_off(campaign=active, actor=inventory.owner_member)
        kept = ReviewItem.objects.filter(campaign=active, signed_off_at__isnull=True).exclude(pk=items[0].pk).first()
        decisions.review_item_decide(item=kept, actor=inventory.fallback, decision="exception",
                                     reason="Contract until spring", expires_on=timezone.localdate() + dt.timedelta(days=10))
        connection = ItsmConnection.objects.create(
            organization=org, kind="jira", name="Jira desk", base_url="https://jira.example.test",
            config={"email": "ops@acme.test", "project_key": "ACC"}, is_default=True,
            secrets=json.dumps({"api_token": "jira-token"}),
        )
        Ticket.objects.create(organization=org, item=items[0], campaign=active, connection=connection,
                              state="failed", error="Jira answered 400: project ACC does not exist", attempts=5)

    closed = launched(title="Q1 review", default_outcome="recommendation")
    with scope(org), django_capture_on_commit_callbacks(execute=True):
        campaign_services.campaign_close(campaign=closed, actor=admin)
        revoked = ReviewItem.objects.filter(campaign=closed, decision="revoke").order_by("id").first()
        review_item_confirm_removed(item=revoked, actor=admin, comment="Deleted in the admin console")
    # Closed with revokes, the campaign above waits in remediating (one removal confirmed by hand); closed with
    # every item approved, this one completes.
    completed = launched(title="Q4 review", default_outcome="approve")
    with scope(org), django_capture_on_commit_callbacks(execute=True):
        campaign_services.campaign_close(campaign=completed, actor=admin)
    cancelled = launched(title="Cancelled review")
    with scope(org), django_capture_on_commit_callbacks(execute=True):
        campaign_services.campaign_cancel(campaign=cancelled, actor=admin, reason="Scope was wrong")
    draft = make_campaign(title="Draft review")
    # The exception decided above, expired and gathered into a renewal campaign.
    renewals = exception_renewals_gather(organization=org, today=timezone.localdate() + dt.timedelta(days=120))

    with scope(org), django_capture_on_commit_callbacks(execute=True):
        # Access requests: one pending, one decided by the fallback (the ticket waits for a connection here).
        access_request_services.access_request_create(
            actor=admin, type="grant", identity="ann@acme.test", application="GitHub", role="maintainer",
            reason="Release duty")
        request = access_request_services.access_request_create(
            actor=admin, type="revoke", identity="ann@acme.test", application="GitHub", role="admin",
            reason="Moved teams")
        approval = access_request_services.current_approval(request)
        if approval is not None and approval.approver_id and approval.approver_id != superadmin.pk:
            access_request_services.approval_reassign(req=request, actor=superadmin, to=superadmin.user.email,
                                                      reason="Covering")
        access_request_services.access_request_decide(req=request, actor=superadmin, decision="deny",
                                                      reason="Still on the team")

    with scope(org):
        for n, event in enumerate(Event.values):
            Notification.objects.create(
                organization=org, campaign=active, event=event, channel="email",
                recipient_membership=inventory.fallback, recipient="fallback@acme.test",
                dedupe_key=f"sweep-{n}", title=f"{event} notice", body="You have 3 items to review.",
                action_url="https://thalian.example.com/o/acme/reviews/", action_label="Open",
                status=["sent", "failed", "queued", "retrying"][n % 4], error="SMTP 550" if n % 4 == 1 else "",
            )
        Invitation.objects.create(organization=org, email="new@acme.test", role="viewer", invited_by=admin.user,
                                  token_hash="0" * 64, expires_at=timezone.now() + dt.timedelta(days=7))
        ApiToken.objects.create(organization=org, membership=admin, name="ci", prefix="thl_abcdef",
                                token_hash="1" * 64)

    recorded = set(AuditEvent.objects.filter(organization=org).values_list("action", flat=True))
    for action in sorted(audit_actions_in_code() - recorded):
        audit_record(action=action, organization=org, actor=admin.user, target_label=f"sweep {action}",
                     details=REALISTIC_DETAILS)
    return {
        "campaigns": [active, closed, completed, cancelled, draft, renewals],
        "superadmin": superadmin,
        "admin": admin,
        "auditor": auditor,
        "reviewer": inventory.fallback,
        "plain_reviewer": plain_reviewer,
        "run": run,
        "connection": connection,
    }


def _routes(patterns=None, prefix=""):
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name or ""


PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def _values(world, name: str, param: str) -> list[str]:
    """Candidate values for one URL parameter, by parameter and page name."""
    with scopes_disabled():
        campaigns = world["campaigns"]
        if param == "org_slug":
            return ["acme"]
        if param == "campaign_id":
            return [str(c.pk) for c in campaigns]
        if param == "item_id":
            items = ReviewItem.objects.filter(campaign=campaigns[0]).exclude(decision="").order_by("id")[:3]
            renewal = ReviewItem.objects.filter(campaign=campaigns[-1]).order_by("id")[:1]  # the renewals
            return [str(i.pk) for i in [*items, *renewal]]
        if param == "package_id":
            return [str(p) for p in campaigns[0].evidence_packages.values_list("id", flat=True)[:1]] or [
                "00000000-0000-0000-0000-000000000000"
            ]
        if param == "request_id":
            return [str(r) for r in AccessRequest.objects.filter(organization__slug="acme")
                    .values_list("pk", flat=True)[:2]]
        if param == "ticket_id" and "access_request" in name:
            return [str(t) for t in RequestTicket.objects.values_list("id", flat=True)[:1]] or ["999999"]
        if param == "ticket_id":
            return [str(t) for t in Ticket.objects.values_list("id", flat=True)]
        if param == "protocol":
            return ["oidc", "saml", "ldap"]
        if param == "event_id":
            # Operations: a real hand-off of the organization, and one that does not exist.
            return [str(e) for e in OutboxEvent.unscoped.filter(organization__slug="acme")
                    .values_list("pk", flat=True)[:1]] + ["999999999"]
        if param == "public_id":
            if "sso" in name:
                ids = IdentityProvider.objects.values_list("public_id", flat=True)[:2]
                return [str(p) for p in ids] or ["00000000-0000-0000-0000-000000000000"]
            if "itsm" in name:
                return [str(world["connection"].public_id)]
            return [str(t) for t in ApiToken.objects.values_list("public_id", flat=True)[:1]]
        if param == "channel":
            return ["email", "slack", "teams"]
        if param == "guest_id":  # a campaign without guests: the action answers 404
            return ["1"]
        if param == "action":
            return ["resend", "revoke"]
        if param == "delegation_id":
            return ["1"]
        if param in ("token", "uidb64"):
            return ["not-a-valid-token"]
        if param == "pk":
            if "member" in name and "invitation" not in name:
                return [str(m) for m in Membership.objects.filter(organization__slug="acme")
                        .values_list("pk", flat=True)[:2]]
            if "invitation" in name:
                return [str(i) for i in Invitation.objects.values_list("pk", flat=True)[:1]] or ["1"]
            if "identity" in name:
                return [str(i) for i in Identity.objects.filter(organization__slug="acme")
                        .values_list("pk", flat=True)[:3]]
            if "application" in name or "scim" in name:
                return [str(a) for a in Application.objects.filter(organization__slug="acme")
                        .values_list("pk", flat=True)]
            if "domain" in name:
                return [str(d) for d in VerifiedDomain.objects.values_list("pk", flat=True)[:2]] or ["1"]
            if "import" in name:
                return [str(r) for r in SyncRun.objects.filter(organization__slug="acme")
                        .values_list("pk", flat=True)[:2]] or ["1"]
        raise AssertionError(f"the page sweep does not know how to fill <{param}> of {name!r}; teach _values")


def _urls(world) -> list[str]:
    urls: list[str] = []
    for route, name in _routes():
        params = [m.group(2) for m in PARAM.finditer(route)]
        combos = [route]
        for param in params:
            values = _values(world, name, param)
            combos = [re.sub(rf"<(?:\w+:)?{param}>", value, c, count=1) for c in combos for value in values]
        urls.extend("/" + c for c in combos)
    return urls


def test_every_page_renders_with_realistic_data(world, client):
    # Precondition: the data holds what the sweep promises.
    with scopes_disabled():
        actions = set(AuditEvent.objects.values_list("action", flat=True))
        kinds = set(Notification.objects.values_list("event", flat=True))
        decision_kinds = set(decisions.DecisionEvent.objects.values_list("kind", flat=True))
        statuses = set(Campaign.objects.values_list("status", flat=True))
    assert audit_actions_in_code() <= actions and "campaign_launched" in actions
    assert set(Event.values) <= kinds
    assert {"single", "bulk", "system"} <= decision_kinds
    assert {"active", "remediating", "completed", "cancelled", "draft"} <= statuses

    urls = _urls(world)
    assert len(urls) > 100
    failures = []
    for who in ("superadmin", "auditor", "reviewer", "plain_reviewer"):
        client.force_login(world[who].user)
        for url in urls:
            response = client.get(url)
            if response.status_code >= 500:
                failures.append(f"{who} GET {url} -> {response.status_code}")
    assert failures == []


def test_audit_log_shows_details_named_like_dict_methods(world, client):
    client.force_login(world["auditor"].user)
    response = client.get("/o/acme/audit/?action=campaign_launched")
    assert response.status_code == 200
    assert "items=" in response.content.decode()
