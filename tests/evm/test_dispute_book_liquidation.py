"""A dispute game that ends on a book-first Liquidate (py-evm).

The trading session of test_onestep_session (a real exchange: signed orders
matched by the block builder, oracle prices, a leveraged long liquidated into
the book, its maker filled) becomes blocks, the blocks one output proposed
through the bridge (genesis: the session's own state), and games are played
on it by l1_bridge.dispute.GamePlayer. The wrong claim comes first right after
the Liquidate, so the bisection ends on that item and dispute.vy's step
re-executes it for real: dispute -> onestep_liquidate -> onestep_book. An
honest challenger wins against the wrong output (deleted, the proposer bond
slashed); a challenger lying from the same position loses against the honest
output. The gas of the step transaction is printed (docs/fraud-proofs.md).
"""
from __future__ import annotations

import pytest

from game_env import World
from l1_bridge.dispute import LocalTrace
from prover.records import decode_replay_item
from sequencer.core.records import Liquidate
from session_world import (get_session_items, lose_as_wrong_challenger, make_session_world, replay_session,
                           snapshot_world, win_as_honest_challenger)

pytestmark = pytest.mark.evm


@pytest.fixture(scope="module")
def session():
    """The session's items, its genesis and rules, and the position of its book-first Liquidate."""
    return get_session_items(lambda record: isinstance(record, Liquidate) and bool(record.makers))


@pytest.fixture(scope="module")
def honest(session) -> LocalTrace:
    return replay_session(session)


@pytest.fixture(scope="module")
def world_once(honest) -> World:
    return make_session_world(honest)


@pytest.fixture
def world(world_once):
    yield from snapshot_world(world_once)


def test_the_liquidation_fills_makers_in_the_book(session, honest):
    """The item the games end on: a Liquidate naming makers whose orders it fills."""
    _, items, at = session
    record = decode_replay_item(items[at])
    before = honest.checkpoints[0].copy()
    for item in items[:at]:
        before.step(item)
    after = before.copy()
    result = after.step(items[at])
    assert result.ok and not honest.pending
    assert record.makers
    for key in record.makers:
        assert after.state.orders[key].filled > before.state.orders[key].filled


def test_an_honest_challenger_wins_on_the_liquidation_step(world, session, honest):
    _, items, at = session
    gas = win_as_honest_challenger(world, honest, items, at)
    print(f"step on the book-first Liquidate (item {at}): {gas} gas")


def test_a_wrong_challenger_loses_on_the_liquidation_step(world, session, honest):
    _, items, at = session
    gas = lose_as_wrong_challenger(world, honest, items, at)
    print(f"step on the book-first Liquidate (item {at}): {gas} gas")
