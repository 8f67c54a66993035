"""A dispute game that ends on a Deleverage record (rules v3, py-evm).

The trading session of test_onestep_session (a real exchange: signed orders
matched by the block builder, oracle prices; an ETH long gone bankrupt with
no bid in the book, so the engine writes a Deleverage naming the profitable
short, the insurance fund paying the bad debt) becomes blocks, the blocks one
output proposed through the bridge (genesis: the session's own state), and
games are played on it by l1_bridge.dispute.GamePlayer. The wrong claim comes
first right after the Deleverage, so the bisection ends on that item and
dispute.vy's step re-executes it for real: dispute -> onestep -> onestep_ladder.
An honest challenger wins against the wrong output (deleted, the proposer
bond slashed); a challenger lying from the same position loses against the
honest output. The same session with the L1 inbox's forced close of bob's BTC
short (requested on the bridge) leaves the fund holding it, and the engine
unwinds it at once: a Deleverage whose account is the fund (its position
read and written, no account) naming the three BTC longs; a game there ends
on that record. The gas of the step transaction is printed
(docs/fraud-proofs.md).
"""
from __future__ import annotations

import pytest
from web3 import Web3

from bridge_env import MARKETS
from game_env import World
from l1_bridge.dispute import LocalTrace
from prover.records import decode_replay_item
from sequencer.core.records import Deleverage
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from session_world import (get_session_items, lose_as_wrong_challenger, make_session_world, replay_session,
                           snapshot_world, win_as_honest_challenger)
from unit.perps_support import ADDR, BTC, ETH, KEYS

pytestmark = pytest.mark.evm

LONGS = ("alice", "carol", "dave")
"""The BTC longs the fund's unwind names (the engine's order)."""


@pytest.fixture(scope="module")
def session():
    """The session's items, its genesis and rules, and the position of its first Deleverage."""
    return get_session_items(lambda record: isinstance(record, Deleverage))


@pytest.fixture(scope="module")
def honest(session) -> LocalTrace:
    return replay_session(session)


@pytest.fixture(scope="module")
def forced_session():
    """With bob's forced close: the position of the Deleverage that unwinds the fund."""
    return get_session_items(lambda record: isinstance(record, Deleverage) and record.account == INSURANCE_ADDRESS,
                             forced_close=True)


@pytest.fixture(scope="module")
def forced_honest(forced_session) -> LocalTrace:
    return replay_session(forced_session)


@pytest.fixture(scope="module")
def world_once(honest) -> World:
    """Bob sends his forced close to the bridge himself."""
    return make_session_world(honest, markets=MARKETS, l1_keys=[KEYS["bob"]])


@pytest.fixture
def world(world_once):
    yield from snapshot_world(world_once)


def step_around(trace: LocalTrace, items: list[bytes], at: int) -> tuple:
    """The replay's checkpoints right before and right after item ``at``, and its result."""
    before = trace.checkpoints[0].copy()
    for item in items[:at]:
        before.step(item)
    after = before.copy()
    return before, after, after.step(items[at])


def test_the_deleverage_closes_against_the_named_short(session, honest):
    """The item the games end on: carol's bankrupt ETH long closed at the mark
    against erin's short, the one it names; the fund pays the bad debt."""
    _, items, at = session
    record = decode_replay_item(items[at])
    assert record == Deleverage(ADDR["carol"], ETH, (ADDR["erin"],))
    before, after, result = step_around(honest, items, at)
    assert result.ok and not honest.pending
    for name in ("carol", "erin"):
        assert before.state.positions[(ADDR[name], ETH)].size and not after.state.positions[(ADDR[name], ETH)].size
    assert after.state.positions[(ADDR["carol"], ETH)].order_epoch == before.state.globals.order_count
    assert after.state.globals.insurance_fund < before.state.globals.insurance_fund      # the bad debt
    assert (INSURANCE_ADDRESS, ETH) not in after.state.positions                          # paid, not taken over


def test_the_fund_unwinds_the_forced_close_against_the_longs(forced_session, forced_honest):
    """The item the forced session's game ends on: right after the ForcedClose
    handed it bob's 0.2 BTC short, the fund's short closes against alice's,
    carol's and dave's longs, all of it, at the mark it took it over at."""
    _, items, at = forced_session
    record = decode_replay_item(items[at])
    assert record == Deleverage(INSURANCE_ADDRESS, BTC, tuple(ADDR[name] for name in LONGS))
    assert type(decode_replay_item(items[at - 1])).__name__ == "ForcedClose"
    before, after, result = step_around(forced_honest, items, at)
    assert result.ok and not forced_honest.pending
    assert before.state.positions[(INSURANCE_ADDRESS, BTC)].size == -20 * 10**6
    taken = sum(before.state.positions[(ADDR[name], BTC)].size for name in LONGS)
    assert taken == 20 * 10**6                                           # the longs take the whole short
    fund = after.state.positions.get((INSURANCE_ADDRESS, BTC))
    assert fund is None or fund.size == 0
    for name in LONGS:
        position = after.state.positions.get((ADDR[name], BTC))
        assert position is None or position.size == 0
    assert after.state.globals.insurance_fund >= before.state.globals.insurance_fund  # at the mark, not below it


def test_an_honest_challenger_wins_on_the_deleverage_step(world, session, honest):
    _, items, at = session
    gas = win_as_honest_challenger(world, honest, items, at)
    print(f"step on the Deleverage (item {at}): {gas} gas")


def test_a_wrong_challenger_loses_on_the_deleverage_step(world, session, honest):
    _, items, at = session
    gas = lose_as_wrong_challenger(world, honest, items, at)
    print(f"step on the Deleverage (item {at}): {gas} gas")


def test_an_honest_challenger_wins_on_the_fund_unwind(world, forced_session, forced_honest, honest):
    """Bob's forced close requested on the bridge (the output's inbox entry):
    the fund took his short over; its unwind (the fund as the record's account)
    is the item the game ends on."""
    _, items, at = forced_session
    record = decode_replay_item(items[at])
    assert record.account == INSURANCE_ADDRESS and record.market == BTC and not forced_honest.pending
    assert forced_honest.checkpoints[0].state_root == honest.checkpoints[0].state_root  # the same genesis
    assert world.client.force_close(Web3.to_checksum_address("0x" + ADDR["bob"].hex()), BTC) == 0
    gas = win_as_honest_challenger(world, forced_honest, items, at)
    print(f"step on the Deleverage unwinding the fund (item {at}): {gas} gas")
