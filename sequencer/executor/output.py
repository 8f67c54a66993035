"""The output an L1 checkpoint commits to, computed in one place.

    output_root = compute_output_root(0, state_root, withdrawals_root,
                                      last_block_hash, inbox_count, inbox_hash, data_hash)

at an L2 block B, where state_root, last_block_hash, inbox_count and inbox_hash
are those after block B (an ``OutputPoint``); withdrawals_root is the
withdrawals tree of the withdrawals made in blocks (previous output's block, B];
the batch data is the trace items of those blocks (docs/fraud-proofs.md:
BLOCK_START, one item per record, BLOCK_END; ``prover.records``), framed and
split into chunks of at most one transaction's bytes (a ``Batch``), and
data_hash chains the chunks (``prover.records.compute_data_hash``).  A dispute
game derives the records root from the same chunks.

The checkpointer (posting), the verifier and the exit kit (checking) all call
``encode_batch`` / ``decode_batch`` and ``compute_output``, so the three cannot
drift apart.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from prover.hashing import EMPTY
from prover.output import OUTPUT_VERSION, compute_output_root
from prover.records import MAX_DATA, compute_block_items, compute_data_hash, decode_data, split_data
from sequencer.core.commitment import compute_checkpoint_withdrawals, compute_checkpoint_withdrawals_root
from sequencer.core.state import State, Withdrawal

__all__ = ["Batch", "EMPTY", "Output", "OutputFields", "OutputPoint", "compute_output", "decode_batch",
           "encode_batch", "get_output_point"]


class Batch(NamedTuple):
    """The posted data of an output: its chunks, in posting order (one
    transaction each: ``postData`` for all but the last, ``propose`` for the last)."""
    chunks: tuple[bytes, ...]

    @property
    def data_hash(self) -> bytes:
        return compute_data_hash(self.chunks)

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.chunks)


def encode_batch(messages: Sequence[bytes], max_chunk: int = MAX_DATA) -> Batch:
    """The batch of the applied block messages ``messages``: their items,
    framed, in chunks of at most ``max_chunk`` bytes."""
    return Batch(tuple(split_data((item for m in messages for item in compute_block_items(bytes(m))), max_chunk)))


def decode_batch(chunks: Sequence[bytes]) -> list[bytes]:
    """The items of posted chunks (``prover.records.DataError`` if a chunk is not whole frames)."""
    return [item for chunk in chunks for item in decode_data(bytes(chunk))]


class OutputFields(NamedTuple):
    """The fields of an output (bridge struct Output, in order)."""
    state_root: bytes
    withdrawals_root: bytes
    last_block_hash: bytes
    inbox_count: int
    inbox_hash: bytes
    data_hash: bytes

    def root(self) -> bytes:
        return compute_output_root(OUTPUT_VERSION, *self)

    def as_arg(self) -> tuple:
        return tuple(self)


class OutputPoint(NamedTuple):
    """The state after one L2 block, as an output needs it."""
    number: int
    state_root: bytes
    block_hash: bytes
    inbox_count: int
    inbox_hash: bytes


class Output(NamedTuple):
    fields: OutputFields
    withdrawals: list[Withdrawal]
    """The withdrawals of the output's blocks, in order (the withdrawals tree's leaves)."""


def get_output_point(chain) -> OutputPoint:
    """The point of ``chain``'s head (its state root computed now)."""
    g = chain.state.globals
    return OutputPoint(g.block_number, chain.compute_state_root(), g.block_hash, g.inbox_count, g.inbox_hash)


def compute_output(state: State, point: OutputPoint, previous_block: int, batch: Batch) -> Output:
    """The output at ``point`` following one at L2 block ``previous_block``,
    with batch data ``batch``; ``state`` is any state at or after the point
    (withdrawals are only ever appended, each stamped with its block)."""
    withdrawals = compute_checkpoint_withdrawals(state, previous_block, point.number)
    fields = OutputFields(point.state_root, compute_checkpoint_withdrawals_root(withdrawals), point.block_hash,
                          point.inbox_count, point.inbox_hash, batch.data_hash)
    return Output(fields, withdrawals)
