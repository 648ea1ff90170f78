"""The generated files under ``topics/``: render, write, and check for drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bridge.contracts.asyncapi import build_asyncapi
from bridge.contracts.examples import build_examples
from bridge.contracts.schemas import GENERATED_NOTE, build_schemas
from bridge.contracts.specs import ASYNCAPI_FILE, TopicSpec, load_specs, spec_problems
from bridge.errors import ConfigError


def render_files(specs: list[TopicSpec]) -> dict[str, str]:
    """Relative path under ``topics/`` -> file text, for every generated file."""
    files = {f"schemas/{name}": _json(schema, sort=True) for name, schema in build_schemas().items()}
    files.update({f"examples/{e.file}": _json(e.payload, sort=False) for e in build_examples()})
    header = f"# {GENERATED_NOTE}\n# Sources: topics/*.yaml and the pydantic models in bridge/.\n"
    document = yaml.dump(
        build_asyncapi(specs), Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=110
    )
    files[ASYNCAPI_FILE] = header + document
    return files


class _NoAliasDumper(yaml.SafeDumper):
    """Repeat shared values instead of writing YAML anchors, which AsyncAPI readers trip over."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _json(value: Any, *, sort: bool) -> str:
    return json.dumps(value, indent=2, sort_keys=sort, ensure_ascii=False) + "\n"


def _generated_on_disk(root: Path) -> set[str]:
    found = {
        p.relative_to(root).as_posix() for d in ("schemas", "examples") for p in (root / d).glob("*.json")
    }
    return found | ({ASYNCAPI_FILE} if (root / ASYNCAPI_FILE).exists() else set())


def write_all(root: Path) -> list[str]:
    """Regenerate every file from the specs in ``root``; returns the paths written or removed."""
    files = render_files(load_specs(root))
    changed = []
    for rel, text in files.items():
        path = root / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(rel)
    for stale in sorted(_generated_on_disk(root) - set(files)):
        (root / stale).unlink()
        changed.append(stale)
    return changed


def check_all(root: Path) -> list[str]:
    """Drift between the files in ``root`` and what the models and specs generate; [] when in sync."""
    try:
        specs = load_specs(root)
    except ConfigError as exc:
        return [str(exc)]
    problems = spec_problems(specs)
    files = render_files(specs)
    for rel, text in files.items():
        path = root / rel
        if not path.exists():
            problems.append(f"{rel} is missing: run `bridge topics generate`")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{rel} is out of date: run `bridge topics generate`")
    problems += [
        f"{rel} is not generated any more: delete it" for rel in sorted(_generated_on_disk(root) - set(files))
    ]
    return problems
