"""prover.trace: the one-step reference against its shared vectors, and the
item replay of an output against the node's own replay of the same Kafka
messages (same state root, same withdrawals root): mapping the log to items
changes no state."""
from __future__ import annotations

import msgspec
import pytest

from prover import fraud_vectors as fv
from prover.records import (PendingKind, compute_block_items, compute_records_root, decode_item,
                            decode_replay_item, derive_records_root, encode_data, Noop)
from prover.trace import TraceRunner, build_tree, compute_claim, run_items
from sequencer.core.commitment import encode_withdrawal
from prover.output import compute_withdrawals_root
from sequencer.core.encoding import encode_block, encode_record
from prover.hashing import keccak
from sequencer.core.records import Block, Deposit, ForcedClose
from sequencer.core.transition import apply_block_bytes

A, B, C, D = fv.ADDRESSES
T = fv.BLOCK_TIME


def test_onestep_vectors_are_current():
    assert fv.targets()[fv.ONESTEP_PATH] == fv.ONESTEP_PATH.read_text()


make_messages = fv.make_trace_messages
genesis = fv.make_trace_genesis


def test_item_replay_matches_the_node_replay():
    messages = make_messages()
    node_state = genesis()
    for message in messages:
        assert apply_block_bytes(node_state, message, fv.RULES).applied
    runner = TraceRunner(genesis(), fv.RULES)
    items = [item for message in messages for item in compute_block_items(message)]
    outcomes = [runner.step(item).ok for item in items]
    assert runner.state_root == build_tree(node_state).root
    assert runner.ctx.block_open == 0
    assert runner.ctx.withdrawals.root() == compute_withdrawals_root(
        [encode_withdrawal(w) for w in node_state.withdrawals])
    assert runner.ctx.withdrawals.count == len(node_state.withdrawals) == 3
    # receipts: block 1 all ok; block 2 two bad transfers, the NOOP, the undecodable record and the
    # out-of-order deposit fail; both forced withdrawals are served (D's with nothing); block 3:
    # C withdraws all it has left, so its transfer fails
    assert outcomes == [True, True, True, True, True,
                        True, False, False, False, True, True, False, False, True,
                        True, True, False, True]
    assert isinstance(decode_item(items[8]), Noop) and isinstance(decode_item(items[12]), Noop)


def test_claims_and_records_root_of_a_trace():
    items = [item for message in make_messages() for item in compute_block_items(message)]
    claims = run_items(TraceRunner(genesis(), fv.RULES), items)
    assert len(claims) == len(items) + 1 and claims[-1] != claims[0]
    start = TraceRunner(genesis(), fv.RULES)
    assert claims[0] == compute_claim(start.state_root, start.ctx)
    assert derive_records_root(encode_data(items)) == (compute_records_root(items), len(items))


def test_every_record_kind_is_posted_packed_and_a_pending_tag_is_refused():
    """Every record kind has a packed item (ForcedClose's carries its market in
    the inbox entry's 32-byte amount); a RECORD item of a tag with no one-step
    (22, kept for an explicit auction start) is refused by the one-step's
    reference as pending and replays as a NOOP."""
    raw = encode_record(ForcedClose(0, A, 1))
    items = compute_block_items(encode_block(Block(1, b"\x00" * 32, T, (msgspec.Raw(raw),))))
    assert items[1] == bytes((2, 50)) + (0).to_bytes(8, "big") + A + (1).to_bytes(32, "big")
    assert decode_item(items[1]) == decode_replay_item(items[1]) == ForcedClose(0, A, 1)
    reserved = bytes((2, 22)) + b"\x00" * 24
    with pytest.raises(PendingKind):
        decode_item(reserved)
    assert decode_replay_item(reserved) == Noop(keccak(reserved))


def test_an_inbox_record_the_bridge_cannot_write_is_refused():
    bad = Deposit(0, A + b"\x00", 5)
    with pytest.raises(ValueError, match="no inbox entry"):
        compute_block_items(encode_block(Block(1, b"\x00" * 32, T, (msgspec.Raw(encode_record(bad)),))))


def test_build_tree_commits_every_state_table():
    """The trace's tree of a whole state (a game starts from the previous
    output's state) is the node's tree of the same state, leaf for leaf: an
    omitted table (the auctions were once) would make an honest proposer's
    trace start from a root its own output never had."""
    from prover.tree import SparseMerkleTree
    from sequencer.core.commitment import compute_dirty_leaves
    from sequencer.core.state import (Auction, OrderSchedule, Position, State, Trigger, VaultShare)
    state = genesis()
    state.set_position(A, fv.BTC, Position(size=10_000, cost=600_000_000, margin=60_000_000, funding_snapshot=0))
    state.set_vault_share(B, VaultShare(shares=5, unlock_ms=T))
    state.set_trigger(A, 7, Trigger(params_hash=b"\x01" * 32, market=fv.BTC, is_buy=False, trigger_price=1,
                                    price=1, size=1, leverage=1, tpsl=2, reduce_only=True, placed_ms=T))
    state.set_order_schedule(A, OrderSchedule(cancel_at_ms=T + 10_000, open_triggers=1, cancel_day=0, cancels=1))
    state.set_auction(A, fv.BTC, Auction(size=5_000, start_price=2, end_price=1, start_ms=T, end_ms=T + 60_000))
    incremental = SparseMerkleTree()
    incremental.update(compute_dirty_leaves(genesis()))
    incremental.update(compute_dirty_leaves(state))
    whole = build_tree(State.from_tables(state.to_tables()))
    assert whole.root == incremental.root
    state.set_auction(A, fv.BTC, None)
    incremental.update(compute_dirty_leaves(state))
    assert whole.root != incremental.root
