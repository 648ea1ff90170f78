"""The provider API (bridge/providers/api.py) is what a provider module imports: the four built-ins and
the example plugin import nothing else of the bridge, and ``__all__`` is the module's public namespace."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bridge.providers.api as api
from bridge.providers.catalog import BUILTINS

ROOT = Path(__file__).resolve().parents[3]
PROVIDER_MODULES = [
    *(ROOT / "bridge" / "providers" / f"{spec.target.__module__.rsplit('.', 1)[1]}.py" for spec in BUILTINS),
    ROOT / "plugins" / "workflow-bridge-airflow" / "src" / "workflow_bridge_airflow" / "provider.py",
]


def bridge_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bridge":
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "bridge"}
    return found


@pytest.mark.parametrize("path", PROVIDER_MODULES, ids=lambda p: p.stem)
def test_a_provider_module_imports_only_the_provider_api(path: Path):
    assert bridge_imports(path) == {"bridge.providers.api"}


def test_the_rule_sees_a_private_import():
    assert bridge_imports(ROOT / "bridge" / "providers" / "oauth.py") >= {"bridge.providers.tokens"}


def test_all_names_exactly_the_public_namespace():
    public = {name for name in vars(api) if not name.startswith("_") and name != "annotations"}
    assert set(api.__all__) == public


def test_every_built_in_declares_the_api_version():
    assert {spec.api_version for spec in BUILTINS} == {api.API_VERSION}
