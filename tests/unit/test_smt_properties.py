"""Hypothesis: the compacted tree against a naive reference (a dict and the
plain recursive root) after any sequence of batched inserts, updates and
deletes; proofs for every key (present or not) verify, and tampered proofs
do not."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from prover.codec import Proof
from prover.hashing import EMPTY, keccak, leaf_hash, node_hash
from prover.tree import SparseMerkleTree, compute_root_from_proof, verify_proof


def naive_root(entries: dict[bytes, bytes]) -> bytes:
    """Independent reference: bit strings and recursion, no shared code."""
    leaves = {format(int.from_bytes(k, "big"), "0256b"): leaf_hash(k, keccak(v)) for k, v in entries.items()}

    def rec(prefix: str) -> bytes:
        under = [p for p in leaves if p.startswith(prefix)]
        if not under:
            return EMPTY
        if len(under) == 1:
            return leaves[under[0]]
        return node_hash(rec(prefix + "0"), rec(prefix + "1"))

    return rec("")


# Keys drawn from a small pool of "clustered" keys so paths share long
# prefixes (deep single-child chains, splits far down, collapse on delete),
# plus arbitrary keys.
def _clustered() -> st.SearchStrategy[bytes]:
    base = st.sampled_from([bytes(32), b"\xff" * 32, b"\x80" + bytes(31), bytes(16) + b"\x55" * 16])
    return st.builds(
        lambda b0, pos, mask: bytes(x ^ (mask if i == pos else 0) for i, x in enumerate(b0)),
        base,
        st.integers(0, 31),
        st.integers(0, 255),
    )


keys_st = st.one_of(_clustered(), st.binary(min_size=32, max_size=32))
values_st = st.one_of(st.none(), st.binary(max_size=40))
batch_st = st.dictionaries(keys_st, values_st, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batch_st, max_size=8), st.lists(keys_st, max_size=4))
def test_tree_matches_reference(batches, probes):
    t = SparseMerkleTree()
    ref: dict[bytes, bytes] = {}
    for batch in batches:
        root = t.update(batch)
        for k, v in batch.items():
            if v is None:
                ref.pop(k, None)
            else:
                ref[k] = v
        assert root == t.root == naive_root(ref)
        assert len(t) == len(ref)
    for k in list(ref) + probes:
        assert t.get(k) == ref.get(k)
        p = t.prove(k)
        assert (p.value is not None) == (k in ref)
        assert p.value == ref.get(k)
        assert compute_root_from_proof(p) == t.root
        assert verify_proof(t.root, p) == (t.root != EMPTY)
        assert Proof.decode(p.encode()) == p
        if p.other_key is not None:
            assert p.other_key in ref and keccak(ref[p.other_key]) == p.other_value_hash
    # the snapshot carries the tree exactly
    t2 = SparseMerkleTree.from_bytes(t.to_bytes(), verify=True)
    assert t2.root == t.root and dict(t2.items()) == ref


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.binary(min_size=32, max_size=32), st.binary(max_size=8), min_size=1, max_size=40),
    st.data(),
)
def test_tampered_proofs_rejected(entries, data):
    t = SparseMerkleTree()
    t.update(entries)
    key = data.draw(st.sampled_from(sorted(entries)))
    p = t.prove(key)
    assert verify_proof(t.root, p)
    mutation = data.draw(st.sampled_from(["value", "key", "sibling", "bitmap", "drop", "exclude", "other"]))
    if mutation == "value":
        q = Proof(p.key, p.value + b"\x01", p.bitmap, p.siblings)
    elif mutation == "key":
        other = data.draw(st.binary(min_size=32, max_size=32).filter(lambda k: k != key))
        q = Proof(other, p.value, p.bitmap, p.siblings)
    elif mutation == "sibling":
        if not p.siblings:
            return
        i = data.draw(st.integers(0, len(p.siblings) - 1))
        s = bytearray(p.siblings[i])
        s[data.draw(st.integers(0, 31))] ^= 1 << data.draw(st.integers(0, 7))
        q = Proof(p.key, p.value, p.bitmap, p.siblings[:i] + (bytes(s),) + p.siblings[i + 1 :])
    elif mutation == "bitmap":
        bit = data.draw(st.integers(0, 255))
        q = Proof(p.key, p.value, p.bitmap ^ (1 << bit), p.siblings)
    elif mutation == "drop":
        if not p.siblings:
            return
        q = Proof(p.key, p.value, p.bitmap, p.siblings[1:])
    elif mutation == "exclude":
        q = Proof(p.key, None, p.bitmap, p.siblings)
    else:
        other = data.draw(st.sampled_from(sorted(entries)))
        q = Proof(p.key, None, p.bitmap, p.siblings, other, keccak(entries[other]))
    assert not verify_proof(t.root, q)


class TreeMachine(RuleBasedStateMachine):
    """Interleaved single and batched operations, copies and snapshots."""

    def __init__(self):
        super().__init__()
        self.t = SparseMerkleTree()
        self.ref: dict[bytes, bytes] = {}
        self.saved: list[tuple[SparseMerkleTree, bytes, dict]] = []

    @rule(k=keys_st, v=st.binary(max_size=16))
    def set(self, k, v):
        self.t.set(k, v)
        self.ref[k] = v

    @rule(data=st.data())
    def delete_present(self, data):
        if not self.ref:
            return
        k = data.draw(st.sampled_from(sorted(self.ref)))
        self.t.delete(k)
        del self.ref[k]

    @rule(batch=batch_st)
    def batch(self, batch):
        self.t.update(batch)
        for k, v in batch.items():
            if v is None:
                self.ref.pop(k, None)
            else:
                self.ref[k] = v

    @rule()
    def save(self):
        self.saved.append((self.t.copy(), self.t.root, dict(self.ref)))

    @rule()
    def reload(self):
        self.t = SparseMerkleTree.from_bytes(self.t.to_bytes())

    @invariant()
    def matches(self):
        assert self.t.root == naive_root(self.ref)
        assert len(self.t) == len(self.ref)
        for copy, root, ref in self.saved:
            assert copy.root == root and len(copy) == len(ref)


TestTreeMachine = TreeMachine.TestCase
TestTreeMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
