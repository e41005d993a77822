import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def test_ensure_database_creates_a_missing_postgresql_database_once(tmp_path):
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("needs PostgreSQL")
    name = f"thalian_ensure_{uuid.uuid4().hex[:8]}"
    host, port, user = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432, db.get("USER") or "postgres"
    env = {**os.environ, "DATABASE_URL": f"postgres://{user}@{host}:{port}/{name}", "THALIAN_DATA_DIR": str(tmp_path)}
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "manage.py", "ensure_database"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    try:
        first, second = run(), run()
        assert first.returncode == 0 and f"Created database {name}" in first.stdout, first.stderr
        assert second.returncode == 0 and f"Database {name} exists" in second.stdout, second.stderr
    finally:
        with psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
