"""Every Celery task has a soft and a hard time limit; where a user waits, the soft limit ends in a visible
failure."""

from __future__ import annotations

import time

import pytest

from campaigns import launch
from campaigns.models import Campaign, CampaignStatus
from campaigns.tasks import campaign_snapshot_task
from tests.campaigns.lifecycle_fixtures import inventory, make_campaign  # noqa: F401
from tests.claims_support import held_lock
from tests.conftest import wait_until
from thalian.celery import app
from thalian.tenancy import scope


def test_every_task_has_a_soft_limit_below_its_hard_limit():
    app.loader.import_default_modules()
    tasks = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert len(tasks) > 20
    for name, task in tasks.items():
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        hard = task.time_limit or app.conf.task_time_limit
        assert soft and hard and soft < hard, f"{name}: soft {soft}, hard {hard}"


def test_every_periodic_task_names_a_registered_task(settings):
    """A beat entry whose task no worker knows is never run (the worker drops it as unregistered)."""
    app.loader.import_default_modules()
    assert settings.CELERY_BEAT_SCHEDULE
    for entry, spec in settings.CELERY_BEAT_SCHEDULE.items():
        assert spec["task"] in app.tasks, f"beat entry {entry}: no task named {spec['task']}"


def test_long_work_gets_the_long_limits(settings):
    app.loader.import_default_modules()
    for name in ("campaigns.snapshot", "campaigns.build_evidence_package", "entitlements.tasks.inventory_import_task"):
        assert app.tasks[name].soft_time_limit == settings.TASK_LONG_SOFT_TIME_LIMIT
        assert app.tasks[name].time_limit == settings.TASK_LONG_TIME_LIMIT
    assert app.tasks["itsm.open_ticket"].soft_time_limit == settings.CELERY_TASK_SOFT_TIME_LIMIT
    assert app.tasks["itsm.open_ticket"].time_limit == settings.CELERY_TASK_TIME_LIMIT


@pytest.fixture
def short_long_task_limits(monkeypatch):
    """Long tasks sent from here, and workers started afterwards, stop after 2 s (soft) and 30 s (hard). The
    sender's limits travel in the message, so web and worker processes must share the same settings."""
    monkeypatch.setenv("TASK_LONG_SOFT_TIME_LIMIT", "2")
    monkeypatch.setenv("TASK_LONG_TIME_LIMIT", "30")
    task = campaign_snapshot_task._get_current_object()  # options are cached on the task instance
    monkeypatch.setattr(task, "soft_time_limit", 2)
    monkeypatch.setattr(task, "time_limit", 30)
    monkeypatch.setattr(task, "_exec_options", None)


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_snapshot_past_its_soft_limit_puts_the_launch_back_to_draft_with_the_reason(
    short_long_task_limits, celery_worker_factory, inventory, make_campaign  # noqa: F811
):
    campaign = make_campaign(scope={"applications": ["GitHub"]}, reviewer_strategy="manager")
    with scope(inventory.org):
        launch.campaign_launch(campaign=campaign, actor=inventory.admin)
    # The snapshot waits for the campaign row longer than its soft limit.
    with held_lock("SELECT 1 FROM campaigns_campaign WHERE id = %s FOR UPDATE", (campaign.pk,)):
        celery_worker_factory()
        time.sleep(3)
    failed = wait_until(
        lambda: (c := Campaign.unscoped.get(pk=campaign.pk)).status != CampaignStatus.LAUNCHING and c, timeout=30
    )
    assert failed.status == CampaignStatus.DRAFT
    assert "took longer than the time limit (2 s)" in failed.launch_error
