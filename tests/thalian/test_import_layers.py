"""The apps depend one way: thalian <- {sso, entitlements} <- campaigns <- access_requests <- {itsm, notifications,
evidence}.

Parses every module of the source tree (imports inside functions included) and fails on any import of an app
in the same or a higher layer than the importing app's own, other than the app itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {
    "thalian": 0,
    "sso": 1,
    "entitlements": 1,
    "campaigns": 2,
    "access_requests": 3,
    "itsm": 4,
    "notifications": 4,
    "evidence": 4,
}


def _modules():
    for app in LAYERS:
        base = ROOT / app
        if base.is_dir():
            for path in sorted(base.rglob("*.py")):
                yield app, path


def _imported_apps(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute or relative import in the module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    if path.name == "__init__.py":
        package = path.relative_to(ROOT).parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = [*base, *(node.module.split(".") if node.module else [])]
                found.append((node.lineno, target[0] if target else ""))
            elif node.module:
                found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value.split(".")[0]))
    return found


def layer_violations() -> list[str]:
    violations = []
    for app, path in _modules():
        for line, imported in _imported_apps(path):
            if imported in LAYERS and imported != app and LAYERS[imported] >= LAYERS[app]:
                violations.append(f"{path.relative_to(ROOT)}:{line} ({app}) imports {imported}")
    return violations


def test_no_module_imports_its_own_or_a_higher_layer():
    assert layer_violations() == []


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path, monkeypatch):
    """The checker itself: a lower app importing a higher one in a function body is reported."""
    fake = tmp_path / "entitlements"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "services.py").write_text("def f():\n    from campaigns.models import Campaign\n    return Campaign\n")
    (fake / "other.py").write_text("from . import services\nfrom thalian.models import User\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert layer_violations() == ["entitlements/services.py:2 (entitlements) imports campaigns"]


@pytest.mark.parametrize("app", sorted(LAYERS))
def test_no_optional_import_of_the_projects_own_apps(app):
    """A broken import of our own code must fail loudly, not make pages or hand-offs disappear."""
    offenders = []
    for path in sorted((ROOT / app).rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
                if names & {"ImportError", "ModuleNotFoundError"}:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Import) and any(a.name == "importlib" for a in node.names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports importlib")
    assert offenders == []
