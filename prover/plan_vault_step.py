"""The witness plan of a Liquidate that names no makers in a market whose
liquidation policy is book+vault (the vault step), under rules v3: the twin
of l1_bridge/contracts/onestep_vault_step.vy, reached from
prover/plan_liquidate.py (as onestep_liquidate.vy forwards these records
there).

Reads, against the pre-state root: the market and the position (a record
refused there, by its mark or its position, stops); the auction and the
globals; then, unless the position's auction runs, the vault as
rules.vault.compute_vault_equity reads it, in onestep_vault.vy's order
(``prover.plan_vault.get_vault_reads``: its account, its position in every
market of the table, the market after each position with a size, its total
shares).  Writes, each leaf once with its final value: the position, the
market, the globals, then the vault's account and its position in the
market when the vault took lots, or the auction (deleted) when a bankrupt
position's auction ended.  What the vault does not take stops there under
rules v3 (``process_ladder_step``: Deleverage records go on).

Pending (``PendingKind``; the contract reverts "pending"): a witness past
32 openings (the table's markets plus the vault's positions with a size
above 21); any record under rules v1 (its cancel-all has no bounded
witness); under rules v2 (a log replayed with schema 2), where v3 stop and
v2 went down the ranked ladder (lots the vault left, a bankrupt position's
auction ended).

Pure: no I/O.
"""
from __future__ import annotations

from prover.keys import GLOBAL_KEY, get_account_key, get_auction_key, get_market_key, get_position_key
from prover.plan_book import RANKED, plan_refused_early
from prover.plan_vault import MAX_OPENINGS, get_vault_reads
from prover.records import PendingKind
from sequencer.core.records import Liquidate
from sequencer.core.rules.liquidation import (LIQUIDATION_V2, cancel_orders_v2, get_liquidation_rules,
                                              process_vault_step, settle_liquidation_funding)
from sequencer.core.rules.margin import compute_equity_scaled, compute_liquidation_size
from sequencer.core.rules.vault import VAULT_ADDRESS

WRITES = 5
"""The most the vault step writes: the position, the market, the globals, the vault's account and position."""


def get_onestep_vault_step_args(rules) -> tuple:
    """onestep_vault_step.vy's constructor extras after the market table: the
    preset's vault limits (prover.families.ONESTEP_FAMILIES)."""
    return rules.preset.vault_max_leverage, rules.preset.vault_max_market_share_ppm


def leaves_lots_to_ranked_ladder(runner, r: Liquidate, params) -> bool:
    """Rules v2: whether the record goes down the ranked ladder after the vault
    (lots left, or a bankrupt position's auction ended); a dry run, undone."""
    state = runner.state
    snapshot, dirty = state.snapshot(), set(state.dirty)
    try:
        mark = state.markets[r.market].mark_price
        position = settle_liquidation_funding(state, LIQUIDATION_V2, r.account, r.market,
                                              state.positions[(r.account, r.market)], params)
        qty = compute_liquidation_size(position, mark, state.markets[r.market], params)
        position = cancel_orders_v2(state, r.account, r.market, position)
        if (r.account, r.market) in state.auctions:
            return compute_equity_scaled(position, mark, state.markets[r.market], params) < 0
        taken = process_vault_step(state, runner.rules, r.account, position, qty, mark, params)
        return bool(qty - taken) and bool(state.positions[(r.account, r.market)].size)
    finally:
        state.revert(snapshot)
        state.dirty.clear()
        state.dirty.update(dirty)


def plan_vault_step(runner, r: Liquidate, params):
    """(plan, nonces) of a Liquidate naming no makers under book+vault (the
    market listed and the account not the fund's: prover.plan_liquidate checks)."""
    early = plan_refused_early(runner, r, params, "book+vault")
    if early is not None:
        return early
    state = runner.state
    market, position = get_market_key(r.market), get_position_key(r.account, r.market)
    auction = get_auction_key(r.account, r.market)
    reads = [(market, False), (position, False), (auction, False), (GLOBAL_KEY, False)]
    in_auction = (r.account, r.market) in state.auctions
    if not in_auction:
        reads += get_vault_reads(runner)
        if len(reads) + WRITES > MAX_OPENINGS:
            raise PendingKind(f"the vault step whose witness passes {MAX_OPENINGS} openings (the table's markets "
                              f"plus the vault's positions with a size above {MAX_OPENINGS - WRITES - 6})")
    if not get_liquidation_rules(runner.rules).named_ladder and leaves_lots_to_ranked_ladder(runner, r, params):
        raise PendingKind(f"Liquidate, the vault step: {RANKED}")
    vault_account, vault_position = get_account_key(VAULT_ADDRESS), get_position_key(VAULT_ADDRESS, r.market)

    def plan(ok: bool, writes) -> list[tuple[bytes, bool]]:
        if not ok:
            return reads
        out = reads + [(position, True), (market, True), (GLOBAL_KEY, True)]
        if in_auction:
            return out + [(auction, True)]
        if r.account != VAULT_ADDRESS and vault_position in writes:     # the vault took lots
            out += [(vault_account, True), (vault_position, True)]
        return out
    return plan, ()
