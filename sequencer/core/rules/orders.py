"""Orders: PlaceOrder registers a signed order keyed by (account, nonce)
(margin is taken at fill time, sequencer.core.rules.trades); CancelOrder
cancels an open one (or a pending trigger, sequencer.core.rules.triggers);
ModifyOrder cancels an open order and places its replacement, both or neither.

A replacement is a new order: it gets the next placement sequence number, so
it loses its time priority (CME and most venues do so on a price change or a
size increase).  Keeping the old priority would let an order grow in front of
the queue, and the Trade rule knows the taker as the order placed last: a
replacement that crosses must be that order to take."""
from __future__ import annotations

import msgspec

from sequencer.core import eip712
from sequencer.core.hashing import keccak
from sequencer.core.markets import MarketParams
from sequencer.core.records import CancelOrder, ModifyOrder, PlaceOrder
from sequencer.core.rules.base import (Context, RuleError, hex_address, process_user_preamble, require,
                                       require_market_params)
from sequencer.core.state import (TRIGGER_CANCELLED, TRIGGER_FIRED, TRIGGER_PENDING, Order, OrderSchedule, State, Trigger,
                                  get_order_epoch)

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


def is_nonce_taken(state: State, address: bytes, nonce: int) -> bool:
    """Whether (address, nonce) already names an order or a trigger."""
    return (address, nonce) in state.orders or (address, nonce) in state.triggers


def get_order_schedule(state: State, address: bytes) -> OrderSchedule:
    return state.order_schedules.get(address) or OrderSchedule()


def cancel_trigger(state: State, address: bytes, nonce: int, trigger: Trigger) -> None:
    """Cancel a pending trigger (a CancelOrder naming it, or a cancel-all)."""
    require(trigger.status == TRIGGER_PENDING, "order_not_open",
            f"trigger {nonce} is already {'fired' if trigger.status == TRIGGER_FIRED else 'cancelled'}")
    schedule = get_order_schedule(state, address)
    state.set_trigger(address, nonce, replace(trigger, status=TRIGGER_CANCELLED))
    state.set_order_schedule(address, replace(schedule, open_triggers=schedule.open_triggers - 1))


def process_cancel_order(state: State, r: CancelOrder, timestamp_ms: int, ctx: Context) -> None:
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    order = state.orders.get((r.account, r.order_nonce))
    trigger = state.triggers.get((r.account, r.order_nonce)) if order is None else None
    if trigger is not None:
        state.set_account(r.account, account)
        cancel_trigger(state, r.account, r.order_nonce, trigger)
        return
    require(order is not None, "unknown_order", f"no order with nonce {r.order_nonce} for {hex_address(r.account)}")
    require(not order.cancelled and order.filled < order.size, "order_not_open",
            f"order {r.order_nonce} is already {'cancelled' if order.cancelled else 'filled'}")
    state.set_account(r.account, account)
    state.set_order(r.account, r.order_nonce, replace(order, cancelled=True))


def as_replacement(r: ModifyOrder, old: Order) -> PlaceOrder:
    """The replacement order as a PlaceOrder: the old order's market, side,
    leverage, time in force and reduce-only with the new price and size."""
    return PlaceOrder(r.account, old.market, old.is_buy, r.price, r.size, old.leverage, old.time_in_force,
                      old.reduce_only, r.nonce, r.expiry, b"")


def require_resting_order(state: State, address: bytes, nonce: int, timestamp_ms: int, by_epoch: bool = False) -> Order:
    """The order to modify: registered, open (by its flag; and, ``by_epoch``,
    rules v4, above its owner's order epoch), not IOC, not expired."""
    order = state.orders.get((address, nonce))
    require(order is not None, "unknown_order", f"no order with nonce {nonce} for {hex_address(address)}")
    require(not order.cancelled and order.filled < order.size, "order_not_open",
            f"order {nonce} is already {'cancelled' if order.cancelled else 'filled'}")
    if by_epoch:
        require_above_order_epoch(state, address, nonce, order)
    require(order.time_in_force != IMMEDIATE_OR_CANCEL and order.expiry >= timestamp_ms, "order_not_resting",
            f"order {nonce} is {'immediate-or-cancel' if order.expiry >= timestamp_ms else 'expired'}: "
            "only a resting order can be modified")
    return order


def process_modify_order(state: State, r: ModifyOrder, timestamp_ms: int, ctx: Context) -> None:
    """Rules v1-v3: the old order's own flag says whether it is open (an order
    dead by its owner's order epoch is modified like an open one)."""
    require(len(r.account) == 20, "invalid_address", "account must be a 20-byte address")
    old = require_resting_order(state, r.account, r.order_nonce, timestamp_ms)
    apply_modify(state, r, old, timestamp_ms, ctx)


def require_above_order_epoch(state: State, address: bytes, nonce: int, order: Order) -> None:
    """An order at or below its owner's order epoch in its market was cancelled
    by a liquidation, a forced close or the dead-man's switch (one write, its
    flag left clear): it is not open."""
    epoch = get_order_epoch(state, address, order.market)
    require(order.seq > epoch, "order_not_open",
            f"order {nonce} was cancelled by its owner's order epoch {epoch} in market {order.market} "
            f"(a liquidation, a forced close or the dead-man's switch; the order's seq is {order.seq})")


def process_modify_order_v4(state: State, r: ModifyOrder, timestamp_ms: int, ctx: Context) -> None:
    """Rules v4: an order dead by its owner's order epoch is not open either.
    Since v4 the dead-man's switch cancels by the epoch instead of flagging
    each order; without this check a ModifyOrder signed before the switch
    fired (or before a liquidation), relayed after it, would revive the stale
    quote as a live replacement."""
    require(len(r.account) == 20, "invalid_address", "account must be a 20-byte address")
    old = require_resting_order(state, r.account, r.order_nonce, timestamp_ms, by_epoch=True)
    apply_modify(state, r, old, timestamp_ms, ctx)


def apply_modify(state: State, r: ModifyOrder, old: Order, timestamp_ms: int, ctx: Context) -> None:
    """Cancel the resting ``old`` and place the replacement, both or neither."""
    replacement = as_replacement(r, old)
    check_order_terms(replacement, require_market_params(ctx, old.market), ctx)
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    require(not is_nonce_taken(state, r.account, r.nonce), "duplicate_order",
            f"order ({hex_address(r.account)}, {r.nonce}) already exists")
    state.set_account(r.account, account)
    state.set_order(r.account, r.order_nonce, replace(old, cancelled=True))
    g = state.globals
    seq = g.order_count + 1
    state.set_globals(replace(g, order_count=seq))
    state.set_order(r.account, r.nonce, Order(
        eip712.compute_struct_hash("ModifyOrder", r), r.size, 0, False, old.market, old.is_buy, r.price,
        old.leverage, old.time_in_force, old.reduce_only, r.expiry, seq))
