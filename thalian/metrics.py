"""Prometheus metrics at /metrics: request latency (django-prometheus middleware), Celery task outcomes (Celery
signals, in whichever process runs the task) and the outbox backlog (read from the database at scrape time).

The endpoint is off unless METRICS_TOKEN is set; then a scrape must send ``Authorization: Bearer <token>``.
With PROMETHEUS_MULTIPROC_DIR set (a directory shared by the web and worker processes of one host), the
figures of every process are added up; without it each process reports its own.
"""

from __future__ import annotations

import hmac
import os

from celery import signals
from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CELERY_TASKS = Counter(
    "thalian_celery_tasks",
    "Celery tasks finished, by task name and outcome (success, failure, retry).",
    ["task", "outcome"],
)


def _task_name(sender) -> str:
    return getattr(sender, "name", None) or str(sender)


@signals.task_success.connect
def _on_success(sender=None, **_):
    CELERY_TASKS.labels(task=_task_name(sender), outcome="success").inc()


@signals.task_failure.connect
def _on_failure(sender=None, **_):
    CELERY_TASKS.labels(task=_task_name(sender), outcome="failure").inc()


@signals.task_retry.connect
def _on_retry(sender=None, request=None, **_):
    name = getattr(request, "task", None) or _task_name(sender)
    CELERY_TASKS.labels(task=name, outcome="retry").inc()


class OutboxCollector:
    """Gauges of the outbox backlog, computed when scraped (one aggregate query)."""

    def collect(self):
        from .outbox import outbox_backlog

        backlog = outbox_backlog()
        pending = GaugeMetricFamily("thalian_outbox_pending_events", "Outbox events not handled yet.")
        pending.add_metric([], backlog.pending)
        failed = GaugeMetricFamily("thalian_outbox_failed_events", "Outbox events with a receiver that gave up.")
        failed.add_metric([], backlog.failed)
        age = GaugeMetricFamily(
            "thalian_outbox_oldest_pending_age_seconds", "Age of the oldest outbox event not handled yet."
        )
        age.add_metric([], backlog.oldest_age_seconds)
        return [pending, failed, age]


_OUTBOX = OutboxCollector()


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_OUTBOX)
        return registry
    return REGISTRY


def _authorized(request) -> bool:
    expected = f"Bearer {settings.METRICS_TOKEN}".encode()
    given = request.headers.get("Authorization", "").encode()
    return hmac.compare_digest(given, expected)


@require_GET
def metrics(request):
    if not settings.METRICS_TOKEN:
        raise Http404("Metrics are off: set METRICS_TOKEN to turn them on.")
    if not _authorized(request):
        response = HttpResponse("A bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = _registry()
    if registry is REGISTRY:
        body = generate_latest(REGISTRY) + generate_latest(_outbox_only())
    else:
        body = generate_latest(registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def _outbox_only() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OUTBOX)
    return registry
