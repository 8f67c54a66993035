"""Rules v4's dead-man's switch against a held ModifyOrder, on both sides of
a fraud proof.  A market maker quotes a bid and arms its switch; it signs a
ModifyOrder moving the bid, which a relayer (or the sequencer) holds.  The
switch fires: the maker's orders are dead by the order epoch it wrote, their
flags clear.  The relayer then submits the held modify to revive the quote
at its stale price and trade against it.  Python (process_modify_order_v4)
and L1 (onestep_modify.vy) must both refuse it with nothing changed, no
trade may take the dead quote, and a dishonest proposer's output that
applied the modify must lose its one-step (tests/unit/test_modify_order_epoch.py
has the engine's side)."""
from __future__ import annotations

import pytest

from onestep_support import BTC, run_both
from prover import fraud_vectors as fv
from prover.records import encode_item
from sequencer.core.records import ModifyOrder, PlaceOrder, ScheduledCancelAll, Trade
from sequencer.core.rules.triggers import DAY_MS
from sequencer.core.state import Account, OrderSchedule, get_order_epoch, is_order_open

pytestmark = pytest.mark.evm

A, B = fv.ADDRESSES[0], fv.ADDRESSES[1]
LOT = BTC.step_size
EXPIRY = fv.BLOCK_TIME + 600_000
QUOTE = fv.BTC_PRICE - 10**6


@pytest.fixture(scope="module")
def onestep(onestep_contract):
    return onestep_contract


def maker_state():
    """The maker (A) quoting a bid (nonce 20, seq 3) and a sell (nonce 22,
    seq 4), its switch due at the block; B funded; order count 5."""
    quote = PlaceOrder(A, fv.BTC, True, QUOTE, 20 * LOT, 10, 0, False, 20, EXPIRY, b"")
    ask = PlaceOrder(A, fv.BTC, False, fv.BTC_PRICE + 10**6, 20 * LOT, 10, 0, False, 22, EXPIRY, b"")
    state = fv.make_perps_state({A: Account(10**9, (3,)), B: Account(10**9, ())},
                                [fv.make_market(fv.BTC, fv.BTC_PRICE)], {},
                                {(A, 20): fv.make_order(quote, seq=3), (A, 22): fv.make_order(ask, seq=4)},
                                order_count=5)
    state.set_order_schedule(A, OrderSchedule(fv.BLOCK_TIME, 0, fv.BLOCK_TIME // DAY_MS, 0))
    state.commit(0)
    return state


HELD = fv.sign(ModifyOrder(A, 20, QUOTE + 10**6, 20 * LOT, 21, EXPIRY, b""), fv.KEYS[0])
"""The maker's modify of its bid, signed before the switch fires and held."""


def fire_switch(onestep):
    """The switch fired through both sides (they agree); the state after it."""
    state = maker_state()
    runner, _, result, (root, ok, _) = run_both(onestep, state, fv.open_block_ctx(state),
                                                encode_item(ScheduledCancelAll(A)))
    assert result.ok and (ok, root) == (True, runner.state_root)
    after = runner.state
    assert get_order_epoch(after, A, fv.BTC) == 5 and not after.orders[(A, 20)].cancelled
    assert not is_order_open(after, A, 20)
    return after


def test_the_held_modify_is_refused_on_both_sides_after_the_switch(onestep):
    """Pre: the maker's switch fired (its BTC epoch 5, its bid seq 3 with the
    flag clear).  Op: the relayer's held ModifyOrder.  Post: Python and L1
    refuse it, root unchanged, no replacement, the nonce unused."""
    state = fire_switch(onestep)
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, fv.open_block_ctx(state), encode_item(HELD))
    assert not result.ok and (ok, root) == (False, pre_root) and runner.state_root == pre_root
    assert (A, 21) not in runner.state.orders and 21 not in runner.state.accounts[A].nonces


def test_nothing_trades_against_the_dead_quote(onestep):
    """Pre: after the switch and the refused modify, B places a sell that
    would cross the maker's bid (the order placed last).  Op: a Trade naming
    the dead bid as maker, and one naming the replacement the modify would
    have placed.  Post: both refused on both sides, root unchanged."""
    state = fire_switch(onestep)
    runner, _, refused, _ = run_both(onestep, state, fv.open_block_ctx(state), encode_item(HELD))
    assert not refused.ok
    sell = fv.sign(PlaceOrder(B, fv.BTC, False, QUOTE - 10**6, 20 * LOT, 10, 1, False, 1, EXPIRY, b""), fv.KEYS[1])
    runner, _, placed, (root, ok, _) = run_both(onestep, runner.state, fv.open_block_ctx(runner.state),
                                                encode_item(sell))
    assert placed.ok and (ok, root) == (True, runner.state_root)
    for maker_nonce in (20, 21):
        state = runner.state
        trade = Trade(fv.BTC, A, maker_nonce, B, 1, QUOTE - 10**6, 10 * LOT)
        _, pre_root, result, (root, ok, _) = run_both(onestep, copy_state(state), fv.open_block_ctx(state),
                                                          encode_item(trade))
        assert not result.ok and (ok, root) == (False, pre_root)


def copy_state(state):
    from sequencer.core.state import State
    return State.from_tables(state.to_tables())


def test_a_dishonest_proposer_that_applied_the_held_modify_loses_its_one_step(onestep, monkeypatch):
    """Pre: after the switch.  Op: a dishonest proposer's rule (v3's: the
    flag only) applies the held modify and claims the root with the
    replacement live.  Post: L1, given the proposer's own witness, refuses
    the modify (root unchanged, not the claimed root); given the v3-shaped
    witness (no position opening) it reverts."""
    from sequencer.core import transition
    from sequencer.core.rules.orders import process_modify_order
    from sequencer.core.rules.table import get_rules
    state = fire_switch(onestep)
    version = fv.RULES.schema_version
    assert version == 4
    monkeypatch.setattr(transition, "RULE_TABLES", {version: {**get_rules(version), ModifyOrder: process_modify_order}})
    runner, pre_root, result, (root, ok, _) = run_both(onestep, copy_state(state), fv.open_block_ctx(state),
                                                       encode_item(HELD))
    assert result.ok and is_order_open(runner.state, A, 21)          # the dishonest claim
    assert runner.state_root != pre_root
    assert (ok, root) == (False, pre_root), "L1 applied the modify of a dead order"
    openings = [o.as_arg() for o in result.witness.openings]
    v3_shaped = openings[:4] + openings[5:]   # the position's opening left out
    with pytest.raises(Exception, match="witness"):
        onestep.functions.apply(pre_root, fv.open_block_ctx(state).as_arg(), encode_item(HELD), v3_shaped,
                                list(result.witness.nonces)).call()
