"""One identity's page and API: who the identity is, and all its access with findings."""

import pytest

from entitlements.models import Identity
from thalian.permissions import Role
from thalian.tenancy import scope

ENT = "application,identity_email,role,last_used\n"


@pytest.fixture
def ann(org, inventory, run_import):
    run_import("entitlements", ENT + "GitHub,ann@acme.test,Admin,2026-11-01\nGitHub,ann@acme.test,read,\nDropbox,ann@acme.test,editor,\n")
    # Replacing GitHub's grants without "read" removes it.
    run_import("entitlements", ENT + "GitHub,ann@acme.test,Admin,2026-11-01\nGitHub,bob@acme.test,read,\n", mode="replace")
    with scope(org):
        return Identity.objects.select_related("manager").get(email="ann@acme.test")


def test_page_shows_the_identity_its_manager_reports_and_access(member, client_for, ann):
    page = client_for(member(Role.VIEWER)).get(f"/o/acme/inventory/identities/{ann.pk}/").content.decode()

    assert "Ann Archer" in page and "Engineering" in page and "Engineer" in page
    assert f'href="/o/acme/inventory/identities/{ann.manager_id}/">Big Boss<' in page
    assert ">Deploy bot<" in page  # a direct report
    assert '<div class="stat" id="present-count">2<' in page and '<div class="stat" id="removed-count">1<' in page
    rows = page.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert ["Dropbox" in rows[0], "GitHub" in rows[1], "GitHub" in rows[2]] == [True, True, True]
    assert "Admin" in rows[1] and "Privileged" in rows[1]
    assert "read" in rows[2] and "removed" in rows[2]


def test_api_gives_the_identity_with_its_grants(member, api_for, ann):
    response = api_for(member(Role.AUDITOR)).get(f"/api/v1/orgs/acme/identities/{ann.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert (body["email"], body["manager_email"], body["present_count"], body["removed_count"]) == (
        "ann@acme.test", "boss@acme.test", 2, 1
    )
    grants = [(g["application"]["name"], g["role"], g["present"], g["findings"]) for g in body["entitlements"]]
    assert grants[0][:3] == ("Dropbox", "editor", True)
    assert grants[1][:3] == ("GitHub", "Admin", True) and "privileged" in grants[1][3]
    assert grants[2][:3] == ("GitHub", "read", False)


def test_identity_of_another_organization_is_404_and_reviewers_get_403(
    member, client_for, api_for, other_org, ann, run_import
):
    run_import("identities", "email,name,department,manager_email,kind,status\nx@globex.test,X,,,,\n", organization=other_org)
    with scope(other_org):
        theirs = Identity.objects.get(email="x@globex.test")
    admin = member(Role.ADMIN)
    assert client_for(admin).get(f"/o/acme/inventory/identities/{theirs.pk}/").status_code == 404
    assert api_for(admin).get(f"/api/v1/orgs/acme/identities/{theirs.pk}/").status_code == 404
    reviewer = member(Role.REVIEWER)
    assert api_for(reviewer).get(f"/api/v1/orgs/acme/identities/{ann.pk}/").status_code == 403


def test_identity_page_query_count_does_not_grow_with_grants(
    member, client_for, ann, run_import, django_assert_max_num_queries
):
    client = client_for(member(Role.ADMIN))
    run_import("entitlements", ENT + "".join(f"Salesforce,ann@acme.test,role{i},\n" for i in range(60)))
    with django_assert_max_num_queries(12):
        assert client.get(f"/o/acme/inventory/identities/{ann.pk}/").status_code == 200


def test_lists_link_to_the_identity_page(member, client_for, ann):
    client = client_for(member(Role.VIEWER))
    link = f'href="/o/acme/inventory/identities/{ann.pk}/"'
    assert link in client.get("/o/acme/inventory/identities/").content.decode()
    assert link in client.get("/o/acme/inventory/entitlements/").content.decode()
