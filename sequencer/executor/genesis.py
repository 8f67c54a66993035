"""Genesis: the allocation that block 0 starts from, its state, and the
output 0 the bridge is deployed with.

Devnet dev accounts are derived deterministically (key i = keccak256("isoroll
devnet account" || i)), so every developer and test sees the same addresses.
They are for local use only: their private keys are printed by `isoroll devnet`.
The genesis hash (keccak of the allocation) is block 0's hash, so an executor
started with another genesis refuses block 1 (wrong parent).
"""
from __future__ import annotations

from typing import Any, Sequence

import msgspec

from sequencer.core.hashing import keccak
from sequencer.core.signing import address_of
from sequencer.core.state import State
from sequencer.core.transition import Context, compute_genesis_state
from sequencer.executor.chain import Chain
from sequencer.executor.context import make_context
from sequencer.executor.output import OutputFields, EMPTY

Allocations = Sequence[tuple[bytes, int]]


def get_dev_key(index: int) -> bytes:
    return keccak(b"isoroll devnet account" + index.to_bytes(4, "big"))


def get_dev_accounts(count: int) -> list[tuple[bytes, bytes]]:
    """[(private key, address)] of the first ``count`` dev accounts."""
    return [(k, address_of(k)) for k in (get_dev_key(i) for i in range(count))]


def parse_allocations(data: dict[str, Any]) -> list[tuple[bytes, int]]:
    """A genesis file's JSON ``{"allocations": [{"address": "0x..", "amount": n}]}``."""
    return [(bytes.fromhex(a["address"][2:]), int(a["amount"])) for a in data["allocations"]]


def compute_genesis_hash(allocations: Allocations) -> bytes:
    return keccak(b"isoroll genesis" + b"".join(a + n.to_bytes(32, "big") for a, n in allocations))


def build_genesis(allocations: Allocations) -> State:
    allocations = list(allocations)
    state = compute_genesis_state(allocations)
    state.globals = msgspec.structs.replace(state.globals, block_hash=compute_genesis_hash(allocations))
    return state


def make_genesis_chain(ctx: Context, allocations: Allocations = ()) -> Chain:
    return Chain(build_genesis(allocations), ctx)


def compute_genesis_state_root(allocations: Allocations = ()) -> bytes:
    """The state root of block 0 for an allocation (the bridge's genesis output commits to it)."""
    return make_genesis_chain(make_context("devnet", "0x" + "00" * 20), allocations).state_root


def compute_genesis_output_root(state_root: bytes = EMPTY) -> bytes:
    """Output 0: the genesis state, no withdrawals, no inbox entries, no data."""
    return OutputFields(state_root, EMPTY, EMPTY, 0, EMPTY, EMPTY).root()
