"""The witness plans of the backstop vault kinds onestep_vault.vy re-executes
(VaultDeposit, VaultWithdraw, VaultUnwind; sequencer.core.rules.vault,
docs/fraud-proofs.md).

A deposit or a withdrawal values the vault: its account, its position in
every market of the table (ascending ids; the market leaf too after a
position with a size, for the mark and the funding index) and the total
shares, then the holder's share leaf and the account, all against the
pre-state root; if it applies, the account is written first (its opening is
the last read), then the vault account, the holder's shares and the total,
each opened again against the root of the writes before it. A holder's
last shares (or the vault's last: its total) empty their share leaf: the
write is a deletion, listed like any write (prover.trace gives its witness).
Pending (PendingKind here, "pending" on L1): a witness past trace.vy's 32
openings (the vault's positions with a size in more than 13 markets), and an
unwind whose order nonce passes 8 bytes (a block time past the year 10,000).

Pure: no I/O, no clock.
"""
from __future__ import annotations

from prover.keys import (GLOBAL_KEY, get_account_key, get_market_key, get_order_key, get_position_key,
                         get_vault_share_key)
from prover.plan_perps import get_kept_nonces
from prover.records import PendingKind
from sequencer.core.markets import get_market_table
from sequencer.core.records import VaultDeposit, VaultUnwind, VaultWithdraw
from sequencer.core.rules.base import get_market_params
from sequencer.core.rules.vault import VAULT_ADDRESS, get_unwind_nonce

MAX_ORDER_NONCE = 2**64 - 1
"""An order key holds its nonce in 8 bytes (prover.keys.get_order_key)."""
MAX_OPENINGS = 32
"""trace.vy's bound on the witness of one step."""


def get_vault_reads(runner) -> list[tuple[bytes, bool]]:
    """What rules.vault.compute_vault_equity and get_total_shares read, in
    onestep_vault.vy's order (read_vault)."""
    reads = [(get_account_key(VAULT_ADDRESS), False)]
    rules = runner.rules
    for market_id in sorted(rules.markets or get_market_table(rules.preset.markets)):
        position = get_position_key(VAULT_ADDRESS, market_id)
        reads.append((position, False))
        leaf = runner.tree.get(position)
        if leaf is not None and int.from_bytes(leaf[:32], "big", signed=True) != 0:
            reads.append((get_market_key(market_id), False))
    return reads + [(get_vault_share_key(VAULT_ADDRESS), False)]


def plan_share_move(runner, item: VaultDeposit | VaultWithdraw):
    """VaultDeposit and VaultWithdraw read and write the same leaves."""
    reads = get_vault_reads(runner)
    if len(reads) + 5 > MAX_OPENINGS:   # the holder, the account and three writes
        raise PendingKind(f"a vault record whose witness passes {MAX_OPENINGS} openings (positions with a size in "
                          "more than 13 markets) is pending")
    vault, total = get_account_key(VAULT_ADDRESS), get_vault_share_key(VAULT_ADDRESS)
    holder, account = get_vault_share_key(item.account), get_account_key(item.account)
    return (lambda ok, writes: reads + [(holder, False), (account, ok)] + (
        [(vault, True), (holder, True), (total, True)] if ok else [])), get_kept_nonces(runner, item.account)


def plan_vault_unwind(runner, item: VaultUnwind):
    """The vault's position, this interval's unwind order (absent), the market;
    if it applies: globals (order_count) and the order written."""
    if get_market_params(runner.rules, item.market) is None:
        return (lambda ok, writes: []), ()
    nonce = get_unwind_nonce(item.market, runner.ctx.timestamp_ms, runner.rules)
    if nonce > MAX_ORDER_NONCE:
        raise PendingKind("VaultUnwind whose order nonce passes 8 bytes (block time past year 10,000) is pending")
    order = get_order_key(VAULT_ADDRESS, nonce)
    reads = [(get_position_key(VAULT_ADDRESS, item.market), False), (order, False), (get_market_key(item.market), False)]
    return (lambda ok, writes: reads + ([(GLOBAL_KEY, True), (order, True)] if ok else [])), ()


PLANNERS = {VaultDeposit: plan_share_move, VaultWithdraw: plan_share_move, VaultUnwind: plan_vault_unwind}


def get_onestep_vault_args(rules) -> tuple:
    """onestep_vault.vy's constructor extras after the market table: the
    preset's vault constants (prover.families.ONESTEP_FAMILIES)."""
    p = rules.preset
    return (p.vault_min_deposit, p.vault_lockup_ms, p.vault_unwind_interval_ms, p.vault_unwind_ppm,
            p.vault_unwind_slippage_ppm)
