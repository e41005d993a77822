"""The benchmarks stay runnable from a checkout while the product code never depends on them or on the
test suite's fake vendor servers."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from bench.management.commands.bench import AREAS

ROOT = Path(__file__).resolve().parents[2]


def _product_packages() -> list[str]:
    """Our own installed apps (those living in this checkout), the benchmarks excepted."""
    return [
        config.name
        for config in apps.get_app_configs()
        if Path(config.path).resolve().is_relative_to(ROOT) and config.name != "bench"
    ]


@pytest.mark.parametrize("area", sorted(AREAS))
def test_every_benchmark_module_imports_and_has_a_run_function(area):
    module = AREAS[area]
    assert callable(module.run)
    assert "stdout" in inspect.signature(module.run).parameters


def test_bench_is_an_installed_app_in_a_checkout():
    assert apps.is_installed("bench")


def test_bench_command_lists_the_areas_in_its_help():
    result = subprocess.run(
        [sys.executable, "manage.py", "bench", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for area in AREAS:
        assert area in result.stdout


def test_bench_command_refuses_an_unknown_area(settings):
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        with pytest.raises(CommandError, match="PostgreSQL"):
            call_command("bench", "nope")
        return
    with pytest.raises(CommandError, match="unknown benchmark area.*nope"):
        call_command("bench", "nope")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_every_app_of_ours_is_checked_for_leftovers():
    assert {"thalian", "entitlements", "campaigns", "itsm", "notifications", "evidence"} <= set(_product_packages())


def test_product_code_imports_neither_the_benchmarks_nor_the_tests():
    offenders = []
    for package in _product_packages():
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in _imported_modules(path):
                if name.split(".")[0] in ("bench", "tests"):
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_no_fake_vendor_server_or_benchmark_is_left_in_the_product_packages():
    leftovers = [
        str(path.relative_to(ROOT))
        for package in _product_packages()
        for path in (ROOT / package).rglob("*.py")
        if "fake" in path.name or "bench" in path.name
    ]
    assert leftovers == []


def test_the_docker_image_leaves_out_the_benchmarks_and_the_tests():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {"bench", "tests"} <= ignored


@pytest.mark.django_db
def test_benchmark_cleanup_removes_an_organization_with_its_append_only_audit_trail(org):
    from bench.snapshot import _purge
    from thalian.audit import audit_record
    from thalian.models import AuditEvent, Organization
    from thalian.tenancy import scopes_disabled

    audit_record(action="login", organization=org)
    _purge(org.pk)
    with scopes_disabled():
        assert not Organization.objects.filter(pk=org.pk).exists()
        assert not AuditEvent.objects.filter(organization_id=org.pk).exists()
