"""Real Chromium: an auditor opens the Evidence page and downloads both exports of a campaign."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile

import pytest

from evidence import formats
from tests.browser_support import assert_accessible, login

from .test_exports import (  # noqa: F401 (the fixtures are used by name)
    EXPECTED_HEADER,
    _auditor,
    signing_key_fixture,
    world_fixture,
)

pytestmark = pytest.mark.browser


def test_auditor_downloads_csv_and_signed_zip_from_the_evidence_page(
    browser_page, live_server, world, signing_key, tmp_path
):
    auditor = _auditor(world)
    page = browser_page
    login(page, live_server, auditor.user.email, "pw")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Evidence").click()
    page.wait_for_url("**/o/acme/evidence/")
    assert_accessible(page)

    with page.expect_download() as csv_download:
        page.get_by_role("link", name="Export CSV of Q1 access review").click()
    csv_path = tmp_path / csv_download.value.suggested_filename
    csv_download.value.save_as(csv_path)
    assert csv_path.name.endswith("-items.csv")
    rows = list(csv.reader(io.StringIO(csv_path.read_text(encoding="utf-8"), newline="")))
    assert rows[0] == EXPECTED_HEADER
    assert len(rows) == 5

    with page.expect_download() as zip_download:
        page.get_by_role("link", name="Export ZIP of Q1 access review").click()
    zip_path = tmp_path / zip_download.value.suggested_filename
    zip_download.value.save_as(zip_path)
    assert zip_path.name.endswith(".zip")
    with zipfile.ZipFile(zip_path) as archive:
        assert {"items.csv", "decisions_log.csv", "population.json", "manifest.json"} <= set(
            archive.namelist()
        )
    assert formats.verify_package(zip_path, formats.public_key_pem(signing_key)) == []

    # The package now appears on the Evidence page with its hash and who generated it.
    page.reload()
    packages = page.locator("#packages")
    assert auditor.user.email in packages.inner_text()
    assert hashlib.sha256(zip_path.read_bytes()).hexdigest() in packages.inner_text()

    page.get_by_role("link", name="Summary report of Q1 access review").click()
    page.wait_for_url("**/report/")
    assert page.get_by_role("heading", name="Campaign report: Q1 access review").is_visible()
    assert_accessible(page)
