"""The executor's projection of the log: state, state tree, receipts and the
block index, stamped with the log offset they were derived up to.

``Chain`` is synchronous and does no I/O; the node feeds it Kafka messages
(follower, replay) or finished blocks (the sequencer that built them).  The
log is the truth: everything here can be rebuilt by replaying it.
"""
from __future__ import annotations

import struct
from collections import OrderedDict
from typing import Callable

import msgspec

from prover.smt import SparseMerkleTree
from sequencer.core.commitment import compute_dirty_leaves
from sequencer.core.presets import SCHEMA_VERSION
from sequencer.core.records import Receipt
from sequencer.core.state import Account, Globals, Market, Order, Position, State, Withdrawal
from sequencer.core.transition import BlockResult, Context, apply_block_bytes


class UnsupportedSchema(Exception):
    """A block written with a newer log schema than this executor understands.
    Skipping it would fork the state, so the executor stops (upgrade it)."""
    retriable = False


class BlockInfo(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The index entry of one applied block (GET /v1/blocks, receipts' stateRoot).
    gc=False: one per block for the node's lifetime, never in a cycle."""
    number: int
    offset: int
    hash: bytes
    state_root: bytes | None
    """None for a block applied during a fast catch-up whose root was not computed."""
    timestamp_ms: int
    tx_count: int


class Chain:
    RECENT_BLOCKS = 2048
    """Block messages kept in memory for GET /v1/blocks; older ones are read back from Kafka."""

    def __init__(self, state: State, ctx: Context, tree: SparseMerkleTree | None = None) -> None:
        self.state = state
        self.ctx = ctx
        self.tree = tree if tree is not None else SparseMerkleTree()
        self.next_offset = 0
        """The next log offset to apply (everything below it is reflected here)."""
        self.receipts: dict[bytes, Receipt] = {}
        self.block_infos: dict[int, BlockInfo] = {}
        self.recent_messages: OrderedDict[int, bytes] = OrderedDict()
        self.listeners: list[Callable[[BlockInfo | None, BlockResult], None]] = []
        self.root_interval = 1
        """Compute the state root every this many applied blocks.  1 (live) gives
        every block its root; a catch-up replay may raise it, computing one root
        over the union of the changes (see docs/operations.md), then
        ``finish_catch_up`` roots the head."""
        self._unrooted = 0
        self.track_index = False
        """The node sets this: keep ``unindexed_*`` for its on-disk index."""
        self.unindexed_receipts: list[Receipt] = []
        self.unindexed_blocks: list[int] = []
        """Receipts and block numbers applied since the node last appended them to its
        on-disk index (see ``encode_index_frame``)."""
        if tree is None:
            self.compute_state_root()

    # --- commitment -----------------------------------------------------
    def compute_state_root(self) -> bytes:
        changes = compute_dirty_leaves(self.state)
        if changes:
            self.tree.update(changes)
        return self.tree.root

    @property
    def state_root(self) -> bytes:
        return self.tree.root

    @property
    def head_number(self) -> int:
        return self.state.globals.block_number

    # --- applying -------------------------------------------------------
    def apply_message(self, offset: int, message: bytes, schema: int | None = None) -> BlockResult:
        """Apply one committed Kafka message at ``offset`` (follower and replay)."""
        if offset < self.next_offset:
            raise ValueError(f"offset {offset} was already applied (next is {self.next_offset})")
        if schema is not None and schema > SCHEMA_VERSION:
            raise UnsupportedSchema(f"message at offset {offset} has log schema {schema}; "
                                    f"this executor supports up to {SCHEMA_VERSION}")
        result = apply_block_bytes(self.state, message, self.ctx)
        info = None
        if result.applied:
            info = self.record_block(offset, message, result)
        else:
            for receipt in result.receipts:
                self.receipts.setdefault(receipt.hash, receipt)
            if self.track_index:
                self.unindexed_receipts += result.receipts
        self.next_offset = offset + 1
        self.notify(info, result)
        return result

    def record_block(self, offset: int, message: bytes, result: BlockResult) -> BlockInfo:
        """Index a block already applied to ``state`` (by apply_message or by the builder)."""
        block = result.block
        assert block is not None
        self._unrooted += 1
        if self._unrooted >= self.root_interval:
            root = self.compute_state_root()
            self._unrooted = 0
        else:
            root = None
        info = BlockInfo(block.number, offset, result.block_hash, root, block.timestamp_ms, len(block.records))
        self.block_infos[block.number] = info
        self.recent_messages[block.number] = message
        while len(self.recent_messages) > self.RECENT_BLOCKS:
            self.recent_messages.popitem(last=False)
        for receipt in result.receipts:
            # An identical record seen again keeps its first receipt.
            self.receipts.setdefault(receipt.hash, receipt)
        if self.track_index:
            self.unindexed_receipts += result.receipts
            self.unindexed_blocks.append(block.number)
        return info

    def finish_catch_up(self) -> None:
        """Give the head block its state root after a deferred-root replay."""
        if self._unrooted:
            root = self.compute_state_root()
            self._unrooted = 0
            head = self.block_infos.get(self.head_number)
            if head is not None and head.state_root is None:
                self.block_infos[head.number] = BlockInfo(head.number, head.offset, head.hash, root,
                                                          head.timestamp_ms, head.tx_count)
        self.root_interval = 1

    def commit_built_block(self, offset: int, message: bytes, result: BlockResult) -> BlockInfo:
        """The sequencer wrote a block it had applied itself; index it and move on."""
        info = self.record_block(offset, message, result)
        self.next_offset = offset + 1
        self.notify(info, result)
        return info

    def notify(self, info: BlockInfo | None, result: BlockResult) -> None:
        for listener in list(self.listeners):
            listener(info, result)


# --- snapshots ----------------------------------------------------------------

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

_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)
_tables_decoder = msgspec.msgpack.Decoder(_Tables)


def encode_snapshot(chain: Chain) -> bytes:
    chain.finish_catch_up()
    state_bytes = _snapshot_encoder.encode(_Tables(**chain.state.to_tables()))
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
    tables = _tables_decoder.decode(state_bytes)
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
    return _snapshot_encoder.encode(_Tables(**chain.state.to_tables())), chain.tree.to_bytes()


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
