"""The API's view of an account's trigger orders and dead-man's switch
(GET /v1/accounts/{address} ``triggers`` and ``scheduledCancel``)."""
from __future__ import annotations

from sequencer.core.presets import Preset
from sequencer.core.rules.triggers import TPSL_NAMES, fires_above, get_cancels_today
from sequencer.core.state import TRIGGER_PENDING, OrderSchedule, State


def describe_triggers(state: State, address: bytes, exchange=None) -> list[dict]:
    """The account's pending triggers, oldest first (integers in market units).
    With the sequencer's exchange, its index of pending triggers is read rather
    than every trigger the state ever held."""
    keys = exchange.triggers.entries if exchange is not None else state.triggers
    pending = sorted(((t.placed_ms, nonce), t) for (a, nonce) in keys if a == address
                     for t in (state.triggers[(a, nonce)],) if t.status == TRIGGER_PENDING)
    return [{"market": t.market, "nonce": nonce, "isBuy": t.is_buy, "kind": TPSL_NAMES[t.tpsl],
             "triggerPrice": t.trigger_price, "firesWhenMark": ">=" if fires_above(t.is_buy, t.tpsl) else "<=",
             "price": t.price, "size": t.size, "leverage": t.leverage, "reduceOnly": t.reduce_only,
             "placedMs": placed_ms}
            for (placed_ms, nonce), t in pending]


def describe_schedule(state: State, address: bytes, preset: Preset) -> dict:
    """The dead-man's switch: when it cancels everything (null if not set) and how many runs are left today."""
    schedule = state.order_schedules.get(address) or OrderSchedule()
    used = get_cancels_today(schedule, state.globals.timestamp_ms)
    return {"cancelAtMs": schedule.cancel_at_ms or None, "runsToday": used,
            "runsLeftToday": max(0, preset.max_scheduled_cancels_per_day - used),
            "minDelayMs": preset.schedule_cancel_min_delay_ms, "pendingTriggers": schedule.open_triggers,
            "maxPendingTriggers": preset.max_open_triggers}
