"""`make run` on the embedded default starts web, worker and beat together (Procfile.dev through honcho) with no
Redis and no PostgreSQL: tasks travel through the SQLite broker file in the data directory, beat's schedule runs
in the worker, and pages served by the web process see what the worker did."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "EMAIL_URL")}
    env.update(THALIAN_DATA_DIR=str(data_dir), DEBUG="true", **extra)
    return env


def _manage(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=_env(data_dir), input=stdin,
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _api(base: str, token: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base}/api/v1/orgs/acme/{path}", data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait_for(condition, *, seconds: float, what: str, log: Path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"{what} within {seconds:.0f}s; stack output:\n{log.read_text()[-6000:]}")


CAMPAIGN = {
    "title": "Embedded stack",
    "due_date": (dt.date.today() + dt.timedelta(days=30)).isoformat(),
    "scope": {"applications": ["GitHub"]},
    "reviewer_strategy": "application_owner",
    "fallback_reviewer": "admin@acme.test",
    "default_outcome": "none",
}

# Runs in a manage.py shell before the stack starts (tasks eager there): a campaign scheduled twenty seconds
# ahead, created through the API, so it is due by the time beat's minute tick first comes round.
SCHEDULE_SCRIPT = """
import datetime as dt, json, sys
from django.test import Client
token, body = sys.stdin.readline().strip(), json.loads(sys.stdin.readline())
body["launch_at"] = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)).isoformat()
response = Client().post("/api/v1/orgs/acme/campaigns/", body, content_type="application/json",
                         HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="127.0.0.1")
assert response.status_code == 201, response.content
print(response.json()["id"], response.json()["status"])
"""


def test_make_run_stack_runs_beat_schedule_and_web_tasks_in_its_worker_without_servers(tmp_path):
    _manage(tmp_path, "migrate", "--noinput")
    _manage(tmp_path, "loaddemo", "--password", "demo")
    token = _manage(tmp_path, "apitoken", "admin@acme.test", "--org", "acme").strip().splitlines()[-1]
    created = _manage(tmp_path, "shell", "-c", SCHEDULE_SCRIPT, stdin=f"{token}\n{json.dumps(CAMPAIGN)}\n")
    scheduled_id, status = created.strip().splitlines()[-1].split()
    assert status == "scheduled"  # nothing but beat's schedule can launch it from here

    port = _free_port()
    log = tmp_path / "stack.log"
    env = _env(tmp_path, EMBEDDED_BROKER="true", HOST="127.0.0.1", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    with log.open("w") as out:
        stack = subprocess.Popen(
            [str(BIN / "honcho"), "-f", "Procfile.dev", "start", "-p", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy():
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                    return json.loads(response.read())
            except OSError:
                return None

        health = _wait_for(healthy, seconds=60, what="the web process did not answer /healthz", log=log)
        assert health["broker"] == "ok (embedded SQLite broker)"

        # Beat's schedule: the scheduled campaign is launched by the worker and its snapshot taken there.
        def launched():
            code, body = _api(base, token, f"campaigns/{scheduled_id}/")
            return body if code == 200 and body["status"] == "active" else None

        campaign = _wait_for(launched, seconds=150, what="beat did not launch the scheduled campaign", log=log)
        assert campaign["item_count"] > 0

        # A request to the web process queues its task on the broker; the worker runs it.
        code, draft = _api(base, token, "campaigns/", CAMPAIGN)
        assert code == 201, draft
        code, body = _api(base, token, f"campaigns/{draft['id']}/launch/", {})
        assert code in (200, 202), body
        assert body["status"] == "launching"

        def snapshot_taken():
            code, body = _api(base, token, f"campaigns/{draft['id']}/")
            return body if code == 200 and body["status"] == "active" else None

        _wait_for(snapshot_taken, seconds=60, what="the worker did not take the launched campaign's snapshot", log=log)
        output = log.read_text()
        assert "campaigns.snapshot" in output and "succeeded" in output
        assert (tmp_path / "celery-broker.sqlite3").exists()
    finally:
        os.killpg(stack.pid, signal.SIGTERM)
        try:
            stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait(timeout=10)


def test_make_run_starts_this_procfile_with_the_embedded_broker():
    result = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "honcho" in line)
    assert "EMBEDDED_BROKER=true" in line and "-f Procfile.dev start" in line
    processes = {
        line.split(":", 1)[0]
        for line in (ROOT / "Procfile.dev").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert processes == {"web", "worker", "beat"}
