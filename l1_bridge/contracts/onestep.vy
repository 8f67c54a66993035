# pragma version ~=0.4.1
"""
@title isoroll one-step: re-execute one trace item on L1
@notice The twin of prover/trace.py (docs/fraud-proofs.md). Given a trace
    position (state root, ctx), one item and a witness (every leaf the item
    touches, opened against the root at the moment it is touched, in a fixed
    order per kind, and the sender's kept nonces), compute the next position.
    Here: BLOCK_START, BLOCK_END, NOOP / malformed items, Deposit,
    ForcedWithdrawal, Transfer, Withdraw. Every other record kind goes by
    its tag to a family contract (onestep_perps.vy and the others listed in
    prover/families.py ONESTEP_FAMILIES: one contract would pass the 24 KB
    code limit), each deployed with the same market table
    (onestep_market.vy). A known record tag with no family reverts
    "pending". A witness that does not verify reverts: it proves nothing. The shared witness and
    signature code is onestep_lib.vy.
"""
import records
import trace
import onestep_lib as lib

initializes: lib

exports: (lib.DOMAIN_SEPARATOR, lib.MAX_AMOUNT, lib.MAX_EXPIRY_AHEAD_MS, lib.NONCE_WINDOW)

ITEM_BLOCK_START: constant(uint256) = 1
ITEM_RECORD: constant(uint256) = 2
ITEM_BLOCK_END: constant(uint256) = 3
MAX_BLOCK_TIME_MS: constant(uint256) = 253_402_300_799_999  # sequencer.core.presets.MAX_BLOCK_TIME_MS (rules v4)
TAG_TRANSFER: constant(uint256) = 1
TAG_WITHDRAW: constant(uint256) = 2
TAG_DEPOSIT: constant(uint256) = 48
TAG_FORCED_WITHDRAWAL: constant(uint256) = 49
MAX_OPENINGS: constant(uint256) = trace.MAX_OPENINGS
MAX_NONCES: constant(uint256) = trace.MAX_NONCES
MAX_ITEM: constant(uint256) = records.MAX_ITEM_SIZE
MAX_INT64: constant(uint256) = lib.MAX_INT64  # deposits ever credited stay within the log's 64-bit integers
GLOBALS_KEY: constant(bytes32) = lib.GLOBALS_KEY
TRANSFER_TYPEHASH: constant(bytes32) = keccak256("Transfer(address account,address to,uint256 amount,uint64 nonce,uint64 expiry)")
WITHDRAW_TYPEHASH: constant(bytes32) = keccak256("Withdraw(address account,uint256 amount,uint64 nonce,uint64 expiry)")
MAX_FAMILIES: constant(uint256) = 16
MAX_FAMILY_TAGS: constant(uint256) = 8
# every record tag (sequencer/core/records.py; 22 is kept for an explicit
# auction start): prover.records.KNOWN_TAGS. One with no family is pending.
KNOWN_TAGS: constant(uint256[24]) = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23, 24, 32, 48, 49, 50]


struct Family:
    # a family contract and the record tags it re-executes (prover.families.ONESTEP_FAMILIES)
    target: address
    tags: DynArray[uint256, MAX_FAMILY_TAGS]


interface OneStepFamily:
    def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM],
              openings: DynArray[trace.Opening, MAX_OPENINGS],
              nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool): view
    def DOMAIN_SEPARATOR() -> bytes32: view
    def MAX_AMOUNT() -> uint256: view
    def MAX_EXPIRY_AHEAD_MS() -> uint256: view
    def NONCE_WINDOW() -> uint256: view


# the family contract of each record tag it does not re-execute itself
route: public(HashMap[uint256, address])


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             families: DynArray[Family, MAX_FAMILIES]):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    for f: Family in families:
        # every family must check the same signatures, amounts and nonces
        assert staticcall OneStepFamily(f.target).DOMAIN_SEPARATOR() == domain_separator, "family: domain"
        assert staticcall OneStepFamily(f.target).MAX_AMOUNT() == max_amount, "family: max amount"
        assert staticcall OneStepFamily(f.target).MAX_EXPIRY_AHEAD_MS() == max_expiry_ahead_ms, "family: expiry"
        assert staticcall OneStepFamily(f.target).NONCE_WINDOW() == nonce_window, "family: window"
        for tag: uint256 in f.tags:
            assert tag in KNOWN_TAGS, "family: unknown tag"
            assert tag not in [TAG_TRANSFER, TAG_WITHDRAW, TAG_DEPOSIT, TAG_FORCED_WITHDRAWAL], "family: own tag"
            assert self.route[tag] == empty(address), "family: tag routed twice"
            self.route[tag] = f.target


# --- positions ------------------------------------------------------------------

@external
@pure
def ctx_hash(ctx: trace.Ctx) -> bytes32:
    return keccak256(abi_encode(ctx))


@external
@pure
def claim(state_root: bytes32, ctx: trace.Ctx) -> bytes32:
    return trace.claim(state_root, ctx)


# --- the rules --------------------------------------------------------------------

@internal
@view
def transfer(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
             nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    account: address = lib.addr(item, 2)
    to: address = lib.addr(item, 22)
    amount: uint256 = lib.word(item, 42, 8)
    nonce: uint256 = lib.word(item, 50, 8)
    expiry: uint256 = lib.word(item, 58, 8)
    key: bytes32 = lib.account_key(account)
    op: trace.Opening = openings[lib.at(c0, len(openings))]
    lib.verify_leaf(c0, key, op)
    acct: lib.AccountLeaf = lib.read_account(op)
    struct_hash: bytes32 = keccak256(abi_encode(TRANSFER_TYPEHASH, account, to, amount, nonce, expiry))
    if not lib.user_preamble(struct_hash, item, 66, account, amount, nonce, expiry, ctx, acct, nonces):
        return c0.root, False
    if to == account:
        return lib.write_leaf(c0.root, key, op, lib.account_leaf(acct.collateral, nonce, nonces)), True
    c: lib.Cursor = lib.Cursor(root=lib.write_leaf(c0.root, key, op, lib.account_leaf(acct.collateral - amount, nonce, nonces)), used=1)
    to_key: bytes32 = lib.account_key(to)
    op_to: trace.Opening = openings[lib.at(c, len(openings))]
    lib.verify_leaf(c, to_key, op_to)
    receiver: lib.AccountLeaf = lib.read_account(op_to)
    return lib.write_leaf(c.root, to_key, op_to, abi_encode(receiver.collateral + amount, receiver.nonces_hash)), True


@internal
@view
def withdraw(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
             nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, trace.Ctx, bool):
    account: address = lib.addr(item, 2)
    amount: uint256 = lib.word(item, 22, 8)
    nonce: uint256 = lib.word(item, 30, 8)
    expiry: uint256 = lib.word(item, 38, 8)
    key: bytes32 = lib.account_key(account)
    op: trace.Opening = openings[lib.at(c0, len(openings))]
    lib.verify_leaf(c0, key, op)
    acct: lib.AccountLeaf = lib.read_account(op)
    struct_hash: bytes32 = keccak256(abi_encode(WITHDRAW_TYPEHASH, account, amount, nonce, expiry))
    if not lib.user_preamble(struct_hash, item, 46, account, amount, nonce, expiry, ctx, acct, nonces):
        return c0.root, ctx, False
    c: lib.Cursor = lib.Cursor(root=lib.write_leaf(c0.root, key, op, lib.account_leaf(acct.collateral - amount, nonce, nonces)), used=1)
    g: lib.Globals = lib.read_globals(c, openings[lib.at(c, len(openings))])
    out: trace.Ctx = ctx
    g, out = self.add_withdrawal(g, out, account, amount)
    return lib.write_globals(c, g, openings[lib.at(c, len(openings))]).root, out, True


@internal
@pure
def add_withdrawal(g: lib.Globals, ctx: trace.Ctx, account: address, amount: uint256) -> (lib.Globals, trace.Ctx):
    """The withdrawal abi.encode(index, account, amount, head + 1) joins the
    output's withdrawals frontier; globals count it."""
    w: bytes32 = keccak256(abi_encode(g.withdrawal_count, account, amount, g.block_number + 1))
    out_g: lib.Globals = g
    out_g.withdrawal_count = g.withdrawal_count + 1
    out_g.total_withdrawn = g.total_withdrawn + amount
    out_c: trace.Ctx = ctx
    out_c.withdrawals = records.push(ctx.withdrawals, records.list_leaf(w))
    return out_g, out_c


@internal
@view
def inbox(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], tag: uint256,
          openings: DynArray[trace.Opening, MAX_OPENINGS]) -> (bytes32, trace.Ctx, bool):
    index: uint256 = lib.word(item, 2, 8)
    account: address = lib.addr(item, 10)
    amount: uint256 = lib.word(item, 30, 32)
    g: lib.Globals = lib.read_globals(c0, openings[lib.at(c0, len(openings))])
    if index != g.inbox_count:
        return c0.root, ctx, False
    key: bytes32 = lib.account_key(account)
    op: trace.Opening = openings[lib.at(lib.Cursor(root=c0.root, used=1), len(openings))]
    lib.verify_leaf(lib.Cursor(root=c0.root, used=1), key, op)
    acct: lib.AccountLeaf = lib.read_account(op)
    c: lib.Cursor = lib.Cursor(root=c0.root, used=2)
    out: trace.Ctx = ctx
    kind: bytes1 = 0x01
    if tag == TAG_DEPOSIT:
        if amount > 0 and amount <= lib.MAX_AMOUNT and g.total_deposited + amount <= MAX_INT64:
            c.root = lib.write_leaf(c.root, key, op, abi_encode(acct.collateral + amount, acct.nonces_hash))
            g.total_deposited += amount
    else:
        kind = 0x02
        paid: uint256 = min(amount, acct.collateral)
        if op.present and paid > 0:
            c.root = lib.write_leaf(c.root, key, op, abi_encode(acct.collateral - paid, acct.nonces_hash))
            g, out = self.add_withdrawal(g, out, account, paid)
    entry: Bytes[61] = concat(kind, convert(convert(index, uint64), bytes8), convert(account, bytes20), convert(amount, bytes32))
    g.inbox_hash = keccak256(concat(g.inbox_hash, entry))
    g.inbox_count += 1
    return lib.write_globals(c, g, openings[lib.at(c, len(openings))]).root, out, True


@internal
@view
def _apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
           nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, trace.Ctx, bool):
    n: uint256 = len(item)
    kind: uint256 = lib.word(item, 0, 1)
    c0: lib.Cursor = lib.Cursor(root=state_root, used=0)
    out: trace.Ctx = ctx
    if kind == ITEM_BLOCK_START and n == 49:
        g: lib.Globals = lib.read_globals(c0, openings[lib.at(c0, len(openings))])
        number: uint256 = lib.word(item, 1, 8)
        parent: bytes32 = extract32(item, 9)
        ts: uint256 = lib.word(item, 41, 8)
        ok: bool = number == g.block_number + 1 and parent == g.block_hash and ts >= g.timestamp_ms and ts <= MAX_BLOCK_TIME_MS
        out.block_open = convert(ok, uint256)
        out.block_number = number
        out.timestamp_ms = ts
        return state_root, out, ok
    if kind == ITEM_BLOCK_END and n == 33:
        out.block_open = 0
        if ctx.block_open == 0:
            return state_root, out, False
        g: lib.Globals = lib.read_globals(c0, openings[lib.at(c0, len(openings))])
        g.block_number = ctx.block_number
        g.block_hash = extract32(item, 1)
        g.timestamp_ms = ctx.timestamp_ms
        return lib.write_globals(c0, g, openings[lib.at(c0, len(openings))]).root, out, True
    if kind != ITEM_RECORD or n < 2:
        return state_root, ctx, False
    tag: uint256 = lib.word(item, 1, 1)
    family: address = self.route[tag]
    assert family != empty(address) or tag not in KNOWN_TAGS or tag in [TAG_TRANSFER, TAG_WITHDRAW, TAG_DEPOSIT, TAG_FORCED_WITHDRAWAL], "pending"
    if ctx.block_open == 0 or family != empty(address):
        # a family's record in an open block never gets here (apply and step
        # hand it over first: one copy of the witness fewer in memory)
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
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, trace.Ctx, bool):
    """
    @notice The trace position after `item` and the receipt outcome.
    """
    family: address = self._family_of(ctx, item)
    if family != empty(address):
        root: bytes32 = empty(bytes32)
        ok: bool = False
        root, ok = staticcall OneStepFamily(family).apply(state_root, ctx, item, openings, nonces)
        return root, ctx, ok
    return self._apply(state_root, ctx, item, openings, nonces)


@external
@view
def step(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
         nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bytes32):
    """
    @notice (claim before, claim after) `item`.
    """
    root: bytes32 = empty(bytes32)
    out: trace.Ctx = ctx
    ok: bool = False
    family: address = self._family_of(ctx, item)
    if family != empty(address):
        root, ok = staticcall OneStepFamily(family).apply(state_root, ctx, item, openings, nonces)
    else:
        root, out, ok = self._apply(state_root, ctx, item, openings, nonces)
    return trace.claim(state_root, ctx), trace.claim(root, out)


@internal
@view
def _family_of(ctx: trace.Ctx, item: Bytes[MAX_ITEM]) -> address:
    if ctx.block_open == 0 or len(item) < 2 or lib.word(item, 0, 1) != ITEM_RECORD:
        return empty(address)
    return self.route[lib.word(item, 1, 1)]


@external
@view
def family_of(ctx: trace.Ctx, item: Bytes[MAX_ITEM]) -> address:
    """
    @notice The family contract that re-executes a record item in an open
        block (none for the kinds re-executed here, or in a closed block): a
        game hands such an item to it directly, one copy of the witness fewer.
    """
    return self._family_of(ctx, item)
