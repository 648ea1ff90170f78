"""The generated files under ``topics/``: render, write, and check for drift.

The specs' single source is the package (``bridge/contracts/topics/``); ``topics/<topic>.yaml`` are
copies with a header saying so, checked like every other generated file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bridge.contracts.asyncapi import build_asyncapi
from bridge.contracts.examples import build_examples
from bridge.contracts.schemas import GENERATED_NOTE, build_schemas
from bridge.contracts.specs import (
    ASYNCAPI_FILE,
    SHIPPED_SPECS,
    TopicSpec,
    load_specs,
    spec_files,
    spec_problems,
)
from bridge.errors import ConfigError


def render_files(specs: list[TopicSpec]) -> dict[str, str]:
    """Relative path under ``topics/`` -> file text, for every generated file."""
    files = {f"schemas/{name}": _json(schema, sort=True) for name, schema in build_schemas().items()}
    files.update({f"examples/{e.file}": _json(e.payload, sort=False) for e in build_examples()})
    sources = "bridge/contracts/topics/*.yaml and the pydantic models in bridge/"
    header = f"# {GENERATED_NOTE}\n# Sources: {sources}.\n"
    document = yaml.dump(
        build_asyncapi(specs), Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=110
    )
    files[ASYNCAPI_FILE] = header + document
    return files


COPY_NOTE = (
    "# Copy of bridge/contracts/topics/{name} (the spec shipped with the bridge), written by\n"
    "# `bridge topics generate`: edit that file, not this one.\n"
)


def spec_copies(source: Path) -> dict[str, str]:
    """``<topic>.yaml`` -> the text of its copy under ``topics/``."""
    return {
        path.name: COPY_NOTE.format(name=path.name) + path.read_text(encoding="utf-8")
        for path in spec_files(source)
    }


def _all_files(source: Path) -> tuple[list[TopicSpec], dict[str, str]]:
    specs = load_specs(source)
    return specs, {**spec_copies(source), **render_files(specs)}


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
    copies = {path.name for path in spec_files(root)} if root.is_dir() else set()
    return found | copies | ({ASYNCAPI_FILE} if (root / ASYNCAPI_FILE).exists() else set())


def write_all(root: Path, source: Path = SHIPPED_SPECS) -> list[str]:
    """Regenerate every file in ``root`` from the specs in ``source``; the paths written or removed."""
    if root.resolve() == source.resolve():
        raise ConfigError(f"{root} holds the specs themselves: generate into another folder (topics/)")
    _, files = _all_files(source)
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


def check_all(root: Path, source: Path = SHIPPED_SPECS) -> list[str]:
    """Drift between the files in ``root`` and what the specs in ``source`` and the models generate.

    [] when in sync.
    """
    try:
        specs, files = _all_files(source)
    except ConfigError as exc:
        return [str(exc)]
    problems = spec_problems(specs)
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
