# pragma version ~=0.4.1
"""
@title isoroll one-step kit (Vyper module)
@notice What every one-step contract shares (onestep.vy, onestep_perps.vy;
    docs/fraud-proofs.md): the protocol constants, the state-tree witness
    (open a leaf against the current root, write a leaf and fold the new
    root), the leaf layouts read by word offset, item fields, EIP-712 user
    signatures and the nonce window. A contract `initializes:` it with the
    constants of its deployment.
    State leaves (sequencer/core/commitment.py): account = collateral ||
    nonces_hash; globals = 11 words; others are read word by word (fields
    are only ever appended).
"""
import smt
import records
import trace

MAX_OPENINGS: constant(uint256) = trace.MAX_OPENINGS
MAX_LEAF: constant(uint256) = trace.MAX_LEAF
MAX_LEAF_WORDS: constant(uint256) = MAX_LEAF // 32
MAX_NONCES: constant(uint256) = trace.MAX_NONCES
MAX_ITEM: constant(uint256) = records.MAX_ITEM_SIZE
GLOBALS_SIZE: constant(uint256) = 352
MAX_INT64: constant(uint256) = 2**63 - 1
SECP256K1_N: constant(uint256) = 115792089237316195423570985008687907852837564279074904382605163141518161494337
SECP256K1_HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
# keccak256(0x05 || "globals")
GLOBALS_KEY: constant(bytes32) = keccak256(b"\x05globals")

DOMAIN_SEPARATOR: public(immutable(bytes32))
MAX_AMOUNT: public(immutable(uint256))
MAX_EXPIRY_AHEAD_MS: public(immutable(uint256))
NONCE_WINDOW: public(immutable(uint256))


struct Globals:
    block_number: uint256
    block_hash: bytes32
    timestamp_ms: uint256
    insurance_fund: uint256
    fee_pool: uint256
    inbox_count: uint256
    inbox_hash: bytes32
    withdrawal_count: uint256
    total_deposited: uint256
    total_withdrawn: uint256
    order_count: uint256


struct AccountLeaf:
    collateral: uint256
    nonces_hash: bytes32


struct Cursor:
    # the state root so far and the openings used
    root: bytes32
    used: uint256


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256):
    assert nonce_window > 0 and nonce_window <= MAX_NONCES, "window"
    DOMAIN_SEPARATOR = domain_separator
    MAX_AMOUNT = max_amount
    MAX_EXPIRY_AHEAD_MS = max_expiry_ahead_ms
    NONCE_WINDOW = nonce_window


# --- the state tree ---------------------------------------------------------------

@internal
@pure
def node(left: bytes32, right: bytes32) -> bytes32:
    return keccak256(concat(b"\x01", left, right))


@internal
@pure
def at(c: Cursor, count: uint256) -> uint256:
    """The index of the next opening (reverts when the witness has no more)."""
    assert c.used < count, "witness: missing opening"
    return c.used


@internal
@pure
def verify_leaf(c: Cursor, key: bytes32, op: trace.Opening):
    """Reverts unless `op` opens `key` (its value, or absent) against the current root.
    An absent opening must carry no value: the readers decode `op.value`
    whatever the flag (an empty value is the all-zero leaf), so a value on
    an absent leaf would smuggle state the root does not hold."""
    ok: bool = False
    if op.present:
        ok = smt.verify(c.root, key, keccak256(op.value), op.proof)
    else:
        ok = len(op.value) == 0 and smt.verify_exclusion(c.root, key, op.proof)
    assert ok, "witness: bad opening"


@internal
@pure
def delete_leaf(root: bytes32, key: bytes32, op: trace.Opening) -> bytes32:
    """The root after `key`'s leaf is removed, from its opening (verified
    against `root`): an absent key leaves `root` as it is; a present one
    needs `op.sibling`, the hash preimage of the deepest sibling on its path,
    since a sibling leaf left alone moves up (smt.delete_root,
    docs/commitment.md "Deleting a leaf"). A wrong sibling reverts."""
    if not op.present:
        return root
    ok: bool = False
    h: bytes32 = empty(bytes32)
    ok, h = smt.delete_root(key, op.proof.bitmap, op.proof.siblings, op.sibling)
    assert ok, "witness: bad deletion"
    return h


@internal
@pure
def write_leaf(root: bytes32, key: bytes32, op: trace.Opening, leaf: Bytes[MAX_LEAF]) -> bytes32:
    """The root after `key` takes the value `leaf`, from its opening (verified
    against `root`); an empty `leaf` (b"": no state leaf encodes to it) is the
    empty leaf: `key` is deleted (delete_leaf)."""
    if len(leaf) == 0:
        return self.delete_leaf(root, key, op)
    terminal: bytes32 = smt.leaf_hash(key, keccak256(leaf))
    p: smt.SmtProof = op.proof
    if not op.present and (p.other_key != empty(bytes32) or p.other_value_hash != empty(bytes32)):
        # the slot holds another leaf: both go down to where their keys part
        d: uint256 = smt.bit_length(p.bitmap)
        kb: uint256 = convert(key, uint256)
        split: uint256 = 256 - smt.bit_length(kb ^ convert(p.other_key, uint256))
        other: bytes32 = smt.leaf_hash(p.other_key, p.other_value_hash)
        if (kb >> (255 - split)) & 1 == 1:
            terminal = self.node(other, terminal)
        else:
            terminal = self.node(terminal, other)
        for i: uint256 in range(split - d, bound=256):
            j: uint256 = split - 1 - i
            if (kb >> (255 - j)) & 1 == 1:
                terminal = self.node(empty(bytes32), terminal)
            else:
                terminal = self.node(terminal, empty(bytes32))
    ok: bool = False
    h: bytes32 = empty(bytes32)
    ok, h = smt.fold(key, terminal, p.bitmap, p.siblings)
    assert ok, "witness: bad proof"
    return h


@internal
@pure
def rewrite(c: Cursor, key: bytes32, leaf: Bytes[MAX_LEAF], op: trace.Opening) -> Cursor:
    """Open `key` again against the current root (`op`) and write `leaf` there
    (a leaf read earlier, against an older root); an empty `leaf` deletes it."""
    self.verify_leaf(c, key, op)
    return Cursor(root=self.write_leaf(c.root, key, op, leaf), used=c.used + 1)


@internal
@pure
def account_key(account: address) -> bytes32:
    return keccak256(concat(b"\x01", convert(account, bytes20)))


@internal
@pure
def read_account(op: trace.Opening) -> AccountLeaf:
    if not op.present:
        return AccountLeaf(collateral=0, nonces_hash=keccak256(b""))
    assert len(op.value) == 64, "witness: account leaf"
    return abi_decode(op.value, AccountLeaf)


@internal
@pure
def read_globals(c: Cursor, op: trace.Opening) -> Globals:
    """The globals leaf, opened by `op` against the current root."""
    self.verify_leaf(c, GLOBALS_KEY, op)
    assert op.present and len(op.value) == GLOBALS_SIZE, "witness: globals leaf"
    return abi_decode(op.value, Globals)


@internal
@pure
def write_globals(c: Cursor, g: Globals, op: trace.Opening) -> Cursor:
    return self.rewrite(c, GLOBALS_KEY, abi_encode(g), op)


@internal
@pure
def leaf_word(leaf: Bytes[MAX_LEAF], i: uint256) -> uint256:
    """Word `i` of a leaf (0 past its end)."""
    if 32 * i + 32 > len(leaf):
        return 0
    return convert(extract32(leaf, 32 * i), uint256)


@internal
@pure
def leaf_int(leaf: Bytes[MAX_LEAF], i: uint256) -> int256:
    """Word `i` of a leaf as a two's-complement int256 (0 past its end)."""
    if 32 * i + 32 > len(leaf):
        return 0
    return convert(extract32(leaf, 32 * i), int256)


@internal
@pure
def set_word(leaf: Bytes[MAX_LEAF], i: uint256, w: bytes32) -> Bytes[MAX_LEAF]:
    """The leaf with word `i` (< its length in words) replaced; the words after it kept."""
    n: uint256 = len(leaf) // 32
    assert i < n and len(leaf) % 32 == 0, "witness: leaf too short"
    words: bytes32[MAX_LEAF_WORDS] = empty(bytes32[MAX_LEAF_WORDS])
    for k: uint256 in range(n, bound=MAX_LEAF_WORDS):
        words[k] = extract32(leaf, 32 * k)
    words[i] = w
    return slice(abi_encode(words), 0, len(leaf))


# --- item fields --------------------------------------------------------------------

@internal
@pure
def word(item: Bytes[MAX_ITEM], start: uint256, width: uint256) -> uint256:
    """Big-endian unsigned integer of `width` <= 32 bytes at `start` (item padded with zeros)."""
    return convert(extract32(concat(item, empty(bytes32)), start), uint256) >> (8 * (32 - width))


@internal
@pure
def int64_at(item: Bytes[MAX_ITEM], start: uint256) -> int256:
    """Two's-complement signed 8-byte integer at `start`."""
    u: uint256 = self.word(item, start, 8)
    if u >= 2**63:
        return convert(u, int256) - 2**64
    return convert(u, int256)


@internal
@pure
def addr(item: Bytes[MAX_ITEM], start: uint256) -> address:
    return convert(convert(self.word(item, start, 20), uint160), address)


# --- signatures and nonces -------------------------------------------------------

@internal
@view
def recover(digest: bytes32, item: Bytes[MAX_ITEM], at: uint256) -> address:
    """The signer of `digest` by the signature r || s || v at `at`, or the zero
    address when v is not 27/28, r or s is 0 or >= n, or s is high
    (sequencer/core/signing.py)."""
    r: uint256 = self.word(item, at, 32)
    s: uint256 = self.word(item, at + 32, 32)
    v: uint256 = self.word(item, at + 64, 1)
    if v != 27 and v != 28:
        return empty(address)
    if r == 0 or r >= SECP256K1_N or s == 0 or s > SECP256K1_HALF_N:
        return empty(address)
    return ecrecover(digest, v, r, s)


@internal
@view
def eip712_digest(struct_hash: bytes32) -> bytes32:
    return keccak256(concat(b"\x19\x01", DOMAIN_SEPARATOR, struct_hash))


@internal
@view
def signer_ok(struct_hash: bytes32, item: Bytes[MAX_ITEM], at: uint256, account: address) -> bool:
    """The EIP-712 signature at `at` recovers `account`."""
    signer: address = self.recover(self.eip712_digest(struct_hash), item, at)
    return signer != empty(address) and signer == account


@internal
@pure
def nonces_hash(nonces: DynArray[uint256, MAX_NONCES]) -> bytes32:
    """keccak256 of the nonces as big-endian u64s (4 to a word, then cut)."""
    words: uint256[25] = empty(uint256[25])
    for i: uint256 in range(len(nonces), bound=MAX_NONCES):
        words[i // 4] |= convert(convert(nonces[i], uint64), uint256) << (64 * (3 - i % 4))
    return keccak256(slice(abi_encode(words), 0, 8 * len(nonces)))


@internal
@view
def nonce_usable(kept: DynArray[uint256, MAX_NONCES], nonce: uint256) -> bool:
    n: uint256 = len(kept)
    if n > 0 and kept[n - 1] < nonce:
        return True
    if n >= NONCE_WINDOW and nonce <= kept[0]:
        return False
    for k: uint256 in kept:
        if k == nonce:
            return False
    return True


@internal
@view
def record_nonce(kept: DynArray[uint256, MAX_NONCES], nonce: uint256) -> DynArray[uint256, MAX_NONCES]:
    """The kept nonces after using `nonce`: inserted in order, the smallest
    dropped beyond the window."""
    merged: DynArray[uint256, MAX_NONCES + 1] = []
    placed: bool = False
    for k: uint256 in kept:
        if not placed and nonce < k:
            merged.append(nonce)
            placed = True
        merged.append(k)
    if not placed:
        merged.append(nonce)
    out: DynArray[uint256, MAX_NONCES] = []
    drop: uint256 = 0
    if len(merged) > NONCE_WINDOW:
        drop = len(merged) - NONCE_WINDOW
    for i: uint256 in range(len(merged), bound=MAX_NONCES + 1):
        if i >= drop:
            out.append(merged[i])
    return out


@internal
@view
def user_checks(struct_hash: bytes32, item: Bytes[MAX_ITEM], sig_at: uint256, account: address, nonce: uint256,
                expiry: uint256, ctx: trace.Ctx, acct: AccountLeaf, nonces: DynArray[uint256, MAX_NONCES]) -> bool:
    """What every user-signed record passes (rules.base.process_user_preamble):
    the expiry window, the account's signature, a usable nonce."""
    if expiry < ctx.timestamp_ms or expiry > ctx.timestamp_ms + MAX_EXPIRY_AHEAD_MS:
        return False
    if not self.signer_ok(struct_hash, item, sig_at, account):
        return False
    assert self.nonces_hash(nonces) == acct.nonces_hash, "witness: nonces"
    return self.nonce_usable(nonces, nonce)


@internal
@view
def user_preamble(struct_hash: bytes32, item: Bytes[MAX_ITEM], sig_at: uint256, account: address,
                  amount: uint256, nonce: uint256, expiry: uint256, ctx: trace.Ctx, acct: AccountLeaf,
                  nonces: DynArray[uint256, MAX_NONCES]) -> bool:
    """Amount, expiry window, signature, nonce window and free collateral."""
    if amount == 0 or amount > MAX_AMOUNT:
        return False
    if not self.user_checks(struct_hash, item, sig_at, account, nonce, expiry, ctx, acct, nonces):
        return False
    return acct.collateral >= amount


@internal
@view
def account_leaf(collateral: uint256, nonce: uint256, nonces: DynArray[uint256, MAX_NONCES]) -> Bytes[MAX_LEAF]:
    """The account leaf with `collateral` and `nonce` recorded."""
    return abi_encode(collateral, self.nonces_hash(self.record_nonce(nonces, nonce)))
