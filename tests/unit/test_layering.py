"""The import rules of docs/architecture.md, read from the source (ast), so a
forbidden import cannot come back unnoticed:

- ``sequencer`` never imports ``l1_bridge`` or ``isoroll``; ``l1_bridge`` never
  imports ``isoroll`` (``isoroll`` wires both);
- the pure layers (``sequencer.core``, ``sequencer.executor``, ``prover``) never
  import an I/O module (Kafka, asyncio, sockets, HTTP, web3, files, clocks,
  randomness, processes, threads) nor the node or the log, and never call
  ``open``/``print``/``input``.

Every import counts: top-level, inside functions (lazy), relative, and a
module named to ``importlib.import_module`` or listed as a string constant.
The last tests run the checker on a copy of the tree with forbidden imports
added, and show that it reports each of them.
"""
from __future__ import annotations

import ast
import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("sequencer", "l1_bridge", "prover", "isoroll")

LAYERS = {
    "sequencer": ("l1_bridge", "isoroll"),
    "l1_bridge": ("isoroll",),
    "prover": ("sequencer.node", "sequencer.log", "l1_bridge", "isoroll"),
}
"""Package -> what it must not import (lower layers never reach up)."""

PURE = ("sequencer.core", "sequencer.executor", "prover")
TOOLS = ("prover.cli", "prover.vectors", "prover.fraud_vectors")
"""Command-line tools that live in a pure package: they may read files and
print; nothing in the package's library imports them."""

IO_MODULES = (
    "aiokafka", "kafka", "asyncio", "socket", "selectors", "ssl", "http", "urllib", "httpx", "requests",
    "starlette", "uvicorn", "websockets", "web3", "eth_tester", "subprocess", "multiprocessing", "threading",
    "concurrent", "os", "pathlib", "shutil", "tempfile", "glob", "io", "time", "datetime", "random", "secrets",
    "uuid", "signal", "sqlite3", "logging",
    "sequencer.node", "sequencer.log", "sequencer.cli", "sequencer.cli_trading", "sequencer.sdk",
    "sequencer.oracle", *TOOLS,
)
IO_CALLS = ("open", "print", "input")
MODULE_STRING = re.compile(r"^(sequencer|l1_bridge|prover|isoroll)(\.[A-Za-z_]\w*)*$")


def is_under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module of ``from {'.' * level}{name} import ...`` in ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def named_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Modules named as strings for a dynamic import: the argument of
    ``importlib.import_module``/``__import__``, or an entry of a tuple or list
    of module names (``EXTENSIONS = ("pkg.module", ...)``).  Logger names and
    topic names are plain strings, not module lists, and are left alone."""
    found = []
    for node in ast.walk(tree):
        candidates = []
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                candidates = [node.args[0]]
        elif isinstance(node, (ast.Tuple, ast.List)):
            candidates = node.elts
        for c in candidates:
            if isinstance(c, ast.Constant) and isinstance(c.value, str) and MODULE_STRING.match(c.value):
                found.append((c.lineno, c.value))
    return found


def get_imports(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, module) for every module this file imports or names for importlib."""
    return list(_imports(path.read_text(), str(path), module_name(root, path), path.name == "__init__.py"))


def get_calls(path: Path) -> list[tuple[int, str]]:
    return list(_calls(path.read_text(), str(path)))


# The scans are cached by the file's text (and what names it): the checker runs
# over the whole tree many times below, on a copy with one file edited each time.
@functools.lru_cache(maxsize=None)
def _imports(text: str, filename: str, module: str, is_package: bool) -> tuple[tuple[int, str], ...]:
    tree = ast.parse(text, filename)
    found = named_modules(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(module, is_package, node.level, node.module)
            found.append((node.lineno, base))
            # ``from sequencer import node`` imports the module sequencer.node
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return tuple(found)


@functools.lru_cache(maxsize=None)
def _calls(text: str, filename: str) -> tuple[tuple[int, str], ...]:
    tree = ast.parse(text, filename)
    return tuple((node.lineno, node.func.id) for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in IO_CALLS)


def find_violations(root: Path) -> list[str]:
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(root, path)
            imports = get_imports(root, path)
            for layer, forbidden in LAYERS.items():
                if not is_under(module, layer):
                    continue
                for line, name in imports:
                    if any(is_under(name, f) for f in forbidden):
                        out.append(f"{path.relative_to(root)}:{line}: {module} imports {name} "
                                   f"({layer} must not import {', '.join(forbidden)})")
            if any(is_under(module, p) for p in PURE) and not any(is_under(module, t) for t in TOOLS):
                for line, name in imports:
                    if any(is_under(name, io) for io in IO_MODULES):
                        out.append(f"{path.relative_to(root)}:{line}: {module} imports {name} "
                                   "(an I/O module in a pure layer)")
                for line, call in get_calls(path):
                    out.append(f"{path.relative_to(root)}:{line}: {module} calls {call}() (I/O in a pure layer)")
    return out


def test_the_layering_holds():
    violations = find_violations(REPO)
    assert violations == [], "\n".join(violations)


def test_the_checker_sees_every_package():
    seen = {module_name(REPO, p) for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    for module in ("sequencer.core.transition", "sequencer.executor.chain", "sequencer.node.node",
                   "l1_bridge.exit", "l1_bridge.api", "isoroll.service", "prover.tree"):
        assert module in seen


def test_resolve_relative_imports():
    assert resolve("sequencer.executor.chain", False, 1, "snapshot") == "sequencer.executor.snapshot"
    assert resolve("sequencer.executor.chain", False, 2, "node.api") == "sequencer.node.api"
    assert resolve("sequencer.executor", True, 1, "chain") == "sequencer.executor.chain"
    assert resolve("sequencer.executor.chain", False, 0, "aiokafka") == "aiokafka"


FORBIDDEN_EDITS = [
    # (file, line to append, what the report must name)
    ("sequencer/executor/chain.py", "import aiokafka\n", "sequencer.executor.chain imports aiokafka"),
    ("sequencer/core/state.py", "\ndef _peek():\n    import time\n    return time.time()\n",
     "sequencer.core.state imports time"),
    ("sequencer/executor/output.py", "from ..node import api\n", "sequencer.executor.output imports sequencer.node"),
    ("sequencer/core/encoding.py", "\ndef _dump(x):\n    print(x)\n", "sequencer.core.encoding calls print()"),
    ("sequencer/node/api.py", "from l1_bridge.proofs import escape_args\n",
     "sequencer.node.api imports l1_bridge.proofs"),
    ("sequencer/node/node.py", "EXTRA = ('l1_bridge.api',)\n", "sequencer.node.node imports l1_bridge.api"),
    ("sequencer/cli.py", "import importlib\nimportlib.import_module('isoroll.service')\n",
     "sequencer.cli imports isoroll.service"),
    ("l1_bridge/exit.py", "from isoroll import service\n", "l1_bridge.exit imports isoroll"),
    ("prover/tree.py", "from sequencer.log import kafka\n", "prover.tree imports sequencer.log"),
]


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layering")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.vy"))
    return root


@pytest.mark.parametrize("path, addition, expected", FORBIDDEN_EDITS, ids=[e[2] for e in FORBIDDEN_EDITS])
def test_the_checker_reports_a_forbidden_import(tree_copy, path, addition, expected):
    assert find_violations(tree_copy) == []  # pre: the copy is clean
    target = tree_copy / path
    original = target.read_text()
    target.write_text(original + addition)
    try:
        violations = find_violations(tree_copy)
    finally:
        target.write_text(original)
    assert any(expected in v for v in violations), violations
    assert find_violations(tree_copy) == []  # post: clean again


def test_docstrings_and_logger_names_may_name_other_packages(tree_copy):
    target = tree_copy / "sequencer/executor/output.py"
    original = target.read_text()
    target.write_text(original + '\nX = 1\n"""see l1_bridge.proofs and isoroll.service"""\n'
                                 'log_name = "isoroll.output"\n')
    try:
        assert find_violations(tree_copy) == []
    finally:
        target.write_text(original)


def test_importing_the_exit_kit_and_the_verifier_loads_no_kafka():
    """The runtime view of the same rule: what ``import`` actually pulls in."""
    code = ("import sys, l1_bridge.exit, l1_bridge.verifier, sequencer.executor.chain, "
            "sequencer.executor.snapshot, sequencer.executor.genesis, sequencer.executor.output\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('aiokafka', 'starlette', 'uvicorn')"
            " or m.startswith(('sequencer.node', 'sequencer.log', 'isoroll')))\n"
            "print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
