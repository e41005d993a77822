import pytest

from entitlements.models import Entitlement
from tests.browser_support import assert_accessible, chromium_page, login
from thalian.permissions import Role
from thalian.tenancy import scope

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HEADER = "application,identity_email,role,last_used\n"


def csv_file(text: str) -> dict:
    return {"name": "grants.csv", "mimeType": "text/csv", "buffer": text.encode()}


def test_upload_with_a_row_error_then_fix_and_import(live_server, org, member, inventory):
    analyst = member(Role.SECURITY_ANALYST)
    with chromium_page(live_server.url) as page:
        login(page, live_server, analyst.user.email, "pw")
        page.goto(f"{live_server.url}/o/acme/inventory/imports/")
        assert_accessible(page)

        page.get_by_label("What the file contains").select_option("entitlements")
        page.get_by_label("CSV file (UTF-8)").set_input_files(
            csv_file(HEADER + "GitHub,ann@acme.test,admin,2026-11-01\nGitHub,bob@acme,read,yesterday\n")
        )
        page.get_by_role("button", name="Import").click()

        problems = page.locator("#import-errors")
        problems.wait_for()
        assert "Nothing was imported: 2 problems found" in problems.inner_text()
        rows = problems.locator("tbody tr").all_inner_texts()
        assert rows == [
            "3\tidentity_email\t'bob@acme' is not a valid e-mail address",
            "3\tlast_used\t'yesterday' is not an ISO 8601 date or date-time",
        ]
        assert_accessible(page)
        with scope(org):
            assert Entitlement.objects.count() == 0

        page.get_by_label("What the file contains").select_option("entitlements")
        page.get_by_label("CSV file (UTF-8)").set_input_files(
            csv_file(HEADER + "GitHub,ann@acme.test,admin,2026-11-01\nGitHub,bob@acme.test,read,2026-11-20\n")
        )
        page.get_by_role("button", name="Import").click()

        page.get_by_text("Imported grants.csv: 2 created, 0 updated, 0 removed, 0 unchanged.").wait_for()
        assert "/inventory/imports/" in page.url
        assert_accessible(page)

        page.goto(f"{live_server.url}/o/acme/inventory/entitlements/?application=GitHub")
        table = page.get_by_role("table").inner_text()
        assert "ann@acme.test" in table and "bob@acme.test" in table and "Privileged" in table
        assert_accessible(page)

        page.goto(f"{live_server.url}/o/acme/inventory/applications/")
        assert_accessible(page)
        page.get_by_role("link", name="GitHub").click()
        page.get_by_role("heading", name="GitHub").wait_for()
        assert "owner@acme.test" in page.locator("dl.details").inner_text()
        assert_accessible(page)
        page.goto(f"{live_server.url}/o/acme/inventory/identities/?status=terminated")
        assert "bob@acme.test" in page.get_by_role("table").inner_text()
        assert_accessible(page)
        page.get_by_role("link", name="Bob Baker").click()
        page.get_by_role("heading", name="Bob Baker").wait_for()
        access = page.get_by_role("table").inner_text()
        assert "GitHub" in access and "read" in access and "Terminated" in access
        assert_accessible(page)
    with scope(org):
        assert Entitlement.objects.filter(application__name="GitHub").count() == 2
