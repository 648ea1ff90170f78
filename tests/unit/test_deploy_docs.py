"""docs/deploy.md, command by command. What runs here runs as a user runs it (a subprocess, its exit
code and output): `bridge check-config`, `helm/check.py --render`, the `kubectl create` commands
(client-side dry run), the shell variables. What needs a cluster, a broker or a Docker engine is
checked against what it would act on: `helm install/upgrade` render with exactly their values and
flags, `docker build` passes only build args the Dockerfile declares, the names the `kubectl`
commands use are the rendered release's. A command of a kind the test does not know fails it."""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli import build_parser
from tests.deploy_support import BIN, ROOT, run
from tests.unit.test_helm_chart import check

DOC = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
ZILLIANT_VALUES = ROOT / "helm" / "examples" / "zilliant-values.yaml"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)


def commands() -> list[str]:
    lines = [line.strip() for block in blocks("sh") for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


COMMANDS = commands()
ASSIGNMENTS = [c for c in COMMANDS if re.match(r"^[A-Z_]+=\S+$", c) or c.startswith("VERSION=$(")]


@pytest.fixture(scope="module")
def shell_vars() -> dict[str, str]:
    script = "\n".join([*ASSIGNMENTS, 'echo "$VERSION"', 'echo "$REGISTRY"'])
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    version, registry = result.stdout.splitlines()
    return {"VERSION": version, "REGISTRY": registry}


def expand(command: str, shell_vars: dict[str, str]) -> list[str]:
    for name, value in shell_vars.items():
        command = command.replace(f"${name}", value)
    return shlex.split(command.replace("$(git rev-parse HEAD)", "0123abc"))


def kind_of(command: str) -> str:
    kinds = {
        "assignment": r"^([A-Z_]+=\S+|VERSION=\$\(.*\))$",
        "check-config": r"^([A-Z_]+=\S+ )*\.venv/bin/bridge check-config ",
        "bridge-topics": r"^\.venv/bin/bridge topics (apply|check) ",
        "render": r"^\.venv/bin/python helm/check\.py --render ",
        "kubectl-create": r"^kubectl (-n \S+ )?create ",
        "kubectl-release": r"^kubectl -n \S+ (rollout status deployment|logs job)/\S+$",
        "helm": r"^helm (install|upgrade) ",
        "docker-build": r"^docker build ",
        "docker-push": r"^docker push ",
    }
    return next((kind for kind, pattern in kinds.items() if re.match(pattern, command)), "unknown")


def of_kind(kind: str) -> list[str]:
    return [c for c in COMMANDS if kind_of(c) == kind]


def test_every_command_is_one_the_test_knows():
    assert [c for c in COMMANDS if kind_of(c) == "unknown"] == []
    for kind in ("check-config", "render", "kubectl-create", "helm", "docker-build", "kubectl-release"):
        assert of_kind(kind), kind


def test_the_version_variable_is_the_packages(shell_vars):
    assert shell_vars["VERSION"] == VERSION


def test_check_config_prints_what_the_page_shows():
    [command] = of_kind("check-config")
    result = run(["bash", "-c", command.replace(".venv/bin/", f"{BIN}/")])
    assert result.returncode == 0, result.stderr
    assert result.stdout == blocks("text")[0]


def test_the_manual_topic_commands_parse():
    """They need a broker; their arguments are the CLI's."""
    for command in of_kind("bridge-topics"):
        args = build_parser().parse_args(shlex.split(command)[1:])
        assert args.command == "topics" and args.config == Path("config.yaml")


def test_render_prints_the_release(shell_vars):
    [command] = of_kind("render")
    argv = expand(command, shell_vars)
    result = run([sys.executable, *argv[1:]])
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {"Deployment", "Job", "ConfigMap"} <= {d["kind"] for d in docs}
    assert {d["metadata"]["namespace"] for d in docs} == {argv[argv.index("--namespace") + 1]}


def set_value(values: dict[str, Any], dotted: str, raw: str) -> None:
    *path, last = dotted.split(".")
    for key in path:
        values = values.setdefault(key, {})
    values[last] = yaml.safe_load(raw)


def helm_release(argv: list[str], previous: dict[str, Any] | None) -> tuple[str, str, dict[str, Any]]:
    """(release name, namespace, values) of a `helm install|upgrade` command line."""
    assert argv[0] == "helm" and argv[1] in ("install", "upgrade"), argv
    name, chart = argv[2], argv[3]
    assert (ROOT / chart).resolve() == check.CHART_DIR.resolve()
    values: dict[str, Any] = copy.deepcopy(previous or {}) if "--reuse-values" in argv else {}
    namespace, rest = "default", argv[4:]
    while rest:
        flag, *rest = rest
        if flag == "--reuse-values":
            assert previous is not None, "--reuse-values needs an earlier release"
            continue
        value, *rest = rest
        if flag == "--namespace":
            namespace = value
        elif flag == "-f":
            values = check.merge_values(values, check.load_values(ROOT / value))
        elif flag == "--set":
            key, _, raw = value.partition("=")
            set_value(values, key, raw)
        else:
            raise AssertionError(f"unknown helm flag {flag}")
    return name, namespace, values


@pytest.fixture(scope="module")
def releases(shell_vars) -> list[tuple[str, str, dict[str, Any]]]:
    found: list[tuple[str, str, dict[str, Any]]] = []
    for command in of_kind("helm"):
        found.append(helm_release(expand(command, shell_vars), found[-1][2] if found else None))
    return found


def test_helm_commands_render_a_valid_release(releases, shell_vars):
    assert expand(of_kind("helm")[0], shell_vars)[1] == "install"
    for name, namespace, values in releases:
        assert check.invariant_findings(values) == []
        docs = check.documents(check.render(values, name, namespace))
        assert check.builtin_findings(docs) == []
        kind = "StatefulSet" if values.get("stateStore", {}).get("enabled") else "Deployment"
        image = check.bridge_container(check.one(docs, kind))["image"]
        tag = values.get("image", {}).get("tag") or VERSION
        assert image == f"{shell_vars['REGISTRY']}/workflow-bridge:{tag}"


def test_the_kubectl_commands_name_the_releases_objects(releases):
    name, namespace, values = releases[0]
    docs = check.documents(check.render(values, name, namespace))
    present = {(d["kind"].lower(), d["metadata"]["name"]) for d in docs}
    for command in of_kind("kubectl-release"):
        argv = shlex.split(command)
        assert argv[2] == namespace
        kind, _, obj = argv[-1].partition("/")
        assert (kind, obj) in present, (command, sorted(present))


def test_docker_build_passes_only_declared_args_and_builds_what_helm_deploys(shell_vars, releases):
    [build] = of_kind("docker-build")
    argv = expand(build, shell_vars)
    declared = set(re.findall(r"^ARG (\w+)", (ROOT / "Dockerfile").read_text(encoding="utf-8"), re.M))
    build_args = [argv[i + 1].partition("=")[0] for i, a in enumerate(argv) if a == "--build-arg"]
    assert set(build_args) == {"VERSION", "GIT_REVISION"} <= declared
    tag = argv[argv.index("-t") + 1]
    assert argv[-1] == "."
    assert tag == f"{releases[0][2]['image']['repository']}:{VERSION}"
    assert [expand(c, shell_vars) for c in of_kind("docker-push")] == [["docker", "push", tag]]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_secrets_hold_the_keys_the_values_name(tmp_path, releases):
    created: dict[str, set[str]] = {}
    for command in of_kind("kubectl-create"):
        argv = shlex.split(command)
        for arg in argv:
            if arg.startswith("--from-file="):
                (tmp_path / arg.partition("=")[2].rpartition("=")[2]).write_text("x\n", encoding="utf-8")
        result = subprocess.run(
            [*argv, "--dry-run=client", "-o", "yaml"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, (command, result.stderr)
        doc = yaml.safe_load(result.stdout)
        if doc["kind"] == "Secret":
            created[doc["metadata"]["name"]] = set(doc["data"])
    wanted = [(s["secretName"], s["secretKey"]) for s in releases[0][2]["secretEnv"]]
    zilliant = check.load_values(ZILLIANT_VALUES)
    wanted += [(s["secretName"], s["secretKey"]) for s in zilliant["secretEnv"]]
    wanted += [(f["secretName"], i["key"]) for f in zilliant["secretFiles"] for i in f["items"]]
    assert [w for w in wanted if w[1] not in created.get(w[0], set())] == []


def test_the_zilliant_values_fill_the_example_target():
    """The values file the page names renders a valid release, and its target is examples/config.yaml's."""
    assert "`helm/examples/zilliant-values.yaml`" in DOC
    values = check.load_values(ZILLIANT_VALUES)
    assert check.invariant_findings(values) == []
    example = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text(encoding="utf-8"))
    target = {k: v for k, v in example["targets"]["pricing"].items() if k != "token_ttl_s"}
    assert values["config"]["targets"]["pricing"] == target
