"""Revokes made before any ITSM connection: listed with "Open tickets now" once a connection applies, and opened
exactly once per revoke through the page or the API (against a real fake Jira on 127.0.0.1)."""

import pytest
from django.urls import reverse

from campaigns.models import CampaignStatus, ReviewItem
from itsm.models import Ticket
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

pytestmark = pytest.mark.django_db


@pytest.fixture
def before_connection(revoked_item, decide, org):
    """Two revokes decided while no connection existed: the hook ran and opened nothing."""
    items = [revoked_item(), revoked_item()]
    assert decide(items)["queued"] == 0
    with scopes_disabled():
        assert not Ticket.objects.exists()
    return items


def api_url(campaign, slug="acme"):
    return f"/api/v1/orgs/{slug}/campaigns/{campaign.pk}/tickets/"


def test_api_opens_one_ticket_per_unticketed_revoke_and_is_idempotent(
    before_connection, revoked_item, jira, connect, member, api_for, django_capture_on_commit_callbacks
):
    campaign = revoked_item.campaign
    connect(jira)
    api = api_for(member(Role.ADMIN))
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(api_url(campaign))
    assert first.status_code == 200 and first.json() == {"opened": 2}
    with django_capture_on_commit_callbacks(execute=True):
        again = api.post(api_url(campaign))
    assert again.json() == {"opened": 0}
    with scopes_disabled():
        assert Ticket.objects.count() == 2
        keys = sorted(ReviewItem.objects.filter(campaign=campaign).values_list("ticket_key", flat=True))
    assert keys == ["OPS-1", "OPS-2"] and len(jira.tickets) == 2
    assert AuditEvent.objects.filter(action="itsm.tickets_opened_now").get().details["count"] == 2


def test_completed_campaign_revokes_are_opened_too_but_not_cancelled_ones(
    before_connection, revoked_item, jira, connect, member, api_for, org
):
    campaign = revoked_item.campaign
    connect(jira)
    api = api_for(member(Role.ADMIN))
    with scope(org):
        type(campaign).objects.filter(pk=campaign.pk).update(status=CampaignStatus.CANCELLED)
    response = api.post(api_url(campaign))
    assert response.status_code == 400 and "cancelled" in response.json()["detail"]
    with scope(org):
        type(campaign).objects.filter(pk=campaign.pk).update(status=CampaignStatus.COMPLETED)
    assert api.post(api_url(campaign)).json() == {"opened": 2}


def test_without_any_connection_the_api_says_what_is_missing(before_connection, revoked_item, member, api_for):
    response = api_for(member(Role.ADMIN)).post(api_url(revoked_item.campaign))
    assert response.status_code == 400 and "No ticketing system is connected" in response.json()["detail"]


def test_a_route_to_another_application_does_not_make_these_revokes_due(
    before_connection, revoked_item, jira, connect, org, member, api_for
):
    from itsm.models import ApplicationRoute, ItsmConnection
    from tests.factories import ApplicationFactory

    other = ApplicationFactory(organization=org, name="Elsewhere")

    connection = connect(jira)
    with scope(org):
        ItsmConnection.objects.filter(pk=connection.pk).update(is_default=False)
        ApplicationRoute.objects.create(organization=org, application=other, connection=connection)
    assert api_for(member(Role.ADMIN)).post(api_url(revoked_item.campaign)).json() == {"opened": 0}


def test_outsider_gets_404_and_roles_without_campaign_management_403(
    before_connection, revoked_item, jira, connect, member, api_for, outsider, client_for
):
    campaign = revoked_item.campaign
    connect(jira)
    assert api_for(outsider).post(api_url(campaign, "globex")).status_code == 404
    assert api_for(outsider).post(api_url(campaign)).status_code == 404
    for role in (Role.AUDITOR, Role.VIEWER, Role.REVIEWER):
        assert api_for(member(role)).post(api_url(campaign)).status_code == 403
    page = reverse("campaign_open_tickets", args=["acme", campaign.pk])
    assert client_for(member(Role.AUDITOR)).post(page).status_code == 403
    client = client_for(outsider)
    assert client.post(reverse("campaign_open_tickets", args=["globex", campaign.pk])).status_code == 404
    with scopes_disabled():
        assert not Ticket.objects.exists()


def test_campaign_page_and_queue_list_them_with_open_tickets_now(
    before_connection, revoked_item, jira, connect, member, client_for, django_capture_on_commit_callbacks
):
    campaign = revoked_item.campaign
    client = client_for(member(Role.ADMIN))
    remediation = reverse("campaign_remediation", args=["acme", campaign.pk])
    assert "Revokes without a ticket" not in client.get(remediation).content.decode()  # no connection yet
    connect(jira)
    page = client.get(remediation).content.decode()
    assert "2 revokes of this campaign were recorded before" in page and "Open tickets now" in page
    assert before_connection[0].identity_email in page
    queue = client.get(reverse("remediation_queue", args=["acme"])).content.decode()
    assert "Revokes without a ticket" in queue and f"Open tickets now for {campaign.title}" in queue
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("campaign_open_tickets", args=["acme", campaign.pk]), follow=True)
    assert "2 tickets opened for revokes without one." in response.content.decode()
    assert "Revokes without a ticket" not in client.get(remediation).content.decode()
    assert "Revokes without a ticket" not in client.get(reverse("remediation_queue", args=["acme"])).content.decode()


def test_queue_query_count_does_not_grow_with_campaigns(
    revoked_item, decide, jira, connect, member, client_for, django_assert_max_num_queries, org
):
    from tests.factories import CampaignFactory

    client = client_for(member(Role.ADMIN))
    decide([revoked_item()])
    connect(jira)
    url = reverse("remediation_queue", args=["acme"])
    with django_assert_max_num_queries(30) as ctx:
        client.get(url)
    baseline = len(ctx.captured_queries)
    for _ in range(5):
        campaign = CampaignFactory(organization=org, status=CampaignStatus.ACTIVE)
        revoked_item(item_campaign=campaign)
    with django_assert_max_num_queries(baseline):
        assert client.get(url).status_code == 200
