"""Shared fixtures.  Keep this small; test modules own their helpers."""
from __future__ import annotations

from pathlib import Path

import hypothesis  # noqa: F401
# Imported here, at collection time: imported lazily by hypothesis' pytest
# plugin at session end, CPython 3.11.7's compiler fails inside pytest's
# assertion rewriting ("AST constructor recursion depth mismatch").
import pytest

import early_start
import pyevm_gas

pytest_plugins = ("kafka_fixtures",)

pyevm_gas.install()  # eth_estimateGas on py-evm in ~2 runs of the transaction, not ~14; EVM runs with frame-stack room (tests/pyevm_gas.py)

from sequencer.core import eip712
from sequencer.core.hashing import keccak
from sequencer.core.presets import DEVNET

BRIDGE = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
"""verifyingContract of the test domain (the first contract anvil deploys)."""


def make_key(i: int) -> bytes:
    """A deterministic secp256k1 private key (never use outside tests)."""
    return keccak(b"isoroll test key %d" % i)


def pytest_collection_modifyitems(session, config, items):
    """The unit tests (tests/unit: no broker, no contract) run first and the
    three-node cluster's tests (tests/cluster) last: the broker, the cluster and
    the contracts' compilation start in the background meanwhile
    (pytest_collection_finish)."""
    tests = Path(__file__).resolve().parent

    def order(item) -> int:
        folder = Path(item.path).parent
        return 0 if folder == tests / "unit" else 2 if folder == tests / "cluster" else 1

    items[:] = sorted(items, key=order)


def pytest_collection_finish(session):
    """Start the Kafka broker and the cluster the collected tests need, and the
    compilation of the contracts, in the background (tests/early_start.py);
    their fixtures wait for those starts."""
    if not (session.config.option.collectonly or getattr(session.config.option, "setupplan", False)):
        early_start.launch_for(session.items)
        early_start.launch_precompile(session.items)


def pytest_sessionfinish(session):
    early_start.finish_unused()


@pytest.fixture(scope="session")
def keys() -> list[bytes]:
    return [make_key(i) for i in range(8)]


@pytest.fixture(scope="session")
def domain() -> eip712.Domain:
    return eip712.Domain(DEVNET.chain_id, BRIDGE)
