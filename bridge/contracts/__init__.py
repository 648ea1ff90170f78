"""Contracts as code: topic specs, JSON Schemas, examples and the AsyncAPI document.

The topic specs (``bridge/contracts/topics/<topic>.yaml``, shipped in the package) are written by
hand. Everything under ``topics/`` is generated from them (copies of the specs) and from the pydantic
models, so a model change shows up as a diff in review:

    write_all(Path("topics"))          # bridge topics generate
    problems = check_all(Path("topics"))  # [] when the files match the models

Modules: ``specs`` (the hand-written topic specs), ``schemas`` (JSON Schemas from the models),
``examples``, ``asyncapi`` and ``files`` (render, write, check), and ``cli`` (``bridge topics``: the
specs applied to and checked on a broker, the files regenerated). Everything is pure except
``load_specs``, ``write_all`` and ``check_all``, which touch files, and ``cli``.
"""

from bridge.contracts.examples import EXAMPLE_TIME, Example, build_examples
from bridge.contracts.files import check_all, render_files, write_all
from bridge.contracts.schemas import (
    COMMAND_CLOUDEVENT,
    CONTROL_COMMAND,
    OUTCOME_EVENT,
    RUN_COMMAND,
    build_schemas,
)
from bridge.contracts.specs import (
    ASYNCAPI_FILE,
    SHIPPED_SPECS,
    TopicRole,
    TopicSpec,
    ledger_spec_problems,
    load_specs,
    spec_problems,
)

__all__ = [
    "ASYNCAPI_FILE",
    "COMMAND_CLOUDEVENT",
    "CONTROL_COMMAND",
    "EXAMPLE_TIME",
    "LEDGER_ENTRY",
    "OUTCOME_EVENT",
    "RUN_COMMAND",
    "SHIPPED_SPECS",
    "Example",
    "TopicRole",
    "TopicSpec",
    "build_examples",
    "build_schemas",
    "check_all",
    "ledger_spec_problems",
    "load_specs",
    "render_files",
    "spec_problems",
    "write_all",
]
