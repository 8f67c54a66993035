"""prover (tree, codec, keys, output): the tree against the shared vectors, encodings, snapshots,
output root, withdrawals tree, typed keys, and the attacks."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

from prover import codec, hashing, keys, output, tree
from prover.codec import Proof, ProofError, WithdrawalProof
from prover.hashing import EMPTY, keccak, leaf_hash, node_hash
from prover.keys import (ACCOUNT, GLOBAL, GLOBAL_KEY, MARKET, ORDER, POSITION, compute_key, get_account_key,
                         get_market_key, get_order_key, get_position_key)
from prover.output import (compute_output_root, compute_withdrawals_root, prove_withdrawal, verify_withdrawal_proof,
                           withdrawal_leaf, withdrawal_proofs)
from prover.tree import (EMPTY_ROOT, SparseMerkleTree, compute_root_from_proof, reference_root, verify_exclusion,
                         verify_inclusion, verify_proof)

VECTORS_FILE = Path(__file__).resolve().parent.parent / "vectors" / "smt_vectors.json"
VECTORS = json.loads(VECTORS_FILE.read_text())


def b(s):
    return None if s is None else bytes.fromhex(s[2:])


# ---------------------------------------------------------------- vectors


def test_vectors_file_is_current():
    """The committed vectors are exactly what prover/vectors.py generates
    (regenerate with `python -m prover.vectors`)."""
    from prover import vectors

    assert VECTORS_FILE.read_text() == vectors.render()


@pytest.mark.parametrize("case", VECTORS["trees"], ids=lambda c: c["name"])
def test_tree_vectors(case):
    entries = {b(k): b(v) for k, v in case["entries"]}
    t = SparseMerkleTree()
    t.update(entries)
    assert t.root == b(case["root"]) == reference_root(entries)
    assert len(t) == case["count"]
    for e in case["proofs"]:
        p = t.prove(b(e["key"]))
        assert p.encode() == b(e["encoded"])
        assert Proof.decode(b(e["encoded"])) == p
        assert (p.value is not None) == (e["kind"] == "inclusion")
        assert p.value == b(e["value"])
        assert "0x%064x" % p.bitmap == e["bitmap"]
        assert [s.hex() for s in p.siblings] == [s[2:] for s in e["siblings"]]
        assert verify_proof(t.root, p) is e["expect"]
        assert verify_proof(t.root, p, allow_empty_root=True) is True
        if e["kind"] == "inclusion":
            assert verify_inclusion(t.root, p.key, b(e["value_hash"]), p.bitmap, p.siblings) is e["expect"]
        else:
            assert verify_exclusion(t.root, p.key, p.bitmap, p.siblings, p.other_key, p.other_value_hash) is e["expect"]


def test_update_vectors():
    t = SparseMerkleTree()
    for batch in VECTORS["updates"]["batches"]:
        if batch["changes"] == "delete-all":
            t.update({k: None for k, _ in list(t.items())})
        else:
            t.update({b(k): b(v) for k, v in batch["changes"]})
        assert t.root == b(batch["root"])
        assert len(t) == batch["count"]
    assert t.root == EMPTY_ROOT and len(t) == 0


@pytest.mark.parametrize("attack", VECTORS["attacks"], ids=lambda a: a["name"])
def test_attack_vectors(attack):
    a = attack
    sibs = [b(s) for s in a["siblings"]]
    bitmap = int(a["bitmap"], 16)
    if a["kind"] == "inclusion":
        got = verify_inclusion(b(a["root"]), b(a["key"]), b(a["value_hash"]), bitmap, sibs)
    else:
        got = verify_exclusion(b(a["root"]), b(a["key"]), bitmap, sibs, b(a["other_key"]), b(a["other_value_hash"]))
    assert got is a["expect"]


def test_output_root_vectors():
    for o in VECTORS["output_roots"]:
        f = o["fields"]
        r = compute_output_root(
            f["version"], b(f["state_root"]), b(f["withdrawals_root"]), b(f["last_block_hash"]),
            f["inbox_count"], b(f["inbox_hash"]), b(f["data_hash"]),
        )
        assert r == b(o["root"])


def test_withdrawal_vectors():
    for case in VECTORS["withdrawals"]:
        ws = [b(w) for w in case["withdrawals"]]
        assert compute_withdrawals_root(ws) == b(case["root"])
        for e in case["proofs"]:
            p = WithdrawalProof(b(e["withdrawal_hash"]), e["index"], tuple(b(s) for s in e["siblings"]))
            assert verify_withdrawal_proof(b(case["root"]), p) is e["expect"], e


def test_key_vectors():
    for k in VECTORS["keys"]:
        assert compute_key(k["kind"], *[b(p) for p in k["parts"]]) == b(k["key"])


# ---------------------------------------------------------------- tree basics


def test_empty_tree():
    t = SparseMerkleTree()
    assert t.root == EMPTY_ROOT == bytes(32)
    assert len(t) == 0
    assert t.get(bytes(32)) is None
    p = t.prove(keccak(b"x"))
    assert p.value is None and p.other_key is None and p.bitmap == 0 and p.siblings == ()
    assert not verify_proof(t.root, p)  # nothing verifies against the empty root
    assert verify_proof(t.root, p, allow_empty_root=True)
    assert t.update({}) == EMPTY_ROOT


def test_single_leaf_root_is_leaf_hash():
    t = SparseMerkleTree()
    k = keccak(b"k")
    assert t.update({k: b"v"}) == leaf_hash(k, keccak(b"v"))
    p = t.prove(k)
    assert p.depth == 0 and p.siblings == () and verify_proof(t.root, p)


def test_two_leaves_structure():
    k0 = bytes(32)
    k1 = b"\x80" + bytes(31)
    t = SparseMerkleTree()
    t.update({k0: b"a", k1: b"b"})
    assert t.root == node_hash(leaf_hash(k0, keccak(b"a")), leaf_hash(k1, keccak(b"b")))
    # sharing the first bit: one single-child level above the split
    k2 = b"\x40" + bytes(31)
    t2 = SparseMerkleTree()
    t2.update({k0: b"a", k2: b"c"})
    inner = node_hash(leaf_hash(k0, keccak(b"a")), leaf_hash(k2, keccak(b"c")))
    assert t2.root == node_hash(inner, EMPTY)


def test_get_set_delete_len():
    t = SparseMerkleTree()
    keys = [keccak(bytes([i])) for i in range(50)]
    t.update({k: k[:3] for k in keys})
    assert len(t) == 50
    assert all(t.get(k) == k[:3] for k in keys)
    assert keys[0] in t and keccak(b"nope") not in t
    t.delete(keys[0])
    t.update({keys[1]: None, keccak(b"never"): None})
    assert len(t) == 48 and t.get(keys[0]) is None
    t.set(keys[2], b"")
    assert t.get(keys[2]) == b""  # empty bytes are a value, not a delete
    assert len(t) == 48
    assert sorted(k for k, _ in t.items()) == sorted(keys[2:])


def test_same_value_update_keeps_root():
    t = SparseMerkleTree()
    t.update({keccak(b"a"): b"1", keccak(b"b"): b"2"})
    r = t.root
    assert t.update({keccak(b"a"): b"1"}) == r


def test_order_and_batching_independent():
    rnd = random.Random(5)
    entries = {rnd.randbytes(32): rnd.randbytes(8) for _ in range(500)}
    t1 = SparseMerkleTree()
    t1.update(entries)
    t2 = SparseMerkleTree()
    items = list(entries.items())
    rnd.shuffle(items)
    for i in range(0, len(items), 37):
        t2.update(dict(items[i : i + 37]))
    t3 = SparseMerkleTree()
    for k, v in reversed(items):
        t3.set(k, v)
    assert t1.root == t2.root == t3.root == reference_root(entries)


def test_keys_validated():
    t = SparseMerkleTree()
    with pytest.raises(ValueError):
        t.update({b"short": b"v"})
    with pytest.raises(TypeError):
        t.update({bytes(32): "str"})
    with pytest.raises(TypeError):
        t.get("x" * 32)
    t.update({bytes(32): bytearray(b"v")})
    assert t.get(bytearray(32)) == b"v"


def test_copy_is_independent_and_keeps_old_root():
    t = SparseMerkleTree()
    t.update({keccak(b"a"): b"1"})
    old = t.copy()
    t.update({keccak(b"a"): b"2", keccak(b"b"): b"3"})
    assert old.get(keccak(b"a")) == b"1" and len(old) == 1
    assert verify_proof(old.root, old.prove(keccak(b"a")))
    assert old.root != t.root


# ---------------------------------------------------------------- proofs


def _tree(n=300, seed=3):
    rnd = random.Random(seed)
    t = SparseMerkleTree()
    entries = {rnd.randbytes(32): rnd.randbytes(rnd.randint(0, 50)) for _ in range(n)}
    t.update(entries)
    return t, entries


def test_proof_encodings_roundtrip():
    t, entries = _tree()
    rnd = random.Random(1)
    for k in list(entries)[:40] + [rnd.randbytes(32) for _ in range(40)]:
        p = t.prove(k)
        assert Proof.decode(p.encode()) == p
        assert Proof.from_json(p.to_json()) == p
        obj = json.loads(p.to_json())
        assert obj["depth"] == p.depth == p.bitmap.bit_length()
        assert len(p.encode()) == 65 + 32 * len(p.siblings) + (
            4 + len(p.value) if p.value is not None else (64 if p.other_key else 0)
        )
        assert compute_root_from_proof(p) == t.root


def test_both_exclusion_kinds_occur():
    t, _ = _tree(200)
    rnd = random.Random(9)
    kinds = set()
    for _ in range(300):
        p = t.prove(rnd.randbytes(32))
        assert p.value is None and verify_proof(t.root, p)
        kinds.add(p.other_key is None)
    assert kinds == {True, False}


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 10, b"\x07" + bytes(64), b"\x00" + bytes(32) + b"\x00" * 31 + b"\x01", b"\x01" + bytes(64) + b"x"],
)
def test_decode_rejects_malformed(data):
    with pytest.raises(ProofError):
        Proof.decode(data)


def test_decode_rejects_bad_value_length():
    t, entries = _tree(20)
    enc = t.prove(next(iter(entries))).encode()
    with pytest.raises(ProofError):
        Proof.decode(enc + b"x")
    with pytest.raises(ProofError):
        Proof.decode(enc[:-1] if len(enc) > 69 else enc[:-5])


def test_python_attacks():
    t, entries = _tree(400)
    keys = list(entries)
    k = keys[0]
    p = t.prove(k)
    root = t.root
    assert verify_proof(root, p)
    # wrong value
    assert not verify_proof(root, Proof(k, p.value + b"x", p.bitmap, p.siblings))
    # different key
    assert not verify_proof(root, Proof(keys[1], p.value, p.bitmap, p.siblings))
    # truncated
    top = p.bitmap.bit_length() - 1
    assert not verify_proof(root, Proof(k, p.value, p.bitmap ^ (1 << top), p.siblings[1:]))
    assert not verify_proof(root, Proof(k, p.value, p.bitmap, p.siblings[:-1]))
    # forged exclusion of a present key (its slot claimed empty)
    assert not verify_proof(root, Proof(k, None, p.bitmap, p.siblings))
    # forged exclusion naming a real but off-path leaf
    far = next(x for x in keys if x[0] >> 7 != k[0] >> 7)
    assert not verify_proof(root, Proof(k, None, p.bitmap, p.siblings, far, keccak(entries[far])))
    # internal node as a leaf: the root's children as key/value_hash
    node = t._root
    assert node_hash(node.lh, node.rh) == root
    assert not verify_inclusion(root, node.lh, node.rh, 0, ())
    assert not verify_exclusion(root, keccak(b"z"), 0, (), node.lh, node.rh)
    # empty root
    assert not verify_proof(EMPTY_ROOT, Proof(k, None, 0, ()))
    assert not verify_proof(EMPTY_ROOT, Proof(k, b"", 0, ()))
    # malformed values never raise
    assert not verify_proof(b"short", p)
    assert not verify_proof(root, Proof(k, p.value, -1, p.siblings))
    assert not verify_proof(root, Proof(k, p.value, 1 << 256, p.siblings))
    assert not verify_proof(root, Proof(b"short", p.value, p.bitmap, p.siblings))
    assert not verify_proof(root, Proof(k, p.value, p.bitmap, p.siblings, k, EMPTY))
    assert not verify_inclusion(root, k, keccak(p.value), p.bitmap, list(p.siblings) + [EMPTY])


# ---------------------------------------------------------------- snapshots


def test_snapshot_roundtrip_and_verify():
    t, entries = _tree(500)
    data = t.to_bytes()
    t2 = SparseMerkleTree.from_bytes(data, verify=True)
    assert t2.root == t.root and len(t2) == len(t)
    assert dict(t2.items()) == entries
    f = io.BytesIO()
    t.dump(f)
    f.seek(0)
    t3 = SparseMerkleTree.load(f)
    assert t3.root == t.root
    # the loaded tree keeps working
    k = next(iter(entries))
    t3.update({k: None, keccak(b"new"): b"n"})
    t.update({k: None, keccak(b"new"): b"n"})
    assert t3.root == t.root
    empty = SparseMerkleTree.from_bytes(SparseMerkleTree().to_bytes(), verify=True)
    assert empty.root == EMPTY_ROOT and len(empty) == 0


def test_snapshot_corruption_detected():
    t, _ = _tree(100)
    data = bytearray(t.to_bytes())
    with pytest.raises(ProofError):
        SparseMerkleTree.from_bytes(b"nope" + bytes(60))
    bad_root = bytearray(data)
    bad_root[30] ^= 1
    with pytest.raises(ProofError):
        SparseMerkleTree.from_bytes(bytes(bad_root))
    with pytest.raises(ProofError):
        SparseMerkleTree.from_bytes(bytes(data[:-7]))
    # a flipped byte deep inside: caught by the checksum
    deep = bytearray(data)
    deep[len(deep) // 2] ^= 0x01
    with pytest.raises(ProofError):
        SparseMerkleTree.from_bytes(bytes(deep))


# ---------------------------------------------------------------- keys, outputs, withdrawals


def test_typed_keys():
    addr = bytes(range(20))
    assert get_account_key(addr) == compute_key(ACCOUNT, addr) == keccak(b"\x01" + addr)
    assert get_position_key(addr, 7) == keccak(b"\x02" + addr + (7).to_bytes(4, "big"))
    assert get_order_key(addr, 9) == keccak(b"\x03" + addr + (9).to_bytes(8, "big"))
    assert get_market_key(7) == keccak(b"\x04" + (7).to_bytes(4, "big"))
    assert GLOBAL_KEY == compute_key(GLOBAL, b"globals") == keccak(b"\x05globals")
    assert (ACCOUNT, POSITION, ORDER, MARKET, GLOBAL) == (1, 2, 3, 4, 5)
    with pytest.raises(ValueError):
        get_account_key(b"short")


def test_output_root_is_abi_encoding():
    words = [(1).to_bytes(32, "big"), keccak(b"s"), keccak(b"w"), keccak(b"b"), (5).to_bytes(32, "big"), keccak(b"i"), keccak(b"d")]
    r = compute_output_root(1, words[1], words[2], words[3], 5, words[5], words[6])
    assert r == keccak(b"".join(words))
    with pytest.raises(ValueError):
        compute_output_root(-1, *words[1:4], 5, *words[5:])
    with pytest.raises(ValueError):
        compute_output_root(0, b"short", *words[2:4], 5, *words[5:])


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 7, 9, 33])
def test_withdrawals_tree(n):
    ws = [keccak(bytes([i])) * 3 for i in range(n)]
    root, proofs = withdrawal_proofs(ws)
    assert root == compute_withdrawals_root(ws)
    if n == 0:
        assert root == EMPTY
    if n == 1:
        assert root == withdrawal_leaf(keccak(ws[0]))
    for i, p in enumerate(proofs):
        assert p == prove_withdrawal(ws, i)
        assert len(p.siblings) == (n - 1).bit_length()
        assert verify_withdrawal_proof(root, p)
        assert WithdrawalProof.from_json(p.to_json()) == p
        assert not verify_withdrawal_proof(root, WithdrawalProof(p.withdrawal_hash, i ^ 1, p.siblings)) or n == 1
        assert not verify_withdrawal_proof(root, WithdrawalProof(keccak(b"x"), i, p.siblings))
    # padding leaves (zero) can never be proven as withdrawals
    if n and n & (n - 1):
        pad = WithdrawalProof(EMPTY, n, proofs[0].siblings)
        assert not verify_withdrawal_proof(root, pad)
    with pytest.raises(IndexError):
        prove_withdrawal(ws, n)


@pytest.mark.parametrize("module", [codec, hashing, keys, output, tree], ids=lambda m: m.__name__)
def test_prover_module_is_pure(module):
    src = Path(module.__file__).read_text()
    for banned in ("import os", "import time", "import socket", "open(", "import datetime", "import random"):
        assert banned not in src


def test_copy_on_write_both_sides():
    """copy() shares nodes; both trees then diverge without touching each
    other (generation-based copy-on-write), also after a snapshot load."""
    rnd = random.Random(11)
    base = {rnd.randbytes(32): rnd.randbytes(4) for _ in range(300)}
    a = SparseMerkleTree()
    a.update(base)
    ref_a = dict(base)
    for round_ in range(4):
        b_tree = a.copy() if round_ % 2 == 0 else SparseMerkleTree.from_bytes(a.to_bytes())
        ref_b = dict(ref_a)
        for step in range(5):
            for tree, ref in ((a, ref_a), (b_tree, ref_b)):
                ch = {}
                for k in rnd.sample(sorted(ref), 20):
                    ch[k] = None if rnd.random() < 0.3 else rnd.randbytes(4)
                for _ in range(10):
                    ch[rnd.randbytes(32)] = rnd.randbytes(4)
                tree.update(ch)
                for k, v in ch.items():
                    if v is None:
                        ref.pop(k, None)
                    else:
                        ref[k] = v
            assert a.root == reference_root(ref_a) and len(a) == len(ref_a)
            assert b_tree.root == reference_root(ref_b) and len(b_tree) == len(ref_b)
        c = b_tree.copy()
        c.update({next(iter(ref_b)): None})
        assert b_tree.root == reference_root(ref_b)


def test_compact_keeps_tree_and_copies_apart():
    t, entries = _tree(300)
    old = t.copy()
    old_root = old.root
    t.compact()
    assert t.root == old_root and dict(t.items()) == entries
    k = next(iter(entries))
    t.update({k: b"changed", keccak(b"new"): b"n"})
    entries[k] = b"changed"
    entries[keccak(b"new")] = b"n"
    assert t.root == reference_root(entries)
    assert old.root == old_root and verify_proof(old_root, old.prove(k))
