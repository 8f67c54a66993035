"""Genesis: the allocation that block 0 starts from.

Devnet dev accounts are derived deterministically (key i = keccak256("isoroll
devnet account" || i)), so every developer and test sees the same addresses.
They are for local use only: their private keys are printed by `isoroll devnet`.
The genesis hash (keccak of the allocation) is block 0's hash, so an executor
started with another genesis refuses block 1 (wrong parent).
"""
from __future__ import annotations

import json

from sequencer.core.hashing import keccak
from sequencer.core.signing import address_of
from sequencer.core.state import State
from sequencer.core.transition import compute_genesis_state


def get_dev_key(index: int) -> bytes:
    return keccak(b"isoroll devnet account" + index.to_bytes(4, "big"))


def get_dev_accounts(count: int) -> list[tuple[bytes, bytes]]:
    """[(private key, address)] of the first ``count`` dev accounts."""
    return [(k, address_of(k)) for k in (get_dev_key(i) for i in range(count))]


def load_allocations(config) -> list[tuple[bytes, int]]:
    if config.genesis_file:
        with open(config.genesis_file) as fh:
            data = json.load(fh)
        return [(bytes.fromhex(a["address"][2:]), int(a["amount"])) for a in data["allocations"]]
    return [(address, config.genesis_dev_balance) for _, address in get_dev_accounts(config.genesis_dev_accounts)]


def compute_genesis_hash(allocations: list[tuple[bytes, int]]) -> bytes:
    return keccak(b"isoroll genesis" + b"".join(a + n.to_bytes(32, "big") for a, n in allocations))


def build_genesis(allocations: list[tuple[bytes, int]]) -> State:
    import msgspec
    state = compute_genesis_state(allocations)
    state.globals = msgspec.structs.replace(state.globals, block_hash=compute_genesis_hash(allocations))
    return state
