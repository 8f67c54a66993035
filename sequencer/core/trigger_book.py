"""The sequencer's index of pending triggers and scheduled cancel-alls: which
ones are due at a block, found without scanning every trigger.

Like the order books it is a cache of the state (``rebuild``), pure and
deterministic.  Per market, the triggers that fire when the mark rises to them
sit in one list sorted by trigger price, those that fire when it falls in
another sorted by minus the trigger price: in both the crossed ones are a
prefix, the one the moving mark crossed first at its head (price order, as
stops trigger on a venue while the price moves through them; placement order
within a price).  Of a block's bound, each list offers its first ones; among
those, placement order (block time of the placement, account, nonce) decides.
No step sorts more than the bound, however many triggers are crossed.
"""
from __future__ import annotations

from bisect import bisect_left, insort

from sequencer.core.markets import MarketParams
from sequencer.core.rules.base import RuleError, get_market, require_fresh_price
from sequencer.core.rules.triggers import fires_above
from sequencer.core.state import TRIGGER_PENDING, State, Trigger

Entry = tuple[int, int, bytes, int]
"""(trigger price, or minus it when it fires on a falling mark; placed_ms, account, nonce)"""


class TriggerBook:
    __slots__ = ("rising", "falling", "entries", "cancel_at")

    def __init__(self) -> None:
        self.rising: dict[int, list[Entry]] = {}
        self.falling: dict[int, list[Entry]] = {}
        self.entries: dict[tuple[bytes, int], tuple[int, bool, Entry]] = {}
        """(account, nonce) -> (market, fires when rising, its entry)"""
        self.cancel_at: dict[bytes, int] = {}
        """account -> scheduled cancel-all time"""

    def add(self, account: bytes, nonce: int, trigger: Trigger) -> None:
        if trigger.status != TRIGGER_PENDING or (account, nonce) in self.entries:
            return
        above = fires_above(trigger.is_buy, trigger.tpsl)
        entry = (trigger.trigger_price if above else -trigger.trigger_price, trigger.placed_ms, account, nonce)
        insort((self.rising if above else self.falling).setdefault(trigger.market, []), entry)
        self.entries[(account, nonce)] = (trigger.market, above, entry)

    def remove(self, key: tuple[bytes, int]) -> None:
        found = self.entries.pop(key, None)
        if found is None:
            return
        market, above, entry = found
        entries = (self.rising if above else self.falling)[market]
        del entries[bisect_left(entries, entry)]

    def remove_account(self, account: bytes) -> None:
        for key in [k for k in self.entries if k[0] == account]:
            self.remove(key)
        self.cancel_at.pop(account, None)

    def set_cancel_at(self, account: bytes, cancel_at_ms: int) -> None:
        if cancel_at_ms:
            self.cancel_at[account] = cancel_at_ms
        else:
            self.cancel_at.pop(account, None)

    def rebuild(self, state: State) -> None:
        self.rising.clear()
        self.falling.clear()
        self.entries.clear()
        for (account, nonce), trigger in state.triggers.items():
            self.add(account, nonce, trigger)
        self.cancel_at = {a: s.cancel_at_ms for a, s in state.order_schedules.items() if s.cancel_at_ms}

    # --- what is due ----------------------------------------------------------------
    def get_crossed(self, state: State, markets: dict[int, MarketParams], timestamp_ms: int,
                    limit: int) -> list[tuple[bytes, int]]:
        """The first ``limit`` triggers (placement order) whose market's fresh
        mark has crossed them; none in a market without a fresh mark."""
        crossed: list[Entry] = []
        for rising, falling, mark in self._crossing(state, markets, timestamp_ms):
            crossed += rising[:min(limit, bisect_left(rising, (mark + 1,)))]
            crossed += falling[:min(limit, bisect_left(falling, (-mark + 1,)))]
        crossed.sort(key=lambda e: (e[1], e[2], e[3]))
        return [(account, nonce) for _, _, account, nonce in crossed[:limit]]

    def has_crossed(self, state: State, markets: dict[int, MarketParams], timestamp_ms: int) -> bool:
        """Whether any trigger is crossed (what an idle builder asks every wake)."""
        return any((rising and rising[0][0] <= mark) or (falling and falling[0][0] <= -mark)
                   for rising, falling, mark in self._crossing(state, markets, timestamp_ms))

    def _crossing(self, state: State, markets: dict[int, MarketParams], timestamp_ms: int):
        """(rising, falling, fresh mark) of each market holding pending triggers, in market order."""
        for market_id in sorted(set(self.rising) | set(self.falling)):
            rising, falling = self.rising.get(market_id, []), self.falling.get(market_id, [])
            if not (rising or falling) or market_id not in markets:
                continue
            try:
                mark = require_fresh_price(get_market(state, market_id), markets[market_id], timestamp_ms)
            except RuleError:
                continue
            yield rising, falling, mark

    def get_due_cancels(self, timestamp_ms: int, limit: int) -> list[bytes]:
        """The first ``limit`` accounts whose scheduled cancel-all is due, earliest first."""
        due = sorted((at, account) for account, at in self.cancel_at.items() if at <= timestamp_ms)
        return [account for _, account in due[:limit]]
