"""The docs site builds with ``mkdocs build --strict`` (what ``make docs`` runs), a broken link fails
it, and the README stays a front door whose links all lead somewhere."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def site_copy(tmp_path: Path) -> Path:
    """What the build reads, copied, so that a test may break it."""
    for name in ("mkdocs.yml", "docs_hooks.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    (tmp_path / "bench" / "results").mkdir(parents=True)
    for page in [ROOT / "bench" / "README.md", *(ROOT / "bench" / "results").glob("*.md")]:
        shutil.copy(page, tmp_path / page.relative_to(ROOT))
    return tmp_path


def build(root: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(root / "site")]
    env = {"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_site_builds_strictly(tmp_path):
    result = build(site_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    built = tmp_path / "site"
    assert (built / "providers" / "zuora" / "index.html").is_file()
    assert (built / "bench" / "results" / "2026-12-01-outage" / "index.html").is_file()


@pytest.mark.parametrize(
    ("page", "link", "complaint"),
    [
        ("security.md", "[gone](nowhere.md)", "nowhere.md"),
        ("security.md", "[gone](commands.md#no-such-heading)", "no-such-heading"),
        ("performance.md", "[gone](../bench/results/1999-01-01.md)", "1999-01-01.md"),
    ],
)
def test_a_broken_link_fails_the_build(tmp_path, page, link, complaint):
    root = site_copy(tmp_path)
    with (root / "docs" / page).open("a", encoding="utf-8") as out:
        out.write(f"\n{link}\n")
    result = build(root)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert complaint in output and "Aborted with 1 warnings in strict mode" in output


def test_a_page_missing_from_the_nav_fails_the_build(tmp_path):
    root = site_copy(tmp_path)
    (root / "docs" / "orphan.md").write_text("# Orphan\n", encoding="utf-8")
    result = build(root)
    assert result.returncode != 0 and "orphan.md" in result.stdout + result.stderr


def test_the_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200
    assert not any(line.startswith("### ") for line in lines), "the README has sections, not a manual"


def test_every_link_of_the_readme_leads_to_a_file():
    targets = [t for t in LINK.findall(README.read_text(encoding="utf-8")) if "://" not in t]
    assert targets
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).is_file()]
    assert missing == []
