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

ScheduledCancelAll cancels every open order and pending trigger of the
account, so L1 must see them all, and it can only know which they are
through the nonces: every order and trigger of an account is keyed by a
nonce the account used (PlaceOrder, ModifyOrder and PlaceTrigger take the
signed record's nonce, and a fired trigger's order its trigger's), and an
account whose nonce window never dropped a nonce (fewer kept than the
window) still keeps every nonce it used.  So the witness opens, per kept
nonce, the order of that nonce and, when the schedule counts pending
triggers, the trigger of that nonce.  An account with a full window, or with
more kept nonces than the openings of one step allow
(``is_cancel_all_bounded``), is pending.  (The backstop vault's unwind
orders are keyed by a computed nonce, but no key signs for the vault, so it
never has a schedule.)

Pure: no I/O, no clock.
"""
from __future__ import annotations

from prover.keys import (GLOBAL_KEY, get_account_key, get_market_key, get_order_key, get_order_schedule_key,
                         get_trigger_key)
from prover.records import PendingKind
from sequencer.core.records import CancelOrder, PlaceTrigger, ScheduleCancel, ScheduledCancelAll, TriggerFire
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


def is_cancel_all_bounded(runner, kept: tuple[int, ...], open_triggers: int) -> bool:
    """Whether L1 can see every open order and pending trigger of the account:
    its window never dropped a nonce, and the openings (schedule, account, an
    order per kept nonce, a trigger per kept nonce when triggers are pending,
    the schedule again) fit one step (onestep_triggers.vy cancel_all_passes)."""
    passes = 2 if open_triggers else 1
    return len(kept) < runner.rules.preset.nonce_window and 3 + passes * len(kept) <= MAX_OPENINGS


def plan_scheduled_cancel_all(runner, item: ScheduledCancelAll):
    """The schedule; if it is due: account (its kept nonces), per kept nonce
    the order, then per kept nonce the trigger (when triggers are pending),
    each written if the record cancels it, then the schedule written."""
    schedule_key = get_order_schedule_key(item.account)
    schedule = runner.state.order_schedules.get(item.account)
    if schedule is None or not 0 < schedule.cancel_at_ms <= runner.ctx.timestamp_ms:
        return (lambda ok, writes: [(schedule_key, False)]), ()
    kept = get_kept_nonces(runner, item.account)
    if not is_cancel_all_bounded(runner, kept, schedule.open_triggers):
        raise PendingKind(f"ScheduledCancelAll of an account with {len(kept)} kept nonces (window "
                          f"{runner.rules.preset.nonce_window}, {schedule.open_triggers} pending triggers): "
                          "L1 cannot see that its witness names every open order")
    cancels = [get_order_key(item.account, n) for n in kept]
    if schedule.open_triggers:
        cancels += [get_trigger_key(item.account, n) for n in kept]
    head = [(schedule_key, False), (get_account_key(item.account), False)]
    return (lambda ok, writes: head + [(key, key in writes) for key in cancels] + [(schedule_key, True)]), kept


PLANNERS = {
    CancelOrder: plan_cancel_order,
    PlaceTrigger: plan_place_trigger,
    ScheduleCancel: plan_schedule_cancel,
    TriggerFire: plan_trigger_fire,
    ScheduledCancelAll: plan_scheduled_cancel_all,
}
