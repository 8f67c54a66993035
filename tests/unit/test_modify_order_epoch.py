"""Rules v4: a ModifyOrder of an order dead by its owner's order epoch is
refused, pre/op/post.  Since v4 the dead-man's switch (as a liquidation and
a forced close since v2) cancels an account's orders by writing its order
epoch in every market, leaving each order's flag clear; a modify that read
the flag only would revive such an order as a live replacement.  A market
maker's ModifyOrder signed before its switch fired and relayed after it is
the attack: the stale quote would be back in the book at a stale price for
whoever holds the signed record to trade against.  v1-v3 logs replay as
they were (v3 refused it only where the switch had flagged the order)."""
from __future__ import annotations

import msgspec
import pytest

from perps_support import ADDR, BTC, CTX, KEYS, Sim, sign, usd
from prover import fraud_vectors as fv
from sequencer.core.records import ModifyOrder, ScheduledCancelAll, Trade
from sequencer.core.rules.base import RuleError
from sequencer.core.state import Account, Order, Position, State, get_order_epoch, is_order_open
from sequencer.core.transition import apply_record
from test_triggers import STEP, long_alice, modify, schedule, start_block

LOT = 10_000
V3 = msgspec.structs.replace(fv.RULES, schema_version=3)
V4 = msgspec.structs.replace(fv.RULES, schema_version=4)


def quote_state(position: Position | None, seq: int = 3) -> State:
    """alice's resting bid (nonce 20, BTC, flag clear, the given seq), her BTC
    position (or none), order count 5."""
    from prover.hashing import keccak
    a = fv.ADDRESSES[0]
    quote = Order(keccak(b"quote"), 20 * LOT, 0, False, fv.BTC, True, fv.BTC_PRICE, 10, 0, False,
                  fv.BLOCK_TIME + 60_000, seq)
    positions = {} if position is None else {(a, fv.BTC): position}
    return fv.make_perps_state({a: Account(10**9, ())}, [fv.make_market(fv.BTC, fv.BTC_PRICE)], positions,
                               {(a, 20): quote}, order_count=5)


def modify_quote(nonce: int = 21) -> ModifyOrder:
    return fv.sign(ModifyOrder(fv.ADDRESSES[0], 20, fv.BTC_PRICE - 10**6, 10 * LOT, nonce, fv.BLOCK_TIME + 60_000,
                               b""), fv.KEYS[0])


HELD = Position(10 * LOT, 10 * LOT * fv.BTC_PRICE // 10**8, 10**7, 0)


@pytest.mark.parametrize("position,dead", [
    (None, False),                                                    # no position leaf: epoch 0
    (Position(order_epoch=2), False),                                 # epoch below the seq (3)
    (Position(order_epoch=3), True),                                  # at the seq
    (Position(order_epoch=4), True),                                  # above it
    (msgspec.structs.replace(HELD, order_epoch=3), True),             # a held position's epoch
    (msgspec.structs.replace(HELD, order_epoch=2**64 - 1), True),
    (HELD, False),
])
def test_v4_refuses_a_modify_of_an_order_dead_by_its_epoch_and_v3_accepts_it(position, dead):
    """Pre: alice's quote (seq 3, flag clear) and her BTC position absent or
    with an epoch below, at or above its seq.  Op: her ModifyOrder of it.
    Post: rules v4 refuses it iff the quote is dead (order_not_open naming
    the order epoch), nothing changed; rules v3 accepts it either way (its
    rule reads the flag only): the quote flagged, the replacement seq 6
    (itself dead only under an epoch above 6)."""
    a = fv.ADDRESSES[0]
    for ctx in (V4, V3):
        state = quote_state(position)
        before = state.to_tables()
        error = apply_record(state, modify_quote(), fv.BLOCK_TIME, ctx)
        if ctx is V4 and dead:
            assert error is not None and error.code == "order_not_open"
            assert "order epoch" in error.message and state.to_tables() == before
            assert not is_order_open(state, a, 20) and (a, 21) not in state.orders
        else:
            assert error is None
            assert state.orders[(a, 20)].cancelled and state.orders[(a, 21)].seq == 6
            assert is_order_open(state, a, 21) == (6 > get_order_epoch(state, a, fv.BTC))


def test_v4_checks_the_old_orders_market_only():
    """Pre: alice's BTC quote (seq 3) and an epoch 9 in ETH only.  Op: the
    modify.  Post: accepted (the epoch of another market cancels nothing here)."""
    a = fv.ADDRESSES[0]
    state = quote_state(None)
    state.set_position(a, fv.ETH, Position(order_epoch=9))
    state.commit(0)
    assert apply_record(state, modify_quote(), fv.BLOCK_TIME, V4) is None
    assert state.orders[(a, 21)].market == fv.BTC


def test_the_epoch_refusal_comes_before_the_replacements_terms():
    """Op: a modify of a dead quote whose new price is off tick.  Post:
    order_not_open (the epoch), as v1-v3 refused a flagged order before its terms."""
    state = quote_state(Position(order_epoch=3))
    record = fv.sign(ModifyOrder(fv.ADDRESSES[0], 20, fv.BTC_PRICE + 1, 10 * LOT, 21, fv.BLOCK_TIME + 60_000, b""),
                     fv.KEYS[0])
    assert apply_record(state, record, fv.BLOCK_TIME, V4).code == "order_not_open"
    assert apply_record(quote_state(None), record, fv.BLOCK_TIME, V4).code == "invalid_price"


# --- the dead-man's switch, through the engine ----------------------------------------------

def maker_with_switch(schema_version: int):
    """alice (a market maker) long, quoting a bid at 59,000; her switch 10 s
    ahead; her ModifyOrder moving the bid up to 59,900 signed now (before
    the switch fires) and held; the switch fires.  Returns (sim, bid, held)."""
    sim = Sim(alice=usd(100_000), bob=usd(100_000), carol=usd(100_000), fund=usd(1_000_000),
              ctx=msgspec.structs.replace(CTX, schema_version=schema_version))
    long_alice(sim)
    bid = sim.order("alice", True, usd(59_000), STEP)
    sim.submit(bid)
    sim.submit(schedule(sim, "alice", sim.now + 10_000))
    held = modify(sim, "alice", bid.nonce, usd(59_900), 2 * STEP)  # signed before the switch fires
    assert start_block(sim, 10_000) == [ScheduledCancelAll(ADDR["alice"])]
    return sim, bid, held


def test_a_modify_signed_before_the_switch_fired_is_refused_after_it():
    """Pre (rules v4): alice's bid dead by the epoch her switch wrote (flag
    clear); her ModifyOrder, signed before the switch fired, held by a
    relayer.  Op: the relayer submits it after the switch.  Post: refused
    (order_not_open, the order epoch), the state, book and reserves as
    before; carol's sell at the modify's price trades nothing with alice;
    the log replays to the same state."""
    sim, bid, held = maker_with_switch(4)
    alice = ADDR["alice"]
    assert not sim.state.orders[(alice, bid.nonce)].cancelled
    assert sim.state.orders[(alice, bid.nonce)].seq <= get_order_epoch(sim.state, alice, BTC)
    before, book = sim.state.to_tables(), sim.exchange.dump()
    with pytest.raises(RuleError, match="order_not_open") as refused:
        sim.submit(held)
    assert "order epoch" in str(refused.value)
    assert sim.state.to_tables() == before and sim.exchange.dump() == book
    assert sim.exchange.open_orders(alice) == [] and alice not in sim.exchange.reserved
    out = sim.place("carol", False, usd(59_000), 2 * STEP, tif=1)
    assert not any(isinstance(r, Trade) and alice in (r.maker, r.taker) for r in out)
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_a_sequencer_writing_the_held_modify_into_the_log_gets_a_failed_receipt():
    """Op: a dishonest sequencer skips the engine and applies the held modify
    to the state directly.  Post: the rule fails it (order_not_open) and
    writes nothing: no replacement, no nonce used."""
    sim, bid, held = maker_with_switch(4)
    before = sim.state.to_tables()
    error = apply_record(sim.state, held, sim.now, sim.ctx)
    assert error is not None and error.code == "order_not_open"
    assert sim.state.to_tables() == before and (ADDR["alice"], held.nonce) not in sim.state.orders


def test_a_v3_log_refuses_the_held_modify_by_the_flag():
    """Pre: the same in a schema-3 log (the switch flagged the bid).  Op: the
    held modify.  Post: refused (order_not_open, already cancelled): v3's
    replay is unchanged."""
    sim, bid, held = maker_with_switch(3)
    assert sim.state.orders[(ADDR["alice"], bid.nonce)].cancelled
    with pytest.raises(RuleError, match="order_not_open") as refused:
        sim.submit(held)
    assert "already cancelled" in str(refused.value)


def test_a_modify_of_an_order_placed_after_the_switch_applies():
    """Pre: after the switch, alice places a new bid (seq above her epoch).
    Op: she modifies it.  Post: accepted, the replacement live and in the book."""
    sim, bid, held = maker_with_switch(4)
    fresh = sim.order("alice", True, usd(58_000), STEP)
    sim.submit(fresh)
    record = modify(sim, "alice", fresh.nonce, usd(58_500), STEP)
    sim.submit(record)
    assert is_order_open(sim.state, ADDR["alice"], record.nonce)
    assert [o["nonce"] for o in sim.exchange.open_orders(ADDR["alice"])] == [record.nonce]
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_a_v3_modify_of_a_dead_order_is_pending_for_the_one_step():
    """Pre: alice's quote dead by her BTC epoch, in a schema-3 log.  Op: the
    prover plans the modify's one-step.  Post: PendingKind (v3 applies it,
    the one-step re-executes v4's refusal: no game is decided on it); a
    live quote's modify under v3, and the dead one under v4, plan as usual."""
    from prover.records import PendingKind, encode_item
    from prover.trace import TraceRunner
    item = encode_item(modify_quote())
    with pytest.raises(PendingKind, match="order epoch"):
        TraceRunner(quote_state(Position(order_epoch=3)), V3, ctx=fv.open_block_ctx(quote_state(None))).step(item)
    for position, ctx, ok in ((Position(order_epoch=2), V3, True), (Position(order_epoch=3), V4, False)):
        state = quote_state(position)
        result = TraceRunner(state, ctx, ctx=fv.open_block_ctx(state)).step(item)
        assert result.ok == ok and len(result.witness.openings) == (9 if ok else 5)
