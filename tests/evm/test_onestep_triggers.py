"""The differential test of the trigger one-steps (onestep.vy handing
CancelOrder, PlaceTrigger, ScheduleCancel, TriggerFire and ScheduledCancelAll
to onestep_triggers.vy): Hypothesis generates states an L2 can reach
(accounts whose kept nonces name their orders and triggers, or full windows
that dropped some; triggers pending, fired with their order, or cancelled;
order schedules counting the pending triggers, with a cancel-all due, not
due or none and any runs today or before; markets with fresh, stale or no
marks) and records, valid by construction or adversarial (another key's
signature, malformed signatures, used nonces, expiry edges, every trigger
term at its edge, duplicate nonces, the cap of pending triggers, the 5 s lead
and the 10-a-day limit, a fire before and after the cross on a fresh and a
stale mark, someone else's and fired or cancelled triggers, raw item
bytes), runs the Python rules (prover.trace over sequencer.core) and the
contracts on py-evm from the same pre-state, and requires the same
post-state root and receipt outcome.  A ScheduledCancelAll that L1 cannot
show complete is pending on both sides.  Forged witnesses revert."""
from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from l1_bridge.compile import CONTRACTS_DIR
from onestep_support import BTC, ETH, PRICES, get_examples, params_of, run_both
from prover import fraud_vectors as fv
from prover import plan_triggers
from prover.keys import get_account_key, get_order_schedule_key
from prover.records import PendingKind, decode_item, encode_item
from prover.trace import TraceContext, TraceRunner
from sequencer.core import eip712
from sequencer.core.presets import DEVNET
from sequencer.core.records import (CancelOrder, PlaceOrder, PlaceTrigger, ScheduleCancel, ScheduledCancelAll,
                                    TriggerFire)
from sequencer.core.rules.triggers import DAY_MS, STOP_LOSS, TAKE_PROFIT
from sequencer.core.state import (TRIGGER_CANCELLED, TRIGGER_FIRED, TRIGGER_PENDING, Account, Order, OrderSchedule,
                                  State, Trigger)
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


@st.composite
def trigger_states(draw):
    listed = [draw(markets(m)) for m in (fv.BTC, fv.ETH) if draw(st.sampled_from([True] * 5 + [False]))]
    state = fv.make_perps_state({}, listed, {}, {}, order_count=draw(st.integers(0, 10**6)))
    for index in draw(st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True)):
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
    """A cancel-all L1 cannot show complete: the reference raised
    PendingKind; the contract, given the schedule, the account and its
    kept nonces, reverts "pending"."""
    runner = TraceRunner(state, fv.RULES, ctx=ctx)
    record = decode_item(item)
    openings = [opening_arg(runner.tree, get_order_schedule_key(record.account)),
                opening_arg(runner.tree, get_account_key(record.account))]
    with pytest.raises(Exception, match="pending"):
        onestep.functions.apply(runner.state_root, ctx.as_arg(), item, openings,
                                list(kept_of(state, record.account))).call()


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
    out = check(onestep, state, ctx, item)
    try:
        name = type(decode_item(item)).__name__
    except PendingKind:
        name = "?"
    event(f"{name} {'pending' if out is None else 'applied' if out[1].ok else 'failed'}")


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
    order and pending trigger of the account is cancelled (filled, cancelled
    and fired ones and other accounts' left), the runs today counted."""
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
    assert s.orders[(A, 1)].cancelled and not s.orders[(B, 3)].cancelled
    assert s.triggers[(A, 4)].status == s.triggers[(A, 5)].status == TRIGGER_CANCELLED
    assert s.order_schedules[A] == OrderSchedule(0, 0, TODAY, 1)
    assert not chain.run(ScheduledCancelAll(A))              # ran: the schedule is cleared


def cancel_all_state(kept: tuple[int, ...], triggers: int) -> State:
    state = base_state(kept=kept)
    state.set_order_schedule(A, OrderSchedule(TS, triggers, 0, 0))
    if triggers:
        state.set_trigger(A, kept[0], make_trigger(sell_stop(kept[0])))
    state.commit(0)
    return state


def test_cancel_all_of_a_full_window_is_pending(onestep):
    """An account whose window dropped nonces may hold orders no kept nonce
    names: its cancel-all is pending on both sides, as is one whose kept
    nonces need more openings than a step takes (3 + 29 orders, or 3 + 2 x 14
    with triggers, are the most); not due, it fails on both sides."""
    cases = {(WINDOW, 0): "pending", (30, 0): "pending", (15, 1): "pending", (29, 0): "runs", (14, 1): "runs"}
    for (count, triggers), outcome in cases.items():
        kept = tuple(range(1, count + 1))
        item = encode_item(ScheduledCancelAll(A))
        out = check(onestep, cancel_all_state(kept, triggers), fv.open_block_ctx(base_state()), item)
        assert (out is None) == (outcome == "pending"), (count, triggers)
        if out is not None:
            assert out[1].ok
        runner, result = check(onestep, cancel_all_state(kept, triggers), fv.open_block_ctx(base_state(), TS - 1), item)
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
    kept nonce left out of the cancel-all, an open order opened as absent, a
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
    item = encode_item(ScheduledCancelAll(A))
    runner, _, args, nonces = honest(state, item)
    assert runner.state.orders[(A, 3)].cancelled  # the fired trigger's open IOC order
    reverts(item, args, nonces[:-1], "nonces")
    reverts(item, args[:4] + [(False, b"", args[4][2], b"")] + args[5:], nonces, "bad opening")  # order 3 hidden
    state.set_order_schedule(A, OrderSchedule(0, 1, 0, 0))
    state.commit(0)
    item = encode_item(fv.sign(CancelOrder(A, 4, 5, EXP, b""), KA))
    runner, _, args, nonces = honest(state, item)
    assert runner.state.triggers[(A, 4)].status == TRIGGER_CANCELLED and args[-1][3]  # the schedule deleted
    reverts(item, args[:-1] + [args[-1][:3] + (b"\x00" + bytes(64),)], nonces, "deletion")
    reverts(item, args[:-1] + [args[-1][:3] + (b"",)], nonces, "deletion")


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
                 "cancel order of a trigger"):
        assert names[name]["ok"] and names[name]["post_state_root"] != names[name]["state_root"], name
