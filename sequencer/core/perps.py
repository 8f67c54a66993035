"""The perpetuals settlement rules (DESIGN.md "Rules", docs/engine.md).

Pure functions over ``State``: no I/O, no clock, no randomness, integers only.
The sequencer matches (sequencer.core.matching); these rules only check that
what it decided is allowed and settle it:

- PlaceOrder / CancelOrder register and cancel signed orders keyed by
  (account, nonce); margin is taken at fill time.
- Trade settles one fill between a resting maker and the order placed last
  (the taker), within both limits and remaining sizes, if margin suffices.
- AdjustMargin moves collateral between free and one isolated position.
- OraclePrice (k of n signers, monotonic time), FundingTick (rate within the
  cap, index += rate * mark), Liquidate (backstop by the insurance fund at the
  mark price, else auto-deleveraging at the bankruptcy price).

Units: size in base lots, price in quote units per whole base unit,
``S = 10**base_decimals``; a notional is ``size * price / S`` quote units.
The funding index is in ppm x quote units per whole base unit, so a position
owes ``size * (F - F_snap) / (S * 1e6)``.  Rounding always favours the system
(requirements and payments up, payouts down); funding remainders are kept
exactly in ``Market.funding_dust`` (units of 1/(S*1e6)) and swept whole into
the insurance fund, so conservation holds exactly.
"""
from __future__ import annotations

import msgspec

from sequencer.core import eip712
from sequencer.core.hashing import keccak
from sequencer.core.markets import PPM, ORACLE_SETS, MarketParams, OracleSet, get_market_table
from sequencer.core.records import (AdjustMargin, CancelOrder, FundingTick, Liquidate, OraclePrice,
                                    PlaceOrder, Trade)
from sequencer.core.signing import SignatureError
from sequencer.core.state import Market, Order, Position, State
from sequencer.core.transition import (RULES, Context, RuleError, hex_address, process_user_preamble,
                                       require)

replace = msgspec.structs.replace

INSURANCE_ADDRESS = bytes(20)
"""The insurance fund's pseudo-account: it holds the positions it takes over
as backstop (margin 0; their PnL and funding settle into Globals.insurance_fund)."""

MAX_INDEX = 2**63 - 1
"""Bound of the funding index, costs and notionals: state snapshots encode 64-bit integers."""

GOOD_TILL_CANCEL, IMMEDIATE_OR_CANCEL, POST_ONLY = 0, 1, 2
TIME_IN_FORCE_NAMES = {GOOD_TILL_CANCEL: "good-till-cancel", IMMEDIATE_OR_CANCEL: "immediate-or-cancel",
                       POST_ONLY: "post-only"}


class TradeError(RuleError):
    """A Trade rejected because of one side; ``side`` is "maker", "taker" or ""."""

    def __init__(self, side: str, code: str, message: str) -> None:
        super().__init__(code, f"{side} {message}" if side else message)
        self.side = side


def require_side(condition: bool, side: str, code: str, message: str) -> None:
    if not condition:
        raise TradeError(side, code, message)


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for b > 0."""
    return -((-a) // b)


# --- configuration lookups ------------------------------------------------------

def get_market_params(ctx: Context, market_id: int) -> MarketParams | None:
    return (ctx.markets or get_market_table(ctx.preset.markets)).get(market_id)


def require_market_params(ctx: Context, market_id: int) -> MarketParams:
    params = get_market_params(ctx, market_id)
    if params is None:
        raise RuleError("unknown_market", f"market {market_id} is not configured; GET /v1/markets lists them")
    return params


def get_oracle_set(ctx: Context) -> OracleSet:
    if ctx.oracle_signers:
        return OracleSet(tuple(ctx.oracle_signers), ctx.oracle_quorum)
    return ORACLE_SETS[ctx.preset.markets]


def get_market(state: State, market_id: int) -> Market:
    return state.markets.get(market_id) or Market(market_id)


def require_fresh_price(market: Market, params: MarketParams, timestamp_ms: int) -> int:
    """The mark (oracle) price, refusing a missing or stale one."""
    if market.oracle_price <= 0:
        raise RuleError("no_oracle_price", f"market {market.id} has no oracle price yet")
    age = timestamp_ms - market.oracle_time_ms
    if age > params.oracle_max_age_ms:
        raise RuleError("stale_oracle_price",
                        f"market {market.id} oracle price is {age} ms old, the limit is {params.oracle_max_age_ms} ms")
    return market.oracle_price


# --- margin math (integers; exact comparisons by cross-multiplication) ----------

def compute_notional(size: int, price: int, params: MarketParams) -> int:
    """|size| * price / S, rounded down (exact for tick prices and step sizes)."""
    return abs(size) * price // params.scale


def compute_funding_owed(position: Position, market: Market, params: MarketParams) -> int:
    """Funding the position owes since its snapshot (negative: is owed), rounded up."""
    return ceil_div(position.size * (market.funding_index - position.funding_snapshot), params.scale * PPM)


def compute_unrealized_pnl(position: Position, mark: int, params: MarketParams) -> int:
    """size * mark / S - cost, rounded down."""
    return position.size * mark // params.scale - position.cost


def compute_equity_scaled(position: Position, mark: int, market: Market, params: MarketParams) -> int:
    """S x equity, exactly: margin - funding owed + size * mark / S - cost."""
    owed = compute_funding_owed(position, market, params)
    return (position.margin - owed - position.cost) * params.scale + position.size * mark


def compute_equity(position: Position, mark: int, market: Market, params: MarketParams) -> int:
    return compute_equity_scaled(position, mark, market, params) // params.scale


def compute_maintenance(position: Position, mark: int, params: MarketParams) -> int:
    """|size| * mark / S * MMF, rounded up."""
    return ceil_div(abs(position.size) * mark * params.maintenance_margin_ppm, params.scale * PPM)


def compute_initial_requirement(position: Position, mark: int, params: MarketParams) -> int:
    """|size| * mark / S * IMF, rounded up."""
    return ceil_div(abs(position.size) * mark * params.initial_margin_ppm, params.scale * PPM)


def is_liquidatable(position: Position, mark: int, market: Market, params: MarketParams) -> bool:
    """equity < maintenance, compared exactly."""
    if position.size == 0:
        return False
    equity = compute_equity_scaled(position, mark, market, params) * PPM
    return equity < abs(position.size) * mark * params.maintenance_margin_ppm


def is_initial_margin_kept(position: Position, mark: int, market: Market, params: MarketParams) -> bool:
    """equity >= initial requirement, compared exactly."""
    equity = compute_equity_scaled(position, mark, market, params) * PPM
    return equity >= abs(position.size) * mark * params.initial_margin_ppm


def compute_entry_price(position: Position, params: MarketParams) -> int:
    """|cost| * S / |size|, rounded down (0 when flat)."""
    return abs(position.cost) * params.scale // abs(position.size) if position.size else 0


def compute_liquidation_price(position: Position, market: Market, params: MarketParams) -> int:
    """The threshold T of is_liquidatable at today's funding: a long is
    liquidatable exactly when mark < T, a short exactly when mark > T.
    0 when a long can never be liquidated (and for a flat position)."""
    size, scale, mmf = position.size, params.scale, params.maintenance_margin_ppm
    if size == 0:
        return 0
    net = position.margin - compute_funding_owed(position, market, params)
    if size > 0:
        numerator = PPM * scale * (position.cost - net)
        return max(0, ceil_div(numerator, size * (PPM - mmf)))
    return max(0, PPM * scale * (net - position.cost) // (-size * (PPM + mmf)))


def compute_order_margin(size: int, price: int, leverage: int, fee_ppm: int, params: MarketParams) -> int:
    """Margin plus fee a fill of ``size`` at ``price`` takes from free collateral."""
    notional = compute_notional(size, price, params)
    return ceil_div(notional, leverage) + ceil_div(notional * fee_ppm, PPM)


# --- journaled helpers ---------------------------------------------------------

def add_insurance(state: State, amount: int) -> None:
    if amount:
        g = state.globals
        state.set_globals(replace(g, insurance_fund=g.insurance_fund + amount))


def compute_long_change(old_size: int, new_size: int) -> int:
    return max(new_size, 0) - max(old_size, 0)


def add_open_interest(state: State, market_id: int, delta: int) -> None:
    """Open interest is the sum of the long sizes."""
    if delta:
        market = state.markets[market_id]
        state.set_market(replace(market, open_interest=market.open_interest + delta))


def get_position(state: State, address: bytes, market_id: int) -> Position:
    position = state.positions.get((address, market_id))
    if position is None:
        return Position(funding_snapshot=get_market(state, market_id).funding_index)
    return position


def settle_funding(state: State, address: bytes, market_id: int, position: Position,
                   params: MarketParams) -> Position:
    """Pay the funding owed since the snapshot out of the margin (the fund's
    positions: out of the fund), rounded up; the exact remainder goes to
    Market.funding_dust and whole units of it to the insurance fund."""
    market = state.markets[market_id]
    index = market.funding_index
    numerator = position.size * (index - position.funding_snapshot)
    if numerator == 0:
        return position if position.funding_snapshot == index else replace(position, funding_snapshot=index)
    denominator = params.scale * PPM
    owed = ceil_div(numerator, denominator)
    dust = market.funding_dust + owed * denominator - numerator
    sweep = dust // denominator
    state.set_market(replace(market, funding_dust=dust - sweep * denominator))
    if address == INSURANCE_ADDRESS:
        add_insurance(state, sweep - owed)
        return replace(position, funding_snapshot=index)
    add_insurance(state, sweep)
    return replace(position, margin=position.margin - owed, funding_snapshot=index)


def apply_close(position: Position, qty: int, notional: int) -> tuple[Position, int]:
    """Close ``qty`` lots (0 < qty <= |size|) for the account's signed
    ``notional``; the cost removed is rounded up, so the realised PnL
    (returned) is rounded down.  Margin is left to the caller."""
    size = position.size
    removed = position.cost if qty == abs(size) else ceil_div(position.cost * qty, abs(size))
    new_size = size - qty if size > 0 else size + qty
    return replace(position, size=new_size, cost=position.cost - removed), -notional - removed


def apply_fill(position: Position, delta: int, notional: int) -> tuple[Position, int]:
    """Add ``delta`` lots bought (>0) or sold (<0) for the signed ``notional``;
    returns the position and the realised PnL (margin left to the caller)."""
    size = position.size
    if size == 0 or (size > 0) == (delta > 0):
        return replace(position, size=size + delta, cost=position.cost + notional), 0
    closing = min(abs(delta), abs(size))
    if closing == abs(delta):
        return apply_close(position, closing, notional)
    close_notional = notional * closing // abs(delta)
    position, realised = apply_close(position, closing, close_notional)
    return replace(position, size=size + delta, cost=notional - close_notional), realised


def close_and_release(state: State, address: bytes, position: Position, qty: int, notional: int,
                      free: int, side: str) -> tuple[Position, int]:
    """Close ``qty`` lots; realised PnL goes with the closed share of the
    margin to free collateral (never below 0: a loss stays in the position).
    Returns (position, free)."""
    share = position.margin if qty == abs(position.size) else position.margin * qty // abs(position.size)
    closed, realised = apply_close(position, qty, notional)
    released = min(max(0, share + realised), max(0, position.margin + realised))
    margin = position.margin + realised - released
    if margin < 0:
        raise TradeError(side, "below_bankruptcy",
                         f"fill would leave the position of {hex_address(address)} with margin {margin}: "
                         "the price is beyond its bankruptcy price (it can only be liquidated)")
    return replace(closed, margin=margin), free + released


# --- orders --------------------------------------------------------------------

def check_order_terms(r: PlaceOrder, params: MarketParams, ctx: Context) -> None:
    limit = ctx.preset.max_amount
    if not (0 < r.price <= limit and r.price % params.tick_size == 0):
        raise RuleError("invalid_price", f"price {r.price} must be a positive multiple of the tick size "
                                         f"{params.tick_size}")
    if not (0 < r.size <= limit and r.size % params.step_size == 0):
        raise RuleError("invalid_size", f"size {r.size} must be a positive multiple of the step size "
                                        f"{params.step_size}")
    if not 1 <= r.leverage <= params.max_leverage:
        raise RuleError("invalid_leverage", f"leverage {r.leverage} must be within 1..{params.max_leverage} "
                                            f"for {params.symbol}")
    if r.time_in_force not in TIME_IN_FORCE_NAMES:
        raise RuleError("invalid_time_in_force",
                        f"timeInForce {r.time_in_force}: 0 good-till-cancel, 1 immediate-or-cancel, 2 post-only")


_PLACE_ORDER_TYPE_HASH = eip712.TYPE_HASHES["PlaceOrder"]
_FALSE_WORD, _TRUE_WORD = bytes(32), (1).to_bytes(32, "big")


def compute_order_params_hash(r: PlaceOrder) -> bytes:
    """EIP-712 hashStruct of the PlaceOrder (what eip712.compute_struct_hash
    gives, written out for the hot path; fields already range-checked)."""
    return keccak(_PLACE_ORDER_TYPE_HASH + bytes(12) + r.account + r.market.to_bytes(32, "big")
                  + (_TRUE_WORD if r.is_buy else _FALSE_WORD) + r.price.to_bytes(32, "big")
                  + r.size.to_bytes(32, "big") + r.leverage.to_bytes(32, "big")
                  + r.time_in_force.to_bytes(32, "big") + (_TRUE_WORD if r.reduce_only else _FALSE_WORD)
                  + r.nonce.to_bytes(32, "big") + r.expiry.to_bytes(32, "big"))


def process_place_order(state: State, r: PlaceOrder, timestamp_ms: int, ctx: Context) -> None:
    if len(r.account) != 20:
        raise RuleError("invalid_address", "account must be a 20-byte address")
    params = require_market_params(ctx, r.market)
    check_order_terms(r, params, ctx)
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    if (r.account, r.nonce) in state.orders:
        raise RuleError("duplicate_order", f"order ({hex_address(r.account)}, {r.nonce}) already exists")
    state.set_account(r.account, account)
    g = state.globals
    seq = g.order_count + 1
    state.set_globals(replace(g, order_count=seq))
    state.set_order(r.account, r.nonce, Order(
        compute_order_params_hash(r), r.size, 0, False, r.market, r.is_buy, r.price,
        r.leverage, r.time_in_force, r.reduce_only, r.expiry, seq))


def process_cancel_order(state: State, r: CancelOrder, timestamp_ms: int, ctx: Context) -> None:
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    order = state.orders.get((r.account, r.order_nonce))
    require(order is not None, "unknown_order", f"no order with nonce {r.order_nonce} for {hex_address(r.account)}")
    require(not order.cancelled and order.filled < order.size, "order_not_open",
            f"order {r.order_nonce} is already {'cancelled' if order.cancelled else 'filled'}")
    state.set_account(r.account, account)
    state.set_order(r.account, r.order_nonce, replace(order, cancelled=True))


# --- trades --------------------------------------------------------------------

def get_live_order(state: State, address: bytes, nonce: int, side: str, t: Trade, timestamp_ms: int) -> Order:
    order = state.orders.get((address, nonce))
    if order is None:
        raise TradeError(side, "unknown_order", f"order ({hex_address(address)}, {nonce}) is not registered")
    if order.cancelled:
        raise TradeError(side, "order_cancelled", f"order {nonce} is cancelled")
    if order.expiry < timestamp_ms:
        raise TradeError(side, "order_expired", f"order {nonce} expired at {order.expiry} ms")
    if order.market != t.market:
        raise TradeError(side, "wrong_market", f"order {nonce} is for market {order.market}")
    if t.size > order.size - order.filled:
        raise TradeError(side, "overfill",
                         f"order {nonce} has {order.size - order.filled} lots left, the trade is for {t.size}")
    return order


def check_trade_roles(state: State, t: Trade, maker: Order, taker: Order) -> None:
    require(t.maker != t.taker, "self_trade", "maker and taker are the same account")
    require(maker.is_buy != taker.is_buy, "same_side", "maker and taker orders are on the same side")
    require_side(taker.seq == state.globals.order_count, "taker", "not_taker",
                 "order is not the order placed last, so it cannot take liquidity")
    require_side(maker.seq < taker.seq, "maker", "not_resting", "order was placed after the taker")
    require_side(maker.time_in_force != IMMEDIATE_OR_CANCEL, "maker", "not_resting",
                 "order is immediate-or-cancel and never rests")
    require_side(taker.time_in_force != POST_ONLY, "taker", "post_only", "order is post-only and cannot take")


def check_trade_terms(t: Trade, maker: Order, taker: Order, params: MarketParams, ctx: Context) -> None:
    if not (0 < t.size <= ctx.preset.max_amount and t.size % params.step_size == 0):
        raise RuleError("invalid_size", f"trade size {t.size} must be a positive multiple of the step size "
                                        f"{params.step_size}")
    if not (0 < t.price <= ctx.preset.max_amount and t.price % params.tick_size == 0):
        raise RuleError("invalid_price", f"trade price {t.price} must be a positive multiple of the tick size "
                                         f"{params.tick_size}")
    buy, sell = (maker, taker) if maker.is_buy else (taker, maker)
    if t.price > buy.price:
        raise TradeError("maker" if buy is maker else "taker", "price_outside_limit",
                         f"buy order limit {buy.price} is below the trade price {t.price}")
    if t.price < sell.price:
        raise TradeError("maker" if sell is maker else "taker", "price_outside_limit",
                         f"sell order limit {sell.price} is above the trade price {t.price}")


def settle_fill(state: State, address: bytes, order: Order, delta: int, price: int, fee_ppm: int,
                params: MarketParams, mark: int, side: str) -> tuple[int, int]:
    """Settle one side of a trade; returns (fee charged, change of the open interest)."""
    account = state.accounts.get(address)
    if account is None:
        raise TradeError(side, "unknown_account", f"account {hex_address(address)} does not exist")
    position = settle_funding(state, address, params.id, get_position(state, address, params.id), params)
    old_size = position.size
    scale, sign = params.scale, (1 if delta > 0 else -1)
    closing = min(abs(delta), abs(old_size)) if old_size and (old_size > 0) != (delta > 0) else 0
    opening = abs(delta) - closing
    if order.reduce_only and opening:
        raise TradeError(side, "reduce_only", f"reduce-only order would increase the position "
                                              f"(size {old_size}, fill {delta})")
    free = account.collateral
    if closing:
        position, free = close_and_release(state, address, position, closing, sign * closing * price // scale,
                                           free, side)
    if opening:
        notional = opening * price // scale
        required = ceil_div(notional, order.leverage)
        if free < required:
            raise TradeError(side, "insufficient_collateral",
                             f"free collateral {free} does not cover the margin {required} at {order.leverage}x")
        position = replace(position, size=position.size + sign * opening, cost=position.cost + sign * notional,
                           margin=position.margin + required)
        free -= required
    fee = ceil_div(abs(delta) * price // scale * fee_ppm, PPM)
    if free < fee:
        raise TradeError(side, "insufficient_collateral", f"free collateral {free} does not cover the fee {fee}")
    if position.margin < 0:
        raise TradeError(side, "insufficient_margin",
                         f"funding owed leaves the position margin at {position.margin}; add margin first")
    if abs(position.cost) > MAX_INDEX:
        raise TradeError(side, "position_too_large", "the position's cost would leave the 64-bit range")
    if opening and is_liquidatable(position, mark, state.markets[params.id], params):
        raise TradeError(side, "insufficient_margin", "the position would be below maintenance margin at the mark")
    state.set_account(address, replace(account, collateral=free - fee))
    state.set_position(address, params.id, position)
    return fee, compute_long_change(old_size, position.size)


def process_trade(state: State, t: Trade, timestamp_ms: int, ctx: Context) -> None:
    params = require_market_params(ctx, t.market)
    maker = get_live_order(state, t.maker, t.maker_nonce, "maker", t, timestamp_ms)
    taker = get_live_order(state, t.taker, t.taker_nonce, "taker", t, timestamp_ms)
    check_trade_roles(state, t, maker, taker)
    check_trade_terms(t, maker, taker, params, ctx)
    mark = require_fresh_price(get_market(state, t.market), params, timestamp_ms)
    maker_delta = t.size if maker.is_buy else -t.size
    maker_fee, maker_oi = settle_fill(state, t.maker, maker, maker_delta, t.price, params.maker_fee_ppm, params,
                                      mark, "maker")
    taker_fee, taker_oi = settle_fill(state, t.taker, taker, -maker_delta, t.price, params.taker_fee_ppm, params,
                                      mark, "taker")
    if maker_oi + taker_oi:
        add_open_interest(state, t.market, maker_oi + taker_oi)
    state.set_order(t.maker, t.maker_nonce, replace(maker, filled=maker.filled + t.size))
    state.set_order(t.taker, t.taker_nonce, replace(taker, filled=taker.filled + t.size))
    g = state.globals
    state.set_globals(replace(g, fee_pool=g.fee_pool + maker_fee + taker_fee))


# --- margin --------------------------------------------------------------------

def process_adjust_margin(state: State, r: AdjustMargin, timestamp_ms: int, ctx: Context) -> None:
    require(r.amount != 0 and abs(r.amount) <= ctx.preset.max_amount, "invalid_amount",
            f"amount must be a non-zero integer within +-{ctx.preset.max_amount}, got {r.amount}")
    params = require_market_params(ctx, r.market)
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    position = state.positions.get((r.account, r.market))
    require(position is not None, "no_position", f"{hex_address(r.account)} has no position in market {r.market}")
    position = settle_funding(state, r.account, r.market, position, params)
    if r.amount > 0:
        require(account.collateral >= r.amount, "insufficient_collateral",
                f"free collateral {account.collateral} is less than the amount {r.amount}")
    else:
        require(position.margin >= -r.amount, "insufficient_margin",
                f"position margin {position.margin} is less than {-r.amount}")
    position = replace(position, margin=position.margin + r.amount)
    require(position.margin >= 0, "insufficient_margin",
            f"funding owed leaves the position margin at {position.margin}")
    if r.amount < 0 and position.size:
        market = state.markets[r.market]
        mark = require_fresh_price(market, params, timestamp_ms)
        require(is_initial_margin_kept(position, mark, market, params), "insufficient_margin",
                "the position would fall below its initial margin requirement")
    state.set_account(r.account, replace(account, collateral=account.collateral - r.amount))
    state.set_position(r.account, r.market, position)


# --- oracle and funding -------------------------------------------------------------

def verify_oracle_quorum(r: OraclePrice, ctx: Context) -> None:
    if not ctx.verify_signatures:
        return
    oracle = get_oracle_set(ctx)
    digest = eip712.compute_digest(ctx.domain_separator, "OraclePrice", r)
    seen: set[bytes] = set()
    for signature in r.signatures:
        try:
            signer = ctx.recover(digest, bytes(signature))
        except SignatureError as exc:
            raise RuleError("bad_signature", f"oracle signature: {exc}") from None
        require(signer in oracle.signers, "bad_signature", f"{hex_address(signer)} is not an oracle signer")
        require(signer not in seen, "bad_signature", f"oracle signer {hex_address(signer)} signed twice")
        seen.add(signer)
    require(len(seen) >= oracle.quorum > 0, "no_quorum",
            f"{len(seen)} oracle signatures, {oracle.quorum} of {len(oracle.signers)} needed")


def process_oracle_price(state: State, r: OraclePrice, timestamp_ms: int, ctx: Context) -> None:
    require_market_params(ctx, r.market)
    require(0 < r.price <= ctx.preset.max_amount, "invalid_price", f"oracle price {r.price} out of range")
    market = get_market(state, r.market)
    require(r.timestamp_ms > market.oracle_time_ms, "oracle_time_not_monotonic",
            f"oracle time {r.timestamp_ms} is not after the current {market.oracle_time_ms}")
    require(r.timestamp_ms <= timestamp_ms, "oracle_time_in_future",
            f"oracle time {r.timestamp_ms} is after block time {timestamp_ms}")
    verify_oracle_quorum(r, ctx)
    state.set_market(replace(market, oracle_price=r.price, oracle_time_ms=r.timestamp_ms))


def process_funding_tick(state: State, r: FundingTick, timestamp_ms: int, ctx: Context) -> None:
    params = require_market_params(ctx, r.market)
    require(abs(r.rate_ppm) <= params.funding_cap_ppm, "funding_rate_above_cap",
            f"|rate| {abs(r.rate_ppm)} ppm exceeds the cap {params.funding_cap_ppm} ppm")
    market = get_market(state, r.market)
    require(r.timestamp_ms % params.funding_interval_ms == 0, "funding_time_not_aligned",
            f"funding time {r.timestamp_ms} is not a multiple of the interval {params.funding_interval_ms} ms")
    require(market.funding_time_ms < r.timestamp_ms <= timestamp_ms, "funding_not_due",
            f"funding time {r.timestamp_ms} must be after {market.funding_time_ms} and not after block time")
    mark = require_fresh_price(market, params, timestamp_ms)
    index = market.funding_index + r.rate_ppm * mark
    require(-MAX_INDEX <= index <= MAX_INDEX, "funding_index_overflow",
            "the funding index would leave the signed 64-bit range the log and snapshots encode")
    state.set_market(replace(market, funding_index=index, funding_time_ms=r.timestamp_ms))


# --- liquidation ----------------------------------------------------------------

def compute_liquidation_size(position: Position, mark: int, market: Market, params: MarketParams) -> int:
    """Whole position, or a partial step (rounded up to the step size) when
    it is above the threshold notional and not bankrupt."""
    size = abs(position.size)
    if (compute_notional(size, mark, params) <= params.partial_liquidation_notional
            or compute_equity_scaled(position, mark, market, params) < 0):
        return size
    part = ceil_div(ceil_div(size * params.partial_liquidation_ppm, PPM), params.step_size) * params.step_size
    return min(part, size)


def process_backstop(state: State, address: bytes, position: Position, qty: int, mark: int,
                     params: MarketParams) -> None:
    """The insurance fund takes ``qty`` lots over at the mark price (rounded
    against the liquidated account), charges the capped fee and pays any bad debt."""
    long = position.size > 0
    gross = qty * mark
    notional = -(gross // params.scale) if long else ceil_div(gross, params.scale)
    require(abs(notional) <= MAX_INDEX, "notional_overflow", "the liquidation notional leaves the 64-bit range")
    closed, realised = apply_close(position, qty, notional)
    margin = position.margin + realised
    fee = min(ceil_div(abs(notional) * params.liquidation_fee_ppm, PPM), max(0, margin))
    bad_debt = max(0, -margin)
    state.set_position(address, params.id, replace(closed, margin=margin - fee + bad_debt))
    add_open_interest(state, params.id, compute_long_change(position.size, closed.size))
    fund = settle_funding(state, INSURANCE_ADDRESS, params.id, get_position(state, INSURANCE_ADDRESS, params.id),
                          params)
    taken, fund_realised = apply_fill(fund, qty if long else -qty, -notional)
    state.set_position(INSURANCE_ADDRESS, params.id, taken)
    add_open_interest(state, params.id, compute_long_change(fund.size, taken.size))
    add_insurance(state, fee - bad_debt + fund_realised)


def rank_deleverage_counterparties(state: State, market_id: int, long: bool, mark: int,
                                   params: MarketParams) -> list[tuple[bytes, Position]]:
    """Positions on the ``long`` side, most profitable (unrealised PnL at the
    mark) first, ties by address; the insurance fund's own position last."""
    ranked = []
    fund = None
    for (address, m), position in state.positions.items():
        if m != market_id or position.size == 0 or (position.size > 0) != long:
            continue
        if address == INSURANCE_ADDRESS:
            fund = (address, position)
        else:
            ranked.append((-compute_unrealized_pnl(position, mark, params), address, position))
    ranked.sort(key=lambda item: (item[0], item[1]))
    result = [(address, position) for _, address, position in ranked]
    return result + [fund] if fund else result


def process_auto_deleverage(state: State, address: bytes, position: Position, mark: int,
                            params: MarketParams) -> None:
    """Close the whole position at its bankruptcy price (its margin ends at
    exactly 0) against the most profitable opposite positions."""
    qty, long = abs(position.size), position.size > 0
    bankrupt_notional = position.margin - position.cost  # the account's notional for closing it all
    closed, _ = apply_close(position, qty, bankrupt_notional)
    state.set_position(address, params.id, replace(closed, margin=0))
    add_open_interest(state, params.id, compute_long_change(position.size, 0))
    remaining, remaining_notional = qty, -bankrupt_notional
    for other, counter in rank_deleverage_counterparties(state, params.id, not long, mark, params):
        take = min(remaining, abs(counter.size))
        notional = remaining_notional if take == remaining else -bankrupt_notional * take // qty
        deleverage_position(state, other, counter, take, notional, params)
        remaining, remaining_notional = remaining - take, remaining_notional - notional
        if remaining == 0:
            return
    raise RuleError("deleverage_failed", "not enough opposite positions to deleverage against")


def deleverage_position(state: State, address: bytes, position: Position, qty: int, notional: int,
                        params: MarketParams) -> None:
    position = settle_funding(state, address, params.id, position, params)
    old_size = position.size
    if address == INSURANCE_ADDRESS:
        position, realised = apply_close(position, qty, notional)
        add_insurance(state, realised)
    else:
        account = state.accounts[address]
        position, free = close_and_release(state, address, position, qty, notional, account.collateral, "")
        state.set_account(address, replace(account, collateral=free))
    state.set_position(address, params.id, position)
    add_open_interest(state, params.id, compute_long_change(old_size, position.size))


def process_liquidate(state: State, r: Liquidate, timestamp_ms: int, ctx: Context) -> None:
    params = require_market_params(ctx, r.market)
    require(r.account != INSURANCE_ADDRESS, "not_liquidatable", "the insurance fund is not liquidated")
    mark = require_fresh_price(get_market(state, r.market), params, timestamp_ms)
    position = state.positions.get((r.account, r.market))
    require(position is not None and position.size != 0, "no_position",
            f"{hex_address(r.account)} has no open position in market {r.market}")
    market = state.markets[r.market]
    require(is_liquidatable(position, mark, market, params), "not_liquidatable",
            f"equity {compute_equity(position, mark, market, params)} is not below maintenance "
            f"{compute_maintenance(position, mark, params)}")
    position = settle_funding(state, r.account, r.market, position, params)
    qty = compute_liquidation_size(position, mark, state.markets[r.market], params)
    snapshot = state.snapshot()
    process_backstop(state, r.account, position, qty, mark, params)
    if state.globals.insurance_fund >= 0:
        state.commit(snapshot)
        return
    state.revert(snapshot)
    process_auto_deleverage(state, r.account, position, mark, params)
    require(state.globals.insurance_fund >= 0, "insolvent", "the insurance fund would go negative")


PERPS_RULES = {
    PlaceOrder: process_place_order,
    CancelOrder: process_cancel_order,
    AdjustMargin: process_adjust_margin,
    Trade: process_trade,
    FundingTick: process_funding_tick,
    Liquidate: process_liquidate,
    OraclePrice: process_oracle_price,
}
RULES.update(PERPS_RULES)


# --- views for the API (GET /v1/accounts/{address}, GET /v1/markets) ----------------

def describe_position(position: Position, market: Market, params: MarketParams) -> dict:
    """The API.md position fields, integers in market units (mark = oracle price)."""
    mark = market.oracle_price
    return {"market": params.id, "size": position.size, "margin": position.margin,
            "entryPrice": compute_entry_price(position, params),
            "unrealizedPnl": compute_unrealized_pnl(position, mark, params) if position.size else 0,
            "liquidationPrice": compute_liquidation_price(position, market, params),
            "fundingOwed": compute_funding_owed(position, market, params),
            "maintenanceMargin": compute_maintenance(position, mark, params),
            "equity": compute_equity(position, mark, market, params)}


def describe_market(params: MarketParams, market: Market | None) -> dict:
    """The API.md GET /v1/markets entry, with the units spelled out."""
    market = market or Market(params.id)
    return {"id": params.id, "symbol": params.symbol, "tickSize": params.tick_size, "stepSize": params.step_size,
            "baseDecimals": params.base_decimals, "oraclePrice": market.oracle_price,
            "oracleTimeMs": market.oracle_time_ms, "initialMarginPpm": params.initial_margin_ppm,
            "maintenanceMarginPpm": params.maintenance_margin_ppm, "maxLeverage": params.max_leverage,
            "makerFeePpm": params.maker_fee_ppm, "takerFeePpm": params.taker_fee_ppm,
            "fundingIntervalMs": params.funding_interval_ms, "fundingCapPpm": params.funding_cap_ppm,
            "fundingIndex": market.funding_index, "openInterest": market.open_interest,
            "oracleMaxAgeMs": params.oracle_max_age_ms, "liquidationFeePpm": params.liquidation_fee_ppm,
            "partialLiquidationNotional": params.partial_liquidation_notional,
            "partialLiquidationPpm": params.partial_liquidation_ppm,
            "units": {"price": "quote units (USDC, 6 decimals) per whole base unit",
                      "size": f"base lots of 1e-{params.base_decimals} {params.symbol.split('-')[0]}",
                      "collateral": "quote units (USDC, 6 decimals)", "fractions": "parts per million"}}


def describe_fill(trade: Trade, maker: Order, params: MarketParams) -> dict:
    """A fill for the API and the WebSocket: who bought, the fees charged."""
    notional = compute_notional(trade.size, trade.price, params)
    return {"market": trade.market, "price": trade.price, "size": trade.size,
            "maker": "0x" + trade.maker.hex(), "makerNonce": trade.maker_nonce,
            "taker": "0x" + trade.taker.hex(), "takerNonce": trade.taker_nonce,
            "takerSide": "sell" if maker.is_buy else "buy", "notional": notional,
            "makerFee": ceil_div(notional * params.maker_fee_ppm, PPM),
            "takerFee": ceil_div(notional * params.taker_fee_ppm, PPM)}
