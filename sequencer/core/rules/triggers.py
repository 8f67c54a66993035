"""Trigger orders and the dead-man's switch.

- PlaceTrigger registers a stop-loss or take-profit on the mark (dYdX v4
  conditional orders, Hyperliquid trigger orders).  It reserves nothing while it
  waits; it is refused when it could never become a valid order.
- TriggerFire (sequencer) turns a pending trigger into an immediate-or-cancel
  order placed last (so it is the taker of the trades that follow it).  The
  rule reads the mark from ``require_fresh_price`` and refuses a fire whose
  mark has not crossed: a sequencer cannot fire early.  (It can fire late or
  never, as it can leave any order unmatched; docs/engine.md.)
- ScheduleCancel sets (or, with 0, clears) the account's cancel-all time;
  ScheduledCancelAll (sequencer) runs it once block time has reached it.
  Rules v4 cancel the orders by the account's order epoch in every market
  (one write a market); v1-v3 set each open order's flag.

Which way the mark must cross follows from the side and the kind: a sell
(closing a long) take-profit fires at mark >= trigger, a sell stop-loss at
mark <= trigger; a buy the other way round.
"""
from __future__ import annotations

import msgspec

from sequencer.core import eip712
from sequencer.core.markets import MarketParams, get_market_table
from sequencer.core.records import PlaceOrder, PlaceTrigger, ScheduleCancel, ScheduledCancelAll, TriggerFire
from sequencer.core.rules.base import (Context, RuleError, get_market, hex_address, process_user_preamble, require,
                                       require_fresh_price, require_market_params)
from sequencer.core.rules.liquidation import cancel_orders_v2
from sequencer.core.rules.orders import (IMMEDIATE_OR_CANCEL, cancel_trigger, check_order_terms, get_order_schedule,
                                        is_nonce_taken)
from sequencer.core.state import TRIGGER_FIRED, TRIGGER_PENDING, Order, OrderSchedule, State, Trigger

replace = msgspec.structs.replace

TAKE_PROFIT, STOP_LOSS = 1, 2
TPSL_NAMES = {TAKE_PROFIT: "take-profit", STOP_LOSS: "stop-loss"}
DAY_MS = 86_400_000


def fires_above(is_buy: bool, tpsl: int) -> bool:
    """Whether the trigger fires when the mark rises to it (else when it falls to it)."""
    return is_buy == (tpsl == STOP_LOSS)


def is_trigger_crossed(is_buy: bool, tpsl: int, trigger_price: int, mark: int) -> bool:
    return mark >= trigger_price if fires_above(is_buy, tpsl) else mark <= trigger_price


def as_fired_order(r: PlaceTrigger) -> PlaceOrder:
    """The order a trigger becomes, as a PlaceOrder (for the term checks)."""
    return PlaceOrder(r.account, r.market, r.is_buy, r.price, r.size, r.leverage, IMMEDIATE_OR_CANCEL,
                      r.reduce_only, r.nonce, r.expiry, b"")


def check_trigger_terms(r: PlaceTrigger, params: MarketParams, ctx: Context) -> None:
    """Refuse a trigger that could never be a valid order when it fires."""
    if r.tpsl not in TPSL_NAMES:
        raise RuleError("invalid_tpsl", f"tpsl {r.tpsl}: 1 take-profit, 2 stop-loss")
    if not (0 < r.trigger_price <= ctx.preset.max_amount and r.trigger_price % params.tick_size == 0):
        raise RuleError("invalid_trigger_price", f"trigger price {r.trigger_price} must be a positive multiple of "
                                                 f"the tick size {params.tick_size}")
    check_order_terms(as_fired_order(r), params, ctx)
    if (r.price < r.trigger_price) if r.is_buy else (r.price > r.trigger_price):
        raise RuleError("limit_inside_trigger",
                        f"a {'buy' if r.is_buy else 'sell'} trigger's limit {r.price} must be "
                        f"{'at or above' if r.is_buy else 'at or below'} its trigger price {r.trigger_price}: "
                        "the order it becomes would not fill at the mark that fires it")


def process_place_trigger(state: State, r: PlaceTrigger, timestamp_ms: int, ctx: Context) -> None:
    require(len(r.account) == 20, "invalid_address", "account must be a 20-byte address")
    params = require_market_params(ctx, r.market)
    check_trigger_terms(r, params, ctx)
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    require(not is_nonce_taken(state, r.account, r.nonce), "duplicate_order",
            f"order ({hex_address(r.account)}, {r.nonce}) already exists")
    schedule = get_order_schedule(state, r.account)
    limit = ctx.preset.max_open_triggers
    require(schedule.open_triggers < limit, "too_many_triggers",
            f"{hex_address(r.account)} already has {schedule.open_triggers} pending triggers, the limit is {limit}")
    state.set_account(r.account, account)
    state.set_order_schedule(r.account, replace(schedule, open_triggers=schedule.open_triggers + 1))
    state.set_trigger(r.account, r.nonce, Trigger(
        eip712.compute_struct_hash("PlaceTrigger", r), r.market, r.is_buy, r.trigger_price, r.price, r.size,
        r.leverage, r.tpsl, r.reduce_only, timestamp_ms))


def process_trigger_fire(state: State, r: TriggerFire, timestamp_ms: int, ctx: Context) -> None:
    trigger = state.triggers.get((r.account, r.nonce))
    require(trigger is not None, "unknown_trigger", f"no trigger with nonce {r.nonce} for {hex_address(r.account)}")
    require(trigger.status == TRIGGER_PENDING, "trigger_not_pending", f"trigger {r.nonce} is not pending")
    params = require_market_params(ctx, trigger.market)
    mark = require_fresh_price(get_market(state, trigger.market), params, timestamp_ms)
    if not is_trigger_crossed(trigger.is_buy, trigger.tpsl, trigger.trigger_price, mark):
        raise RuleError("trigger_not_crossed",
                        f"the mark {mark} has not reached the trigger price {trigger.trigger_price} "
                        f"({'rising' if fires_above(trigger.is_buy, trigger.tpsl) else 'falling'} to it fires it)")
    require((r.account, r.nonce) not in state.orders, "duplicate_order", f"order {r.nonce} already exists")
    schedule = get_order_schedule(state, r.account)
    state.set_trigger(r.account, r.nonce, replace(trigger, status=TRIGGER_FIRED))
    state.set_order_schedule(r.account, replace(schedule, open_triggers=schedule.open_triggers - 1))
    g = state.globals
    seq = g.order_count + 1
    state.set_globals(replace(g, order_count=seq))
    # Immediate-or-cancel, expiring with this block: it takes what it can now and never rests.
    state.set_order(r.account, r.nonce, Order(
        trigger.params_hash, trigger.size, 0, False, trigger.market, trigger.is_buy, trigger.price,
        trigger.leverage, IMMEDIATE_OR_CANCEL, trigger.reduce_only, timestamp_ms, seq))


def process_schedule_cancel(state: State, r: ScheduleCancel, timestamp_ms: int, ctx: Context) -> None:
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    schedule = get_order_schedule(state, r.account)
    if r.cancel_at_ms:
        earliest = timestamp_ms + ctx.preset.schedule_cancel_min_delay_ms
        require(r.cancel_at_ms >= earliest, "schedule_too_soon",
                f"cancel time {r.cancel_at_ms} ms must be at least {ctx.preset.schedule_cancel_min_delay_ms} ms "
                f"after block time {timestamp_ms} (0 clears the schedule)")
        limit = ctx.preset.max_scheduled_cancels_per_day
        require(get_cancels_today(schedule, timestamp_ms) < limit, "schedule_limit",
                f"{limit} scheduled cancel-alls already ran today (UTC); schedule again tomorrow")
    state.set_account(r.account, account)
    state.set_order_schedule(r.account, replace(schedule, cancel_at_ms=r.cancel_at_ms))


def get_cancels_today(schedule: OrderSchedule, timestamp_ms: int) -> int:
    return schedule.cancels if schedule.cancel_day == timestamp_ms // DAY_MS else 0


def process_scheduled_cancel_all(state: State, r: ScheduledCancelAll, timestamp_ms: int, ctx: Context) -> None:
    """Rules v1-v3: every open order's cancelled flag is set, one leaf an order."""
    require_due_schedule(state, r, timestamp_ms)
    cancel_open_orders(state, r.account, ctx)
    cancel_pending_triggers(state, r.account)
    count_cancel_all(state, r.account, timestamp_ms)


def process_scheduled_cancel_all_v4(state: State, r: ScheduledCancelAll, timestamp_ms: int, ctx: Context) -> None:
    """Rules v4: the account's orders are cancelled by its order epoch in
    every market of the table (one position leaf a market, as a liquidation
    or a forced close does), not one flag an order: the witness of the step
    no longer grows with the orders, so L1 re-executes it for any account
    (docs/fraud-proofs.md).  Triggers and the schedule as in v1."""
    schedule = require_due_schedule(state, r, timestamp_ms)
    for market_id in sorted(ctx.markets or get_market_table(ctx.preset.markets)):
        cancel_orders_v2(state, r.account, market_id, state.positions.get((r.account, market_id)))
    cancel_pending_triggers(state, r.account)
    count_cancel_all(state, r.account, timestamp_ms)


def require_due_schedule(state: State, r: ScheduledCancelAll, timestamp_ms: int) -> OrderSchedule:
    schedule = state.order_schedules.get(r.account)
    require(schedule is not None and schedule.cancel_at_ms != 0, "no_schedule",
            f"{hex_address(r.account)} has no scheduled cancel")
    require(schedule.cancel_at_ms <= timestamp_ms, "schedule_not_due",
            f"the cancel is scheduled at {schedule.cancel_at_ms} ms, block time is {timestamp_ms} ms")
    return schedule


def count_cancel_all(state: State, address: bytes, timestamp_ms: int) -> None:
    """The schedule cleared and the day's runs counted."""
    schedule = get_order_schedule(state, address)
    state.set_order_schedule(address, replace(
        schedule, cancel_at_ms=0, cancel_day=timestamp_ms // DAY_MS,
        cancels=get_cancels_today(schedule, timestamp_ms) + 1))


def cancel_open_orders(state: State, address: bytes, ctx: Context) -> None:
    """Cancel every open order of ``address`` in every market (through the
    state's per-owner index of open orders: the cost does not grow with the book)."""
    for market_id in sorted(ctx.markets or get_market_table(ctx.preset.markets)):
        for nonce in state.get_open_order_nonces(address, market_id):
            state.set_order(address, nonce, replace(state.orders[(address, nonce)], cancelled=True))


def cancel_pending_triggers(state: State, address: bytes) -> None:
    """Cancel every pending trigger of ``address`` (scans the triggers table)."""
    keys = sorted(key for key, trigger in state.triggers.items()
                  if key[0] == address and trigger.status == TRIGGER_PENDING)
    for key in keys:
        cancel_trigger(state, address, key[1], state.triggers[key])


__all__ = ["TAKE_PROFIT", "STOP_LOSS", "is_trigger_crossed", "fires_above", "process_place_trigger",
           "process_trigger_fire", "process_schedule_cancel", "process_scheduled_cancel_all",
           "process_scheduled_cancel_all_v4", "cancel_trigger"]
