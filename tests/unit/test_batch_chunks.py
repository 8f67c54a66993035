"""The posted data of an output (docs/fraud-proofs.md): trace items framed and
cut into chunks of one transaction each, their chained data hash, the replay
of the items giving the node's own state, and the checkpointer's fault
injection setting."""
from __future__ import annotations

import pytest

from l1_bridge.checkpointer import FAULT_ENV, corrupt_state_root, get_fault_output
from prover import fraud_vectors as fv
from prover.hashing import EMPTY, keccak
from prover.records import (DataError, compute_block_items, compute_data_hash, decode_data, decode_replay_item,
                            encode_data, split_data)
from prover.trace import TraceContext, apply_item
from sequencer.core.transition import apply_block_bytes
from sequencer.executor.output import Batch, OutputFields, decode_batch, encode_batch

MESSAGES = fv.make_trace_messages(extra_blocks=40)
ITEMS = [item for m in MESSAGES for item in compute_block_items(m)]


@pytest.mark.parametrize("max_bytes", [200, 1_000, 120_000])
def test_chunks_are_whole_frames_within_the_limit_and_give_the_items_back(max_bytes):
    chunks = split_data(ITEMS, max_bytes)
    assert all(0 < len(c) <= max_bytes for c in chunks)
    assert [item for c in chunks for item in decode_data(c)] == ITEMS
    assert b"".join(chunks) == encode_data(ITEMS)
    assert encode_batch(MESSAGES, max_bytes) == Batch(tuple(chunks))
    assert decode_batch(chunks) == ITEMS


def test_an_empty_output_is_one_empty_chunk():
    assert split_data([]) == [b""] and decode_batch([b""]) == []


def test_the_data_hash_chains_the_chunks_and_tells_their_cuts_apart():
    a, b = split_data(ITEMS, 1_000)[:2]
    assert compute_data_hash([a]) == keccak(EMPTY + keccak(a)) != keccak(a)
    assert compute_data_hash([a, b]) == keccak(compute_data_hash([a]) + keccak(b))
    assert compute_data_hash([a, b]) != compute_data_hash([a + b])  # the same bytes cut elsewhere
    # a single chunk made of the two chunk hashes is not the two chunks (no second preimage by regrouping)
    assert compute_data_hash([keccak(a) + keccak(b)]) != compute_data_hash([a, b])


def test_a_chunk_cut_inside_a_frame_does_not_parse():
    data = encode_data(ITEMS)
    with pytest.raises(DataError):
        decode_batch([data[:101], data[101:]])


def test_replaying_the_items_gives_the_state_the_blocks_give():
    """L1Replay's transition (apply_item over decode_replay_item) against the
    node's (apply_block_bytes over the Kafka messages)."""
    by_items, by_blocks = fv.make_trace_genesis(), fv.make_trace_genesis()
    ctx = TraceContext()
    for item in ITEMS:
        _, ctx = apply_item(by_items, fv.RULES, ctx, decode_replay_item(item))
    for m in MESSAGES:
        assert apply_block_bytes(by_blocks, m, fv.RULES).applied
    assert ctx.block_open == 0 and by_items.to_tables() == by_blocks.to_tables()


def test_the_fault_injection_setting(monkeypatch):
    monkeypatch.delenv(FAULT_ENV, raising=False)
    assert get_fault_output() is None and get_fault_output(4) == 4
    monkeypatch.setenv(FAULT_ENV, "12")
    assert get_fault_output() == 12 and get_fault_output(3) == 3
    for bad in ("x", "0", "-2"):
        monkeypatch.setenv(FAULT_ENV, bad)
        with pytest.raises(ValueError, match=FAULT_ENV):
            get_fault_output()
    fields = OutputFields(keccak(b"root"), EMPTY, keccak(b"block"), 3, keccak(b"inbox"), keccak(b"data"))
    wrong = corrupt_state_root(fields)
    assert wrong.state_root != fields.state_root and wrong[1:] == fields[1:]
