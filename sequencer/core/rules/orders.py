"""Orders: PlaceOrder registers a signed order keyed by (account, nonce)
(margin is taken at fill time, sequencer.core.rules.trades); CancelOrder
cancels an open one."""
from __future__ import annotations

import msgspec

from sequencer.core import eip712
from sequencer.core.hashing import keccak
from sequencer.core.markets import MarketParams
from sequencer.core.records import CancelOrder, PlaceOrder
from sequencer.core.rules.base import (Context, RuleError, hex_address, process_user_preamble, require,
                                       require_market_params)
from sequencer.core.state import Order, State

replace = msgspec.structs.replace

GOOD_TILL_CANCEL, IMMEDIATE_OR_CANCEL, POST_ONLY = 0, 1, 2
TIME_IN_FORCE_NAMES = {GOOD_TILL_CANCEL: "good-till-cancel", IMMEDIATE_OR_CANCEL: "immediate-or-cancel",
                       POST_ONLY: "post-only"}


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
    if r.reduce_only and r.time_in_force != IMMEDIATE_OR_CANCEL:
        # dYdX v4: a reduce-only order never rests, so nothing sits in the book
        # without a reserve (issue 10: a resting reduce-only bid moved funding and blocked sellers).
        raise RuleError("reduce_only_not_ioc", "a reduce-only order must be immediate-or-cancel (timeInForce 1)")
    if not r.reduce_only and r.size * r.price < params.min_order_notional * params.scale:
        raise RuleError("below_min_notional", f"order notional {r.size * r.price // params.scale} is below the "
                                              f"market's minimum {params.min_order_notional}")


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
