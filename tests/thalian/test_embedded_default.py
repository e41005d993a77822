"""`make run` works anywhere: with no DATABASE_URL and no REDIS_URL Thalian migrates, loads the demo and
imports inventory on its embedded SQLite database with tasks run in process."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "EMAIL_URL")}
    env.update(THALIAN_DATA_DIR=str(data_dir), DEBUG="true")
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_newcomer_path_on_sqlite_migrates_loads_the_demo_and_imports(tmp_path):
    assert _manage(tmp_path, "migrate", "--noinput").returncode == 0
    first = _manage(tmp_path, "loaddemo", "--password", "demo")
    assert first.returncode == 0, first.stderr
    assert "acme: inventory applications: 40 created" in first.stdout
    assert (tmp_path / "thalian.sqlite3").exists()

    again = _manage(tmp_path, "loaddemo")
    assert again.returncode == 0, again.stderr
    assert "entitlements: 0 created, 0 updated" in again.stdout

    bad = tmp_path / "bad.csv"
    bad.write_text("application,identity_email,role,last_used\nNo Such App,a@acme.test,admin,\n")
    refused = _manage(tmp_path, "import_inventory", "acme", "entitlements", str(bad))
    assert refused.returncode != 0
    assert "unknown application" in (refused.stdout + refused.stderr).lower()

    good = tmp_path / "good.csv"
    good.write_text("application,identity_email,role,last_used\nGitHub,new.hire@acme.test,admin,2026-11-01\n")
    imported = _manage(tmp_path, "import_inventory", "acme", "entitlements", str(good))
    assert imported.returncode == 0, imported.stderr
    assert "1 created" in imported.stdout
