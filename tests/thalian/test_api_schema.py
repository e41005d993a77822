"""The OpenAPI schema says what the API does: pages, error shapes, filters; and answers without 500s."""

import pytest
import yaml

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client):
    return yaml.safe_load(client.get("/api/v1/schema/").content)


def _operation(schema, path, method):
    return schema["paths"][f"/api/v1/orgs/{{org_slug}}/{path}"][method]


def _component(schema, ref_holder):
    return schema["components"]["schemas"][ref_holder["$ref"].rsplit("/", 1)[1]]


def test_campaign_list_is_documented_as_the_page_it_answers(schema, member, api_for):
    op = _operation(schema, "campaigns/", "get")
    page = _component(schema, op["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(page["properties"]) >= {"next", "previous", "results"}
    assert {p["name"] for p in op["parameters"]} >= {"cursor", "page_size", "status"}
    body = api_for(member("admin")).get("/api/v1/orgs/acme/campaigns/").json()
    assert set(body) == {"next", "previous", "results"}


def test_import_field_errors_have_the_documented_error_shape(schema, member, api_for):
    op = _operation(schema, "imports/", "post")
    documented = _component(schema, op["responses"]["400"]["content"]["application/json"]["schema"])
    row = _component(schema, documented["properties"]["errors"]["items"])
    response = api_for(member("admin")).post("/api/v1/orgs/acme/imports/", {"kind": "planets"}, format="multipart")
    assert response.status_code == 400
    body = response.json()
    assert set(body) == set(documented["properties"])
    assert body["error_count"] == 2
    assert {(e["row"], e["column"]) for e in body["errors"]} == {(0, "kind"), (0, "file")}
    assert all(set(e) == set(row["properties"]) for e in body["errors"])


@pytest.mark.parametrize(
    ("path", "filters"),
    [
        ("identities/", {"department", "kind", "status", "application", "search", "cursor", "page_size"}),
        ("applications/", {"category", "sanctioned", "search", "name"}),
        ("entitlements/", {"application", "application_id", "department", "kind", "status", "role", "finding",
                           "sanctioned", "identity", "search", "include_removed"}),
    ],
)
def test_inventory_filters_are_in_the_schema(schema, path, filters):
    params = {p["name"]: p for p in _operation(schema, path, "get")["parameters"]}
    assert filters <= set(params)
    if "kind" in filters:
        assert "service_account" in params["kind"]["schema"]["enum"]


def test_evidence_packages_filtered_by_a_campaign_that_is_not_an_id_answers_400(member, api_for):
    response = api_for(member("auditor")).get("/api/v1/orgs/acme/evidence/packages/", {"campaign": "x"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"campaign": ["'x' is not a campaign id (a UUID)."]}


@pytest.mark.parametrize("method", ["options", "post", "put", "delete"])
def test_api_docs_page_answers_other_methods_without_a_server_error(client, method):
    client.raise_request_exception = False
    response = getattr(client, method)("/api/v1/docs/")
    assert response.status_code == 405
    assert client.get("/api/v1/docs/").status_code == 200
