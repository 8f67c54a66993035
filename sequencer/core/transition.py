"""The state transition: blocks of records applied by the ``process_*`` rules
of sequencer.core.rules over one state, with no I/O, no clock and no
randomness (the consensus-specs way).  The rule for each record kind comes
from the rule table of the context's schema version
(sequencer.core.rules.table).

Two failure channels, as in py-evm:
- a record that breaks a rule raises ``RuleError`` inside its ``process_*``
  function; ``apply_record`` reverts whatever it had changed and returns the
  error, which becomes a failed receipt.  The block goes on.  So do an
  undecodable record, an undecodable message and a block whose header does not
  follow the head: each gets a failed receipt and changes nothing.
- any other exception is a bug or a broken machine, never a verdict on the
  input: it is reverted and propagates, so the process stops instead of
  writing a receipt that another replica would not write (a silent fork).
"""
from __future__ import annotations

import msgspec

from sequencer.core.encoding import (compute_block_hash, compute_message_hash,
                                     compute_record_hash, decode_block, decode_record)
from sequencer.core.presets import MAX_BLOCK_TIME_MS
from sequencer.core.records import Block, Receipt, Record
from sequencer.core.rules.base import Context, RuleError, get_account_or_empty
from sequencer.core.rules.table import RULE_TABLES, get_rules
from sequencer.core.state import Account, Globals, State

__all__ = ["BlockResult", "Context", "RuleError", "apply_block_bytes", "apply_raw_record", "apply_record",
           "check_block_header", "compute_genesis_state", "process_block_end", "process_record"]


class BlockResult(msgspec.Struct):
    block: Block | None
    block_hash: bytes
    receipts: list[Receipt]
    applied: bool
    """False when the whole message was rejected (undecodable or out of order)."""


# --- records ------------------------------------------------------------------

def process_record(state: State, record: Record, timestamp_ms: int, ctx: Context) -> None:
    """Apply one decoded record or raise RuleError (changes may be half made:
    callers go through ``apply_record``)."""
    rule = RULE_TABLES[ctx.schema_version].get(type(record))
    if rule is None:   # a kind of a later schema (Deleverage under v1/v2): refused, never a crash
        raise RuleError("record_not_enabled", f"{type(record).__name__} is not a record of log schema version "
                                              f"{ctx.schema_version}")
    rule(state, record, timestamp_ms, ctx)


def apply_record(state: State, record: Record, timestamp_ms: int, ctx: Context) -> RuleError | None:
    """Apply a record atomically: on a broken rule revert and return the
    error; on any other exception revert and let it propagate."""
    snap = state.snapshot()
    try:
        process_record(state, record, timestamp_ms, ctx)
    except RuleError as exc:
        state.revert(snap)
        return exc
    except BaseException:
        state.revert(snap)
        raise
    state.commit(snap)
    return None


def apply_raw_record(state: State, raw: msgspec.Raw, block: Block, index: int, ctx: Context) -> Receipt:
    tx_hash = compute_record_hash(raw)
    try:
        record = decode_record(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return Receipt(tx_hash, block.number, index, False, f"undecodable_record: {exc}")
    error = apply_record(state, record, block.timestamp_ms, ctx)
    return Receipt(tx_hash, block.number, index, error is None, None if error is None else str(error))


# --- blocks -----------------------------------------------------------------------

def check_block_header(state: State, block: Block, ctx: Context, size: int = 0) -> RuleError | None:
    """``size``: the block's message length (0 where only the header is known,
    as in a fraud-proof trace item)."""
    g = state.globals
    if block.number != g.block_number + 1:
        return RuleError("block_out_of_order", f"block number {block.number}, expected {g.block_number + 1}")
    if block.parent_hash != g.block_hash:
        return RuleError("wrong_parent", f"parent hash 0x{bytes(block.parent_hash).hex()} "
                                         f"is not the head 0x{g.block_hash.hex()}")
    if block.timestamp_ms < g.timestamp_ms:
        return RuleError("time_went_back", f"timestamp {block.timestamp_ms} before the head's {g.timestamp_ms}")
    if block.timestamp_ms > MAX_BLOCK_TIME_MS and ctx.schema_version >= 4:
        return RuleError("time_past_bound", f"timestamp {block.timestamp_ms} ms is after the year 9999 "
                                            f"(MAX_BLOCK_TIME_MS {MAX_BLOCK_TIME_MS})")
    if len(block.records) > ctx.preset.max_block_records:
        return RuleError("block_too_large", f"{len(block.records)} records, limit {ctx.preset.max_block_records}")
    if size > ctx.preset.max_block_bytes:
        return RuleError("block_too_large", f"{size} bytes, limit {ctx.preset.max_block_bytes}")
    return None


def process_block_end(state: State, block: Block, block_hash: bytes) -> None:
    state.set_globals(msgspec.structs.replace(state.globals, block_number=block.number,
                                              block_hash=block_hash, timestamp_ms=block.timestamp_ms))


def failed_message(message: bytes, error: RuleError, block: Block | None = None) -> BlockResult:
    h = compute_message_hash(message)
    number = block.number if block is not None else -1
    return BlockResult(block, h, [Receipt(h, number, -1, False, str(error))], applied=False)


def apply_block_bytes(state: State, message: bytes, ctx: Context) -> BlockResult:
    """Apply one Kafka message.  Its content only ever gives failed receipts;
    an exception (a bug, see the module docstring) reverts the whole block
    and propagates."""
    try:
        block = decode_block(message)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return failed_message(message, RuleError("undecodable_block", f"not a block: {exc}"))
    error = check_block_header(state, block, ctx, len(message))
    if error is not None:
        return failed_message(message, error, block)
    get_rules(ctx.schema_version)  # an unknown version stops here, before any record
    block_hash = compute_block_hash(message)
    snap = state.snapshot()
    try:
        receipts = [apply_raw_record(state, raw, block, index, ctx) for index, raw in enumerate(block.records)]
    except BaseException:
        state.revert(snap)
        raise
    process_block_end(state, block, block_hash)
    state.commit(0)
    return BlockResult(block, block_hash, receipts, applied=True)


# --- genesis -------------------------------------------------------------------------

def compute_genesis_state(allocations: list[tuple[bytes, int]]) -> State:
    """Block 0: accounts funded by the genesis allocation (counted as deposits)."""
    state = State()
    total = 0
    for address, amount in allocations:
        account = get_account_or_empty(state, address)
        state.set_account(address, Account(collateral=account.collateral + amount))
        total += amount
    state.set_globals(Globals(total_deposited=total))
    state.commit(0)
    return state
