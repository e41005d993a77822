import functools

import pytest

from itsm.models import ItsmConnection, Ticket
from tests.factories import ApplicationFactory
from thalian.models import AuditEvent
from thalian.permissions import Role
from thalian.tenancy import scope

pytestmark = pytest.mark.django_db

BASE = "/api/v1/orgs/acme/itsm-connections/"


@pytest.fixture
def admin_api(member, api_for):
    return api_for(member(Role.ADMIN))


def _jira_body(jira, **extra):
    body = {
        "kind": "jira",
        "name": "Ops Jira",
        "base_url": jira.base_url,
        "email": jira.email,
        "api_token": jira.api_token,
        "project_key": "OPS",
        "is_default": True,
    }
    body.update(extra)
    return body


def test_create_read_update_delete_without_ever_returning_credentials(admin_api, jira, itsm_settings, org):
    application = ApplicationFactory(organization=org, name="Payroll")

    created = admin_api.post(BASE, _jira_body(jira, application_ids=[application.pk]), format="json")
    listed = admin_api.get(BASE)
    detail = admin_api.get(f"{BASE}{created.json()['id']}/")
    patched = admin_api.patch(
        f"{BASE}{created.json()['id']}/", {"issue_type": "Bug", "api_token": "rotated-token"}, format="json"
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["kind"] == "jira" and body["project_key"] == "OPS" and body["issue_type"] == "Task"
    assert body["credentials_set"] == ["api_token"]
    assert body["application_ids"] == [application.pk]
    assert body["is_default"] is True
    assert listed.json()["results"][0]["id"] == body["id"]
    assert detail.json()["email"] == jira.email
    assert patched.status_code == 200 and patched.json()["issue_type"] == "Bug"
    for response in (created, listed, detail, patched):
        assert jira.api_token.encode() not in response.content
        assert b"rotated-token" not in response.content
    with scope(org):
        assert ItsmConnection.objects.get().secret_values() == {"api_token": "rotated-token"}
    audit = AuditEvent.objects.filter(action="itsm.connection_updated").get()
    assert audit.details["changed"] == ["api_token", "issue_type"]
    assert "rotated-token" not in str(audit.details)

    deleted = admin_api.delete(f"{BASE}{body['id']}/")
    assert deleted.status_code == 204
    with scope(org):
        assert not ItsmConnection.objects.exists()


@pytest.mark.parametrize("kind", ["servicenow", "freshservice", "zendesk"])
def test_each_kind_takes_its_flat_fields(kind, admin_api, fake_vendor, itsm_settings):
    fake = fake_vendor(kind)
    body = {"kind": kind, "name": kind, "base_url": fake.base_url}
    secret = {
        "servicenow": {
            "username": "svc.thalian",
            "password": "p4ss",
            "table": "sc_task",
            "assignment_group": "IAM",
        },
        "freshservice": {"api_key": "k3y", "group_id": 42, "priority": 4},
        "zendesk": {
            "email": "bot@example.com",
            "api_token": "t0k",
            "group_id": "7",
            "priority": "urgent",
            "tags": ["a", "b"],
        },
    }[kind]
    body.update(secret)

    response = admin_api.post(BASE, body, format="json")

    assert response.status_code == 201, response.content
    data = response.json()
    for name, value in secret.items():
        if name in ("password", "api_key", "api_token"):
            assert name in data["credentials_set"] and name not in data
            assert value.encode() not in response.content
        else:
            assert str(data[name]) == str(value)


def test_test_connection_endpoint_reports_the_vendor_answer(admin_api, jira, connect):
    connection = connect(jira, api_token="nope")

    response = admin_api.post(f"{BASE}{connection.public_id}/test/")

    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert "You are not authenticated" in response.json()["message"]
    assert admin_api.get(f"{BASE}{connection.public_id}/").json()["last_test_ok"] is False


def test_invalid_input_is_400_naming_each_field_and_saves_nothing(admin_api, settings, org):
    settings.ALLOW_INSECURE_HTTP_INTEGRATIONS = False

    response = admin_api.post(
        BASE,
        {"kind": "jira", "name": "", "base_url": "http://jira.internal", "email": "x", "project_key": "1x"},
        format="json",
    )
    bad_kind = admin_api.post(BASE, {"kind": "trello", "name": "T"}, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["base_url"] == ["Base URL must use https."]
    assert errors["name"] == ["Name is required."]
    assert errors["api_token"] == ["API token is required."]
    assert errors["email"] == ["E-mail must be a valid e-mail address."]
    assert "project_key" in errors
    assert bad_kind.status_code == 400 and "kind" in bad_kind.json()["errors"]
    with scope(org):
        assert not ItsmConnection.objects.exists()


def test_duplicate_name_and_unknown_application_are_rejected(admin_api, jira, connect, other_org):
    connect(jira, name="Ops Jira")
    foreign_app = ApplicationFactory(organization=other_org)

    duplicate = admin_api.post(BASE, _jira_body(jira), format="json")
    foreign = admin_api.post(
        BASE, _jira_body(jira, name="Other", application_ids=[foreign_app.pk]), format="json"
    )

    assert duplicate.status_code == 400
    assert duplicate.json()["errors"]["name"] == ["A connection named 'Ops Jira' already exists."]
    assert foreign.status_code == 400
    assert foreign.json()["errors"]["application_ids"] == [f"Unknown application ids: {foreign_app.pk}."]


def test_kind_cannot_change(admin_api, jira, connect):
    connection = connect(jira)

    response = admin_api.patch(f"{BASE}{connection.public_id}/", {"kind": "zendesk"}, format="json")

    assert response.status_code == 400
    assert "cannot be changed" in response.json()["errors"]["kind"][0]


@pytest.mark.parametrize("method", ["get", "post", "patch", "delete", "test"])
def test_outsiders_get_404_and_roles_without_settings_get_403(
    method, jira, connect, api_for, outsider, member
):
    connection = connect(jira)
    detail = f"{BASE}{connection.public_id}/"
    calls = {
        "get": lambda api: api.get(detail),
        "post": lambda api: api.post(BASE, _jira_body(jira, name="X"), format="json"),
        "patch": lambda api: api.patch(detail, {"name": "Y"}, format="json"),
        "delete": lambda api: api.delete(detail),
        "test": lambda api: api.post(f"{detail}test/"),
    }

    outsider_response = calls[method](api_for(outsider))
    analyst_response = calls[method](api_for(member(Role.SECURITY_ANALYST)))

    assert outsider_response.status_code == 404
    assert analyst_response.status_code == 403
    assert not jira.requests


def test_connection_of_another_org_is_404_through_the_own_org_path(admin_api, jira, connect, other_org):
    foreign = connect(jira, organization=other_org)

    assert admin_api.get(f"{BASE}{foreign.public_id}/").status_code == 404
    assert admin_api.post(f"{BASE}{foreign.public_id}/test/").status_code == 404


def test_list_query_count_does_not_grow(admin_api, fake_vendor, connect, org, django_assert_max_num_queries):
    connect(fake_vendor("jira"))
    with django_assert_max_num_queries(15) as small:
        admin_api.get(BASE)
    for n in range(4):
        connect(
            fake_vendor("zendesk"),
            name=f"Z{n}",
            is_default=False,
            application_ids=[ApplicationFactory(organization=org).pk],
        )
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(admin_api.get(BASE).json()["results"]) == 5


def test_ticket_retry_endpoint(
    jira, connect, revoked_item, decide, api_for, member, outsider, org, django_capture_on_commit_callbacks
):
    from itsm import itsm_connections

    connection = connect(jira, api_token="bad")
    item = revoked_item()
    decide(item)
    url = f"/api/v1/orgs/acme/itsm-tickets/{item.pk}/retry/"
    assert api_for(outsider).post(url).status_code == 404
    assert api_for(member(Role.VIEWER)).post(url).status_code == 403

    itsm_connections.itsm_connection_update(connection=connection, actor=None, data={"api_token": jira.api_token})
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(member(Role.SECURITY_ANALYST)).post(url)

    assert response.status_code == 202
    assert response.json()["item"] == item.pk
    assert set(response.json()) == {"item", "ticket_status", "ticket_error"}
    with scope(org):
        assert Ticket.objects.get(item=item).key == "OPS-1"
    again = api_for(member(Role.SECURITY_ANALYST)).post(url)
    assert again.status_code == 400


@functools.cache
def _openapi() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def _component(ref: str) -> dict:
    return _openapi()["components"]["schemas"][ref.rsplit("/", 1)[-1]]


CREDENTIALS = {"api_token", "password", "api_key"}
KIND_BODIES = {
    "jira": {"email": "bot@example.com", "api_token": "t0k", "project_key": "OPS"},
    "servicenow": {"username": "svc.thalian", "password": "p4ss", "assignment_group": "IAM"},
    "freshservice": {"api_key": "k3y", "group_id": 42, "priority": 4},
    "zendesk": {"email": "bot@example.com", "api_token": "t0k", "priority": "high", "tags": ["iam"]},
}


@pytest.mark.parametrize("kind", sorted(KIND_BODIES))
def test_connection_schema_documents_exactly_what_each_kind_returns(
    kind, admin_api, fake_vendor, itsm_settings
):
    body = {"kind": kind, "name": kind, "base_url": fake_vendor(kind).base_url, **KIND_BODIES[kind]}
    returned = admin_api.post(BASE, body, format="json")
    assert returned.status_code == 201, returned.content
    connection_id = returned.json()["id"]
    assert admin_api.post(f"{BASE}{connection_id}/test/").status_code == 200

    paths = _openapi()["paths"]
    detail = paths["/api/v1/orgs/{org_slug}/itsm-connections/{public_id}/"]
    created = paths["/api/v1/orgs/{org_slug}/itsm-connections/"]["post"]["responses"]["201"]
    listed = _component(
        paths["/api/v1/orgs/{org_slug}/itsm-connections/"]["get"]["responses"]["200"]["content"][
            "application/json"
        ]["schema"]["$ref"]
    )
    refs = {
        created["content"]["application/json"]["schema"]["$ref"],
        listed["properties"]["results"]["items"]["$ref"],
        *(
            detail[method]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            for method in ("get", "patch")
        ),
    }
    assert refs == {"#/components/schemas/ItsmConnection"}
    connection = _component("ItsmConnection")
    assert connection["discriminator"]["propertyName"] == "kind"
    schema = _component(connection["discriminator"]["mapping"][kind])

    response = admin_api.get(f"{BASE}{connection_id}/").json()
    assert set(schema["properties"]) == set(response)
    assert set(schema["required"]) == set(response)
    assert {"last_tested_at", "last_test_ok", "last_test_message", "created_at", "credentials_set"} <= set(
        schema["properties"]
    )
    assert set(KIND_BODIES[kind]) - CREDENTIALS <= set(schema["properties"])
    assert not CREDENTIALS & set(schema["properties"])
    assert response["last_test_ok"] is not None and response["last_tested_at"]


def test_connection_response_components_never_hold_credentials():
    connection = _component("ItsmConnection")
    kinds = {}
    for kind, ref in connection["discriminator"]["mapping"].items():
        kinds[kind] = set(_component(ref)["properties"])
        assert not CREDENTIALS & kinds[kind], kind
    assert kinds["jira"] >= {"project_key", "issue_type"}
    assert kinds["servicenow"] >= {"table", "assignment_group"}
    assert kinds["freshservice"] >= {"group_id", "priority"}
    assert kinds["zendesk"] >= {"group_id", "priority", "tags"}
    request_body = _openapi()["paths"]["/api/v1/orgs/{org_slug}/itsm-connections/"]["post"]["requestBody"]
    written = _component(request_body["content"]["application/json"]["schema"]["$ref"])["properties"]
    assert all(written[name].get("writeOnly") for name in CREDENTIALS)


def test_ticket_retry_schema_documents_the_whole_response():
    operation = _openapi()["paths"]["/api/v1/orgs/{org_slug}/itsm-tickets/{item_id}/retry/"]["post"]
    assert set(operation["responses"]) == {"202"}
    schema = _component(operation["responses"]["202"]["content"]["application/json"]["schema"]["$ref"])
    assert set(schema["properties"]) == set(schema["required"]) == {"item", "ticket_status", "ticket_error"}


# Remediation queue ---------------------------------------------------------------------------------------

QUEUE = "/api/v1/orgs/acme/remediation/"


def test_remediation_queue_lists_the_owners_applications_most_urgent_first(revoked_item, decide, member, api_for, org):
    from campaigns.models import ReviewItem
    from tests.factories import ApplicationFactory
    from thalian.tenancy import scope

    mine = ApplicationFactory(organization=org, name="Payroll", owner_email="x@acme.test",
                              remediation_owner_email="it@acme.test")
    pending, flagged, other = (
        revoked_item(application=mine), revoked_item(application=mine, email="flag@acme.test"), revoked_item()
    )
    decide([pending, flagged, other])
    with scope(org):
        ReviewItem.objects.filter(pk=flagged.pk).update(remediation_status="action_required")
    owner = api_for(member("viewer", email="it@acme.test"))
    body = owner.get(QUEUE).json()
    assert [r["identity_email"] for r in body["results"]] == ["flag@acme.test", pending.identity_email]
    assert body["count"] == 2 and body["counts"]["action_required"] == 1
    first = body["results"][0]
    assert (first["application_name"], first["remediation_status"], first["campaign"]["title"]) == (
        "Payroll", "action_required", "Q1 access review")
    only = owner.get(QUEUE, {"state": "action_required"}).json()
    assert [r["id"] for r in only["results"]] == [flagged.pk] and only["counts"]["total"] == 2
    staff = api_for(member("security_analyst")).get(QUEUE).json()
    assert staff["count"] == 3


def test_remediation_queue_unknown_state_is_400_naming_the_choices(member, api_for, org):
    response = api_for(member("admin")).get(QUEUE, {"state": "gone"})
    assert response.status_code == 400
    assert "action_required" in response.json()["errors"]["state"][0]


def test_remediation_queue_is_404_for_outsiders(outsider, api_for, org):
    # Every role may open the queue (VIEW_REMEDIATION); what a role sees is scoped, tested above.
    assert api_for(outsider).get(QUEUE).status_code == 404


def test_remediation_queue_query_count_does_not_grow(revoked_item, decide, member, api_for):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    api = api_for(member("admin"))
    decide([revoked_item()])
    api.get(QUEUE)
    with CaptureQueriesContext(connection) as small:
        api.get(QUEUE)
    decide([revoked_item() for _ in range(6)])
    with CaptureQueriesContext(connection) as large:
        assert len(api.get(QUEUE).json()["results"]) == 7
    assert len(large) == len(small)
