import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from entitlements.models import Entitlement, SyncRun
from thalian.permissions import Role
from thalian.tenancy import scope

ENT = "application,identity_email,role,last_used\n"


def upload(text: str, name: str = "file.csv"):
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


@pytest.fixture
def admin_api(member, api_for):
    return api_for(member(Role.ADMIN))


def test_import_answers_201_with_counts_and_run_id(org, inventory, admin_api):
    response = admin_api.post(
        "/api/v1/orgs/acme/imports/",
        {"kind": "entitlements", "file": upload(ENT + "GitHub,ann@acme.test,admin,2026-01-02\n")},
        format="multipart",
    )

    assert response.status_code == 201, response.json()
    run = response.json()["sync_run"]
    assert (run["created"], run["updated"], run["removed"], run["unchanged"], run["status"]) == (1, 0, 0, 0, "succeeded")
    with scope(org):
        assert SyncRun.objects.get(pk=run["id"]).created == 1


def test_import_answers_400_listing_errors_and_writes_nothing(org, inventory, admin_api):
    response = admin_api.post(
        "/api/v1/orgs/acme/imports/",
        {"kind": "entitlements", "mode": "replace", "file": upload(ENT + "Nope,ann@acme.test,admin,\nGitHub,bad,x,soon\n")},
        format="multipart",
    )

    assert response.status_code == 400
    body = response.json()
    assert body["error_count"] == 3
    assert [(e["row"], e["column"]) for e in body["errors"]] == [(2, "application"), (3, "identity_email"), (3, "last_used")]
    with scope(org):
        assert Entitlement.objects.count() == 0
        assert SyncRun.objects.filter(kind="entitlements").count() == 0


def test_import_requires_kind_and_file(admin_api, org):
    response = admin_api.post("/api/v1/orgs/acme/imports/", {"kind": "users"}, format="multipart")
    assert response.status_code == 400
    assert {error["column"] for error in response.json()["errors"]} == {"kind", "file"}


def test_big_file_is_queued_and_finished_by_the_task(org, inventory, admin_api, settings, django_capture_on_commit_callbacks):
    settings.IMPORT_ASYNC_THRESHOLD_ROWS = 3
    text = ENT + "".join(f"GitHub,user{i}@acme.test,member,\n" for i in range(10))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post("/api/v1/orgs/acme/imports/", {"kind": "entitlements", "file": upload(text)}, format="multipart")

    assert response.status_code == 202
    run_id = response.json()["sync_run"]["id"]
    detail = admin_api.get(f"/api/v1/orgs/acme/imports/{run_id}/").json()["sync_run"]
    assert (detail["status"], detail["created"], detail["identities_created"]) == ("succeeded", 10, 10)


def test_queued_file_with_errors_fails_visibly(org, inventory, admin_api, settings, django_capture_on_commit_callbacks):
    settings.IMPORT_ASYNC_THRESHOLD_ROWS = 3
    text = ENT + "".join(f"GitHub,user{i}@acme.test,member,\n" for i in range(5)) + "GitHub,broken,member,\n"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post("/api/v1/orgs/acme/imports/", {"kind": "entitlements", "file": upload(text)}, format="multipart")

    run = admin_api.get(f"/api/v1/orgs/acme/imports/{response.json()['sync_run']['id']}/").json()["sync_run"]
    assert run["status"] == "failed"
    assert run["errors"] == [{"row": 7, "column": "identity_email", "message": "'broken' is not a valid e-mail address"}]
    with scope(org):
        assert Entitlement.objects.count() == 0


@pytest.mark.parametrize("role", [Role.VIEWER, Role.AUDITOR, Role.REVIEWER])
def test_roles_without_manage_inventory_cannot_import(member, api_for, org, role):
    response = api_for(member(role)).post(
        "/api/v1/orgs/acme/imports/", {"kind": "applications", "file": upload("name,category,sanctioned,owner_email\nA,,yes,\n")}, format="multipart"
    )
    assert response.status_code == 403


@pytest.mark.parametrize("path", ["imports/", "identities/", "applications/", "entitlements/"])
def test_outsider_gets_404(outsider, api_for, org, path):
    assert api_for(outsider).get(f"/api/v1/orgs/acme/{path}").status_code == 404


def test_outsider_cannot_import(outsider, api_for, org):
    response = api_for(outsider).post(
        "/api/v1/orgs/acme/imports/", {"kind": "applications", "file": upload("name,category,sanctioned,owner_email\nA,,yes,\n")}, format="multipart"
    )
    assert response.status_code == 404


def test_reviewer_cannot_list_inventory(member, api_for, org):
    assert api_for(member(Role.REVIEWER)).get("/api/v1/orgs/acme/entitlements/").status_code == 403


def test_other_organizations_run_is_404(org, other_org, inventory, admin_api, run_import):
    run = run_import("applications", "name,category,sanctioned,owner_email\nX,,yes,\n", organization=other_org)
    assert admin_api.get(f"/api/v1/orgs/acme/imports/{run.pk}/").status_code == 404


@pytest.fixture
def grants(org, inventory, run_import):
    run_import(
        "entitlements",
        ENT
        + "GitHub,ann@acme.test,Admin,2026-01-01\n"
        + "GitHub,bob@acme.test,read,\n"
        + "Salesforce,ann@acme.test,user,2026-01-01\n"
        + "Dropbox,deploy-bot@acme.test,editor,2026-01-01\n"
        + "Dropbox,ghost@acme.test,editor,\n",
    )


def emails_roles(response):
    return sorted((e["identity"]["email"], e["application"]["name"], e["role"]) for e in response.json()["results"])


def test_entitlement_filters_by_name(admin_api, grants):
    base = "/api/v1/orgs/acme/entitlements/"
    assert emails_roles(admin_api.get(base, {"application": "github"})) == [
        ("ann@acme.test", "GitHub", "Admin"),
        ("bob@acme.test", "GitHub", "read"),
    ]
    assert emails_roles(admin_api.get(base, {"department": "Sales"})) == [("bob@acme.test", "GitHub", "read")]
    assert emails_roles(admin_api.get(base, {"kind": "service_account"})) == [
        ("deploy-bot@acme.test", "Dropbox", "editor")
    ]
    assert emails_roles(admin_api.get(base, {"finding": "orphaned"})) == [("ghost@acme.test", "Dropbox", "editor")]
    assert emails_roles(admin_api.get(base, {"finding": "privileged"})) == [("ann@acme.test", "GitHub", "Admin")]
    assert emails_roles(admin_api.get(base, {"status": "terminated"})) == [("bob@acme.test", "GitHub", "read")]
    assert emails_roles(admin_api.get(base, {"sanctioned": "no"})) == [
        ("deploy-bot@acme.test", "Dropbox", "editor"),
        ("ghost@acme.test", "Dropbox", "editor"),
    ]
    assert emails_roles(admin_api.get(base, {"search": "archer"})) == [
        ("ann@acme.test", "GitHub", "Admin"),
        ("ann@acme.test", "Salesforce", "user"),
    ]
    entry = next(e for e in admin_api.get(base, {"role": "admin"}).json()["results"])
    assert entry["findings"] == ["dormant", "privileged"]


def test_bad_filter_value_is_400_naming_it(admin_api, grants):
    response = admin_api.get("/api/v1/orgs/acme/entitlements/", {"finding": "spooky"})
    assert response.status_code == 400
    assert "finding must be one of" in response.json()["detail"]


def test_cursor_pagination_walks_everything_once(admin_api, grants):
    seen, url = [], "/api/v1/orgs/acme/entitlements/?page_size=2"
    while url:
        body = admin_api.get(url).json()
        seen += [e["id"] for e in body["results"]]
        url = body["next"]
    assert len(seen) == 5 and seen == sorted(set(seen))


def test_identity_and_application_lists(admin_api, grants):
    identities = admin_api.get("/api/v1/orgs/acme/identities/", {"department": "engineering"}).json()["results"]
    assert sorted(i["email"] for i in identities) == ["ann@acme.test", "deploy-bot@acme.test"]
    ann = next(i for i in identities if i["email"] == "ann@acme.test")
    assert ann["manager_email"] == "boss@acme.test"
    with_github = admin_api.get("/api/v1/orgs/acme/identities/", {"application": "GitHub"}).json()["results"]
    assert sorted(i["email"] for i in with_github) == ["ann@acme.test", "bob@acme.test"]
    apps = admin_api.get("/api/v1/orgs/acme/applications/", {"sanctioned": "yes"}).json()["results"]
    assert [a["name"] for a in apps] == ["GitHub", "Salesforce"]
    assert apps[0]["data_as_of"] is not None


@pytest.mark.parametrize("path", ["identities/", "applications/", "entitlements/"])
def test_list_query_count_does_not_grow_with_page_size(admin_api, grants, django_assert_max_num_queries, path):
    with django_assert_max_num_queries(4):
        small = admin_api.get(f"/api/v1/orgs/acme/{path}?page_size=1")
    with django_assert_max_num_queries(4):
        big = admin_api.get(f"/api/v1/orgs/acme/{path}?page_size=100")
    assert small.status_code == big.status_code == 200
    assert len(big.json()["results"]) > 1
