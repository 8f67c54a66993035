"""The executor's projection of the log: state, state tree, receipts and the
block index, stamped with the log offset they were derived up to.

``Chain`` is synchronous and does no I/O; the node feeds it Kafka messages
(follower, replay) or finished blocks (the sequencer that built them), the
verifier and the exit kit feed it the batches posted on L1.  The log is the
truth: everything here can be rebuilt by replaying it.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import msgspec

from prover.tree import SparseMerkleTree
from sequencer.core.commitment import compute_dirty_leaves
from sequencer.core.presets import SCHEMA_VERSION
from sequencer.core.records import Receipt
from sequencer.core.state import State
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
