"""The package's shape: the package map's layering (what may import what), no import cycle, and decisions
free of I/O.

Imports are read with ``ast`` from the source files (nothing is imported), so a rule names the
module that breaks it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "bridge"
# A smell detector, not a reason to split: a module this long probably holds two responsibilities.
MAX_LINES = 450
# Pure decisions: they must stay importable and testable without a network client library.
PURE = (
    "bridge.pipeline.decide",
    "bridge.pipeline.retry",
    "bridge.messages.outcomes",
    "bridge.observability.redact",
    "bridge.messages.wire",
    "bridge.messages.cloudevents",
    "bridge.pipeline.guards",
    "bridge.kafka.offsets",
    "bridge.messages.provenance",
    "bridge.messages.parsing",
    "bridge.providers.parsing",
    "bridge.messages.commands",
    "bridge.redrive.select",
    "bridge.ledger.checkpoint",  # whether a local store is trusted (issue 28)
)
IO_LIBRARIES = ("aiohttp", "aiokafka")
# The composition root is wired up by the command-line layer only.
APP_IMPORTERS = {"bridge.cli", "bridge.local.stack"}
# Emulated providers and the embedded stack are for development: the service never depends on them.
DEV_PACKAGES = ("bridge.sandbox", "bridge.local", "bridge.testing", "bridge.conformance")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        yield node.module
        # `from bridge import decide` imports the module bridge.pipeline.decide
        yield from (f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules())


@cache
def imports(module: str, *, top_level: bool = True) -> frozenset[str]:
    """What ``module`` imports: at import time only (``top_level``) or anywhere, functions included."""
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    nodes = tree.body if top_level else list(ast.walk(tree))
    return frozenset(name for node in nodes for name in _imported(node))


def reachable(module: str) -> dict[str, str]:
    """Everything importing ``module`` loads (top-level imports, transitively) -> who imports it."""
    via: dict[str, str] = {}
    stack = [module]
    while stack:
        current = stack.pop()
        for name in imports(current):
            if name not in via:
                via[name] = current
                if name in modules():
                    stack.append(name)
    return via


def is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_package_is_found():
    assert {"bridge.cli", "bridge.pipeline.decide", "bridge.sandbox.server"} <= set(modules())


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_is_so_long_that_it_hides_two_responsibilities(module: str):
    lines = len(modules()[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, (
        f"{module} has {lines} lines: find the second responsibility in it and give that its own home"
    )


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_load_no_network_client(module: str):
    via = reachable(module)
    for name, importer in via.items():
        offending = [lib for lib in IO_LIBRARIES if is_within(name, lib)]
        assert not offending, f"{module} loads {name} (imported by {importer}): keep I/O out of decisions"


def test_no_import_cycles_at_import_time():
    for module in modules():
        via = reachable(module)
        assert module not in via, f"{module} imports itself through {via[module]}: an import cycle"


def test_no_import_cycles_counting_deferred_and_type_checking_imports():
    """A cycle hidden in a function body or behind ``TYPE_CHECKING`` is still two modules that cannot be
    understood apart: none is allowed."""
    for module in modules():
        seen: dict[str, str] = {}
        stack = [module]
        while stack:
            current = stack.pop()
            for name in imports(current, top_level=False):
                if name in modules() and name not in seen:
                    seen[name] = current
                    stack.append(name)
        assert module not in seen, f"{module} imports itself through {seen[module]}: an import cycle"


# -- the package map: what may import what -----------------------------------------------------------
# Each unit (a subpackage, or a top-level module) and the units it may import, anywhere in its code
# (deferred and TYPE_CHECKING imports included). The table is a layering, written top-down: a unit
# imports only units written below it (so no cycle), and ``bridge`` (the package root, which holds
# only ``__version__``) is below everything. The path of a command reads downwards: the command line
# and the app wire everything; parking and tracking run beside the pipeline; the pipeline decides one
# record, asking the ledger; kafka and providers are the two edges; messages are what crosses the
# topics. A new arrow is a design decision: add it here, pointing down, with the module that needs it.
ALLOWED: dict[str, set[str]] = {
    # the entry point and the command line
    "__main__": {"cli"},
    "cli": {
        "app",
        "config",
        "contracts",
        "errors",
        "local",
        "observability",
        "providers",
        "redrive",
        "status",
    },
    # the local development stack: it runs the app beside a broker and the sandbox
    "local": {
        "app",
        "config",
        "contracts",
        "errors",
        "kafka",
        "messages",
        "providers",
        "sandbox",
        "status",
        "waits",
    },
    # the composition root: builds every part and shuts them down in order
    "app": {
        "config",
        "errors",
        "http",
        "kafka",
        "ledger",
        "observability",
        "parking",
        "pipeline",
        "providers",
        "status",
        "tracking",
        "waits",
    },
    # tools over the topics: what became of one command, the contracts, redrive, the provider test kit
    "status": {
        "config",
        "errors",
        "kafka",
        "ledger",
        "messages",
        "parking",
        "pipeline",
        "providers",
        "tracking",
    },
    "contracts": {"config", "errors", "kafka", "ledger", "messages", "providers", "tracking"},
    "redrive": {"config", "errors", "kafka", "messages", "observability"},
    "conformance": {
        "config",
        "errors",
        "http",
        "messages",
        "observability",
        "pipeline",
        "providers",
        "sandbox",
    },
    # beside the pipeline: following started workflows, and parking (both read the pipeline's runtimes)
    "tracking": {"config", "kafka", "messages", "observability", "pipeline", "providers", "waits"},
    "parking": {"config", "kafka", "ledger", "messages", "observability", "pipeline", "waits"},
    # one record to one decision: the processor, the executor, retries, guards, bulkheads, the parking desk
    "pipeline": {
        "config",
        "errors",
        "http",
        "kafka",
        "ledger",
        "messages",
        "observability",
        "providers",
        "waits",
    },
    # what runs once; development aids over the edges (the emulated providers, in-memory fakes)
    "ledger": {"config", "errors", "kafka", "messages", "observability", "providers"},
    "sandbox": {"providers"},
    "testing": {"errors", "http", "kafka", "messages", "waits"},
    # the two edges: Kafka (fetch, scheduling, offsets, publish, topic admin) and the providers
    "kafka": {"config", "errors", "messages", "observability", "waits"},
    "providers": {"config", "errors", "http", "messages", "observability"},
    # what the process tells about itself: metrics, health, logs, redaction, tracing
    "observability": {"bridge", "config", "errors", "http", "messages"},
    # the HTTP client
    "http": {"config", "errors", "messages"},
    # what the operator writes
    "config": {"errors"},
    # the errors the bridge raises (each names its outcome's error kind)
    "errors": {"messages"},
    # what crosses the topics (pure), and the wait that never loses a stop
    "messages": set(),
    "waits": set(),
}


def unit(module: str) -> str:
    """``bridge.pipeline.retry`` -> ``pipeline``, ``bridge.cli`` -> ``cli``, ``bridge`` -> ``bridge``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "bridge"


def find_cycle(arrows: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``arrows`` (``[a, b, ..., a]``), or None when there is none."""
    state: dict[str, str] = {}  # unit -> "open" (on the current path) or "done"
    path: list[str] = []

    def visit(here: str) -> list[str] | None:
        state[here] = "open"
        path.append(here)
        for there in sorted(arrows.get(here, ())):
            if state.get(there) == "open":
                return [*path[path.index(there) :], there]
            if there not in state and (found := visit(there)) is not None:
                return found
        path.pop()
        state[here] = "done"
        return None

    for start in arrows:
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_the_package_map_has_no_cycle():
    cycle = find_cycle(ALLOWED)
    assert cycle is None, f"the package map (ALLOWED) has a cycle: {' -> '.join(cycle or [])}"


def test_the_cycle_check_finds_a_cycle_it_is_given():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    looped = {**ALLOWED, "messages": {"pipeline"}}  # what messages -> pipeline would close
    cycle = find_cycle(looped)
    assert cycle is not None and cycle[0] == cycle[-1] and "messages" in cycle and "pipeline" in cycle


def test_the_package_map_is_written_top_down():
    """Each unit's arrows point to units written below it: the order of the table is the layering."""
    order = [*ALLOWED, "bridge"]
    for here, theres in ALLOWED.items():
        up = sorted(t for t in theres if order.index(t) <= order.index(here))
        assert not up, (
            f"ALLOWED[{here!r}] points up (or to itself) at {up}: move it below, or rethink the arrow"
        )


def test_every_unit_of_the_package_is_on_the_map():
    units = {unit(m) for m in modules()} - {"bridge"}
    assert units == set(ALLOWED), f"on the map but gone: {set(ALLOWED) - units}; new: {units - set(ALLOWED)}"


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_follow_the_package_map(module: str):
    here = unit(module)
    if here == "bridge":
        return
    for name in imports(module, top_level=False):
        there = unit(name)
        if not is_within(name, "bridge") or there == here:
            continue
        assert there in ALLOWED[here], (
            f"{module} imports {name}: the package map (ALLOWED in this file) has no arrow {here} -> {there}"
        )


def test_the_map_rule_fails_on_an_arrow_it_does_not_have():
    # bridge.pipeline.processor imports bridge.ledger; without that arrow the rule must object
    saved = ALLOWED["pipeline"]
    ALLOWED["pipeline"] = saved - {"ledger"}
    try:
        with pytest.raises(AssertionError, match="no arrow pipeline -> ledger"):
            test_imports_follow_the_package_map("bridge.pipeline.processor")
    finally:
        ALLOWED["pipeline"] = saved


def test_only_the_entry_point_imports_the_cli():
    for module in modules():
        if module != "bridge.__main__" and module != "bridge.cli":
            assert "bridge.cli" not in imports(module, top_level=False), f"{module} imports bridge.cli"


def test_only_the_command_line_layer_imports_the_app():
    for module in modules():
        if module in APP_IMPORTERS or module == "bridge.app":
            continue
        assert "bridge.app" not in imports(module, top_level=False), (
            f"{module} imports bridge.app: only {sorted(APP_IMPORTERS)} wire the service together"
        )


def test_the_service_does_not_depend_on_development_packages():
    for module in modules():
        if module == "bridge.cli" or any(is_within(module, dev) for dev in DEV_PACKAGES):
            continue
        for name in imports(module, top_level=False):
            dev = [p for p in DEV_PACKAGES if is_within(name, p)]
            assert not dev, f"{module} imports {name}: the service must run without {dev[0]}"


def test_the_rules_see_imports_inside_functions():
    # bridge.cli imports the local stack only inside the command that needs it
    assert "bridge.local.stack" not in imports("bridge.cli")
    assert "bridge.local.stack" in imports("bridge.cli", top_level=False)


# -- a provider is its own two modules ----------------------------------------------------------------


def provider_modules() -> tuple[str, ...]:
    """The modules the catalog finds (bridge/providers/<p>.py with a SPEC), read with ``ast``."""
    found = []
    for name in modules():
        if is_within(name, "bridge.providers") and name.count(".") == 2:
            tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
            targets = [t for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]
            if any(isinstance(t, ast.Name) and t.id == "SPEC" for t in targets):
                found.append(name)
    return tuple(found)


def own_modules(provider: str) -> tuple[str, ...]:
    """bridge.providers.<p> and bridge.sandbox.<p> (and the bridge.sandbox.<p>_<part> a large one is
    split into): the only modules that may name provider <p>."""
    short = provider.rsplit(".", 1)[1]
    parts = [m for m in modules() if m.startswith(f"bridge.sandbox.{short}_")]
    return (f"bridge.providers.{short}", f"bridge.sandbox.{short}", *parts)


def _classes(module: str) -> set[str]:
    if module not in modules():
        return set()
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


@cache
def provider_words() -> dict[str, frozenset[str]]:
    """Per provider module: the words that name it (its kind, its title, its module name, the fault
    keys its sandbox declares) and the classes its two modules define."""
    from bridge.providers.catalog import CATALOG
    from bridge.sandbox.catalog import SANDBOXES

    words: dict[str, frozenset[str]] = {}
    for spec in CATALOG.specs:
        module = next(m for m in provider_modules() if m == spec.target.__module__)
        short = module.rsplit(".", 1)[1]
        sandbox = next((s for s in SANDBOXES if s.kind == spec.kind), None)
        keys = set(sandbox.fault_keys) if sandbox else set()
        names = {spec.kind, spec.title, short, *keys}
        words[module] = frozenset(
            {n.lower() for n in names} | {c for m in own_modules(module) for c in _classes(m)}
        )
    return words


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (prose may name a provider; code may not)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for statement in body:
                if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                    found.add(id(statement.value))
    return found


def code_words(source: str) -> Iterator[str]:
    """Every identifier, imported module and non-docstring string literal in ``source``."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, ast.Attribute):
            yield node.attr
        elif isinstance(node, ast.alias):
            yield node.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.value


def mentions(source: str, words: frozenset[str]) -> list[str]:
    lowered = {w for w in words if w.islower() or not w[:1].isupper()}
    classes = words - lowered
    return [w for w in code_words(source) if w in classes or any(p in w.lower() for p in lowered)]


def test_the_provider_modules_are_found():
    assert set(provider_modules()) == {
        "bridge.providers.zilliant",
        "bridge.providers.zuora",
        "bridge.providers.workfloo",
        "bridge.providers.eightbyeight",
    }
    assert set(provider_words()) == set(provider_modules())


def test_the_mention_check_sees_code_and_not_prose():
    words = provider_words()["bridge.providers.zuora"]
    assert mentions('x = {"provider": "zuora"}', words) == ["zuora"]
    assert mentions("from bridge.providers.zuora import KIND", words)
    assert mentions("def f(t: ZuoraTarget) -> None: ...", words) == ["ZuoraTarget"]
    assert mentions("x = CATALOG.zuora_only", words) == ["zuora_only"]
    assert mentions('def f() -> None:\n    """Zuora replays a key."""\n', words) == []
    assert mentions('x = "8x8"', words) == []  # another provider's word


@pytest.mark.parametrize("module", sorted(modules()))
def test_only_a_providers_own_modules_name_it(module: str):
    source = modules()[module].read_text(encoding="utf-8")
    for provider, words in provider_words().items():
        if module in own_modules(provider):
            continue
        found = mentions(source, words)
        assert not found, f"{module} names {provider} ({sorted(set(found))}): declare it in {provider}'s SPEC"


def test_the_catalog_loads_every_provider_module_and_they_load_no_network_client():
    # the catalog imports them by discovery (pkgutil), which the import rules above cannot see
    for provider in provider_modules():
        via = reachable(provider)
        offending = [name for name in via if any(is_within(name, lib) for lib in IO_LIBRARIES)]
        assert not offending, f"{provider} loads {offending} (via {via[offending[0]]}): the parser loads it"
