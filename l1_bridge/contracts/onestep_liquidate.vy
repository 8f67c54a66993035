# pragma version ~=0.4.1
"""
@title isoroll one-step, the liquidation ladder's records
@notice onestep.vy hands this contract the record items of Liquidate (18),
    AuctionEnd (23) and ForcedClose (50) in an open block; it re-executes the
    ported branches of the rules (sequencer/core/rules/liquidation.py,
    auction.py) against the witness and returns the state root after the
    record and the receipt outcome. The twin of prover/plan_liquidate.py.
    Ported: every refusal of the three kinds; the backstop policy's fund
    takeover at the mark (the fund charging the capped fee and paying the bad
    debt, emptied leaves deleted); an AuctionEnd of a closed or recovered
    position (the auction leaf deleted); a ForcedClose served as a no-op (an
    unlisted market, the fund's own account). Every other branch reverts
    "pending" (docs/fraud-proofs.md, "The liquidation ladder"): what cancels
    the owner's open orders (the state tree has no per-owner index of them,
    so no witness can show all of them) and what ranks the opposite
    positions (close at the mark, auto-deleveraging).
"""
import records
import trace
import onestep_lib as lib
import onestep_market as mk

initializes: lib
initializes: mk

exports: (lib.DOMAIN_SEPARATOR, lib.MAX_AMOUNT, lib.MAX_EXPIRY_AHEAD_MS, lib.NONCE_WINDOW, mk.market_table)


interface OneStepBook:
    def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[records.MAX_ITEM_SIZE],
              openings: DynArray[trace.Opening, trace.MAX_OPENINGS],
              nonces: DynArray[uint256, trace.MAX_NONCES]) -> (bytes32, bool): view


# onestep_book.vy: a Liquidate under a book policy (2 book-first, 3 book+auction,
# 4 book+vault) is re-executed there, whole (prover/plan_book.py); empty: pending
BOOK: immutable(address)

MAX_OPENINGS: constant(uint256) = trace.MAX_OPENINGS
MAX_NONCES: constant(uint256) = trace.MAX_NONCES
MAX_ITEM: constant(uint256) = records.MAX_ITEM_SIZE
MAX_LEAF: constant(uint256) = trace.MAX_LEAF
PPM: constant(int256) = mk.PPM
MAX_INT64: constant(int256) = 2**63 - 1
TAG_LIQUIDATE: constant(uint256) = 18
TAG_AUCTION_END: constant(uint256) = 23
TAG_FORCED_CLOSE: constant(uint256) = 50
MAX_MAKERS: constant(uint256) = 8      # rules.liquidation.MAX_LIQUIDATION_MAKERS
MAKER_SIZE: constant(uint256) = 28     # owner (20) || nonce (8)
POLICY_BACKSTOP: constant(uint256) = 1
AUCTION_END_MS: constant(uint256) = 4  # auction leaf: size, start price, end price, start ms, end ms
INSURANCE: constant(address) = empty(address)  # rules.positions.INSURANCE_ADDRESS


struct Takeover:
    # what the reads of a Liquidate decided (refused: a failed record, no write)
    refused: bool
    p: mk.MarketParams
    mark: int256
    position: mk.Position   # funding settled
    market_leaf: Bytes[MAX_LEAF]  # with the dust after the position's funding
    insurance: int256       # what the fund got so far (the dust swept)
    qty: int256
    notional: int256        # the account's signed notional for the qty lots


struct Leaves:
    position: Bytes[MAX_LEAF]
    market: Bytes[MAX_LEAF]
    fund: Bytes[MAX_LEAF]
    globals: Bytes[MAX_LEAF]


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, mk.MAX_MARKETS], book: address):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    mk.init_markets(markets)
    BOOK = book


# --- position maths (rules.positions, rules.margin) ------------------------------

@internal
@pure
def apply_close(p: mk.Position, qty: int256, notional: int256) -> (mk.Position, int256):
    """rules.positions.apply_close: close `qty` lots (0 < qty <= |size|) for the
    signed `notional`; the cost removed rounds up. Returns (position, realised)."""
    size: int256 = abs(p.size)
    removed: int256 = p.cost
    if qty != size:
        removed = mk.ceil_div(p.cost * qty, size)
    out: mk.Position = p
    if p.size > 0:
        out.size = p.size - qty
    else:
        out.size = p.size + qty
    out.cost = p.cost - removed
    return out, -notional - removed


@internal
@pure
def apply_fill(p: mk.Position, delta: int256, notional: int256) -> (mk.Position, int256):
    """rules.positions.apply_fill: add `delta` lots for the signed `notional`."""
    if p.size == 0 or (p.size > 0) == (delta > 0):
        out: mk.Position = p
        out.size = p.size + delta
        out.cost = p.cost + notional
        return out, 0
    closing: int256 = min(abs(delta), abs(p.size))
    if closing == abs(delta):
        return self.apply_close(p, closing, notional)
    close_notional: int256 = mk.floor_div(notional * closing, abs(delta))
    closed: mk.Position = empty(mk.Position)
    realised: int256 = 0
    closed, realised = self.apply_close(p, closing, close_notional)
    closed.size = p.size + delta
    closed.cost = notional - close_notional
    return closed, realised


@internal
@pure
def long_change(old_size: int256, new_size: int256) -> int256:
    """rules.margin.compute_long_change: the change of the open interest."""
    return max(new_size, 0) - max(old_size, 0)


@internal
@pure
def liquidation_size(position: mk.Position, mark: int256, p: mk.MarketParams) -> int256:
    """rules.margin.compute_liquidation_size of a settled position: the whole
    of it, or a partial step (up to the step size) of a large solvent one."""
    size: int256 = abs(position.size)
    scale: int256 = convert(p.scale, int256)
    equity: int256 = (position.margin - position.cost) * scale + position.size * mark
    if size * mark // scale <= convert(p.partial_liquidation_notional, int256) or equity < 0:
        return size
    step: int256 = convert(p.step_size, int256)
    part: int256 = mk.ceil_div(mk.ceil_div(size * convert(p.partial_liquidation_ppm, int256), PPM), step) * step
    return min(part, size)


@internal
@pure
def is_liquidatable(position: mk.Position, market: Bytes[MAX_LEAF], mark: int256, p: mk.MarketParams) -> bool:
    """rules.margin.is_liquidatable: equity (funding owed counted) below maintenance at the mark."""
    if position.size == 0:
        return False
    scale: int256 = convert(p.scale, int256)
    index: int256 = lib.leaf_int(market, mk.MARKET_FUNDING_INDEX)
    owed: int256 = mk.ceil_div(position.size * (index - position.funding_snapshot), scale * PPM)
    equity: int256 = (position.margin - owed - position.cost) * scale + position.size * mark
    return equity * PPM < abs(position.size) * mark * convert(p.maintenance_margin_ppm, int256)


# --- Liquidate ----------------------------------------------------------------------

@internal
@view
def liquidate_reads(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], op_mkt: trace.Opening,
                    op_pos: trace.Opening) -> Takeover:
    """rules.liquidation.process_liquidate up to the ladder: the market and the
    position (read), the refusals (stale mark, no position, a healthy one,
    makers under a policy without the book); then the backstop's funding
    settlement, size and notional (a notional past 64 bits refuses it). The
    other policies cancel the owner's open orders first: "pending"."""
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    count: uint256 = lib.word(item, 26, 1)
    out: Takeover = empty(Takeover)
    out.refused = True
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    out.p = p
    lib.verify_leaf(c0, mk.market_key(market), op_mkt)
    lib.verify_leaf(lib.Cursor(root=c0.root, used=1), mk.position_key(account, market), op_pos)
    out.mark = mk.fresh_mark(op_mkt.value, out.p, ctx.timestamp_ms)
    if out.mark == 0:
        return out
    position: mk.Position = mk.read_position(op_pos)
    if not self.is_liquidatable(position, op_mkt.value, out.mark, out.p):
        return out
    if count > 0 and out.p.liquidation_policy != 2 and out.p.liquidation_policy != 3 and out.p.liquidation_policy != 4:
        return out
    # book-first, book+auction, book+vault and the ladder cancel the owner's
    # open orders in the market (rules.liquidation.cancel_open_orders): no
    # witness can show all of them
    assert out.p.liquidation_policy == POLICY_BACKSTOP, "pending"
    f: mk.Funding = mk.settle_funding(position, op_mkt.value, out.p)
    out.position = f.position
    out.market_leaf = lib.set_word(op_mkt.value, mk.MARKET_FUNDING_DUST, convert(f.dust, bytes32))
    out.insurance = f.sweep
    out.qty = self.liquidation_size(out.position, out.mark, out.p)
    gross: int256 = out.qty * out.mark
    scale: int256 = convert(out.p.scale, int256)
    if out.position.size > 0:
        out.notional = -(gross // scale)
    else:
        out.notional = mk.ceil_div(gross, scale)
    if abs(out.notional) > MAX_INT64:
        return out
    out.refused = False
    return out


@internal
@pure
def fund_takeover(t: Takeover, op_fund: trace.Opening, g: lib.Globals) -> Leaves:
    """rules.liquidation.process_backstop: the insurance fund takes the lots
    over at the mark; the liquidated position keeps its realised PnL less the
    fee (capped by its margin), the fund pays any bad debt. A fund left
    negative deleverages the position instead (ranked over every opposite
    position): "pending". A position left flat with no margin (a bankrupt
    one) or the fund's closed flat is an empty leaf: deleted."""
    closed: mk.Position = empty(mk.Position)
    realised: int256 = 0
    closed, realised = self.apply_close(t.position, t.qty, t.notional)
    margin: int256 = t.position.margin + realised
    fee: int256 = min(mk.ceil_div(abs(t.notional) * convert(t.p.liquidation_fee_ppm, int256), PPM), max(0, margin))
    bad_debt: int256 = max(0, -margin)
    closed.margin = margin - fee + bad_debt
    oi: int256 = convert(lib.leaf_word(t.market_leaf, mk.MARKET_OPEN_INTEREST), int256)
    oi += self.long_change(t.position.size, closed.size)
    # the fund's own position: its funding settles into the fund, not a margin
    fund: mk.Position = mk.read_position(op_fund)
    f: mk.Funding = mk.settle_funding(fund, t.market_leaf, t.p)
    insurance: int256 = t.insurance + f.sweep - (fund.margin - f.position.margin)
    settled: mk.Position = f.position
    settled.margin = fund.margin
    delta: int256 = t.qty
    if t.position.size < 0:
        delta = -t.qty
    taken: mk.Position = empty(mk.Position)
    fund_realised: int256 = 0
    taken, fund_realised = self.apply_fill(settled, delta, -t.notional)
    oi += self.long_change(settled.size, taken.size)
    insurance += fee - bad_debt + fund_realised
    total: int256 = convert(g.insurance_fund, int256) + insurance
    assert total >= 0, "pending"  # the fund cannot pay: auto-deleveraging
    out_g: lib.Globals = g
    out_g.insurance_fund = convert(total, uint256)
    market_leaf: Bytes[MAX_LEAF] = lib.set_word(lib.set_word(t.market_leaf, mk.MARKET_FUNDING_DUST, convert(f.dust, bytes32)),
                                                mk.MARKET_OPEN_INTEREST, convert(oi, bytes32))
    return Leaves(position=mk.position_leaf(closed), market=market_leaf, fund=mk.position_leaf(taken),
                  globals=abi_encode(out_g))


# --- AuctionEnd ------------------------------------------------------------------------

@internal
@view
def auction_end(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], op_auction: trace.Opening) -> bool:
    """rules.auction.process_auction_end's refusals: no auction, one still
    running (then `auction_end_mark` reads the position and the market)."""
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    lib.verify_leaf(c0, mk.auction_key(account, market), op_auction)
    if not op_auction.present:
        return False
    return ctx.timestamp_ms >= lib.leaf_word(op_auction.value, AUCTION_END_MS)


@internal
@view
def auction_end_mark(c: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], p: mk.MarketParams,
                     op_pos: trace.Opening, op_mkt: trace.Opening) -> bool:
    """An ended auction ends (the auction leaf deleted: True) when the position
    is closed, or open but no longer liquidatable at a fresh mark; a stale
    mark refuses the record (False: the auction stays). A position still
    liquidatable goes down the ladder, which cancels the owner's open orders
    first: "pending"."""
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    lib.verify_leaf(c, mk.position_key(account, market), op_pos)
    lib.verify_leaf(lib.Cursor(root=c.root, used=c.used + 1), mk.market_key(market), op_mkt)
    position: mk.Position = mk.read_position(op_pos)
    if position.size == 0:
        return True
    mark: int256 = mk.fresh_mark(op_mkt.value, p, ctx.timestamp_ms)
    if mark == 0:
        return False
    assert not self.is_liquidatable(position, op_mkt.value, mark, p), "pending"
    return True


# --- ForcedClose -------------------------------------------------------------------------

@internal
@view
def forced_close(c0: lib.Cursor, item: Bytes[MAX_ITEM], op_g: trace.Opening) -> bytes32:
    """rules.liquidation.process_forced_close: in inbox order (else refused,
    nothing changes); served as a no-op for an unlisted market or the fund's
    account (the inbox entry counted). A listed market of another account
    reverts "pending": the rule cancels the owner's open orders in it (no
    witness can show all of them), and whether it does so for an account
    with no position leaf depends on a flat position the tree does not hold."""
    index: uint256 = lib.word(item, 2, 8)
    account: address = lib.addr(item, 10)
    market: uint256 = lib.word(item, 30, 32)
    g: lib.Globals = lib.read_globals(c0, op_g)
    if index != g.inbox_count:
        return empty(bytes32)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    assert not found or account == INSURANCE, "pending"
    entry: Bytes[61] = concat(b"\x03", convert(convert(index, uint64), bytes8), convert(account, bytes20),
                              convert(market, bytes32))
    g.inbox_hash = keccak256(concat(g.inbox_hash, entry))
    g.inbox_count += 1
    return lib.write_leaf(c0.root, lib.GLOBALS_KEY, op_g, abi_encode(g))


# --- the entry ------------------------------------------------------------------------------

@internal
@pure
def liquidate_length_ok(item: Bytes[MAX_ITEM]) -> bool:
    """account (20) || market (4) || makers: a count (<= 8) and that many (owner, nonce)."""
    n: uint256 = len(item)
    if n < 27:
        return False
    count: uint256 = lib.word(item, 26, 1)
    return count <= MAX_MAKERS and n == 27 + MAKER_SIZE * count


@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    """
    @notice The state root after a Liquidate, AuctionEnd or ForcedClose item in
        an open block, and the receipt outcome (a failed record changes
        nothing). A wrong length is a NOOP, as in onestep.vy. The openings are
        read one at a time here (an internal call taking the array would copy
        all of it).
    """
    n: uint256 = len(item)
    tag: uint256 = lib.word(item, 1, 1)
    if ctx.block_open == 0 or n < 2 or lib.word(item, 0, 1) != 2:
        return state_root, False
    c0: lib.Cursor = lib.Cursor(root=state_root, used=0)
    count: uint256 = len(openings)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    if tag == TAG_FORCED_CLOSE and n == 62:
        root: bytes32 = self.forced_close(c0, item, openings[lib.at(c0, count)])
        if root == empty(bytes32):
            return state_root, False
        return root, True
    if tag == TAG_AUCTION_END and n == 26:
        found, p = mk.market_params(lib.word(item, 22, 4))
        if not found or not self.auction_end(c0, ctx, item, openings[lib.at(c0, count)]):
            return state_root, False
        c1: lib.Cursor = lib.Cursor(root=state_root, used=1)
        if not self.auction_end_mark(c1, ctx, item, p, openings[lib.at(c1, count)],
                                     openings[lib.at(lib.Cursor(root=state_root, used=2), count)]):
            return state_root, False
        c3: lib.Cursor = lib.Cursor(root=state_root, used=3)
        auction: bytes32 = mk.auction_key(lib.addr(item, 2), lib.word(item, 22, 4))
        return lib.rewrite(c3, auction, b"", openings[lib.at(c3, count)]).root, True
    if tag != TAG_LIQUIDATE or not self.liquidate_length_ok(item):
        return state_root, False
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    found, p = mk.market_params(market)
    if not found or account == INSURANCE:
        return state_root, False
    if p.liquidation_policy >= 2 and p.liquidation_policy <= 4 and BOOK != empty(address):
        book_root: bytes32 = empty(bytes32)
        book_ok: bool = False
        book_root, book_ok = staticcall OneStepBook(BOOK).apply(state_root, ctx, item, openings, nonces)
        return book_root, book_ok
    t: Takeover = self.liquidate_reads(c0, ctx, item, openings[lib.at(c0, count)],
                                       openings[lib.at(lib.Cursor(root=state_root, used=1), count)])
    if t.refused:
        return state_root, False
    fund_key: bytes32 = mk.position_key(INSURANCE, market)
    c: lib.Cursor = lib.Cursor(root=state_root, used=2)
    op_fund: trace.Opening = openings[lib.at(c, count)]
    lib.verify_leaf(c, fund_key, op_fund)
    c.used = 3
    g: lib.Globals = lib.read_globals(c, openings[lib.at(c, count)])
    w: Leaves = self.fund_takeover(t, op_fund, g)
    c.used = 4
    c = lib.rewrite(c, mk.position_key(account, market), w.position, openings[lib.at(c, count)])
    c = lib.rewrite(c, mk.market_key(market), w.market, openings[lib.at(c, count)])
    c = lib.rewrite(c, fund_key, w.fund, openings[lib.at(c, count)])
    c = lib.rewrite(c, lib.GLOBALS_KEY, w.globals, openings[lib.at(c, count)])
    return c.root, True
