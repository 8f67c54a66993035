# pragma version ~=0.4.1
"""
@title isoroll one-step: re-execute one trace item on L1
@notice The twin of prover/trace.py (docs/fraud-proofs.md). Given a trace
    position (state root, ctx), one item and a witness (every leaf the item
    touches, opened against the root at the moment it is touched, in a fixed
    order per kind, and the sender's kept nonces), compute the next position.
    Done: BLOCK_START, BLOCK_END, NOOP / malformed items, Deposit,
    ForcedWithdrawal, Transfer, Withdraw. Pending (revert "pending"): the
    perps kinds and ForcedClose (tag 50). A witness that does not verify reverts: it proves nothing.
    State leaves (sequencer/core/commitment.py): account = collateral ||
    nonces_hash; globals = 11 words.
"""
import smt
import records
import trace

ITEM_BLOCK_START: constant(uint256) = 1
ITEM_RECORD: constant(uint256) = 2
ITEM_BLOCK_END: constant(uint256) = 3
TAG_TRANSFER: constant(uint256) = 1
TAG_WITHDRAW: constant(uint256) = 2
TAG_DEPOSIT: constant(uint256) = 48
TAG_FORCED_WITHDRAWAL: constant(uint256) = 49
MAX_OPENINGS: constant(uint256) = trace.MAX_OPENINGS
MAX_LEAF: constant(uint256) = trace.MAX_LEAF
MAX_NONCES: constant(uint256) = trace.MAX_NONCES
MAX_INT64: constant(uint256) = 2**63 - 1  # deposits ever credited stay within the log's 64-bit integers
SECP256K1_N: constant(uint256) = 115792089237316195423570985008687907852837564279074904382605163141518161494337
SECP256K1_HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
# keccak256(0x05 || "globals")
GLOBALS_KEY: constant(bytes32) = keccak256(b"\x05globals")
TRANSFER_TYPEHASH: constant(bytes32) = keccak256("Transfer(address account,address to,uint256 amount,uint64 nonce,uint64 expiry)")
WITHDRAW_TYPEHASH: constant(bytes32) = keccak256("Withdraw(address account,uint256 amount,uint64 nonce,uint64 expiry)")

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
    root: bytes32
    used: uint256


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256):
    assert nonce_window > 0 and nonce_window <= MAX_NONCES, "window"
    DOMAIN_SEPARATOR = domain_separator
    MAX_AMOUNT = max_amount
    MAX_EXPIRY_AHEAD_MS = max_expiry_ahead_ms
    NONCE_WINDOW = nonce_window


# --- positions ------------------------------------------------------------------

@external
@pure
def ctx_hash(ctx: trace.Ctx) -> bytes32:
    return keccak256(abi_encode(ctx))


@external
@pure
def claim(state_root: bytes32, ctx: trace.Ctx) -> bytes32:
    return trace.claim(state_root, ctx)


# --- the state tree ---------------------------------------------------------------

@internal
@pure
def node(left: bytes32, right: bytes32) -> bytes32:
    return keccak256(concat(b"\x01", left, right))


@internal
@pure
def open_leaf(c: Cursor, key: bytes32, openings: DynArray[trace.Opening, MAX_OPENINGS]) -> trace.Opening:
    """The next opening, verified against the current root (reverts if it does not verify)."""
    assert c.used < len(openings), "witness: missing opening"
    op: trace.Opening = openings[c.used]
    ok: bool = False
    if op.present:
        ok = smt.verify(c.root, key, keccak256(op.value), op.proof)
    else:
        ok = smt.verify_exclusion(c.root, key, op.proof)
    assert ok, "witness: bad opening"
    return op


@internal
@pure
def write_leaf(root: bytes32, key: bytes32, op: trace.Opening, leaf: Bytes[MAX_LEAF]) -> bytes32:
    """The root after `key` takes the value `leaf`, from its opening (verified against `root`)."""
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
def read_globals(op: trace.Opening) -> Globals:
    assert op.present and len(op.value) == MAX_LEAF, "witness: globals leaf"
    return abi_decode(op.value, Globals)


@internal
@pure
def write_globals(c: Cursor, g: Globals, openings: DynArray[trace.Opening, MAX_OPENINGS]) -> Cursor:
    op: trace.Opening = self.open_leaf(c, GLOBALS_KEY, openings)
    return Cursor(root=self.write_leaf(c.root, GLOBALS_KEY, op, abi_encode(g)), used=c.used + 1)


# --- item fields --------------------------------------------------------------------

@internal
@pure
def word(item: Bytes[records.MAX_ITEM_SIZE], start: uint256, width: uint256) -> uint256:
    """Big-endian unsigned integer of `width` <= 32 bytes at `start` (item padded with zeros)."""
    return convert(extract32(concat(item, empty(bytes32)), start), uint256) >> (8 * (32 - width))


@internal
@pure
def addr(item: Bytes[records.MAX_ITEM_SIZE], start: uint256) -> address:
    return convert(convert(self.word(item, start, 20), uint160), address)


# --- signatures and nonces -------------------------------------------------------

@internal
@view
def signer_ok(struct_hash: bytes32, item: Bytes[records.MAX_ITEM_SIZE], at: uint256, account: address) -> bool:
    """EIP-712 signature r || s || v at `at`: v 27/28, 0 < r, s < n, low s,
    and it recovers `account` (sequencer/core/signing.py)."""
    r: uint256 = self.word(item, at, 32)
    s: uint256 = self.word(item, at + 32, 32)
    v: uint256 = self.word(item, at + 64, 1)
    if v != 27 and v != 28:
        return False
    if r == 0 or r >= SECP256K1_N or s == 0 or s > SECP256K1_HALF_N:
        return False
    digest: bytes32 = keccak256(concat(b"\x19\x01", DOMAIN_SEPARATOR, struct_hash))
    signer: address = ecrecover(digest, v, r, s)
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
def user_preamble(struct_hash: bytes32, item: Bytes[records.MAX_ITEM_SIZE], sig_at: uint256, account: address,
                  amount: uint256, nonce: uint256, expiry: uint256, ctx: trace.Ctx, acct: AccountLeaf,
                  nonces: DynArray[uint256, MAX_NONCES]) -> bool:
    """Amount, expiry window, signature, nonce window and free collateral."""
    if amount == 0 or amount > MAX_AMOUNT:
        return False
    if expiry < ctx.timestamp_ms or expiry > ctx.timestamp_ms + MAX_EXPIRY_AHEAD_MS:
        return False
    if not self.signer_ok(struct_hash, item, sig_at, account):
        return False
    assert self.nonces_hash(nonces) == acct.nonces_hash, "witness: nonces"
    if not self.nonce_usable(nonces, nonce):
        return False
    return acct.collateral >= amount


@internal
@view
def debit(acct: AccountLeaf, amount: uint256, nonce: uint256, nonces: DynArray[uint256, MAX_NONCES]) -> Bytes[MAX_LEAF]:
    return abi_encode(acct.collateral - amount, self.nonces_hash(self.record_nonce(nonces, nonce)))


# --- the rules --------------------------------------------------------------------

@internal
@view
def transfer(c0: Cursor, ctx: trace.Ctx, item: Bytes[records.MAX_ITEM_SIZE], openings: DynArray[trace.Opening, MAX_OPENINGS],
             nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    account: address = self.addr(item, 2)
    to: address = self.addr(item, 22)
    amount: uint256 = self.word(item, 42, 8)
    nonce: uint256 = self.word(item, 50, 8)
    expiry: uint256 = self.word(item, 58, 8)
    key: bytes32 = self.account_key(account)
    op: trace.Opening = self.open_leaf(c0, key, openings)
    acct: AccountLeaf = self.read_account(op)
    struct_hash: bytes32 = keccak256(abi_encode(TRANSFER_TYPEHASH, account, to, amount, nonce, expiry))
    if not self.user_preamble(struct_hash, item, 66, account, amount, nonce, expiry, ctx, acct, nonces):
        return c0.root, False
    if to == account:
        return self.write_leaf(c0.root, key, op, self.debit(acct, 0, nonce, nonces)), True
    c: Cursor = Cursor(root=self.write_leaf(c0.root, key, op, self.debit(acct, amount, nonce, nonces)), used=1)
    to_key: bytes32 = self.account_key(to)
    op_to: trace.Opening = self.open_leaf(c, to_key, openings)
    receiver: AccountLeaf = self.read_account(op_to)
    return self.write_leaf(c.root, to_key, op_to, abi_encode(receiver.collateral + amount, receiver.nonces_hash)), True


@internal
@view
def withdraw(c0: Cursor, ctx: trace.Ctx, item: Bytes[records.MAX_ITEM_SIZE], openings: DynArray[trace.Opening, MAX_OPENINGS],
             nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, trace.Ctx, bool):
    account: address = self.addr(item, 2)
    amount: uint256 = self.word(item, 22, 8)
    nonce: uint256 = self.word(item, 30, 8)
    expiry: uint256 = self.word(item, 38, 8)
    key: bytes32 = self.account_key(account)
    op: trace.Opening = self.open_leaf(c0, key, openings)
    acct: AccountLeaf = self.read_account(op)
    struct_hash: bytes32 = keccak256(abi_encode(WITHDRAW_TYPEHASH, account, amount, nonce, expiry))
    if not self.user_preamble(struct_hash, item, 46, account, amount, nonce, expiry, ctx, acct, nonces):
        return c0.root, ctx, False
    c: Cursor = Cursor(root=self.write_leaf(c0.root, key, op, self.debit(acct, amount, nonce, nonces)), used=1)
    g: Globals = self.read_globals(self.open_leaf(c, GLOBALS_KEY, openings))
    out: trace.Ctx = ctx
    g, out = self.add_withdrawal(g, out, account, amount)
    return self.write_globals(c, g, openings).root, out, True


@internal
@pure
def add_withdrawal(g: Globals, ctx: trace.Ctx, account: address, amount: uint256) -> (Globals, trace.Ctx):
    """The withdrawal abi.encode(index, account, amount, head + 1) joins the
    output's withdrawals frontier; globals count it."""
    w: bytes32 = keccak256(abi_encode(g.withdrawal_count, account, amount, g.block_number + 1))
    out_g: Globals = g
    out_g.withdrawal_count = g.withdrawal_count + 1
    out_g.total_withdrawn = g.total_withdrawn + amount
    out_c: trace.Ctx = ctx
    out_c.withdrawals = records.push(ctx.withdrawals, records.list_leaf(w))
    return out_g, out_c


@internal
@view
def inbox(c0: Cursor, ctx: trace.Ctx, item: Bytes[records.MAX_ITEM_SIZE], tag: uint256,
          openings: DynArray[trace.Opening, MAX_OPENINGS]) -> (bytes32, trace.Ctx, bool):
    index: uint256 = self.word(item, 2, 8)
    account: address = self.addr(item, 10)
    amount: uint256 = self.word(item, 30, 32)
    g: Globals = self.read_globals(self.open_leaf(c0, GLOBALS_KEY, openings))
    if index != g.inbox_count:
        return c0.root, ctx, False
    key: bytes32 = self.account_key(account)
    op: trace.Opening = self.open_leaf(Cursor(root=c0.root, used=1), key, openings)
    acct: AccountLeaf = self.read_account(op)
    c: Cursor = Cursor(root=c0.root, used=2)
    out: trace.Ctx = ctx
    kind: bytes1 = 0x01
    if tag == TAG_DEPOSIT:
        if amount > 0 and amount <= MAX_AMOUNT and g.total_deposited + amount <= MAX_INT64:
            c.root = self.write_leaf(c.root, key, op, abi_encode(acct.collateral + amount, acct.nonces_hash))
            g.total_deposited += amount
    else:
        kind = 0x02
        paid: uint256 = min(amount, acct.collateral)
        if op.present and paid > 0:
            c.root = self.write_leaf(c.root, key, op, abi_encode(acct.collateral - paid, acct.nonces_hash))
            g, out = self.add_withdrawal(g, out, account, paid)
    entry: Bytes[61] = concat(kind, convert(convert(index, uint64), bytes8), convert(account, bytes20), convert(amount, bytes32))
    g.inbox_hash = keccak256(concat(g.inbox_hash, entry))
    g.inbox_count += 1
    return self.write_globals(c, g, openings).root, out, True


@internal
@view
def _apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[records.MAX_ITEM_SIZE], openings: DynArray[trace.Opening, MAX_OPENINGS],
           nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, trace.Ctx, bool):
    n: uint256 = len(item)
    kind: uint256 = self.word(item, 0, 1)
    c0: Cursor = Cursor(root=state_root, used=0)
    out: trace.Ctx = ctx
    if kind == ITEM_BLOCK_START and n == 49:
        g: Globals = self.read_globals(self.open_leaf(c0, GLOBALS_KEY, openings))
        number: uint256 = self.word(item, 1, 8)
        parent: bytes32 = extract32(item, 9)
        ts: uint256 = self.word(item, 41, 8)
        ok: bool = number == g.block_number + 1 and parent == g.block_hash and ts >= g.timestamp_ms
        out.block_open = convert(ok, uint256)
        out.block_number = number
        out.timestamp_ms = ts
        return state_root, out, ok
    if kind == ITEM_BLOCK_END and n == 33:
        out.block_open = 0
        if ctx.block_open == 0:
            return state_root, out, False
        g: Globals = self.read_globals(self.open_leaf(c0, GLOBALS_KEY, openings))
        g.block_number = ctx.block_number
        g.block_hash = extract32(item, 1)
        g.timestamp_ms = ctx.timestamp_ms
        return self.write_globals(c0, g, openings).root, out, True
    if kind != ITEM_RECORD or n < 2:
        return state_root, ctx, False
    tag: uint256 = self.word(item, 1, 1)
    assert tag not in [3, 4, 5, 16, 17, 18, 32, 50], "pending"
    if ctx.block_open == 0:
        return state_root, ctx, False
    if tag == TAG_TRANSFER and n == 131:
        root: bytes32 = empty(bytes32)
        ok: bool = False
        root, ok = self.transfer(c0, ctx, item, openings, nonces)
        return root, ctx, ok
    if tag == TAG_WITHDRAW and n == 111:
        return self.withdraw(c0, ctx, item, openings, nonces)
    if (tag == TAG_DEPOSIT or tag == TAG_FORCED_WITHDRAWAL) and n == 62:
        return self.inbox(c0, ctx, item, tag, openings)
    return state_root, ctx, False


@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[records.MAX_ITEM_SIZE], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, trace.Ctx, bool):
    """
    @notice The trace position after `item` and the receipt outcome.
    """
    return self._apply(state_root, ctx, item, openings, nonces)


@external
@view
def step(state_root: bytes32, ctx: trace.Ctx, item: Bytes[records.MAX_ITEM_SIZE], openings: DynArray[trace.Opening, MAX_OPENINGS],
         nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bytes32):
    """
    @notice (claim before, claim after) `item`.
    """
    root: bytes32 = empty(bytes32)
    out: trace.Ctx = ctx
    ok: bool = False
    root, out, ok = self._apply(state_root, ctx, item, openings, nonces)
    return trace.claim(state_root, ctx), trace.claim(root, out)
