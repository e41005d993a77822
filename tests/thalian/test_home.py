"""Home is role-aware: reviewers see their open reviews, staff see campaigns, overdue reviewers, removals,
stale applications and findings, auditors see completed campaigns and evidence; free plans get a way forward."""

import datetime as dt

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from campaigns.models import CampaignStatus
from tests.campaigns.review_support import active_campaign, add_items
from tests.factories import ApplicationFactory, EntitlementFactory, IdentityFactory
from thalian.permissions import Role
from thalian.tenancy import scopes_disabled

pytestmark = pytest.mark.django_db


def home(client, slug="acme"):
    return client.get(reverse("org_dashboard", args=[slug]))


def test_reviewer_sees_open_reviews_with_counts_due_dates_and_start_reviewing(org, member, client_for):
    reviewer = member(Role.REVIEWER)
    campaign = active_campaign(org, title="Q4 access review", due_date=timezone.localdate() + dt.timedelta(days=9))
    items = add_items(campaign, reviewer, 3)
    with scopes_disabled():
        items[0].decision = "approve"
        items[0].save()
    add_items(active_campaign(org, title="Not mine"), member(Role.REVIEWER, email="x@acme.test"), 2)
    body = home(client_for(reviewer)).content.decode()
    assert "Your reviews" in body and "Q4 access review" in body and "Not mine" not in body
    assert "<strong>2</strong> of 3 open" in body
    assert f"Due {campaign.due_date:%Y-%m-%d}" in body
    start = reverse("review_items", args=[org.slug, campaign.pk]) + "?reviewer=me&amp;decision=pending"
    assert f'<a class="button" href="{start}">Continue reviewing' in body
    assert "Active campaigns" not in body and "Open findings" not in body and "Overdue reviewers" not in body


def test_admin_sees_campaign_progress_overdue_reviewers_removals_stale_apps_and_findings(org, member, client_for):
    cache.clear()
    admin = member(Role.ADMIN)
    late = member(Role.REVIEWER, email="late@acme.test")
    overdue = active_campaign(org, title="Q3 review", due_date=timezone.localdate() - dt.timedelta(days=2))
    add_items(overdue, late, 4)
    app = ApplicationFactory(organization=org, name="Legacy CRM", last_synced_at=None)
    person = IdentityFactory(organization=org, email="pat@acme.test")
    EntitlementFactory(organization=org, identity=person, application=app, role="admin", is_privileged=True)
    body = home(client_for(admin)).content.decode()
    assert "Active campaigns" in body and "Q3 review" in body and "0 of 4 decided" in body
    items_url = reverse("review_items", args=[org.slug, overdue.pk])
    assert f'{items_url}?reviewer=late%40acme.test&amp;decision=pending">late@acme.test</a>' in body
    assert "4 undecided in Q3 review" in body
    assert "Revokes awaiting removal" in body and reverse("remediation_queue", args=[org.slug]) in body
    assert "Stale applications" in body and "Legacy CRM" in body and "never loaded" in body
    assert 'aria-label="Privileged: 1"' in body and "?finding=privileged" in body
    assert "Your reviews" not in body


def test_auditor_sees_completed_campaigns_and_evidence_not_operations(org, member, client_for):
    auditor = member(Role.AUDITOR)
    active_campaign(org, title="Q2 review", status=CampaignStatus.COMPLETED, completed_at=timezone.now())
    body = home(client_for(auditor)).content.decode()
    assert "Completed campaigns" in body and "Q2 review" in body
    assert reverse("evidence_list", args=[org.slug]) in body
    assert "Overdue reviewers" not in body and "Open findings" not in body and "Revokes awaiting removal" not in body


def test_free_plan_home_and_plan_page_offer_the_upgrade(free_org, member, client_for):
    owner = member(Role.SUPER_ADMIN, organization=free_org, email="owner@initech.test")
    admin = member(Role.ADMIN, organization=free_org, email="admin@initech.test")
    body = home(client_for(owner), free_org.slug).content.decode()
    assert "Access reviews are part of the Pro and Enterprise plans" in body
    assert f'href="{reverse("org_settings", args=[free_org.slug])}#id_plan">Upgrade the plan' in body
    page = client_for(admin).get(reverse("campaign_list", args=[free_org.slug]))
    assert page.status_code == 403
    assert "mailto:owner@initech.test?subject=Please%20upgrade%20" in page.content.decode()
    assert "Ask a super admin to upgrade" in page.content.decode()


def test_home_of_another_organization_is_404(org, outsider, client_for):
    assert home(client_for(outsider)).status_code == 404


def test_home_query_count_does_not_grow_with_campaigns(org, member, client_for, django_assert_num_queries):
    admin = member(Role.ADMIN)
    reviewer = member(Role.REVIEWER)
    client = client_for(admin)
    for i in range(2):
        add_items(active_campaign(org, title=f"C{i}"), reviewer, 2)
    cache.clear()
    home(client)  # warms the cached findings summary
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        home(client)
    for i in range(2, 6):
        add_items(active_campaign(org, title=f"C{i}"), reviewer, 2)
    with django_assert_num_queries(len(few.captured_queries)):
        home(client)
