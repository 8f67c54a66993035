"""The witness plans of the perps kinds onestep_perps.vy re-executes
(AdjustMargin, PlaceOrder, FundingTick; docs/fraud-proofs.md; CancelOrder's is
prover/plan_triggers.py).

A planner ``plan_x(runner, record)`` reads what it needs from the pre-state
(``runner.state``, ``runner.tree``, ``runner.rules``) and returns
``(plan, nonces)``: ``plan(ok, writes)`` lists the leaves the one-step opens,
in its order, as ``(key, written)``: first the leaves the rule reads against
the pre-state root, then, if it applies, each leaf it writes, opened again
against the root of the writes before it; ``nonces`` are the sender's kept
nonces (the account leaf commits only their hash).

Pure: no I/O, no clock.
"""
from __future__ import annotations

from prover.keys import GLOBAL_KEY, get_account_key, get_market_key, get_order_key, get_position_key
from prover.records import PendingKind
from sequencer.core.records import AdjustMargin, FundingTick, PlaceOrder


def get_kept_nonces(runner, account: bytes) -> tuple[int, ...]:
    """The sender's kept nonces (the witness of the account leaf's nonces_hash)."""
    kept = runner.state.accounts.get(account)
    return kept.nonces if kept is not None else ()


def plan_funding_tick(runner, item: FundingTick):
    market = get_market_key(item.market)
    return (lambda ok, writes: [(market, ok)]), ()


def plan_adjust_margin(runner, item: AdjustMargin):
    """Taking all of a flat position's margin deletes its leaf: its written
    opening carries the deletion witness (TraceRunner._open)."""
    account = get_account_key(item.account)
    position, market = get_position_key(item.account, item.market), get_market_key(item.market)
    return (lambda ok, writes: [(position, False), (market, False), (account, ok)] + (
        [(position, True)] + [(k, True) for k in (market, GLOBAL_KEY) if k in writes] if ok else [])), \
        get_kept_nonces(runner, item.account)


def plan_place_order(runner, item: PlaceOrder):
    account, order = get_account_key(item.account), get_order_key(item.account, item.nonce)
    return (lambda ok, writes: [(order, False), (account, ok)] + (
        [(GLOBAL_KEY, True), (order, True)] if ok else [])), get_kept_nonces(runner, item.account)


PLANNERS = {
    AdjustMargin: plan_adjust_margin,
    PlaceOrder: plan_place_order,
    FundingTick: plan_funding_tick,
}
