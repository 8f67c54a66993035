"""The witness plan of a Deleverage (rules v3: the ladder against named
counterparties), the twin of l1_bridge/contracts/onestep_ladder.vy.

A record refused on its item alone (an unlisted market, no counterparty,
one named twice, the account among them) opens nothing.  A record of the
insurance fund's own position (its unwind) opens the same leaves as any.
Any other reads, against the pre-state root: the market, the position, the
auction, the globals, then per counterparty its position and, for a user
(not the insurance fund), its account.  If the record applies, the writes,
each leaf once with its final value: the position, the market, the globals,
then per counterparty that took lots (its size changed) its position and,
for a user, its account.  The counterparties that took lots are told by
their sizes before and after, not by the state's dirty set: the close at
the mark the rule undoes (the fund short) may have touched others.  The
fund's own position, when it is the account, is written whenever the record
applies (its funding snapshot at least).

Pure: no I/O.
"""
from __future__ import annotations

from prover.keys import GLOBAL_KEY, get_account_key, get_auction_key, get_market_key, get_position_key
from prover.records import PendingKind
from sequencer.core.records import Deleverage
from sequencer.core.rules.base import get_market_params
from sequencer.core.rules.liquidation import MAX_DELEVERAGE_COUNTERPARTIES
from sequencer.core.rules.positions import INSURANCE_ADDRESS


def is_refused_by_item(r: Deleverage, params) -> bool:
    """The refusals onestep_ladder.vy decides before opening any leaf."""
    named = r.counterparties
    return (params is None or not 1 <= len(named) <= MAX_DELEVERAGE_COUNTERPARTIES
            or len(set(named)) != len(named) or r.account in named)


def get_ladder_reads(r: Deleverage) -> list[bytes]:
    """The leaves onestep_ladder.vy reads, in its order."""
    keys = [get_market_key(r.market), get_position_key(r.account, r.market), get_auction_key(r.account, r.market),
            GLOBAL_KEY]
    for who in r.counterparties:
        keys.append(get_position_key(who, r.market))
        if who != INSURANCE_ADDRESS:
            keys.append(get_account_key(who))
    return keys


def get_size(state, who: bytes, market_id: int) -> int:
    position = state.positions.get((who, market_id))
    return 0 if position is None else position.size


def plan_deleverage(runner, r: Deleverage):
    """(plan, nonces) of a Deleverage (no user signature: no nonces)."""
    if runner.rules.schema_version < 3:
        raise PendingKind("Deleverage is a rules v3 record: the one-step re-executes the current schema")
    if is_refused_by_item(r, get_market_params(runner.rules, r.market)):
        return (lambda ok, writes: []), ()
    reads = [(key, False) for key in get_ladder_reads(r)]
    state = runner.state
    before = {who: get_size(state, who, r.market) for who in r.counterparties}

    def plan(ok: bool, writes) -> list[tuple[bytes, bool]]:
        if not ok:
            return reads
        out = reads + [(get_position_key(r.account, r.market), True), (get_market_key(r.market), True),
                       (GLOBAL_KEY, True)]
        for who in r.counterparties:
            if get_size(state, who, r.market) == before[who]:
                continue    # not reached (or the fund, which takes no part in auto-deleveraging)
            out.append((get_position_key(who, r.market), True))
            if who != INSURANCE_ADDRESS:
                out.append((get_account_key(who), True))
        return out
    return plan, ()


PLANNERS = {Deleverage: plan_deleverage}
