"""Access like another person, job title or department (preview, edit, submit), the trail CSV and the signed
access requests report checked with verify_evidence."""

from __future__ import annotations

import base64
import csv
import io
import zipfile

import pytest
import time_machine
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.utils import timezone

from access_requests.models import AccessRequest
from tests.factories import ApplicationFactory, EntitlementFactory, IdentityFactory
from thalian.models import AuditEvent
from thalian.tenancy import scope

pytestmark = pytest.mark.django_db

API = "/api/v1/orgs/acme/access-requests/"


@pytest.fixture
def peers(team):
    """Grace (an engineer like Ada) has GitHub admin and Jira user; Ada has GitHub member only. Ken, another
    engineer, has Jira user and Slack member."""
    org = team.org
    with scope(org):
        jira = ApplicationFactory(organization=org, name="Jira", owner_email="olga@acme.test")
        slack = ApplicationFactory(organization=org, name="Slack", owner_email="olga@acme.test")
        grace = IdentityFactory(organization=org, email="grace@acme.test", title="Engineer", department="Engineering")
        ken = IdentityFactory(organization=org, email="ken@acme.test", title="Engineer", department="Engineering")
        EntitlementFactory(organization=org, identity=grace, application=team.github, role="admin")
        EntitlementFactory(organization=org, identity=grace, application=jira, role="user")
        EntitlementFactory(organization=org, identity=ken, application=jira, role="user")
        EntitlementFactory(organization=org, identity=ken, application=slack, role="member")
    return team


def test_like_another_person_proposes_the_difference_with_why(peers, api_for):
    api = api_for(peers.ada)
    response = api.post(f"{API}like/", {"like": {"identity": "grace@acme.test"}, "include_revokes": True},
                        format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["identity"] == "ada@acme.test"
    assert response.json()["lines"] == [
        {"type": "grant", "application": "GitHub", "role": "admin", "why": "grace@acme.test holds it"},
        {"type": "grant", "application": "Jira", "role": "user", "why": "grace@acme.test holds it"},
        {"type": "revoke", "application": "GitHub", "role": "member", "why": "grace@acme.test does not hold it"},
    ]


def test_like_a_job_title_proposes_what_at_least_half_of_them_hold(peers, api_for):
    lines = api_for(peers.ada).post(f"{API}like/", {"like": {"title": "engineer"}}, format="json").json()["lines"]
    assert [(line["application"], line["role"], line["why"]) for line in lines] == [
        ("GitHub", "admin", "held by 1 of 2 people with the job title engineer"),
        ("Jira", "user", "held by 2 of 2 people with the job title engineer"),
        ("Slack", "member", "held by 1 of 2 people with the job title engineer"),
    ]


def test_like_errors_name_the_field(peers, api_for):
    api = api_for(peers.ada)
    for like, words in (({"identity": "nobody@acme.test"}, "not in the inventory"),
                        ({"identity": "ada@acme.test"}, "someone other"),
                        ({"title": "Astronaut"}, "nobody else has the job title"),
                        ({}, "exactly one")):
        response = api.post(f"{API}like/", {"like": like}, format="json")
        assert response.status_code == 400 and words in response.json()["errors"]["like"][0], like
    assert api.post(f"{API}like/", {"identity": "grace@acme.test", "like": {"title": "Engineer"}},
                    format="json").status_code == 403


def test_the_kept_lines_are_submitted_together_or_not_at_all(peers, api_for):
    api = api_for(peers.ada)
    bad = api.post(f"{API}batch/", {"reason": "Joining the platform team", "lines": [
        {"type": "grant", "application": "Jira", "role": "user"},
        {"type": "grant", "application": "GitHub", "role": "member"},  # already held
    ]}, format="json")
    assert bad.status_code == 400 and "line 2 (grant member in GitHub)" in bad.json()["errors"]["lines"][0]
    with scope(peers.org):
        assert not AccessRequest.objects.exists()
    good = api.post(f"{API}batch/", {"reason": "Joining the platform team", "lines": [
        {"type": "grant", "application": "Jira", "role": "user"},
        {"type": "revoke", "application": "GitHub", "role": "member"},
    ]}, format="json")
    assert good.status_code == 201 and [r["status"] for r in good.json()] == ["pending", "pending"]


def test_the_like_page_previews_and_submits_the_kept_lines(peers, client_for):
    client = client_for(peers.ada)
    url = "/o/acme/access-requests/like/?identity=&like_kind=identity&like_value=grace%40acme.test"
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Proposed for ada@acme.test" in html and "grace@acme.test holds it" in html
    jira_line = '{"type": "grant", "application": "Jira", "role": "user"}'
    response = client.post(url, {"identity": "ada@acme.test", "reason": "Pairing with Grace", "ends_at": "",
                                 "lines": [jira_line]})
    assert response.status_code == 302
    with scope(peers.org):
        assert list(AccessRequest.objects.values_list("application__name", "role")) == [("Jira", "user")]
    assert client.get("/o/acme/access-requests/like/?like_kind=title&like_value=Astronaut").status_code == 400


def test_the_trail_downloads_as_csv_with_formulas_neutralised(team, api_for, client_for):
    api = api_for(team.ada)
    request_id = api.post(API, {"type": "grant", "application": "GitHub", "role": "maintainer",
                                "reason": "=HYPERLINK(\"http://evil\")"}, format="json").json()["id"]
    response = client_for(team.ada).get(f"/o/acme/access-requests/{request_id}/trail.csv")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["request_id", "at", "actor", "action", "message"]
    assert rows[1][3] == "created" and rows[1][4].startswith("Requested:")
    assert all(not cell.startswith("=") for row in rows for cell in row)
    assert client_for(team.viewer).get(f"/o/acme/access-requests/{request_id}/trail.csv").status_code == 404
    assert api.get(f"{API}{request_id}/trail.csv").status_code == 200


def test_the_access_requests_report_is_a_signed_package_verify_evidence_accepts(team, api_for, settings, tmp_path,
                                                                               capsys):
    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
    api_for(team.ada).post(API, {"type": "grant", "application": "GitHub", "role": "maintainer",
                                 "reason": "Release duty"}, format="json")
    today = timezone.localdate().isoformat()
    auditor = api_for(team.auditor)
    clock = time_machine.travel(timezone.now(), tick=False)  # the archive's own entries carry the time
    clock.start()
    response = auditor.get("/api/v1/orgs/acme/evidence/access-requests-report/", {"start": today, "end": today})
    assert response.status_code == 200
    data = b"".join(response.streaming_content)
    path = tmp_path / "report.zip"
    path.write_bytes(data)
    with zipfile.ZipFile(path) as archive:
        assert {"requests.csv", "approvals.csv", "trail.csv", "report.json", "manifest.json"} <= set(archive.namelist())
        requests_csv = archive.read("requests.csv").decode()
    assert "maintainer" in requests_csv and "Release duty" in requests_csv
    call_command("verify_evidence", str(path))
    assert capsys.readouterr().out.startswith("OK ")
    # The same requests in the same state: the same bytes.
    again = auditor.get("/api/v1/orgs/acme/evidence/access-requests-report/", {"start": today, "end": today})
    assert b"".join(again.streaming_content) == data
    clock.stop()
    # Tampering is caught.
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            body = src.read(name)
            dst.writestr(name, body.replace(b"Release duty", b"Approved all") if name == "requests.csv" else body)
    with pytest.raises(CommandError, match="verification failed"):
        call_command("verify_evidence", str(tampered))
    assert AuditEvent.objects.filter(action="evidence.access_requests_report").count() == 2
    bad = auditor.get("/api/v1/orgs/acme/evidence/access-requests-report/", {"start": "soon", "end": today})
    assert bad.status_code == 400 and "start" in bad.json()["errors"]
    assert api_for(team.ada).get("/api/v1/orgs/acme/evidence/access-requests-report/",
                                 {"start": today, "end": today}).status_code == 403


def test_the_report_page_downloads_for_auditors_only(team, client_for, settings, outsider):
    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
    page = client_for(team.auditor).get("/o/acme/evidence/access-requests/")
    assert page.status_code == 200 and "Download the report" in page.content.decode()
    today = timezone.localdate().isoformat()
    download = client_for(team.auditor).get("/o/acme/evidence/access-requests/",
                                            {"download": "1", "start": today, "end": today})
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    assert client_for(team.ada).get("/o/acme/evidence/access-requests/").status_code == 403
    assert client_for(outsider).get("/o/acme/evidence/access-requests/").status_code == 404
