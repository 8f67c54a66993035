"""The node's receipt index (sequencer.executor.snapshot): frames appended once per
snapshot, a torn tail left out, and a node snapshot that holds no receipts."""
from __future__ import annotations

from perps_support import CTX
from sequencer.core.encoding import encode_block, make_block
from sequencer.executor.snapshot import (NODE_SNAPSHOT_FORMAT, decode_index, decode_node_snapshot,
                                         encode_index_frame, encode_node_snapshot, encode_node_state,
                                         get_snapshot_format, mark_indexed)
from sequencer.executor.chain import Chain
from sequencer.executor.genesis import build_genesis


def make_chain() -> Chain:
    chain = Chain(build_genesis([(b"\x01" * 20, 10**9)]), CTX)
    chain.track_index = True
    return chain


def apply_empty_block(chain: Chain) -> None:
    g = chain.state.globals
    message = encode_block(make_block(g.block_number + 1, g.block_hash, g.timestamp_ms + 1, []))
    assert chain.apply_message(chain.next_offset, message).applied


def test_frames_carry_each_receipt_and_block_once_and_a_torn_tail_is_left_out():
    chain = make_chain()
    for _ in range(3):
        apply_empty_block(chain)
    chain.apply_message(chain.next_offset, b"not a block")  # a failed receipt, no block
    first, receipts, blocks = encode_index_frame(chain)
    assert (receipts, blocks) == (1, 3)
    mark_indexed(chain, receipts, blocks)
    assert encode_index_frame(chain) == (b"", 0, 0)
    apply_empty_block(chain)
    second, receipts, blocks = encode_index_frame(chain)
    assert (receipts, blocks) == (0, 1)
    frames, length = decode_index(first + second + second[:7])
    assert length == len(first) + len(second)
    assert [len(f.blocks) for f in frames] == [3, 1] and len(frames[0].receipts) == 1
    assert frames[1].blocks[0] == chain.block_infos[4] and frames[1].blocks[0].state_root is not None


def test_a_node_snapshot_holds_no_receipts_and_loads_them_from_the_index():
    chain = make_chain()
    for _ in range(2):
        apply_empty_block(chain)
    chain.apply_message(chain.next_offset, b"garbage")
    frame, _, _ = encode_index_frame(chain)
    state_bytes, tree_bytes = encode_node_state(chain)
    data = encode_node_snapshot(state_bytes, tree_bytes, chain.next_offset, len(frame))
    assert get_snapshot_format(data) == NODE_SNAPSHOT_FORMAT
    assert len(data) < len(state_bytes) + len(tree_bytes) + 64
    loaded, length, expected = decode_node_snapshot(data, frame + b"\x00\x00\x01", CTX)
    assert length == expected == len(frame)
    assert loaded.receipts == chain.receipts and loaded.block_infos == chain.block_infos
    assert loaded.state_root == chain.state_root and loaded.next_offset == chain.next_offset
    assert not loaded.track_index and loaded.unindexed_receipts == []


def test_an_index_that_lost_frames_is_reported_short():
    chain = make_chain()
    apply_empty_block(chain)
    frame, _, _ = encode_index_frame(chain)
    state_bytes, tree_bytes = encode_node_state(chain)
    data = encode_node_snapshot(state_bytes, tree_bytes, chain.next_offset, len(frame))
    loaded, length, expected = decode_node_snapshot(data, frame[:-1], CTX)
    assert (length, expected) == (0, len(frame)) and loaded.block_infos == {}
    assert loaded.state_root == chain.state_root  # the state itself is whole
