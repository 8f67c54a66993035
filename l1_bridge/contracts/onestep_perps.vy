# pragma version ~=0.4.1
"""
@title isoroll one-step, the perps kinds
@notice onestep.vy hands this contract the record items of AdjustMargin (3),
    PlaceOrder (4) and FundingTick (17) in an open block (CancelOrder, of an
    order or of a trigger, is onestep_triggers.vy's); it
    re-executes the rule (sequencer/core/rules: positions, orders, funding)
    against the witness, in the order of docs/fraud-proofs.md, and returns
    the state root after it and the receipt outcome. The twin of
    prover/trace.py (the witness plan) over the Python rules.
    The market parameters the rules read are fixed at deployment (the
    preset's market table, sequencer/core/markets.py); the mark price is read
    in one place, `fresh_mark`.
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
TAG_ADJUST_MARGIN: constant(uint256) = 3
TAG_PLACE_ORDER: constant(uint256) = 4
TAG_FUNDING_TICK: constant(uint256) = 17
ADJUST_MARGIN_TYPEHASH: constant(bytes32) = keccak256("AdjustMargin(address account,uint32 market,int256 amount,uint64 nonce,uint64 expiry)")
PLACE_ORDER_TYPEHASH: constant(bytes32) = keccak256("PlaceOrder(address account,uint32 market,bool isBuy,uint256 price,uint256 size,uint32 leverage,uint8 timeInForce,bool reduceOnly,uint64 nonce,uint64 expiry)")


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, mk.MAX_MARKETS]):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    assert max_amount <= convert(MAX_INT64, uint256), "max amount"
    mk.init_markets(markets)


# --- the rules --------------------------------------------------------------------

@internal
@view
def adjust_margin(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
                  nonces: DynArray[uint256, MAX_NONCES]) -> bytes32:
    """rules.positions.process_adjust_margin. Witness: position, market,
    account (read); if it applies: account written, position, market (when
    funding settled a non-zero amount), globals (when dust swept) written.
    Taking all of a flat position's leftover margin empties its leaf: the
    position's opening then carries the deletion witness (lib.delete_leaf)."""
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    amount: int256 = lib.int64_at(item, 26)
    nonce: uint256 = lib.word(item, 34, 8)
    expiry: uint256 = lib.word(item, 42, 8)
    if amount == 0 or abs(amount) > convert(lib.MAX_AMOUNT, int256):
        return empty(bytes32)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    if not found:
        return empty(bytes32)
    pos_key: bytes32 = mk.position_key(account, market)
    mkt_key: bytes32 = mk.market_key(market)
    op_pos: trace.Opening = openings[lib.at(c0, len(openings))]
    lib.verify_leaf(c0, pos_key, op_pos)
    op_mkt: trace.Opening = openings[lib.at(lib.Cursor(root=c0.root, used=1), len(openings))]
    lib.verify_leaf(lib.Cursor(root=c0.root, used=1), mkt_key, op_mkt)
    acct_key: bytes32 = lib.account_key(account)
    op_acct: trace.Opening = openings[lib.at(lib.Cursor(root=c0.root, used=2), len(openings))]
    lib.verify_leaf(lib.Cursor(root=c0.root, used=2), acct_key, op_acct)
    acct: lib.AccountLeaf = lib.read_account(op_acct)
    struct_hash: bytes32 = keccak256(abi_encode(ADJUST_MARGIN_TYPEHASH, account, market, amount, nonce, expiry))
    pos: mk.Position = mk.read_position(op_pos)
    if not lib.user_checks(struct_hash, item, 50, account, nonce, expiry, ctx, acct, nonces):
        return empty(bytes32)
    if pos.size == 0 and pos.cost == 0 and pos.margin == 0:
        # no position: absent, or a leaf holding only its order epoch (rules v2)
        return empty(bytes32)
    f: mk.Funding = mk.settle_funding(pos, op_mkt.value, p)
    pos = f.position
    if amount > 0:
        if convert(acct.collateral, int256) < amount:
            return empty(bytes32)
    elif pos.margin < -amount:
        return empty(bytes32)
    pos.margin += amount
    if pos.margin < 0:
        return empty(bytes32)
    if amount < 0 and pos.size != 0:
        # the position keeps its initial margin at the mark (funding is settled: nothing owed)
        mark: int256 = mk.fresh_mark(op_mkt.value, p, ctx.timestamp_ms)
        if mark == 0:
            return empty(bytes32)
        equity: int256 = (pos.margin - pos.cost) * convert(p.scale, int256) + pos.size * mark
        if equity * PPM < abs(pos.size) * mark * convert(p.initial_margin_ppm, int256):
            return empty(bytes32)
    collateral: uint256 = convert(convert(acct.collateral, int256) - amount, uint256)
    c: lib.Cursor = lib.Cursor(root=lib.write_leaf(c0.root, acct_key, op_acct, lib.account_leaf(collateral, nonce, nonces)),
                               used=3)
    # a flat position left with no margin is the empty leaf: rewrite deletes it
    c = lib.rewrite(c, pos_key, mk.position_leaf(pos), openings[lib.at(c, len(openings))])
    if f.settled:
        c = lib.rewrite(c, mkt_key, lib.set_word(op_mkt.value, mk.MARKET_FUNDING_DUST, convert(f.dust, bytes32)), openings[lib.at(c, len(openings))])
    if f.sweep > 0:
        g: lib.Globals = lib.read_globals(c, openings[lib.at(c, len(openings))])
        g.insurance_fund += convert(f.sweep, uint256)
        c = lib.write_globals(c, g, openings[lib.at(c, len(openings))])
    return c.root


@internal
@view
def order_terms_ok(p: mk.MarketParams, is_buy: bool, price: uint256, size: uint256, leverage: uint256,
                   time_in_force: uint256, reduce_only: bool) -> bool:
    """rules.orders.check_order_terms."""
    if price == 0 or price > lib.MAX_AMOUNT or price % p.tick_size != 0:
        return False
    if size == 0 or size > lib.MAX_AMOUNT or size % p.step_size != 0:
        return False
    if leverage < 1 or leverage > p.max_leverage:
        return False
    if time_in_force > 2:
        return False
    if reduce_only:
        return time_in_force == 1
    return size * price >= p.min_order_notional * p.scale


@internal
@view
def place_order(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
                nonces: DynArray[uint256, MAX_NONCES]) -> bytes32:
    """rules.orders.process_place_order. Witness: order (read: absent),
    account (read; written if it applies), then globals (order_count) and
    the order (created) written."""
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    is_buy: bool = lib.word(item, 26, 1) != 0
    price: uint256 = lib.word(item, 27, 8)
    size: uint256 = lib.word(item, 35, 8)
    leverage: uint256 = lib.word(item, 43, 4)
    time_in_force: uint256 = lib.word(item, 47, 1)
    reduce_only: bool = lib.word(item, 48, 1) != 0
    nonce: uint256 = lib.word(item, 49, 8)
    expiry: uint256 = lib.word(item, 57, 8)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    if not found or not self.order_terms_ok(p, is_buy, price, size, leverage, time_in_force, reduce_only):
        return empty(bytes32)
    key: bytes32 = mk.order_key(account, nonce)
    op_order: trace.Opening = openings[lib.at(c0, len(openings))]
    lib.verify_leaf(c0, key, op_order)
    acct_key: bytes32 = lib.account_key(account)
    op_acct: trace.Opening = openings[lib.at(lib.Cursor(root=c0.root, used=1), len(openings))]
    lib.verify_leaf(lib.Cursor(root=c0.root, used=1), acct_key, op_acct)
    acct: lib.AccountLeaf = lib.read_account(op_acct)
    params_hash: bytes32 = keccak256(abi_encode(PLACE_ORDER_TYPEHASH, account, market, is_buy, price, size, leverage,
                                                time_in_force, reduce_only, nonce, expiry))
    if not lib.user_checks(params_hash, item, 65, account, nonce, expiry, ctx, acct, nonces):
        return empty(bytes32)
    if op_order.present:
        return empty(bytes32)
    c: lib.Cursor = lib.Cursor(root=lib.write_leaf(c0.root, acct_key, op_acct, lib.account_leaf(acct.collateral, nonce, nonces)),
                               used=2)
    g: lib.Globals = lib.read_globals(c, openings[lib.at(c, len(openings))])
    g.order_count += 1
    c = lib.write_globals(c, g, openings[lib.at(c, len(openings))])
    leaf: Bytes[MAX_LEAF] = abi_encode(params_hash, size, empty(uint256), False, market, is_buy, price, leverage,
                                       time_in_force, reduce_only, expiry, g.order_count)
    return lib.rewrite(c, key, leaf, openings[lib.at(c, len(openings))]).root


@internal
@view
def funding_tick(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS]) -> bytes32:
    """rules.funding.process_funding_tick. Witness: the market (written if it applies)."""
    market: uint256 = lib.word(item, 2, 4)
    rate: int256 = lib.int64_at(item, 6)
    at: uint256 = lib.word(item, 14, 8)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    if not found or abs(rate) > convert(p.funding_cap_ppm, int256):
        return empty(bytes32)
    key: bytes32 = mk.market_key(market)
    op: trace.Opening = openings[lib.at(c0, len(openings))]
    lib.verify_leaf(c0, key, op)
    if at % p.funding_interval_ms != 0:
        return empty(bytes32)
    if at <= lib.leaf_word(op.value, mk.MARKET_FUNDING_TIME) or at > ctx.timestamp_ms:
        return empty(bytes32)
    mark: int256 = mk.fresh_mark(op.value, p, ctx.timestamp_ms)
    if mark == 0:
        return empty(bytes32)
    index: int256 = lib.leaf_int(op.value, mk.MARKET_FUNDING_INDEX) + rate * mark
    if abs(index) > MAX_INT64:
        return empty(bytes32)
    leaf: Bytes[MAX_LEAF] = lib.set_word(op.value, mk.MARKET_FUNDING_INDEX, convert(index, bytes32))
    return lib.write_leaf(c0.root, key, op, lib.set_word(leaf, mk.MARKET_FUNDING_TIME, convert(at, bytes32)))


@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    """
    @notice The state root after a perps record item in an open block, and the
        receipt outcome (a failed record changes nothing). A wrong length is a
        NOOP, as in onestep.vy.
    """
    n: uint256 = len(item)
    tag: uint256 = lib.word(item, 1, 1)
    if ctx.block_open == 0 or n < 2 or lib.word(item, 0, 1) != 2:
        return state_root, False
    c0: lib.Cursor = lib.Cursor(root=state_root, used=0)
    root: bytes32 = empty(bytes32)
    if tag == TAG_ADJUST_MARGIN and n == 115:
        root = self.adjust_margin(c0, ctx, item, openings, nonces)
    elif tag == TAG_PLACE_ORDER and n == 130:
        root = self.place_order(c0, ctx, item, openings, nonces)
    elif tag == TAG_FUNDING_TICK and n == 22:
        root = self.funding_tick(c0, ctx, item, openings)
    if root == empty(bytes32):
        return state_root, False
    return root, True
