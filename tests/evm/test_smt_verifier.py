"""The Vyper verifier (l1_bridge/contracts/smt.vy, through smt_harness.vy) on
py-evm against the shared vectors written by prover/vectors.py, plus gas."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from prover.hashing import EMPTY, keccak
from prover.keys import ACCOUNT, POSITION, compute_key
from prover.tree import SparseMerkleTree, verify_exclusion, verify_inclusion

pytestmark = pytest.mark.evm

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "smt_vectors.json").read_text())


def b(s):
    return EMPTY if s is None else bytes.fromhex(s[2:])


def smt_proof(e) -> tuple:
    return (int(e["bitmap"], 16), [b(s) for s in e["siblings"]], b(e.get("other_key")), b(e.get("other_value_hash")))


def call_entry(h, e) -> bool:
    if e["kind"] == "inclusion":
        proof = smt_proof(e)
        return h.functions.verify(b(e["root"]), b(e["key"]), b(e["value_hash"]), proof).call()
    return h.functions.verify_exclusion(b(e["root"]), b(e["key"]), smt_proof(e)).call()


@pytest.fixture(scope="module")
def harness(deploy):
    return deploy("smt_harness")


def test_tree_vectors(harness):
    n = 0
    for case in VECTORS["trees"]:
        for e in case["proofs"]:
            assert call_entry(harness, e) is e["expect"], (case["name"], e["key"])
            n += 1
    assert n > 50


def test_inclusion_with_value_bytes(harness):
    for case in VECTORS["trees"]:
        for e in case["proofs"]:
            if e["kind"] == "inclusion" and e["expect"]:
                assert harness.functions.verify_value(b(e["root"]), b(e["key"]), b(e["value"]), smt_proof(e)).call()


@pytest.mark.parametrize("attack", VECTORS["attacks"], ids=lambda a: a["name"])
def test_attack_vectors(harness, attack):
    assert call_entry(harness, attack) is attack["expect"]


def test_leaf_hash_matches(harness):
    k, vh = keccak(b"k"), keccak(b"v")
    assert harness.functions.leaf_hash(k, vh).call() == keccak(b"\x00" + k + vh)


def test_output_roots(harness):
    for o in VECTORS["output_roots"]:
        f = o["fields"]
        got = harness.functions.output_root(
            f["version"], b(f["state_root"]), b(f["withdrawals_root"]), b(f["last_block_hash"]),
            f["inbox_count"], b(f["inbox_hash"]), b(f["data_hash"]),
        ).call()
        assert got == b(o["root"])


def test_withdrawal_vectors(harness):
    n = 0
    for case in VECTORS["withdrawals"]:
        for e in case["proofs"]:
            got = harness.functions.verify_withdrawal(
                b(case["root"]), b(e["withdrawal_hash"]), e["index"], [b(s) for s in e["siblings"]]
            ).call()
            assert got is e["expect"], (len(case["withdrawals"]), e)
            n += 1
    assert n > 30


def test_exclusion_field_in_inclusion_rejected(harness):
    """verify() refuses a proof that carries an exclusion leaf."""
    case = next(c for c in VECTORS["trees"] if c["name"] == "typed")
    e = next(p for p in case["proofs"] if p["kind"] == "inclusion")
    bitmap, sibs, _, _ = smt_proof(e)
    assert harness.functions.verify(b(e["root"]), b(e["key"]), b(e["value_hash"]), (bitmap, sibs, b(e["key"]), EMPTY)).call() is False


def test_random_tampering_agrees_with_python(harness):
    """Flip random bits of valid proofs: Python and Vyper give the same answer."""
    rnd = random.Random(4)
    case = next(c for c in VECTORS["trees"] if c["name"] == "random1000")
    for e in case["proofs"][:12]:
        root, key = b(e["root"]), b(e["key"])
        bitmap, sibs, ok, ovh = smt_proof(e)
        for _ in range(3):
            what = rnd.randrange(4)
            bm, ss, k2 = bitmap, list(sibs), key
            if what == 0 and ss:
                i = rnd.randrange(len(ss))
                ss[i] = bytes(x ^ (1 if j == 5 else 0) for j, x in enumerate(ss[i]))
            elif what == 1:
                bm ^= 1 << rnd.randrange(max(1, bm.bit_length() + 1))
            elif what == 2:
                k2 = bytes([key[0] ^ (1 << rnd.randrange(8))]) + key[1:]
            else:
                ss = ss[:-1]
            if e["kind"] == "inclusion":
                vh = b(e["value_hash"])
                py = verify_inclusion(root, k2, vh, bm, ss)
                evm = harness.functions.verify(root, k2, vh, (bm, ss, EMPTY, EMPTY)).call()
            else:
                py = verify_exclusion(root, k2, bm, ss, None if ok == EMPTY else ok, None if ovh == EMPTY else ovh)
                evm = harness.functions.verify_exclusion(root, k2, (bm, ss, ok, ovh)).call()
            assert py == evm


def _calldata_gas(data: bytes) -> int:
    return sum(4 if x == 0 else 16 for x in data)


def measure_account_position_gas(harness, n_accounts: int, seed: int = 1) -> dict:
    """Gas of verifying an account + one position proof in a tree of
    n_accounts accounts each with one position (2 * n_accounts leaves)."""
    rnd = random.Random(seed)
    t = SparseMerkleTree()
    changes = {}
    addrs = [rnd.randbytes(20) for _ in range(n_accounts)]
    for a in addrs:
        changes[compute_key(ACCOUNT, a)] = rnd.randbytes(64)
        changes[compute_key(POSITION, a, (1).to_bytes(4, "big"))] = rnd.randbytes(128)
    t.update(changes)
    a = addrs[0]
    ka, kp = compute_key(ACCOUNT, a), compute_key(POSITION, a, (1).to_bytes(4, "big"))
    pa, pp = t.prove(ka), t.prove(kp)
    fn = harness.functions.verify_account_and_position(
        t.root, ka, pa.value, (pa.bitmap, list(pa.siblings), EMPTY, EMPTY),
        kp, pp.value, (pp.bitmap, list(pp.siblings), EMPTY, EMPTY),
    )
    assert fn.call() is True
    total = fn.estimate_gas()
    data = bytes.fromhex(fn._encode_transaction_data()[2:])
    intrinsic = 21000 + _calldata_gas(data)
    return {
        "leaves": len(t),
        "depths": (pa.depth, pp.depth),
        "siblings": (len(pa.siblings), len(pp.siblings)),
        "total_gas": total,
        "calldata_bytes": len(data),
        "execution_gas": total - intrinsic,
    }


def test_gas_account_and_position_small(harness):
    g = measure_account_position_gas(harness, 2000)
    print("gas (4,000 leaves):", g)
    assert g["execution_gas"] < 60_000


def test_fold_matches_python_at_every_depth(harness):
    """bit_length and the fold loop at the edges: depths 0..256."""
    from prover.tree import fold_path

    key = keccak(b"edge-key")
    terminal = keccak(b"terminal")
    for top in (0, 1, 2, 7, 8, 63, 64, 127, 128, 255):
        bitmap = (1 << top) | (1 << (top // 2)) | (top & 1)
        sibs = [keccak(bytes([i])) for i in range(bitmap.bit_count())]
        ok, root = harness.functions.compute_root(key, terminal, bitmap, sibs).call()
        assert ok and root == fold_path(key, terminal, bitmap, sibs), top
        if top < 64:
            # one sibling short / one too many: not well-formed
            assert harness.functions.compute_root(key, terminal, bitmap, sibs[:-1]).call()[0] is False
            assert harness.functions.compute_root(key, terminal, bitmap, sibs + [terminal]).call()[0] is False
    ok, root = harness.functions.compute_root(key, terminal, 0, []).call()
    assert ok and root == terminal


def test_a_leaf_deeper_than_the_sibling_bound_is_still_provable(harness):
    """The proof's array holds the non-empty siblings (at most MAX_SIBLINGS,
    128), the fold runs to the leaf's depth (up to 256): two keys sharing a
    250-bit prefix (what a birthday search buys an attacker: depth, not
    siblings) sit at depth 251 with a handful of siblings, and both verify,
    present and absent, against the same root as the Python tree."""
    tree = SparseMerkleTree()
    for i in range(40):
        tree.set(keccak(b"filler%d" % i), b"v%d" % i)
    base = keccak(b"deep")
    twin = (int.from_bytes(base, "big") ^ 0b100000).to_bytes(32, "big")  # differs in bit 250
    tree.set(base, b"a")
    tree.set(twin, b"b")
    for key, value in ((base, b"a"), (twin, b"b")):
        p = tree.prove(key)
        assert p.bitmap.bit_length() == 251 and len(p.siblings) < 20
        proof = (p.bitmap, list(p.siblings), b"\x00" * 32, b"\x00" * 32)
        assert harness.functions.verify(tree.root, key, keccak(value), proof).call()
    absent = (int.from_bytes(base, "big") ^ 1).to_bytes(32, "big")  # shares 255 bits with base
    p = tree.prove(absent)
    proof = (p.bitmap, list(p.siblings), p.other_key or b"\x00" * 32, p.other_value_hash or b"\x00" * 32)
    assert harness.functions.verify_exclusion(tree.root, absent, proof).call()
    with pytest.raises(Exception):  # more non-empty siblings than the bound: not even decoded
        harness.functions.verify(tree.root, base, keccak(b"a"), (p.bitmap, [base] * 129, b"\x00" * 32,
                                                                   b"\x00" * 32)).call()
