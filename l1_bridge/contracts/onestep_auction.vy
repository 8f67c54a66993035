# pragma version ~=0.4.1
"""
@title isoroll one-step, AuctionBid (tag 8)
@notice onestep.vy hands this contract an AuctionBid item in an open block:
    a keeper takes `size` lots of `owner`'s liquidation auction in `market`
    at the auction's price now, if no worse for it than its limit `price`
    (sequencer/core/rules/auction.py process_auction_bid). The keeper's side
    is an ordinary opening or reducing fill at its leverage with no fee; the
    owner's side closes the slice at that price with the capped liquidation
    fee. Item (171 bytes): 0x02 0x08 account (20) owner (20) market (4)
    size (8) price (32: the EIP-712 uint256, the rule bounds it only below)
    leverage (4) nonce (8) expiry (8) signature (65).
    Witness (prover/plan_auction.py): read against the pre-state root the
    auction leaf (owner, market), the market, the owner's position, the
    keeper's account and position; if it applies, each leaf whose value
    changes, opened again against the root of the writes before it, in this
    order: keeper account, keeper position, owner position, market (dust and
    open interest), globals (the insurance fund: swept dust and the fee),
    the auction (its lots left). A leaf that empties (the auction sold out,
    a position closed flat with no margin) is deleted (an empty leaf written:
    onestep_lib.write_leaf, its opening carrying the deletion sibling).
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
MAX_INT64: constant(uint256) = 2**63 - 1
TAG_AUCTION_BID: constant(uint256) = 8
ITEM_SIZE: constant(uint256) = 171
SIGNATURE_AT: constant(uint256) = 106
READS: constant(uint256) = 5
AUCTION_BID_TYPEHASH: constant(bytes32) = keccak256("AuctionBid(address account,address owner,uint32 market,uint256 size,uint256 price,uint32 leverage,uint64 nonce,uint64 expiry)")
# auction leaf words (sequencer/core/commitment.py encode_auction_leaf)
AUCTION_SIZE: constant(uint256) = 0
AUCTION_START_PRICE: constant(uint256) = 1
AUCTION_END_PRICE: constant(uint256) = 2
AUCTION_START_MS: constant(uint256) = 3
AUCTION_END_MS: constant(uint256) = 4


struct Bid:
    account: address
    owner: address
    market: uint256
    size: uint256
    price: uint256
    leverage: uint256
    nonce: uint256
    expiry: uint256


struct Outcome:
    # the leaves' new values when the bid applies
    ok: bool
    collateral: uint256
    keeper: mk.Position
    owner: mk.Position
    market: Bytes[MAX_LEAF]
    insurance: uint256
    lots_left: uint256


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, mk.MAX_MARKETS]):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    assert max_amount <= MAX_INT64, "max amount"
    mk.init_markets(markets)


@internal
@pure
def read_bid(item: Bytes[MAX_ITEM]) -> Bid:
    return Bid(account=lib.addr(item, 2), owner=lib.addr(item, 22), market=lib.word(item, 42, 4),
               size=lib.word(item, 46, 8), price=lib.word(item, 54, 32), leverage=lib.word(item, 86, 4),
               nonce=lib.word(item, 90, 8), expiry=lib.word(item, 98, 8))


@internal
@view
def terms_ok(b: Bid, p: mk.MarketParams) -> bool:
    """The checks before the state: a bidder that is neither the owner nor
    the insurance fund, leverage 1..max, size a positive multiple of the
    step within max, a positive limit."""
    if b.account == b.owner or b.account == empty(address):
        return False
    if b.leverage < 1 or b.leverage > p.max_leverage:
        return False
    if b.size == 0 or b.size > lib.MAX_AMOUNT or b.size % p.step_size != 0:
        return False
    return b.price > 0


@internal
@pure
def value_of(op: trace.Opening) -> Bytes[MAX_LEAF]:
    """The leaf's bytes, empty when absent (whatever the opening carries)."""
    if op.present:
        return op.value
    return b""


@internal
@pure
def position_of(leaf: Bytes[MAX_LEAF]) -> mk.Position:
    """The position leaf's fields (all zero when empty)."""
    return mk.position_of(leaf)


@internal
@view
def execute(b: Bid, p: mk.MarketParams, timestamp_ms: uint256, auction: Bytes[MAX_LEAF], market: Bytes[MAX_LEAF],
            owner: mk.Position, collateral: uint256, keeper: mk.Position) -> Outcome:
    """rules.auction.process_auction_bid after the user checks, on the leaves' values."""
    out: Outcome = empty(Outcome)
    if len(auction) == 0 or timestamp_ms >= lib.leaf_word(auction, AUCTION_END_MS):
        return out
    mark: int256 = mk.fresh_mark(market, p, timestamp_ms)
    if mark == 0:
        return out
    owner_f: mk.Funding = mk.settle_funding(owner, market, p)
    settled: Bytes[MAX_LEAF] = market
    if owner_f.settled:
        settled = lib.set_word(market, mk.MARKET_FUNDING_DUST, convert(owner_f.dust, bytes32))
    pos: mk.Position = owner_f.position
    lots: uint256 = min(lib.leaf_word(auction, AUCTION_SIZE), convert(abs(pos.size), uint256))
    if b.size > lots:
        return out
    price: int256 = fill.auction_price(lib.leaf_int(auction, AUCTION_START_PRICE), lib.leaf_int(auction, AUCTION_END_PRICE),
                                       lib.leaf_int(auction, AUCTION_START_MS), lib.leaf_int(auction, AUCTION_END_MS),
                                       convert(timestamp_ms, int256), convert(p.tick_size, int256))
    long: bool = pos.size > 0
    if long and convert(price, uint256) > b.price:
        return out
    if not long and convert(price, uint256) < b.price:
        return out
    size: int256 = convert(b.size, int256)
    keeper_f: mk.Funding = mk.settle_funding(keeper, settled, p)
    delta: int256 = size
    if not long:
        delta = -size
    k: fill.Fill = fill.settle_fill(keeper_f.position, convert(collateral, int256), delta, price,
                                    convert(b.leverage, int256), 0, False, mark, p)
    if not k.ok:
        return out
    o: fill.Close = fill.close_liquidated_slice(pos, size, price, mark, p)
    if not o.ok:
        return out
    leaf: Bytes[MAX_LEAF] = lib.set_word(market, mk.MARKET_FUNDING_DUST, convert(keeper_f.dust, bytes32))
    interest: int256 = convert(lib.leaf_word(market, mk.MARKET_OPEN_INTEREST), int256) + o.long_change + k.long_change
    out.market = lib.set_word(leaf, mk.MARKET_OPEN_INTEREST, convert(convert(interest, uint256), bytes32))
    out.ok = True
    out.collateral = convert(k.free, uint256)
    out.keeper = k.position
    out.owner = o.position
    out.insurance = convert(owner_f.sweep + keeper_f.sweep + o.fee, uint256)
    out.lots_left = lib.leaf_word(auction, AUCTION_SIZE) - b.size
    return out


@internal
@pure
def changed(old: Bytes[MAX_LEAF], new: Bytes[MAX_LEAF]) -> bool:
    return keccak256(old) != keccak256(new)


@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    """
    @notice The state root after an AuctionBid item in an open block and the
        receipt outcome (a failed bid changes nothing). A wrong length is a NOOP.
    """
    if ctx.block_open == 0 or len(item) != ITEM_SIZE or lib.word(item, 0, 1) != 2 or lib.word(item, 1, 1) != TAG_AUCTION_BID:
        return state_root, False
    b: Bid = self.read_bid(item)
    n: uint256 = len(openings)
    assert n >= READS, "witness: missing opening"
    auction_key: bytes32 = mk.auction_key(b.owner, b.market)
    market_key: bytes32 = mk.market_key(b.market)
    owner_key: bytes32 = mk.position_key(b.owner, b.market)
    account_key: bytes32 = lib.account_key(b.account)
    keeper_key: bytes32 = mk.position_key(b.account, b.market)
    c: lib.Cursor = lib.Cursor(root=state_root, used=0)
    lib.verify_leaf(c, auction_key, openings[0])
    lib.verify_leaf(c, market_key, openings[1])
    lib.verify_leaf(c, owner_key, openings[2])
    lib.verify_leaf(c, account_key, openings[3])
    lib.verify_leaf(c, keeper_key, openings[4])
    auction: Bytes[MAX_LEAF] = self.value_of(openings[0])
    # the insurance fund's own positions settle funding into the fund: not
    # ported (the ladder never auctions them)
    assert not (b.owner == empty(address) and len(auction) != 0), "pending"
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(b.market)
    if not found or not self.terms_ok(b, p):
        return state_root, False
    acct: lib.AccountLeaf = lib.read_account(openings[3])
    struct_hash: bytes32 = keccak256(abi_encode(AUCTION_BID_TYPEHASH, b.account, b.owner, b.market, b.size, b.price,
                                                b.leverage, b.nonce, b.expiry))
    if not lib.user_checks(struct_hash, item, SIGNATURE_AT, b.account, b.nonce, b.expiry, ctx, acct, nonces):
        return state_root, False
    market: Bytes[MAX_LEAF] = self.value_of(openings[1])
    old_owner: Bytes[MAX_LEAF] = self.value_of(openings[2])
    old_keeper: Bytes[MAX_LEAF] = self.value_of(openings[4])
    out: Outcome = self.execute(b, p, ctx.timestamp_ms, auction, market, self.position_of(old_owner), acct.collateral,
                                self.position_of(old_keeper))
    if not out.ok:
        return state_root, False
    c.used = READS
    c = lib.rewrite(c, account_key, lib.account_leaf(out.collateral, b.nonce, nonces), openings[lib.at(c, n)])
    new: Bytes[MAX_LEAF] = mk.position_leaf(out.keeper)
    if self.changed(old_keeper, new):
        c = lib.rewrite(c, keeper_key, new, openings[lib.at(c, n)])
    new = mk.position_leaf(out.owner)
    if self.changed(old_owner, new):
        c = lib.rewrite(c, owner_key, new, openings[lib.at(c, n)])
    if self.changed(market, out.market):
        c = lib.rewrite(c, market_key, out.market, openings[lib.at(c, n)])
    if out.insurance != 0:
        g: lib.Globals = lib.read_globals(c, openings[lib.at(c, n)])
        g.insurance_fund += out.insurance
        c = lib.write_globals(c, g, openings[lib.at(c, n)])
    new = b""
    if out.lots_left != 0:
        new = lib.set_word(auction, AUCTION_SIZE, convert(out.lots_left, bytes32))
    c = lib.rewrite(c, auction_key, new, openings[lib.at(c, n)])
    return c.root, True
