"""records.vy (through records_harness.vy) on py-evm against the shared vectors
written by prover/fraud_vectors.py: the records root derived from posted data,
openings of one item (good and bad), malformed data, and the frontier."""
from __future__ import annotations

import json

import pytest

from prover import fraud_vectors
from prover.records import Frontier
from prover.hashing import keccak

pytestmark = pytest.mark.evm

VECTORS = json.loads(fraud_vectors.RECORDS_PATH.read_text())


def b(s: str) -> bytes:
    return bytes.fromhex(s[2:])


@pytest.fixture(scope="module")
def harness(deploy):
    return deploy("records_harness")


@pytest.mark.parametrize("entry", VECTORS["lists"], ids=lambda e: f"n{e['count']}")
def test_derived_root_and_openings(harness, entry):
    ok, root, count = harness.functions.derive_root(b(entry["data"])).call()
    assert ok and root == b(entry["root"]) and count == entry["count"]
    for o in entry["openings"]:
        got = harness.functions.verify_item(root, o["count"], b(o["item"]), o["index"],
                                            [b(s) for s in o["siblings"]]).call()
        assert got is o["expect"], o


@pytest.mark.parametrize("entry", VECTORS["bad_data"], ids=lambda e: e["name"])
def test_bad_data_does_not_derive(harness, entry):
    assert harness.functions.derive_root(b(entry["data"])).call() == [False, b"\x00" * 32, 0]


def test_frontier_matches_python(harness):
    leaves = [keccak(i.to_bytes(4, "big")) for i in range(300)]
    for n in (0, 1, 2, 3, 5, 8, 9, 64, 100, 300):
        frontier = Frontier()
        for leaf in leaves[:n]:
            frontier = frontier.push_hash(leaf)
        assert harness.functions.frontier_root(leaves[:n]).call() == frontier.root()
