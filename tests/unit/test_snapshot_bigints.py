"""Totals past 64 bits on the L2 side (issue 11, attack 7): the snapshot codecs
carry any integer the state can hold (msgpack when it fits, else exactly in
JSON), so no state the rules reach makes a snapshot raise; the deposit rule
keeps the deposits ever credited within 2**63 - 1."""
from __future__ import annotations

import msgspec
from hypothesis import given, settings, strategies as st

from perps_support import ADDR, CTX
from sequencer.core.records import Deposit
from sequencer.core.state import Account, Market, Position, State, Withdrawal
from sequencer.core.presets import MAX_INT64
from sequencer.core.transition import apply_record, compute_genesis_state
from sequencer.executor.chain import Chain
from sequencer.executor.snapshot import (decode_node_snapshot, decode_snapshot, encode_node_snapshot,
                                         encode_node_state, encode_snapshot)

SIGNED = st.integers(min_value=-2**200, max_value=2**200)
UNSIGNED = st.integers(min_value=0, max_value=2**200)
"""Far past any total the rules can reach; unsigned where the state commitment
holds the field as a uint256."""


def state_with(total: int, insurance: int, fee_pool: int, collateral: int, interest: int, cost: int) -> State:
    state = compute_genesis_state([(ADDR["alice"], 1)])
    state.set_account(ADDR["bob"], Account(collateral=collateral))
    state.set_position(ADDR["bob"], 1, Position(size=interest, cost=cost, margin=abs(collateral)))
    state.set_market(Market(id=1, open_interest=interest, oracle_price=1))
    state.append_withdrawal(Withdrawal(0, ADDR["bob"], total, 1))
    g = state.globals
    state.set_globals(msgspec.structs.replace(g, total_deposited=total, total_withdrawn=total,
                                              insurance_fund=insurance, fee_pool=fee_pool))
    state.commit(0)
    return state


def round_trips(state: State) -> None:
    chain = Chain(state, CTX)
    tables = state.to_tables()
    assert decode_snapshot(encode_snapshot(chain), CTX).state.to_tables() == tables
    state_bytes, tree_bytes = encode_node_state(chain)
    restored, _, _ = decode_node_snapshot(encode_node_snapshot(state_bytes, tree_bytes, 0, 0), b"", CTX)
    assert restored.state.to_tables() == tables and restored.state_root == chain.state_root


def test_totals_past_64_bits_round_trip_exactly():
    round_trips(state_with(2**64 + 5, 2**70, 2**65 + 1, 2**64, 2**66, -2**64 - 3))


def test_an_ordinary_state_stays_msgpack():
    chain = Chain(state_with(10**12, 5, 7, 10**6, 10**8, -10**9), CTX)
    state_bytes, _ = encode_node_state(chain)
    assert state_bytes[:1] != b"{"
    round_trips(chain.state)


@settings(max_examples=60, deadline=None)
@given(UNSIGNED, UNSIGNED, UNSIGNED, UNSIGNED, UNSIGNED, SIGNED)
def test_no_integer_in_the_state_makes_a_snapshot_raise(total, insurance, fee_pool, collateral, interest, cost):
    state = state_with(total, insurance, fee_pool, collateral, interest, cost)
    chain = Chain(state, CTX)
    tables = state.to_tables()
    assert decode_snapshot(encode_snapshot(chain), CTX).state.to_tables() == tables


def test_deposits_stop_crediting_before_the_total_leaves_63_bits():
    state = compute_genesis_state([])
    assert apply_record(state, Deposit(0, ADDR["alice"], MAX_INT64 - 10), 0, CTX) is None
    assert apply_record(state, Deposit(1, ADDR["bob"], 11), 0, CTX) is None  # takes its place, credits nothing
    assert state.globals.total_deposited == MAX_INT64 - 10 and ADDR["bob"] not in state.accounts
    assert state.globals.inbox_count == 2
    round_trips(state)
