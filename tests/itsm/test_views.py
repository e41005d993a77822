import pytest
from django.db import connection as db_connection
from django.urls import reverse

from campaigns.models import ReviewItem
from itsm import itsm_connections, verification
from itsm.models import ItsmConnection, Ticket
from itsm.selectors import campaign_remediation_summary
from tests.factories import ApplicationFactory
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

pytestmark = pytest.mark.django_db


def _url(name, *args, slug="acme"):
    return reverse(name, args=[slug, *args])


@pytest.fixture
def admin(member):
    return member(Role.ADMIN)


def test_admin_creates_a_connection_and_the_token_is_never_shown_again(
    admin, client_for, jira, itsm_settings, org
):
    client = client_for(admin)

    response = client.post(
        _url("itsm_connections"),
        {
            "kind": "jira",
            "name": "Ops Jira",
            "base_url": jira.base_url,
            "email": jira.email,
            "api_token": jira.api_token,
            "project_key": "ops",
            "is_default": "on",
        },
    )

    with scope(org):
        connection = ItsmConnection.objects.get()
    assert response.status_code == 302
    assert response["Location"] == _url("itsm_connection_edit", connection.public_id)
    assert (connection.config["project_key"], connection.is_default) == ("OPS", True)
    page = client.get(response["Location"])
    listing = client.get(_url("itsm_connections"))
    for html in (page.content.decode(), listing.content.decode()):
        assert jira.api_token not in html
    assert "Stored. Leave empty to keep it" in page.content.decode()
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM itsm_itsmconnection")
        [(stored,)] = cursor.fetchall()
    assert jira.api_token not in stored


def test_test_connection_shows_the_result(admin, client_for, jira, connect):
    connection = connect(jira)
    client = client_for(admin)

    ok = client.post(_url("itsm_connection_test", connection.public_id), HTTP_HX_REQUEST="true")
    itsm_connections.itsm_connection_update(connection=connection, actor=None, data={"api_token": "revoked"})
    failed = client.post(_url("itsm_connection_test", connection.public_id), HTTP_HX_REQUEST="true")

    assert "Connection works: Connected as Thalian Bot; project OPS (Operations)." in ok.content.decode()
    assert (
        "Connection failed: Jira answered 401: check the e-mail and API token. "
        "Details: HTTP 401: You are not authenticated" in failed.content.decode()
    )
    assert "revoked" not in failed.content.decode()
    assert len(jira.calls("GET", r"/rest/api/2/myself")) == 2


def test_saving_with_an_empty_secret_keeps_the_stored_one(admin, client_for, jira, connect, org):
    connection = connect(jira)
    client = client_for(admin)

    response = client.post(
        _url("itsm_connection_edit", connection.public_id),
        {
            "name": "Renamed",
            "base_url": jira.base_url,
            "email": jira.email,
            "project_key": "OPS",
            "api_token": "",
        },
    )

    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.name == "Renamed"
    assert connection.secret_values()["api_token"] == jira.api_token
    assert connection.client().test_connection().startswith("Connected")


def test_bad_input_names_the_problem_and_changes_nothing(admin, client_for, org, settings):
    settings.ALLOW_INSECURE_HTTP_INTEGRATIONS = False
    client = client_for(admin)

    response = client.post(
        _url("itsm_connections"),
        {
            "kind": "jira",
            "name": "Ops",
            "base_url": "http://jira.example.com",
            "email": "not-an-email",
            "project_key": "",
        },
    )

    html = response.content.decode()
    assert response.status_code == 400
    assert "Base URL must use https." in html
    assert "E-mail must be a valid e-mail address." in html
    assert "API token is required." in html
    assert "Project key is required" in html
    with scope(org):
        assert not ItsmConnection.objects.exists()


def test_servicenow_needs_https_even_where_http_is_allowed(admin, client_for, itsm_settings):
    response = client_for(admin).post(
        _url("itsm_connections"),
        {
            "kind": "servicenow",
            "name": "SN",
            "base_url": "http://sn.example.com",
            "username": "u",
            "password": "p",
        },
    )

    assert "ServiceNow requires an https base URL." in response.content.decode()


def test_default_connection_moves_and_applications_can_be_routed(
    admin, client_for, fake_vendor, connect, org
):
    first = connect(fake_vendor("jira"))
    payroll = ApplicationFactory(organization=org, name="Payroll")
    zendesk = fake_vendor("zendesk")
    client = client_for(admin)

    client.post(
        _url("itsm_connections"),
        {
            "kind": "zendesk",
            "name": "Support",
            "base_url": zendesk.base_url,
            "email": zendesk.email,
            "api_token": zendesk.api_token,
            "tags": "access-review urgent",
            "applications": [payroll.pk],
            "is_default": "on",
        },
    )

    first.refresh_from_db()
    with scope(org):
        second = ItsmConnection.objects.get(name="Support")
        assert (
            itsm_connections.connection_for_application(organization_id=org.pk, application_id=payroll.pk) == second
        )
    assert (first.is_default, second.is_default) == (False, True)
    assert second.config["tags"] == ["access-review", "urgent"]


def test_delete_connection(admin, client_for, jira, connect, org):
    connection = connect(jira)

    response = client_for(admin).post(_url("itsm_connection_delete", connection.public_id))

    assert response.status_code == 302
    with scope(org):
        assert not ItsmConnection.objects.exists()


def test_connection_form_marks_each_vendor_field_with_the_kinds_that_use_it(admin, client_for):
    body = client_for(admin).get(_url("itsm_connections")).content.decode()
    assert '<div class="field" data-show-when="kind=jira,zendesk">\n  <label for="id_email">' in body
    assert '<div class="field" data-show-when="kind=servicenow">\n  <label for="id_username">' in body
    assert '<div class="field" data-show-when="kind=freshservice">\n  <label for="id_api_key">' in body
    assert '<div class="field">\n  <label for="id_base_url">' in body


@pytest.mark.parametrize(
    ("name", "method", "needs_connection"),
    [
        ("itsm_connections", "get", False),
        ("itsm_connections", "post", False),
        ("itsm_connection_edit", "get", True),
        ("itsm_connection_edit", "post", True),
        ("itsm_connection_test", "post", True),
        ("itsm_connection_delete", "post", True),
    ],
)
def test_connection_pages_answer_404_to_outsiders_and_403_to_roles_without_settings(
    name, method, needs_connection, jira, connect, client_for, outsider, member
):
    connection = connect(jira)
    url = _url(name, connection.public_id) if needs_connection else _url(name)

    outsider_response = getattr(client_for(outsider), method)(url)
    analyst_response = getattr(client_for(member(Role.SECURITY_ANALYST)), method)(url)

    assert outsider_response.status_code == 404
    assert analyst_response.status_code == 403
    assert jira.api_token not in analyst_response.content.decode()


def test_connection_of_another_organization_is_404_even_for_an_admin(
    jira, connect, client_for, admin, other_org
):
    foreign = connect(jira, organization=other_org)
    client = client_for(admin)

    assert client.get(_url("itsm_connection_edit", foreign.public_id)).status_code == 404
    assert client.post(_url("itsm_connection_test", foreign.public_id)).status_code == 404
    assert client.post(_url("itsm_connection_delete", foreign.public_id)).status_code == 404
    assert not jira.requests
    with scopes_disabled():
        assert ItsmConnection.objects.filter(pk=foreign.pk).exists()


def test_connection_list_query_count_does_not_grow(
    admin, client_for, fake_vendor, connect, org, django_assert_max_num_queries
):
    client = client_for(admin)
    connect(fake_vendor("jira"))
    with django_assert_max_num_queries(12) as small:
        client.get(_url("itsm_connections"))
    for n in range(4):
        connect(
            fake_vendor("freshservice"),
            name=f"Desk {n}",
            is_default=False,
            application_ids=[ApplicationFactory(organization=org).pk],
        )
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert client.get(_url("itsm_connections")).status_code == 200


# Remediation queue -------------------------------------------------------------------------------------


def test_remediation_owner_sees_own_applications_with_action_required_first(
    revoked_item, decide, member, client_for, org
):
    mine = ApplicationFactory(
        organization=org,
        name="Payroll",
        owner_email="someone@acme.test",
        remediation_owner_email="it@acme.test",
    )
    theirs = ApplicationFactory(organization=org, name="CRM", owner_email="crm@acme.test")
    pending, flagged, other = (
        revoked_item(application=mine),
        revoked_item(application=mine, email="flag@acme.test"),
        revoked_item(application=theirs),
    )
    decide([pending, flagged, other])
    verification.remediation_verify_for_applications(organization_id=org.pk, application_ids=[])
    with scope(org):
        ReviewItem.objects.filter(pk=flagged.pk).update(remediation_status="action_required")
    owner = member(Role.VIEWER, email="it@acme.test")

    html = client_for(owner).get(_url("remediation_queue")).content.decode()

    assert "flag@acme.test" in html and pending.identity_email in html
    assert other.identity_email not in html
    assert html.index("flag@acme.test") < html.index(pending.identity_email)
    assert "Action required" in html


def test_staff_see_every_revoked_item_and_can_filter(revoked_item, decide, member, client_for, org):
    a, b = revoked_item(), revoked_item()
    decide([a, b])
    with scope(org):
        ReviewItem.objects.filter(pk=b.pk).update(remediation_status="verified_removed")
    client = client_for(member(Role.SECURITY_ANALYST))

    everything = client.get(_url("remediation_queue")).content.decode()
    removed = client.get(_url("remediation_queue") + "?state=verified_removed").content.decode()

    assert a.identity_email in everything and b.identity_email in everything
    assert b.identity_email in removed and a.identity_email not in removed


def test_remediation_queue_is_404_for_outsiders(client_for, outsider, org):
    assert client_for(outsider).get(_url("remediation_queue")).status_code == 404


def test_remediation_queue_query_count_does_not_grow(
    revoked_item, decide, member, client_for, django_assert_max_num_queries
):
    client = client_for(member(Role.ADMIN))
    decide([revoked_item()])
    with django_assert_max_num_queries(20) as small:
        client.get(_url("remediation_queue"))
    decide([revoked_item() for _ in range(6)])
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(_url("remediation_queue"))
    assert response.content.decode().count("<tr") == 8


# Campaign remediation and Retry --------------------------------------------------------------------------


def test_campaign_page_counts_and_retry_after_fixing_credentials(
    jira, connect, revoked_item, decide, member, client_for, org, django_capture_on_commit_callbacks
):
    connection = connect(jira, api_token="wrong")
    items = [revoked_item(), revoked_item()]
    decide(items)
    analyst = member(Role.SECURITY_ANALYST)
    client = client_for(analyst)
    campaign = items[0].campaign

    page = client.get(_url("campaign_remediation", campaign.pk)).content.decode()
    assert "Tickets failed" in page and "You are not authenticated" in page
    assert page.count(">Retry</button>") == 2

    itsm_connections.itsm_connection_update(connection=connection, actor=None, data={"api_token": jira.api_token})
    with scope(org):
        ticket = Ticket.objects.get(item=items[0])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url("itsm_ticket_retry", ticket.pk))
    assert response.status_code == 302
    with scope(org):
        assert ReviewItem.objects.get(pk=items[0].pk).ticket_status == "open"
        assert ReviewItem.objects.get(pk=items[1].pk).ticket_status == "failed"

    with django_capture_on_commit_callbacks(execute=True):
        client.post(_url("campaign_retry_failed", campaign.pk))
    with scope(org):
        counts = campaign_remediation_summary(campaign)
    assert (counts["ticket_open"], counts["ticket_failed"], counts["removal_pending"]) == (2, 0, 2)


def test_retry_is_403_for_roles_that_cannot_manage_campaigns_and_404_for_outsiders(
    jira, connect, revoked_item, decide, member, client_for, outsider, org
):
    connect(jira, api_token="wrong")
    item = revoked_item()
    decide(item)
    with scope(org):
        ticket = Ticket.objects.get(item=item)

    assert client_for(member(Role.VIEWER)).post(_url("itsm_ticket_retry", ticket.pk)).status_code == 403
    assert client_for(outsider).post(_url("itsm_ticket_retry", ticket.pk)).status_code == 404
    assert client_for(outsider).get(_url("campaign_remediation", item.campaign_id)).status_code == 404
    assert (
        client_for(member(Role.REVIEWER)).get(_url("campaign_remediation", item.campaign_id)).status_code
        == 403
    )
