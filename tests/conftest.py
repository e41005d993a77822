"""Shared fixtures: two organizations (acme, globex), one member per role in acme, an outsider in globex.

Per-area fixtures live in tests/<area>/conftest.py.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from thalian.models import ApiToken, Membership, hash_token, new_raw_token
from thalian.permissions import Role
from thalian.tenancy import scope, scopes_disabled

from .factories import MembershipFactory, OrganizationFactory, UserFactory

# The fake vendor servers listen on loopback; outbound connections reach only these internal addresses.
TEST_INTERNAL_HOSTS = "127.0.0.1,localhost,::1"


@pytest.fixture(autouse=True)
def _fast_passwords_and_clean_cache(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALLOWED_INTERNAL_HOSTS = TEST_INTERNAL_HOSTS.split(",")
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def org(db):
    return OrganizationFactory(slug="acme", name="Acme", plan="pro")


@pytest.fixture
def other_org(db):
    return OrganizationFactory(slug="globex", name="Globex", plan="pro")


@pytest.fixture
def free_org(db):
    return OrganizationFactory(slug="initech", name="Initech", plan="free")


@pytest.fixture
def member(org):
    """member("admin") -> Membership with that role in acme (one user per role, reused)."""

    def make(role: str = Role.ADMIN, organization=None, email: str | None = None) -> Membership:
        organization = organization or org
        email = email or f"{role}@{organization.slug}.test"
        user = UserFactory(email=email)
        membership, _ = Membership.objects.get_or_create(
            user=user, organization=organization, defaults={"role": role}
        )
        return membership

    return make


@pytest.fixture
def outsider(other_org):
    """An admin of globex: must get 404 for everything of acme."""
    user = UserFactory(email="admin@globex.test")
    return MembershipFactory(user=user, organization=other_org, role=Role.ADMIN)


@pytest.fixture
def client_for(client):
    """client_for(membership) -> a Django test client signed in as that membership's user."""

    def make(membership: Membership):
        client.force_login(membership.user)
        return client

    return make


@pytest.fixture
def api_for(db):
    """api_for(membership) -> a DRF APIClient authenticating with a fresh Bearer token of that membership."""

    def make(membership: Membership) -> APIClient:
        raw = new_raw_token()
        with scopes_disabled():
            ApiToken.objects.create(
                organization=membership.organization,
                membership=membership,
                name="test",
                prefix=raw[:10],
                token_hash=hash_token(raw),
            )
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return api

    return make


@pytest.fixture
def in_org(org):
    """Activate acme's tenant scope for direct ORM use in a test."""
    with scope(org):
        yield org


@pytest.fixture(autouse=True)
def _celery_eager_by_default():
    """Tests run tasks in process unless they ask for a real worker (the `celery_worker` fixture)."""
    from thalian.celery import app

    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous


def _worker_env() -> dict:
    import os

    from django.conf import settings
    from django.db import connection

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql" or not settings.REDIS_URL:
        pytest.skip("needs DATABASE_URL (PostgreSQL) and REDIS_URL: a real worker cannot share SQLite/eager mode")
    env = dict(os.environ)
    name = connection.settings_dict["NAME"]  # the test database pytest-django created
    env["DATABASE_URL"] = f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{name}"
    env["REDIS_URL"] = settings.REDIS_URL
    env["DEBUG"] = "true"
    env["SECRET_KEY"] = settings.SECRET_KEY
    env["ENCRYPTION_KEY"] = settings.ENCRYPTION_KEY
    env["THALIAN_DATA_DIR"] = str(settings.DATA_DIR)
    env["ALLOWED_INTERNAL_HOSTS"] = TEST_INTERNAL_HOSTS
    return env


@pytest.fixture
def celery_worker_factory(transactional_db, tmp_path):
    """celery_worker_factory(concurrency=1, count=1) starts real `celery worker` processes on Redis against
    the test database and stops them at teardown. Tasks sent from the test are no longer run eagerly."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from thalian.celery import app

    env = _worker_env()
    procs: list[subprocess.Popen] = []
    app.conf.task_always_eager = False
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")

    def start(concurrency: int = 1, count: int = 1) -> list[str]:
        names = []
        for i in range(count):
            name = f"w{len(procs)}-{i}@{tmp_path.name}"
            log = open(tmp_path / f"{name.split('@')[0]}.log", "w")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "thalian", "worker", "-n", name, "-c", str(concurrency),
                     "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
                    cwd=Path(__file__).resolve().parent.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
                )
            )
            names.append(name)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replies = app.control.ping(destination=names, timeout=1.0) or []
            if len(replies) >= len(names):
                return names
            if any(p.poll() is not None for p in procs[-count:]):
                break
        logs = "\n".join(p.read_text()[-3000:] for p in tmp_path.glob("*.log"))
        raise RuntimeError(f"celery worker did not start:\n{logs}")

    def kill() -> None:
        """SIGKILL every worker started so far and its pool children at once, as `kill -9` on the whole
        worker would: nothing acknowledges, releases or records anything."""
        import os
        import signal

        for p in procs:
            if p.poll() is not None:
                continue
            for child in _child_pids(p.pid):
                os.kill(child, signal.SIGKILL)
            p.kill()
            p.wait(timeout=20)

    start.kill = kill
    yield start
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
    app.conf.task_always_eager = True


def _child_pids(pid: int) -> list[int]:
    from pathlib import Path

    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2):
    """Poll until predicate() is truthy (used with real workers); returns its value or fails the test."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s")


@pytest.fixture
def browser_page(live_server):
    """A Playwright page in real headless Chromium (Debian's `chromium`) with base_url = live_server.url.
    Skips when Chromium is missing, except with CI=true where that fails the test."""
    from django.db import connections

    from .browser_support import chromium_page

    # The live server's request threads would otherwise keep their database connection across keep-alive
    # requests (CONN_MAX_AGE) and hold the test database open when the session ends.
    db_settings = connections.settings["default"]
    previous_max_age = db_settings.get("CONN_MAX_AGE", 0)
    db_settings["CONN_MAX_AGE"] = 0
    try:
        with chromium_page(live_server.url) as page:
            yield page
            # Connections opened by the test body while Playwright ran live in that context; close them
            # here or they outlive the test.
            connections.close_all()
    finally:
        db_settings["CONN_MAX_AGE"] = previous_max_age


@pytest.fixture
def broker_down():
    """``with broker_down():`` points this process's Celery app at a closed port on 127.0.0.1, as if the
    broker were stopped (the shared Redis server keeps running for everyone else), and sends tasks to it
    instead of running them eagerly. Leaving the block restores the broker."""
    import contextlib
    import socket

    from thalian.celery import app

    def _point_at(url: str) -> None:
        app.conf.broker_url = url
        app._pool = None
        app.amqp._producer_pool = None

    @contextlib.contextmanager
    def down():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed_port = sock.getsockname()[1]
        previous_url, previous_eager = app.conf.broker_url, app.conf.task_always_eager
        app.conf.task_always_eager = False
        _point_at(f"redis://127.0.0.1:{closed_port}/0")
        try:
            yield
        finally:
            _point_at(previous_url)
            app.conf.task_always_eager = previous_eager

    return down
