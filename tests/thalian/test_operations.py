"""Operations: the outbox backlog on /healthz, the operations page and API with a retry, and /metrics."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from thalian import events
from thalian.models import AuditEvent, OutboxEvent, OutboxState
from thalian.permissions import Role
from thalian.tasks import ping


def _failed_event(org, name="itsm.tickets") -> OutboxEvent:
    """An event whose ticketing receiver gave up after its last attempt."""
    return OutboxEvent.unscoped.create(
        organization=org,
        name=events.DecisionsRecorded.name,
        payload={"campaign_id": "c", "decision": "revoke", "item_ids": []},
        state=OutboxState.FAILED,
        handled_at=timezone.now(),
        outcomes={name: {"state": "failed", "attempts": 8, "error": "ItsmTransientError: Jira answered 503"}},
    )


def test_healthz_shows_the_outbox_backlog_as_a_detail(client, org, time_machine):
    OutboxEvent.unscoped.create(organization=org, name="campaigns.launched", payload={"campaign_id": "x"})
    time_machine.move_to(timezone.now() + dt.timedelta(seconds=30))
    _failed_event(org)
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["outbox"]["pending"] == 1 and body["outbox"]["failed"] == 1
    assert body["outbox"]["oldest_pending_age_seconds"] >= 29


def test_super_admin_sees_failed_receivers_and_retries_one(
    client_for, member, org, other_org, django_capture_on_commit_callbacks
):
    row = _failed_event(org)
    _failed_event(other_org)
    client = client_for(member(Role.SUPER_ADMIN))
    page = client.get("/o/acme/settings/operations/").content.decode()
    assert f'data-event="{row.pk}"' in page
    assert "Jira answered 503" in page
    assert page.count("data-event=") == 1  # not globex's

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/o/acme/settings/operations/events/{row.pk}/retry/", follow=True)
    assert "will be handed to its receivers again" in response.content.decode()
    row.refresh_from_db()
    # Retried in process (eager): the receiver found nothing to do for an empty item list and succeeded.
    assert row.state == OutboxState.DONE
    assert AuditEvent.objects.filter(action="outbox.retried", organization=org).exists()
    again = client.post(f"/o/acme/settings/operations/events/{row.pk}/retry/", follow=True)
    assert "only failed events can be retried" in again.content.decode()


def test_retry_of_another_organizations_event_is_404_and_a_role_without_permission_gets_403(
    client_for, member, org, other_org, outsider
):
    theirs = _failed_event(other_org)
    ours = _failed_event(org)
    admin = client_for(member(Role.SUPER_ADMIN))
    assert admin.post(f"/o/acme/settings/operations/events/{theirs.pk}/retry/").status_code == 404
    outsider_client = client_for(outsider)
    assert outsider_client.post(f"/o/acme/settings/operations/events/{ours.pk}/retry/").status_code == 404
    plain_admin = client_for(member(Role.ADMIN))
    assert plain_admin.post(f"/o/acme/settings/operations/events/{ours.pk}/retry/").status_code == 403
    assert OutboxEvent.unscoped.get(pk=ours.pk).state == OutboxState.FAILED


def test_outbox_api_lists_failed_events_and_retries(api_for, member, org, other_org, outsider):
    row = _failed_event(org)
    _failed_event(other_org)
    api = api_for(member(Role.SUPER_ADMIN))
    body = api.get("/api/v1/orgs/acme/operations/outbox/").json()
    assert body["backlog"] == {"pending": 0, "failed": 1, "oldest_pending_age_seconds": 0.0}
    [failed] = body["failed"]
    assert failed["id"] == row.pk and failed["receivers"][0]["state"] == "failed"

    retried = api.post(f"/api/v1/orgs/acme/operations/outbox/{row.pk}/retry/")
    assert retried.status_code == 202 and retried.json()["state"] in ("pending", "done")
    refused = api.post(f"/api/v1/orgs/acme/operations/outbox/{row.pk}/retry/")
    assert refused.status_code == 400 and "only failed events" in refused.json()["detail"]

    theirs = _failed_event(other_org)
    assert api.post(f"/api/v1/orgs/acme/operations/outbox/{theirs.pk}/retry/").status_code == 404
    assert api_for(outsider).post(f"/api/v1/orgs/acme/operations/outbox/{row.pk}/retry/").status_code == 404
    assert api_for(member(Role.ADMIN)).post(f"/api/v1/orgs/acme/operations/outbox/{row.pk}/retry/").status_code == 403


def test_operations_page_and_api_queries_do_not_grow_with_failed_events(
    client_for, api_for, member, org, django_assert_max_num_queries
):
    client = client_for(member(Role.SUPER_ADMIN))
    api = api_for(member(Role.SUPER_ADMIN, email="ops@acme.test"))
    _failed_event(org)
    with django_assert_max_num_queries(20) as few:
        client.get("/o/acme/settings/operations/")
        api.get("/api/v1/orgs/acme/operations/outbox/")
    for _ in range(20):
        _failed_event(org)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get("/o/acme/settings/operations/").content.decode().count("data-event=") == 21
        assert len(api.get("/api/v1/orgs/acme/operations/outbox/").json()["failed"]) == 21


def test_metrics_are_off_without_a_token_and_need_the_bearer_token(client, settings, org):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_metrics_report_request_latency_task_outcomes_and_the_outbox_backlog(client, settings, org):
    settings.METRICS_TOKEN = "scrape-secret"
    OutboxEvent.unscoped.create(organization=org, name="campaigns.launched", payload={"campaign_id": "x"})
    client.get("/healthz")
    ping.delay()
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert response.status_code == 200
    text = response.content.decode()
    assert "django_http_requests_latency_seconds_by_view_method_bucket" in text
    assert 'thalian_celery_tasks_total{outcome="success",task="thalian.ping"}' in text
    assert "thalian_outbox_pending_events 1.0" in text
    assert "thalian_outbox_oldest_pending_age_seconds" in text


@pytest.mark.parametrize("path", ["/o/acme/settings/operations/"])
def test_operations_page_is_listed_in_the_settings_navigation_for_super_admins(client_for, member, org, path):
    page = client_for(member(Role.SUPER_ADMIN)).get("/o/acme/").content.decode()
    assert path in page
    assert path not in client_for(member(Role.ADMIN)).get("/o/acme/").content.decode()
