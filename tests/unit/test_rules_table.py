"""The rule table is built in one place, per schema version, and nothing
registers rules as a side effect of an import; the rules modules import each
other in one direction only."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import typing
from pathlib import Path
from types import MappingProxyType

import pytest

from sequencer.core import records as R
from sequencer.core.presets import DEVNET, SCHEMA_VERSION
from sequencer.core.rules import table
from sequencer.core.rules.base import Context

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "sequencer" / "core"
RULES_MODULES = sorted(f"sequencer.core.rules.{p.stem}" for p in (CORE / "rules").glob("*.py")
                       if p.stem != "__init__")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def get_core_imports() -> dict[str, set[str]]:
    """Module -> the sequencer.core modules it imports (any import statement, at any depth)."""
    modules = {module_name(p): p for p in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_core_has_no_import_cycle():
    graph = get_core_imports()
    assert "sequencer.core.rules.table" in graph and "sequencer.core.transition" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_only_the_table_and_transition_import_the_table():
    importers = {m for m, edges in get_core_imports().items() if "sequencer.core.rules.table" in edges}
    assert importers == {"sequencer.core.transition"}


_PROBE = """
import json, sys
import {module}
from sequencer.core.rules.table import RULE_TABLES
describe = lambda: {{v: {{k.__name__: f"{{f.__module__}}.{{f.__name__}}" for k, f in t.items()}}
                     for v, t in RULE_TABLES.items()}}
alone = describe()
import sequencer.core.transition, sequencer.core.matching, sequencer.core.txcheck, sequencer.node.views
print(json.dumps({{"alone": alone, "after": describe()}}))
"""


@pytest.mark.parametrize("module", RULES_MODULES + ["sequencer.core.transition"])
def test_each_module_imports_alone_and_no_import_changes_the_tables(module):
    """In a fresh interpreter: importing one module first works (no cycle that
    only some import orders survive), and importing everything else after it
    leaves the tables exactly as the table module built them."""
    out = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    tables = json.loads(out.stdout)
    assert tables["alone"] == tables["after"]
    assert set(tables["alone"]) == {str(v) for v in table.RULE_TABLES}


def test_version_1_covers_every_record_kind_with_a_real_rule():
    kinds = set(typing.get_args(R.Record))
    assert kinds == set(R.RECORD_TYPES) and len(kinds) == 23  # ForcedClose (tag 50) joined v1; the vault's 6, 7, 21; triggers 9, 10, 11, 19, 20; the auction's 8, 23; Deleverage 24 (v3)
    rules = table.get_rules(1)
    # Deleverage (tag 24) is a rules v3 kind only: it replaces v1/v2's ranked ladder, which those logs replay
    assert set(rules) == kinds - {R.Deleverage} and set(table.get_rules(3)) == kinds
    for kind, rule in rules.items():
        assert rule.__module__.startswith("sequencer.core.rules."), (kind, rule)
        assert rule.__name__.startswith("process_") and rule.__name__ != "process_not_enabled", (kind, rule)


def test_the_tables_are_immutable_and_keyed_by_schema_version():
    assert isinstance(table.RULE_TABLES, MappingProxyType) and isinstance(table.RULES_V1, MappingProxyType)
    assert table.get_rules(1) is table.RULES_V1 and table.get_rules(2) is table.RULES_V2
    assert SCHEMA_VERSION == 4 and table.get_rules(SCHEMA_VERSION) is table.RULES_V4
    assert table.get_rules(3) is table.RULES_V3
    assert isinstance(table.RULES_V2, MappingProxyType) and set(table.RULES_V2) == set(table.RULES_V1)
    changed = {kind.__name__ for kind in table.RULES_V1 if table.RULES_V1[kind] is not table.RULES_V2[kind]}
    assert changed == {"Liquidate", "AuctionEnd", "ForcedClose"}
    assert isinstance(table.RULES_V3, MappingProxyType) and set(table.RULES_V3) == set(table.RULES_V2) | {R.Deleverage}
    changed = {kind.__name__ for kind in table.RULES_V3 if table.RULES_V2.get(kind) is not table.RULES_V3[kind]}
    assert changed == {"Liquidate", "AuctionEnd", "ForcedClose", "Deleverage"}
    assert isinstance(table.RULES_V4, MappingProxyType) and set(table.RULES_V4) == set(table.RULES_V3)
    changed = {kind.__name__ for kind in table.RULES_V4 if table.RULES_V3[kind] is not table.RULES_V4[kind]}
    assert changed == {"ScheduledCancelAll", "ModifyOrder"}  # the dead-man's switch by order epochs; a dead order's modify refused
    assert Context(preset=DEVNET, domain_separator=bytes(32), recover=None).schema_version == SCHEMA_VERSION
    with pytest.raises(TypeError):
        table.RULES_V1[R.Transfer] = None  # type: ignore[index]
    with pytest.raises(TypeError):
        table.RULE_TABLES[2] = table.RULES_V1  # type: ignore[index]
    with pytest.raises(ValueError, match="no rules for log schema version 0"):
        table.get_rules(0)
