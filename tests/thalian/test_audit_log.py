"""Audit log: browsing with filters and keyset pages (page and API), append-only storage."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from thalian.audit import audit_record
from thalian.models import AuditEvent

pytestmark = pytest.mark.django_db

URL = reverse("audit_log", args=["acme"])


def _events(org, n, *, action="token_created", actor=None, start=None):
    start = start or timezone.now() - dt.timedelta(days=1)
    rows = [
        AuditEvent(
            organization=org,
            actor=actor,
            actor_email=actor.email if actor else "system",
            action=action,
            target_label=f"event {i}",
            created_at=start + dt.timedelta(seconds=i),
        )
        for i in range(n)
    ]
    AuditEvent.objects.bulk_create(rows)


@pytest.mark.parametrize("role", ["super_admin", "admin", "auditor"])
def test_admins_and_auditors_browse_the_audit_log(client_for, member, org, role):
    m = member(role)
    audit_record(action="plan_changed", organization=org, actor=m.user, details={"from": "free", "to": "pro"})
    page = client_for(m).get(URL)
    assert page.status_code == 200
    body = page.content.decode()
    assert "plan_changed" in body and "from=free" in body and "to=pro" in body


def test_filters_by_action_actor_and_dates(client_for, member, org):
    auditor = member("auditor")
    admin = member("admin")
    old = timezone.now() - dt.timedelta(days=30)
    _events(org, 3, action="member_invited", actor=admin.user, start=old)
    _events(org, 2, action="token_revoked", actor=auditor.user)
    client = client_for(auditor)

    def rows(**params):
        body = client.get(URL, params).content.decode()
        return body.count("<tr data-action=")

    assert rows(action="member_invited") == 3
    assert rows(actor="admin@acme") == 3
    assert rows(action="token_revoked", actor="auditor@") == 2
    assert rows(date_from=(old - dt.timedelta(days=1)).date().isoformat(), date_to=old.date().isoformat()) == 3
    assert rows(date_from=(timezone.now() - dt.timedelta(days=2)).date().isoformat(), action="member_invited") == 0
    bad = client.get(URL, {"date_from": "2026-05-02", "date_to": "2026-05-01"})
    assert bad.status_code == 400 and "The end date is before the start date" in bad.content.decode()


def test_keyset_pages_cover_every_event_once_with_constant_queries(client_for, member, org,
                                                                  django_assert_max_num_queries):
    auditor = member("auditor")
    # Same timestamp for a run of events: the id breaks ties so nothing is skipped or repeated.
    same = timezone.now() - dt.timedelta(hours=1)
    AuditEvent.objects.bulk_create(
        [AuditEvent(organization=org, actor_email="system", action="tie", target_label=f"tie {i}", created_at=same)
         for i in range(30)]
    )
    _events(org, 95)
    client = client_for(auditor)
    client.get(reverse("org_dashboard", args=["acme"]))  # first visit stores the organization in the session
    seen: list[str] = []
    url = URL
    counts = []
    while url:
        with django_assert_max_num_queries(15) as ctx:
            response = client.get(url if url.startswith("/") else URL + url)
        counts.append(len(ctx.captured_queries))
        body = response.content.decode()
        seen.extend(re.findall(r"<td>((?:tie|event) \d+)</td>", body))
        match = re.search(r'href="([^"]+)" rel="next"', body)
        url = match.group(1).replace("&amp;", "&") if match else None
    assert len(seen) == 125 and len(set(seen)) == 125
    assert len(set(counts)) == 1  # a deep page costs what the first one does
    assert len(counts) == 3


def test_outsider_gets_404_and_other_roles_403(client_for, member, outsider):
    assert client_for(outsider).get(URL).status_code == 404
    for role in ("security_analyst", "viewer", "reviewer"):
        assert client_for(member(role)).get(URL).status_code == 403


def test_api_lists_filters_and_pages_with_a_cursor(member, org, api_for):
    auditor = member("auditor")
    _events(org, 7, action="member_removed")
    _events(org, 5, action="plan_changed")
    api = api_for(auditor)
    first = api.get("/api/v1/orgs/acme/audit-events/", {"action": "member_removed", "page_size": 3})
    assert first.status_code == 200
    data = first.json()
    assert [e["action"] for e in data["results"]] == ["member_removed"] * 3
    assert data["results"][0]["target"]["label"] == "event 6"  # newest first
    labels = [e["target"]["label"] for e in data["results"]]
    url = data["next"]
    while url:
        page = api.get(url).json()
        labels += [e["target"]["label"] for e in page["results"]]
        url = page["next"]
    assert labels == [f"event {i}" for i in range(6, -1, -1)]
    bad = api.get("/api/v1/orgs/acme/audit-events/", {"date_from": "yesterday"})
    assert bad.status_code == 400 and "date_from" in bad.json()["detail"]


def test_api_audit_events_outsider_404_and_role_403(member, outsider, api_for):
    assert api_for(outsider).get("/api/v1/orgs/acme/audit-events/").status_code == 404
    denied = api_for(member("viewer")).get("/api/v1/orgs/acme/audit-events/")
    assert denied.status_code == 403 and "does not allow" in denied.json()["detail"]


def test_audit_events_cannot_be_changed_or_deleted_through_the_models(org):
    event = audit_record(action="login", organization=org)
    event.action = "something else"
    with pytest.raises(RuntimeError, match="append-only"):
        event.save()
    with pytest.raises(RuntimeError, match="append-only"):
        event.delete()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL")
def test_database_trigger_refuses_update_and_delete(org, member):
    m = member("admin")
    event = audit_record(action="login", organization=org, actor=m.user)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="tampered")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM thalian_auditevent WHERE id = %s", [event.pk])
    # Deleting the person keeps the event and its recorded e-mail.
    m.user.delete()
    event.refresh_from_db()
    assert event.actor_id is None and event.actor_email == "admin@acme.test" and event.action == "login"


def test_api_page_cost_does_not_grow_with_page_size(member, org, api_for, django_assert_max_num_queries):
    api = api_for(member("auditor"))
    _events(org, 5)
    with django_assert_max_num_queries(10) as ctx:
        assert len(api.get("/api/v1/orgs/acme/audit-events/").json()["results"]) == 5
    baseline = len(ctx.captured_queries)
    _events(org, 200)
    with django_assert_max_num_queries(baseline):
        assert len(api.get("/api/v1/orgs/acme/audit-events/", {"page_size": 200}).json()["results"]) == 200


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the triggers exist on PostgreSQL")
def test_database_refuses_moving_an_event_to_another_actor_and_only_the_declared_triggers_guard_it(org, member):
    first, second = member("admin"), member("viewer")
    event = audit_record(action="login", organization=org, actor=first.user)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(actor=second.user)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'thalian_auditevent'::regclass AND NOT tgisinternal"
        )
        names = sorted(row[0] for row in cursor.fetchall())
    assert [name.rsplit("_", 1)[0] for name in names] == [
        "pgtrigger_audit_append_only_actor",
        "pgtrigger_audit_append_only_delete",
        "pgtrigger_audit_append_only_update",
    ]
