"""The differential test of the trigger one-steps (onestep.vy handing
CancelOrder, PlaceTrigger, ScheduleCancel, TriggerFire and ScheduledCancelAll
to onestep_triggers.vy): Hypothesis generates states an L2 can reach
(accounts with a few orders and triggers, and market makers with a full
nonce window, 100+ orders across the markets, positions present, epoch-only
or absent and up to the cap of pending triggers; triggers pending, fired
with their order, or cancelled; order schedules counting the pending
triggers, with a cancel-all due, not due or none and any runs today or
before; an order count of 0 or more; markets with fresh, stale or no marks) and records, valid by construction or adversarial (another key's
signature, malformed signatures, used nonces, expiry edges, every trigger
term at its edge, duplicate nonces, the cap of pending triggers, the 5 s lead
and the 10-a-day limit, a fire before and after the cross on a fresh and a
stale mark, someone else's and fired or cancelled triggers, raw item
bytes), runs the Python rules (prover.trace over sequencer.core) and the
contracts on py-evm from the same pre-state, and requires the same
post-state root and receipt outcome.  ScheduledCancelAll is rules v4's
(the order epoch in every market, the pending triggers named and counted):
past a step's openings it is pending on both sides; forged witnesses revert,
and a dishonest proposer's cancel-all that leaves an order or a trigger
live loses its one-step."""
from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from l1_bridge.compile import CONTRACTS_DIR
from onestep_support import BTC, ETH, PRICES, get_examples, params_of, run_both
from prover import fraud_vectors as fv
from prover import plan_triggers
from prover.keys import get_order_schedule_key, get_position_key, get_trigger_key
from prover.records import PendingKind, decode_item, encode_item
from prover.trace import TraceContext, TraceRunner
from sequencer.core import eip712
from sequencer.core.presets import DEVNET
from sequencer.core.records import (CancelOrder, PlaceOrder, PlaceTrigger, ScheduleCancel, ScheduledCancelAll,
                                    TriggerFire)
from sequencer.core.rules.triggers import DAY_MS, STOP_LOSS, TAKE_PROFIT
from sequencer.core.state import (TRIGGER_CANCELLED, TRIGGER_FIRED, TRIGGER_PENDING, Account, Order, OrderSchedule,
                                  Position, State, Trigger, get_order_epoch, is_order_open)
from test_onestep_differential import pick, signature

pytestmark = pytest.mark.evm

U64 = 2**64 - 1
MAX = DEVNET.max_amount
AHEAD = DEVNET.max_expiry_ahead_ms
WINDOW = DEVNET.nonce_window
CAP = DEVNET.max_open_triggers
LEAD = DEVNET.schedule_cancel_min_delay_ms
PER_DAY = DEVNET.max_scheduled_cancels_per_day
TS = fv.BLOCK_TIME
TODAY = TS // DAY_MS


@pytest.fixture(scope="module")
def onestep(onestep_contract):
    return onestep_contract


# --- building reachable states -----------------------------------------------------

def make_trigger(r: PlaceTrigger, status: int = TRIGGER_PENDING, placed_ms: int = TS - 5000) -> Trigger:
    return Trigger(eip712.compute_struct_hash("PlaceTrigger", r), r.market, r.is_buy, r.trigger_price, r.price,
                   r.size, r.leverage, r.tpsl, r.reduce_only, placed_ms, status)


def fired_order(trigger: Trigger, seq: int, filled: int = 0, cancelled: bool = False) -> Order:
    """The order a fired trigger became (rules.triggers.process_trigger_fire)."""
    return Order(trigger.params_hash, trigger.size, filled, cancelled, trigger.market, trigger.is_buy, trigger.price,
                 trigger.leverage, 1, trigger.reduce_only, TS - 4000, seq)


@st.composite
def trigger_records(draw, account: bytes, nonce: int, market: int = fv.BTC):
    """A PlaceTrigger with valid terms around the market's price."""
    p = params_of(market)
    base = PRICES[market] // p.tick_size
    trigger_price = draw(st.integers(base // 2, base * 2)) * p.tick_size
    is_buy = draw(st.booleans())
    slip = draw(st.integers(0, 50)) * p.tick_size
    price = trigger_price + slip if is_buy else max(trigger_price - slip, p.tick_size)
    size = draw(st.integers(1, 100)) * 10 * p.step_size
    return PlaceTrigger(account, market, is_buy, trigger_price, price, size, draw(st.integers(1, p.max_leverage)),
                        draw(st.sampled_from([TAKE_PROFIT, STOP_LOSS])), draw(st.booleans()), nonce, TS + 60_000, b"")


@st.composite
def markets(draw, market_id: int):
    p = params_of(market_id)
    price = PRICES[market_id] + draw(st.integers(-1000, 1000)) * p.tick_size
    age = draw(st.sampled_from([0, 1000, p.oracle_max_age_ms, p.oracle_max_age_ms + 1, 10**6]))
    market = fv.make_market(market_id, price if draw(st.sampled_from([True] * 9 + [False])) else 0,
                            oracle_time_ms=TS - age)
    return msgspec.structs.replace(market, mark_price=draw(st.sampled_from([price, price, price + p.tick_size, 0])))


@st.composite
def account_books(draw, state: State, index: int):
    """One account's orders and triggers, its kept nonces naming them (or a
    full window that dropped the oldest) and its order schedule."""
    address = fv.ADDRESSES[index]
    count = draw(st.sampled_from([3, 6, 1, 0, 4]))
    nonces = sorted(draw(st.lists(st.integers(1, 10**6), min_size=count, max_size=count, unique=True)))
    pending = 0
    for nonce in nonces:
        shape = draw(st.sampled_from(["order", "order", "trigger", "trigger", "fired", "none"]))
        if shape == "order":
            record = PlaceOrder(address, fv.BTC, draw(st.booleans()), PRICES[fv.BTC], 10 * BTC.step_size, 10,
                                draw(st.sampled_from([0, 1, 2])), False, nonce, TS + draw(st.sampled_from([-1, 1])),
                                b"")
            size = record.size
            state.set_order(address, nonce, fv.make_order(record, filled=draw(st.sampled_from([0, size // 2, size])),
                                                          cancelled=draw(st.integers(0, 3)) == 0, seq=nonce))
        elif shape in ("trigger", "fired"):
            record = draw(trigger_records(address, nonce, draw(st.sampled_from([fv.BTC, fv.BTC, fv.ETH]))))
            status = TRIGGER_FIRED if shape == "fired" else draw(st.sampled_from(
                [TRIGGER_PENDING, TRIGGER_PENDING, TRIGGER_CANCELLED]))
            trigger = make_trigger(record, status)
            state.set_trigger(address, nonce, trigger)
            pending += status == TRIGGER_PENDING
            if shape == "fired":
                state.set_order(address, nonce, fired_order(trigger, nonce, filled=draw(st.sampled_from(
                    [0, trigger.size])), cancelled=draw(st.booleans())))
    kept = tuple(nonces) + tuple(draw(st.lists(st.integers(10**6 + 1, 2 * 10**6), max_size=4, unique=True)))
    if draw(st.sampled_from([False] * 5 + [True])):  # a full window: its oldest nonces (some of them orders') dropped
        kept = tuple(range(2 * 10**6, 2 * 10**6 + WINDOW))
    state.set_account(address, Account(draw(st.integers(0, 10**12)), tuple(sorted(kept))))
    cancel_at = draw(st.sampled_from([TS - 1, TS, 0, TS + 1, TS + LEAD, 1]))
    day = draw(st.sampled_from([TODAY, TODAY, TODAY - 1, 0]))
    cancels = draw(st.sampled_from([0, 1, PER_DAY - 1, PER_DAY])) if day else 0
    if pending or cancel_at or cancels:
        state.set_order_schedule(address, OrderSchedule(cancel_at, pending, day, cancels))


def unsigned_stop(nonce: int, account: bytes) -> PlaceTrigger:
    """A sell stop-loss's terms (a trigger leaf keeps its struct hash, not its signature)."""
    price = PRICES[fv.BTC] - 1000 * 10**6
    return PlaceTrigger(account, fv.BTC, False, price, price - 100 * 10**6, 10 * BTC.step_size, 10, STOP_LOSS, True,
                        nonce, TS + 60_000, b"")


def maker_order(address: bytes, nonce: int, market: int, seq: int, filled: int = 0, cancelled: bool = False) -> Order:
    p = params_of(market)
    record = PlaceOrder(address, market, nonce % 2 == 0, PRICES[market] + (nonce % 50 - 25) * p.tick_size,
                        10 * p.step_size, 10, 0, False, nonce, TS + 60_000, b"")
    return fv.make_order(record, filled=filled, cancelled=cancelled, seq=seq)


@st.composite
def maker_books(draw, state: State, index: int):
    """A market maker: a full nonce window (it signed 100+ records), 100+
    orders across both markets (open, some filled or cancelled), a position
    per market present, epoch-only or absent, 0 to the cap of pending
    triggers (and fired or cancelled ones, not counted), a schedule."""
    address = fv.ADDRESSES[index]
    count = state.globals.order_count
    first = 10**6 * (index + 1)
    for k in range(draw(st.integers(100, 130))):
        nonce = first + k
        shape = draw(st.sampled_from(["open"] * 6 + ["filled", "cancelled"]))
        order = maker_order(address, nonce, (fv.BTC, fv.ETH)[k % 2], draw(st.integers(1, max(count, 1))),
                            cancelled=shape == "cancelled")
        if shape == "filled":
            order = msgspec.structs.replace(order, filled=order.size)
        state.set_order(address, nonce, order)
    for market in (fv.BTC, fv.ETH):
        shape = draw(st.sampled_from(["none", "long", "epoch", "flat"]))
        epoch = draw(st.integers(0, count))
        if shape == "long":
            p = params_of(market)
            size = draw(st.integers(1, 100)) * p.step_size * draw(st.sampled_from([1, -1]))
            state.set_position(address, market, Position(size, size * PRICES[market] // p.scale, 10**8,
                                                         draw(st.integers(-10**6, 10**6)), epoch))
        elif shape == "epoch" and epoch:
            state.set_position(address, market, Position(order_epoch=epoch))
        elif shape == "flat":  # a flat position holding leftover margin
            state.set_position(address, market, Position(0, 0, draw(st.integers(1, 10**6)), 0, epoch))
    pending = draw(st.sampled_from([0, 7, CAP - 1, CAP, CAP]) | st.integers(0, CAP))
    base = first + 1000
    for k in range(pending + draw(st.integers(0, 3))):
        status = TRIGGER_PENDING if k < pending else draw(st.sampled_from([TRIGGER_FIRED, TRIGGER_CANCELLED]))
        state.set_trigger(address, base + 7 * k, make_trigger(unsigned_stop(base + 7 * k, address), status))
    state.set_account(address, Account(10**12, tuple(range(first + 2000, first + 2000 + WINDOW))))
    cancel_at = draw(st.sampled_from([TS - 1, TS, TS, TS, TS - DAY_MS, 0, TS + 1]))
    state.set_order_schedule(address, OrderSchedule(cancel_at, pending, draw(st.sampled_from([TODAY, 0])), 1))


@st.composite
def trigger_states(draw, maker: int | None = None):
    """Up to 4 accounts, each a few orders and triggers or a market maker
    (``maker``: that account one)."""
    listed = [draw(markets(m)) for m in (fv.BTC, fv.ETH) if draw(st.sampled_from([True] * 5 + [False]))]
    state = fv.make_perps_state({}, listed, {}, {}, order_count=draw(st.sampled_from(
        [0, 0, 1, 500, draw(st.integers(0, 10**6))])))
    indexes = draw(st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True))
    for index in sorted(set(indexes) | ({maker} if maker is not None else set())):
        if index == maker or draw(st.sampled_from([False] * 3 + [True])):
            draw(maker_books(state, index))
        else:
            draw(account_books(state, index))
    state.commit(0)
    return state


# --- records --------------------------------------------------------------------------

def kept_of(state: State, address: bytes) -> tuple[int, ...]:
    return state.accounts.get(address, Account()).nonces


def user_fields(draw, state, index: int, valid: bool, ts: int):
    kept = kept_of(state, fv.ADDRESSES[index])
    top = kept[-1] if kept else 0
    if valid:
        return top + draw(st.integers(1, 1000)), draw(st.integers(ts, ts + AHEAD))
    nonce = pick(draw, [0, U64, top + 1] + list(kept[:1] + kept[-1:]), 0, U64)
    return nonce, pick(draw, [ts - 1, ts, ts + AHEAD, ts + AHEAD + 1, U64], 0, U64)


def signed(draw, record, index: int, valid: bool):
    if valid:
        return fv.sign(record, fv.KEYS[index])
    return msgspec.structs.replace(record, signature=signature(draw, record, index))


def own_keys(state: State, address: bytes, table) -> list[int]:
    return [n for (a, n) in table if a == address]


@st.composite
def place_triggers(draw, state, valid: bool, ts: int):
    index = draw(st.integers(0, 3))
    account = fv.ADDRESSES[index]
    nonce, expiry = user_fields(draw, state, index, valid, ts)
    record = draw(trigger_records(account, nonce, draw(st.sampled_from([fv.BTC, fv.ETH]))))
    record = msgspec.structs.replace(record, expiry=expiry)
    if not valid:
        p = params_of(record.market)
        edit = draw(st.sampled_from(["none", "limit", "trigger", "size", "leverage", "notional", "market",
                                     "duplicate", "tpsl"]))
        if edit == "tpsl":
            record = msgspec.structs.replace(record, tpsl=draw(st.sampled_from([0, 3, 255])))
        elif edit == "trigger":
            record = msgspec.structs.replace(record, trigger_price=draw(st.sampled_from(
                [0, record.trigger_price + 1, MAX + 1, U64])))
        elif edit == "limit":  # inside the trigger: would not fill at the mark that fires it
            record = msgspec.structs.replace(record, price=record.trigger_price + (
                -p.tick_size if record.is_buy else p.tick_size))
        elif edit == "size":
            record = msgspec.structs.replace(record, size=draw(st.sampled_from([0, record.size + 1, MAX + 1])))
        elif edit == "leverage":
            record = msgspec.structs.replace(record, leverage=draw(st.sampled_from([0, p.max_leverage + 1, 2**32 - 1])))
        elif edit == "notional":
            record = msgspec.structs.replace(record, size=p.step_size, price=p.tick_size, trigger_price=p.tick_size)
        elif edit == "market":
            record = msgspec.structs.replace(record, market=draw(st.sampled_from([0, 3, 2**32 - 1])))
        elif edit == "duplicate":
            taken = own_keys(state, account, state.orders) + own_keys(state, account, state.triggers)
            record = msgspec.structs.replace(record, nonce=draw(st.sampled_from(taken or [nonce])))
    return signed(draw, record, index, valid or draw(st.booleans()))


@st.composite
def schedule_cancels(draw, state, valid: bool, ts: int):
    index = draw(st.integers(0, 3))
    nonce, expiry = user_fields(draw, state, index, valid, ts)
    at = draw(st.sampled_from([0, ts + LEAD, ts + LEAD - 1, ts + LEAD + 1, ts + 3_600_000, 1, U64]))
    record = ScheduleCancel(fv.ADDRESSES[index], at, nonce, expiry, b"")
    return signed(draw, record, index, valid)


@st.composite
def trigger_fires(draw, state, valid: bool, ts: int):
    known = sorted(state.triggers)
    if known and draw(st.sampled_from([True] * 5 + [False])):
        return TriggerFire(*draw(st.sampled_from(known)))
    account = draw(st.sampled_from(fv.ADDRESSES))
    return TriggerFire(account, pick(draw, [0, U64] + list(kept_of(state, account)[:2]), 0, U64))


@st.composite
def cancel_alls(draw, state, valid: bool, ts: int):
    scheduled = sorted(state.order_schedules)
    if scheduled and draw(st.sampled_from([True] * 5 + [False])):
        return ScheduledCancelAll(draw(st.sampled_from(scheduled)))
    return ScheduledCancelAll(draw(st.sampled_from(fv.ADDRESSES)))


@st.composite
def cancel_orders(draw, state, valid: bool, ts: int):
    index = draw(st.integers(0, 3))
    account = fv.ADDRESSES[index]
    live = [n for (a, n), t in state.triggers.items() if a == account and t.status == TRIGGER_PENDING]
    live += [n for (a, n), o in state.orders.items() if a == account and not o.cancelled and o.filled < o.size]
    own = own_keys(state, account, state.triggers) + own_keys(state, account, state.orders)
    others = [n for (a, n) in list(state.triggers) + list(state.orders) if a != account]
    if valid and live:
        order_nonce = draw(st.sampled_from(live))
    else:
        order_nonce = pick(draw, own + others + [U64], 0, 2 * 10**6)
    nonce, expiry = user_fields(draw, state, index, valid, ts)
    return signed(draw, CancelOrder(account, order_nonce, nonce, expiry, b""), index, valid)


SIZES = {5: 111, 9: 138, 11: 111, 19: 30, 20: 22}


@st.composite
def trigger_cases(draw):
    state = draw(trigger_states())
    ts = draw(st.sampled_from([TS, TS, TS + LEAD, TS + DAY_MS]))
    kind = draw(st.sampled_from([place_triggers, place_triggers, schedule_cancels, trigger_fires, trigger_fires,
                                 cancel_alls, cancel_alls, cancel_orders, cancel_orders, "raw"]))
    if kind == "raw":  # any bytes of the kinds' lengths: bool bytes, tpsl, any market and price
        tag = draw(st.sampled_from(sorted(SIZES)))
        item = bytes((2, tag)) + draw(st.binary(min_size=SIZES[tag] - 2, max_size=SIZES[tag] - 2))
    else:
        item = encode_item(draw(kind(state, draw(st.booleans()), ts)))
    ctx = fv.open_block_ctx(state, ts) if draw(st.sampled_from([True] * 9 + [False])) else TraceContext()
    return state, ctx, item


# --- running both ---------------------------------------------------------------------

def opening_arg(tree, key: bytes) -> tuple:
    p = tree.prove(key)
    value = tree.get(key)
    return (value is not None, value or b"",
            (p.bitmap, list(p.siblings), p.other_key or bytes(32), p.other_value_hash or bytes(32)), b"")


def check_pending_cancel_all(onestep, state, ctx, item):
    """A cancel-all past a step's openings: the reference raised
    PendingKind; the contract, given the schedule (the count of pending
    triggers), reverts "pending"."""
    runner = TraceRunner(state, fv.RULES, ctx=ctx)
    record = decode_item(item)
    openings = [opening_arg(runner.tree, get_order_schedule_key(record.account))]
    with pytest.raises(Exception, match="pending"):
        onestep.functions.apply(runner.state_root, ctx.as_arg(), item, openings, []).call()


def check(onestep, state, ctx, item):
    try:
        runner, pre_root, result, (root, ok, post_ctx) = run_both(onestep, state, ctx, item)
    except PendingKind:
        assert isinstance(decode_item(item), ScheduledCancelAll)
        check_pending_cancel_all(onestep, state, ctx, item)
        return None
    assert (root, ok) == (runner.state_root, result.ok)
    assert onestep.functions.ctx_hash(post_ctx).call() == runner.ctx.hash()
    if not ok:
        assert root == pre_root  # a failed record changes nothing
    return runner, result


@settings(max_examples=get_examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=trigger_cases())
def test_python_and_vyper_agree_on_trigger_kinds(onestep, case):
    state, ctx, item = case
    shape = describe_cancel_all(state, item)
    out = check(onestep, state, ctx, item)
    try:
        name = type(decode_item(item)).__name__
    except PendingKind:
        name = "?"
    event(f"{name} {'pending' if out is None else 'applied' if out[1].ok else 'failed'}")
    if shape and out is not None and out[1].ok:
        event(f"cancel-all applied: {shape}")


def describe_cancel_all(state: State, item: bytes) -> str:
    """A ScheduledCancelAll's pre-state, for the statistics: the account's orders, the order count, its pending."""
    try:
        record = decode_item(item)
    except PendingKind:
        return ""
    schedule = state.order_schedules.get(getattr(record, "account", b""))
    if not isinstance(record, ScheduledCancelAll) or schedule is None:
        return ""
    orders = sum(1 for (a, _) in state.orders if a == record.account)
    return (f"{'100+ orders, full window' if orders >= 100 else 'few orders'}, "
            f"{'no' if state.globals.order_count == 0 else 'some'} order placed, "
            f"{schedule.open_triggers // 10 * 10}+ pending triggers")


@st.composite
def maker_cancel_all_cases(draw):
    """A market maker's ScheduledCancelAll (full window, 100+ orders across
    the markets, positions present, epoch-only or absent, 0 to 20 pending
    triggers and fired or cancelled ones, due, not due or none) among other
    accounts, in an open block (or not)."""
    maker = draw(st.integers(0, 3))
    state = draw(trigger_states(maker))
    if draw(st.sampled_from([False] * 9 + [True])):
        state.set_order_schedule(fv.ADDRESSES[maker], OrderSchedule(0, state.order_schedules[
            fv.ADDRESSES[maker]].open_triggers, 0, 0))  # none scheduled
        state.commit(0)
    ts = draw(st.sampled_from([TS, TS, TS + LEAD, TS - 1]))
    ctx = fv.open_block_ctx(state, ts) if draw(st.sampled_from([True] * 19 + [False])) else TraceContext()
    return state, ctx, encode_item(ScheduledCancelAll(fv.ADDRESSES[maker]))


@settings(max_examples=get_examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=maker_cancel_all_cases())
def test_python_and_vyper_agree_on_market_maker_cancel_alls(onestep, case):
    state, ctx, item = case
    shape = describe_cancel_all(state, item)
    out = check(onestep, state, ctx, item)
    event(f"{'pending' if out is None else 'applied' if out[1].ok else 'failed'}: {shape}")


# --- the kinds, one by one, on states made by the rules --------------------------------

A, B = fv.ADDRESSES[0], fv.ADDRESSES[1]
KA, KB = fv.KEYS[0], fv.KEYS[1]
EXP = TS + 60_000
LOT = 10 * BTC.step_size


def base_state(kept: tuple[int, ...] = (1, 2), mark: int = PRICES[fv.BTC], age: int = 1000) -> State:
    market = msgspec.structs.replace(fv.make_market(fv.BTC, PRICES[fv.BTC], oracle_time_ms=TS - age), mark_price=mark)
    return fv.make_perps_state({A: Account(10**9, kept), B: Account(10**9, (1,))}, [market], {}, {})


def sell_stop(nonce: int, trigger_price: int = PRICES[fv.BTC] - 1000 * 10**6, account: bytes = A, key: bytes = KA):
    """A sell stop-loss (fires when the mark falls to the trigger price)."""
    return fv.sign(PlaceTrigger(account, fv.BTC, False, trigger_price, trigger_price - 100 * 10**6, LOT, 10, STOP_LOSS,
                                True, nonce, EXP, b""), key)


class Chain:
    """A state advanced by the rules, every record also re-executed on L1."""

    def __init__(self, onestep, state: State, ts: int = TS) -> None:
        self.onestep, self.state, self.ts = onestep, state, ts

    def run(self, record) -> bool:
        out = check(self.onestep, self.state, fv.open_block_ctx(self.state, self.ts), encode_item(record))
        assert out is not None, "pending"
        runner, result = out
        self.state = runner.state
        return result.ok


def test_place_fire_and_the_fired_order(onestep):
    """A placed stop fires only once the mark has crossed, on a fresh mark;
    firing makes the immediate-or-cancel order (globals' order count + 1) and
    empties the schedule (the last pending trigger: a leaf deletion)."""
    chain = Chain(onestep, base_state())
    assert chain.run(sell_stop(5))
    assert chain.state.order_schedules[A].open_triggers == 1
    assert not chain.run(TriggerFire(A, 5))  # the mark is above the trigger price
    crossed = chain.state.markets[fv.BTC]
    for mark, age, fires in ((PRICES[fv.BTC] - 1000 * 10**6, 61_000, False), (PRICES[fv.BTC] - 1000 * 10**6, 60_000, True)):
        chain.state.set_market(msgspec.structs.replace(crossed, mark_price=mark, oracle_time_ms=TS - age))
        chain.state.commit(0)
        assert chain.run(TriggerFire(A, 5)) is fires
    order = chain.state.orders[(A, 5)]
    assert (order.time_in_force, order.expiry, order.seq) == (1, TS, chain.state.globals.order_count)
    assert A not in chain.state.order_schedules or chain.state.order_schedules[A] == OrderSchedule()
    assert not chain.run(TriggerFire(A, 5))  # fired already
    assert chain.run(fv.sign(CancelOrder(A, 5, 9, EXP, b""), KA))  # now it names the (unfilled) order
    assert chain.state.orders[(A, 5)].cancelled and chain.state.triggers[(A, 5)].status == TRIGGER_FIRED


def test_cancel_of_triggers(onestep):
    """CancelOrder of a pending trigger cancels it; of a cancelled or fired
    one, or someone else's, it fails; the signer's key must be the owner's."""
    chain = Chain(onestep, base_state())
    assert chain.run(sell_stop(5)) and chain.run(sell_stop(6)) and chain.run(sell_stop(7, account=B, key=KB))
    assert not chain.run(fv.sign(CancelOrder(B, 5, 20, EXP, b""), KB))   # B has no trigger 5
    assert not chain.run(fv.sign(CancelOrder(A, 7, 20, EXP, b""), KA))   # B's trigger, named by A
    assert not chain.run(fv.sign(CancelOrder(A, 5, 20, EXP, b""), KB))   # signed by B's key
    assert chain.run(fv.sign(CancelOrder(A, 5, 20, EXP, b""), KA))
    assert chain.state.triggers[(A, 5)].status == TRIGGER_CANCELLED
    assert not chain.run(fv.sign(CancelOrder(A, 5, 21, EXP, b""), KA))   # already cancelled
    assert chain.run(fv.sign(CancelOrder(A, 6, 22, EXP, b""), KA))       # the last: the schedule leaf deleted
    assert TraceRunner(chain.state, fv.RULES).tree.get(get_order_schedule_key(A)) is None


def test_the_cap_of_pending_triggers(onestep):
    """The preset's cap (20) of pending triggers per account: the 21st fails
    on both sides; after a cancel there is room again."""
    chain = Chain(onestep, base_state(kept=()))
    for nonce in range(1, CAP + 1):
        assert chain.run(sell_stop(nonce))
    assert not chain.run(sell_stop(CAP + 1))
    assert chain.run(fv.sign(CancelOrder(A, 1, CAP + 2, EXP, b""), KA))
    assert chain.run(sell_stop(CAP + 3))


def test_schedule_lead_and_daily_limit(onestep):
    """A schedule at least 5 s after block time; 0 clears it (deleting an
    otherwise empty leaf); once 10 cancel-alls ran today a new one is refused
    until the next UTC day."""
    chain = Chain(onestep, base_state(kept=()))
    assert not chain.run(fv.sign(ScheduleCancel(A, TS + LEAD - 1, 1, EXP, b""), KA))
    assert chain.run(fv.sign(ScheduleCancel(A, TS + LEAD, 2, EXP, b""), KA))
    assert chain.run(fv.sign(ScheduleCancel(A, 0, 3, EXP, b""), KA))
    assert A not in chain.state.order_schedules or chain.state.order_schedules[A] == OrderSchedule()
    assert chain.run(fv.sign(ScheduleCancel(A, 0, 4, EXP, b""), KA))    # nothing to clear: no leaf either way
    chain.state.set_order_schedule(A, OrderSchedule(0, 0, TODAY, PER_DAY))
    chain.state.commit(0)
    assert not chain.run(fv.sign(ScheduleCancel(A, TS + LEAD, 5, EXP, b""), KA))
    assert chain.run(fv.sign(ScheduleCancel(A, 0, 6, EXP, b""), KA))    # clearing is always allowed
    chain.ts = (TODAY + 1) * DAY_MS
    assert chain.run(fv.sign(ScheduleCancel(A, chain.ts + LEAD, 7, chain.ts + 1000, b""), KA))


def test_cancel_all_due_and_not_due(onestep):
    """The cancel-all runs once block time reaches the schedule: every open
    order of the account is cancelled by its order epoch in each market (an
    absent position becomes an epoch-only leaf; the order leaves untouched),
    every pending trigger cancelled (fired ones and other accounts' left),
    the runs today counted."""
    chain = Chain(onestep, base_state(kept=()))
    resting = PlaceOrder(A, fv.BTC, True, PRICES[fv.BTC], LOT, 10, 0, False, 1, EXP, b"")
    assert chain.run(fv.sign(resting, KA))
    assert chain.run(fv.sign(msgspec.structs.replace(resting, nonce=2, is_buy=False), KA))
    assert chain.run(fv.sign(msgspec.structs.replace(resting, account=B, nonce=3), KB))
    assert chain.run(sell_stop(4)) and chain.run(sell_stop(5))
    assert chain.run(fv.sign(CancelOrder(A, 2, 6, EXP, b""), KA))
    assert chain.run(fv.sign(ScheduleCancel(A, TS + LEAD, 7, EXP, b""), KA))
    assert not chain.run(ScheduledCancelAll(A))              # not due
    assert not chain.run(ScheduledCancelAll(B))              # no schedule
    chain.ts = TS + LEAD
    assert chain.run(ScheduledCancelAll(A))
    s = chain.state
    assert not is_order_open(s, A, 1) and not s.orders[(A, 1)].cancelled and is_order_open(s, B, 3)
    count = s.globals.order_count
    assert s.positions[(A, fv.BTC)] == s.positions[(A, fv.ETH)] == Position(order_epoch=count)
    assert get_order_epoch(s, B, fv.BTC) == 0
    assert s.triggers[(A, 4)].status == s.triggers[(A, 5)].status == TRIGGER_CANCELLED
    assert s.order_schedules[A] == OrderSchedule(0, 0, TODAY, 1)
    assert not chain.run(ScheduledCancelAll(A))              # ran: the schedule is cleared


def cancel_all_state(pending: int, order_count: int = 7, positions: dict | None = None) -> State:
    """A's schedule due with ``pending`` pending triggers (and a fired and a
    cancelled one), a full nonce window and 120 orders across the markets."""
    state = base_state(kept=tuple(range(1000, 1000 + WINDOW)))
    for k in range(120):
        state.set_order(A, 10 + k, maker_order(A, 10 + k, (fv.BTC, fv.ETH)[k % 2], 1 + k % max(order_count, 1)))
    statuses = [TRIGGER_PENDING] * pending + [TRIGGER_FIRED, TRIGGER_CANCELLED]  # the last two not counted
    for k, status in enumerate(statuses):
        state.set_trigger(A, 500 + k, make_trigger(sell_stop(500 + k), status))
    for (market, position) in (positions or {}).items():
        state.set_position(A, market, position)
    state.set_order_schedule(A, OrderSchedule(TS, pending, 0, 0))
    state.set_globals(msgspec.structs.replace(state.globals, order_count=order_count))
    state.commit(0)
    return state


@pytest.mark.parametrize("pending,outcome", [(0, "runs"), (CAP, "runs"), (27, "runs"), (28, "pending")])
def test_cancel_all_of_any_account_and_the_bound(onestep, pending, outcome):
    """Any account, a full nonce window and 120 orders included, is
    re-executed: 3 + markets + pending triggers openings, at most 32; with the
    devnet's 2 markets and the cap of 20 that is every account (27 pending,
    a state past the cap, is the most; 28 is pending on both sides).  Not
    due, it fails on both sides with one opening."""
    item = encode_item(ScheduledCancelAll(A))
    state = cancel_all_state(pending, positions={fv.BTC: Position(5 * LOT, 5 * LOT * PRICES[fv.BTC] // BTC.scale,
                                                                  10**8, 3, 2)})
    out = check(onestep, state, fv.open_block_ctx(state), item)
    assert (out is None) == (outcome == "pending"), pending
    if out is not None:
        runner, result = out
        assert result.ok and len(result.witness.openings) == 3 + 2 + pending
        after = runner.state
        assert after.positions[(A, fv.BTC)] == Position(5 * LOT, 5 * LOT * PRICES[fv.BTC] // BTC.scale, 10**8, 3, 7)
        assert after.positions[(A, fv.ETH)] == Position(order_epoch=7)
        assert not any(is_order_open(after, A, 10 + k) for k in range(120))
        assert all(t.status != TRIGGER_PENDING for (a, _), t in after.triggers.items() if a == A)
        assert after.triggers[(A, 500 + pending)].status == TRIGGER_FIRED  # left as it was
    runner, result = check(onestep, state, fv.open_block_ctx(state, TS - 1), item)
    assert not result.ok and len(result.witness.openings) == 1


def test_cancel_all_with_no_order_placed_yet_writes_no_position(onestep):
    """order_count 0: the epoch 0 leaves an absent position leaf empty, a
    present one as it is; the triggers are cancelled all the same."""
    state = cancel_all_state(3, order_count=0, positions={fv.ETH: Position(0, 0, 5, 0)})
    pre = TraceRunner(state, fv.RULES).tree
    runner, result = check(onestep, state, fv.open_block_ctx(state), encode_item(ScheduledCancelAll(A)))
    assert result.ok
    for market in (fv.BTC, fv.ETH):
        key = get_position_key(A, market)
        assert runner.tree.get(key) == pre.get(key)
    assert runner.tree.get(get_position_key(A, fv.BTC)) is None


def test_a_cancel_all_in_an_older_log_is_pending():
    """The one-step re-executes rules v4 only: a due cancel-all under v1-v3
    (the orders' flags) is pending in the planner; a not-due one is not."""
    for version in (1, 2, 3):
        rules = msgspec.structs.replace(fv.RULES, schema_version=version)
        state = cancel_all_state(2)
        with pytest.raises(PendingKind, match=f"rules v{version}"):
            TraceRunner(state, rules, ctx=fv.open_block_ctx(state)).step(encode_item(ScheduledCancelAll(A)))
        result = TraceRunner(state, rules, ctx=fv.open_block_ctx(state, TS - 1)).step(
            encode_item(ScheduledCancelAll(A)))
        assert not result.ok


def test_max_openings_is_the_contracts():
    """plan_triggers bounds the cancel-all by trace.vy's MAX_OPENINGS."""
    source = (CONTRACTS_DIR / "trace.vy").read_text()
    assert re.search(r"^MAX_OPENINGS: constant\(uint256\) = (\d+)$", source, re.M).group(1) == str(
        plan_triggers.MAX_OPENINGS)


# --- attacker witnesses ----------------------------------------------------------------

def honest(state: State, item: bytes, ts: int = TS):
    runner = TraceRunner(State.from_tables(state.to_tables()), fv.RULES, ctx=fv.open_block_ctx(state, ts))
    pre_root = runner.state_root
    result = runner.step(item)
    return runner, pre_root, [o.as_arg() for o in result.witness.openings], list(result.witness.nonces)


def forge_word(opening: tuple, word: int, value: int) -> tuple:
    v = bytearray(opening[1])
    v[32 * word:32 * word + 32] = value.to_bytes(32, "big")
    return (opening[0], bytes(v), opening[2], opening[3])


def test_forged_witnesses_revert(onestep):
    """A witness that lies (a fired trigger shown pending, a fresher mark, a
    wrong deletion sibling) does not verify: the step reverts, proving nothing."""
    state = base_state(kept=(1, 2, 3, 4))
    fired = make_trigger(sell_stop(3), TRIGGER_FIRED)
    state.set_trigger(A, 3, fired)
    state.set_trigger(A, 4, make_trigger(sell_stop(4)))
    state.set_order(A, 3, fired_order(fired, 9))
    state.set_order_schedule(A, OrderSchedule(TS, 1, 0, 0))
    stale = msgspec.structs.replace(state.markets[fv.BTC], mark_price=fired.trigger_price, oracle_time_ms=TS - 10**6)
    state.set_market(stale)
    state.commit(0)
    pre = fv.open_block_ctx(state).as_arg()

    def reverts(item, openings, nonces, match):
        with pytest.raises(Exception, match=match):
            onestep.functions.apply(TraceRunner(state, fv.RULES).state_root, pre, item, openings, nonces).call()

    item = encode_item(TriggerFire(A, 3))
    _, _, args, nonces = honest(state, item)
    reverts(item, [forge_word(args[0], 10, TRIGGER_PENDING)] + args[1:], nonces, "bad opening")
    item = encode_item(TriggerFire(A, 4))
    runner, _, args, nonces = honest(state, item)
    assert runner.state.triggers[(A, 4)].status == TRIGGER_PENDING  # a stale mark: not fired
    reverts(item, [args[0], forge_word(args[1], 1, TS)] + args[2:], nonces, "bad opening")
    state.set_order_schedule(A, OrderSchedule(0, 1, 0, 0))
    state.commit(0)
    item = encode_item(fv.sign(CancelOrder(A, 4, 5, EXP, b""), KA))
    runner, _, args, nonces = honest(state, item)
    assert runner.state.triggers[(A, 4)].status == TRIGGER_CANCELLED and args[-1][3]  # the schedule deleted
    reverts(item, args[:-1] + [args[-1][:3] + (b"\x00" + bytes(64),)], nonces, "deletion")
    reverts(item, args[:-1] + [args[-1][:3] + (b"",)], nonces, "deletion")


def test_forged_cancel_all_witnesses_revert(onestep):
    """The cancel-all's witness names the pending triggers: one left out (the
    count no longer matches the schedule's), a fired or cancelled one shown
    pending, another account's, the same one twice or out of order, a market
    skipped or a position opened under another market's key: each reverts."""
    state = cancel_all_state(4)
    state.set_trigger(B, 900, make_trigger(sell_stop(900, account=B, key=KB)))
    state.set_order_schedule(B, OrderSchedule(0, 1, 0, 0))
    state.commit(0)
    item = encode_item(ScheduledCancelAll(A))
    runner, pre_root, args, nonces = honest(state, item)
    assert nonces == [500, 501, 502, 503] and len(args) == 3 + 2 + 4
    ctx = fv.open_block_ctx(state).as_arg()
    apply = lambda ops, named: onestep.functions.apply(pre_root, ctx, item, ops, named).call()
    assert apply(args, nonces)[0] == runner.state_root

    def reverts(ops, named, match):
        with pytest.raises(Exception, match=match):
            apply(ops, named)

    pos, trig = args[2:4], args[4:8]
    reverts(args[:7] + args[8:], nonces[:3], "witness: triggers")            # a pending trigger left out
    fired = TraceRunner(state, fv.RULES).tree  # as the step's 4th trigger sees it: positions and 3 triggers written
    for key in [get_position_key(A, m) for m in (fv.BTC, fv.ETH)] + [get_trigger_key(A, n) for n in nonces[:3]]:
        fired.set(key, runner.tree.get(key))
    shown = opening_arg(fired, get_trigger_key(A, 504))                       # the fired one (504), as it is
    reverts(args[:7] + [shown, args[8]], nonces[:3] + [504], "witness: trigger")
    reverts(args[:7] + [forge_word(shown, 10, TRIGGER_PENDING), args[8]], nonces[:3] + [504], "bad opening")
    shown = opening_arg(fired, get_trigger_key(A, 505))                       # the cancelled one
    reverts(args[:7] + [shown, args[8]], nonces[:3] + [505], "witness: trigger")
    theirs = opening_arg(fired, get_trigger_key(B, 900))                      # B's pending trigger
    reverts(args[:7] + [theirs, args[8]], nonces[:3] + [900], "bad opening")
    swapped = TraceRunner(state, fv.RULES).tree  # each opening honest for the order named: 501 before 500
    ops = args[:4]
    for key in [get_position_key(A, m) for m in (fv.BTC, fv.ETH)]:
        swapped.set(key, runner.tree.get(key))
    for n in (501, 500, 502, 503):
        ops.append(opening_arg(swapped, get_trigger_key(A, n)))
        swapped.set(get_trigger_key(A, n), runner.tree.get(get_trigger_key(A, n)))
    ops.append(opening_arg(swapped, get_order_schedule_key(A)))
    reverts(ops, [501, 500, 502, 503], "trigger order")
    reverts(args, [500, 500, 502, 503], "trigger order")
    reverts(args[:2] + pos[1:] + trig + args[8:], nonces, "witness")          # the BTC position skipped
    reverts(args[:2] + [pos[1], pos[0]] + trig + args[8:], nonces, "witness")  # ETH's leaf under BTC's key
    reverts(args[:1] + [forge_word(args[1], 10, 3)] + args[2:], nonces, "bad opening")  # another order count
    reverts(args[:-1], nonces, None)                                         # the schedule's write missing


# --- an attacker at the dead-man's switch ----------------------------------------------

def market_maker_state() -> State:
    """A market maker (A) that signed 220 records (its window keeps the last
    100), with 120 resting orders across both markets placed before its
    switch comes due, a long in BTC, 20 pending triggers (the cap), a fired
    and a cancelled one; B's account, to trade against it."""
    state = cancel_all_state(CAP, order_count=120, positions={
        fv.BTC: Position(5 * LOT, 5 * LOT * PRICES[fv.BTC] // BTC.scale, 10**8, 0)})
    state.set_account(A, Account(10**12, tuple(range(1000, 1000 + WINDOW))))
    state.set_account(B, Account(10**12, (1,)))
    state.set_market(fv.make_market(fv.ETH, PRICES[fv.ETH]))
    state.commit(0)
    return state


def dishonest(kind: str):
    """A proposer's cancel-all that leaves something live: the ETH epoch not
    written, the epoch one short (the newest old order lives), or the last
    pending trigger left pending (the schedule's count says 1)."""
    from sequencer.core.rules.triggers import cancel_pending_triggers, count_cancel_all, require_due_schedule

    def rule(state, r, timestamp_ms, ctx):
        require_due_schedule(state, r, timestamp_ms)
        count = state.globals.order_count - (kind == "short")
        for market in ((fv.BTC,) if kind == "skip" else (fv.BTC, fv.ETH)):
            position = state.positions.get((r.account, market)) or Position()
            state.set_position(r.account, market, msgspec.structs.replace(position, order_epoch=count))
        kept = max(n for (a, n), t in state.triggers.items() if a == r.account and t.status == TRIGGER_PENDING)
        saved = state.triggers[(r.account, kept)]
        cancel_pending_triggers(state, r.account)
        if kind == "trigger":
            state.set_trigger(r.account, kept, saved)
            schedule = state.order_schedules[r.account]
            state.set_order_schedule(r.account, msgspec.structs.replace(schedule, open_triggers=1))
        count_cancel_all(state, r.account, timestamp_ms)
    return rule


@pytest.mark.parametrize("kind", ["skip", "short", "trigger"])
def test_a_dishonest_cancel_all_loses_its_one_step(onestep, monkeypatch, kind):
    """Pre: the market maker's switch is due.  Op: a dishonest proposer's
    post-state that leaves an old order live (a market's epoch unwritten or
    one short) or a trigger pending.  Post: the one-step, from the agreed
    pre-state root, reaches the honest root with the honest witness, and the
    proposer's own witness (of its claim) does not verify: L1 never reaches
    the claimed root, so the proposer loses the game."""
    from eth_tester.exceptions import TransactionFailed
    from sequencer.core import transition
    from sequencer.core.rules.table import get_rules
    state = market_maker_state()
    item = encode_item(ScheduledCancelAll(A))
    honest_runner, pre_root, honest_ops, honest_nonces = honest(state, item)
    version = fv.RULES.schema_version
    monkeypatch.setattr(transition, "RULE_TABLES",
                        {version: {**get_rules(version), ScheduledCancelAll: dishonest(kind)}})
    liar, _, lie_ops, lie_nonces = honest(state, item)
    claim = liar.state_root
    assert claim != honest_runner.state_root                                   # the dishonest claim
    open_orders = [k for k in range(120) if is_order_open(liar.state, A, 10 + k)]
    pending = [n for (a, n), t in liar.state.triggers.items() if a == A and t.status == TRIGGER_PENDING]
    assert open_orders or pending                                              # what the lie left live
    ctx = fv.open_block_ctx(state).as_arg()
    root, _, ok = onestep.functions.apply(pre_root, ctx, item, honest_ops, honest_nonces).call()
    assert ok and root == honest_runner.state_root != claim
    with pytest.raises(TransactionFailed, match="witness"):
        onestep.functions.apply(pre_root, ctx, item, lie_ops, lie_nonces).call()


def test_after_the_switch_old_orders_cannot_trade_and_new_ones_can(onestep):
    """Pre: the market maker's switch fired (on both sides).  Op: a Trade of
    one of its old resting orders against B's order placed last; then a new
    order of the maker and a Trade against it.  Post: the old order is
    refused (order_cancelled) on both sides, the new one trades on both."""
    from sequencer.core.records import Trade
    chain = Chain(onestep, market_maker_state())
    assert chain.run(ScheduledCancelAll(A))
    old = next(10 + k for k in range(120) if k % 2 == 0 and chain.state.orders[(A, 10 + k)].is_buy)
    maker = chain.state.orders[(A, old)]
    assert not is_order_open(chain.state, A, old) and not maker.cancelled
    sell = PlaceOrder(B, fv.BTC, False, maker.price, LOT, 10, 0, False, 10, EXP, b"")
    assert chain.run(fv.sign(sell, KB))
    assert not chain.run(Trade(fv.BTC, A, old, B, 10, maker.price, LOT))
    fresh = PlaceOrder(A, fv.BTC, True, maker.price, LOT, 10, 0, False, 5000, EXP, b"")
    assert chain.run(fv.sign(fresh, KA))
    assert chain.run(fv.sign(msgspec.structs.replace(sell, nonce=11), KB))
    assert chain.run(Trade(fv.BTC, A, 5000, B, 11, maker.price, LOT))
    assert chain.state.orders[(A, 5000)].filled == LOT


def test_trigger_items_decode_to_their_records():
    """decode_item is encode_item's inverse on the trigger kinds."""
    records = [PlaceTrigger(A, 2**32 - 1, True, U64, 1, U64, 2**32 - 1, 255, True, U64, 0, b"\x01" * 65),
               ScheduleCancel(B, U64, 3, 4, b"\x02" * 65), TriggerFire(A, U64), ScheduledCancelAll(B)]
    for record in records:
        item = encode_item(record)
        assert len(item) == SIZES[item[1]] and decode_item(item) == record


def test_trigger_vectors_apply(onestep):
    """The shared vectors' valid case of each trigger kind applies on both sides and changes the root."""
    names = {c["name"]: c for c in fv.trigger_cases()}
    for name in ("place trigger", "schedule cancel", "trigger fire", "scheduled cancel all",
                 "scheduled cancel all, a market maker: full nonce window, 120 orders, 20 pending triggers",
                 "scheduled cancel all, no order placed yet (order count 0)", "cancel order of a trigger"):
        assert names[name]["ok"] and names[name]["post_state_root"] != names[name]["state_root"], name
