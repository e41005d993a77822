"""Outbound URLs may not reach internal addresses unless ALLOWED_INTERNAL_HOSTS lists them."""

import pytest
from pytest_httpserver import HTTPServer
from urllib3.exceptions import NewConnectionError

from itsm.clients import BaseUrlError, ItsmPermanentError, build_client, validate_base_url
from notifications.channels import ChannelPermanentError, Message, SlackSender, TeamsSender
from thalian import netguard


@pytest.fixture
def no_internal_hosts(settings):
    settings.ALLOWED_INTERNAL_HOSTS = []
    return settings


@pytest.fixture
def loopback_server():
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://127.0.0.1:8443", "loopback"),
        ("https://localhost", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://10.1.2.3", "private"),
        ("https://192.168.0.10", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://0.0.0.0", "unspecified"),
        ("https://224.0.0.1", "multicast"),
        ("https://100.64.0.1", "reserved"),
    ],
)
def test_internal_addresses_are_refused_when_the_url_is_checked(no_internal_hosts, url, kind):
    with pytest.raises(netguard.AddressNotAllowed, match=kind):
        netguard.check_url(url)


def test_public_addresses_and_unresolvable_names_pass_the_check(no_internal_hosts):
    netguard.check_url("https://8.8.8.8/")
    netguard.check_url("https://acme.atlassian.invalid/")  # checked again, after resolution, on connection


def test_only_the_listed_internal_address_is_allowed(settings):
    settings.ALLOWED_INTERNAL_HOSTS = ["127.0.0.1"]
    netguard.check_url("https://127.0.0.1:9000/")
    with pytest.raises(netguard.AddressNotAllowed, match="127.0.0.2"):
        netguard.check_url("https://127.0.0.2:9000/")


def test_a_listed_network_or_host_name_is_allowed(settings):
    settings.ALLOWED_INTERNAL_HOSTS = ["10.20.0.0/16", "localhost"]
    netguard.check_url("https://10.20.3.4/")
    netguard.check_url("https://localhost:8443/")
    with pytest.raises(netguard.AddressNotAllowed):
        netguard.check_url("https://10.21.0.1/")


def test_itsm_base_url_pointing_inside_is_refused_with_a_reason(no_internal_hosts):
    with pytest.raises(BaseUrlError, match="loopback address.*ALLOWED_INTERNAL_HOSTS"):
        validate_base_url("https://127.0.0.1:8443")


@pytest.mark.parametrize("kind", ["jira", "servicenow", "freshservice", "zendesk"])
def test_itsm_client_refuses_at_connection_time_after_resolution(no_internal_hosts, loopback_server, kind):
    """A name (localhost) that resolves to a loopback address: refused before anything is sent."""
    values = {
        "email": "a@b.test", "api_token": "t", "project_key": "ACC", "username": "u", "password": "p",
        "api_key": "k",
    }
    base_url = f"https://localhost:{loopback_server.port}"
    if kind == "zendesk":
        base_url = f"https://127.0.0.2:{loopback_server.port}"  # zenpy needs a dotted host name
    client = build_client(kind, base_url=base_url, values=values)
    with pytest.raises(ItsmPermanentError, match="not allowed: it is a loopback address"):
        client.test_connection()
    assert loopback_server.log == []


def test_the_connection_itself_is_pinned_to_the_checked_address(no_internal_hosts, loopback_server):
    """Even when the pre-send check is skipped (DNS answering differently the second time), the socket is
    opened only to an address that passed the check."""
    from thalian.netguard import _GuardedHTTPConnection

    connection = _GuardedHTTPConnection("localhost", loopback_server.port, timeout=2)
    with pytest.raises(NewConnectionError, match="loopback"):
        connection.connect()
    assert loopback_server.log == []


def test_listed_host_is_reached_through_the_guarded_session(settings, loopback_server):
    settings.ALLOWED_INTERNAL_HOSTS = ["127.0.0.1"]
    loopback_server.expect_request("/ping").respond_with_data("pong")
    assert netguard.session().get(loopback_server.url_for("/ping"), timeout=5).text == "pong"


def test_scim_sync_refuses_an_internal_address(no_internal_hosts, loopback_server):
    from entitlements.scim import ScimClient, ScimUnavailableError

    client = ScimClient(base_url=f"http://localhost:{loopback_server.port}/v2", token="t", timeout=2)
    with pytest.raises(ScimUnavailableError, match="loopback address"):
        list(client.iter_users())
    assert loopback_server.log == []


MESSAGE = Message("campaign_launched", "Review assigned", "12 items", "https://thalian.test/x", "Open", "")


def test_teams_webhook_to_an_internal_address_is_refused(no_internal_hosts, loopback_server):
    sender = TeamsSender(webhook_url=loopback_server.url_for("/hook"))
    with pytest.raises(ChannelPermanentError, match="loopback address"):
        sender.send(MESSAGE)
    assert loopback_server.log == []


def test_slack_api_at_an_internal_address_is_refused(no_internal_hosts, loopback_server):
    sender = SlackSender(token="xoxb-test-token-123456", channel_id="C0123ABCD",
                         base_url=loopback_server.url_for("/api/"))
    with pytest.raises(ChannelPermanentError, match="loopback address"):
        sender.send(MESSAGE)
    assert loopback_server.log == []


def test_sockets_opened_while_checking_connections_are_refused_at_connect(no_internal_hosts, loopback_server):
    import socket

    with pytest.raises(netguard.AddressNotAllowed, match="slack.example.com \\(127.0.0.1\\)"):
        with netguard.checking_connections("slack.example.com"):
            socket.create_connection(("127.0.0.1", loopback_server.port), timeout=2)
    socket.create_connection(("127.0.0.1", loopback_server.port), timeout=2).close()  # nothing checked outside


def test_slack_is_refused_on_connect_when_the_name_answers_differently_the_second_time(
    no_internal_hosts, loopback_server, monkeypatch
):
    """DNS rebinding: the name passed the check when the message was prepared, then resolves inside."""
    monkeypatch.setattr(netguard, "check_url", lambda url: None)
    sender = SlackSender(token="xoxb-test-token-123456", channel_id="C0123ABCD",
                         base_url=loopback_server.url_for("/api/"))
    with pytest.raises(ChannelPermanentError, match="loopback address"):
        sender.send(MESSAGE)
    assert loopback_server.log == []


def test_teams_webhook_setting_pointing_inside_is_refused(no_internal_hosts):
    from django import forms

    from notifications.forms import validate_webhook_url

    with pytest.raises(forms.ValidationError, match="private address"):
        validate_webhook_url("https://10.0.0.5/workflows/hook")


@pytest.mark.django_db
def test_scim_connector_pointing_inside_is_refused_and_nothing_saved(no_internal_hosts, org):
    from entitlements.models import Application, ScimConnector
    from entitlements.services import ConnectorError, scim_connector_save
    from thalian.tenancy import scope

    with scope(org):
        app = Application.objects.create(organization=org, name="GitHub")
        with pytest.raises(ConnectorError, match="link-local"):
            scim_connector_save(application=app, base_url="https://169.254.169.254/scim/v2", token="t")
        assert not ScimConnector.objects.exists()


@pytest.mark.django_db
def test_itsm_connection_api_refuses_an_internal_base_url(no_internal_hosts, member, api_for):
    response = api_for(member("admin")).post(
        "/api/v1/orgs/acme/itsm-connections/",
        {"name": "Desk", "kind": "freshservice", "base_url": "https://127.0.0.2:8443", "api_key": "k"},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "loopback address" in response.json()["detail"]
