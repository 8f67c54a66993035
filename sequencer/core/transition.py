"""The state transition: a fixed series of small ``process_*`` functions over one
state, with no I/O, no clock and no randomness (the consensus-specs way).

Two kinds of failure, as in py-evm:
- a record that breaks a rule raises ``RuleError`` inside its ``process_*``
  function; ``apply_record`` reverts whatever it had changed and returns a
  failed receipt.  The block goes on.
- nothing in here raises on input: an undecodable message or a block whose
  header does not follow the head gets a failed receipt and changes nothing,
  so replay never stops.  Only a broken log or storage (outside this module)
  stops the process.
"""
from __future__ import annotations

from typing import Callable

import msgspec

from sequencer.core import eip712
from sequencer.core.inbox import compute_next_inbox_hash, encode_inbox_record_lenient
from sequencer.core.encoding import (compute_block_hash, compute_message_hash,
                                     compute_record_hash, decode_block, decode_record)
from sequencer.core.nonces import is_nonce_usable, record_nonce
from sequencer.core.presets import Preset
from sequencer.core.records import (AdjustMargin, Block, CancelOrder, Deposit, ForcedWithdrawal,
                                    FundingTick, Liquidate, OraclePrice, PlaceOrder, Receipt, Record,
                                    Trade, Transfer, Withdraw)
from sequencer.core.signing import SignatureError
from sequencer.core.state import Account, Globals, State, Withdrawal


class RuleError(Exception):
    """A record breaks a protocol rule.  ``code`` is snake_case for the API."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class Context(msgspec.Struct, frozen=True):
    """What the rules need besides the state: protocol constants and the
    signature check.  ``verify_signatures=False`` trusts the log (fast replay
    of a log this operator wrote); verifiers keep it on."""
    preset: Preset
    domain_separator: bytes
    recover: Callable[[bytes, bytes], bytes]
    verify_signatures: bool = True
    markets: dict = msgspec.field(default_factory=dict)
    """Market id -> sequencer.core.markets.MarketParams; empty means the
    preset's table (``preset.markets``)."""
    oracle_signers: tuple[bytes, ...] = ()
    """OraclePrice signer addresses; empty means the preset's signer set."""
    oracle_quorum: int = 0
    """k of ``oracle_signers`` (used only when oracle_signers is set)."""


class BlockResult(msgspec.Struct):
    block: Block | None
    block_hash: bytes
    receipts: list[Receipt]
    applied: bool
    """False when the whole message was rejected (undecodable or out of order)."""


# --- helpers -----------------------------------------------------------------

def hex_address(address: bytes) -> str:
    return "0x" + address.hex()


def get_account_or_empty(state: State, address: bytes) -> Account:
    return state.accounts.get(address) or Account()


def require(condition: bool, code: str, message: str) -> None:
    if not condition:
        raise RuleError(code, message)


def require_amount(amount: int, ctx: Context, name: str = "amount") -> None:
    if not 0 < amount <= ctx.preset.max_amount:
        raise RuleError("invalid_amount", f"{name} must be a positive integer no larger than "
                                          f"{ctx.preset.max_amount}, got {amount}")


# --- checks common to user-signed records ----------------------------------

def verify_user_signature(record: Record, ctx: Context) -> None:
    if not ctx.verify_signatures:
        return
    try:
        digest = eip712.compute_digest(ctx.domain_separator, eip712.get_primary_type(record), record)
    except ValueError as exc:  # a field outside its EIP-712 type: no wallet could have signed it
        raise RuleError("invalid_field", f"{type(record).__name__}: {exc}") from None
    try:
        signer = ctx.recover(digest, record.signature)
    except SignatureError as exc:
        raise RuleError("bad_signature", str(exc)) from None
    if signer != record.account:
        raise RuleError(
            "bad_signature",
            f"signature recovers {hex_address(signer)}, not the account {hex_address(record.account)}; "
            "check the EIP-712 domain (GET /v1/status eip712Domain: chainId and verifyingContract), "
            "the primary type and every message field")


def process_expiry(record: Record, timestamp_ms: int, ctx: Context) -> None:
    # Plain ifs on the hot path: the messages are only built when a check fails.
    if record.expiry < timestamp_ms:
        raise RuleError("expired", f"tx expired at {record.expiry} ms, block time is {timestamp_ms} ms")
    if record.expiry > timestamp_ms + ctx.preset.max_expiry_ahead_ms:
        raise RuleError("expiry_too_far", f"expiry {record.expiry} ms is more than "
                        f"{ctx.preset.max_expiry_ahead_ms} ms after block time {timestamp_ms}")


def process_nonce(state: State, record: Record, ctx: Context) -> Account:
    """Check the nonce is usable, record it, and return the updated account."""
    account = get_account_or_empty(state, record.account)
    window = ctx.preset.nonce_window
    ok, why = is_nonce_usable(account.nonces, record.nonce, window)
    if not ok:
        raise RuleError("nonce_used", why)
    return msgspec.structs.replace(account, nonces=record_nonce(account.nonces, record.nonce, window))


def process_user_preamble(state: State, record: Record, timestamp_ms: int, ctx: Context) -> Account:
    process_expiry(record, timestamp_ms, ctx)
    verify_user_signature(record, ctx)
    return process_nonce(state, record, ctx)


# --- the rules ----------------------------------------------------------------

def process_transfer(state: State, record: Transfer, timestamp_ms: int, ctx: Context) -> None:
    # The replay hot path: plain ifs instead of require(), checks in the same order.
    amount = record.amount
    if len(record.to) != 20:
        raise RuleError("invalid_address", "to must be a 20-byte address")
    require_amount(amount, ctx)
    sender = process_user_preamble(state, record, timestamp_ms, ctx)
    if sender.collateral < amount:
        raise RuleError("insufficient_collateral",
                        f"free collateral {sender.collateral} is less than the amount {amount}")
    state.set_account(record.account, msgspec.structs.replace(sender, collateral=sender.collateral - amount))
    receiver = get_account_or_empty(state, record.to)
    state.set_account(record.to, msgspec.structs.replace(receiver, collateral=receiver.collateral + amount))


def process_withdraw(state: State, record: Withdraw, timestamp_ms: int, ctx: Context) -> None:
    require_amount(record.amount, ctx)
    account = process_user_preamble(state, record, timestamp_ms, ctx)
    require(account.collateral >= record.amount, "insufficient_collateral",
            f"free collateral {account.collateral} is less than the amount {record.amount}")
    state.set_account(record.account, msgspec.structs.replace(account, collateral=account.collateral - record.amount))
    add_withdrawal(state, record.account, record.amount)


def add_withdrawal(state: State, address: bytes, amount: int) -> None:
    g = state.globals
    state.append_withdrawal(Withdrawal(g.withdrawal_count, address, amount, g.block_number + 1))
    state.set_globals(msgspec.structs.replace(g, withdrawal_count=g.withdrawal_count + 1,
                                              total_withdrawn=g.total_withdrawn + amount))


def process_inbox_index(state: State, inbox_index: int) -> None:
    """L1 inbox records arrive once each and in order."""
    expected = state.globals.inbox_count
    require(inbox_index == expected, "inbox_out_of_order",
            f"inbox index {inbox_index} but the next expected is {expected}")


def advance_inbox(state: State, record: Deposit | ForcedWithdrawal, deposited: int = 0) -> None:
    """Count the inbox entry and extend ``globals.inbox_hash`` with it (the
    bridge's chain, sequencer.core.inbox), so an output names an inbox
    (count, hash) pair the bridge can check."""
    g = state.globals
    state.set_globals(msgspec.structs.replace(
        g, inbox_count=g.inbox_count + 1,
        inbox_hash=compute_next_inbox_hash(g.inbox_hash, encode_inbox_record_lenient(record)),
        total_deposited=g.total_deposited + deposited))


def is_valid_deposit(record: Deposit, ctx: Context) -> bool:
    return (isinstance(record.account, bytes) and len(record.account) == 20
            and 0 < record.amount <= ctx.preset.max_amount)


def process_deposit(state: State, record: Deposit, timestamp_ms: int, ctx: Context) -> None:
    """Credit free collateral (creating the account).  A deposit whose fields the
    rules cannot credit (not a 20-byte address, amount outside 1..max_amount)
    still takes its place in the inbox and credits nothing: the inbox never
    blocks on one entry (the bridge refunds it only if it never reaches a
    final output, so such an entry is a loss for its depositor: the bridge
    itself only accepts 20-byte addresses and positive amounts)."""
    process_inbox_index(state, record.inbox_index)
    amount = 0
    if is_valid_deposit(record, ctx):
        amount = record.amount
        account = get_account_or_empty(state, record.account)
        state.set_account(record.account, msgspec.structs.replace(account, collateral=account.collateral + amount))
    advance_inbox(state, record, deposited=amount)


def process_forced_withdrawal(state: State, record: ForcedWithdrawal, timestamp_ms: int, ctx: Context) -> None:
    """Withdraws min(amount, free collateral); never fails once in inbox order."""
    process_inbox_index(state, record.inbox_index)
    account = state.accounts.get(record.account) if isinstance(record.account, bytes) else None
    amount = 0 if account is None else max(0, min(record.amount, account.collateral))
    if amount:
        state.set_account(record.account, msgspec.structs.replace(account, collateral=account.collateral - amount))
        add_withdrawal(state, record.account, amount)
    advance_inbox(state, record)


def process_not_enabled(state: State, record: Record, timestamp_ms: int, ctx: Context) -> None:
    raise RuleError("record_not_enabled",
                    f"{type(record).__name__} records are not enabled in this version of the rules")


RULES: dict[type, Callable[[State, Record, int, Context], None]] = {
    Transfer: process_transfer,
    Withdraw: process_withdraw,
    Deposit: process_deposit,
    ForcedWithdrawal: process_forced_withdrawal,
    # The perps kinds below are pointed at sequencer.core.perps when it is
    # imported (at the end of this module): PERPS_RULES.
    AdjustMargin: process_not_enabled,
    PlaceOrder: process_not_enabled,
    CancelOrder: process_not_enabled,
    Trade: process_not_enabled,
    FundingTick: process_not_enabled,
    Liquidate: process_not_enabled,
    OraclePrice: process_not_enabled,
}


def process_record(state: State, record: Record, timestamp_ms: int, ctx: Context) -> None:
    """Apply one decoded record or raise RuleError (changes may be half made:
    callers go through ``apply_record``)."""
    RULES[type(record)](state, record, timestamp_ms, ctx)


def apply_record(state: State, record: Record, timestamp_ms: int, ctx: Context) -> RuleError | None:
    """Apply a record atomically: on any failure revert and return the error."""
    snap = state.snapshot()
    try:
        process_record(state, record, timestamp_ms, ctx)
    except RuleError as exc:
        state.revert(snap)
        return exc
    except Exception as exc:  # a bug must not stop replay; it is deterministic all the same
        state.revert(snap)
        return RuleError("internal_error", f"{type(exc).__name__}: {exc}")
    state.commit(snap)
    return None


# --- blocks -----------------------------------------------------------------------

def check_block_header(state: State, block: Block, ctx: Context) -> RuleError | None:
    g = state.globals
    if block.number != g.block_number + 1:
        return RuleError("block_out_of_order", f"block number {block.number}, expected {g.block_number + 1}")
    if block.parent_hash != g.block_hash:
        return RuleError("wrong_parent", f"parent hash 0x{bytes(block.parent_hash).hex()} "
                                         f"is not the head 0x{g.block_hash.hex()}")
    if block.timestamp_ms < g.timestamp_ms:
        return RuleError("time_went_back", f"timestamp {block.timestamp_ms} before the head's {g.timestamp_ms}")
    if len(block.records) > ctx.preset.max_block_records:
        return RuleError("block_too_large", f"{len(block.records)} records, limit {ctx.preset.max_block_records}")
    return None


def process_block_end(state: State, block: Block, block_hash: bytes) -> None:
    state.set_globals(msgspec.structs.replace(state.globals, block_number=block.number,
                                              block_hash=block_hash, timestamp_ms=block.timestamp_ms))


def failed_message(message: bytes, error: RuleError, block: Block | None = None) -> BlockResult:
    h = compute_message_hash(message)
    number = block.number if block is not None else -1
    return BlockResult(block, h, [Receipt(h, number, -1, False, str(error))], applied=False)


def apply_block_bytes(state: State, message: bytes, ctx: Context) -> BlockResult:
    """Apply one Kafka message.  Never raises on its content."""
    try:
        block = decode_block(message)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return failed_message(message, RuleError("undecodable_block", f"not a block: {exc}"))
    error = check_block_header(state, block, ctx)
    if error is not None:
        return failed_message(message, error, block)
    block_hash = compute_block_hash(message)
    receipts = [apply_raw_record(state, raw, block, index, ctx) for index, raw in enumerate(block.records)]
    process_block_end(state, block, block_hash)
    state.commit(0)
    return BlockResult(block, block_hash, receipts, applied=True)


def apply_raw_record(state: State, raw: msgspec.Raw, block: Block, index: int, ctx: Context) -> Receipt:
    tx_hash = compute_record_hash(raw)
    try:
        record = decode_record(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return Receipt(tx_hash, block.number, index, False, f"undecodable_record: {exc}")
    error = apply_record(state, record, block.timestamp_ms, ctx)
    return Receipt(tx_hash, block.number, index, error is None, None if error is None else str(error))


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


# The perpetuals rules (PlaceOrder, CancelOrder, AdjustMargin, Trade, FundingTick,
# Liquidate, OraclePrice) live in sequencer.core.perps, which imports the helpers
# above and registers itself in RULES.
import sequencer.core.perps  # noqa: E402,F401
