"""bench.members: several members of one group started as one bridge command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from bench.members import member_config

ROOT = Path(__file__).resolve().parents[2]


def members(*argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m bench.members ARGV`` as the benchmark runs it."""
    command = [sys.executable, "-m", "bench.members", *argv]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_another_member_keeps_the_group_and_topics_and_takes_free_ports() -> None:
    raw: dict[str, Any] = {
        "kafka": {"group_id": "g", "bootstrap_servers": "127.0.0.1:9092"},
        "topics": {"run_commands": "r"},
        "observability": {"host": "127.0.0.1", "port": 9464},
        "admin": {"port": 9465},
    }
    other = member_config(raw)
    assert other["kafka"] == raw["kafka"] and other["topics"] == raw["topics"]
    assert other["observability"] == {"host": "127.0.0.1", "port": 0}
    assert other["admin"] == {"port": 0}
    assert raw["observability"]["port"] == 9464  # the first member's file is left as it is


def test_a_listener_that_is_off_stays_off() -> None:
    assert member_config({"observability": {"port": None}})["observability"] == {"port": None}


def test_every_member_runs_with_its_own_file_and_the_first_members_exit_code_is_returned(
    tmp_path: Path,
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(yaml.safe_dump({"observability": {"port": 9464}}))  # no targets: each member exits 2
    done = members("2", "run", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.count("no targets") == 2, done.stderr  # both members started and refused
    second = tmp_path / "bridge.member2.yaml"
    assert yaml.safe_load(second.read_text()) == {"observability": {"port": 0}}


def test_a_wrong_call_says_how_to_call_it() -> None:
    done = members("run")
    assert done.returncode == 2 and "usage: python -m bench.members N run --config FILE" in done.stderr


def test_a_missing_configuration_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    done = members("2", "run", "--config", str(missing))
    assert done.returncode == 2
    assert done.stderr == f"bench.members: {missing} is not a file: give the bridge's configuration\n"
