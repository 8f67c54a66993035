"""Leaf deletion in the compacted tree: the Vyper ``smt.delete_root`` (through
smt_harness.vy) against the Python tree (``SparseMerkleTree.delete``) and its
twin ``prover.tree.compute_root_after_delete``, over random trees, and the
attacker's witnesses (a wrong shape, key or value for the deepest sibling)
that must not give a root."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from prover.codec import ProofError
from prover.hashing import EMPTY, LEAF_PREFIX, NODE_PREFIX, keccak, leaf_hash, node_hash
from prover.keys import ACCOUNT, POSITION, compute_key
from prover.tree import SparseMerkleTree, compute_root_after_delete

pytestmark = pytest.mark.evm


@pytest.fixture(scope="module")
def harness(deploy):
    return deploy("smt_harness")


def evm_delete(harness, tree: SparseMerkleTree, key: bytes, sibling: bytes | None = None):
    """(ok, root after) of the Vyper deletion of ``key`` with its proof
    verified against the tree's root; ``sibling`` overrides the witness."""
    p = tree.prove(key)
    pre = tree.deletion_sibling(key) if sibling is None else sibling
    proof = (p.bitmap, list(p.siblings), EMPTY, EMPTY)
    ok, root, _ = harness.functions.gas_delete(tree.root, key, keccak(p.value), proof, pre).call()
    return ok, root


def python_delete(tree: SparseMerkleTree, key: bytes, sibling: bytes | None = None):
    p = tree.prove(key)
    pre = tree.deletion_sibling(key) if sibling is None else sibling
    try:
        return True, compute_root_after_delete(key, p.bitmap, p.siblings, pre)
    except ProofError:
        return False, EMPTY


def deleted_root(tree: SparseMerkleTree, key: bytes) -> bytes:
    t = tree.copy()
    t.delete(key)
    return t.root


def shape(tree: SparseMerkleTree, key: bytes) -> str:
    pre = tree.deletion_sibling(key)
    if not pre:
        return "last leaf"
    p = tree.prove(key)
    if pre[:1] == NODE_PREFIX:
        return "sibling node"
    # a leaf that moves up past empty levels, or into the root
    rest = p.bitmap ^ (1 << (p.bitmap.bit_length() - 1))
    if rest == 0:
        return "sibling leaf becomes the root"
    return "sibling leaf moves up" if p.bitmap.bit_length() - rest.bit_length() > 1 else "sibling leaf, one level"


def tree_of(keys, rnd) -> SparseMerkleTree:
    t = SparseMerkleTree()
    t.update({k: rnd.randbytes(rnd.choice((0, 1, 64, 128, 200))) for k in keys})
    return t


# keys that share long prefixes (chains of one-child nodes, leaves that move
# up several levels) as well as spread-out ones
_prefixes = st.sampled_from([b"", b"\x00", b"\xff", b"\x5a\x5a", b"\x5a\x5b", b"\x00\x00\x00"])
_key = st.builds(lambda pre, tail: (pre + tail)[:32], _prefixes, st.binary(min_size=32, max_size=32))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=st.lists(_key, min_size=1, max_size=24, unique=True), pick=st.integers(0, 10**6),
       seed=st.integers(0, 2**32))
def test_delete_agrees_with_python(harness, keys, pick, seed):
    """Python tree, its twin and the Vyper deletion: the same root."""
    t = tree_of(keys, random.Random(seed))
    key = keys[pick % len(keys)]
    event(shape(t, key))
    want = deleted_root(t, key)
    assert python_delete(t, key) == (True, want)
    assert evm_delete(harness, t, key) == (True, want)


def test_every_shape(harness):
    """Each case by construction: a sibling node, a sibling leaf one level up,
    a sibling leaf moving up several levels, a sibling leaf becoming the root,
    and the tree's last leaf (root 0)."""
    rnd = random.Random(7)
    a = b"\x00" + b"\x11" * 31          # 0000 0000 ...
    b = b"\x01" + b"\x22" * 31          # 0000 0001: shares 7 bits with a
    c = b"\x80" + b"\x33" * 31          # 1...: the other half
    e = b"\x40" + b"\x44" * 31          # 01...: a's neighbour at depth 2
    cases = {
        "last leaf": ([a], a),
        "sibling leaf becomes the root": ([a, c], a),
        "sibling leaf moves up": ([a, b, c], a),  # b climbs from depth 8 to depth 1
        "sibling leaf, one level": ([a, e, c], a),   # e climbs from depth 2 to depth 1
        "sibling node": ([a, b, c], c),
    }
    for name, (keys, key) in cases.items():
        t = tree_of(keys, rnd)
        assert shape(t, key) == name
        want = deleted_root(t, key)
        assert evm_delete(harness, t, key) == (True, want), name
        assert python_delete(t, key) == (True, want), name
    t = tree_of([a], rnd)
    assert deleted_root(t, a) == EMPTY


def test_delete_every_leaf_in_turn(harness):
    """Down to the empty tree, one Vyper deletion at a time."""
    rnd = random.Random(3)
    keys = [bytes([0x5a, rnd.choice((0, 1, 0x80))]) + rnd.randbytes(30) for _ in range(10)]
    keys += [rnd.randbytes(32) for _ in range(10)]
    t = tree_of(keys, rnd)
    rnd.shuffle(keys)
    for key in keys:
        ok, root = evm_delete(harness, t, key)
        t.delete(key)
        assert ok and root == t.root
    assert t.root == EMPTY


# --- the attacker's witnesses ------------------------------------------------------------

def forgeries(tree: SparseMerkleTree, key: bytes, rnd: random.Random) -> list[tuple[str, bytes]]:
    """Wrong preimages of the deepest sibling: the other shape, another key,
    another value, another sibling's preimage, a bad tag, a cut or empty one."""
    pre = tree.deletion_sibling(key)
    p = tree.prove(key)
    out = []
    if not pre:
        return [("a sibling for the last leaf", LEAF_PREFIX + rnd.randbytes(64)), ("garbage", b"\x01" * 65)]
    body = pre[1:]
    other_tag = NODE_PREFIX if pre[:1] == LEAF_PREFIX else LEAF_PREFIX
    out.append(("other shape, same bytes", other_tag + body))
    out.append(("bad tag", b"\x02" + body))
    out.append(("cut", pre[:64]))
    out.append(("none", b""))
    flip = bytearray(pre)
    flip[1 + rnd.randrange(32)] ^= 1 << rnd.randrange(8)
    out.append(("another key / left child", bytes(flip)))
    flip = bytearray(pre)
    flip[33 + rnd.randrange(32)] ^= 1 << rnd.randrange(8)
    out.append(("another value hash / right child", bytes(flip)))
    if pre[:1] == NODE_PREFIX:
        # claim it is a leaf: no preimage of the node's hash starts with 0x00
        out.append(("node claimed a leaf", LEAF_PREFIX + rnd.randbytes(64)))
    else:
        out.append(("leaf claimed a node", NODE_PREFIX + EMPTY + pre[33:]))
    if len(p.siblings) > 1:
        out.append(("a shallower sibling's shape", LEAF_PREFIX + p.siblings[1] + EMPTY))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=st.lists(_key, min_size=1, max_size=16, unique=True), pick=st.integers(0, 10**6),
       seed=st.integers(0, 2**32))
def test_forged_sibling_rejected(harness, keys, pick, seed):
    """Every wrong claim about the sibling is refused (no root), by both."""
    rnd = random.Random(seed)
    t = tree_of(keys, rnd)
    key = keys[pick % len(keys)]
    for name, forged in forgeries(t, key, rnd):
        assert evm_delete(harness, t, key, forged)[0] is False, name
        assert python_delete(t, key, forged)[0] is False, name


def test_leaf_sibling_off_the_path_rejected(harness):
    """A real leaf preimage that is not the key's neighbour at that depth (a
    non-canonical claim): refused even before any root comparison."""
    key = b"\x00" * 32
    far = b"\xf0" + b"\x01" * 31
    near_but_same_side = b"\x00" * 31 + b"\x01"  # shares 255 bits: not at depth 3's other side
    for other in (far, near_but_same_side, key):
        pre = LEAF_PREFIX + other + keccak(b"v")
        bitmap, sibs = 0b100, [keccak(pre)]  # claims the sibling at depth 3 (a chain above)
        ok, _ = harness.functions.delete_root(key, bitmap, sibs, pre).call()
        assert ok is False, other.hex()
        with pytest.raises(ProofError):
            compute_root_after_delete(key, bitmap, sibs, pre)
    # the neighbour at depth 3 (001...) is accepted: it becomes the root
    other = b"\x20" + b"\x01" * 31
    pre = LEAF_PREFIX + other + keccak(b"v")
    ok, root = harness.functions.delete_root(key, 0b100, [keccak(pre)], pre).call()
    assert ok and root == leaf_hash(other, keccak(b"v"))


def test_wrong_proof_shapes_rejected(harness):
    """A leaf preimage with the sibling list one short or one long; a proof
    with no depth but a sibling: not well-formed."""
    rnd = random.Random(11)
    keys = [rnd.randbytes(32) for _ in range(9)]
    t = tree_of(keys, rnd)
    key = keys[0]
    p, pre = t.prove(key), t.deletion_sibling(key)
    for sibs in (list(p.siblings) + [keccak(b"x")], list(p.siblings)[:1] if len(p.siblings) > 1 else []):
        ok, _ = harness.functions.delete_root(key, p.bitmap, sibs, pre).call()
        assert ok is False
    assert harness.functions.delete_root(key, 0, [node_hash(EMPTY, EMPTY)], b"").call()[0] is False
    assert harness.functions.delete_root(key, 0, [], b"").call() == [True, EMPTY]


def test_deletion_gas(harness):
    """Gas of verifying a leaf and deleting it at 4,000 leaves (the figure in
    docs/fraud-proofs.md)."""
    rnd = random.Random(1)
    changes = {}
    for _ in range(2000):
        a = rnd.randbytes(20)
        changes[compute_key(ACCOUNT, a)] = rnd.randbytes(64)
        changes[compute_key(POSITION, a, (1).to_bytes(4, "big"))] = rnd.randbytes(128)
    t = SparseMerkleTree()
    t.update(changes)
    gases = {}
    for key in list(changes)[:40]:
        p = t.prove(key)
        ok, root, gas = harness.functions.gas_delete(
            t.root, key, keccak(p.value), (p.bitmap, list(p.siblings), EMPTY, EMPTY), t.deletion_sibling(key)
        ).call()
        assert ok and root == deleted_root(t, key)
        gases.setdefault(shape(t, key), []).append(gas)
    print({k: (min(v), max(v), len(v)) for k, v in gases.items()})
    assert max(max(v) for v in gases.values()) < 60_000


def test_deep_chain(harness):
    """Two keys that differ only in their last bit sit at depth 256 below a
    chain of one-child nodes: deleting one lifts the other 255 levels; a
    third key's deletion leaves the chain's node in place."""
    rnd = random.Random(5)
    a = b"\x5a" * 31 + b"\x10"
    b = b"\x5a" * 31 + b"\x11"
    c = b"\xc0" + b"\x00" * 31
    t = tree_of([a, b, c], rnd)
    assert t.prove(a).bitmap.bit_length() == 256
    for key, name in ((a, "sibling leaf moves up"), (b, "sibling leaf moves up"), (c, "sibling node")):
        assert shape(t, key) == name
        want = deleted_root(t, key)
        assert evm_delete(harness, t, key) == (True, want)
        assert python_delete(t, key) == (True, want)
