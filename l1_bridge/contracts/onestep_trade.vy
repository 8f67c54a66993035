# pragma version ~=0.4.1
"""
@title isoroll one-step, Trade
@notice onestep.vy hands this contract the record items of Trade (16) in an
    open block; it re-executes sequencer/core/rules/trades.py process_trade
    (with rules.positions settle_funding and close_and_release, rules.margin
    and rules.mark record_trade_price) against the witness and returns the
    state root after it and the receipt outcome. The twin of
    prover/plan_trade.py (the witness plan) over the Python rule.
    Witness (docs/fraud-proofs.md), first the eight leaves the rule reads,
    each opened against the pre-state root: the maker's order, the taker's
    order, globals, the market, the maker's account and position, the
    taker's account and position; then, if the trade applies, each leaf it
    writes with its final value, opened again against the root of the writes
    before it: the maker's and the taker's orders, accounts and positions,
    the market, globals. A position closed whole (flat with no margin: an
    empty leaf) is a deletion.
"""
import records
import trace
import onestep_lib as lib
import onestep_market as mk

initializes: lib
initializes: mk

exports: (lib.DOMAIN_SEPARATOR, lib.MAX_AMOUNT, lib.MAX_EXPIRY_AHEAD_MS, lib.NONCE_WINDOW, mk.market_table)

MAX_OPENINGS: constant(uint256) = trace.MAX_OPENINGS
MAX_NONCES: constant(uint256) = trace.MAX_NONCES
MAX_ITEM: constant(uint256) = records.MAX_ITEM_SIZE
MAX_LEAF: constant(uint256) = trace.MAX_LEAF
PPM: constant(int256) = mk.PPM
MAX_INT64: constant(int256) = 2**63 - 1
TAG_TRADE: constant(uint256) = 16
TRADE_ITEM_SIZE: constant(uint256) = 78
IMMEDIATE_OR_CANCEL: constant(uint256) = 1
POST_ONLY: constant(uint256) = 2
# order leaf words (sequencer/core/commitment.py encode_order_leaf)
ORDER_SIZE: constant(uint256) = 1
ORDER_FILLED: constant(uint256) = 2
ORDER_CANCELLED: constant(uint256) = 3
ORDER_MARKET: constant(uint256) = 4
ORDER_IS_BUY: constant(uint256) = 5
ORDER_PRICE: constant(uint256) = 6
ORDER_LEVERAGE: constant(uint256) = 7
ORDER_TIME_IN_FORCE: constant(uint256) = 8
ORDER_REDUCE_ONLY: constant(uint256) = 9
ORDER_EXPIRY: constant(uint256) = 10
ORDER_SEQ: constant(uint256) = 11
POSITION_ORDER_EPOCH: constant(uint256) = 4   # the position leaf's fifth word (rules v2)


struct Trade:
    # the record's fields (sequencer.core.records.Trade)
    market: uint256
    maker: address
    maker_nonce: uint256
    taker: address
    taker_nonce: uint256
    price: uint256
    size: uint256


struct Side:
    # one side's leaves as read against the pre-state root (an absent leaf is b"")
    order: Bytes[MAX_LEAF]
    account: Bytes[MAX_LEAF]
    position: Bytes[MAX_LEAF]


struct Fill:
    # one side after settle_fill
    ok: bool
    collateral: uint256
    position: mk.Position
    fee: int256
    long_change: int256
    dust: int256       # the market's funding dust after this side's settlement
    sweep: int256      # funding dust swept to the insurance fund


struct Outcome:
    # whether the trade applies, and the final value of every leaf it writes
    ok: bool
    maker_order: Bytes[MAX_LEAF]
    taker_order: Bytes[MAX_LEAF]
    maker_account: Bytes[MAX_LEAF]
    taker_account: Bytes[MAX_LEAF]
    maker_position: Bytes[MAX_LEAF]
    taker_position: Bytes[MAX_LEAF]
    market: Bytes[MAX_LEAF]
    globals: lib.Globals


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, mk.MAX_MARKETS]):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    assert max_amount <= convert(MAX_INT64, uint256), "max amount"
    mk.init_markets(markets)


# --- the witness --------------------------------------------------------------------

@internal
@pure
def opened(c: lib.Cursor, key: bytes32, op: trace.Opening) -> Bytes[MAX_LEAF]:
    """The leaf at `key` (b"" when absent), opened by `op` against the current root."""
    lib.verify_leaf(c, key, op)
    if not op.present:
        return b""
    assert len(op.value) > 0, "witness: empty leaf"
    return op.value


@internal
@pure
def parse(item: Bytes[MAX_ITEM]) -> Trade:
    """market (4) . maker (20) . maker_nonce (8) . taker (20) . taker_nonce (8) . price (8) . size (8)"""
    return Trade(market=lib.word(item, 2, 4), maker=lib.addr(item, 6), maker_nonce=lib.word(item, 26, 8),
                 taker=lib.addr(item, 34), taker_nonce=lib.word(item, 54, 8), price=lib.word(item, 62, 8),
                 size=lib.word(item, 70, 8))


# --- the checks (rules.trades) -------------------------------------------------------

@internal
@pure
def is_live(order: Bytes[MAX_LEAF], position: Bytes[MAX_LEAF], t: Trade, timestamp_ms: uint256) -> bool:
    """get_live_order: registered, not cancelled (by its flag or by its
    owner's order epoch, the position's fifth word), not expired, of the
    trade's market, with the trade's size left."""
    if len(order) == 0:
        return False
    if lib.leaf_word(order, ORDER_CANCELLED) != 0 or lib.leaf_word(order, ORDER_EXPIRY) < timestamp_ms:
        return False
    if lib.leaf_word(order, ORDER_MARKET) != t.market:
        return False
    if lib.leaf_word(order, ORDER_SEQ) <= lib.leaf_word(position, POSITION_ORDER_EPOCH):
        return False
    return t.size + lib.leaf_word(order, ORDER_FILLED) <= lib.leaf_word(order, ORDER_SIZE)


@internal
@pure
def roles_ok(t: Trade, maker: Bytes[MAX_LEAF], taker: Bytes[MAX_LEAF], order_count: uint256) -> bool:
    """check_trade_roles: two accounts on opposite sides, the taker the order
    placed last, the maker resting before it (not IOC), the taker not post-only."""
    if t.maker == t.taker:
        return False
    if (lib.leaf_word(maker, ORDER_IS_BUY) != 0) == (lib.leaf_word(taker, ORDER_IS_BUY) != 0):
        return False
    taker_seq: uint256 = lib.leaf_word(taker, ORDER_SEQ)
    if taker_seq != order_count or lib.leaf_word(maker, ORDER_SEQ) >= taker_seq:
        return False
    return (lib.leaf_word(maker, ORDER_TIME_IN_FORCE) != IMMEDIATE_OR_CANCEL
            and lib.leaf_word(taker, ORDER_TIME_IN_FORCE) != POST_ONLY)


@internal
@view
def terms_ok(t: Trade, maker: Bytes[MAX_LEAF], taker: Bytes[MAX_LEAF], p: mk.MarketParams) -> bool:
    """check_trade_terms: size and price on the step and tick, within
    1..max, and within both limits."""
    if t.size == 0 or t.size > lib.MAX_AMOUNT or t.size % p.step_size != 0:
        return False
    if t.price == 0 or t.price > lib.MAX_AMOUNT or t.price % p.tick_size != 0:
        return False
    buy: uint256 = lib.leaf_word(maker, ORDER_PRICE)
    sell: uint256 = lib.leaf_word(taker, ORDER_PRICE)
    if lib.leaf_word(maker, ORDER_IS_BUY) == 0:
        buy = lib.leaf_word(taker, ORDER_PRICE)
        sell = lib.leaf_word(maker, ORDER_PRICE)
    return t.price <= buy and t.price >= sell


# --- one side (rules.trades.settle_fill) -------------------------------------------

@internal
@pure
def read_position(leaf: Bytes[MAX_LEAF]) -> mk.Position:
    return mk.position_of(leaf)


@internal
@pure
def close(pos: mk.Position, qty: int256, notional: int256, free: int256) -> (bool, mk.Position, int256):
    """rules.positions.close_and_release: close `qty` lots for the signed
    `notional` (cost removed rounded up, realised PnL rounded down); the PnL
    and the closed share of the margin go to free collateral, never below 0.
    Returns (margin not negative, position, free)."""
    size: int256 = abs(pos.size)
    share: int256 = pos.margin
    removed: int256 = pos.cost
    if qty != size:
        share = mk.floor_div(pos.margin * qty, size)
        removed = mk.ceil_div(pos.cost * qty, size)
    realised: int256 = -notional - removed
    released: int256 = min(max(0, share + realised), max(0, pos.margin + realised))
    out: mk.Position = pos
    if pos.size > 0:
        out.size = pos.size - qty
    else:
        out.size = pos.size + qty
    out.cost = pos.cost - removed
    out.margin = pos.margin + realised - released
    return out.margin >= 0, out, free + released


@internal
@pure
def bounds_ok(pos: mk.Position, opening: int256, price: int256, mark: int256, p: mk.MarketParams) -> bool:
    """check_fill_bounds (funding is settled: nothing owed): not below zero
    equity at the mark; a fill that opens keeps the initial margin at the mark
    and at its price."""
    if pos.size == 0:
        return True
    scale: int256 = convert(p.scale, int256)
    imf: int256 = convert(p.initial_margin_ppm, int256)
    equity: int256 = (pos.margin - pos.cost) * scale + pos.size * mark
    if equity < 0:
        return False
    if opening == 0:
        return True
    if equity * PPM < abs(pos.size) * mark * imf:
        return False
    if price == mark:
        return True
    return ((pos.margin - pos.cost) * scale + pos.size * price) * PPM >= abs(pos.size) * price * imf


@internal
@pure
def settle_fill(side: Side, delta: int256, price: int256, fee_ppm: uint256, p: mk.MarketParams, mark: int256,
                market: Bytes[MAX_LEAF]) -> Fill:
    """rules.trades.settle_fill of one side: funding settled, the closing part
    released at or above the bankruptcy price, the opening part margined at the
    order's leverage, the fee, reduce-only, the 64-bit cost and the bounds at
    the mark. `market` holds the funding dust after the sides before."""
    out: Fill = empty(Fill)
    if len(side.account) == 0:
        return out  # unknown account
    settled: mk.Funding = mk.settle_funding(self.read_position(side.position), market, p)
    pos: mk.Position = settled.position
    out.dust = settled.dust
    out.sweep = settled.sweep
    scale: int256 = convert(p.scale, int256)
    old_size: int256 = pos.size
    sign: int256 = 1
    if delta < 0:
        sign = -1
    closing: int256 = 0
    if old_size != 0 and (old_size > 0) != (delta > 0):
        closing = min(abs(delta), abs(old_size))
    opening: int256 = abs(delta) - closing
    if lib.leaf_word(side.order, ORDER_REDUCE_ONLY) != 0 and opening != 0:
        return out
    free: int256 = convert(lib.leaf_word(side.account, 0), int256)
    if closing != 0:
        # is_solvent_at the fill price: equity >= 0 there
        if (pos.margin - pos.cost) * scale + pos.size * price < 0:
            return out
        solvent: bool = False
        solvent, pos, free = self.close(pos, closing, mk.floor_div(sign * closing * price, scale), free)
        if not solvent:
            return out
    if opening != 0:
        notional: int256 = opening * price // scale
        required: int256 = mk.ceil_div(notional, convert(lib.leaf_word(side.order, ORDER_LEVERAGE), int256))
        if free < required:
            return out
        pos.size += sign * opening
        pos.cost += sign * notional
        pos.margin += required
        free -= required
    fee: int256 = mk.ceil_div(abs(delta) * price // scale * convert(fee_ppm, int256), PPM)
    if free < fee or pos.margin < 0 or abs(pos.cost) > MAX_INT64:
        return out
    if not self.bounds_ok(pos, opening, price, mark, p):
        return out
    out.ok = True
    out.collateral = convert(free - fee, uint256)
    out.position = pos
    out.fee = fee
    out.long_change = max(pos.size, 0) - max(old_size, 0)
    return out


# --- the market (rules.mark.record_trade_price) ----------------------------------------

@internal
@pure
def basis_ema(market: Bytes[MAX_LEAF], price: uint256, timestamp_ms: uint256, p: mk.MarketParams) -> int256:
    """rules.mark.compute_basis_ema: the EMA of the trade-vs-oracle basis,
    weighted by the time since the last trade (at most the half-life),
    clamped to the band at the oracle. Block times never go back, so the
    time since the last trade is not negative."""
    oracle: int256 = convert(lib.leaf_word(market, mk.MARKET_ORACLE_PRICE), int256)
    ema: int256 = lib.leaf_int(market, mk.MARKET_BASIS_EMA)
    band: int256 = oracle * convert(p.mark_basis_band_ppm, int256) // PPM
    sample: int256 = max(-band, min(band, convert(price, int256) - oracle))
    half_life: uint256 = p.mark_ema_half_life_ms
    last: uint256 = lib.leaf_word(market, mk.MARKET_LAST_TRADE_TIME)
    dt: uint256 = half_life
    if last != 0:
        dt = min(timestamp_ms - last, half_life)
    gap: int256 = sample - ema
    if gap != 0 and dt != 0:
        step: int256 = convert(convert(abs(gap), uint256) * dt // (dt + half_life), int256)
        if gap > 0:
            ema += step
        else:
            ema -= step
    return max(-band, min(band, ema))


# --- the writes --------------------------------------------------------------------

@internal
@pure
def account_leaf(old: Bytes[MAX_LEAF], collateral: uint256) -> Bytes[MAX_LEAF]:
    assert len(old) == 64, "witness: account leaf"
    return abi_encode(collateral, extract32(old, 32))


@internal
@pure
def filled_order(order: Bytes[MAX_LEAF], size: uint256) -> Bytes[MAX_LEAF]:
    return lib.set_word(order, ORDER_FILLED, convert(lib.leaf_word(order, ORDER_FILLED) + size, bytes32))


# --- the rule (rules.trades.process_trade) --------------------------------------------

@internal
@view
def execute(t: Trade, maker: Side, taker: Side, market: Bytes[MAX_LEAF], g: lib.Globals,
            timestamp_ms: uint256) -> Outcome:
    """process_trade on the leaves read: whether it applies and the final
    value of every leaf it writes."""
    out: Outcome = empty(Outcome)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(t.market)
    if not found:
        return out
    if (not self.is_live(maker.order, maker.position, t, timestamp_ms)
            or not self.is_live(taker.order, taker.position, t, timestamp_ms)):
        return out
    if not self.roles_ok(t, maker.order, taker.order, g.order_count):
        return out
    if not self.terms_ok(t, maker.order, taker.order, p):
        return out
    mark: int256 = mk.fresh_mark(market, p, timestamp_ms)
    if mark == 0:
        return out
    price: int256 = convert(t.price, int256)
    delta: int256 = convert(t.size, int256)
    if lib.leaf_word(maker.order, ORDER_IS_BUY) == 0:
        delta = -delta
    mf: Fill = self.settle_fill(maker, delta, price, p.maker_fee_ppm, p, mark, market)
    if not mf.ok:
        return out
    tf: Fill = self.settle_fill(taker, -delta, price, p.taker_fee_ppm, p, mark,
                                lib.set_word(market, mk.MARKET_FUNDING_DUST, convert(mf.dust, bytes32)))
    if not tf.ok:
        return out
    out.ok = True
    out.maker_order = self.filled_order(maker.order, t.size)
    out.taker_order = self.filled_order(taker.order, t.size)
    out.maker_account = self.account_leaf(maker.account, mf.collateral)
    out.taker_account = self.account_leaf(taker.account, tf.collateral)
    out.maker_position = mk.position_leaf(mf.position)
    out.taker_position = mk.position_leaf(tf.position)
    # record_trade_price with the trade's change of open interest, and the funding dust of both sides
    oi: int256 = convert(lib.leaf_word(market, mk.MARKET_OPEN_INTEREST), int256) + mf.long_change + tf.long_change
    leaf: Bytes[MAX_LEAF] = lib.set_word(market, mk.MARKET_OPEN_INTEREST, convert(oi, bytes32))
    leaf = lib.set_word(leaf, mk.MARKET_FUNDING_DUST, convert(tf.dust, bytes32))
    leaf = lib.set_word(leaf, mk.MARKET_BASIS_EMA, convert(self.basis_ema(market, t.price, timestamp_ms, p), bytes32))
    leaf = lib.set_word(leaf, mk.MARKET_LAST_TRADE_PRICE, convert(t.price, bytes32))
    out.market = lib.set_word(leaf, mk.MARKET_LAST_TRADE_TIME, convert(timestamp_ms, bytes32))
    # the fees (compute_fee_split): the fund's share rounded down, the pool the rest
    fees: int256 = mf.fee + tf.fee
    to_fund: int256 = fees * convert(p.insurance_fee_share_ppm, int256) // PPM
    out.globals = g
    out.globals.insurance_fund = convert(convert(g.insurance_fund, int256) + mf.sweep + tf.sweep + to_fund, uint256)
    out.globals.fee_pool = convert(convert(g.fee_pool, int256) + fees - to_fund, uint256)
    return out


@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    """
    @notice The state root after a Trade item in an open block, and the
        receipt outcome (a failed trade changes nothing). A wrong length is a
        NOOP, as in onestep.vy. The openings are read one at a time: an
        internal call taking the whole array would copy it into memory.
    """
    if ctx.block_open == 0 or len(item) != TRADE_ITEM_SIZE or lib.word(item, 0, 1) != 2 or lib.word(item, 1, 1) != TAG_TRADE:
        return state_root, False
    t: Trade = self.parse(item)
    n: uint256 = len(openings)
    c: lib.Cursor = lib.Cursor(root=state_root, used=0)
    maker: Side = empty(Side)
    taker: Side = empty(Side)
    maker.order = self.opened(c, mk.order_key(t.maker, t.maker_nonce), openings[lib.at(c, n)])
    taker.order = self.opened(c, mk.order_key(t.taker, t.taker_nonce), openings[lib.at(lib.Cursor(root=state_root, used=1), n)])
    g: lib.Globals = lib.read_globals(c, openings[lib.at(lib.Cursor(root=state_root, used=2), n)])
    market: Bytes[MAX_LEAF] = self.opened(c, mk.market_key(t.market), openings[lib.at(lib.Cursor(root=state_root, used=3), n)])
    maker.account = self.opened(c, lib.account_key(t.maker), openings[lib.at(lib.Cursor(root=state_root, used=4), n)])
    maker.position = self.opened(c, mk.position_key(t.maker, t.market), openings[lib.at(lib.Cursor(root=state_root, used=5), n)])
    taker.account = self.opened(c, lib.account_key(t.taker), openings[lib.at(lib.Cursor(root=state_root, used=6), n)])
    taker.position = self.opened(c, mk.position_key(t.taker, t.market), openings[lib.at(lib.Cursor(root=state_root, used=7), n)])
    # the insurance fund's pseudo-account (address 0) never places an order
    # (no signature recovers it); its branch of settle_funding is not ported
    assert not ((t.maker == empty(address) and len(maker.order) > 0)
                or (t.taker == empty(address) and len(taker.order) > 0)), "pending"
    out: Outcome = self.execute(t, maker, taker, market, g, ctx.timestamp_ms)
    if not out.ok:
        return state_root, False
    # each written leaf once, with its final value, in the plan's order; a
    # position closed whole is the empty leaf: rewrite deletes it
    c.used = 8
    c = lib.rewrite(c, mk.order_key(t.maker, t.maker_nonce), out.maker_order, openings[lib.at(c, n)])
    c = lib.rewrite(c, mk.order_key(t.taker, t.taker_nonce), out.taker_order, openings[lib.at(c, n)])
    c = lib.rewrite(c, lib.account_key(t.maker), out.maker_account, openings[lib.at(c, n)])
    c = lib.rewrite(c, lib.account_key(t.taker), out.taker_account, openings[lib.at(c, n)])
    c = lib.rewrite(c, mk.position_key(t.maker, t.market), out.maker_position, openings[lib.at(c, n)])
    c = lib.rewrite(c, mk.position_key(t.taker, t.market), out.taker_position, openings[lib.at(c, n)])
    c = lib.rewrite(c, mk.market_key(t.market), out.market, openings[lib.at(c, n)])
    c = lib.write_globals(c, out.globals, openings[lib.at(c, n)])
    return c.root, True
