"""Collateral accounts: Transfer and Withdraw (user-signed), and the records
copied from the L1 inbox (Deposit, ForcedWithdrawal; ForcedClose is in
liquidation.py), which arrive once each and in order and extend the inbox
hash chain (sequencer.core.inbox)."""
from __future__ import annotations

import msgspec

from sequencer.core.inbox import InboxRecord, compute_next_inbox_hash, encode_inbox_record_lenient
from sequencer.core.presets import MAX_INT64
from sequencer.core.records import Deposit, ForcedWithdrawal, Transfer, Withdraw
from sequencer.core.rules.base import (Context, RuleError, get_account_or_empty, process_user_preamble, require,
                                       require_amount)
from sequencer.core.state import State, Withdrawal


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


def advance_inbox(state: State, record: InboxRecord, deposited: int = 0) -> None:
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
    still takes its place in the inbox and credits nothing, and so does one
    that would take the deposits ever credited past 2**63 - 1 (then no balance
    or total can leave the 64-bit integers of the log and the snapshots): the inbox never
    blocks on one entry (the bridge refunds it only if it never reaches a
    final output, so such an entry is a loss for its depositor: the bridge
    itself only accepts 20-byte addresses and positive amounts)."""
    process_inbox_index(state, record.inbox_index)
    amount = 0
    if is_valid_deposit(record, ctx) and state.globals.total_deposited + record.amount <= MAX_INT64:
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
