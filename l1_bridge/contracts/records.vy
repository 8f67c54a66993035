# pragma version ~=0.4.1
"""
@title isoroll records root and list-tree frontier (Vyper module)
@notice The twin of prover/records.py (docs/fraud-proofs.md). The posted data
    of an output is a stream of items, each framed by a 2-byte big-endian
    length; the records root is the ordered list tree over keccak256(item)
    (leaf = keccak256(0x00 || item_hash), node = keccak256(0x01 || l || r),
    padded with bytes32(0) to 2^ceil(log2 n): the withdrawals tree of
    docs/commitment.md). A frontier (the roots of the complete subtrees, as
    the Eth2 deposit contract keeps) builds it one leaf at a time, so both the
    derivation from data and the withdrawals of a trace step run in constant
    memory. Every function is @internal @pure.
"""

FRONTIER_DEPTH: constant(uint256) = 33
MAX_LIST_DEPTH: constant(uint256) = 32
MAX_DATA: constant(uint256) = 120000
MAX_ITEM_SIZE: constant(uint256) = 1024


struct Frontier:
    count: uint256
    branch: bytes32[FRONTIER_DEPTH]


@internal
@pure
def list_leaf(item_hash: bytes32) -> bytes32:
    return keccak256(concat(b"\x00", item_hash))


@internal
@pure
def list_depth(count: uint256) -> uint256:
    """ceil(log2(count)), 0 for count <= 1."""
    d: uint256 = 0
    for _: uint256 in range(MAX_LIST_DEPTH + 1):
        if (1 << d) >= count:
            break
        d += 1
    return d


@internal
@pure
def push(f: Frontier, leaf: bytes32) -> Frontier:
    """Append a leaf (reverts past 2^32 leaves)."""
    out: Frontier = f
    node: bytes32 = leaf
    size: uint256 = f.count + 1
    done: bool = False
    for h: uint256 in range(FRONTIER_DEPTH):
        if size & 1 == 1:
            out.branch[h] = node
            done = True
            break
        node = keccak256(concat(b"\x01", out.branch[h], node))
        size = size >> 1
    assert done, "frontier full"
    out.count = f.count + 1
    return out


@internal
@pure
def root(f: Frontier) -> bytes32:
    """The list root of the leaves pushed so far; bytes32(0) for none."""
    n: uint256 = f.count
    if n == 0:
        return empty(bytes32)
    depth: uint256 = self.list_depth(n)
    if n == 1 << depth:
        return f.branch[depth]
    node: bytes32 = empty(bytes32)
    zero: bytes32 = empty(bytes32)
    for h: uint256 in range(depth, bound=MAX_LIST_DEPTH):
        if (n >> h) & 1 == 1:
            node = keccak256(concat(b"\x01", f.branch[h], node))
        else:
            node = keccak256(concat(b"\x01", node, zero))
        zero = keccak256(concat(b"\x01", zero, zero))
    return node


@internal
@pure
def derive_chunk(f: Frontier, data: Bytes[MAX_DATA]) -> (bool, Frontier):
    """
    @notice Push the items of one chunk of posted data onto the frontier.
        An output's data may span several chunks (several transactions, the
        frontier kept in storage between them); every chunk is a whole number
        of frames. False (not well-formed): a frame that is empty, above
        MAX_ITEM_SIZE or runs past the end of its chunk.
    """
    out: Frontier = f
    n: uint256 = len(data)
    pos: uint256 = 0
    count: uint256 = f.count
    for _: uint256 in range(MAX_DATA // 3 + 1):
        if pos == n:
            out.count = count
            return True, out
        if pos + 2 > n:
            return False, f
        size: uint256 = convert(slice(data, pos, 2), uint256)
        if size == 0 or size > MAX_ITEM_SIZE or pos + 2 + size > n:
            return False, f
        # push the item's leaf (push(), inlined: no struct copies per item)
        node: bytes32 = self.list_leaf(keccak256(slice(data, pos + 2, size)))
        count += 1
        size_left: uint256 = count
        for h: uint256 in range(FRONTIER_DEPTH):
            if size_left & 1 == 1:
                out.branch[h] = node
                break
            node = keccak256(concat(b"\x01", out.branch[h], node))
            size_left = size_left >> 1
        pos += 2 + size
    return False, f


@internal
@pure
def derive_root(data: Bytes[MAX_DATA]) -> (bool, bytes32, uint256):
    """
    @notice (well-formed, records root, item count) of data posted in one chunk.
    """
    ok: bool = False
    f: Frontier = empty(Frontier)
    ok, f = self.derive_chunk(empty(Frontier), data)
    if not ok:
        return False, empty(bytes32), 0
    return True, self.root(f), f.count


@internal
@pure
def chain_data(acc: bytes32, chunk_hash: bytes32) -> bytes32:
    """
    @notice The data hash of an output posted in chunks c_1..c_k:
        acc_0 = bytes32(0), acc_i = keccak256(acc_(i-1) || keccak256(c_i)).
    """
    return keccak256(concat(acc, chunk_hash))


@internal
@pure
def verify_item(records_root: bytes32, count: uint256, item_hash: bytes32, index: uint256,
                siblings: DynArray[bytes32, MAX_LIST_DEPTH]) -> bool:
    """
    @notice Item `index` (of `count`) with keccak256 `item_hash` is under
        `records_root`: index < count and exactly ceil(log2 count) siblings.
    """
    if index >= count or len(siblings) != self.list_depth(count):
        return False
    h: bytes32 = self.list_leaf(item_hash)
    idx: uint256 = index
    for s: bytes32 in siblings:
        if idx & 1 == 1:
            h = keccak256(concat(b"\x01", s, h))
        else:
            h = keccak256(concat(b"\x01", h, s))
        idx = idx >> 1
    return h == records_root
