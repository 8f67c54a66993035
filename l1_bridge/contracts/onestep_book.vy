# pragma version ~=0.4.1
"""
@title isoroll one-step, a Liquidate in the book (rules v3)
@notice onestep_liquidate.vy hands this contract a Liquidate item (tag 18)
    whose market's liquidation policy puts the position into the book first:
    book-first (2), book+auction (3), book+vault (4). It re-executes
    rules.liquidation.process_liquidate_v3 there, refusals included, against
    the witness (prover/plan_book.py) and returns the state root after the
    record and the receipt outcome:
    the refusals (no fresh mark, no position, a healthy one, more than 4
    makers, a maker that is not an open resting order on the other side of
    the market within the bankruptcy price, not the owner's, not cancelled
    by its owner's order epoch, in price-time order); the funding settled
    (funding owed past the margin moved into the cost, margin 0);
    the owner's orders cancelled by ONE write (the position's order epoch
    becomes the globals' order count); a position whose auction runs refused
    unless bankrupt (then its auction ends and the record stops); the book
    step over the named makers (each maker's side a settle_fill with the
    maker fee split between the fee pool and the fund, the liquidated slice
    closed at the maker's price with the capped liquidation fee; a maker
    whose side fails is passed over); a record naming no makers sends the
    position on: under book+auction, solvent and with a price to decay, an
    auction is started for the lots; else (book-first, or book+auction
    insolvent or with nothing to decay) rules v3 stop where v2 went down
    the ranked ladder (Deleverage records go on).
    Pending (reverts "pending", prover.records.PendingKind in Python): a
    maker order of the insurance fund's address. The vault step (book+vault,
    no makers) is onestep_vault_step.vy's: onestep_liquidate.vy forwards it
    there, so the guard below never sees one.
    Witness: read against the pre-state root the market, the position (a
    refused record stops here when the refusal needs no more), the auction,
    the globals, then per maker its order and, for an owner not named
    before, its account and position; if the record applies, the written
    leaves, each once with its final value, opened against the root of the
    writes before it: the position, the market, the globals, then per maker
    whose fill held its order and, at its owner's first held fill, the
    owner's account and position, or (no makers) the auction started.
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
TAG_LIQUIDATE: constant(uint256) = 18
MAX_LAYOUT_MAKERS: constant(uint256) = 8  # the item layout's bound (prover.records)
MAX_MAKERS: constant(uint256) = 4         # rules.liquidation.MAX_LIQUIDATION_MAKERS_V2
MAKER_SIZE: constant(uint256) = 28        # owner (20) || nonce (8)
POLICY_BOOK_FIRST: constant(uint256) = 2
POLICY_BOOK_AUCTION: constant(uint256) = 3
POLICY_BOOK_VAULT: constant(uint256) = 4
IMMEDIATE_OR_CANCEL: constant(uint256) = 1
INSURANCE: constant(address) = empty(address)  # rules.positions.INSURANCE_ADDRESS
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


struct Maker:
    # a named resting order as read from the pre-state
    owner: address
    key: bytes32
    order: Bytes[MAX_LEAF]   # empty when absent
    at: uint256              # its opening
    slot: uint256            # its owner's index in the owners


struct Owner:
    # a maker's owner: its account and its position in the market, as the
    # fills before leave them
    owner: address
    exists: bool             # the account leaf is present
    collateral: int256
    nonces_hash: bytes32
    position: mk.Position
    filled: bool             # one of its fills held: its leaves are written
    at: uint256              # the opening of its account (its position's next)


struct Write:
    key: bytes32
    leaf: Bytes[MAX_LEAF]


struct Book:
    # the state of the record in memory, leaf by leaf
    position: mk.Position
    market: Bytes[MAX_LEAF]
    insurance: int256        # added to the fund
    fee_pool: int256         # added to the fee pool
    limit: int256
    rest: int256


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, mk.MAX_MARKETS]):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    mk.init_markets(markets)


# --- the rule's maths (rules.margin, rules.liquidation) -----------------------------

@internal
@pure
def liquidation_limit(position: mk.Position, p: mk.MarketParams) -> int256:
    """rules.liquidation.compute_liquidation_limit of a settled position: its
    bankruptcy price rounded to the tick on the safe side (0: a short that
    nothing can fill)."""
    scale: int256 = convert(p.scale, int256)
    tick: int256 = convert(p.tick_size, int256)
    net: int256 = position.margin - position.cost
    if position.size > 0:
        return max(tick, mk.ceil_div(mk.ceil_div(-net * scale, position.size), tick) * tick)
    return max(0, mk.floor_div(mk.floor_div(net * scale, -position.size), tick) * tick)


# --- the makers (rules.liquidation.get_liquidation_maker) ---------------------------

@internal
@pure
def maker_ok(m: Maker, epoch: uint256, account: address, market: uint256, long: bool, limit: int256,
             previous: Bytes[MAX_LEAF], timestamp_ms: uint256) -> bool:
    """An open resting order (present, not cancelled, not filled, unexpired,
    not IOC) in the market on the other side, not the owner's, placed after
    its owner's order epoch, within the limit, after `previous` in
    price-time priority."""
    o: Bytes[MAX_LEAF] = m.order
    if len(o) == 0 or lib.leaf_word(o, ORDER_CANCELLED) != 0:
        return False
    if lib.leaf_word(o, ORDER_FILLED) >= lib.leaf_word(o, ORDER_SIZE) or lib.leaf_word(o, ORDER_EXPIRY) < timestamp_ms:
        return False
    if lib.leaf_word(o, ORDER_TIME_IN_FORCE) == IMMEDIATE_OR_CANCEL or lib.leaf_word(o, ORDER_MARKET) != market:
        return False
    if (lib.leaf_word(o, ORDER_IS_BUY) != 0) != long or m.owner == account:
        return False
    if lib.leaf_word(o, ORDER_SEQ) <= epoch:
        return False
    price: uint256 = lib.leaf_word(o, ORDER_PRICE)
    if long and convert(price, int256) < limit:
        return False
    if not long and (price == 0 or convert(price, int256) > limit):
        return False
    if len(previous) == 0:
        return True
    before: uint256 = lib.leaf_word(previous, ORDER_PRICE)
    if price == before:
        return lib.leaf_word(o, ORDER_SEQ) > lib.leaf_word(previous, ORDER_SEQ)
    if long:
        return price < before
    return price > before


@internal
@view
def fill_maker(b: Book, o: Owner, order: Bytes[MAX_LEAF], p: mk.MarketParams, mark: int256) -> (bool, Book, Owner):
    """rules.liquidation.fill_liquidation_order of one maker, all or nothing:
    the maker's side (its funding settled, then settle_fill at its price with
    the maker fee), the liquidated slice closed at that price; the open
    interest, the maker fee split (the fund's share rounded down)."""
    lots: int256 = min(b.rest, convert(lib.leaf_word(order, ORDER_SIZE) - lib.leaf_word(order, ORDER_FILLED), int256))
    if not o.exists:
        return False, b, o
    price: int256 = convert(lib.leaf_word(order, ORDER_PRICE), int256)
    f: mk.Funding = mk.settle_funding(o.position, b.market, p)
    delta: int256 = lots
    if b.position.size < 0:
        delta = -lots
    k: fill.Fill = fill.settle_fill(f.position, o.collateral, delta, price,
                                    convert(lib.leaf_word(order, ORDER_LEVERAGE), int256),
                                    convert(p.maker_fee_ppm, int256), lib.leaf_word(order, ORDER_REDUCE_ONLY) != 0,
                                    mark, p)
    if not k.ok:
        return False, b, o
    c: fill.Close = fill.close_liquidated_slice(b.position, lots, price, mark, p)
    if not c.ok:
        return False, b, o
    out: Book = b
    out.position = c.position
    out.market = lib.set_word(b.market, mk.MARKET_FUNDING_DUST, convert(f.dust, bytes32))
    interest: int256 = lib.leaf_int(b.market, mk.MARKET_OPEN_INTEREST) + c.long_change + k.long_change
    out.market = lib.set_word(out.market, mk.MARKET_OPEN_INTEREST, convert(convert(interest, uint256), bytes32))
    to_fund: int256 = k.fee * convert(p.insurance_fee_share_ppm, int256) // PPM
    out.insurance = b.insurance + f.sweep + c.fee + to_fund
    out.fee_pool = b.fee_pool + k.fee - to_fund
    out.rest = b.rest - lots
    owner: Owner = o
    owner.collateral = k.free
    owner.position = k.position
    owner.filled = True
    return True, out, owner


# --- reads ---------------------------------------------------------------------------

@internal
@pure
def length_ok(item: Bytes[MAX_ITEM]) -> bool:
    """account (20) || market (4) || makers: a count (<= 8, the layout) and that many (owner, nonce)."""
    n: uint256 = len(item)
    if n < 27:
        return False
    count: uint256 = lib.word(item, 26, 1)
    return count <= MAX_LAYOUT_MAKERS and n == 27 + MAKER_SIZE * count


@internal
@pure
def value_of(op: trace.Opening) -> Bytes[MAX_LEAF]:
    if op.present:
        return op.value
    return b""


@internal
@view
def start_auction(b: Book, mark: int256, p: mk.MarketParams, timestamp_ms: uint256) -> Bytes[MAX_LEAF]:
    """rules.liquidation.process_unfilled under book+auction: the lots the
    book did not take, of a solvent position with something to decay, up
    for a Dutch auction from the mark (rounded in the owner's favour) to the
    bankruptcy price (start_auction). Anything else (book-first, or an
    insolvent position, or nothing to decay) would go down the ladder,
    where rules v3 stop (Deleverage records go on): empty, no auction."""
    tick: int256 = convert(p.tick_size, int256)
    end: int256 = self.liquidation_limit(b.position, p)
    start: int256 = 0
    if b.position.size > 0:
        start = max(mk.ceil_div(mark, tick) * tick, end)
    else:
        start = min(max(tick, mk.floor_div(mark, tick) * tick), end)
    solvent: bool = fill.equity_scaled(b.position, mark, convert(p.scale, int256)) >= 0
    if p.liquidation_policy != POLICY_BOOK_AUCTION or not solvent or start == end:
        return b""
    lots: int256 = min(b.rest, abs(b.position.size))
    return abi_encode(convert(lots, uint256), convert(start, uint256), convert(end, uint256), timestamp_ms,
                      timestamp_ms + p.auction_duration_ms)


@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    """
    @notice The state root after a Liquidate item in a book-first market and
        the receipt outcome (a refused record changes nothing). A wrong
        length is a NOOP. The openings are read one at a time here (an
        internal call taking the array would copy all of it).
    """
    if (ctx.block_open == 0 or len(item) < 2 or lib.word(item, 0, 1) != 2 or lib.word(item, 1, 1) != TAG_LIQUIDATE
            or not self.length_ok(item)):
        return state_root, False
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    count: uint256 = lib.word(item, 26, 1)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    if not found or account == INSURANCE:
        return state_root, False
    assert p.liquidation_policy >= POLICY_BOOK_FIRST and p.liquidation_policy <= POLICY_BOOK_VAULT, "book: policy"
    n: uint256 = len(openings)
    c0: lib.Cursor = lib.Cursor(root=state_root, used=0)
    # the keys read, in the witness's order (the owners' from the item alone)
    keys: DynArray[bytes32, MAX_OPENINGS] = [mk.market_key(market), mk.position_key(account, market),
                                             mk.auction_key(account, market), lib.GLOBALS_KEY]
    makers: DynArray[Maker, MAX_MAKERS] = []
    owners: DynArray[Owner, MAX_MAKERS] = []
    for i: uint256 in range(min(count, MAX_MAKERS), bound=MAX_MAKERS):
        owner: address = lib.addr(item, 27 + MAKER_SIZE * i)
        m: Maker = Maker(owner=owner, key=mk.order_key(owner, lib.word(item, 47 + MAKER_SIZE * i, 8)), order=b"",
                         at=len(keys), slot=len(owners))
        keys.append(m.key)
        for j: uint256 in range(len(owners), bound=MAX_MAKERS):
            if owners[j].owner == owner:
                m.slot = j
                break
        if m.slot == len(owners):
            owners.append(Owner(owner=owner, exists=False, collateral=0, nonces_hash=empty(bytes32),
                                position=empty(mk.Position), filled=False, at=len(keys)))
            keys.append(lib.account_key(owner))
            keys.append(mk.position_key(owner, market))
        makers.append(m)
    for i: uint256 in range(2):
        lib.verify_leaf(c0, keys[i], openings[lib.at(lib.Cursor(root=state_root, used=i), n)])
    b: Book = empty(Book)
    b.market = self.value_of(openings[0])
    mark: int256 = mk.fresh_mark(b.market, p, ctx.timestamp_ms)
    if mark == 0:
        return state_root, False
    b.position = mk.read_position(openings[1])
    if not mk.is_liquidatable(b.position, b.market, mark, p) or count > MAX_MAKERS:
        return state_root, False
    # the reads past the early refusals: the auction, the globals, the makers
    for i: uint256 in range(2, len(keys), bound=MAX_OPENINGS):
        lib.verify_leaf(c0, keys[i], openings[lib.at(lib.Cursor(root=state_root, used=i), n)])
    assert openings[3].present and len(openings[3].value) == lib.GLOBALS_SIZE, "witness: globals leaf"
    g: lib.Globals = abi_decode(openings[3].value, lib.Globals)
    for i: uint256 in range(len(makers), bound=MAX_MAKERS):
        makers[i].order = self.value_of(openings[makers[i].at])
    for i: uint256 in range(len(owners), bound=MAX_MAKERS):
        k: uint256 = owners[i].at
        acct: lib.AccountLeaf = lib.read_account(openings[k])
        owners[i].exists = openings[k].present
        owners[i].collateral = convert(acct.collateral, int256)
        owners[i].nonces_hash = acct.nonces_hash
        owners[i].position = mk.read_position(openings[k + 1])
    used: uint256 = len(keys)
    # process_liquidate_v2: the funding settled, the orders cancelled by the epoch
    f: mk.Funding = mk.settle_funding(b.position, b.market, p)
    b.position = mk.absorb_funding_deficit(f.position)  # settle_liquidation_funding
    b.market = lib.set_word(b.market, mk.MARKET_FUNDING_DUST, convert(f.dust, bytes32))
    b.insurance = f.sweep
    qty: int256 = mk.liquidation_size(b.position, mark, p)
    b.position.order_epoch = g.order_count
    in_auction: bool = openings[2].present
    if in_auction:
        # process_liquidate_in_auction: left to its auction unless bankrupt
        # (then the auction ends and rules v3 stop there: no maker is filled)
        if fill.equity_scaled(b.position, mark, convert(p.scale, int256)) >= 0:
            return state_root, False
        count = 0
    # process_book_step: every maker checked, then filled in order
    long: bool = b.position.size > 0
    b.limit = self.liquidation_limit(b.position, p)
    b.rest = qty
    previous: Bytes[MAX_LEAF] = b""
    fund: bool = False
    for m: Maker in makers:
        if in_auction:
            break
        if not self.maker_ok(m, owners[m.slot].position.order_epoch, account, market, long, b.limit, previous,
                             ctx.timestamp_ms):
            return state_root, False
        fund = fund or m.owner == INSURANCE
        previous = m.order
    # a maker order of the fund's address (no state the rules reach holds
    # one) would settle the fund's funding into the fund: not ported
    assert not fund, "pending"
    held: DynArray[bool, MAX_MAKERS] = []
    for i: uint256 in range(count, bound=MAX_MAKERS):
        ok: bool = False
        if b.rest > 0:
            filled: uint256 = lib.leaf_word(makers[i].order, ORDER_FILLED)
            lots: uint256 = min(convert(b.rest, uint256), lib.leaf_word(makers[i].order, ORDER_SIZE) - filled)
            after: Book = empty(Book)
            o: Owner = empty(Owner)
            ok, after, o = self.fill_maker(b, owners[makers[i].slot], makers[i].order, p, mark)
            if ok:
                b = after
                owners[makers[i].slot] = o
                makers[i].order = lib.set_word(makers[i].order, ORDER_FILLED, convert(filled + lots, bytes32))
        held.append(ok)
    auction: Bytes[MAX_LEAF] = b""
    if b.rest > 0 and b.position.size != 0 and len(makers) == 0 and not in_auction:
        # v2: only a record naming no makers sends the lots on; the vault
        # step is onestep_vault_step.vy's (onestep_liquidate.vy routes it there)
        assert p.liquidation_policy != POLICY_BOOK_VAULT, "pending"
        auction = self.start_auction(b, mark, p, ctx.timestamp_ms)
    # the writes, each leaf once with its final value
    g.insurance_fund = convert(convert(g.insurance_fund, int256) + b.insurance, uint256)
    g.fee_pool = convert(convert(g.fee_pool, int256) + b.fee_pool, uint256)
    writes: DynArray[Write, MAX_OPENINGS] = [Write(key=keys[1], leaf=mk.position_leaf(b.position)),
                                             Write(key=keys[0], leaf=b.market), Write(key=keys[3], leaf=abi_encode(g))]
    written: DynArray[bool, MAX_MAKERS] = [False, False, False, False]
    for i: uint256 in range(count, bound=MAX_MAKERS):
        if not held[i]:
            continue
        slot: uint256 = makers[i].slot
        writes.append(Write(key=makers[i].key, leaf=makers[i].order))
        if not written[slot]:
            written[slot] = True
            o: Owner = owners[slot]
            writes.append(Write(key=keys[o.at], leaf=abi_encode(convert(o.collateral, uint256), o.nonces_hash)))
            writes.append(Write(key=keys[o.at + 1], leaf=mk.position_leaf(o.position)))
    if len(auction) != 0 or in_auction:  # started, or ended (deleted)
        writes.append(Write(key=keys[2], leaf=auction))
    c: lib.Cursor = lib.Cursor(root=state_root, used=used)
    for w: Write in writes:
        c = lib.rewrite(c, w.key, w.leaf, openings[lib.at(c, n)])
    return c.root, True
