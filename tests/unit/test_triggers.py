"""Trigger orders (stop-loss / take-profit on the mark), modify (cancel-replace
in one signed tx) and the dead-man's switch (scheduled cancel-all): the rules
pre/op/post, the exchange's matching of what they place, the assembler's
bounded firing, and what an attacker (or a dishonest sequencer) would try."""
from __future__ import annotations

import msgspec
import pytest

from perps_support import ADDR, BTC, CTX, ETH, KEYS, T0, Sim, sign, usd
from sequencer.core.encoding import encode_record
from sequencer.core.records import (FundingTick, ModifyOrder, PlaceTrigger, ScheduleCancel, ScheduledCancelAll, Trade,
                                    TriggerFire)
from sequencer.core.rules.base import RuleError
from sequencer.core.rules.triggers import STOP_LOSS, TAKE_PROFIT, is_trigger_crossed
from sequencer.core.state import (TRIGGER_CANCELLED, TRIGGER_FIRED, TRIGGER_PENDING, OrderSchedule, Position,
                                  get_order_epoch, is_order_open)
from sequencer.core.transition import apply_record
from sequencer.node.assembler import BlockAssembler

PRICE = usd(60_000)
STEP = 10**6  # 0.01 BTC


def trigger(sim: Sim, name: str, is_buy: bool, trigger_price: int, price: int, size: int, *, tpsl: int = STOP_LOSS,
            reduce_only: bool = True, leverage: int = 10) -> PlaceTrigger:
    return sign(PlaceTrigger(ADDR[name], BTC, is_buy, trigger_price, price, size, leverage, tpsl, reduce_only,
                             sim.next_nonce(name), sim.now + 60_000, b""), KEYS[name])


def modify(sim: Sim, name: str, order_nonce: int, price: int, size: int) -> ModifyOrder:
    return sign(ModifyOrder(ADDR[name], order_nonce, price, size, sim.next_nonce(name), sim.now + 3_600_000, b""),
                KEYS[name])


def schedule(sim: Sim, name: str, cancel_at_ms: int) -> ScheduleCancel:
    return sign(ScheduleCancel(ADDR[name], cancel_at_ms, sim.next_nonce(name), sim.now + 60_000, b""), KEYS[name])


def long_alice(sim: Sim, size: int = 10 * STEP) -> None:
    """alice long ``size`` at 60,000 against bob."""
    sim.set_price(PRICE)
    sim.place("bob", False, PRICE, size)
    assert any(isinstance(r, Trade) for r in sim.place("alice", True, PRICE, size))
    assert sim.size("alice") == size


def assembler_for(sim: Sim) -> BlockAssembler:
    return BlockAssembler(sim.state, sim.ctx, max_records=4096, exchange=sim.exchange)


def start_block(sim: Sim, advance_ms: int = 1) -> list:
    sim.now += advance_ms
    out = assembler_for(sim).block_start_records(sim.now)
    sim.log.extend((sim.now, r) for r in out)
    return [r for r in out if not isinstance(r, FundingTick)]


def new_sim() -> Sim:
    return Sim(alice=usd(100_000), bob=usd(100_000), carol=usd(100_000), fund=usd(1_000_000))


# --- the crossing rule -----------------------------------------------------------------

@pytest.mark.parametrize("is_buy,tpsl,trigger_price,mark,crossed", [
    (False, STOP_LOSS, 100, 100, True), (False, STOP_LOSS, 100, 99, True), (False, STOP_LOSS, 100, 101, False),
    (False, TAKE_PROFIT, 100, 101, True), (False, TAKE_PROFIT, 100, 99, False),
    (True, STOP_LOSS, 100, 101, True), (True, STOP_LOSS, 100, 99, False),
    (True, TAKE_PROFIT, 100, 99, True), (True, TAKE_PROFIT, 100, 101, False),
])
def test_which_way_the_mark_must_cross(is_buy, tpsl, trigger_price, mark, crossed):
    assert is_trigger_crossed(is_buy, tpsl, trigger_price, mark) is crossed


# --- PlaceTrigger -----------------------------------------------------------------------

def test_a_trigger_reserves_nothing_and_counts_against_the_account():
    sim = new_sim()
    long_alice(sim)
    free = sim.free("alice")
    record = trigger(sim, "alice", False, usd(55_000), usd(54_000), 10 * STEP)
    assert sim.submit(record) == [record]
    stored = sim.state.triggers[(ADDR["alice"], record.nonce)]
    assert stored.status == TRIGGER_PENDING and stored.trigger_price == usd(55_000)
    assert sim.state.order_schedules[ADDR["alice"]].open_triggers == 1
    assert sim.free("alice") == free and sim.exchange.reserved.get(ADDR["alice"], 0) == 0
    assert (ADDR["alice"], record.nonce) not in sim.state.orders


@pytest.mark.parametrize("change,code", [
    (dict(trigger_price=0), "invalid_trigger_price"),
    (dict(trigger_price=usd(55_000) + 1), "invalid_trigger_price"),
    (dict(price=usd(56_000)), "limit_inside_trigger"),  # a sell limit above its trigger: cannot fill at the fire
    (dict(size=STEP + 1), "invalid_size"),
    (dict(leverage=0), "invalid_leverage"),
    (dict(tpsl=3), "invalid_tpsl"),
    (dict(reduce_only=False, size=10_000, trigger_price=usd(5_000), price=usd(4_000)), "below_min_notional"),
])
def test_a_trigger_that_could_never_be_valid_is_refused(change, code):
    sim = new_sim()
    base = trigger(sim, "alice", False, usd(55_000), usd(54_000), STEP)
    bad = sign(msgspec.structs.replace(base, **change), KEYS["alice"])
    before = sim.state.to_tables()
    with pytest.raises(RuleError) as err:
        sim.submit(bad)
    assert err.value.code == code
    assert sim.state.to_tables() == before


def test_the_pending_trigger_limit_holds():
    sim = new_sim()
    limit = CTX.preset.max_open_triggers
    for _ in range(limit):
        sim.submit(trigger(sim, "alice", False, usd(55_000), usd(54_000), STEP))
    with pytest.raises(RuleError, match="too_many_triggers"):
        sim.submit(trigger(sim, "alice", False, usd(55_000), usd(54_000), STEP))
    first = min(n for (a, n) in sim.state.triggers if a == ADDR["alice"])
    sim.submit(sim.cancel_record("alice", first))  # a cancel frees a slot
    assert sim.state.triggers[(ADDR["alice"], first)].status == TRIGGER_CANCELLED
    sim.submit(trigger(sim, "alice", False, usd(55_000), usd(54_000), STEP))
    assert sim.state.order_schedules[ADDR["alice"]].open_triggers == limit


def test_cancel_order_cancels_a_trigger_once():
    sim = new_sim()
    record = trigger(sim, "alice", False, usd(55_000), usd(54_000), STEP)
    sim.submit(record)
    sim.submit(sim.cancel_record("alice", record.nonce))
    assert sim.state.triggers[(ADDR["alice"], record.nonce)].status == TRIGGER_CANCELLED
    assert sim.state.order_schedules[ADDR["alice"]].open_triggers == 0
    with pytest.raises(RuleError, match="order_not_open"):
        sim.submit(sim.cancel_record("alice", record.nonce))
    sim.set_price(usd(50_000))
    assert start_block(sim) == []  # a cancelled trigger never fires


# --- TriggerFire ----------------------------------------------------------------------------

def test_a_stop_loss_fires_when_the_mark_falls_and_closes_the_position():
    sim = new_sim()
    long_alice(sim)
    sim.place("carol", True, usd(54_500), 10 * STEP)  # the bid the stop sells into
    stop = trigger(sim, "alice", False, usd(55_000), usd(54_000), 10 * STEP)
    sim.submit(stop)
    sim.set_price(usd(56_000))
    assert start_block(sim) == []  # not crossed: nothing fires
    assert sim.state.triggers[(ADDR["alice"], stop.nonce)].status == TRIGGER_PENDING
    sim.set_price(usd(55_000))
    out = start_block(sim)
    assert out[0] == TriggerFire(ADDR["alice"], stop.nonce)
    trades = [r for r in out if isinstance(r, Trade)]
    assert [(t.maker, t.taker, t.price, t.size) for t in trades] == [
        (ADDR["carol"], ADDR["alice"], usd(54_500), 10 * STEP)]
    assert sim.size("alice") == 0
    assert sim.state.triggers[(ADDR["alice"], stop.nonce)].status == TRIGGER_FIRED
    assert sim.state.order_schedules[ADDR["alice"]].open_triggers == 0
    assert start_block(sim) == []  # spent
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_a_take_profit_fires_when_the_mark_rises():
    sim = new_sim()
    long_alice(sim)
    sim.place("carol", True, usd(65_000), 10 * STEP)
    tp = trigger(sim, "alice", False, usd(65_000), usd(64_000), 10 * STEP, tpsl=TAKE_PROFIT)
    sim.submit(tp)
    sim.set_price(usd(64_990))
    assert start_block(sim) == []
    sim.set_price(usd(65_010))
    out = start_block(sim)
    assert out[0] == TriggerFire(ADDR["alice"], tp.nonce) and sim.size("alice") == 0


def test_a_sequencer_cannot_fire_a_trigger_before_the_mark_crossed():
    sim = new_sim()
    long_alice(sim)
    stop = trigger(sim, "alice", False, usd(55_000), usd(54_000), 10 * STEP)
    sim.submit(stop)
    sim.set_price(usd(55_010))  # one step short
    before = sim.state.to_tables()
    error = sim.apply(TriggerFire(ADDR["alice"], stop.nonce))
    assert error is not None and error.code == "trigger_not_crossed"
    assert sim.state.to_tables() == before
    sim.now += 61_000  # and with a stale mark it cannot fire either, even past the trigger
    error = apply_record(sim.state, TriggerFire(ADDR["alice"], stop.nonce), sim.now, sim.ctx)
    assert error is not None and error.code == "stale_oracle_price"
    assert apply_record(sim.state, TriggerFire(ADDR["bob"], 999), sim.now, sim.ctx).code == "unknown_trigger"


def test_a_trigger_fires_once():
    sim = new_sim()
    long_alice(sim)
    stop = trigger(sim, "alice", False, usd(55_000), usd(54_000), 10 * STEP)
    sim.submit(stop)
    sim.set_price(usd(54_000))
    assert sim.apply(TriggerFire(ADDR["alice"], stop.nonce)) is None
    assert sim.apply(TriggerFire(ADDR["alice"], stop.nonce)).code == "trigger_not_pending"


def test_a_stop_loss_cannot_reopen_a_liquidated_position():
    """The position is liquidated on the way down; the reduce-only stop below
    then fires into an empty position and fills nothing, with a bid waiting."""
    sim = new_sim()
    long_alice(sim)
    stop = trigger(sim, "alice", False, usd(50_000), usd(40_000), 10 * STEP)
    sim.submit(stop)
    sim.place("carol", True, usd(45_000), 10 * STEP)
    sim.set_price(usd(45_000))  # liquidates alice's 10x long (no book step at this mark for the stop)
    assert sim.size("alice") == 0
    out = start_block(sim)
    assert out == [TriggerFire(ADDR["alice"], stop.nonce)]  # spent, nothing traded
    assert sim.size("alice") == 0
    assert sim.state.triggers[(ADDR["alice"], stop.nonce)].status == TRIGGER_FIRED


def test_a_fired_order_that_would_trade_with_its_own_order_fills_nothing():
    sim = new_sim()
    long_alice(sim)
    sim.place("alice", True, usd(54_500), STEP)  # alice's own bid is the best bid
    stop = trigger(sim, "alice", False, usd(55_000), usd(54_000), 10 * STEP)
    sim.submit(stop)
    sim.set_price(usd(55_000))
    out = start_block(sim)
    assert out == [TriggerFire(ADDR["alice"], stop.nonce)]
    assert sim.size("alice") == 10 * STEP
    assert sim.exchange.open_orders(ADDR["alice"])  # the resting bid is untouched
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_triggers_flooding_the_assembler_fire_in_bounded_batches_in_placement_order():
    sim = Sim(**{name: usd(100_000) for name in ("alice", "bob", "carol", "dave", "erin", "frank")},
              fund=usd(1_000_000))
    sim.set_price(PRICE)
    names = ("alice", "bob", "carol", "dave", "erin", "frank")
    placed = []
    for _ in range(CTX.preset.max_open_triggers):
        for name in names:
            record = trigger(sim, name, False, usd(55_000), usd(54_000), STEP)
            sim.submit(record)
            placed.append((record.account, record.nonce))
        sim.now += 1
    assert len(placed) == 120
    sim.set_price(usd(54_000))
    fired = []
    while True:
        out = start_block(sim)
        if not out:
            break
        batch = [(r.account, r.nonce) for r in out if isinstance(r, TriggerFire)]
        assert 0 < len(batch) <= BlockAssembler.MAX_TRIGGER_FIRES
        fired += batch
    assert sorted(fired) == sorted(placed) and len(set(fired)) == len(placed)
    assert fired[:6] == sorted(placed[:6])  # earliest placed first, then account order


def test_past_the_bound_the_trigger_the_mark_crossed_first_fires_first():
    """32 stops at 55,000 placed first, one at 56,000 placed last; the mark
    falls to 54,000: the 56,000 stop (crossed first on the way down) makes the
    first block, the last of the 55,000 ones waits for the next."""
    sim = Sim(**{name: usd(100_000) for name in ("alice", "bob", "carol", "dave")}, fund=usd(1_000_000))
    sim.set_price(PRICE)
    low = []
    for i in range(BlockAssembler.MAX_TRIGGER_FIRES):
        record = trigger(sim, ("alice", "bob", "carol")[i % 3], False, usd(55_000), usd(54_000), STEP)
        sim.submit(record)
        low.append((record.account, record.nonce))
        sim.now += 1
    high = trigger(sim, "dave", False, usd(56_000), usd(55_000), STEP)
    sim.submit(high)
    sim.set_price(usd(54_000))
    first = [(r.account, r.nonce) for r in start_block(sim) if isinstance(r, TriggerFire)]
    assert len(first) == BlockAssembler.MAX_TRIGGER_FIRES and (high.account, high.nonce) in first
    assert first == low[:-1] + [(high.account, high.nonce)]  # within the block: placement order
    second = [(r.account, r.nonce) for r in start_block(sim) if isinstance(r, TriggerFire)]
    assert second == [low[-1]]


def test_an_idle_assembler_cuts_a_block_for_a_crossed_trigger():
    sim = new_sim()
    long_alice(sim)
    sim.submit(trigger(sim, "alice", False, usd(55_000), usd(54_000), 10 * STEP))
    start_block(sim)  # the funding tick due at the test's start time
    assembler = assembler_for(sim)
    assert not assembler.is_block_start_due(sim.now + 1)
    sim.set_price(usd(54_900))
    assert assembler.is_block_start_due(sim.now + 1)
    assembly = assembler.assemble([], sim.now + 1)
    assert assembly.result is not None and isinstance(assembly.result.records[0], TriggerFire)
    assembler.commit(assembly)


# --- ModifyOrder -------------------------------------------------------------------------

def test_modify_replaces_price_and_size_and_loses_priority():
    sim = new_sim()
    sim.set_price(PRICE)
    first = sim.order("alice", True, usd(59_000), 2 * STEP)
    sim.submit(first)
    sim.place("bob", True, usd(59_000), STEP)
    reserved = sim.exchange.reserved[ADDR["alice"]]
    record = modify(sim, "alice", first.nonce, usd(59_000), 3 * STEP)
    assert sim.submit(record) == [record]
    old, new = sim.state.orders[(ADDR["alice"], first.nonce)], sim.state.orders[(ADDR["alice"], record.nonce)]
    assert old.cancelled and not new.cancelled and (new.price, new.size) == (usd(59_000), 3 * STEP)
    assert new.seq > sim.state.orders[(ADDR["bob"], 1)].seq > old.seq
    level = sim.exchange.dump()[BTC]["bids"]
    assert [(a, n) for _, a, n, _, _ in level] == [(ADDR["bob"], 1), (ADDR["alice"], record.nonce)]
    assert sim.exchange.reserved[ADDR["alice"]] > reserved  # the reserve follows the new size
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_a_modify_that_crosses_takes_as_the_taker():
    sim = new_sim()
    sim.set_price(PRICE)
    sim.place("bob", False, usd(60_000), STEP)
    first = sim.order("alice", True, usd(59_000), STEP)
    sim.submit(first)
    out = sim.submit(modify(sim, "alice", first.nonce, usd(60_000), STEP))
    assert isinstance(out[0], ModifyOrder) and isinstance(out[1], Trade)
    assert sim.size("alice") == STEP and sim.exchange.open_orders(ADDR["alice"]) == []
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_a_replayed_modify_is_refused_and_changes_nothing():
    sim = new_sim()
    sim.set_price(PRICE)
    first = sim.order("alice", True, usd(59_000), STEP)
    sim.submit(first)
    record = modify(sim, "alice", first.nonce, usd(58_000), STEP)
    sim.submit(record)
    before, books = sim.state.to_tables(), sim.exchange.dump()
    with pytest.raises(RuleError) as err:
        sim.submit(record)
    assert err.value.code in ("nonce_used", "order_not_open")
    assert sim.state.to_tables() == before and sim.exchange.dump() == books
    # the same modify with a fresh nonce still cannot revive the cancelled order
    again = sign(msgspec.structs.replace(record, nonce=sim.next_nonce("alice")), KEYS["alice"])
    with pytest.raises(RuleError, match="order_not_open"):
        sim.submit(again)


def test_a_modify_that_would_cross_its_own_order_is_refused_whole_and_the_old_order_keeps_its_place():
    sim = new_sim()
    sim.set_price(PRICE)
    ask = sim.order("alice", False, usd(61_000), STEP)
    sim.submit(ask)
    bid = sim.order("alice", True, usd(59_000), STEP)
    sim.submit(bid)
    sim.place("bob", True, usd(59_000), STEP)  # behind alice's bid at the same price
    before, books = sim.state.to_tables(), sim.exchange.dump()
    reserved = dict(sim.exchange.reserved)
    with pytest.raises(RuleError, match="self_trade"):
        sim.submit(modify(sim, "alice", bid.nonce, usd(61_000), STEP))
    assert sim.state.to_tables() == before
    assert sim.exchange.dump() == books and sim.exchange.reserved == reserved  # first in its level still


def test_a_modify_of_what_is_not_a_resting_order_is_refused():
    sim = new_sim()
    sim.set_price(PRICE)
    with pytest.raises(RuleError, match="unknown_order"):
        sim.submit(modify(sim, "alice", 77, usd(59_000), STEP))
    ioc = sim.order("alice", True, usd(59_000), STEP, tif=1)
    sim.submit(ioc)
    with pytest.raises(RuleError, match="order_not_resting"):
        sim.submit(modify(sim, "alice", ioc.nonce, usd(59_000), STEP))
    bob = sim.order("bob", True, usd(59_000), STEP)
    sim.submit(bob)
    forged = sign(ModifyOrder(ADDR["alice"], bob.nonce, usd(58_000), STEP, sim.next_nonce("alice"),
                              sim.now + 60_000, b""), KEYS["alice"])
    with pytest.raises(RuleError, match="unknown_order"):  # orders are per account: alice cannot touch bob's
        sim.submit(forged)
    assert not sim.state.orders[(ADDR["bob"], bob.nonce)].cancelled


# --- ScheduleCancel / ScheduledCancelAll ------------------------------------------------------

def run_dead_mans_switch(schema_version: int):
    """alice with a long, a bid in each market, a pending stop and a schedule
    that comes due; bob's bid: pre, the switch fired by the assembler, post."""
    sim = new_sim() if schema_version == CTX.schema_version else Sim(
        alice=usd(100_000), bob=usd(100_000), carol=usd(100_000), fund=usd(1_000_000),
        ctx=msgspec.structs.replace(CTX, schema_version=schema_version))
    long_alice(sim)
    bid = sim.order("alice", True, usd(50_000), STEP)
    sim.submit(bid)
    eth_bid = sim.order("alice", True, usd(2_000), 10**9, market=ETH)  # another market, no position there
    sim.submit(eth_bid)
    stop = trigger(sim, "alice", False, usd(55_000), usd(54_000), 10 * STEP)
    sim.submit(stop)
    sim.place("bob", True, usd(49_000), STEP)
    at = sim.now + 10_000
    sim.submit(schedule(sim, "alice", at))
    assert sim.state.order_schedules[ADDR["alice"]].cancel_at_ms == at
    error = apply_record(sim.state, ScheduledCancelAll(ADDR["alice"]), at - 1, sim.ctx)
    assert error is not None and error.code == "schedule_not_due"  # early: refused
    sim.now += 5_000
    assert start_block(sim, 0) == []
    position_before = sim.position("alice")
    out = start_block(sim, 5_000)
    assert out == [ScheduledCancelAll(ADDR["alice"])]
    assert not is_order_open(sim.state, ADDR["alice"], bid.nonce)
    assert not is_order_open(sim.state, ADDR["alice"], eth_bid.nonce)
    assert sim.state.triggers[(ADDR["alice"], stop.nonce)].status == TRIGGER_CANCELLED
    assert sim.exchange.open_orders(ADDR["alice"]) == [] and ADDR["alice"] not in sim.exchange.reserved
    assert len(sim.exchange.open_orders(ADDR["bob"])) == 1  # others untouched
    s = sim.state.order_schedules[ADDR["alice"]]
    assert (s.cancel_at_ms, s.open_triggers, s.cancels) == (0, 0, 1)
    assert start_block(sim) == []
    assert sim.replay().to_tables() == sim.state.to_tables()
    return sim, bid, eth_bid, position_before


def test_the_dead_mans_switch_cancels_orders_by_epoch_and_triggers_when_due():
    """Pre: alice long in BTC, a bid in BTC and one in ETH (no position
    there), a pending stop, a schedule; bob's bid.  Op (rules v4): the
    switch comes due.  Post: her orders are dead by her order epoch in every
    market (= the order count; the BTC position keeps size, cost, margin and
    funding, ETH gets an epoch-only leaf), their flags left, the stop
    cancelled, bob untouched, the book (and a rebuild) without them; an
    order placed after the switch is live."""
    sim, bid, eth_bid, position_before = run_dead_mans_switch(4)
    count = sim.state.globals.order_count
    assert sim.position("alice") == msgspec.structs.replace(position_before, order_epoch=count)
    assert sim.position("alice", ETH) == Position(order_epoch=count)
    assert not sim.state.orders[(ADDR["alice"], bid.nonce)].cancelled
    assert not sim.state.orders[(ADDR["alice"], eth_bid.nonce)].cancelled
    assert get_order_epoch(sim.state, ADDR["bob"], BTC) == 0  # others untouched
    sim.exchange.rebuild(sim.state)  # the book rebuilt from the state shows them closed too
    assert sim.exchange.open_orders(ADDR["alice"]) == []
    late = sim.order("alice", True, usd(50_000), STEP)  # placed after the switch: live
    sim.submit(late)
    assert is_order_open(sim.state, ADDR["alice"], late.nonce)
    assert [o["nonce"] for o in sim.exchange.open_orders(ADDR["alice"])] == [late.nonce]


def test_a_v3_log_replays_the_dead_mans_switch_with_flags():
    """Pre: as above, in a log of schema 3.  Op: the switch comes due.
    Post: every open order's flag set (v1-v3's rule), no epoch written, no
    ETH position made."""
    sim, bid, eth_bid, position_before = run_dead_mans_switch(3)
    assert sim.state.orders[(ADDR["alice"], bid.nonce)].cancelled
    assert sim.state.orders[(ADDR["alice"], eth_bid.nonce)].cancelled
    assert sim.position("alice") == position_before and sim.position("alice", ETH) is None


def test_the_v4_switch_with_no_order_placed_yet_writes_no_epoch():
    """Pre: alice's schedule, no order ever placed (order_count 0).  Op: the
    switch comes due.  Post: it runs; the epoch 0 writes nothing (both
    position leaves stay absent)."""
    sim = new_sim()
    sim.submit(schedule(sim, "alice", sim.now + 5_000))
    assert sim.state.globals.order_count == 0
    assert start_block(sim, 5_000) == [ScheduledCancelAll(ADDR["alice"])]
    assert all(get_order_epoch(sim.state, ADDR["alice"], m) == 0 for m in (BTC, ETH))
    from prover.trace import build_tree
    from prover.keys import get_position_key
    tree = build_tree(sim.state)
    assert all(tree.get(get_position_key(ADDR["alice"], m)) is None for m in (BTC, ETH))


def test_a_schedule_in_the_past_or_too_soon_is_refused_and_zero_clears():
    sim = new_sim()
    for at in (1, sim.now - 1, sim.now, sim.now + CTX.preset.schedule_cancel_min_delay_ms - 1):
        with pytest.raises(RuleError, match="schedule_too_soon"):
            sim.submit(schedule(sim, "alice", at))
    assert ADDR["alice"] not in sim.state.order_schedules
    sim.submit(schedule(sim, "alice", sim.now + 60_000))
    sim.submit(schedule(sim, "alice", 0))
    assert sim.state.order_schedules[ADDR["alice"]] == OrderSchedule()
    sim.now += 120_000
    assert start_block(sim) == []
    assert apply_record(sim.state, ScheduledCancelAll(ADDR["alice"]), sim.now, sim.ctx).code == "no_schedule"


def test_scheduled_cancels_are_bounded_per_day():
    sim = new_sim()
    sim.now = (T0 // 86_400_000 + 1) * 86_400_000  # the start of a UTC day
    limit = CTX.preset.max_scheduled_cancels_per_day
    for _ in range(limit):
        sim.submit(schedule(sim, "alice", sim.now + 5_000))
        assert start_block(sim, 5_000) == [ScheduledCancelAll(ADDR["alice"])]
    with pytest.raises(RuleError, match="schedule_limit"):
        sim.submit(schedule(sim, "alice", sim.now + 5_000))
    sim.now += 86_400_000  # the next day
    sim.submit(schedule(sim, "alice", sim.now + 5_000))


def test_the_new_leaves_are_committed_and_rebuild_gives_the_same_index():
    from prover.trace import build_tree
    from sequencer.core.commitment import compute_leaf
    sim = new_sim()
    long_alice(sim)
    stop = trigger(sim, "alice", False, usd(55_000), usd(54_000), 10 * STEP)
    sim.submit(stop)
    sim.submit(schedule(sim, "alice", sim.now + 60_000))
    tree = build_tree(sim.state)
    for table, key in (("triggers", (ADDR["alice"], stop.nonce)), ("order_schedules", ADDR["alice"])):
        leaf_key, value = compute_leaf(sim.state, table, key)
        assert value is not None and tree.get(leaf_key) == value
    entries, cancel_at = dict(sim.exchange.triggers.entries), dict(sim.exchange.triggers.cancel_at)
    sim.exchange.rebuild(sim.state)
    assert sim.exchange.triggers.entries == entries and sim.exchange.triggers.cancel_at == cancel_at


def test_the_new_records_round_trip_the_log_encoding():
    from sequencer.core.encoding import decode_record
    sim = new_sim()
    for record in (trigger(sim, "alice", False, usd(55_000), usd(54_000), STEP), modify(sim, "alice", 3, 5, 6),
                   schedule(sim, "alice", 123), TriggerFire(ADDR["bob"], 9), ScheduledCancelAll(ADDR["carol"])):
        assert decode_record(encode_record(record)) == record


def test_sequencer_records_need_no_signature_but_user_ones_do():
    sim = new_sim()
    record = trigger(sim, "alice", False, usd(55_000), usd(54_000), STEP)
    forged = msgspec.structs.replace(record, signature=sign(record, KEYS["bob"]).signature)
    with pytest.raises(RuleError, match="bad_signature"):
        sim.submit(forged)
    forged_schedule = msgspec.structs.replace(schedule(sim, "alice", sim.now + 60_000),
                                              signature=bytes(65))
    with pytest.raises(RuleError):
        sim.submit(forged_schedule)
    assert ADDR["alice"] not in sim.state.order_schedules and not sim.state.triggers


# --- a property: a trigger fires exactly when a mark it saw crossed it -------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(triggers=st.lists(st.tuples(st.booleans(), st.sampled_from([TAKE_PROFIT, STOP_LOSS]),
                                   st.integers(-4, 4)), min_size=1, max_size=6),
       marks=st.lists(st.integers(-5, 5), min_size=1, max_size=6))
def test_triggers_fire_exactly_when_a_mark_crossed_them(triggers, marks):
    """Triggers around 60,000 (steps of 500), marks moving in the same steps:
    after each block start, a trigger is spent iff some mark since its
    placement crossed it; the sequencer's log replays to the same state."""
    sim = Sim(alice=usd(1_000_000), bob=usd(1_000_000), fund=usd(1_000_000))
    sim.set_price(PRICE)
    placed = []
    for is_buy, tpsl, offset in triggers:
        trigger_price = PRICE + offset * usd(500)
        limit = trigger_price + usd(1_000) if is_buy else trigger_price - usd(1_000)
        record = trigger(sim, "alice", is_buy, trigger_price, limit, STEP, tpsl=tpsl, reduce_only=False)
        sim.submit(record)
        placed.append(record)
    seen = []
    for step in marks:
        mark = PRICE + step * usd(500)
        sim.set_price(mark)
        seen.append(mark)
        start_block(sim)
        for record in placed:
            status = sim.state.triggers[(record.account, record.nonce)].status
            crossed = any(is_trigger_crossed(record.is_buy, record.tpsl, record.trigger_price, m) for m in seen)
            assert (status == TRIGGER_FIRED) is crossed, (record, seen)
    assert sim.replay().to_tables() == sim.state.to_tables()
