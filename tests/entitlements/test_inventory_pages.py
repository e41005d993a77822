import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from entitlements.models import Application, Entitlement, Identity, SyncRun
from thalian.permissions import Role
from thalian.tenancy import scope

ENT = "application,identity_email,role,last_used\n"


@pytest.fixture
def grants(org, inventory, run_import):
    return run_import(
        "entitlements",
        ENT + "GitHub,ann@acme.test,Admin,2026-11-01\nGitHub,bob@acme.test,read,\nDropbox,ghost@acme.test,editor,\n",
    )


@pytest.fixture
def github(org, inventory):
    with scope(org):
        return Application.objects.get(name="GitHub")


def page_urls(github, run):
    with scope(github.organization):
        ann = Identity.objects.get(email="ann@acme.test")
    return [
        "/o/acme/inventory/applications/",
        f"/o/acme/inventory/applications/{github.pk}/",
        "/o/acme/inventory/identities/",
        f"/o/acme/inventory/identities/{ann.pk}/",
        "/o/acme/inventory/entitlements/",
        "/o/acme/inventory/imports/",
        f"/o/acme/inventory/imports/{run.pk}/",
    ]


def test_every_page_renders_for_a_viewer(member, client_for, github, grants):
    client = client_for(member(Role.VIEWER))
    for url in page_urls(github, grants):
        response = client.get(url)
        assert response.status_code == 200, url


def test_outsider_gets_404_on_every_page(outsider, client_for, github, grants):
    client = client_for(outsider)
    for url in page_urls(github, grants):
        assert client.get(url).status_code == 404, url


def test_reviewer_gets_403_on_every_page(member, client_for, github, grants):
    client = client_for(member(Role.REVIEWER))
    for url in page_urls(github, grants):
        assert client.get(url).status_code == 403, url


def test_application_of_another_organization_is_404(member, client_for, other_org, grants, run_import):
    run_import("applications", "name,category,sanctioned,owner_email\nTheirs,,yes,\n", organization=other_org)
    with scope(other_org):
        theirs = Application.objects.get(name="Theirs")
    client = client_for(member(Role.ADMIN))
    assert client.get(f"/o/acme/inventory/applications/{theirs.pk}/").status_code == 404
    assert client.post(f"/o/acme/inventory/applications/{theirs.pk}/scim/", {"base_url": "https://x.test"}).status_code == 404


@pytest.mark.parametrize(
    "path", ["imports/", "applications/{pk}/scim/", "applications/{pk}/scim/sync/", "applications/{pk}/scim/delete/"]
)
def test_viewer_cannot_post(member, client_for, github, path):
    client = client_for(member(Role.VIEWER))
    response = client.post("/o/acme/inventory/" + path.format(pk=github.pk), {})
    assert response.status_code == 403


def test_viewer_sees_no_upload_form(member, client_for, org):
    body = client_for(member(Role.VIEWER)).get("/o/acme/inventory/imports/").content.decode()
    assert 'id="import-form"' not in body


def test_upload_with_errors_shows_rows_and_writes_nothing(member, client_for, org, inventory):
    client = client_for(member(Role.SECURITY_ANALYST))
    bad = SimpleUploadedFile("grants.csv", (ENT + "GitHub,ann@acme.test,admin,\nGitHub,ann@,admin,\n").encode())

    response = client.post("/o/acme/inventory/imports/", {"kind": "entitlements", "mode": "merge", "file": bad})

    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was imported: 1 problem found" in body
    assert "<td>3</td><td>identity_email</td><td>&#x27;ann@&#x27; is not a valid e-mail address</td>" in body
    with scope(org):
        assert Entitlement.objects.count() == 0


def test_upload_success_redirects_to_the_run(member, client_for, org, inventory):
    client = client_for(member(Role.ADMIN))
    good = SimpleUploadedFile("grants.csv", (ENT + "GitHub,ann@acme.test,admin,\n").encode())

    response = client.post("/o/acme/inventory/imports/", {"kind": "entitlements", "mode": "merge", "file": good}, follow=True)

    assert response.status_code == 200
    body = response.content.decode()
    assert "Imported grants.csv: 1 created, 0 updated, 0 removed, 0 unchanged." in body
    assert "GitHub" in body


def test_running_import_page_polls_and_shows_progress(member, client_for, org):
    with scope(org):
        run = SyncRun.objects.create(organization=org, kind="entitlements", status="running", total_rows=200_000)
    from django.core.cache import cache

    cache.set(f"inventory-import-progress:{run.pk}", 50_000)
    client = client_for(member(Role.VIEWER))
    body = client.get(f"/o/acme/inventory/imports/{run.pk}/").content.decode()
    assert 'hx-trigger="every 1s"' in body
    assert 'value="25"' in body and "50000 of about 200000 rows" in body
    partial = client.get(f"/o/acme/inventory/imports/{run.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<div id="run-status"')


def test_application_page_shows_owner_freshness_counts_and_history(member, client_for, github, grants):
    body = client_for(member(Role.VIEWER)).get(f"/o/acme/inventory/applications/{github.pk}/").content.decode()
    assert "owner@acme.test" in body and "it@acme.test" in body
    assert "badge-ok\">fresh" in body
    assert '<div class="stat">2</div><div class="stat-label">present entitlements' in body
    assert f"/o/acme/inventory/imports/{grants.pk}/" in body


def test_entitlement_page_filters_and_badges(member, client_for, grants):
    client = client_for(member(Role.VIEWER))
    body = client.get("/o/acme/inventory/entitlements/", {"finding": "orphaned"}).content.decode()
    assert "ghost@acme.test" in body and "ann@acme.test" not in body
    assert 'class="badge badge-orphaned"' in body
    assert client.get("/o/acme/inventory/entitlements/", {"kind": "robot"}).status_code == 400


def test_keyset_pages_link_forward_and_back(member, client_for, org, inventory, run_import, monkeypatch):
    monkeypatch.setattr("entitlements.views.PAGE_SIZE", 2)
    run_import("entitlements", ENT + "".join(f"GitHub,p{i}@acme.test,member,\n" for i in range(5)))
    client = client_for(member(Role.VIEWER))
    first = client.get("/o/acme/inventory/entitlements/")
    ids = [e.pk for e in first.context["page"].items]
    second = client.get("/o/acme/inventory/entitlements/", {"after": first.context["page"].next_after})
    back = client.get("/o/acme/inventory/entitlements/", {"before": second.context["page"].prev_before})
    assert [e.pk for e in back.context["page"].items] == ids
    assert len({*ids, *[e.pk for e in second.context["page"].items]}) == 4


@pytest.mark.parametrize("path", ["entitlements/", "identities/", "applications/"])
def test_list_page_query_count_is_flat(member, client_for, org, inventory, run_import, django_assert_max_num_queries, path, monkeypatch):
    client = client_for(member(Role.VIEWER))
    run_import("entitlements", ENT + "GitHub,a1@acme.test,member,\n")
    with django_assert_max_num_queries(12) as few:
        client.get(f"/o/acme/inventory/{path}")
    run_import("entitlements", ENT + "".join(f"GitHub,p{i}@acme.test,member,\n" for i in range(40)))
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(f"/o/acme/inventory/{path}")


def test_identity_list_sorts_by_a_column_across_keyset_pages_and_back(member, client_for, inventory, run_import,
                                                                      monkeypatch):
    monkeypatch.setattr("entitlements.views.PAGE_SIZE", 3)
    run_import("entitlements", ENT + "".join(f"GitHub,{n}@acme.test,member,\n" for n in "qwertyuiop"))
    viewer = member(Role.VIEWER)
    client = client_for(viewer)
    with scope(viewer.organization):
        every = sorted(Identity.objects.values_list("email", "pk"), key=lambda row: (row[0], row[1]), reverse=True)
    seen, url, pages = [], "/o/acme/inventory/identities/", []
    params = {"sort": "-email"}
    while True:
        response = client.get(url, params)
        assert response.status_code == 200, response.content.decode()[-3000:]
        page = response.context["page"]
        pages.append((params, [i.email for i in page.items]))
        seen += [i.email for i in page.items]
        if not page.next_after:
            break
        params = {"sort": "-email", "after": page.next_after}
    assert seen == [email for email, _pk in every]
    # Back from the second page gives the first page again.
    second = client.get(url, pages[1][0]).context["page"]
    back = client.get(url, {"sort": "-email", "before": second.prev_before}).context["page"]
    assert [i.email for i in back.items] == pages[0][1]
    body = client.get(url, {"sort": "email"}).content.decode()
    assert 'aria-sort="ascending"><a href="?sort=-email" class="sorted">E-mail</a>' in body


def test_lists_state_their_totals_and_refuse_unknown_sorts(member, client_for, grants):
    client = client_for(member(Role.VIEWER))
    assert "3 entitlements" in client.get("/o/acme/inventory/entitlements/").content.decode()
    assert "1 entitlement<" in client.get("/o/acme/inventory/entitlements/", {"application": "Dropbox"}).content.decode()
    response = client.get("/o/acme/inventory/applications/", {"sort": "secret"})
    assert response.status_code == 400
    assert "Unknown sort &#x27;secret&#x27;; sort by one of: name, category, owner." in response.content.decode()
    response = client.get("/o/acme/inventory/identities/", {"sort": "email", "after": "k!!not-a-cursor"})
    assert response.status_code == 400 and "The page link is not valid any more" in response.content.decode()


def test_application_list_total_is_capped_for_huge_lists(member, client_for, grants, monkeypatch):
    monkeypatch.setattr("entitlements.selectors.COUNT_CAP", 1)
    body = client_for(member(Role.VIEWER)).get("/o/acme/inventory/applications/").content.decode()
    assert "More than 1 applications; narrow the filters for an exact count" in body
