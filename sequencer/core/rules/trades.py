"""Trade: one fill between a resting maker and the order placed last (the
taker), within both limits and remaining sizes, if margin suffices.  The
sequencer matches (sequencer.core.matching); this rule only checks that what
it decided is allowed and settles it."""
from __future__ import annotations

import msgspec

from sequencer.core.markets import MarketParams
from sequencer.core.presets import MAX_INT64, PPM
from sequencer.core.records import Trade
from sequencer.core.rules.base import (Context, RuleError, TradeError, get_market, hex_address, require,
                                       require_fresh_price, require_market_params, require_side)
from sequencer.core.rules.margin import (ceil_div, compute_equity_scaled, compute_fee, compute_long_change,
                                         is_initial_margin_kept, is_solvent_at)
from sequencer.core.rules.mark import record_trade_price
from sequencer.core.rules.orders import IMMEDIATE_OR_CANCEL, POST_ONLY
from sequencer.core.rules.positions import close_and_release, get_position, settle_funding
from sequencer.core.state import Market, Order, Position, State, get_order_epoch

replace = msgspec.structs.replace


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
    if order.seq <= get_order_epoch(state, address, t.market):
        raise TradeError(side, "order_cancelled", f"order {nonce} was cancelled by its owner's order epoch "
                                                  "(a liquidation, a forced close or a scheduled cancel-all)")
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
    market = state.markets[params.id]
    if closing:
        if not is_solvent_at(position, price, market, params):
            raise TradeError(side, "below_bankruptcy",
                             f"fill at {price} is beyond the bankruptcy price of the position of "
                             f"{hex_address(address)} (it can only be liquidated)")
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
    fee = compute_fee(abs(delta) * price // scale, fee_ppm)
    if free < fee:
        raise TradeError(side, "insufficient_collateral", f"free collateral {free} does not cover the fee {fee}")
    if position.margin < 0:
        raise TradeError(side, "insufficient_margin",
                         f"funding owed leaves the position margin at {position.margin}; add margin first")
    if abs(position.cost) > MAX_INT64:
        raise TradeError(side, "position_too_large", "the position's cost would leave the 64-bit range")
    check_fill_bounds(position, opening, price, mark, market, params, side)
    state.set_account(address, replace(account, collateral=free - fee))
    state.set_position(address, params.id, position)
    return fee, compute_long_change(old_size, position.size)


def check_fill_bounds(position: Position, opening: int, price: int, mark: int, market: Market,
                      params: MarketParams, side: str) -> None:
    """No fill leaves a position with negative equity at the mark, and a fill
    that opens needs the initial margin at the worse of its price and the mark."""
    if not position.size:
        return
    equity = compute_equity_scaled(position, mark, market, params)
    if equity < 0:
        raise TradeError(side, "below_bankruptcy", "the fill would leave the position with negative equity "
                                                   "at the mark")
    if opening and not (equity * PPM >= abs(position.size) * mark * params.initial_margin_ppm
                        and (price == mark or is_initial_margin_kept(position, price, market, params))):
        raise TradeError(side, "insufficient_margin", "the position would be below its initial margin at the "
                                                      "fill price or the mark")


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
    state.set_order(t.maker, t.maker_nonce, replace(maker, filled=maker.filled + t.size))
    state.set_order(t.taker, t.taker_nonce, replace(taker, filled=taker.filled + t.size))
    # one market write per trade: the trade's price for the mark and the open interest
    state.set_market(record_trade_price(state.markets[t.market], t.price, timestamp_ms, params,
                                        maker_oi + taker_oi))
    to_fund, to_pool = compute_fee_split(maker_fee + taker_fee, params)
    g = state.globals
    state.set_globals(replace(g, fee_pool=g.fee_pool + to_pool, insurance_fund=g.insurance_fund + to_fund))


def compute_fee_split(fees: int, params: MarketParams) -> tuple[int, int]:
    """A trade's fees (maker + taker) as (to the insurance fund, to the fee pool):
    the fund's share rounded down, the pool takes the rest, so the two add up to
    the fees exactly."""
    to_fund = fees * params.insurance_fee_share_ppm // PPM
    return to_fund, fees - to_fund
