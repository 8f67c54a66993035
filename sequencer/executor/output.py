"""The output an L1 checkpoint commits to, computed in one place.

    output_root = compute_output_root(0, state_root, withdrawals_root,
                                      last_block_hash, inbox_count, inbox_hash, data_hash)

at an L2 block B, where state_root, last_block_hash, inbox_count and inbox_hash
are those after block B (an ``OutputPoint``); withdrawals_root is the
withdrawals tree of the withdrawals made in blocks (previous output's block, B];
data_hash = keccak(data), data being ``encode_batch`` of the raw log messages
of those blocks: zlib(msgpack([block bytes, ...])).

The checkpointer (posting), the verifier and the exit kit (checking) all call
``compute_output``, so the three cannot drift apart.
"""
from __future__ import annotations

import zlib
from typing import NamedTuple, Sequence

import msgspec

from prover.hashing import EMPTY
from prover.output import OUTPUT_VERSION, compute_output_root
from sequencer.core.commitment import compute_checkpoint_withdrawals, compute_checkpoint_withdrawals_root
from sequencer.core.hashing import keccak
from sequencer.core.state import State, Withdrawal

__all__ = ["EMPTY", "Output", "OutputFields", "OutputPoint", "compute_output", "decode_batch", "encode_batch",
           "get_output_point"]

_batch_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(list[bytes])


def encode_batch(messages: Sequence[bytes]) -> bytes:
    """The batch data of an output: zlib (level 9) of msgpack([block message bytes, ...])."""
    return zlib.compress(_batch_encoder.encode([bytes(m) for m in messages]), 9)


def decode_batch(data: bytes, max_size: int = 64 * 1024 * 1024) -> list[bytes]:
    d = zlib.decompressobj()
    raw = d.decompress(bytes(data), max_size)
    if d.unconsumed_tail:
        raise ValueError("batch data decompresses to more than the limit")
    return _batch_decoder.decode(raw)


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


def compute_output(state: State, point: OutputPoint, previous_block: int, data: bytes) -> Output:
    """The output at ``point`` following one at L2 block ``previous_block``,
    with batch data ``data``; ``state`` is any state at or after the point
    (withdrawals are only ever appended, each stamped with its block)."""
    withdrawals = compute_checkpoint_withdrawals(state, previous_block, point.number)
    fields = OutputFields(point.state_root, compute_checkpoint_withdrawals_root(withdrawals), point.block_hash,
                          point.inbox_count, point.inbox_hash, keccak(data))
    return Output(fields, withdrawals)
