"""The witness plans of the kinds onestep_triggers.vy re-executes:
CancelOrder (of an order or of a pending trigger), PlaceTrigger,
ScheduleCancel, TriggerFire and ScheduledCancelAll (docs/fraud-proofs.md);
the planner contract of prover/plan_perps.py: ``plan_x(runner, record) ->
(plan, nonces)``, ``plan(ok, writes)`` the leaves the one-step opens, in its
order, as ``(key, written)``.

An order schedule of all zeros is the empty leaf: a record that empties a
present one (the last pending trigger fired or cancelled, a schedule cleared,
with no cancel-all run yet) deletes it; its written opening carries the
deletion witness (TraceRunner._open).

ScheduledCancelAll (rules v4) cancels the account's orders by its order
epoch in every market of the table (the one-step reads globals' order count
and writes one position leaf a market, whatever the orders) and every pending
trigger: the witness names their nonces, ascending, and the one-step checks
that it named as many as the schedule counts (``open_triggers`` counts the
pending triggers exactly).  The openings, 3 + markets + pending triggers,
fit a step (``is_cancel_all_bounded``) for any account while the table lists
at most 9 markets (the cap of pending triggers is 20); beyond, pending.  Rules
v1-v3 flag each open order, a step L1 does not re-execute: pending.

Pure: no I/O, no clock.
"""
from __future__ import annotations

from prover.keys import (GLOBAL_KEY, get_account_key, get_market_key, get_order_key, get_order_schedule_key,
                         get_position_key, get_trigger_key)
from prover.records import PendingKind
from sequencer.core.records import CancelOrder, PlaceTrigger, ScheduleCancel, ScheduledCancelAll, TriggerFire
from sequencer.core.markets import get_market_table
from sequencer.core.rules.base import get_market_params
from sequencer.core.state import TRIGGER_PENDING

MAX_OPENINGS = 32
"""trace.vy MAX_OPENINGS: the openings one step takes (tests/evm/test_onestep_triggers.py reads the contract's)."""


def get_onestep_triggers_args(rules) -> tuple:
    """onestep_triggers.vy's constructor extras after the market table: the
    preset's trigger cap, the cancel-all's minimum delay and its daily limit."""
    p = rules.preset
    return p.max_open_triggers, p.schedule_cancel_min_delay_ms, p.max_scheduled_cancels_per_day


def get_kept_nonces(runner, account: bytes) -> tuple[int, ...]:
    """The sender's kept nonces (the witness of the account leaf's nonces_hash)."""
    kept = runner.state.accounts.get(account)
    return kept.nonces if kept is not None else ()


def plan_cancel_order(runner, item: CancelOrder):
    """An order: order, account, then account and order written.  No order:
    the trigger of that nonce; if there is one, account, then account,
    trigger and schedule written."""
    account, order = get_account_key(item.account), get_order_key(item.account, item.order_nonce)
    nonces = get_kept_nonces(runner, item.account)
    if runner.tree.get(order) is not None:
        return (lambda ok, writes: [(order, False), (account, ok)] + ([(order, True)] if ok else [])), nonces
    trigger = get_trigger_key(item.account, item.order_nonce)
    if runner.tree.get(trigger) is None:
        return (lambda ok, writes: [(order, False), (trigger, False)]), nonces
    schedule = get_order_schedule_key(item.account)
    return (lambda ok, writes: [(order, False), (trigger, False), (account, ok)] + (
        [(trigger, True), (schedule, True)] if ok else [])), nonces


def plan_place_trigger(runner, item: PlaceTrigger):
    account, schedule = get_account_key(item.account), get_order_schedule_key(item.account)
    trigger = get_trigger_key(item.account, item.nonce)
    reads = [(get_order_key(item.account, item.nonce), False), (trigger, False), (schedule, False)]
    return (lambda ok, writes: reads + [(account, ok)] + ([(schedule, True), (trigger, True)] if ok else [])), \
        get_kept_nonces(runner, item.account)


def plan_schedule_cancel(runner, item: ScheduleCancel):
    account, schedule = get_account_key(item.account), get_order_schedule_key(item.account)
    return (lambda ok, writes: [(schedule, False), (account, ok)] + ([(schedule, True)] if ok else [])), \
        get_kept_nonces(runner, item.account)


def plan_trigger_fire(runner, item: TriggerFire):
    """The trigger; if it is pending in a listed market: market, order,
    schedule (the first write), then trigger, globals and order written."""
    trigger_key = get_trigger_key(item.account, item.nonce)
    trigger = runner.state.triggers.get((item.account, item.nonce))
    if (trigger is None or trigger.status != TRIGGER_PENDING
            or get_market_params(runner.rules, trigger.market) is None):
        return (lambda ok, writes: [(trigger_key, False)]), ()
    order, schedule = get_order_key(item.account, item.nonce), get_order_schedule_key(item.account)
    reads = [(trigger_key, False), (get_market_key(trigger.market), False), (order, False)]
    return (lambda ok, writes: reads + [(schedule, ok)] + (
        [(trigger_key, True), (GLOBAL_KEY, True), (order, True)] if ok else [])), ()


def is_cancel_all_bounded(markets: int, open_triggers: int) -> bool:
    """Whether the cancel-all's openings (schedule, globals, a position per
    market, a trigger per pending one, the schedule again) fit one step
    (onestep_triggers.vy cancel_all_due)."""
    return 3 + markets + open_triggers <= MAX_OPENINGS


def get_pending_trigger_nonces(runner, account: bytes) -> tuple[int, ...]:
    return tuple(sorted(n for (a, n), t in runner.state.triggers.items()
                        if a == account and t.status == TRIGGER_PENDING))


def plan_scheduled_cancel_all(runner, item: ScheduledCancelAll):
    """The schedule; if it is due: globals (the order count), the position of
    each market of the table (ascending id, its order epoch written), the
    pending triggers (ascending nonce, the witness's nonces, cancelled), then
    the schedule written."""
    schedule_key = get_order_schedule_key(item.account)
    schedule = runner.state.order_schedules.get(item.account)
    if schedule is None or not 0 < schedule.cancel_at_ms <= runner.ctx.timestamp_ms:
        return (lambda ok, writes: [(schedule_key, False)]), ()
    version = runner.rules.schema_version
    if version < 4:
        raise PendingKind(f"ScheduledCancelAll under rules v{version} flags each open order: the one-step "
                          "re-executes v4's (the order epoch in every market)")
    markets = sorted(runner.rules.markets or get_market_table(runner.rules.preset.markets))
    if not is_cancel_all_bounded(len(markets), schedule.open_triggers):
        raise PendingKind(f"ScheduledCancelAll over {len(markets)} markets with {schedule.open_triggers} pending "
                          f"triggers: more than the {MAX_OPENINGS} openings of a step")
    triggers = get_pending_trigger_nonces(runner, item.account)
    writes = ([(get_position_key(item.account, m), True) for m in markets]
              + [(get_trigger_key(item.account, n), True) for n in triggers])
    head = [(schedule_key, False), (GLOBAL_KEY, False)]
    return (lambda ok, writes_: head + writes + [(schedule_key, True)]), triggers


PLANNERS = {
    CancelOrder: plan_cancel_order,
    PlaceTrigger: plan_place_trigger,
    ScheduleCancel: plan_schedule_cancel,
    TriggerFire: plan_trigger_fire,
    ScheduledCancelAll: plan_scheduled_cancel_all,
}
