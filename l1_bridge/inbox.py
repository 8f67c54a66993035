"""The L1 inbox hash chain, exactly as ``l1_bridge/contracts/bridge.vy`` computes it.

The pure functions live in ``sequencer.core.inbox`` (the state transition keeps
``globals.inbox_hash`` with them and the core must not import the L1 side);
this module re-exports them for the L1 code and its tests.  The entry format::

    entry            = kind (1 byte) || inbox_index (8 bytes, big-endian)
                       || account (20 bytes) || amount (32 bytes, big-endian)   -- 61 bytes
    inbox_hash[0]    = bytes32(0)
    inbox_hash[n+1]  = keccak256(inbox_hash[n] || entry_n)                      -- 93-byte preimage
"""
from __future__ import annotations

from sequencer.core.inbox import (EMPTY_INBOX_HASH, ENTRY_SIZE, KIND_DEPOSIT, KIND_FORCED_CLOSE,  # noqa: F401
                                  KIND_FORCED_WITHDRAWAL, MAX_AMOUNT, InboxRecord, apply_inbox_record,
                                  compute_inbox_hash, compute_inbox_hashes, compute_next_inbox_hash,
                                  decode_inbox_entry, encode_inbox_entry, encode_inbox_record,
                                  encode_inbox_record_lenient, get_inbox_amount, get_inbox_kind)

__all__ = ["EMPTY_INBOX_HASH", "ENTRY_SIZE", "KIND_DEPOSIT", "KIND_FORCED_CLOSE", "KIND_FORCED_WITHDRAWAL",
           "MAX_AMOUNT", "InboxRecord", "apply_inbox_record", "compute_inbox_hash", "compute_inbox_hashes",
           "compute_next_inbox_hash", "decode_inbox_entry", "encode_inbox_entry", "encode_inbox_record",
           "encode_inbox_record_lenient", "get_inbox_amount", "get_inbox_kind"]
