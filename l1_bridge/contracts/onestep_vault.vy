# pragma version ~=0.4.1
"""
@title isoroll one-step, the backstop vault kinds
@notice onestep.vy routes the record items of VaultDeposit (6), VaultWithdraw
    (7) and VaultUnwind (21) here; this contract re-executes
    sequencer/core/rules/vault.py against the witness, in the order of
    docs/fraud-proofs.md, and returns the state root after the record and the
    receipt outcome. The twin of prover/plan_vault.py (the witness plan).
    The vault's equity E (its free collateral plus each of its positions at
    the mark: a Fraction in Python) is computed exactly as the integer
    E x VAULT_SCALE, VAULT_SCALE the least common multiple of the market
    table's scales; the share maths then divide integers once, with Python's
    floor.
"""
import records
import trace
import onestep_lib as lib
import onestep_market as mk
import onestep_vault_equity as ve

initializes: lib
initializes: mk
initializes: ve[mk := mk]

exports: (lib.DOMAIN_SEPARATOR, lib.MAX_AMOUNT, lib.MAX_EXPIRY_AHEAD_MS, lib.NONCE_WINDOW, mk.market_table,
          ve.market_ids, ve.vault_scale)

MAX_OPENINGS: constant(uint256) = trace.MAX_OPENINGS
MAX_NONCES: constant(uint256) = trace.MAX_NONCES
MAX_ITEM: constant(uint256) = records.MAX_ITEM_SIZE
MAX_LEAF: constant(uint256) = trace.MAX_LEAF
MAX_MARKETS: constant(uint256) = mk.MAX_MARKETS
PPM: constant(int256) = mk.PPM
MAX_INT64: constant(int256) = 2**63 - 1
TAG_VAULT_DEPOSIT: constant(uint256) = 6
TAG_VAULT_WITHDRAW: constant(uint256) = 7
TAG_VAULT_UNWIND: constant(uint256) = 21
VAULT: constant(address) = ve.VAULT  # rules.vault.VAULT_ADDRESS
IMMEDIATE_OR_CANCEL: constant(uint256) = 1
ORDER_SEQ: constant(uint256) = 11  # the order leaf's last word
VAULT_DEPOSIT_TYPEHASH: constant(bytes32) = keccak256("VaultDeposit(address account,uint256 amount,uint256 minShares,uint64 nonce,uint64 expiry)")
VAULT_WITHDRAW_TYPEHASH: constant(bytes32) = keccak256("VaultWithdraw(address account,uint256 shares,uint256 minAmount,uint64 nonce,uint64 expiry)")

# the preset's vault constants (sequencer.core.presets.Preset vault_*)
VAULT_MIN_DEPOSIT: public(immutable(uint256))
VAULT_LOCKUP_MS: public(immutable(uint256))
VAULT_UNWIND_INTERVAL_MS: public(immutable(uint256))
VAULT_UNWIND_PPM: public(immutable(uint256))
VAULT_UNWIND_SLIPPAGE_PPM: public(immutable(uint256))


struct Move:
    # what a deposit or a withdrawal that applies writes
    ok: bool
    collateral: uint256     # the account's free collateral
    free: uint256           # the vault's free collateral
    held: uint256           # the holder's shares
    unlock_ms: uint256
    total: uint256


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, MAX_MARKETS], min_deposit: uint256, lockup_ms: uint256,
             unwind_interval_ms: uint256, unwind_ppm: uint256, unwind_slippage_ppm: uint256):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    assert max_amount <= convert(MAX_INT64, uint256), "max amount"
    assert unwind_interval_ms > 0, "unwind interval"
    mk.init_markets(markets)
    ve.init_vault(markets)
    VAULT_MIN_DEPOSIT = min_deposit
    VAULT_LOCKUP_MS = lockup_ms
    VAULT_UNWIND_INTERVAL_MS = unwind_interval_ms
    VAULT_UNWIND_PPM = unwind_ppm
    VAULT_UNWIND_SLIPPAGE_PPM = unwind_slippage_ppm


# --- the vault's equity: onestep_vault_equity.vy ---------------------------------------

@internal
@view
def redeem(shares: uint256, equity: int256, total: uint256, free: uint256) -> uint256:
    """floor(shares x (E + 1) / (T + 1)) (rules.vault.compute_amount_for_shares),
    0 when it is not positive, more than `free` when the quotient alone is:
    (E + 1) x VAULT_SCALE = q x D + r with D = VAULT_SCALE x (T + 1), so the
    amount is shares x q + floor(shares x r / D) and needs no 512-bit product."""
    x: int256 = equity + convert(ve.vault_scale, int256)
    if x <= 0:
        return 0
    d: uint256 = ve.vault_scale * (total + 1)
    q: uint256 = convert(x, uint256) // d
    if q > free:
        return max_value(uint256)
    return shares * q + shares * (convert(x, uint256) % d) // d


# --- deposit and withdraw -----------------------------------------------------------------

@internal
@view
def terms_ok(item: Bytes[MAX_ITEM], deposit: bool) -> bool:
    """The checks of the record alone (rules.vault, before the preamble): the
    amount (or shares) 1..max, min_shares / min_amount within 0..2**63 - 1; a
    deposit at least the minimum, not from the vault or the insurance fund."""
    account: address = lib.addr(item, 2)
    amount: uint256 = lib.word(item, 22, 8)
    if amount == 0 or amount > lib.MAX_AMOUNT or lib.word(item, 30, 8) > convert(MAX_INT64, uint256):
        return False
    return not deposit or (amount >= VAULT_MIN_DEPOSIT and account != VAULT and account != empty(address))


@internal
@view
def move(item: Bytes[MAX_ITEM], deposit: bool, v: ve.Vault, holder: Bytes[MAX_LEAF], acct: lib.AccountLeaf,
         ctx: trace.Ctx, nonces: DynArray[uint256, MAX_NONCES]) -> Move:
    """rules.vault.process_vault_deposit / process_vault_withdraw from what
    they read: the preamble, then the shares at the equity per share, each
    rounded against the actor."""
    account: address = lib.addr(item, 2)
    amount: uint256 = lib.word(item, 22, 8)   # a deposit's amount, a withdrawal's shares
    bound: uint256 = lib.word(item, 30, 8)    # min_shares, min_amount
    nonce: uint256 = lib.word(item, 38, 8)
    expiry: uint256 = lib.word(item, 46, 8)
    typehash: bytes32 = VAULT_WITHDRAW_TYPEHASH
    if deposit:
        typehash = VAULT_DEPOSIT_TYPEHASH
    m: Move = Move(ok=False, collateral=acct.collateral, free=v.account.collateral, held=lib.leaf_word(holder, 0),
                   unlock_ms=lib.leaf_word(holder, 1), total=v.total)
    if account == VAULT:
        m.held = 0   # the vault's own share leaf is the total: it holds no shares
    struct_hash: bytes32 = keccak256(abi_encode(typehash, account, amount, bound, nonce, expiry))
    if not lib.user_checks(struct_hash, item, 54, account, nonce, expiry, ctx, acct, nonces) or not v.valued:
        return m
    unit: int256 = convert(ve.vault_scale, int256)
    if deposit:
        if m.collateral < amount or v.equity + unit <= 0:
            return m
        shares: uint256 = amount * (v.total + 1) * ve.vault_scale // convert(v.equity + unit, uint256)
        if shares == 0 or shares < bound or v.total + shares > convert(MAX_INT64, uint256):
            return m
        m.collateral -= amount
        m.free += amount
        m.held += shares
        m.total += shares
        m.unlock_ms = ctx.timestamp_ms + VAULT_LOCKUP_MS
    else:
        if m.held < amount or ctx.timestamp_ms < m.unlock_ms:
            return m
        paid: uint256 = self.redeem(amount, v.equity, v.total, m.free)
        if paid == 0 or paid < bound or paid > m.free:
            return m
        m.collateral += paid
        m.free -= paid
        m.held -= amount
        m.total -= amount
    m.ok = True
    return m


@internal
@pure
def share_leaf(shares: uint256, unlock_ms: uint256) -> Bytes[MAX_LEAF]:
    """sequencer/core/commitment.py encode_vault_share_leaf; b"" (the leaf
    deleted) when no shares are left: a holder's last shares redeemed, or the
    vault's last (its total)."""
    if shares == 0:
        return b""
    return abi_encode(shares, unlock_ms)


# --- unwind ---------------------------------------------------------------------------------

@internal
@pure
def msgpack_uint(x: uint256) -> Bytes[9]:
    """msgpack's smallest encoding of an unsigned integer below 2**64 (msgspec's)."""
    w: bytes32 = convert(x, bytes32)
    if x < 128:
        return slice(w, 31, 1)
    if x < 256:
        return concat(b"\xcc", slice(w, 31, 1))
    if x < 65536:
        return concat(b"\xcd", slice(w, 30, 2))
    if x < 2**32:
        return concat(b"\xce", slice(w, 28, 4))
    return concat(b"\xcf", slice(w, 24, 8))


@internal
@view
def unwind_due(pos: mk.Position, market: Bytes[MAX_LEAF], p: mk.MarketParams, timestamp_ms: uint256) -> (int256, int256):
    """rules.vault.compute_vault_unwind: VAULT_UNWIND_PPM of the position rounded
    up to a step (at most all of it), and the limit VAULT_UNWIND_SLIPPAGE_PPM
    through the mark on a tick (a sell rounded down, a buy up); (0, 0) when
    none is due (no position or no fresh mark)."""
    mark: int256 = mk.fresh_mark(market, p, timestamp_ms)
    if pos.size == 0 or mark == 0:
        return 0, 0
    lots: int256 = abs(pos.size)
    step: int256 = convert(p.step_size, int256)
    tick: int256 = convert(p.tick_size, int256)
    slip: int256 = convert(VAULT_UNWIND_SLIPPAGE_PPM, int256)
    part: int256 = mk.ceil_div(mk.ceil_div(lots * convert(VAULT_UNWIND_PPM, int256), PPM), step) * step
    price: int256 = 0
    if pos.size > 0:
        price = mk.floor_div(mk.floor_div(mark * (PPM - slip), PPM), tick) * tick
    else:
        price = mk.ceil_div(mk.ceil_div(mark * (PPM + slip), PPM), tick) * tick
    return min(part, lots), price


@internal
@view
def unwind_order(item: Bytes[MAX_ITEM], pos: mk.Position, market: Bytes[MAX_LEAF], p: mk.MarketParams,
                 ctx: trace.Ctx) -> Bytes[MAX_LEAF]:
    """rules.vault.process_vault_unwind: the order leaf of the unwind due (its
    seq, word 11, left 0), or b"" when the record is not it (size and limit are
    the rule's, the limit within 1..2**63 - 1). The order's params hash is
    keccak of the record's msgpack bytes (fixarray [21, market, size, price])."""
    market_id: uint256 = lib.word(item, 2, 4)
    size: uint256 = lib.word(item, 6, 8)
    price: uint256 = lib.word(item, 14, 8)
    due_size: int256 = 0
    due_price: int256 = 0
    due_size, due_price = self.unwind_due(pos, market, p, ctx.timestamp_ms)
    if due_price <= 0 or due_price > MAX_INT64:
        return b""
    if convert(size, int256) != due_size or convert(price, int256) != due_price:
        return b""
    params_hash: bytes32 = keccak256(concat(b"\x94\x15", self.msgpack_uint(market_id), self.msgpack_uint(size),
                                            self.msgpack_uint(price)))
    return abi_encode(params_hash, size, empty(uint256), False, market_id, pos.size < 0, price, convert(1, uint256),
                      IMMEDIATE_OR_CANCEL, True, ctx.timestamp_ms, empty(uint256))


# --- the entry ------------------------------------------------------------------------------
# The witness is read here, one opening at a time: an internal function given
# `openings` would copy all MAX_OPENINGS of them into memory (the gas of a step).

@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    """
    @notice The state root after a vault record item in an open block, and the
        receipt outcome (a failed record changes nothing). A wrong length is a
        NOOP, as in onestep.vy.
        VaultDeposit / VaultWithdraw witness: the vault account, its position
        in each market of the table (ascending ids), the market after each
        position with a size, the total shares, the holder's shares, the
        account (all against the pre-state root; the account is the first
        write); if it applies: the vault account, the holder's shares and the
        total written. VaultUnwind: the vault's position, this interval's
        unwind order (must be absent), the market; if it applies: globals
        (order_count + 1) and the order written (created).
    """
    n: uint256 = len(item)
    tag: uint256 = lib.word(item, 1, 1)
    if ctx.block_open == 0 or n < 2 or lib.word(item, 0, 1) != 2:
        return state_root, False
    c: lib.Cursor = lib.Cursor(root=state_root, used=0)
    op: trace.Opening = empty(trace.Opening)
    if (tag == TAG_VAULT_DEPOSIT or tag == TAG_VAULT_WITHDRAW) and n == 119:
        deposit: bool = tag == TAG_VAULT_DEPOSIT
        if not self.terms_ok(item, deposit):
            return state_root, False
        # the vault (rules.vault.compute_vault_equity, get_total_shares)
        op = openings[lib.at(c, len(openings))]
        lib.verify_leaf(c, lib.account_key(VAULT), op)
        c.used += 1
        v: ve.Vault = ve.start(lib.read_account(op))
        for market_id: uint256 in ve.market_ids:
            op = openings[lib.at(c, len(openings))]
            lib.verify_leaf(c, mk.position_key(VAULT, market_id), op)
            c.used += 1
            if op.present:
                pos: mk.Position = mk.read_position(op)
                if pos.size != 0:
                    op = openings[lib.at(c, len(openings))]
                    lib.verify_leaf(c, mk.market_key(market_id), op)
                    c.used += 1
                # op: the market after a position with a size (a flat one reads no market)
                v = ve.add_position(v, pos, op.value, market_id, ctx.timestamp_ms)
        op = openings[lib.at(c, len(openings))]
        lib.verify_leaf(c, mk.vault_share_key(VAULT), op)
        c.used += 1
        v.total = lib.leaf_word(op.value, 0)
        # the witness bound: the reads so far, the holder, the account and three writes
        assert c.used + 5 <= MAX_OPENINGS, "pending"
        account: address = lib.addr(item, 2)
        holder_key: bytes32 = mk.vault_share_key(account)
        op = openings[lib.at(c, len(openings))]
        lib.verify_leaf(c, holder_key, op)
        c.used += 1
        holder: Bytes[MAX_LEAF] = op.value
        acct_key: bytes32 = lib.account_key(account)
        op = openings[lib.at(c, len(openings))]
        lib.verify_leaf(c, acct_key, op)
        c.used += 1
        m: Move = self.move(item, deposit, v, holder, lib.read_account(op), ctx, nonces)
        if not m.ok:
            return state_root, False
        c.root = lib.write_leaf(state_root, acct_key, op, lib.account_leaf(m.collateral, lib.word(item, 38, 8), nonces))
        c = lib.rewrite(c, lib.account_key(VAULT), abi_encode(m.free, v.account.nonces_hash),
                        openings[lib.at(c, len(openings))])
        c = lib.rewrite(c, holder_key, self.share_leaf(m.held, m.unlock_ms), openings[lib.at(c, len(openings))])
        c = lib.rewrite(c, mk.vault_share_key(VAULT), self.share_leaf(m.total, 0), openings[lib.at(c, len(openings))])
        return c.root, True
    if tag == TAG_VAULT_UNWIND and n == 22:
        market_id: uint256 = lib.word(item, 2, 4)
        found: bool = False
        p: mk.MarketParams = empty(mk.MarketParams)
        found, p = mk.market_params(market_id)
        if not found:
            return state_root, False
        nonce: uint256 = (ctx.timestamp_ms // VAULT_UNWIND_INTERVAL_MS) << 32 | market_id
        # past 8 bytes the rules' order key does not exist (prover.keys): not ported
        assert nonce < 2**64, "pending"
        op = openings[lib.at(c, len(openings))]
        lib.verify_leaf(c, mk.position_key(VAULT, market_id), op)
        c.used += 1
        pos: mk.Position = mk.read_position(op)
        order_key: bytes32 = mk.order_key(VAULT, nonce)
        op = openings[lib.at(c, len(openings))]
        lib.verify_leaf(c, order_key, op)
        c.used += 1
        if op.present:   # one unwind per market per interval
            return state_root, False
        op = openings[lib.at(c, len(openings))]
        lib.verify_leaf(c, mk.market_key(market_id), op)
        c.used += 1
        leaf: Bytes[MAX_LEAF] = self.unwind_order(item, pos, op.value, p, ctx)
        if len(leaf) == 0:
            return state_root, False
        g: lib.Globals = lib.read_globals(c, openings[lib.at(c, len(openings))])
        g.order_count += 1
        c = lib.write_globals(c, g, openings[lib.at(c, len(openings))])
        leaf = lib.set_word(leaf, ORDER_SEQ, convert(g.order_count, bytes32))
        return lib.rewrite(c, order_key, leaf, openings[lib.at(c, len(openings))]).root, True
    return state_root, False
