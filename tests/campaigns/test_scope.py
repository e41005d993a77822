# ruff: noqa: F811 - fixtures imported from lifecycle_fixtures are requested by name
"""Scope resolution: applications by name or filter, departments, identity kinds, presets, privileged only.
The preview and the snapshot select exactly the same grants."""

from __future__ import annotations

import pytest

from campaigns import selectors, services
from campaigns.models import ReviewItem
from thalian.tenancy import scope, scopes_disabled

from .lifecycle_fixtures import inventory, launched, make_campaign  # noqa: F401

pytestmark = pytest.mark.django_db

# (scope, applications, identities, the (identity, application) grants selected)
CASES = {
    "everything": ({}, 3, 7, None),
    "one application by name, any case": ({"applications": ["gITHUB"]}, 1, 4, {
        ("ann", "GitHub"), ("mia", "GitHub"), ("ci-bot", "GitHub"), ("owner", "GitHub")}),
    "category": ({"categories": ["CRM"]}, 1, 2, {("bob", "Salesforce"), ("ghost", "Salesforce")}),
    "sanctioned only": ({"sanctioned_only": True}, 2, 5, None),
    "at least 3 users": ({"min_users": 3}, 1, 4, None),
    "department": ({"departments": ["Sales"]}, 1, 1, {("bob", "Salesforce")}),
    "non-human preset": ({"preset": "non_human"}, 2, 2, {("ci-bot", "GitHub"), ("agent", "Slack")}),
    "ai agents preset": ({"preset": "ai_agents"}, 1, 1, {("agent", "Slack")}),
    "kinds within a preset": ({"preset": "non_human", "identity_kinds": ["service_account"]}, 1, 1,
                              {("ci-bot", "GitHub")}),
    "privileged only": ({"privileged_only": True}, 1, 2, {("ann", "GitHub"), ("owner", "GitHub")}),
    "filters combine": ({"sanctioned_only": True, "departments": ["Engineering"], "identity_kinds": ["human"]},
                        2, 3, {("ann", "GitHub"), ("ann", "Slack"), ("mia", "GitHub"), ("owner", "GitHub")}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_preview_and_snapshot_select_the_same_grants(inventory, launched, name):
    raw_scope, apps, identities, grants = CASES[name]
    with scope(inventory.org):
        clean = services.scope_clean(organization=inventory.org, scope=raw_scope)
        preview = selectors.campaign_scope_preview(organization=inventory.org, scope=clean)
    assert (preview.application_count, preview.identity_count) == (apps, identities)
    campaign = launched(scope=raw_scope)
    with scopes_disabled():
        selected = {(i.identity_email.split("@")[0], i.application_name)
                    for i in ReviewItem.objects.filter(campaign=campaign)}
    assert len(selected) == preview.item_count == campaign.item_count
    if grants is not None:
        assert selected == grants


def test_removed_grants_are_not_in_scope(inventory, launched):
    with scopes_disabled():
        grant = inventory.grants.ann_slack
        grant.present = False
        grant.save()
    campaign = launched()
    assert campaign.item_count == 7


def test_unknown_scope_values_are_named(inventory):
    with scope(inventory.org):
        for bad, message in (
            ({"applications": ["GitHub", "Jira"]}, "unknown application(s): Jira"),
            ({"identity_kinds": ["robot"]}, "unknown identity kind(s): robot"),
            ({"preset": "robots"}, "unknown preset 'robots'"),
            ({"colour": "blue"}, "unknown scope key(s): colour"),
            ({"min_users": "many"}, "scope.min_users must be a whole number"),
            ({"sanctioned_only": "yes"}, "scope.sanctioned_only must be true or false"),
        ):
            with pytest.raises(services.CampaignError, match=message.replace("(", r"\(").replace(")", r"\)")):
                services.scope_clean(organization=inventory.org, scope=bad)


def test_application_names_are_stored_as_the_inventory_spells_them(inventory, make_campaign):
    campaign = make_campaign(scope={"applications": ["slack", "GITHUB", "slack"]})
    assert campaign.scope["applications"] == ["Slack", "GitHub"]


def test_stale_applications_are_listed_in_the_preview(inventory):
    with scope(inventory.org):
        preview = selectors.campaign_scope_preview(organization=inventory.org, scope={})
    assert [(s.name, s.last_synced_at) for s in preview.stale] == [("Slack", None)]
