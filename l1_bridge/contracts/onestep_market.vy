# pragma version ~=0.4.1
"""
@title isoroll one-step market kit (Vyper module)
@notice What every perps family contract shares (onestep_perps.vy and the
    family contracts onestep.vy routes record tags to; docs/fraud-proofs.md):
    the market table fixed at deployment (every numeric field of
    sequencer.core.markets.MarketParams, the twin of
    prover.trace.get_onestep_markets), the state keys of the perps leaves,
    the mark as the rules read it, Python's floor division, and the position
    leaf with its funding settlement (rules.positions.settle_funding).
    A family contract `initializes: mk` (imported `as mk`).
"""
import trace
import onestep_lib as lib

MAX_LEAF: constant(uint256) = trace.MAX_LEAF
MAX_MARKETS: constant(uint256) = 16
PPM: constant(int256) = 1_000_000
# market leaf words (sequencer/core/commitment.py encode_market_leaf)
MARKET_ORACLE_PRICE: constant(uint256) = 0
MARKET_ORACLE_TIME: constant(uint256) = 1
MARKET_FUNDING_INDEX: constant(uint256) = 2
MARKET_OPEN_INTEREST: constant(uint256) = 3
MARKET_FUNDING_TIME: constant(uint256) = 4
MARKET_FUNDING_DUST: constant(uint256) = 5
MARKET_MARK_PRICE: constant(uint256) = 6  # the committed median mark (rules.mark)
MARKET_BASIS_EMA: constant(uint256) = 7
MARKET_LAST_TRADE_PRICE: constant(uint256) = 8
MARKET_LAST_TRADE_TIME: constant(uint256) = 9
MARKET_PENDING_ORACLE_PRICE: constant(uint256) = 10
MARKET_PENDING_ORACLE_TIME: constant(uint256) = 11


struct MarketParams:
    # sequencer.core.markets.MarketParams: every numeric field, scale for
    # base_decimals (prover.trace.get_onestep_markets keeps this order)
    id: uint256
    scale: uint256
    tick_size: uint256
    step_size: uint256
    initial_margin_ppm: uint256
    maintenance_margin_ppm: uint256
    max_leverage: uint256
    maker_fee_ppm: uint256
    taker_fee_ppm: uint256
    funding_interval_ms: uint256
    funding_cap_ppm: uint256
    funding_interest_ppm: uint256
    oracle_max_age_ms: uint256
    liquidation_fee_ppm: uint256
    partial_liquidation_notional: uint256
    partial_liquidation_ppm: uint256
    min_order_notional: uint256
    insurance_fee_share_ppm: uint256
    liquidation_policy: uint256
    auction_duration_ms: uint256
    mark_basis_band_ppm: uint256
    mark_ema_half_life_ms: uint256
    mark_trade_max_age_ms: uint256
    oracle_jump_ppm: uint256
    oracle_jump_window_ms: uint256
    oracle_confirm_band_ppm: uint256


struct Position:
    size: int256
    cost: int256
    margin: int256
    funding_snapshot: int256
    order_epoch: uint256   # rules v2: the owner's orders here with seq <= it are cancelled


struct Funding:
    # a position after settle_funding and what the market leaf must record
    position: Position
    settled: bool      # a non-zero amount was settled: the market's dust changes
    dust: int256       # the market's funding dust after it
    sweep: int256      # whole units of dust swept to the insurance fund


# the market table, set once at deployment (storage, not immutables: the
# table as immutables would pass the 24 KB code limit); scale 0 = no market
market_table: public(HashMap[uint256, MarketParams])


@internal
def init_markets(markets: DynArray[MarketParams, MAX_MARKETS]):
    for m: MarketParams in markets:
        assert m.scale > 0 and m.tick_size > 0 and m.step_size > 0 and m.funding_interval_ms > 0, "market"
        assert self.market_table[m.id].scale == 0, "market listed twice"
        self.market_table[m.id] = m


@internal
@view
def market_params(market: uint256) -> (bool, MarketParams):
    m: MarketParams = self.market_table[market]
    return m.scale != 0, m


# --- keys (prover/keys.py) ------------------------------------------------------------

@internal
@pure
def position_key(account: address, market: uint256) -> bytes32:
    return keccak256(concat(b"\x02", convert(account, bytes20), convert(convert(market, uint32), bytes4)))


@internal
@pure
def order_key(account: address, nonce: uint256) -> bytes32:
    return keccak256(concat(b"\x03", convert(account, bytes20), convert(convert(nonce, uint64), bytes8)))


@internal
@pure
def market_key(market: uint256) -> bytes32:
    return keccak256(concat(b"\x04", convert(convert(market, uint32), bytes4)))


@internal
@pure
def vault_share_key(account: address) -> bytes32:
    return keccak256(concat(b"\x06", convert(account, bytes20)))


@internal
@pure
def trigger_key(account: address, nonce: uint256) -> bytes32:
    return keccak256(concat(b"\x08", convert(account, bytes20), convert(convert(nonce, uint64), bytes8)))


@internal
@pure
def order_schedule_key(account: address) -> bytes32:
    return keccak256(concat(b"\x09", convert(account, bytes20)))


@internal
@pure
def auction_key(account: address, market: uint256) -> bytes32:
    return keccak256(concat(b"\x0a", convert(account, bytes20), convert(convert(market, uint32), bytes4)))


# --- the mark ----------------------------------------------------------------------

@internal
@pure
def fresh_mark(market: Bytes[MAX_LEAF], params: MarketParams, timestamp_ms: uint256) -> int256:
    """The mark price (rules.base.require_fresh_price: the committed mark,
    word 6), 0 when there is no oracle price or mark, or the applied oracle
    price is older than the market's limit. Every kind that reads the mark
    reads it here."""
    mark: uint256 = lib.leaf_word(market, MARKET_MARK_PRICE)
    if lib.leaf_word(market, MARKET_ORACLE_PRICE) == 0 or mark == 0:
        return 0
    if timestamp_ms > lib.leaf_word(market, MARKET_ORACLE_TIME) + params.oracle_max_age_ms:
        return 0
    return convert(mark, int256)


# --- integer maths (rules.margin: Python's floor division) --------------------------

@internal
@pure
def floor_div(a: int256, b: int256) -> int256:
    """floor(a / b) for b > 0."""
    if a >= 0:
        return convert(convert(a, uint256) // convert(b, uint256), int256)
    return -convert((convert(-a, uint256) + convert(b, uint256) - 1) // convert(b, uint256), int256)


@internal
@pure
def ceil_div(a: int256, b: int256) -> int256:
    """ceil(a / b) for b > 0."""
    return -self.floor_div(-a, b)


# --- positions ------------------------------------------------------------------------

@internal
@pure
def read_position(op: trace.Opening) -> Position:
    """The position leaf (size, cost, margin, funding snapshot, order epoch); all zero when absent."""
    return self.position_of(op.value)


@internal
@pure
def position_of(v: Bytes[MAX_LEAF]) -> Position:
    """A position leaf's fields (the order epoch 0 in a four-word leaf; all zero when empty)."""
    return Position(size=lib.leaf_int(v, 0), cost=lib.leaf_int(v, 1), margin=lib.leaf_int(v, 2),
                    funding_snapshot=lib.leaf_int(v, 3), order_epoch=lib.leaf_word(v, 4))


@internal
@pure
def position_leaf(p: Position) -> Bytes[MAX_LEAF]:
    """sequencer/core/commitment.py encode_position_leaf (empty for a flat
    position with no margin and no order epoch: the leaf is deleted; the
    epoch is a fifth word only once set)."""
    if p.size == 0 and p.cost == 0 and p.margin == 0 and p.order_epoch == 0:
        return b""
    if p.order_epoch == 0:
        return abi_encode(p.size, p.cost, convert(p.margin, uint256), p.funding_snapshot)
    return abi_encode(p.size, p.cost, convert(p.margin, uint256), p.funding_snapshot, p.order_epoch)


@internal
@pure
def settle_funding(p: Position, market: Bytes[MAX_LEAF], params: MarketParams) -> Funding:
    """rules.positions.settle_funding: the position pays (or gets) the funding
    since its snapshot, rounded up against it; the remainder is the market's
    dust, whose whole units are swept to the insurance fund."""
    index: int256 = lib.leaf_int(market, MARKET_FUNDING_INDEX)
    numerator: int256 = p.size * (index - p.funding_snapshot)
    denominator: int256 = convert(params.scale, int256) * PPM
    out: Funding = Funding(position=p, settled=False, dust=convert(lib.leaf_word(market, MARKET_FUNDING_DUST), int256),
                           sweep=0)
    if numerator != 0:
        owed: int256 = self.ceil_div(numerator, denominator)
        dust: int256 = out.dust + owed * denominator - numerator
        out.sweep = dust // denominator
        out.dust = dust - out.sweep * denominator
        out.position.margin -= owed
        out.settled = True
    out.position.funding_snapshot = index
    return out


@internal
@pure
def absorb_funding_deficit(p: Position) -> Position:
    """rules.liquidation.absorb_funding_deficit (rules v3): funding owed
    beyond the margin of the position a liquidation record acts on moves
    into its cost; its margin stays >= 0 (no position leaf holds less), its
    equity and bankruptcy price (margin - cost) are unchanged."""
    out: Position = p
    if p.margin < 0:
        out.cost = p.cost - p.margin
        out.margin = 0
    return out


@internal
@pure
def is_liquidatable(position: Position, market: Bytes[MAX_LEAF], mark: int256, p: MarketParams) -> bool:
    """rules.margin.is_liquidatable: equity (funding owed counted) below maintenance at the mark."""
    if position.size == 0:
        return False
    scale: int256 = convert(p.scale, int256)
    index: int256 = lib.leaf_int(market, MARKET_FUNDING_INDEX)
    owed: int256 = self.ceil_div(position.size * (index - position.funding_snapshot), scale * PPM)
    equity: int256 = (position.margin - owed - position.cost) * scale + position.size * mark
    return equity * PPM < abs(position.size) * mark * convert(p.maintenance_margin_ppm, int256)


@internal
@pure
def liquidation_size(position: Position, mark: int256, p: MarketParams) -> int256:
    """rules.margin.compute_liquidation_size of a settled position: the whole
    of it, or a partial step (up to the step size) of a large solvent one."""
    size: int256 = abs(position.size)
    scale: int256 = convert(p.scale, int256)
    equity: int256 = (position.margin - position.cost) * scale + position.size * mark
    if size * mark // scale <= convert(p.partial_liquidation_notional, int256) or equity < 0:
        return size
    step: int256 = convert(p.step_size, int256)
    part: int256 = self.ceil_div(self.ceil_div(size * convert(p.partial_liquidation_ppm, int256), PPM), step) * step
    return min(part, size)
