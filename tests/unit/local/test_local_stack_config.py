"""The local stack (``make run``): its configuration, its topics and its example commands.

The configuration must be one the bridge accepts, with the credentials the sandbox checks, handed
over through environment variables as in production; the examples must reach every operation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bridge.config.settings import Settings, TopicSettings
from bridge.errors import ConfigError
from bridge.local import examples
from bridge.local.commands import command_topic
from bridge.local.stack import SANDBOX_ENV, deep_merge, local_config, local_settings, topic_layout
from bridge.messages.commands import CommandFamily
from bridge.providers.catalog import CATALOG
from bridge.providers.oauth import TokenEndpoint, post_token_form
from bridge.sandbox import RunningSandbox
from bridge.sandbox import eightbyeight as eightbyeight_sandbox
from bridge.sandbox import workfloo as workfloo_sandbox
from bridge.sandbox import zilliant as zilliant_sandbox
from bridge.sandbox import zuora as zuora_sandbox
from bridge.sandbox.eightbyeight import (
    EIGHTBYEIGHT_API_KEY,
    EIGHTBYEIGHT_DEFINITION,
    EIGHTBYEIGHT_RUNNABLE,
    EIGHTBYEIGHT_TERMINATED,
)
from bridge.sandbox.workfloo import WORKFLOO_API_KEY, WORKFLOO_DEFINITION_WITH_LINKS
from bridge.sandbox.zilliant import (
    SALESFORCE_CLIENT_ID,
    SALESFORCE_CLIENT_SECRET,
    SALESFORCE_PASSWORD,
    SALESFORCE_USERNAME,
)
from bridge.sandbox.zuora_runs import (
    ZUORA_CLIENT_ID,
    ZUORA_CLIENT_SECRET,
    ZUORA_DEFINITION_REQUIRES_ACCOUNT,
    ZUORA_TASK_ERROR,
)

SANDBOX_URL = "http://127.0.0.1:18080"


def settings() -> Settings:
    return local_settings("127.0.0.1:19092", SANDBOX_URL)


def secret(value: object) -> str:
    assert isinstance(value, SecretStr)
    return value.get_secret_value()


# -- configuration --------------------------------------------------------------------------------


def test_local_settings_talk_to_the_given_broker_and_sandbox():
    s = settings()
    assert s.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert {t.base_url.split("/")[2] for t in s.targets.values()} == {"127.0.0.1:18080"}


def test_the_embedded_broker_gets_no_idempotent_producer():
    # Tansu rejects idempotent producers (the broker's limit, not ours)
    assert settings().kafka.enable_idempotence is False


def test_every_example_target_but_the_unknown_one_is_configured():
    named = {
        (doc.get("data") or doc)["target"]
        for _, doc in examples.example_commands("r")
        if "target" in (doc.get("data") or doc)
    }
    assert named - set(settings().targets) == {"nowhere"}


def test_each_provider_has_one_sandbox_target():
    providers = {name: target.provider for name, target in settings().targets.items()}
    assert providers == {
        zilliant_sandbox.LOCAL_TARGET: "zilliant",
        zuora_sandbox.LOCAL_TARGET: "zuora",
        workfloo_sandbox.LOCAL_TARGET: "workfloo",
        workfloo_sandbox.LOCAL_BAD_KEY_TARGET: "workfloo",
        eightbyeight_sandbox.LOCAL_TARGET: "8x8",
    }


def test_credentials_are_the_ones_the_sandbox_accepts():
    targets = settings().targets
    zilliant, zuora = targets[zilliant_sandbox.LOCAL_TARGET], targets[zuora_sandbox.LOCAL_TARGET]
    assert secret(zilliant.username) == SALESFORCE_USERNAME
    assert secret(zilliant.password) == SALESFORCE_PASSWORD
    assert secret(zilliant.client_id) == SALESFORCE_CLIENT_ID
    assert secret(zilliant.client_secret) == SALESFORCE_CLIENT_SECRET
    assert secret(zuora.client_id) == ZUORA_CLIENT_ID
    assert secret(zuora.client_secret) == ZUORA_CLIENT_SECRET
    assert secret(targets[workfloo_sandbox.LOCAL_TARGET].api_key) == WORKFLOO_API_KEY
    assert secret(targets[eightbyeight_sandbox.LOCAL_TARGET].api_key) == EIGHTBYEIGHT_API_KEY


def test_the_wrong_key_target_really_has_a_wrong_key():
    wrong = secret(settings().targets[workfloo_sandbox.LOCAL_BAD_KEY_TARGET].api_key)
    assert wrong != WORKFLOO_API_KEY


def test_the_raw_config_holds_references_never_the_credentials():
    raw = str(local_config("b:1", SANDBOX_URL))
    for value in SANDBOX_ENV.values():
        assert value not in raw
    assert "{'env': 'SANDBOX_ZUORA_CLIENT_SECRET'}" in raw


def test_the_environment_can_replace_a_credential():
    s = local_settings("b:1", SANDBOX_URL, environ={"SANDBOX_8X8_API_KEY": "rotated"})
    assert secret(s.targets[eightbyeight_sandbox.LOCAL_TARGET].api_key) == "rotated"


def test_an_empty_credential_is_a_config_error_naming_the_variable():
    with pytest.raises(ConfigError, match="SANDBOX_ZUORA_CLIENT_ID is not set or empty"):
        local_settings("b:1", SANDBOX_URL, environ={"SANDBOX_ZUORA_CLIENT_ID": ""})


def test_overrides_are_merged_into_the_sections_they_name():
    s = local_settings(
        "b:1", SANDBOX_URL, overrides={"engine": {"max_in_flight": 7}, "kafka": {"linger_ms": 5}}
    )
    assert s.engine.max_in_flight == 7
    assert s.engine.drain_grace_s == 5  # the local default next to it is kept
    assert s.kafka.linger_ms == 5 and s.kafka.group_id == "workflow-bridge-local"


def test_overrides_can_retune_one_target():
    s = local_settings(
        "b:1",
        SANDBOX_URL,
        overrides={"targets": {zuora_sandbox.LOCAL_TARGET: {"retry": {"max_attempts": 1}}}},
    )
    assert s.targets[zuora_sandbox.LOCAL_TARGET].retry.max_attempts == 1
    assert s.targets[zilliant_sandbox.LOCAL_TARGET].retry.max_attempts == 3


def test_metrics_port_is_passed_through_and_bound_to_loopback():
    s = local_settings("b:1", SANDBOX_URL, metrics_port=9999)
    assert (s.observability.host, s.observability.port) == ("127.0.0.1", 9999)


def test_plain_http_is_allowed_only_because_the_sandbox_asks_for_it():
    raw = local_config("b:1", SANDBOX_URL)
    raw["targets"][zuora_sandbox.LOCAL_TARGET]["allow_http"] = False
    with pytest.raises(ConfigError, match="plain http"):
        local_settings("b:1", SANDBOX_URL, overrides={"targets": raw["targets"]})


# -- deep_merge --------------------------------------------------------------------------------------


def test_deep_merge_merges_nested_mappings_and_replaces_the_rest():
    base = {"a": {"x": 1, "y": {"z": 2}}, "b": [1, 2], "c": 3}
    merged = deep_merge(base, {"a": {"y": {"w": 4}}, "b": [9], "d": 5})
    assert merged == {"a": {"x": 1, "y": {"z": 2, "w": 4}}, "b": [9], "c": 3, "d": 5}


def test_deep_merge_lets_a_scalar_replace_a_mapping_and_back():
    assert deep_merge({"a": {"x": 1}}, {"a": None}) == {"a": None}
    assert deep_merge({"a": 1}, {"a": {"x": 1}}) == {"a": {"x": 1}}


def test_deep_merge_leaves_its_inputs_unchanged():
    base = {"a": {"x": 1}}
    overrides = {"a": {"y": 2}}
    deep_merge(base, overrides)
    assert base == {"a": {"x": 1}} and overrides == {"a": {"y": 2}}


# -- topics ------------------------------------------------------------------------------------------


def test_topic_layout_pairs_command_and_outcome_topics_and_one_dlq_partition():
    assert topic_layout(TopicSettings()) == {
        "workflow.run.commands": 4,
        "workflow.control.commands": 4,
        "workflow.run.outcomes": 4,
        "workflow.control.outcomes": 4,
        "workflow.commands.dlq": 1,
        "workflow.bridge.ledger": 4,  # co-partitioned with the command topics
        "workflow.run.lifecycle": 4,
        "workflow.bridge.parked": 4,  # co-partitioned with the command topics
    }


def test_topic_layout_follows_renamed_topics_and_partition_count():
    renamed = TopicSettings(
        run_commands="a",
        control_commands="b",
        run_outcomes="c",
        control_outcomes="d",
        dead_letter="e",
        ledger="f",
        lifecycle="g",
        parked="h",
    )
    expected = {"a": 2, "b": 2, "c": 2, "d": 2, "e": 1, "f": 2, "g": 2, "h": 2}
    assert topic_layout(renamed, partitions=2) == expected


# -- example commands --------------------------------------------------------------------------------


def example_ids(run_id: str) -> list[str]:
    return [doc["id"] for _, doc in examples.example_commands(run_id)]


def test_example_ids_are_unique_and_carry_the_run_id():
    ids = example_ids("demo-101010")
    assert len(ids) == len(set(ids))
    assert all(i.startswith("demo-101010-") for i in ids)
    assert set(ids).isdisjoint(example_ids("demo-101011"))


def test_examples_reach_every_operation_on_both_command_topics():
    s = settings()
    seen: dict[str, str] = {}
    for _, doc in examples.example_commands("r"):
        data = doc.get("data", doc)
        seen[data["operation"]] = command_topic(s, doc)
    assert set(seen) == CATALOG.operations
    for operation, topic in seen.items():
        family = CATALOG.family_of(operation)
        assert topic == (s.topics.run_commands if family is CommandFamily.RUN else s.topics.control_commands)


def test_the_conflict_example_shares_the_key_and_scope_of_the_job_before_it():
    pairs = examples.example_commands("r")
    (first_key, first), (second_key, second) = pairs[0], pairs[1]
    assert second["id"].endswith("zilliant-conflict")
    assert first_key == second_key and first["scope"] == second["scope"]


def test_eight_by_eight_examples_are_keyed_by_their_instance():
    for key, doc in examples.example_commands("r"):
        if doc.get("operation") == "8x8.update_instance":
            assert key == doc["instance_id"].encode()


def test_examples_use_the_seeded_sandbox_state():
    docs = {doc["id"].removeprefix("r-"): doc.get("data", doc) for _, doc in examples.example_commands("r")}
    assert docs["zuora-queued"]["workflow_id"] == ZUORA_DEFINITION_REQUIRES_ACCOUNT
    assert docs["zuora-rerun"]["task_id"] == ZUORA_TASK_ERROR
    assert docs["workfloo-queued"]["definition_id"] == WORKFLOO_DEFINITION_WITH_LINKS
    assert docs["8x8-suspend"]["instance_id"] == EIGHTBYEIGHT_RUNNABLE
    assert docs["8x8-resume-terminated"]["instance_id"] == EIGHTBYEIGHT_TERMINATED
    assert docs["8x8-suspend"]["definition_id"] == EIGHTBYEIGHT_DEFINITION


def test_the_junk_example_is_not_json():
    with pytest.raises(ValueError):
        json.loads(examples.NOT_A_COMMAND)


# -- the credentials work against a running sandbox ----------------------------------------------------


def zuora_token_request(target: Any) -> tuple[str, dict[str, str]]:
    form = {"client_id": secret(target.client_id), "client_secret": secret(target.client_secret)}
    return target.effective_token_url, {"grant_type": "client_credentials", **form}


def salesforce_token_request(target: Any) -> tuple[str, dict[str, str]]:
    names = ("username", "password", "client_id", "client_secret")
    return target.token_url, {"grant_type": "password", **{n: secret(getattr(target, n)) for n in names}}


@pytest.mark.parametrize(
    ("name", "request_for"),
    [
        (zuora_sandbox.LOCAL_TARGET, zuora_token_request),
        (zilliant_sandbox.LOCAL_TARGET, salesforce_token_request),
    ],
)
async def test_local_credentials_get_a_token_from_the_sandbox(
    sandbox: RunningSandbox,
    session: aiohttp.ClientSession,
    name: str,
    request_for: Callable[[Any], tuple[str, dict[str, str]]],
):
    target = local_settings("b:1", sandbox.url).targets[name]
    url, form = request_for(target)
    body = await post_token_form(session, TokenEndpoint(name, url, target.timeouts), form)
    assert b"access_token" in body
