# pragma version ~=0.4.1
"""
@title isoroll one-step, the end of a liquidation auction
@notice onestep.vy hands this contract the record items of AuctionEnd (23)
    in an open block; it re-executes rules v3 (sequencer/core/rules/auction.py
    process_auction_end_v3), refusals included, against the witness and
    returns the state root after the record and the receipt outcome. The
    twin of prover/plan_liquidate.py's plan_auction_end. Refused (nothing
    changes): an unlisted market, no auction of the position, one still
    running, an open position on a stale mark. Applied: the auction leaf is
    deleted; a closed position, or one no longer liquidatable at the mark,
    keeps everything else; a position still liquidatable keeps its lots
    (Deleverage records or a new Liquidate go on from there): its funding
    settles (the market's dust, the sweep into the fund; funding owed past
    its margin moves into its cost, margin 0) and its orders in
    the market are cancelled by ONE write (the position's order epoch
    becomes the globals' order count).
    Witness: the auction, the position, the market (read against the
    pre-state root; a refused record stops where the refusal needs no more);
    a position still liquidatable: the globals (read); then the written
    leaves, each opened again against the root of the writes before it: the
    auction (deleted), and for a position still liquidatable the position,
    the market, the globals.
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
TAG_AUCTION_END: constant(uint256) = 23
AUCTION_END_MS: constant(uint256) = 4  # auction leaf: size, start price, end price, start ms, end ms
INSURANCE: constant(address) = empty(address)  # rules.positions.INSURANCE_ADDRESS


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, mk.MAX_MARKETS]):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    mk.init_markets(markets)


struct Kept:
    # a position still liquidatable after its auction, as it is written
    position: Bytes[MAX_LEAF]
    market: Bytes[MAX_LEAF]
    globals: lib.Globals


@internal
@pure
def keep_lots(account: address, position: mk.Position, market: Bytes[MAX_LEAF], p: mk.MarketParams,
              g: lib.Globals) -> Kept:
    """process_auction_end_v3 of a position still liquidatable: settle_funding
    (a user's out of its margin; the fund's own, which no auction holds in a
    state the rules reach, into the fund), a deficit past the margin moved
    into the cost (settle_liquidation_funding), and the order epoch (the
    globals' order count): the position, market and globals leaves after it."""
    f: mk.Funding = mk.settle_funding(position, market, p)
    settled: mk.Position = f.position
    settled.order_epoch = g.order_count
    insurance: int256 = convert(g.insurance_fund, int256) + f.sweep
    if account == INSURANCE:
        insurance -= position.margin - settled.margin
        settled.margin = position.margin
    settled = mk.absorb_funding_deficit(settled)  # settle_liquidation_funding: a deficit into the cost
    out_g: lib.Globals = g
    out_g.insurance_fund = convert(insurance, uint256)
    return Kept(position=mk.position_leaf(settled),
                market=lib.set_word(market, mk.MARKET_FUNDING_DUST, convert(f.dust, bytes32)), globals=out_g)


@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    """
    @notice The state root after an AuctionEnd item in an open block, and the
        receipt outcome (a refused record changes nothing). A wrong length is
        a NOOP, as in onestep.vy.
    """
    if ctx.block_open == 0 or len(item) != 26 or lib.word(item, 0, 1) != 2 or lib.word(item, 1, 1) != TAG_AUCTION_END:
        return state_root, False
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    if not found:
        return state_root, False
    n: uint256 = len(openings)
    c: lib.Cursor = lib.Cursor(root=state_root, used=0)
    auction: bytes32 = mk.auction_key(account, market)
    op_auction: trace.Opening = openings[lib.at(c, n)]
    lib.verify_leaf(c, auction, op_auction)
    if not op_auction.present or ctx.timestamp_ms < lib.leaf_word(op_auction.value, AUCTION_END_MS):
        return state_root, False  # no auction, or one still running
    c.used = 1
    op_pos: trace.Opening = openings[lib.at(c, n)]
    lib.verify_leaf(c, mk.position_key(account, market), op_pos)
    c.used = 2
    op_mkt: trace.Opening = openings[lib.at(c, n)]
    lib.verify_leaf(c, mk.market_key(market), op_mkt)
    c.used = 3
    position: mk.Position = mk.read_position(op_pos)
    if position.size != 0:
        mark: int256 = mk.fresh_mark(op_mkt.value, p, ctx.timestamp_ms)
        if mark == 0:
            return state_root, False
        if mk.is_liquidatable(position, op_mkt.value, mark, p):
            # the auction (deleted), the position, the market, the globals
            k: Kept = self.keep_lots(account, position, op_mkt.value, p,
                                     lib.read_globals(c, openings[lib.at(c, n)]))
            c.used = 4
            c = lib.rewrite(c, auction, b"", openings[lib.at(c, n)])
            c = lib.rewrite(c, mk.position_key(account, market), k.position, openings[lib.at(c, n)])
            c = lib.rewrite(c, mk.market_key(market), k.market, openings[lib.at(c, n)])
            return lib.write_globals(c, k.globals, openings[lib.at(c, n)]).root, True
    return lib.rewrite(c, auction, b"", openings[lib.at(c, n)]).root, True
