"""Compile the Vyper contracts in l1_bridge/contracts with the `vyper` package.

    abi, bytecode = compile_contract("bridge")      # or "bridge.vy"

`bytecode` is the deployment bytecode as a 0x-hex string.  Results are cached
in memory and on disk (``$ISOROLL_CACHE_DIR/vyper``, default
``~/.cache/isoroll/vyper``), keyed by a hash of the vyper version, the
settings and *every* source in the contracts directory (so a change to an
imported module such as ``smt.vy`` invalidates the contracts that import it).
Set ``ISOROLL_NO_COMPILE_CACHE=1`` to bypass the disk cache.

The EVM version defaults to ``cancun`` (portable to anvil and current L1s);
override with ``ISOROLL_EVM_VERSION`` or the ``evm_version`` argument.  A
``# pragma evm-version`` / ``# pragma optimize`` in a source wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from pathlib import Path

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
DEFAULT_EVM_VERSION = "cancun"

_lock = threading.Lock()
_memory: dict[str, tuple[list, str]] = {}


def _cache_dir() -> Path:
    base = os.environ.get("ISOROLL_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "isoroll"
    )
    return Path(base) / "vyper"


def contract_path(name: str, contracts_dir: Path | None = None) -> Path:
    d = Path(contracts_dir) if contracts_dir is not None else CONTRACTS_DIR
    if not name.endswith(".vy"):
        name = name + ".vy"
    p = d / name
    if not p.is_file():
        raise FileNotFoundError(f"no contract {name!r} in {d}")
    return p


def source_hash(name: str, *, evm_version: str | None = None, contracts_dir: Path | None = None) -> str:
    """The cache key: vyper version, settings, the contract and all sources
    next to it (imports)."""
    path = contract_path(name, contracts_dir)
    h = hashlib.sha256()
    h.update(f"vyper={_vyper_version()};evm={_evm_version(evm_version)};main={path.name}\n".encode())
    for p in sorted(path.parent.glob("*.vy*")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _vyper_version() -> str:
    """``vyper.__version__`` without importing the compiler (~0.25 s, which every
    `isoroll l1 ...` command paid to find its cached ABI): vyper takes it from
    the package metadata too."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("vyper")
    except PackageNotFoundError:
        import vyper
        return vyper.__version__


def _evm_version(evm_version: str | None) -> str:
    return evm_version or os.environ.get("ISOROLL_EVM_VERSION") or DEFAULT_EVM_VERSION


def _compile(path: Path, evm_version: str) -> tuple[list, str]:
    import vyper
    from vyper.compiler.input_bundle import FilesystemInputBundle
    from vyper.compiler.settings import OptimizationLevel, Settings

    source = path.read_text()
    kw = {}
    if not re.search(r"^#\s*pragma\s+evm-version", source, re.M):
        kw["evm_version"] = evm_version
    if not re.search(r"^#\s*pragma\s+optimize", source, re.M):
        kw["optimize"] = OptimizationLevel.GAS
    out = vyper.compile_code(
        source,
        contract_path=path.name,
        resolved_path=path,
        input_bundle=FilesystemInputBundle([path.parent]),
        settings=Settings(**kw),
        output_formats=["abi", "bytecode"],
    )
    bytecode = out["bytecode"]
    if not bytecode.startswith("0x"):
        bytecode = "0x" + bytecode
    return out["abi"], bytecode


def compile_contract(
    name: str, *, evm_version: str | None = None, contracts_dir: Path | None = None
) -> tuple[list, str]:
    """(abi, deployment bytecode as 0x-hex) of contracts/<name>.vy."""
    path = contract_path(name, contracts_dir)
    ev = _evm_version(evm_version)
    key = source_hash(name, evm_version=ev, contracts_dir=contracts_dir)
    with _lock:
        hit = _memory.get(key)
        if hit is not None:
            return hit
        use_disk = not os.environ.get("ISOROLL_NO_COMPILE_CACHE")
        cache_file = _cache_dir() / f"{path.stem}-{key[:32]}.json"
        if use_disk and cache_file.is_file():
            try:
                data = json.loads(cache_file.read_text())
                result = (data["abi"], data["bytecode"])
                _memory[key] = result
                return result
            except (OSError, ValueError, KeyError):
                pass
        result = _compile(path, ev)
        _memory[key] = result
        if use_disk:
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".tmp")
                with os.fdopen(fd, "w") as f:
                    json.dump({"abi": result[0], "bytecode": result[1]}, f)
                os.replace(tmp, cache_file)
            except OSError:
                pass
        return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="compile an isoroll Vyper contract")
    ap.add_argument("name")
    ap.add_argument("--evm-version")
    ap.add_argument("--abi", action="store_true", help="print the ABI instead of the bytecode")
    a = ap.parse_args(argv)
    abi, bytecode = compile_contract(a.name, evm_version=a.evm_version)
    print(json.dumps(abi, indent=1) if a.abi else bytecode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
