"""docker-compose.yml: valid against the Compose specification, and wired consistently."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _check_jsonschema() -> str:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).with_name("check-jsonschema"))
    assert Path(exe).exists(), "check-jsonschema is not installed (pip install check-jsonschema)"
    return exe


def test_compose_file_validates_against_the_compose_specification():
    result = subprocess.run(
        [_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  web:\n    image: x\n    depends_on: 42\n    healthcheck: yes\n")
    result = subprocess.run(
        [_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0


def test_every_depends_on_names_a_service(compose):
    services = set(compose["services"])
    for name, service in compose["services"].items():
        depends = service.get("depends_on", {})
        names = list(depends) if isinstance(depends, dict) else depends
        for dep in names:
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert dep != name


def test_the_stack_has_web_worker_beat_postgres_and_redis_with_health_checks(compose):
    services = compose["services"]
    assert {"web", "worker", "beat", "postgres", "redis"} <= set(services)
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
    assert "gunicorn" in services["web"]["command"]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["worker"]["command"][:4] == ["celery", "-A", "thalian", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "thalian", "beat"]
    for name in ("web", "worker"):
        for dep in ("postgres", "redis"):
            assert services[name]["depends_on"][dep]["condition"] == "service_healthy"


def test_application_services_get_the_whole_configuration(compose):
    required = {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "EMAIL_URL", "SITE_URL",
                "ENCRYPTION_KEY"}
    for name in ("web", "worker", "beat"):
        env = compose["services"][name]["environment"]
        assert required <= set(env), f"{name} lacks {required - set(env)}"
        assert env["DEBUG"] == "false"
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        # No production secret is baked into the file.
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
        assert env["ENCRYPTION_KEY"].startswith("${ENCRYPTION_KEY:?")


def test_the_image_build_context_has_a_dockerfile(compose):
    for name in ("web", "worker", "beat"):
        build = compose["services"][name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context / "Dockerfile").exists()


def test_platform_documentation_lists_every_setting():
    import re

    settings_source = (ROOT / "thalian" / "settings.py").read_text()
    names = set(re.findall(r'env\.(?:str|bool|int|float|list|db|email_url)\("([A-Z_]+)"', settings_source))
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= names
    doc = (ROOT / "docs" / "platform.md").read_text()
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"docs/platform.md does not document: {', '.join(missing)}"
