# pragma version ~=0.4.1
"""
@title isoroll commitment verifier (Vyper module)
@notice Verifies proofs of prover/smt.py: the compacted sparse Merkle state
    tree, the checkpoint withdrawals tree, and the output root.
    Use it from a contract with `import smt` and call `smt.verify(...)`;
    every function is @internal @pure, the module has no state.
    Spec: docs/commitment.md.
      leaf  = keccak256(0x00 || key || value_hash), value_hash = keccak256(value)
      node  = keccak256(0x01 || left || right), empty subtree = bytes32(0)
    A subtree holding one leaf is that leaf's hash (compaction), so a path is
    ~log2(N) long. Key bit i (MSB of byte 0 first) picks the child at depth
    i+1 (0 = left). Proof: bitmap bit j-1 set = sibling at depth j non-empty;
    terminal depth = bit length of bitmap; siblings = the non-empty ones,
    deepest first. No proof verifies against the zero root.
"""

MAX_DEPTH: constant(uint256) = 256
# A proof lists only the NON-EMPTY siblings: the loop runs to the leaf's depth
# (up to MAX_DEPTH; two keys sharing a d-bit prefix, which a birthday search
# finds in 2**(d/2) hashes, only add one sibling), the array holds the
# non-empty ones. A path of a tree of n leaves has about log2(n); each more
# needs a key sharing a longer prefix with that one path (~2**d hashes for d
# bits), so 128 on one path costs about 2**128. The bound keeps a witness of
# many openings small in memory (a step's gas is mostly memory).
MAX_SIBLINGS: constant(uint256) = 128
MAX_WITHDRAWAL_DEPTH: constant(uint256) = 32


struct SmtProof:
    # bit j-1 set = the sibling at depth j is non-empty
    bitmap: uint256
    # the non-empty siblings, deepest first
    siblings: DynArray[bytes32, MAX_SIBLINGS]
    # exclusion only: the other leaf that ends the path (key, keccak of its
    # value), or both zero when the path ends in an empty slot
    other_key: bytes32
    other_value_hash: bytes32


@internal
@pure
def bit_length(x: uint256) -> uint256:
    n: uint256 = 0
    v: uint256 = x
    if v >> 128 != 0:
        v = v >> 128
        n = 128
    if v >> 64 != 0:
        v = v >> 64
        n += 64
    if v >> 32 != 0:
        v = v >> 32
        n += 32
    if v >> 16 != 0:
        v = v >> 16
        n += 16
    if v >> 8 != 0:
        v = v >> 8
        n += 8
    if v >> 4 != 0:
        v = v >> 4
        n += 4
    if v >> 2 != 0:
        v = v >> 2
        n += 2
    if v >> 1 != 0:
        v = v >> 1
        n += 1
    return n + v


@internal
@pure
def leaf_hash(key: bytes32, value_hash: bytes32) -> bytes32:
    return keccak256(concat(b"\x00", key, value_hash))


@internal
@pure
def fold(key: bytes32, terminal: bytes32, bitmap: uint256, siblings: DynArray[bytes32, MAX_SIBLINGS]) -> (bool, bytes32):
    """
    @notice Hash `terminal` (the hash at depth bit_length(bitmap) on the
        path of `key`) up to the root. Returns (well-formed, root).
    """
    return self.fold_from(key, terminal, bitmap, siblings, 0)


@internal
@pure
def fold_from(key: bytes32, terminal: bytes32, bitmap: uint256, siblings: DynArray[bytes32, MAX_SIBLINGS],
              first: uint256) -> (bool, bytes32):
    """
    @notice `fold` over siblings[first:] (the deletion's collapse skips the
        deepest sibling); well-formed iff every sibling from `first` is used.
    """
    depth: uint256 = self.bit_length(bitmap)
    n: uint256 = len(siblings)
    kb: uint256 = convert(key, uint256) >> (256 - depth)
    h: bytes32 = terminal
    used: uint256 = first
    for j: uint256 in range(depth, bound=MAX_DEPTH):
        s: bytes32 = empty(bytes32)
        if (bitmap >> (depth - 1 - j)) & 1 == 1:
            if used >= n:
                return False, empty(bytes32)
            s = siblings[used]
            used += 1
        if kb & 1 == 1:
            h = keccak256(concat(b"\x01", s, h))
        else:
            h = keccak256(concat(b"\x01", h, s))
        kb = kb >> 1
    return used == n, h


@internal
@pure
def delete_root(key: bytes32, bitmap: uint256, siblings: DynArray[bytes32, MAX_SIBLINGS], sibling: Bytes[65]) -> (bool, bytes32):
    """
    @notice The root after `key`'s leaf is removed, from its inclusion proof
        (bitmap, siblings: the caller verifies it) and `sibling`, the hash
        preimage of the deepest sibling siblings[0]: 0x00 || key || value_hash
        when it is a leaf, 0x01 || left || right when it is a node (domain
        separation makes the claim binding). A node stays where it is, next
        to an EMPTY slot. A lone leaf moves up (a leaf's hash does not depend
        on its depth) to just below the next non-empty sibling, or becomes the
        root. Returns (well-formed, root); the tree's last leaf leaves root 0.
    """
    depth: uint256 = self.bit_length(bitmap)
    if depth == 0:
        return len(siblings) == 0 and len(sibling) == 0, empty(bytes32)
    if len(siblings) == 0 or len(sibling) != 65 or keccak256(sibling) != siblings[0]:
        return False, empty(bytes32)
    tag: uint256 = convert(slice(sibling, 0, 1), uint256)
    # a node: the slot becomes EMPTY next to it
    terminal: bytes32 = empty(bytes32)
    rest: uint256 = bitmap
    first: uint256 = 0
    if tag == 0:
        # a leaf at depth `depth` next to the key's (same path above, the other
        # side there): it moves up past the levels that held only it
        other: uint256 = convert(extract32(sibling, 1), uint256)
        if (other ^ convert(key, uint256)) >> (256 - depth) != 1:
            return False, empty(bytes32)
        terminal = siblings[0]
        rest = bitmap ^ (1 << (depth - 1))
        first = 1
    elif tag != 1:
        return False, empty(bytes32)
    return self.fold_from(key, terminal, rest, siblings, first)


@internal
@pure
def verify(root: bytes32, key: bytes32, value_hash: bytes32, proof: SmtProof) -> bool:
    """
    @notice Inclusion: `key` holds the value whose keccak256 is `value_hash`
        in the tree with root `root`. The exclusion fields must be zero.
    """
    if root == empty(bytes32):
        return False
    if proof.other_key != empty(bytes32) or proof.other_value_hash != empty(bytes32):
        return False
    ok: bool = False
    h: bytes32 = empty(bytes32)
    ok, h = self.fold(key, self.leaf_hash(key, value_hash), proof.bitmap, proof.siblings)
    return ok and h == root


@internal
@pure
def verify_exclusion(root: bytes32, key: bytes32, proof: SmtProof) -> bool:
    """
    @notice Exclusion: `key` has no leaf in the tree with root `root`.
    """
    if root == empty(bytes32):
        return False
    terminal: bytes32 = empty(bytes32)
    if proof.other_key == empty(bytes32) and proof.other_value_hash == empty(bytes32):
        terminal = empty(bytes32)
    else:
        if proof.other_key == key:
            return False
        depth: uint256 = self.bit_length(proof.bitmap)
        if depth > 0:
            if (convert(proof.other_key, uint256) ^ convert(key, uint256)) >> (256 - depth) != 0:
                return False
        terminal = self.leaf_hash(proof.other_key, proof.other_value_hash)
    ok: bool = False
    h: bytes32 = empty(bytes32)
    ok, h = self.fold(key, terminal, proof.bitmap, proof.siblings)
    return ok and h == root


@internal
@pure
def withdrawal_leaf(withdrawal_hash: bytes32) -> bytes32:
    return keccak256(concat(b"\x00", withdrawal_hash))


@internal
@pure
def withdrawals_root(withdrawal_hash: bytes32, index: uint256, siblings: DynArray[bytes32, MAX_WITHDRAWAL_DEPTH]) -> (bool, bytes32):
    """
    @notice Root implied by leaf `index` of the withdrawals tree (siblings
        bottom first; bit k of index = the running hash is a right child).
    """
    n: uint256 = len(siblings)
    if index >> n != 0:
        return False, empty(bytes32)
    h: bytes32 = self.withdrawal_leaf(withdrawal_hash)
    idx: uint256 = index
    for s: bytes32 in siblings:
        if idx & 1 == 1:
            h = keccak256(concat(b"\x01", s, h))
        else:
            h = keccak256(concat(b"\x01", h, s))
        idx = idx >> 1
    return True, h


@internal
@pure
def verify_withdrawal(root: bytes32, withdrawal_hash: bytes32, index: uint256, siblings: DynArray[bytes32, MAX_WITHDRAWAL_DEPTH]) -> bool:
    """
    @notice The withdrawal with hash `withdrawal_hash` (keccak256 of its
        encoding) is leaf `index` of the withdrawals tree `root`.
    """
    if root == empty(bytes32):
        return False
    ok: bool = False
    h: bytes32 = empty(bytes32)
    ok, h = self.withdrawals_root(withdrawal_hash, index, siblings)
    return ok and h == root


@internal
@pure
def output_root(version: uint256, state_root: bytes32, withdrawals_root: bytes32, last_block_hash: bytes32,
                inbox_count: uint256, inbox_hash: bytes32, data_hash: bytes32) -> bytes32:
    """
    @notice keccak256(abi.encode(version, state_root, withdrawals_root,
        last_block_hash, inbox_count, inbox_hash, data_hash))
    """
    return keccak256(abi_encode(version, state_root, withdrawals_root, last_block_hash, inbox_count, inbox_hash, data_hash))
