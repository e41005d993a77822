import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import trustme

from itsm.clients import (
    BaseUrlError,
    ItsmPermanentError,
    ItsmTransientError,
    TicketContent,
    build_client,
    parse_retry_after,
    validate_base_url,
)
from tests.fakes.itsm import FakeFreshservice, FakeJira, FakeServiceNow, FakeZendesk

KINDS = ["jira", "servicenow", "freshservice", "zendesk"]

CONTENT = TicketContent(
    summary="Remove access: ada@example.com from GitHub (admin)",
    description=(
        "Remove the access below.\n"
        "Identity: Ada Lovelace <ada@example.com>\n"
        "Application: GitHub\nRole: admin\n"
        "Decided by: Grace Hopper\nReason: left the team\n"
        "Campaign: Q1 review (due 2026-03-31)\n"
        "Item: https://thalian.example.com/o/acme/items/abc"
    ),
    item_url="https://thalian.example.com/o/acme/items/abc",
    identity_email="ada@example.com",
    identity_name="Ada Lovelace",
    application="GitHub",
    role="admin",
    decided_by="Grace Hopper",
    reason="left the team",
    campaign="Q1 review",
    due_date="2026-03-31",
    requester_email="grace@example.com",
    reference="thalian-item-abc",
)


@dataclass
class Vendor:
    kind: str
    fake: object
    base_url: str
    values: dict
    verify: object

    def client(self, **overrides):
        values = {**self.values, **overrides.pop("values", {})}
        return build_client(self.kind, base_url=self.base_url, values=values, verify=self.verify, **overrides)


FAKES = {"jira": FakeJira, "servicenow": FakeServiceNow, "freshservice": FakeFreshservice, "zendesk": FakeZendesk}


def connection_values(kind, fake) -> dict:
    if kind == "jira":
        return {"email": fake.email, "api_token": fake.api_token, "project_key": "OPS"}
    if kind == "servicenow":
        return {"username": fake.username, "password": fake.password, "assignment_group": "Identity Ops"}
    if kind == "freshservice":
        return {"api_key": fake.api_key, "group_id": 42, "priority": 3}
    return {"email": fake.email, "api_token": fake.api_token, "group_id": 7, "priority": "high", "tags": ["access-review"]}


@pytest.fixture(params=KINDS)
def vendor(request, itsm_http_server, itsm_https_server, itsm_ca_bundle):
    kind = request.param
    # ServiceNow's client insists on https; the others are served over plain http here.
    tls = kind == "servicenow"
    fake = FAKES[kind]().install(itsm_https_server if tls else itsm_http_server)
    return Vendor(kind, fake, fake.base_url, connection_values(kind, fake), itsm_ca_bundle if tls else True)


@pytest.mark.parametrize("kind", KINDS)
def test_a_connection_keeps_its_own_ca_bundle_whatever_requests_ca_bundle_says(
    kind, itsm_https_server, itsm_ca_bundle, monkeypatch, tmp_path
):
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca))
    fake = FAKES[kind]().install(itsm_https_server)
    assert fake.base_url.startswith("https://127.0.0.1:")

    client = build_client(kind, base_url=fake.base_url, values=connection_values(kind, fake), verify=itsm_ca_bundle)

    assert client.create_ticket(CONTENT).remote_id


WRONG_SECRET = {
    "jira": "api_token",
    "servicenow": "password",
    "freshservice": "api_key",
    "zendesk": "api_token",
}
VENDOR_401_MESSAGE = {
    "jira": "You are not authenticated",
    "servicenow": "User Not Authenticated",
    "freshservice": "You have to be logged in to perform this action.",
    "zendesk": "Couldn't authenticate you",
}
CREATE_CALL = {
    "jira": ("POST", r"/rest/api/2/issue"),
    "servicenow": ("POST", r"/api/now/table/incident"),
    "freshservice": ("POST", r"/api/v2/tickets"),
    "zendesk": ("POST", r"/api/v2/tickets\.json"),
}


def test_create_ticket_sends_what_the_vendor_requires_and_returns_its_browser_url(vendor):
    ticket = vendor.client().create_ticket(CONTENT)

    method, path = CREATE_CALL[vendor.kind]
    [call] = vendor.fake.calls(method, path)
    assert call.auth == _expected_auth(vendor)
    assert ticket.status == "open"
    stored = vendor.fake.tickets[ticket.remote_id]
    if vendor.kind == "jira":
        assert ticket.key == "OPS-1"
        assert ticket.url == f"{vendor.base_url}/browse/OPS-1"
        assert stored["project"] == {"key": "OPS"}
        assert stored["issuetype"] == {"name": "Task"}
        assert stored["summary"] == CONTENT.summary
        assert "Ada Lovelace <ada@example.com>" in stored["description"]
    elif vendor.kind == "servicenow":
        assert ticket.key == "INC0000001"
        assert ticket.url == f"{vendor.base_url}/nav_to.do?uri=incident.do?sys_id={ticket.remote_id}"
        assert stored["short_description"] == CONTENT.summary
        assert stored["assignment_group"] == "Identity Ops"
        assert stored["correlation_id"] == "thalian-item-abc"
        assert "Reason: left the team" in stored["description"]
    elif vendor.kind == "freshservice":
        assert ticket.url == f"{vendor.base_url}/a/tickets/{ticket.key}"
        assert stored["subject"] == CONTENT.summary
        assert stored["email"] == "grace@example.com"
        assert (stored["status"], stored["priority"], stored["group_id"]) == (2, 3, 42)
        assert "Ada Lovelace &lt;ada@example.com&gt;<br>" in stored["description"]
    else:
        assert ticket.url == f"{vendor.base_url}/agent/tickets/{ticket.key}"
        assert stored["subject"] == CONTENT.summary
        assert stored["comment"]["body"] == CONTENT.description
        assert (stored["group_id"], stored["priority"], stored["tags"]) == (7, "high", ["access-review"])
        assert stored["external_id"] == "thalian-item-abc"


def _expected_auth(vendor):
    fake = vendor.fake
    return {
        "jira": lambda: (fake.email, fake.api_token),
        "servicenow": lambda: (fake.username, fake.password),
        "freshservice": lambda: (fake.api_key, "X"),
        "zendesk": lambda: (f"{fake.email}/token", fake.api_token),
    }[vendor.kind]()


def test_comment_is_added_to_the_ticket(vendor):
    client = vendor.client()
    ticket = client.create_ticket(CONTENT)

    client.add_comment(ticket.remote_id, "Revoke withdrawn by Grace Hopper: approved after all.")

    [comment] = vendor.fake.comments[ticket.remote_id]
    assert "Revoke withdrawn by Grace Hopper: approved after all." in comment
    assert vendor.fake.requests[-1].auth == _expected_auth(vendor)


def test_a_posted_comment_is_found_by_the_reference_in_its_text(vendor):
    client = vendor.client()
    ticket = client.create_ticket(CONTENT)
    assert client.find_comment(ticket.remote_id, "thalian-comment-7") is False

    client.add_comment(ticket.remote_id, "The revoke decision was withdrawn.\n\n(Thalian reference: thalian-comment-7)")

    assert client.find_comment(ticket.remote_id, "thalian-comment-7") is True
    assert client.find_comment(ticket.remote_id, "thalian-comment-8") is False
    assert len(vendor.fake.comments[ticket.remote_id]) == 1


def test_servicenow_without_read_access_to_the_journal_posts_without_the_check(itsm_https_server, itsm_ca_bundle):
    fake = FakeServiceNow().install(itsm_https_server)
    fake.journal_readable = False
    client = build_client(
        "servicenow", base_url=fake.base_url, values=connection_values("servicenow", fake), verify=itsm_ca_bundle
    )
    ticket = client.create_ticket(CONTENT)
    client.add_comment(ticket.remote_id, "Withdrawn.\n\n(Thalian reference: thalian-comment-7)")

    assert client.find_comment(ticket.remote_id, "thalian-comment-7") is False
    assert fake.calls("GET", r"/api/now/table/sys_journal_field")


VENDOR_STATES = {
    "jira": [("new", "open"), ("indeterminate", "in_progress"), ("done", "resolved")],
    "servicenow": [
        (("1", True), "open"),
        (("2", True), "in_progress"),
        (("3", True), "in_progress"),
        (("6", False), "resolved"),
        (("7", False), "resolved"),
    ],
    "freshservice": [(2, "open"), (3, "in_progress"), (4, "resolved"), (5, "resolved")],
    "zendesk": [
        ("new", "open"),
        ("open", "in_progress"),
        ("pending", "in_progress"),
        ("hold", "in_progress"),
        ("solved", "resolved"),
        ("closed", "resolved"),
    ],
}


def test_status_follows_the_vendor_workflow(vendor):
    client = vendor.client()
    ticket = client.create_ticket(CONTENT)

    seen = []
    for vendor_state, _expected in VENDOR_STATES[vendor.kind]:
        if vendor.kind == "servicenow":
            vendor.fake.set_state(ticket.remote_id, vendor_state[0], active=vendor_state[1])
        elif vendor.kind == "jira":
            vendor.fake.set_status(ticket.remote_id, vendor_state)
        else:
            vendor.fake.set_status(ticket.remote_id, vendor_state)
        seen.append(client.get_status(ticket.remote_id))

    assert seen == [expected for _state, expected in VENDOR_STATES[vendor.kind]]


READ_CALLS = {
    "jira": [("GET", r"/rest/api/2/myself"), ("GET", r"/rest/api/2/project/OPS")],
    "servicenow": [("GET", r"/api/now/table/incident")],
    "freshservice": [("GET", r"/api/v2/tickets")],
    "zendesk": [("GET", r"/api/v2/users/me\.json")],
}


def test_test_connection_performs_an_authenticated_read(vendor):
    message = vendor.client().test_connection()

    assert message.startswith("Connected")
    for method, path in READ_CALLS[vendor.kind]:
        [call] = vendor.fake.calls(method, path)
        assert call.auth == _expected_auth(vendor)
    assert not vendor.fake.tickets


def test_wrong_credentials_are_permanent_and_carry_the_vendor_message(vendor):
    client = vendor.client(values={WRONG_SECRET[vendor.kind]: "wrong"})

    with pytest.raises(ItsmPermanentError) as create_error:
        client.create_ticket(CONTENT)
    with pytest.raises(ItsmPermanentError) as test_error:
        client.test_connection()

    assert "401" in create_error.value.message
    assert VENDOR_401_MESSAGE[vendor.kind] in create_error.value.message
    assert VENDOR_401_MESSAGE[vendor.kind] in test_error.value.message
    assert not vendor.fake.tickets


def test_server_error_is_transient_and_the_next_call_succeeds(vendor):
    client = vendor.client()
    vendor.fake.fail_next(500, {"error": "Internal Server Error"})

    with pytest.raises(ItsmTransientError) as error:
        client.create_ticket(CONTENT)
    ticket = client.create_ticket(CONTENT)

    assert "500" in error.value.message
    assert error.value.retry_after is None
    assert list(vendor.fake.tickets) == [ticket.remote_id]


def test_rate_limit_is_transient_with_retry_after_and_does_not_sleep(vendor):
    client = vendor.client()
    vendor.fake.fail_next(429, {"error": "Too many requests"}, headers={"Retry-After": "37"})

    started = time.monotonic()
    with pytest.raises(ItsmTransientError) as error:
        client.create_ticket(CONTENT)

    assert error.value.retry_after == 37
    assert "429" in error.value.message
    assert time.monotonic() - started < 5
    assert not vendor.fake.tickets


def test_timeout_is_transient(vendor):
    client = vendor.client(timeout=0.5)
    vendor.fake.stall_next(1.5)

    with pytest.raises(ItsmTransientError) as error:
        client.create_ticket(CONTENT)

    assert "did not answer within 0.5 seconds" in error.value.message


def test_unreachable_server_is_transient(vendor):
    scheme = "https" if vendor.kind == "servicenow" else "http"
    values = dict(vendor.values)
    client = build_client(
        vendor.kind, base_url=f"{scheme}://127.0.0.1:9", values=values, verify=vendor.verify
    )

    with pytest.raises(ItsmTransientError) as error:
        client.create_ticket(CONTENT)

    assert "Could not connect" in error.value.message


def test_jira_unknown_project_is_named_in_the_error(itsm_http_server):
    fake = FakeJira().install(itsm_http_server)
    client = build_client(
        "jira",
        base_url=fake.base_url,
        values={"email": fake.email, "api_token": fake.api_token, "project_key": "NOPE"},
    )

    with pytest.raises(ItsmPermanentError) as error:
        client.test_connection()

    assert "No project could be found with key 'NOPE'" in error.value.message


def test_jira_validation_error_lists_the_fields(itsm_http_server):
    fake = FakeJira().install(itsm_http_server)
    client = build_client(
        "jira",
        base_url=fake.base_url,
        values={"email": fake.email, "api_token": fake.api_token, "project_key": "NOPE"},
    )

    with pytest.raises(ItsmPermanentError) as error:
        client.create_ticket(CONTENT)

    assert error.value.message == "HTTP 400: project: Specify a valid project ID or key"


def test_freshservice_validation_error_is_permanent_with_field_messages(itsm_http_server):
    fake = FakeFreshservice().install(itsm_http_server)
    client = build_client(
        "freshservice", base_url=fake.base_url, values={"api_key": fake.api_key, "priority": 9}
    )

    with pytest.raises(ItsmPermanentError) as error:
        client.create_ticket(CONTENT)

    assert "Validation failed" in error.value.message
    assert "priority: It should be one of these values: '1,2,3,4'" in error.value.message


def test_zendesk_validation_error_is_permanent_with_details(itsm_http_server):
    fake = FakeZendesk().install(itsm_http_server)
    client = build_client(
        "zendesk",
        base_url=fake.base_url,
        values={"email": fake.email, "api_token": fake.api_token, "priority": "asap"},
    )

    with pytest.raises(ItsmPermanentError) as error:
        client.create_ticket(CONTENT)

    assert error.value.message.startswith("HTTP 422: RecordInvalid")
    assert "Priority: is not valid" in error.value.message


def test_servicenow_refuses_plain_http(itsm_http_server):
    with pytest.raises(ItsmPermanentError) as error:
        build_client(
            "servicenow", base_url="http://127.0.0.1:8443", values={"username": "u", "password": "p"}
        )

    assert "https" in error.value.message


def test_servicenow_rejects_an_untrusted_certificate(itsm_https_server):
    fake = FakeServiceNow().install(itsm_https_server)
    client = build_client(
        "servicenow",
        base_url=fake.base_url,
        values={"username": fake.username, "password": fake.password},
        verify=True,
    )

    with pytest.raises(ItsmTransientError) as error:
        client.test_connection()

    assert "certificate" in error.value.message.lower()
    assert not fake.requests


def test_servicenow_comment_is_a_work_note(itsm_https_server, itsm_ca_bundle):
    fake = FakeServiceNow().install(itsm_https_server)
    client = build_client(
        "servicenow",
        base_url=fake.base_url,
        values={"username": fake.username, "password": fake.password},
        verify=itsm_ca_bundle,
    )
    ticket = client.create_ticket(CONTENT)

    client.add_comment(ticket.remote_id, "withdrawn")

    [patch] = fake.calls("PATCH", rf"/api/now/table/incident/{ticket.remote_id}")
    assert patch.body == {"work_notes": "withdrawn"}


def test_zendesk_basic_auth_header_uses_the_token_form(itsm_http_server):
    fake = FakeZendesk().install(itsm_http_server)
    client = build_client(
        "zendesk", base_url=fake.base_url, values={"email": fake.email, "api_token": fake.api_token}
    )

    client.test_connection()

    [call] = fake.calls("GET", r"/api/v2/users/me\.json")
    assert call.auth == (f"{fake.email}/token", fake.api_token)


@pytest.mark.parametrize(
    ("url", "allow_http", "message"),
    [
        ("", False, "Base URL is required."),
        ("ftp://jira.example.com", False, "Base URL must start with https://."),
        ("http://jira.example.com", False, "Base URL must use https."),
        ("https://", False, "Base URL must include a host name."),
        ("https://jira.example.com/?x=1", False, "Base URL must not contain a query string or fragment."),
        ("https://bob:pw@jira.example.com", False, "Base URL must not contain credentials."),
        ("https://jira.example.com:99999", False, "Base URL has an invalid port."),
    ],
)
def test_bad_base_urls_are_rejected_with_a_reason(url, allow_http, message):
    with pytest.raises(BaseUrlError) as error:
        validate_base_url(url, allow_http=allow_http)

    assert str(error.value) == message


def test_base_url_is_normalised_and_http_only_when_allowed():
    assert validate_base_url(" https://acme.atlassian.net/ ") == "https://acme.atlassian.net"
    assert validate_base_url("http://127.0.0.1:8080", allow_http=True) == "http://127.0.0.1:8080"


def test_retry_after_accepts_seconds_and_http_dates():
    later = datetime.now(UTC) + timedelta(seconds=120)

    assert parse_retry_after("15") == 15
    assert 100 < parse_retry_after(format_datetime(later, usegmt=True)) <= 120
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
