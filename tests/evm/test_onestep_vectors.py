"""onestep.vy on py-evm against the shared one-step vectors written by
prover/fraud_vectors.py (prover/trace.py computed each expected post-state):
every record kind with a one-step (the account kinds, and the perps kinds
through onestep_perps.vy), valid and refused, and the block items."""
from __future__ import annotations

import json
import re

import pytest

from l1_bridge.compile import CONTRACTS_DIR
from prover import fraud_vectors
from prover.families import resolve_family_args
from prover.records import KNOWN_TAGS, ONESTEP_TAGS, PENDING_TAGS

pytestmark = pytest.mark.evm

VECTORS = json.loads(fraud_vectors.ONESTEP_PATH.read_text())


def b(s: str) -> bytes:
    return bytes.fromhex(s[2:])


def ctx_arg(c: list) -> tuple:
    return (c[0], c[1], c[2], (c[3][0], [b(x) for x in c[3][1]]))


def opening_arg(o: list) -> tuple:
    present, value, (bitmap, siblings, other_key, other_value_hash) = o[:3]
    sibling = b(o[3]) if len(o) > 3 else b""  # a deletion's deepest sibling preimage
    return (present, b(value), (int(bitmap, 16), [b(s) for s in siblings], b(other_key), b(other_value_hash)),
            sibling)


def call_apply(onestep, case: dict):
    return onestep.functions.apply(b(case["state_root"]), ctx_arg(case["ctx"]), b(case["item"]),
                                   [opening_arg(o) for o in case["openings"]], case["nonces"]).call()


@pytest.fixture(scope="module")
def onestep(deploy):
    p = VECTORS["params"]
    params, markets = (b(p[0]), p[1], p[2], p[3]), [tuple(m) for m in VECTORS["markets"]]
    deployed, routes = {}, []
    for name, tags, extras in VECTORS["families"]:
        deployed[name] = deploy(name, *params, markets, *resolve_family_args(extras, deployed)).address
        routes.append((deployed[name], tags))
    return deploy("onestep", *params, routes)


def test_vectors_are_current():
    assert fraud_vectors.targets()[fraud_vectors.ONESTEP_PATH] == fraud_vectors.ONESTEP_PATH.read_text()


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_case(onestep, case):
    root, ctx, ok = call_apply(onestep, case)
    assert root == b(case["post_state_root"])
    assert onestep.functions.ctx_hash(ctx).call() == b(case["post_ctx_hash"])
    assert ok is case["ok"]


def test_a_wrong_witness_reverts(onestep):
    case = next(c for c in VECTORS["cases"] if c["name"] == "transfer")
    bad = dict(case, openings=[case["openings"][0]])  # the receiver's opening left out
    with pytest.raises(Exception, match="missing opening"):
        call_apply(onestep, bad)
    o = case["openings"][0]
    forged = [o[0], "0x" + "ff" * 32 + o[1][66:], o[2]]  # the sender's collateral inflated
    with pytest.raises(Exception, match="bad opening"):
        call_apply(onestep, dict(case, openings=[forged, case["openings"][1]]))


@pytest.mark.parametrize("tag", sorted(PENDING_TAGS))
def test_pending_kinds_revert(onestep, tag):
    case = next(c for c in VECTORS["cases"] if c["name"] == "noop")
    with pytest.raises(Exception, match="pending"):
        call_apply(onestep, dict(case, item="0x02%02x" % tag + "00" * 40))


def test_onestep_tags_are_the_python_ones(onestep):
    """onestep.vy's KNOWN_TAGS is prover.records.KNOWN_TAGS, and the tags it
    routes to family contracts are exactly ONESTEP_TAGS less its own kinds:
    a kind the Python side calls pending reverts pending on L1 and no other."""
    source = (CONTRACTS_DIR / "onestep.vy").read_text()
    listed = re.search(r"^KNOWN_TAGS: constant\(uint256\[\d+\]\) = \[([^\]]*)\]", source, re.M).group(1)
    assert {int(t) for t in listed.split(",")} == set(KNOWN_TAGS)
    routed = {tag for tag in KNOWN_TAGS if int(onestep.functions.route(tag).call(), 16)}
    assert routed == set(ONESTEP_TAGS) - {1, 2, 48, 49}
    assert {tag for _, tags, _ in VECTORS["families"] for tag in tags} == routed
