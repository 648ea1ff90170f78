"""Every JSON and YAML example in the README and the docs pages is valid: commands parse and match the
published schemas, the outcome and lifecycle examples are valid events, and the configuration examples
load. Each reference page keeps what it promises: an example of every operation (commands), an outcome
(outcomes), a lifecycle event of every status (tracking)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bridge.messages.commands import CommandFamily
from bridge.messages.outcomes import OutcomeData
from bridge.messages.parsing import Parsed
from bridge.providers.catalog import CATALOG
from bridge.providers.parsing import parse_command
from bridge.providers.readings import RunState
from bridge.providers.settings import parse_settings
from bridge.tracking.events import LifecycleData

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
SCHEMAS = ROOT / "topics" / "schemas"


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def blocks(language: str, pages: list[Path] = PAGES) -> list[str]:
    return [b for page in pages for b in re.findall(rf"```{language}\n(.*?)```", text(page), flags=re.DOTALL)]


def json_examples(*names: str) -> list[dict[str, Any]]:
    return [json.loads(b) for b in blocks("json", [DOCS / name for name in names] if names else PAGES)]


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


JSON_EXAMPLES = json_examples()
EVENT_TYPES = ("workflow.outcome.", "workflow.lifecycle.")


def is_event(doc: dict[str, Any], prefix: str = "workflow.") -> bool:
    return str(doc.get("type", "")).startswith(EVENT_TYPES) and str(doc["type"]).startswith(prefix)


def test_the_docs_have_an_example_of_every_operation_and_an_outcome():
    operations = {(d.get("data") or d).get("operation") for d in json_examples("commands.md")}
    assert CATALOG.operations <= operations
    assert any(d.get("type", "").startswith("workflow.outcome.") for d in json_examples("outcomes.md"))


@pytest.mark.parametrize("doc", [d for d in JSON_EXAMPLES if not is_event(d)])
def test_command_examples_parse_and_match_the_schema(doc):
    command = doc["data"] if "specversion" in doc else doc
    family = CATALOG.family_of(command["operation"])
    assert family is not None
    result = parse_command(json.dumps(doc).encode(), family, 1_000_000)
    assert isinstance(result, Parsed), result
    if "specversion" in doc:
        jsonschema.validate(doc, schema("command-cloudevent.schema.json"))
    else:
        name = "run-command.schema.json" if family is CommandFamily.RUN else "control-command.schema.json"
        jsonschema.validate(doc, schema(name))


@pytest.mark.parametrize(
    "doc", [d for d in JSON_EXAMPLES if d.get("type", "").startswith("workflow.outcome.")]
)
def test_outcome_examples_are_valid_outcome_events(doc):
    jsonschema.validate(doc, schema("outcome-event.schema.json"))
    data = OutcomeData.model_validate(doc["data"])
    assert doc["type"] == f"workflow.outcome.{data.status.value}" and doc["subject"] == data.command_id


def test_the_docs_have_a_lifecycle_event_of_every_status():
    shown = [d for d in json_examples("tracking.md") if is_event(d, "workflow.lifecycle.")]
    assert {d["data"]["status"] for d in shown} == {state.value for state in RunState}
    for doc in shown:
        jsonschema.validate(doc, schema("lifecycle-event.schema.json"))
        data = LifecycleData.model_validate(doc["data"])
        assert doc["type"] == f"workflow.lifecycle.{data.status.value}" and doc["subject"] == data.command_id


def _env_refs(node: Any, env: dict[str, str]) -> Any:
    """Turn every secret reference into an env reference with a value, so the example loads here."""
    if isinstance(node, dict):
        if set(node) in ({"env"}, {"file"}):
            name = node.get("env") or f"FILE_{len(env)}"
            env[name] = "example-value"
            return {"env": name}
        return {k: _env_refs(v, env) for k, v in node.items()}
    return node


@pytest.mark.parametrize("text", blocks("yaml"))
def test_configuration_examples_load(text):
    env: dict[str, str] = {}
    raw = _env_refs(yaml.safe_load(text), env)
    security = raw.get("kafka", {}).get("security", {})
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):  # files that do not exist here
        security.pop(key, None)
    if security:
        security["protocol"] = "SASL_PLAINTEXT"
        security.pop("ssl_key_password", None)
    parse_settings(raw, env)
