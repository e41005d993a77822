import pytest

from thalian.tasks import ping


@pytest.mark.celery_worker
def test_task_round_trips_through_a_real_worker_on_redis(celery_worker_factory):
    celery_worker_factory()
    result = ping.delay("hello from the test")
    assert result.get(timeout=30) == "hello from the test"
