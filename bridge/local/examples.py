"""Example commands for the local stack: every operation, and every outcome status."""

from __future__ import annotations

from typing import Any

ZILLIANT = "zilliant-sandbox"
ZUORA = "zuora-sandbox"
WORKFLOO = "workfloo-sandbox"
WORKFLOO_BAD_KEY = "workfloo-wrong-key"
EIGHT_BY_EIGHT = "8x8-sandbox"
EIGHT_BY_EIGHT_DEFINITION = "5870442f-3ddd-4657-b74c-6e17308f5230"


def example_commands(run_id: str) -> list[tuple[bytes | None, Any]]:
    """(Kafka key, command document) pairs; ``run_id`` keeps command ids unique across runs."""

    def cid(name: str) -> str:
        return f"{run_id}-{name}"

    return [
        (
            b"pricing",
            {
                "id": cid("zilliant-queued"),
                "target": ZILLIANT,
                "operation": "zilliant.queue_job",
                "automation_id": "PublishListPrices",
                "scope": "pricing",
                "parameters": {"foo": "bar"},
            },
        ),
        (  # same key: runs after the first, while its job still holds the scope -> 409 conflict
            b"pricing",
            {
                "id": cid("zilliant-conflict"),
                "target": ZILLIANT,
                "operation": "zilliant.queue_job",
                "automation_id": "PublishListPrices",
                "scope": "pricing",
            },
        ),
        (
            b"acct-1",
            {
                "id": cid("zuora-queued"),
                "target": ZUORA,
                "operation": "zuora.run_workflow",
                "workflow_id": 396,
                "parameters": {"accountId": "4028905f5a87c0ff015a87d25ae90025"},
                "zuora": {"track_id": "demo-run-1"},
            },
        ),
        (  # the sandbox ends this run Finished with a task in error: its lifecycle ends failed
            b"acct-4",
            {
                "id": cid("zuora-run-fails"),
                "target": ZUORA,
                "operation": "zuora.run_workflow",
                "workflow_id": 396,
                "parameters": {"accountId": "4028905f5a87c0ff015a87d25ae90025", "SANDBOX_RESULT": "error"},
            },
        ),
        (
            b"acct-2",
            {
                "id": cid("zuora-missing-param"),
                "target": ZUORA,
                "operation": "zuora.run_workflow",
                "workflow_id": 396,
                "parameters": {},
            },
        ),
        (
            b"acct-3",
            {
                "id": cid("zuora-reserved-word"),
                "target": ZUORA,
                "operation": "zuora.run_workflow",
                "workflow_id": 396,
                "parameters": {"accountId": "x", "format": "json"},
            },
        ),
        (
            b"task-2770",
            {"id": cid("zuora-rerun"), "target": ZUORA, "operation": "zuora.rerun_task", "task_id": "2770"},
        ),
        (  # run 400 of the sandbox finished long ago: a stop is refused
            b"acct-0",
            {"id": cid("zuora-stop-finished"), "target": ZUORA, "operation": "zuora.stop_run", "run_id": 400},
        ),
        (
            b"loan-1",
            {
                "specversion": "1.0",
                "id": cid("workfloo-queued"),
                "source": "urn:demo:loans",
                "type": "workflow.command.run",
                "datacontenttype": "application/json",
                "data": {
                    "target": WORKFLOO,
                    "operation": "workfloo.execute",
                    "definition_id": "657117e1d511b6e54fe2a967",
                    "scenario_id": "6571181fd511b6e54fe2a968",
                },
            },
        ),
        (
            b"loan-2",
            {
                "id": cid("workfloo-unknown-definition"),
                "target": WORKFLOO,
                "operation": "workfloo.execute",
                "definition_id": "000000000000000000000000",
                "scenario_id": "6571181fd511b6e54fe2a968",
            },
        ),
        (
            b"loan-3",
            {
                "id": cid("workfloo-auth-error"),
                "target": WORKFLOO_BAD_KEY,
                "operation": "workfloo.execute",
                "definition_id": "657117e1d511b6e54fe2a970",
            },
        ),
        (
            b"60dbe307fe55d99fc083db61",
            {
                "id": cid("8x8-suspend"),
                "target": EIGHT_BY_EIGHT,
                "operation": "8x8.update_instance",
                "action": "suspend",
                "definition_id": EIGHT_BY_EIGHT_DEFINITION,
                "instance_id": "60dbe307fe55d99fc083db61",
            },
        ),
        (
            b"60dbe307fe55d99fc083db64",
            {
                "id": cid("8x8-resume-terminated"),
                "target": EIGHT_BY_EIGHT,
                "operation": "8x8.update_instance",
                "action": "resume",
                "definition_id": EIGHT_BY_EIGHT_DEFINITION,
                "instance_id": "60dbe307fe55d99fc083db64",
            },
        ),
        (
            b"misc",
            {
                "id": cid("unknown-target"),
                "target": "nowhere",
                "operation": "zilliant.queue_job",
                "automation_id": "PublishListPrices",
            },
        ),
    ]


NOT_A_COMMAND = b"this is not JSON"
