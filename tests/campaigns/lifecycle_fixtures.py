"""Inventory and campaign fixtures for the campaign lifecycle tests (imported by those modules)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from django.utils import timezone

from campaigns import launch, services
from thalian.permissions import Role
from thalian.tenancy import scope

from ..factories import ApplicationFactory, EntitlementFactory, IdentityFactory


@pytest.fixture
def inventory(org, member):
    """A small inventory of acme.

    Applications: GitHub (Engineering tools, sanctioned, owner is the member owner@acme.test), Salesforce (CRM,
    unsanctioned, owner not a member), Slack (Chat, sanctioned, no owner, never synced).
    Identities: ann (Engineering, manager mia), bob (Sales, terminated, manager mia), mia (Engineering, manager
    none; she is also the admin member mia@acme.test), svc (service account), agent (AI agent),
    ghost (unknown status: orphaned account), owner (the GitHub owner, also an identity).
    """
    # These fixtures exercise member reviewers and the fallback; guest reviewers have their own tests
    # (tests/campaigns/test_guest_reviewers.py), which turn the organization setting back on.
    org.guest_reviewers_enabled = False
    org.save(update_fields=["guest_reviewers_enabled"])
    admin = member(Role.ADMIN)
    owner_member = member(Role.REVIEWER, email="owner@acme.test")
    mia_member = member(Role.SECURITY_ANALYST, email="mia@acme.test")
    fallback = member(Role.SECURITY_ANALYST, email="fallback@acme.test")
    now = timezone.now()
    github = ApplicationFactory(organization=org, name="GitHub", category="Engineering tools", sanctioned=True,
                                owner_email="owner@acme.test")
    salesforce = ApplicationFactory(organization=org, name="Salesforce", category="CRM", sanctioned=False,
                                    owner_email="someone@elsewhere.test")
    slack = ApplicationFactory(organization=org, name="Slack", category="Chat", sanctioned=True, owner_email="",
                               last_synced_at=None)
    mia = IdentityFactory(organization=org, email="mia@acme.test", name="Mia Lead", department="Engineering")
    ann = IdentityFactory(organization=org, email="ann@acme.test", name="Ann Dev", department="Engineering",
                          manager=mia)
    bob = IdentityFactory(organization=org, email="bob@acme.test", name="Bob Sales", department="Sales",
                          manager=mia, status="terminated")
    svc = IdentityFactory(organization=org, email="ci-bot@acme.test", name="CI", department="Engineering",
                          kind="service_account", manager=ann)
    agent = IdentityFactory(organization=org, email="agent@acme.test", name="Helper agent", department="Support",
                            kind="ai_agent", manager=ann)
    ghost = IdentityFactory(organization=org, email="ghost@acme.test", name="", department="", status="unknown")
    owner = IdentityFactory(organization=org, email="owner@acme.test", name="Olga Owner", department="Engineering",
                            manager=mia)
    recent = now - dt.timedelta(days=2)
    old = now - dt.timedelta(days=200)
    grants = {
        "ann_github": EntitlementFactory(organization=org, identity=ann, application=github, role="admin",
                                         last_used=recent, is_privileged=True),
        "ann_slack": EntitlementFactory(organization=org, identity=ann, application=slack, role="member",
                                        last_used=recent),
        "bob_salesforce": EntitlementFactory(organization=org, identity=bob, application=salesforce, role="user",
                                             last_used=recent),
        "mia_github": EntitlementFactory(organization=org, identity=mia, application=github, role="member",
                                         last_used=old),
        "svc_github": EntitlementFactory(organization=org, identity=svc, application=github, role="deploy",
                                         last_used=None),
        "agent_slack": EntitlementFactory(organization=org, identity=agent, application=slack, role="bot",
                                          last_used=recent),
        "ghost_salesforce": EntitlementFactory(organization=org, identity=ghost, application=salesforce,
                                               role="user", last_used=recent),
        "owner_github": EntitlementFactory(organization=org, identity=owner, application=github, role="owner",
                                           last_used=recent, is_privileged=True),
    }
    return SimpleNamespace(
        org=org, admin=admin, owner_member=owner_member, mia_member=mia_member, fallback=fallback,
        github=github, salesforce=salesforce, slack=slack,
        identities=SimpleNamespace(mia=mia, ann=ann, bob=bob, svc=svc, agent=agent, ghost=ghost, owner=owner),
        grants=SimpleNamespace(**grants),
    )


@pytest.fixture
def make_campaign(inventory):
    """make_campaign(**overrides) -> a draft campaign created through the service by the admin."""

    def make(**overrides):
        values = {
            "title": "Q1 access review",
            "due_date": timezone.localdate() + dt.timedelta(days=14),
            "scope": {},
            "reviewer_strategy": "application_owner",
            "fallback_reviewer": "fallback@acme.test",
        }
        values.update(overrides)
        actor = values.pop("actor", inventory.admin)
        with scope(inventory.org):
            return services.campaign_create(organization=inventory.org, actor=actor, **values)

    return make


@pytest.fixture
def launched(inventory, make_campaign, django_capture_on_commit_callbacks):
    """launched(**overrides) -> a campaign launched (eager snapshot) with the freshness check overridden."""

    def make(**overrides):
        campaign = make_campaign(**overrides)
        with scope(inventory.org), django_capture_on_commit_callbacks(execute=True):
            launch.campaign_launch(campaign=campaign, actor=inventory.admin,
                                   freshness_override_reason="Slack is loaded by hand")
        with scope(inventory.org):
            campaign.refresh_from_db()
        return campaign

    return make
