"""docs/cli.md documents every verb and every flag the parser has, and no flag it does not have."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import cli

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE = (DOCS / "cli.md").read_text(encoding="utf-8")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def verbs(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every leaf command (``("topics", "apply")``...) and its parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from verbs(child, (*path, name))


LEAVES = dict(verbs(cli.build_parser()))


def section(top: str) -> str:
    """The text under ``## `bridge TOP``` up to the next ``## `` heading."""
    match = re.search(rf"^## `bridge {top}`\n(.*?)(?=^## |\Z)", PAGE, flags=re.DOTALL | re.MULTILINE)
    assert match, f"docs/cli.md has no section for `bridge {top}`"
    return match.group(1)


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {
        opt for a in parser._actions for opt in a.option_strings if opt.startswith("--") and opt != "--help"
    }


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_every_verb_and_flag_is_documented(path: tuple[str, ...]):
    text = section(path[0])
    if path[0] == "local" and (DOCS / "local.md").exists():
        text += (DOCS / "local.md").read_text(
            encoding="utf-8"
        )  # the local stack's own page may hold its flags
    if len(path) > 1:
        assert f"bridge {' '.join(path)}" in text
    missing = {flag for flag in flags(LEAVES[path]) if flag not in text}
    assert not missing, f"bridge {' '.join(path)}: {sorted(missing)} not in docs/cli.md"


@pytest.mark.parametrize("top", sorted({path[0] for path in LEAVES}))
def test_no_section_names_a_flag_its_verb_does_not_have(top: str):
    known = set().union(*(flags(p) for path, p in LEAVES.items() if path[0] == top))
    assert set(FLAG.findall(section(top))) - known == set()


def test_version_is_documented_as_it_prints():
    assert "`bridge --version`" in PAGE and "--version" in flags(cli.build_parser())
