# pragma version ~=0.4.1
"""
@title isoroll one-step, the liquidation ladder's records
@notice onestep.vy hands this contract the record items of Liquidate (18)
    and ForcedClose (50) in an open block (AuctionEnd, 23: onestep_auction_end.vy);
    it re-executes rules v3 (sequencer/core/rules/liquidation.py) against the
    witness and returns the state root after the record and the receipt
    outcome. The twin of prover/plan_liquidate.py. Every refusal of the
    two kinds (a Liquidate names at most 4 makers). The position acted on
    has its funding settled as rules v3 settle it (settle_liquidation_funding:
    funding owed past its margin moves into its cost, margin 0). Liquidate: the
    backstop policy's fund takeover at the mark (the fund charging the
    capped fee and paying the bad debt, emptied leaves deleted; a takeover
    the fund cannot pay is not made: only the funding-settled position is
    written); the ladder policy stops after the funding settlement and the
    order epoch (Deleverage records name the counterparties), a position in
    auction is refused unless bankrupt (then its auction ends too).
    ForcedClose: served as a no-op (an unlisted market, the fund's own
    account, a stale mark, a notional past 64 bits, a fund that cannot pay);
    in a listed market its order epoch written, a flat position's margin
    released to free collateral, an open one taken over whole by the fund
    at the mark under every policy (the liquidation fee if liquidatable, no
    fee if healthy), the margin left released. A Liquidate under a book
    policy is forwarded to onestep_book.vy, or, naming no makers under
    book+vault (the vault step), to onestep_vault_step.vy.
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
# 4 book+vault) is re-executed there, whole (prover/plan_book.py)
BOOK: immutable(address)
# onestep_vault_step.vy: a Liquidate naming no makers under book+vault (the
# vault step, prover/plan_vault_step.py)
VAULT_STEP: immutable(address)

MAX_OPENINGS: constant(uint256) = trace.MAX_OPENINGS
MAX_NONCES: constant(uint256) = trace.MAX_NONCES
MAX_ITEM: constant(uint256) = records.MAX_ITEM_SIZE
MAX_LEAF: constant(uint256) = trace.MAX_LEAF
PPM: constant(int256) = mk.PPM
MAX_INT64: constant(int256) = 2**63 - 1
TAG_LIQUIDATE: constant(uint256) = 18
TAG_FORCED_CLOSE: constant(uint256) = 50
MAX_MAKERS: constant(uint256) = 8      # the item layout's bound (rules v1's MAX_LIQUIDATION_MAKERS)
MAX_MAKERS_V2: constant(uint256) = 4   # rules.liquidation.MAX_LIQUIDATION_MAKERS_V2: more is refused
MAKER_SIZE: constant(uint256) = 28     # owner (20) || nonce (8)
POLICY_BACKSTOP: constant(uint256) = 1
POLICY_BOOK_VAULT: constant(uint256) = 4
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
    stop: bool              # no takeover: the settled position, market and globals written
    auction: bool           # the auction leaf deleted as well


struct Leaves:
    position: Bytes[MAX_LEAF]
    market: Bytes[MAX_LEAF]
    fund: Bytes[MAX_LEAF]
    globals: lib.Globals
    released: uint256       # margin moved to free collateral (a forced close)
    short: bool             # the fund would go negative: the takeover is not made


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, mk.MAX_MARKETS], book: address, vault_step: address):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    mk.init_markets(markets)
    BOOK = book
    VAULT_STEP = vault_step


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


# --- Liquidate ----------------------------------------------------------------------

@internal
@view
def liquidate_reads(c: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], op_mkt: trace.Opening,
                    op_pos: trace.Opening) -> Takeover:
    """rules.liquidation.process_liquidate (policies ladder and backstop): the
    market and the position (read after the globals), the refusals (stale
    mark, no position, a healthy one, more than 4 makers, makers under a
    policy without the book); then the funding settlement and the
    backstop's takeover terms (make_takeover). The ladder policy stops there
    (`stop`: no notional to refuse)."""
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    count: uint256 = lib.word(item, 26, 1)
    out: Takeover = empty(Takeover)
    out.refused = True
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    out.p = p
    lib.verify_leaf(c, mk.market_key(market), op_mkt)
    lib.verify_leaf(lib.Cursor(root=c.root, used=c.used + 1), mk.position_key(account, market), op_pos)
    out.mark = mk.fresh_mark(op_mkt.value, out.p, ctx.timestamp_ms)
    if out.mark == 0:
        return out
    position: mk.Position = mk.read_position(op_pos)
    if not mk.is_liquidatable(position, op_mkt.value, out.mark, out.p):
        return out
    if count > MAX_MAKERS_V2 or (count > 0 and out.p.liquidation_policy != 2 and out.p.liquidation_policy != 3
                                 and out.p.liquidation_policy != 4):
        return out
    out = self.make_takeover(out.p, out.mark, position, op_mkt.value, False)
    if out.p.liquidation_policy != POLICY_BACKSTOP:  # the ladder (the book policies went to onestep_book.vy)
        out.refused = False
        out.stop = True
    return out


@internal
@pure
def make_takeover(p: mk.MarketParams, mark: int256, position: mk.Position, market: Bytes[MAX_LEAF],
                  whole: bool) -> Takeover:
    """The backstop's funding settlement (a deficit past the margin into the
    cost: mk.absorb_funding_deficit), size (the liquidation size, or the
    whole position for a forced close) and notional at the mark, rounded
    against the account; a notional past 64 bits refuses it."""
    out: Takeover = empty(Takeover)
    out.refused = True
    out.p = p
    out.mark = mark
    f: mk.Funding = mk.settle_funding(position, market, p)
    out.position = mk.absorb_funding_deficit(f.position)  # rules v3: settle_liquidation_funding
    out.market_leaf = lib.set_word(market, mk.MARKET_FUNDING_DUST, convert(f.dust, bytes32))
    out.insurance = f.sweep
    if whole:
        out.qty = abs(out.position.size)
    else:
        out.qty = mk.liquidation_size(out.position, mark, p)
    gross: int256 = out.qty * mark
    scale: int256 = convert(p.scale, int256)
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
def fund_takeover(t: Takeover, op_fund: trace.Opening, g: lib.Globals, release: bool) -> Leaves:
    """rules.liquidation.process_backstop: the insurance fund takes the lots
    over at the mark; the liquidated position keeps its realised PnL less the
    fee (capped by its margin), the fund pays any bad debt. A fund left
    negative: `short` (rules v3 make no takeover). A position left flat with no margin (a bankrupt
    one) or the fund's closed flat is an empty leaf: deleted. `release`
    (a forced close, closed whole): what margin is left moves to free
    collateral (rules.liquidation.release_margin)."""
    closed: mk.Position = empty(mk.Position)
    realised: int256 = 0
    closed, realised = self.apply_close(t.position, t.qty, t.notional)
    margin: int256 = t.position.margin + realised
    fee: int256 = min(mk.ceil_div(abs(t.notional) * convert(t.p.liquidation_fee_ppm, int256), PPM), max(0, margin))
    bad_debt: int256 = max(0, -margin)
    closed.margin = margin - fee + bad_debt
    released: uint256 = 0
    if release and closed.size == 0 and closed.margin > 0:
        released = convert(closed.margin, uint256)
        closed.margin = 0
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
    out_g: lib.Globals = g
    out_g.insurance_fund = convert(max(total, 0), uint256)
    market_leaf: Bytes[MAX_LEAF] = lib.set_word(lib.set_word(t.market_leaf, mk.MARKET_FUNDING_DUST, convert(f.dust, bytes32)),
                                                mk.MARKET_OPEN_INTEREST, convert(oi, bytes32))
    return Leaves(position=mk.position_leaf(closed), market=market_leaf, fund=mk.position_leaf(taken),
                  globals=out_g, released=released, short=total < 0)


# --- ForcedClose -------------------------------------------------------------------------

@internal
@view
def forced_close_kind(item: Bytes[MAX_ITEM], g: lib.Globals) -> uint256:
    """rules.liquidation.process_forced_close: 0 refused (out of inbox order:
    nothing changes), 1 served as a no-op (an unlisted market, the fund's
    account: the inbox entry counted), 2 a close in a listed market."""
    if lib.word(item, 2, 8) != g.inbox_count:
        return 0
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(lib.word(item, 30, 32))
    if not found or lib.addr(item, 10) == INSURANCE:
        return 1
    return 2


@internal
@pure
def served(item: Bytes[MAX_ITEM], g: lib.Globals) -> lib.Globals:
    """rules.accounts.advance_inbox: the entry 0x03 || index || account || market chained, the count + 1."""
    out: lib.Globals = g
    out.inbox_hash = keccak256(concat(g.inbox_hash, b"\x03", slice(item, 2, 60)))
    out.inbox_count = g.inbox_count + 1
    return out


@internal
@pure
def credit(c: lib.Cursor, account: address, amount: uint256, op: trace.Opening) -> lib.Cursor:
    """rules.liquidation.release_margin's account write: `amount` more free
    collateral (an absent account starts empty), opened against the current root."""
    acct: lib.AccountLeaf = lib.read_account(op)
    return lib.rewrite(c, lib.account_key(account), abi_encode(acct.collateral + amount, acct.nonces_hash), op)


@internal
@view
def forced_takeover(ctx: trace.Ctx, p: mk.MarketParams, position: mk.Position, op_mkt: trace.Opening) -> Takeover:
    """close_forced_position of an open position (rules v3, every policy): a
    stale mark refuses the close (served as a no-op); else the fund's terms
    for the whole position, with the liquidation fee if it is liquidatable,
    none if healthy."""
    mark: int256 = mk.fresh_mark(op_mkt.value, p, ctx.timestamp_ms)
    if mark == 0:
        out: Takeover = empty(Takeover)
        out.refused = True
        return out
    q: mk.MarketParams = p
    if not mk.is_liquidatable(position, op_mkt.value, mark, p):
        q.liquidation_fee_ppm = 0
    return self.make_takeover(q, mark, position, op_mkt.value, True)


# --- the entry ------------------------------------------------------------------------------

@internal
@pure
def liquidate_length_ok(item: Bytes[MAX_ITEM]) -> bool:
    """account (20) || market (4) || makers: a count (<= 8, the layout's
    bound; the rule refuses more than 4) and that many (owner, nonce)."""
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
    @notice The state root after a Liquidate or ForcedClose item in
        an open block, and the receipt outcome (a failed record changes
        nothing). A wrong length is a NOOP, as in onestep.vy. The openings are
        read one at a time here (an internal call taking the array would copy
        all of it).
    """
    n: uint256 = len(item)
    tag: uint256 = lib.word(item, 1, 1)
    if ctx.block_open == 0 or n < 2 or lib.word(item, 0, 1) != 2:
        return state_root, False
    count: uint256 = len(openings)
    forced: bool = tag == TAG_FORCED_CLOSE and n == 62
    if not forced and (tag != TAG_LIQUIDATE or not self.liquidate_length_ok(item)):
        return state_root, False
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    if forced:
        account = lib.addr(item, 10)
        market = lib.word(item, 30, 32)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    c: lib.Cursor = lib.Cursor(root=state_root, used=0)
    g: lib.Globals = empty(lib.Globals)
    t: Takeover = empty(Takeover)
    t.refused = True
    released: uint256 = 0
    keys: DynArray[bytes32, 3] = []
    leaves: DynArray[Bytes[MAX_LEAF], 3] = []
    if not forced:
        if not found or account == INSURANCE:
            return state_root, False
        # book-first, book+auction and book+vault (policies 2, 3, 4): their own
        # one-step re-executes the whole Liquidate
        if p.liquidation_policy >= 2:
            target: address = BOOK
            if p.liquidation_policy == POLICY_BOOK_VAULT and n == 27:  # no makers: the vault step
                target = VAULT_STEP
            book_root: bytes32 = empty(bytes32)
            book_ok: bool = False
            book_root, book_ok = staticcall OneStepBook(target).apply(state_root, ctx, item, openings, nonces)
            return book_root, book_ok
    g = lib.read_globals(c, openings[lib.at(c, count)])
    c.used = 1
    if forced:
        kind: uint256 = self.forced_close_kind(item, g)
        if kind == 0:
            return state_root, False
        if kind == 1:
            c.used = 0  # the globals opened again, written
        else:  # a listed market: the order epoch is written (rules v2), then the close
            op_pos: trace.Opening = openings[lib.at(c, count)]
            lib.verify_leaf(c, mk.position_key(account, market), op_pos)
            c.used = 2
            position: mk.Position = mk.read_position(op_pos)
            position.order_epoch = g.order_count
            if position.size == 0:  # release_margin
                if position.margin > 0:
                    released = convert(position.margin, uint256)
                    position.margin = 0
                keys = [mk.position_key(account, market)]
                leaves = [mk.position_leaf(position)]
            else:  # a stale mark, a notional past 64 bits or a fund short undo the close: served as a no-op
                op_mkt: trace.Opening = openings[lib.at(c, count)]
                lib.verify_leaf(c, mk.market_key(market), op_mkt)
                c.used = 3
                t = self.forced_takeover(ctx, p, position, op_mkt)
    else:
        t = self.liquidate_reads(c, ctx, item, openings[lib.at(c, count)],
                                 openings[lib.at(lib.Cursor(root=state_root, used=2), count)])
        if t.refused:
            return state_root, False
        c.used = 3
        if t.stop:  # the ladder policy: the orders cancelled (the epoch); a position in auction
            t.position.order_epoch = g.order_count
            op_auction: trace.Opening = openings[lib.at(c, count)]
            lib.verify_leaf(c, mk.auction_key(account, market), op_auction)
            c.used = 4
            if op_auction.present:  # left to its auction unless bankrupt (then the auction ends)
                if (t.position.margin - t.position.cost) * convert(p.scale, int256) + t.position.size * t.mark >= 0:
                    return state_root, False
                t.auction = True
    if not t.refused and not t.stop:  # the fund takes the lots over (read its position)
        fund_key: bytes32 = mk.position_key(INSURANCE, market)
        op_fund: trace.Opening = openings[lib.at(c, count)]
        lib.verify_leaf(c, fund_key, op_fund)
        c.used += 1
        w: Leaves = self.fund_takeover(t, op_fund, g, forced)
        if not w.short:
            keys = [mk.position_key(account, market), mk.market_key(market), fund_key]
            leaves = [w.position, w.market, w.fund]
            g = w.globals
            released = w.released
        elif not forced:  # the backstop's Liquidate: its funding settled all the same (no epoch)
            t.stop = True
    if t.stop:  # no takeover: the settled position (and its auction ended)
        if t.auction:
            keys = [mk.auction_key(account, market)]
            leaves = [b""]
        keys.append(mk.position_key(account, market))
        keys.append(mk.market_key(market))
        leaves.append(mk.position_leaf(t.position))
        leaves.append(t.market_leaf)
        g.insurance_fund = convert(convert(g.insurance_fund, int256) + t.insurance, uint256)
    for i: uint256 in range(len(keys), bound=3):  # each opened again against the root so far
        c = lib.rewrite(c, keys[i], leaves[i], openings[lib.at(c, count)])
    if released > 0:
        c = self.credit(c, account, released, openings[lib.at(c, count)])
    if forced:
        g = self.served(item, g)
    return lib.write_globals(c, g, openings[lib.at(c, count)]).root, True
