"""The L1 inbox hash chain, exactly as ``l1_bridge/contracts/bridge.vy`` computes it.

Every ``deposit``, ``forceWithdraw`` and ``forceClose`` on the bridge appends one entry
(Arbitrum's delayed inbox, ``delayedInboxAccs``)::

    entry            = kind (1 byte) || inbox_index (8 bytes, big-endian)
                       || account (20 bytes) || amount (32 bytes, big-endian)   -- 61 bytes
    inbox_hash[0]    = bytes32(0)
    inbox_hash[n+1]  = keccak256(inbox_hash[n] || entry_n)                      -- 93-byte preimage

``kind`` is 1 for a Deposit, 2 for a ForcedWithdrawal and 3 for a ForcedClose
(whose market id sits in the amount field); the fields are the fields of the
L2 records ``sequencer.core.records.Deposit`` / ``ForcedWithdrawal`` /
``ForcedClose``, so the L2 rebuilds each entry from its record alone and
keeps the chain in ``globals.inbox_hash`` (the bridge keeps the hash after
every count: ``inboxHashAt(count)``; a proposal must name an
(inbox_count, inbox_hash) pair that is on it).

Pure functions, no I/O; part of the core so the state transition can use them
(``l1_bridge.inbox`` re-exports them for the L1 side).
"""
from __future__ import annotations

from typing import Iterable

from sequencer.core.hashing import keccak
from sequencer.core.presets import MAX_INT64
from sequencer.core.records import Deposit, ForcedClose, ForcedWithdrawal

KIND_DEPOSIT = 1
KIND_FORCED_WITHDRAWAL = 2
KIND_FORCED_CLOSE = 3
EMPTY_INBOX_HASH = b"\x00" * 32
ENTRY_SIZE = 61
MAX_AMOUNT = MAX_INT64
"""Largest amount the bridge accepts in one inbox entry."""

InboxRecord = Deposit | ForcedWithdrawal | ForcedClose


def encode_inbox_entry(kind: int, inbox_index: int, account: bytes, amount: int) -> bytes:
    if kind not in (KIND_DEPOSIT, KIND_FORCED_WITHDRAWAL, KIND_FORCED_CLOSE):
        raise ValueError(f"unknown inbox entry kind {kind}")
    if not 0 <= inbox_index < 2**64:
        raise ValueError("inbox index must fit in 8 bytes")
    if len(account) != 20:
        raise ValueError("account must be a 20-byte address")
    if not 0 <= amount < 2**256:
        raise ValueError("amount must be a uint256")
    return bytes((kind,)) + inbox_index.to_bytes(8, "big") + bytes(account) + amount.to_bytes(32, "big")


def decode_inbox_entry(entry: bytes) -> InboxRecord:
    if len(entry) != ENTRY_SIZE:
        raise ValueError(f"an inbox entry is {ENTRY_SIZE} bytes, got {len(entry)}")
    kind = entry[0]
    index = int.from_bytes(entry[1:9], "big")
    account = bytes(entry[9:29])
    amount = int.from_bytes(entry[29:61], "big")
    if kind == KIND_DEPOSIT:
        return Deposit(index, account, amount)
    if kind == KIND_FORCED_WITHDRAWAL:
        return ForcedWithdrawal(index, account, amount)
    if kind == KIND_FORCED_CLOSE:
        return ForcedClose(index, account, amount)
    raise ValueError(f"unknown inbox entry kind {kind}")


def get_inbox_kind(record: InboxRecord) -> int:
    if isinstance(record, Deposit):
        return KIND_DEPOSIT
    if isinstance(record, ForcedWithdrawal):
        return KIND_FORCED_WITHDRAWAL
    if isinstance(record, ForcedClose):
        return KIND_FORCED_CLOSE
    raise TypeError(f"{type(record).__name__} is not an inbox record")


def get_inbox_amount(record: InboxRecord) -> int:
    """The entry's amount field: a ForcedClose carries its market id there."""
    return record.market if isinstance(record, ForcedClose) else record.amount


def encode_inbox_record(record: InboxRecord) -> bytes:
    """The inbox entry an L2 Deposit / ForcedWithdrawal / ForcedClose record stands for."""
    return encode_inbox_entry(get_inbox_kind(record), record.inbox_index, record.account, get_inbox_amount(record))


def encode_inbox_record_lenient(record: InboxRecord) -> bytes:
    """The entry bytes of any inbox record, even one whose fields the bridge
    could never have produced (wrong address length, amount outside uint256):
    the fields are written as given (account bytes as they are, amount and
    index reduced modulo their width).  The state transition uses it so a
    malformed record still advances the chain; such a chain can never match
    the bridge's, so a proposal naming it is rejected on L1."""
    return (bytes((get_inbox_kind(record),)) + (record.inbox_index % 2**64).to_bytes(8, "big")
            + bytes(record.account) + (get_inbox_amount(record) % 2**256).to_bytes(32, "big"))


def compute_next_inbox_hash(inbox_hash: bytes, entry: bytes) -> bytes:
    """inbox_hash' = keccak256(inbox_hash || entry)."""
    if len(inbox_hash) != 32:
        raise ValueError("inbox hash must be 32 bytes")
    return keccak(bytes(inbox_hash) + entry)


def apply_inbox_record(inbox_hash: bytes, record: InboxRecord) -> bytes:
    return compute_next_inbox_hash(inbox_hash, encode_inbox_record(record))


def compute_inbox_hash(records: Iterable[InboxRecord], start: bytes = EMPTY_INBOX_HASH) -> bytes:
    """The chain hash after ``records`` (in inbox order) starting from ``start``."""
    h = start
    for record in records:
        h = apply_inbox_record(h, record)
    return h


def compute_inbox_hashes(records: Iterable[InboxRecord]) -> list[bytes]:
    """[hash at count 0, hash at count 1, ...]: what ``inboxHashAt(count)`` returns."""
    hashes = [EMPTY_INBOX_HASH]
    for record in records:
        hashes.append(apply_inbox_record(hashes[-1], record))
    return hashes
