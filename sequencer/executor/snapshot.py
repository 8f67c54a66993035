"""Snapshot codecs: a ``Chain`` to bytes and back (nothing here touches a file;
the node writes and reads them, the verifier keeps them in memory).

Two forms:
- ``encode_snapshot``/``decode_snapshot``: the whole chain in one blob (state,
  tree, receipts, block index): the verifier's rollback point, and node
  snapshots written before the index file existed (format 1);
- the node's form (format 2): state, tree and applied offset, plus the length
  of an append-only index file whose frames hold the receipts and block index
  entries (``encode_index_frame``/``decode_index``).
"""
from __future__ import annotations

import struct

import msgspec

from prover.tree import SparseMerkleTree
from sequencer.core.records import Receipt
from sequencer.core.state import Auction, Account, Globals, Market, Order, Position, State, VaultShare, Withdrawal
from sequencer.core.state import OrderSchedule, Trigger
from sequencer.core.transition import Context
from sequencer.executor.chain import BlockInfo, Chain

SNAPSHOT_FORMAT = 1


class Snapshot(msgspec.Struct, array_like=True):
    format: int
    next_offset: int
    state: bytes
    tree: bytes
    receipts: list[Receipt]
    blocks: list[tuple[int, int, bytes, bytes | None, int, int]]


class _Tables(msgspec.Struct):
    """Typed form of State.to_tables() for snapshot decoding."""
    accounts: list[tuple[bytes, Account]]
    positions: list[tuple[tuple[bytes, int], Position]]
    orders: list[tuple[tuple[bytes, int], Order]]
    markets: list[tuple[int, Market]]
    globals: Globals
    withdrawals: list[Withdrawal]
    triggers: list[tuple[tuple[bytes, int], Trigger]] = msgspec.field(default_factory=list)
    order_schedules: list[tuple[bytes, OrderSchedule]] = msgspec.field(default_factory=list)
    """Absent from snapshots written before trigger orders and the dead-man's switch."""
    vault_shares: list[tuple[bytes, VaultShare]] = msgspec.field(default_factory=list)
    """Absent from snapshots written before the backstop vault."""
    auctions: list[tuple[tuple[bytes, int], Auction]] = msgspec.field(default_factory=list)
    """Absent from snapshots written before the liquidation auction."""

_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)
_tables_decoder = msgspec.msgpack.Decoder(_Tables)
_tables_json_decoder = msgspec.json.Decoder(_Tables)


def encode_state(state) -> bytes:
    """The state tables as bytes: msgpack, or JSON when an integer leaves
    msgpack's range (-2**63 .. 2**64-1).  The rules keep amounts and totals in
    64 bits (deposits credit only while the total stays within 2**63-1), but a
    sum over accounts (open interest, the fee pool) is not bounded by a single
    record; a snapshot must never fail on a state the rules reached, so such a
    state is written exactly, in the slower form that carries any integer.  A
    JSON object starts with "{" (0x7b), a positive fixint in msgpack, never
    the start of the tables' map, so ``decode_state`` tells the two apart."""
    tables = _Tables(**state.to_tables())
    try:
        return _snapshot_encoder.encode(tables)
    except OverflowError:
        return msgspec.json.encode(tables)


def decode_state(data: bytes) -> _Tables:
    if data[:1] == b"{":
        return _tables_json_decoder.decode(data)
    return _tables_decoder.decode(data)


def encode_snapshot(chain: Chain) -> bytes:
    chain.finish_catch_up()
    state_bytes = encode_state(chain.state)
    blocks = [(i.number, i.offset, i.hash, i.state_root, i.timestamp_ms, i.tx_count)
              for i in chain.block_infos.values()]
    return _snapshot_encoder.encode(Snapshot(SNAPSHOT_FORMAT, chain.next_offset, state_bytes,
                                             chain.tree.to_bytes(), list(chain.receipts.values()), blocks))


def decode_snapshot(data: bytes, ctx: Context) -> Chain:
    """A whole chain from ``encode_snapshot`` bytes (the verifier's in-memory
    snapshots, and node snapshots written before the index file)."""
    snap = _snapshot_decoder.decode(data)
    if snap.format != SNAPSHOT_FORMAT:
        raise ValueError(f"snapshot format {snap.format}, this node reads {SNAPSHOT_FORMAT}")
    chain = _chain_from(snap.state, snap.tree, snap.next_offset, ctx)
    chain.receipts = {r.hash: r for r in snap.receipts}
    chain.block_infos = {b[0]: BlockInfo(*b) for b in snap.blocks}
    return chain


def _chain_from(state_bytes: bytes, tree_bytes: bytes, next_offset: int, ctx: Context) -> Chain:
    tables = decode_state(state_bytes)
    state = State.from_tables({f: getattr(tables, f) for f in tables.__struct_fields__})
    chain = Chain(state, ctx, tree=SparseMerkleTree.from_bytes(tree_bytes))
    chain.next_offset = next_offset
    return chain


# --- node snapshots: state + tree, with the receipt index in an append-only file --------
#
# A node's snapshot holds the state, the tree and the applied offset, plus the
# length its index file had when it was written.  The receipts and block index
# entries (which grow with history) go to that index file as frames appended
# once each, before the snapshot that covers them.  So a snapshot costs the same
# at block 10 million as at block 10.  On load the index file is cut back to the
# length the snapshot names (dropping a frame whose snapshot never landed, or a
# torn write) and read whole; replay from the offset re-derives the rest.

NODE_SNAPSHOT_FORMAT = 2
_FRAME_HEADER = struct.Struct("!I")


class NodeSnapshot(msgspec.Struct, array_like=True):
    format: int
    next_offset: int
    state: bytes
    tree: bytes
    index_bytes: int
    """The index file's length this snapshot goes with."""


class IndexFrame(msgspec.Struct, array_like=True, gc=False):
    receipts: list[Receipt]
    blocks: list[BlockInfo]


class _Format(msgspec.Struct, array_like=True):
    format: int


_node_snapshot_decoder = msgspec.msgpack.Decoder(NodeSnapshot)
_frame_decoder = msgspec.msgpack.Decoder(IndexFrame)


def get_snapshot_format(data: bytes) -> int:
    return msgspec.msgpack.decode(data, type=_Format).format


def encode_node_state(chain: Chain) -> tuple[bytes, bytes]:
    """(state bytes, tree bytes) of a node snapshot, taken at a block boundary."""
    chain.finish_catch_up()
    return encode_state(chain.state), chain.tree.to_bytes()


def encode_node_snapshot(state_bytes: bytes, tree_bytes: bytes, next_offset: int, index_bytes: int) -> bytes:
    return _snapshot_encoder.encode(NodeSnapshot(NODE_SNAPSHOT_FORMAT, next_offset, state_bytes, tree_bytes,
                                                 index_bytes))


def encode_index_frame(chain: Chain) -> tuple[bytes, int, int]:
    """(frame, receipts taken, blocks taken): what was applied since the last frame.
    The caller drops the taken entries with ``mark_indexed`` once the frame is on disk."""
    chain.finish_catch_up()  # the head's root is in its BlockInfo
    receipts, numbers = chain.unindexed_receipts, chain.unindexed_blocks
    taken = (len(receipts), len(numbers))
    if not receipts and not numbers:
        return b"", 0, 0
    payload = _snapshot_encoder.encode(IndexFrame(receipts, [chain.block_infos[n] for n in numbers]))
    return _FRAME_HEADER.pack(len(payload)) + payload, *taken


def mark_indexed(chain: Chain, receipts: int, blocks: int) -> None:
    del chain.unindexed_receipts[:receipts]
    del chain.unindexed_blocks[:blocks]


def decode_index(data: bytes) -> tuple[list[IndexFrame], int]:
    """The whole frames at the start of ``data`` and their length (a torn last
    frame is left out)."""
    frames, at = [], 0
    while at + _FRAME_HEADER.size <= len(data):
        (size,) = _FRAME_HEADER.unpack_from(data, at)
        end = at + _FRAME_HEADER.size + size
        if end > len(data):
            break
        try:
            frames.append(_frame_decoder.decode(data[at + _FRAME_HEADER.size:end]))
        except msgspec.DecodeError:
            break
        at = end
    return frames, at


def decode_node_snapshot(data: bytes, index: bytes, ctx: Context) -> tuple[Chain, int, int]:
    """The chain of a node snapshot and its index file's bytes; returns it with the
    index length it read and the length the snapshot names (less read: the index
    file lost frames, and old receipts are missing)."""
    snap = _node_snapshot_decoder.decode(data)
    if snap.format != NODE_SNAPSHOT_FORMAT:
        raise ValueError(f"node snapshot format {snap.format}, this node reads {NODE_SNAPSHOT_FORMAT}")
    chain = _chain_from(snap.state, snap.tree, snap.next_offset, ctx)
    frames, length = decode_index(index[:snap.index_bytes])
    receipts, blocks = chain.receipts, chain.block_infos
    for frame in frames:
        for receipt in frame.receipts:
            receipts.setdefault(receipt.hash, receipt)
        for info in frame.blocks:
            blocks[info.number] = info
    return chain, length, snap.index_bytes
