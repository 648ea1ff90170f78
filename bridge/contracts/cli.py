"""``bridge topics apply|check|generate``: the Kafka topics made and checked against the topic specs
(:mod:`bridge.kafka.topics` talks to the broker), and the contracts under ``topics/`` regenerated.

The specs ship inside the package (``bridge/contracts/topics/``); ``--dir`` names another folder.
A missing or empty folder is an error (exit 2), never "all topics match".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaError

from bridge.config.settings import KafkaSettings, TopicSettings
from bridge.contracts.files import check_all, write_all
from bridge.contracts.specs import TopicSpec, load_specs
from bridge.errors import ConfigError
from bridge.kafka.options import security_options
from bridge.kafka.topics import Report, TopicAdminError, apply_topics, check_topics
from bridge.providers.settings import load_settings


def named_as_configured(specs: Sequence[TopicSpec], topics: TopicSettings) -> list[TopicSpec]:
    """Each spec under the name the configuration gives its role (``topics.run_commands``...)."""
    return [spec.model_copy(update={"name": getattr(topics, spec.role.value)}) for spec in specs]


async def apply_shipped_specs(bootstrap: str, options: Mapping[str, Any] | None = None) -> Report:
    """``apply`` with the specs shipped with the bridge (the local stack's topics)."""
    return await apply_topics(bootstrap, load_specs(), options=options)


def add_topics_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bridge topics apply|check|generate``."""
    topics = subparsers.add_parser("topics", help="create or check Kafka topics; regenerate topic contracts")
    actions = topics.add_subparsers(dest="topics_command", required=True)
    apply = actions.add_parser("apply", help="create missing topics; report (never change) differing ones")
    apply.add_argument("--dry-run", action="store_true", help="report what would be created; create nothing")
    check = actions.add_parser("check", help="exit 1 if a topic is missing or differs from its spec")
    generate = actions.add_parser(
        "generate", help="rewrite topics/: copies of the specs, schemas, examples, asyncapi.yaml"
    )
    generate.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    generate.add_argument("--dir", type=Path, default=Path("topics"), help="where to write (default: topics)")
    generate.add_argument(
        "--config", type=Path, default=None, help="bridge config: its provider plugins join the contracts"
    )
    for parser in (apply, check):
        specs = "folder of <topic>.yaml specs (default: the specs shipped with the bridge)"
        parser.add_argument("--dir", type=Path, default=None, help=specs)
        default = KafkaSettings().bootstrap_servers
        parser.add_argument(
            "--bootstrap", default=None, help=f"HOST:PORT (default: the config's, else {default})"
        )
        parser.add_argument(
            "--config", type=Path, default=None, help="bridge config: topic names, bootstrap, TLS and SASL"
        )


def run_topics_cli(args: argparse.Namespace) -> int:
    """0: in sync; 1: drift (or, for generate --check, out-of-date files); 2: could not run."""
    bootstrap = args.bootstrap if args.topics_command != "generate" else None
    try:
        if args.topics_command == "generate":
            if args.config:
                load_settings(args.config)  # the plugins it allows join the catalog the contracts show
            return _generate(args.dir, check=args.check)
        specs = load_specs(args.dir) if args.dir is not None else load_specs()
        settings = load_settings(args.config) if args.config else None
        specs = named_as_configured(specs, settings.topics) if settings else specs
        kafka = settings.kafka if settings else KafkaSettings()
        bootstrap, options = bootstrap or kafka.bootstrap_servers, security_options(kafka.security)
        if args.topics_command == "apply":
            report = asyncio.run(apply_topics(bootstrap, specs, dry_run=args.dry_run, options=options))
        else:
            report = asyncio.run(check_topics(bootstrap, specs, options=options))
    except KafkaConnectionError:
        print(f"bridge topics: cannot reach the Kafka broker at {bootstrap}", file=sys.stderr)
        return 2
    except (ConfigError, TopicAdminError, KafkaError) as exc:
        print(f"bridge topics: {exc}", file=sys.stderr)
        return 2
    print(report.render(len(specs)))
    return 1 if report.drift else 0


def _generate(root: Path, *, check: bool) -> int:
    if check:
        problems = check_all(root)
        print("\n".join(problems or ["topic contracts are up to date"]))
        return 1 if problems else 0
    changed = write_all(root)
    print("\n".join(f"wrote {root / rel}" for rel in changed) or "topic contracts are up to date")
    return 0
