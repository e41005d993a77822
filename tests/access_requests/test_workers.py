"""An approval committed while the broker is down: the decision answers at once, and once the broker is back a
real worker, through the outbox sweep, opens exactly one issue at the fake Jira (Redis, PostgreSQL, Celery)."""

from __future__ import annotations

import time

import pytest

from access_requests import services
from access_requests.models import AccessRequest, ApprovalPolicy
from thalian.models import OutboxEvent, OutboxState
from thalian.tasks import outbox_sweep
from thalian.tenancy import scope

from ..conftest import wait_until

pytestmark = pytest.mark.celery_worker


def test_an_approval_made_while_the_broker_is_down_is_ticketed_once_by_a_worker(
    celery_worker_factory, broker_down, jira, connect, team
):
    org = team.org
    connect(jira)
    with scope(org):
        ApprovalPolicy.objects.filter(application__isnull=True).update(stages=[{"kind": "application_owner"}])
        req = services.access_request_create(actor=team.ada, type="grant", application="GitHub", role="maintainer",
                                             reason="Release duty")
    with broker_down():
        started = time.monotonic()
        with scope(org):
            services.access_request_decide(req=req, actor=team.olga, decision="approve", reason="ok")
        assert time.monotonic() - started < 1.5, "a decision must not wait on the broker"
    assert OutboxEvent.unscoped.filter(state=OutboxState.PENDING, name="access_requests.decided").count() == 1
    assert jira.tickets == {}

    celery_worker_factory()
    outbox_sweep.delay().get(timeout=60)

    def fulfilling():
        with scope(org):
            return AccessRequest.objects.get(pk=req.pk).status == "fulfilling"

    wait_until(fulfilling, timeout=60)
    outbox_sweep.delay().get(timeout=60)
    time.sleep(1.5)
    assert len(jira.calls("POST", r"/rest/api/2/issue$")) == 1
    [ticket] = jira.tickets.values()
    assert f"thalian-request-{req.pk}-fulfil" in ticket["labels"]
