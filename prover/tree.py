"""The state tree: a compacted sparse Merkle tree over 32-byte keys, its
proofs and their verification.

Pure code: no file, network or clock access.  See docs/commitment.md for the
full specification; the short version:

* Hashes: prover/hashing.py (``leaf = keccak(0x00 || key || value_hash)``,
  ``node = keccak(0x01 || left || right)``, ``value_hash = keccak(value)``).
* Keys are 32 bytes (prover/keys.py); the path of a key is its bits, most
  significant bit of byte 0 first (bit ``i`` of the key decides the child at
  depth ``i + 1``; 0 = left, 1 = right).
* The empty subtree is ``EMPTY = bytes32(0)`` at every level (the precomputed
  empty-subtree hash is the same constant at every height).
* Compaction (Diem / Jellyfish style): a subtree that holds exactly one leaf
  *is* that leaf's hash, at the depth where it first stands alone.  A subtree
  with two or more leaves is a node.  So a node never has (leaf, empty) or
  (empty, empty) children, and an update costs ~log2(N) hashes instead of 256.
  The key inside the leaf hash keeps the leaf's position unambiguous.
* The empty tree's root is ``EMPTY_ROOT = bytes32(0)``.  No proof verifies
  against it (an unset L1 output also reads as zero).

Proofs (prover/codec.py) carry a ``bitmap`` (uint256): bit ``j - 1`` is set
when the sibling at depth ``j`` is non-empty; the proof depth (depth of the
terminal: the leaf, the other leaf, or the empty slot) is
``bitmap.bit_length()``.  Only non-empty siblings are listed, deepest first
(the order a verifier consumes them).
"""

from __future__ import annotations

from bisect import bisect_left
from hashlib import blake2b
from typing import Iterator, Mapping, Sequence

import msgspec
from sha3 import keccak_256

from prover.codec import UINT256_MAX, Proof, ProofError, check_proof_shape
from prover.hashing import EMPTY, LEAF_PREFIX, NODE_PREFIX, keccak, leaf_hash, node_hash

EMPTY_ROOT = EMPTY

# --------------------------------------------------------------------------
# tree nodes
#
# * a leaf is the bytes object key (32) || value: no wrapper object;
# * an internal node is a _Node holding its children and the preimage of
#   its own hash, pre = 0x01 || left hash || right hash (EMPTY for an empty
#   child), one 65-byte object.  A node's own hash lives in its parent's pre
#   (the root's in the tree): an update reads one object per level for the
#   sibling hash instead of two (child node, then its hash), and hashes the
#   stored preimage as it is.
# * gc=False: the tree is acyclic, and keeping millions of nodes out of the
#   cyclic GC keeps collections cheap.
#
# Copy-on-write by generation: every tree has a generation number, unique
# to it since its last copy(); a node whose `gen` equals its tree's is
# private to that tree and is updated in place (no allocation, no free),
# any other node may be shared with a copy and is replaced (path copying).
# copy() gives both trees fresh generations, so all nodes that exist at that
# moment become shared and immutable.
# --------------------------------------------------------------------------


class _Node(msgspec.Struct, array_like=True, gc=False):
    pre: bytes  # the hash preimage 0x01 || left hash || right hash (65 bytes)
    left: "_Node | bytes | None"
    right: "_Node | bytes | None"
    gen: int = 0

    @property
    def lh(self) -> bytes:
        return self.pre[1:33]

    @property
    def rh(self) -> bytes:
        return self.pre[33:]


# _BIT[d] selects the path bit of depth d in a key read as a uint256
_BIT = tuple(1 << (255 - d) for d in range(256))
# _LOW[d]: the bits below it
_LOW = tuple(b - 1 for b in _BIT)
# a fresh keccak state: copying it is cheaper than constructing one
_K0 = keccak_256()


_last_gen = 0


def _fresh_gen() -> int:
    global _last_gen
    _last_gen += 1
    return _last_gen


def _reserve_gen(gen: int) -> None:
    global _last_gen
    if gen > _last_gen:
        _last_gen = gen


def _kv_hash(kv: bytes) -> bytes:
    """Leaf hash of a stored leaf (key || value)."""
    return keccak_256(LEAF_PREFIX + kv[:32] + keccak_256(kv[32:]).digest()).digest()


def _subtree_hash(node) -> bytes:
    if node is None:
        return EMPTY
    if type(node) is bytes:
        return _kv_hash(node)
    return keccak_256(node.pre).digest()


SNAPSHOT_MAGIC = b"ISOSMT\x00\x05"
_SNAPSHOT_DECODER = msgspec.msgpack.Decoder(_Node | bytes | None)
_SNAPSHOT_ENCODER = msgspec.msgpack.Encoder()


def _check_key(key: bytes) -> bytes:
    if type(key) is not bytes:
        if isinstance(key, (bytearray, memoryview)):
            key = bytes(key)
        else:
            raise TypeError("key must be bytes")
    if len(key) != 32:
        raise ValueError("key must be 32 bytes")
    return key


class SparseMerkleTree:
    """A compacted sparse Merkle tree (see the module docstring).

    :meth:`copy` is O(1) (copy-on-write by generation, see above): a copy
    keeps serving proofs against its root while the original moves on.
    """

    __slots__ = ("_root", "_root_h", "_count", "_gen")

    def __init__(self) -> None:
        self._root: _Node | bytes | None = None
        self._root_h = EMPTY_ROOT
        self._count = 0
        self._gen = _fresh_gen()

    # -- reading ----------------------------------------------------------

    @property
    def root(self) -> bytes:
        return self._root_h

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None

    def get(self, key: bytes) -> bytes | None:
        key = _check_key(key)
        ki = int.from_bytes(key, "big")
        node = self._root
        shift = 255
        while type(node) is _Node:
            node = node.right if (ki >> shift) & 1 else node.left
            shift -= 1
        if node is not None and node.startswith(key):
            return node[32:]
        return None

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) in key order."""
        stack = [self._root]
        while stack:
            n = stack.pop()
            if n is None:
                continue
            if type(n) is bytes:
                yield n[:32], n[32:]
            else:
                stack.append(n.right)
                stack.append(n.left)

    def copy(self) -> "SparseMerkleTree":
        """O(1): the copy shares all current nodes; both trees then copy a
        shared node before changing it, so each keeps its own root."""
        t = SparseMerkleTree.__new__(SparseMerkleTree)
        t._root = self._root
        t._root_h = self._root_h
        t._count = self._count
        t._gen = _fresh_gen()
        self._gen = _fresh_gen()
        return t

    # -- writing ----------------------------------------------------------

    def update(self, changes: Mapping[bytes, bytes | None]) -> bytes:
        """Apply a batch: ``key -> value bytes`` sets, ``key -> None`` deletes
        (deleting an absent key is a no-op).  Every node shared by the changed
        paths is hashed once.  Returns the new root."""
        if not changes:
            return self._root_h
        kc = _K0.copy
        LEAF = LEAF_PREFIX
        # 32-byte keys sort bytewise in the order of their big-endian ints
        # (and bytes compare much faster than 256-bit ints)
        try:
            order = sorted(changes)
        except TypeError:
            raise TypeError("keys must be bytes") from None
        news = []
        hashes = []
        push = news.append
        pushh = hashes.append
        get = changes.__getitem__
        for key in order:
            if type(key) is not bytes:
                raise TypeError("keys must be bytes")
            if len(key) != 32:
                raise ValueError("key must be 32 bytes")
            value = get(key)
            if value is None:
                push(None)
                pushh(None)
            else:
                if type(value) is not bytes:
                    if isinstance(value, (bytearray, memoryview)):
                        value = bytes(value)
                    else:
                        raise TypeError("value must be bytes or None")
                push(key + value)
                x = kc()
                x.update(value)
                y = kc()
                y.update(LEAF + key + x.digest())
                pushh(y.digest())
        from_bytes = int.from_bytes
        ks = [from_bytes(key, "big") for key in order]
        self._root, self._root_h = self._apply(self._root, self._root_h, ks, order, news, hashes)
        return self._root_h

    def set(self, key: bytes, value: bytes | None) -> bytes:
        return self.update({key: value})

    def delete(self, key: bytes) -> bytes:
        return self.update({key: None})

    def _apply(self, root, root_h, ks, keys, news, hashes):
        # ks[i]: the sorted keys as ints, keys[i] as bytes; news[i]: the new
        # leaf (key || value) or None to delete; hashes[i]: its leaf hash.
        # Every function returns (subtree, its hash).
        # Hashing: x = kc(); x.update(pre); x.digest() copies a fresh keccak
        # state, ~7% cheaper than keccak_256(pre).digest() in pysha3.
        kc = _K0.copy
        NODE = NODE_PREFIX
        Z = EMPTY
        NZ = NODE_PREFIX + EMPTY
        Node = _Node
        BIT = _BIT
        LOW = _LOW
        bl = bisect_left
        g = self._gen
        delta = 0

        def split(a, a_h, b, b_h, bi, depth):
            # two leaves a (existing) and b (new key bi) that share the
            # first `depth` bits: the subtree that holds both.
            ai = int.from_bytes(a[:32], "big")
            d = 256 - (ai ^ bi).bit_length()  # first differing bit
            if bi & BIT[d]:
                pre = NODE + a_h + b_h
                n = Node(pre, a, b, g)
            else:
                pre = NODE + b_h + a_h
                n = Node(pre, b, a, g)
            x = kc()
            x.update(pre)
            h = x.digest()
            while d > depth:
                d -= 1
                if bi & BIT[d]:
                    pre = NZ + h
                    n = Node(pre, None, n, g)
                else:
                    pre = NODE + h + Z
                    n = Node(pre, n, None, g)
                x = kc()
                x.update(pre)
                h = x.digest()
            return n, h

        def one(node, node_h, depth, i):
            # a single change below `node` (at `depth`): walk down, then
            # rebuild the path upward.
            nonlocal delta
            ki = ks[i]
            new = news[i]
            top = node
            path = []
            push = path.append
            d = depth
            while type(node) is Node:
                push(node)
                node = node.right if ki & BIT[d] else node.left
                d += 1
            if new is None:  # delete
                if node is None or not node.startswith(keys[i]):
                    return top, node_h
                delta -= 1
                new_h = Z
            elif node is None:
                delta += 1
                new_h = hashes[i]
            elif node.startswith(keys[i]):
                if node == new:
                    return top, node_h
                new_h = hashes[i]
            else:
                delta += 1
                if path:  # the old leaf's hash, kept by its parent
                    pre = path[-1].pre
                    old_h = pre[33:] if ki & BIT[d - 1] else pre[1:33]
                else:
                    old_h = node_h
                new, new_h = split(node, old_h, new, hashes[i], ki, d)
            # rebuild upward, compacting; private nodes change in place.
            # `child` is the old child we came up from: the side it hangs on
            # is the path bit (no two children of a node are the same object,
            # and a node never has two empty children).
            child = node
            for p in reversed(path):
                sib = p.right
                if sib is child:  # we came up from the right
                    child = p
                    sib = p.left
                    if sib is None:
                        if type(new) is not Node:
                            continue  # a lone leaf (or nothing) floats up
                        pre = NZ + new_h
                    elif new is None:
                        if type(sib) is bytes:
                            new = sib  # the sibling leaf floats up
                            new_h = p.pre[1:33]
                            continue
                        pre = p.pre[:33] + Z
                    else:
                        pre = p.pre[:33] + new_h
                    x = kc()
                    x.update(pre)
                    new_h = x.digest()
                    if p.gen == g:
                        p.pre = pre
                        p.right = new
                        new = p
                    else:
                        new = Node(pre, sib, new, g)
                else:
                    child = p
                    if sib is None:
                        if type(new) is not Node:
                            continue
                        pre = NODE + new_h + Z
                    elif new is None:
                        if type(sib) is bytes:
                            new = sib
                            new_h = p.pre[33:]
                            continue
                        pre = NZ + p.pre[33:]
                    else:
                        pre = NODE + new_h + p.pre[33:]
                    x = kc()
                    x.update(pre)
                    new_h = x.digest()
                    if p.gen == g:
                        p.pre = pre
                        p.left = new
                        new = p
                    else:
                        new = Node(pre, new, sib, g)
            return new, new_h

        def many(node, node_h, depth, lo, hi):
            # changes lo..hi-1 (>= 2, sorted) all below `node` at `depth`
            nonlocal delta
            if node is None:
                left = right = None
                lh = rh = Z
            elif type(node) is bytes:
                li = int.from_bytes(node[:32], "big")
                j = bl(ks, li, lo, hi)
                if j < hi and ks[j] == li:
                    # the batch rewrites or deletes this leaf: drop it, and
                    # count it back if the batch sets it
                    delta -= 1
                    left = right = None
                    lh = rh = Z
                elif li & BIT[depth]:
                    left, lh, right, rh = None, Z, node, node_h
                else:
                    left, lh, right, rh = node, node_h, None, Z
                node = None
            else:
                left = node.left
                right = node.right
                pre = node.pre
                lh = pre[1:33]
                rh = pre[33:]
            # the keys share their first `depth` bits: the first one with
            # bit `depth` set is at or after (prefix || 1 || 0...)
            bit = BIT[depth]
            if ks[lo] & bit:
                mid = lo
            elif ks[hi - 1] & bit:
                mid = bl(ks, (ks[lo] | LOW[depth]) + 1, lo + 1, hi - 1)
            else:
                mid = hi
            if mid - lo > 1:
                left, lh = many(left, lh, depth + 1, lo, mid)
            elif mid > lo:
                left, lh = one(left, lh, depth + 1, lo)
            if hi - mid > 1:
                right, rh = many(right, rh, depth + 1, mid, hi)
            elif hi > mid:
                right, rh = one(right, rh, depth + 1, mid)
            if left is None:
                if right is None or type(right) is bytes:
                    return right, rh
            elif right is None and type(left) is bytes:
                return left, lh
            pre = NODE + lh + rh
            x = kc()
            x.update(pre)
            h = x.digest()
            if node is not None and node.gen == g:
                node.pre = pre
                node.left = left
                node.right = right
                return node, h
            return Node(pre, left, right, g), h

        if len(ks) == 1:
            root, root_h = one(root, root_h, 0, 0)
        else:
            root, root_h = many(root, root_h, 0, 0, len(ks))
        self._count += delta
        return root, root_h

    # -- proofs -----------------------------------------------------------

    def prove(self, key: bytes) -> "Proof":
        """Inclusion proof if ``key`` is present, exclusion proof otherwise."""
        key = _check_key(key)
        ki = int.from_bytes(key, "big")
        node = self._root
        depth = 0
        bitmap = 0
        sibs = []
        while type(node) is _Node:
            if (ki >> (255 - depth)) & 1:
                if node.left is not None:
                    bitmap |= 1 << depth
                    sibs.append(node.pre[1:33])
                node = node.right
            else:
                if node.right is not None:
                    bitmap |= 1 << depth
                    sibs.append(node.pre[33:])
                node = node.left
            depth += 1
        sibs.reverse()
        if node is None:
            return Proof(key, None, bitmap, tuple(sibs))
        if node.startswith(key):
            return Proof(key, node[32:], bitmap, tuple(sibs))
        return Proof(key, None, bitmap, tuple(sibs), node[:32], keccak_256(node[32:]).digest())

    def deletion_sibling(self, key: bytes) -> bytes:
        """What removing ``key`` needs beyond its proof: the hash preimage of
        the deepest non-empty sibling on its path, ``0x00 || key ||
        value_hash`` for a leaf, ``0x01 || left || right`` for a node; ``b""``
        when the path has no sibling (the key is the tree's only leaf, or the
        tree is empty).  See ``compute_root_after_delete``."""
        ki = int.from_bytes(_check_key(key), "big")
        node = self._root
        depth = 0
        deepest = None
        while type(node) is _Node:
            if (ki >> (255 - depth)) & 1:
                sib, node = node.left, node.right
            else:
                sib, node = node.right, node.left
            if sib is not None:
                deepest = sib
            depth += 1
        if deepest is None:
            return b""
        if type(deepest) is bytes:
            return LEAF_PREFIX + deepest[:32] + keccak_256(deepest[32:]).digest()
        return deepest.pre

    # -- snapshots --------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Snapshot: magic (8) || count (8) || generation (8) || root (32) ||
        blake2b-256(payload) (32) || payload = msgpack(node tree).
        Loading it needs no keccak beyond the root's (see :meth:`from_bytes`)."""
        payload = _SNAPSHOT_ENCODER.encode(self._root)
        return b"".join(
            (
                SNAPSHOT_MAGIC,
                self._count.to_bytes(8, "big"),
                self._gen.to_bytes(8, "big"),
                self._root_h,
                blake2b(payload, digest_size=32).digest(),
                payload,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, verify: bool = False) -> "SparseMerkleTree":
        """Load a snapshot written by :meth:`to_bytes`.  Checks the framing,
        the payload checksum and that the stored root is the root node's
        hash; ``verify=True`` also rehashes every node and leaf and checks the
        shape (as slow as a rebuild)."""
        mv = memoryview(data)
        if len(mv) < 88 or bytes(mv[:8]) != SNAPSHOT_MAGIC:
            raise ProofError("not an SMT snapshot")
        count = int.from_bytes(mv[8:16], "big")
        gen = int.from_bytes(mv[16:24], "big")
        root = bytes(mv[24:56])
        payload = mv[88:]
        if blake2b(payload, digest_size=32).digest() != mv[56:88]:
            raise ProofError("SMT snapshot checksum mismatch")
        try:
            node = _SNAPSHOT_DECODER.decode(payload)
        except msgspec.DecodeError as exc:
            raise ProofError(f"corrupt SMT snapshot: {exc}") from None
        if type(node) is _Node and len(node.pre) != 65 or type(node) is bytes and len(node) < 32:
            raise ProofError("corrupt SMT snapshot root")
        if _subtree_hash(node) != root:
            raise ProofError("snapshot root mismatch")
        t = cls.__new__(cls)
        t._root = node
        t._root_h = root
        t._count = count
        # the loaded nodes belong to this tree only: the ones of the stored
        # generation stay writable in place; fresh generations handed out
        # from now on are above it
        _reserve_gen(gen)
        t._gen = gen
        if verify:
            t._verify_all()
        return t

    def compact(self) -> None:
        """Re-allocate all nodes in depth-first order, the layout a snapshot
        load produces: paths then sit in fewer memory pages (updates on a
        million-leaf tree run ~8% faster) and allocator holes left by the
        build are released.  O(N): ~1.5 s and, transiently, a second copy
        of the tree per million leaves."""
        self._root = _SNAPSHOT_DECODER.decode(_SNAPSHOT_ENCODER.encode(self._root))

    def dump(self, fileobj) -> None:
        fileobj.write(self.to_bytes())

    @classmethod
    def load(cls, fileobj, *, verify: bool = False) -> "SparseMerkleTree":
        return cls.from_bytes(fileobj.read(), verify=verify)

    def _verify_all(self) -> None:
        """Rehash everything and check the structure is canonical."""
        count = 0

        def walk(n, depth, prefix):
            nonlocal count
            if n is None:
                return EMPTY
            if type(n) is bytes:
                if len(n) < 32:
                    raise ProofError("bad leaf")
                ki = int.from_bytes(n[:32], "big")
                if depth and (ki >> (256 - depth)) != prefix:
                    raise ProofError("leaf out of place")
                count += 1
                return _kv_hash(n)
            if n.left is None and type(n.right) is not _Node or (
                n.right is None and type(n.left) is not _Node
            ):
                raise ProofError("non-canonical node")
            if depth >= 256 or len(n.pre) != 65:
                raise ProofError("bad node")
            lh = walk(n.left, depth + 1, prefix << 1)
            rh = walk(n.right, depth + 1, (prefix << 1) | 1)
            if n.pre != NODE_PREFIX + lh + rh:
                raise ProofError("hash mismatch in snapshot")
            return node_hash(lh, rh)

        if walk(self._root, 0, 0) != self._root_h:
            raise ProofError("root mismatch in snapshot")
        if count != self._count:
            raise ProofError("snapshot count mismatch")

    # -- reference --------------------------------------------------------

    @staticmethod
    def compute_root(entries: Mapping[bytes, bytes]) -> bytes:
        """The root of a set of (key, value) by the plain recursive
        definition (slow; for checks)."""
        return reference_root(entries)


def reference_root(entries: Mapping[bytes, bytes]) -> bytes:
    """Straightforward recursive definition of the root:
    root(S, d) = EMPTY if S is empty; leaf(S) if |S| = 1;
    node(root(S0, d+1), root(S1, d+1)) otherwise, S_b = keys with bit d = b."""
    leaves = sorted(
        (int.from_bytes(k, "big"), leaf_hash(k, keccak(v))) for k, v in entries.items()
    )

    def rec(sub, depth):
        if not sub:
            return EMPTY
        if len(sub) == 1:
            return sub[0][1]
        bit = 255 - depth
        left = [x for x in sub if not (x[0] >> bit) & 1]
        right = [x for x in sub if (x[0] >> bit) & 1]
        return node_hash(rec(left, depth + 1), rec(right, depth + 1))

    return rec(leaves, 0)



# --------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------


def fold_path(key: bytes, terminal: bytes, bitmap: int, siblings: Sequence[bytes]) -> bytes:
    """Hash ``terminal`` (the hash at depth bitmap.bit_length() on key's
    path) up to the root.  Same loop as the Vyper verifier."""
    ki = int.from_bytes(key, "big")
    k = keccak_256
    h = terminal
    idx = 0
    for j in range(bitmap.bit_length(), 0, -1):
        if (bitmap >> (j - 1)) & 1:
            s = siblings[idx]
            idx += 1
        else:
            s = EMPTY
        if (ki >> (256 - j)) & 1:
            h = k(NODE_PREFIX + s + h).digest()
        else:
            h = k(NODE_PREFIX + h + s).digest()
    if idx != len(siblings):
        raise ProofError("unused siblings")
    return h


def compute_root_after_delete(key: bytes, bitmap: int, siblings: Sequence[bytes], sibling: bytes) -> bytes:
    """The root after ``key``'s leaf is removed, from its inclusion proof
    (``bitmap``, ``siblings``; the caller verifies it against the current
    root) and ``sibling``, the preimage of the deepest sibling
    (``SparseMerkleTree.deletion_sibling``).  A node sibling stays, next to
    an EMPTY slot; a leaf sibling moves up (its hash does not depend on its
    depth) to just below the next non-empty sibling, or becomes the root.
    Raises ProofError for a sibling preimage that is not the deepest
    sibling's, or a leaf that is not next to the key.  Same checks as the
    Vyper ``smt.delete_root``."""
    depth = bitmap.bit_length()
    if depth == 0:
        if siblings or sibling:
            raise ProofError("a lone leaf's deletion takes no sibling")
        return EMPTY_ROOT
    if not siblings or len(sibling) != 65 or keccak(sibling) != siblings[0]:
        raise ProofError("not the deepest sibling's preimage")
    if sibling[:1] == NODE_PREFIX:
        return fold_path(key, EMPTY, bitmap, siblings)
    if sibling[:1] != LEAF_PREFIX:
        raise ProofError("neither a leaf nor a node")
    other = int.from_bytes(sibling[1:33], "big")
    if (other ^ int.from_bytes(key, "big")) >> (256 - depth) != 1:
        raise ProofError("the leaf sibling is not next to the key")
    return fold_path(key, siblings[0], bitmap ^ (1 << (depth - 1)), siblings[1:])


def compute_root_from_proof(proof: Proof) -> bytes:
    """The root a proof implies (raises ProofError if malformed)."""
    check_proof_shape(proof)
    key = proof.key
    depth = proof.bitmap.bit_length()
    if proof.value is not None:
        terminal = leaf_hash(key, keccak(proof.value))
    elif proof.other_key is not None:
        ok = proof.other_key
        if ok == key:
            raise ProofError("exclusion leaf has the proven key")
        if depth and (int.from_bytes(ok, "big") ^ int.from_bytes(key, "big")) >> (256 - depth):
            raise ProofError("exclusion leaf is not on the key's path")
        terminal = leaf_hash(ok, proof.other_value_hash)
    else:
        terminal = EMPTY
    return fold_path(key, terminal, proof.bitmap, proof.siblings)


def verify_proof(root: bytes, proof: Proof, *, allow_empty_root: bool = False) -> bool:
    """True iff ``proof`` proves its key's value (or absence) under ``root``.
    Like the Vyper verifier, it refuses every proof against the empty root
    (zero) unless ``allow_empty_root``."""
    if type(root) is not bytes or len(root) != 32:
        return False
    if root == EMPTY_ROOT and not allow_empty_root:
        return False
    try:
        return compute_root_from_proof(proof) == root
    except (ProofError, TypeError, AttributeError):
        return False


def verify_inclusion(
    root: bytes, key: bytes, value_hash: bytes, bitmap: int, siblings: Sequence[bytes]
) -> bool:
    """Flat form, argument for argument the Vyper ``smt.verify``: ``key``
    holds a value with keccak ``value_hash`` under ``root``."""
    try:
        if root == EMPTY_ROOT or len(root) != 32 or len(key) != 32 or len(value_hash) != 32:
            return False
        if not 0 <= bitmap <= UINT256_MAX or bitmap.bit_count() != len(siblings):
            return False
        return fold_path(key, leaf_hash(key, value_hash), bitmap, siblings) == root
    except (ProofError, TypeError, AttributeError, IndexError):
        return False


def verify_exclusion(
    root: bytes,
    key: bytes,
    bitmap: int,
    siblings: Sequence[bytes],
    other_key: bytes | None = None,
    other_value_hash: bytes | None = None,
) -> bool:
    """Flat form of the Vyper ``smt.verify_exclusion``; ``other_key`` /
    ``other_value_hash`` None (or both zero) = the path ends in an empty slot."""
    if other_key == EMPTY and other_value_hash == EMPTY:
        other_key = other_value_hash = None
    try:
        if root == EMPTY_ROOT or len(root) != 32:
            return False
        p = Proof(bytes(key), None, bitmap, tuple(siblings), other_key, other_value_hash)
        return compute_root_from_proof(p) == root
    except (ProofError, TypeError, AttributeError, IndexError, ValueError):
        return False
