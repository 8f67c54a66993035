# pragma version ~=0.4.1
"""
@title isoroll one-step, Deleverage (rules v3): the ladder against named counterparties
@notice onestep.vy hands this contract a Deleverage item (tag 24) in an open
    block; it re-executes rules.liquidation.process_deleverage whole,
    refusals included, against the witness (prover/plan_ladder.py) and
    returns the state root after the record and the receipt outcome.
    Refused (no change): an unlisted market, 0 or repeated counterparties
    or the account among them, no fresh mark, no open position, a healthy
    one (but the fund's), a counterparty without a position on the other
    side or (a user) with less than one quote unit of equity at the mark, a
    position in auction (but the fund's), a close whose notional leaves 64
    bits, a counterparty's margin left negative, an auto-deleveraging that
    can take nothing.
    Applied (a user's position): its funding settled (a negative margin
    moved into its cost) and its order epoch written; if the fund can pay
    the whole position's bad debt at the mark, its liquidation size closed
    AT THE MARK against the counterparties in order (the capped fee to the
    fund, bad debt paid by the fund; each counterparty's funding settled,
    its deficit absorbed, a user's closed share of margin and realised PnL
    released to free collateral, the fund's PnL to the fund); if the fund
    cannot, or that leaves it negative (undone), the position is
    AUTO-DELEVERAGED: the users (not the fund) take what their caps allow
    of the whole position at its bankruptcy price.
    The insurance fund's own position (process_fund_unwind): its funding
    settled from the fund; if the fund holds the position's whole loss at
    the mark, what the users can take closed at the mark rounded in the
    fund's favour, its PnL to the fund; if it cannot, or ends negative
    (undone), auto-deleveraged with the insurance fund as its margin, the
    insurance fund then the margin the slice left (and the dust swept in).
    Witness: read against the pre-state root the market, the position, the
    auction (must be absent), the globals, then per counterparty its
    position and (a user) its account; if the record applies, the written
    leaves, each once with its final value, opened against the root of the
    writes before it: the position, the market, the globals, then per
    counterparty that took lots its position and (a user) its account.
    At most 4 + 6 x 2 reads and 3 + 6 x 2 writes: 31 openings.
"""
import records
import trace
import onestep_lib as lib
import onestep_market as mk
import onestep_fill as fill

initializes: lib
initializes: mk

exports: (lib.DOMAIN_SEPARATOR, lib.MAX_AMOUNT, lib.MAX_EXPIRY_AHEAD_MS, lib.NONCE_WINDOW, mk.market_table)

MAX_OPENINGS: constant(uint256) = trace.MAX_OPENINGS
MAX_NONCES: constant(uint256) = trace.MAX_NONCES
MAX_ITEM: constant(uint256) = records.MAX_ITEM_SIZE
MAX_LEAF: constant(uint256) = trace.MAX_LEAF
PPM: constant(int256) = mk.PPM
MAX_INT64: constant(int256) = 2**63 - 1
TAG_DELEVERAGE: constant(uint256) = 24
MAX_COUNTERS: constant(uint256) = 6    # rules.liquidation.MAX_DELEVERAGE_COUNTERPARTIES (the layout's bound)
MAX_READS: constant(uint256) = 16      # market, position, auction, globals + 6 x (position, account)
HEAD: constant(uint256) = 27           # 0x02 || tag || account (20) || market (4) || count (1)
INSURANCE: constant(address) = empty(address)  # rules.positions.INSURANCE_ADDRESS


struct Counter:
    # a named counterparty as read from the pre-state, and what the close did to it
    who: address
    position: mk.Position    # as read (its funding not settled)
    collateral: int256       # a user's free collateral (after the close)
    nonces_hash: bytes32
    account: bool            # a user's account leaf is present
    at: uint256              # the opening of its position (a user's account next)
    cap: int256              # the lots it may take at the bankruptcy price
    took: bool               # it took lots: its leaves are written
    after: mk.Position


struct Ladder:
    # the record's leaves in memory
    ok: bool
    position: mk.Position
    market: Bytes[MAX_LEAF]
    insurance: int256        # added to the fund


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, mk.MAX_MARKETS]):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    mk.init_markets(markets)


# --- the counterparties (rules.liquidation.get_deleverage_counterparties) ----------------

@internal
@pure
def names_ok(item: Bytes[MAX_ITEM], account: address, count: uint256) -> bool:
    """1 to 6 distinct counterparties, the liquidated account not among them."""
    if count == 0:
        return False
    for i: uint256 in range(count, bound=MAX_COUNTERS):
        who: address = lib.addr(item, HEAD + 20 * i)
        if who == account:
            return False
        for j: uint256 in range(i, bound=MAX_COUNTERS):
            if lib.addr(item, HEAD + 20 * j) == who:
                return False
    return True


@internal
@pure
def owed(p: mk.Position, market: Bytes[MAX_LEAF], params: mk.MarketParams) -> int256:
    """rules.margin.compute_funding_owed: rounded up."""
    index: int256 = lib.leaf_int(market, mk.MARKET_FUNDING_INDEX)
    return mk.ceil_div(p.size * (index - p.funding_snapshot), convert(params.scale, int256) * PPM)


@internal
@pure
def absorb(p: mk.Position) -> mk.Position:
    """rules.liquidation.absorb_funding_deficit: a negative margin (funding
    owed past it) moves into the cost; equity and bankruptcy price unchanged."""
    out: mk.Position = p
    if p.margin < 0:
        out.cost = p.cost - p.margin
        out.margin = 0
    return out


@internal
@pure
def counter_ok(c: Counter, size: int256, market: Bytes[MAX_LEAF], mark: int256, params: mk.MarketParams) -> bool:
    """On the other side of a position of `size`; a user's with S x equity
    (funding owed counted) of at least S at the mark."""
    if c.position.size == 0 or (c.position.size > 0) == (size > 0):
        return False
    if c.who == INSURANCE:
        return True
    scale: int256 = convert(params.scale, int256)
    equity: int256 = (c.position.margin - self.owed(c.position, market, params) - c.position.cost) * scale \
        + c.position.size * mark
    return equity >= scale


@internal
@pure
def cap(c: mk.Position, gap: int256, qty: int256, mark: int256, market: Bytes[MAX_LEAF],
        params: mk.MarketParams) -> int256:
    """rules.liquidation.make_deleverage_cap: the lots `c` may take at the
    bankruptcy price with its margin left >= 0."""
    size: int256 = abs(c.size)
    scale: int256 = convert(params.scale, int256)
    excess: int256 = gap * size - (c.size * mark - c.cost * scale) * qty
    if excess <= 0:
        return size
    margin: int256 = max(0, c.margin - self.owed(c, market, params) - 1)
    step: int256 = convert(params.step_size, int256)
    return margin * scale * qty * size // excess // step * step


@internal
@pure
def takes(counters: DynArray[Counter, MAX_COUNTERS], qty: int256, capped: bool) -> int256:
    """rules.liquidation.compute_takes: each in order takes what is left, at
    most its size (and, `capped`: its cap; the fund takes no part)."""
    remaining: int256 = qty
    for c: Counter in counters:
        if capped and c.who == INSURANCE:
            continue
        take: int256 = min(remaining, abs(c.position.size))
        if capped:
            take = min(take, c.cap)
        remaining -= max(0, take)
    return qty - remaining


# --- closing (rules.liquidation.close_against, deleverage_position) -----------------------

@internal
@pure
def add_interest(market: Bytes[MAX_LEAF], old_size: int256, new_size: int256) -> Bytes[MAX_LEAF]:
    """The market leaf with the open interest (the long sizes) changed."""
    interest: int256 = lib.leaf_int(market, mk.MARKET_OPEN_INTEREST) + fill.long_change(old_size, new_size)
    return lib.set_word(market, mk.MARKET_OPEN_INTEREST, convert(convert(interest, uint256), bytes32))


@internal
@pure
def deleverage(l: Ladder, c: Counter, take: int256, notional: int256, params: mk.MarketParams) -> (Ladder, Counter):
    """rules.liquidation.deleverage_position: the counterparty's funding
    settled, `take` lots closed for `notional`; a user's closed share of
    margin and realised PnL to free collateral (refused if its margin would
    go negative), the fund's funding and PnL to the fund."""
    f: mk.Funding = mk.settle_funding(c.position, l.market, params)
    out: Ladder = l
    out.market = lib.set_word(l.market, mk.MARKET_FUNDING_DUST, convert(f.dust, bytes32))
    out.insurance += f.sweep
    cc: Counter = c
    settled: mk.Position = f.position
    if c.who == INSURANCE:
        out.insurance -= c.position.margin - f.position.margin
        settled.margin = c.position.margin
    settled = self.absorb(settled)  # rules v3: absorb_deficit on the named path
    if c.who == INSURANCE:
        realised: int256 = 0
        cc.after, realised = fill.apply_close(settled, take, notional)
        out.insurance += realised
    else:
        assert c.account, "ladder: no account"  # rules: state.accounts[address]
        r: fill.Released = fill.close_and_release(settled, take, notional, c.collateral)
        out.ok = out.ok and r.ok
        cc.after = r.position
        cc.collateral = r.free
    out.market = self.add_interest(out.market, c.position.size, cc.after.size)
    cc.took = True
    return out, cc


@internal
@pure
def close_against(l: Ladder, counters: DynArray[Counter, MAX_COUNTERS], lots: int256, total: int256, capped: bool,
                  params: mk.MarketParams) -> (Ladder, DynArray[Counter, MAX_COUNTERS]):
    """`lots` closed against the counterparties in order for `total` (their
    signed notional together), each its share rounded down, the last the rest."""
    out: Ladder = l
    cs: DynArray[Counter, MAX_COUNTERS] = counters
    remaining: int256 = lots
    rest: int256 = total
    for i: uint256 in range(len(cs), bound=MAX_COUNTERS):
        if remaining == 0:
            break
        if capped and cs[i].who == INSURANCE:
            continue
        take: int256 = min(remaining, abs(cs[i].position.size))
        if capped:
            take = min(take, cs[i].cap)
        if take <= 0:
            continue
        notional: int256 = rest
        if take != remaining:
            notional = mk.floor_div(total * take, lots)
        out, cs[i] = self.deleverage(out, cs[i], take, notional, params)
        remaining -= take
        rest -= notional
    out.ok = out.ok and remaining == 0
    return out, cs


@internal
@pure
def close_at_mark(l: Ladder, counters: DynArray[Counter, MAX_COUNTERS], qty: int256, mark: int256,
                  params: mk.MarketParams) -> (Ladder, DynArray[Counter, MAX_COUNTERS]):
    """rules.liquidation.process_close_at_mark over the named counterparties:
    what they can take of `qty` closed at the mark (rounded against the
    account), the fee capped by the margin and the equity left, bad debt
    paid by the fund; a notional past 64 bits refuses the record."""
    out: Ladder = l
    lots: int256 = self.takes(counters, qty, False)
    scale: int256 = convert(params.scale, int256)
    notional: int256 = mk.ceil_div(lots * mark, scale)
    if l.position.size > 0:
        notional = -(lots * mark // scale)
    if abs(notional) > MAX_INT64:
        out.ok = False
        return out, counters
    realised: int256 = 0
    out.position, realised = fill.apply_close(l.position, lots, notional)
    margin: int256 = l.position.margin + realised
    out.position.margin = margin
    left: int256 = mk.floor_div(fill.equity_scaled(out.position, mark, scale), scale)
    fee: int256 = min(mk.ceil_div(abs(notional) * convert(params.liquidation_fee_ppm, int256), PPM),
                      min(max(0, margin), max(0, left)))
    bad_debt: int256 = max(0, -margin)
    out.position.margin = margin - fee + bad_debt
    out.market = self.add_interest(l.market, l.position.size, out.position.size)
    out.insurance += fee - bad_debt
    return self.close_against(out, counters, lots, -notional, False, params)


@internal
@pure
def deleverage_slice(l: Ladder, counters: DynArray[Counter, MAX_COUNTERS], mark: int256,
                     params: mk.MarketParams) -> (Ladder, DynArray[Counter, MAX_COUNTERS]):
    """rules.liquidation.process_deleverage_slice: the users take what their
    caps allow of the whole position at its bankruptcy price (whole: margin
    0; a part: its share of the bankruptcy notional, rounded down)."""
    out: Ladder = l
    cs: DynArray[Counter, MAX_COUNTERS] = counters
    p: mk.Position = l.position
    qty: int256 = abs(p.size)
    gap: int256 = abs(abs(p.margin - p.cost) * convert(params.scale, int256) - mark * qty)
    for i: uint256 in range(len(cs), bound=MAX_COUNTERS):
        if cs[i].who != INSURANCE:
            cs[i].cap = self.cap(cs[i].position, gap, qty, mark, l.market, params)
    lots: int256 = self.takes(cs, qty, True)
    if lots == 0:
        out.ok = False
        return out, cs
    notional: int256 = mk.floor_div((p.margin - p.cost) * lots, qty)
    realised: int256 = 0
    out.position, realised = fill.apply_close(p, lots, notional)
    out.position.margin = 0
    if lots != qty:
        out.position.margin = p.margin + realised
    out.market = self.add_interest(l.market, p.size, out.position.size)
    return self.close_against(out, cs, lots, -notional, True, params)


@internal
@pure
def unwind_at_mark(l: Ladder, counters: DynArray[Counter, MAX_COUNTERS], mark: int256,
                   params: mk.MarketParams) -> (Ladder, DynArray[Counter, MAX_COUNTERS]):
    """rules.liquidation.process_fund_unwind at the mark: what the users can
    take of the fund's position closed at the mark rounded in the fund's
    favour, its realised PnL to the fund; a notional past 64 bits refuses."""
    out: Ladder = l
    lots: int256 = self.takes(counters, abs(l.position.size), False)
    notional: int256 = lots * mark // convert(params.scale, int256)
    if l.position.size > 0:
        notional = -mk.ceil_div(lots * mark, convert(params.scale, int256))
    if abs(notional) > MAX_INT64:
        out.ok = False
        return out, counters
    realised: int256 = 0
    out.position, realised = fill.apply_close(l.position, lots, notional)
    out.market = self.add_interest(l.market, l.position.size, out.position.size)
    out.insurance += realised
    return self.close_against(out, counters, lots, -notional, False, params)


# --- the entry -----------------------------------------------------------------------

@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    """
    @notice The state root after a Deleverage item and the receipt outcome (a
        refused record changes nothing). A wrong length is a NOOP. The
        openings are read one at a time here (an internal call taking the
        array would copy all of it).
    """
    n: uint256 = len(item)
    if ctx.block_open == 0 or n < HEAD or lib.word(item, 0, 1) != 2 or lib.word(item, 1, 1) != TAG_DELEVERAGE:
        return state_root, False
    count: uint256 = lib.word(item, 26, 1)
    if count > MAX_COUNTERS or n != HEAD + 20 * count:
        return state_root, False
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    if not found or not self.names_ok(item, account, count):
        return state_root, False
    m: uint256 = len(openings)
    keys: DynArray[bytes32, MAX_READS] = [mk.market_key(market), mk.position_key(account, market),
                                          mk.auction_key(account, market), lib.GLOBALS_KEY]
    counters: DynArray[Counter, MAX_COUNTERS] = []
    for i: uint256 in range(count, bound=MAX_COUNTERS):
        who: address = lib.addr(item, HEAD + 20 * i)
        counters.append(Counter(who=who, position=empty(mk.Position), collateral=0, nonces_hash=empty(bytes32),
                                account=False, at=len(keys), cap=0, took=False, after=empty(mk.Position)))
        keys.append(mk.position_key(who, market))
        if who != INSURANCE:
            keys.append(lib.account_key(who))
    for i: uint256 in range(len(keys), bound=MAX_READS):
        lib.verify_leaf(lib.Cursor(root=state_root, used=i), keys[i],
                        openings[lib.at(lib.Cursor(root=state_root, used=i), m)])
    assert openings[3].present and len(openings[3].value) == lib.GLOBALS_SIZE, "witness: globals leaf"
    g: lib.Globals = abi_decode(openings[3].value, lib.Globals)
    l: Ladder = empty(Ladder)
    l.market = openings[0].value
    if not openings[0].present:
        l.market = b""
    mark: int256 = mk.fresh_mark(l.market, p, ctx.timestamp_ms)
    if mark == 0:
        return state_root, False
    position: mk.Position = mk.read_position(openings[1])
    unwind: bool = account == INSURANCE  # the fund's own position: process_fund_unwind
    if position.size == 0 or not (unwind or mk.is_liquidatable(position, l.market, mark, p)):
        return state_root, False
    for i: uint256 in range(len(counters), bound=MAX_COUNTERS):
        k: uint256 = counters[i].at
        counters[i].position = mk.read_position(openings[k])
        if counters[i].who != INSURANCE:
            acct: lib.AccountLeaf = lib.read_account(openings[k + 1])
            counters[i].account = openings[k + 1].present
            counters[i].collateral = convert(acct.collateral, int256)
            counters[i].nonces_hash = acct.nonces_hash
        if not self.counter_ok(counters[i], position.size, l.market, mark, p):
            return state_root, False
    if openings[2].present and not unwind:  # in auction
        return state_root, False
    # the funding settled (the fund's: owed by the fund; a liquidated one's deficit absorbed)
    f: mk.Funding = mk.settle_funding(position, l.market, p)
    fund: int256 = convert(g.insurance_fund, int256)
    l.ok = True
    l.position = f.position
    l.market = lib.set_word(l.market, mk.MARKET_FUNDING_DUST, convert(f.dust, bytes32))
    l.insurance = f.sweep
    done: Ladder = empty(Ladder)
    after: DynArray[Counter, MAX_COUNTERS] = []
    adl: bool = True
    if unwind:  # the fund's funding is paid by (or to) the fund
        l.insurance -= position.margin - f.position.margin
        l.position.margin = position.margin
    else:
        l.position.order_epoch = g.order_count
        l.position = self.absorb(l.position)
    cash: int256 = fund + l.insurance
    if cash * convert(p.scale, int256) >= -fill.equity_scaled(l.position, mark, convert(p.scale, int256)):
        # can_fund_pay_shortfall: at the mark, undone if the fund still ends short
        if unwind:
            done, after = self.unwind_at_mark(l, counters, mark, p)
        else:
            done, after = self.close_at_mark(l, counters, mk.liquidation_size(l.position, mark, p), mark, p)
        if not done.ok:
            return state_root, False
        adl = fund + done.insurance < 0
    if adl:  # auto-deleverage (the fund's position: the insurance fund as its margin)
        if unwind:
            l.position.margin = cash
            l.position = self.absorb(l.position)
        done, after = self.deleverage_slice(l, counters, mark, p)
        if not done.ok:
            return state_root, False
        if unwind:  # the insurance fund: the margin the slice left, plus the dust swept in meanwhile
            done.insurance += done.position.margin - cash
            done.position.margin = 0
    g.insurance_fund = convert(convert(g.insurance_fund, int256) + done.insurance, uint256)
    # the writes, each leaf once with its final value
    c: lib.Cursor = lib.Cursor(root=state_root, used=len(keys))
    c = lib.rewrite(c, keys[1], mk.position_leaf(done.position), openings[lib.at(c, m)])
    c = lib.rewrite(c, keys[0], done.market, openings[lib.at(c, m)])
    c = lib.rewrite(c, keys[3], abi_encode(g), openings[lib.at(c, m)])
    for cc: Counter in after:
        if not cc.took:
            continue
        c = lib.rewrite(c, keys[cc.at], mk.position_leaf(cc.after), openings[lib.at(c, m)])
        if cc.who != INSURANCE:
            c = lib.rewrite(c, keys[cc.at + 1], abi_encode(convert(cc.collateral, uint256), cc.nonces_hash),
                            openings[lib.at(c, m)])
    return c.root, True
