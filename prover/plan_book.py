"""The witness plan of a Liquidate in a market whose liquidation policy puts
the position into the book first (book-first, book+auction, book+vault),
under rules v3: the twin of l1_bridge/contracts/onestep_book.vy, reached
from prover/plan_liquidate.py (as onestep_liquidate.vy forwards these
records to onestep_book.vy).

Reads, against the pre-state root: the market and the position (a record
refused there, by its mark, its position or more than 4 makers, stops);
then the auction, the globals, and per maker its order and, for an owner not
named before, its account and its position.  Writes, each leaf once with its
final value: the position, the market, the globals, then per maker whose
fill held its order and, at its owner's first held fill, the owner's
account and position, or (a record naming no makers) the auction it started,
or (a bankrupt position whose auction ran) the auction ended (deleted).

Where rules v1 and v2 went down the ladder (a close at the mark or
auto-deleveraging over every opposite position, ranked), rules v3 stop
after the funding settlement and the order epoch: what the book left in a
record naming no makers under book-first, or under book+auction when the
position is insolvent or has nothing to decay; a bankrupt position whose
auction runs (its auction ends).  Deleverage records go on from there.

Pending (``PendingKind``; the contract reverts "pending"): a maker order of
the insurance fund, and any record under rules v1 (its cancel-all has no
bounded witness); under rules v2 (a log replayed with schema 2), where v3
stop and v2 went down the ladder.  A record naming no makers under
book+vault (the vault step) is prover.plan_vault_step's (onestep_liquidate.vy
forwards it to onestep_vault_step.vy), never this plan's.

Pure: no I/O.
"""
from __future__ import annotations

from prover.keys import GLOBAL_KEY, get_account_key, get_auction_key, get_market_key, get_order_key, get_position_key
from prover.records import PendingKind
from sequencer.core.records import Liquidate
from sequencer.core.rules.base import RuleError, get_market, require_fresh_price
from sequencer.core.markets import LIQUIDATION_BOOK_AUCTION, LIQUIDATION_BOOK_VAULT
from sequencer.core.rules.liquidation import (LIQUIDATION_V2, LIQUIDATION_V3, MAX_LIQUIDATION_MAKERS_V2,
                                              cancel_orders_v2, compute_auction_prices, get_liquidation_rules,
                                              process_book_step, settle_liquidation_funding)
from sequencer.core.rules.margin import compute_equity_scaled, compute_liquidation_size, is_liquidatable
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.state import State

RANKED = ("rules v2 send it down the ladder (a close at the mark or auto-deleveraging ranks every opposite "
          "position); the one-step is the twin of rules v3, which stop there")


def is_refused_early(state: State, r: Liquidate, params, timestamp_ms: int) -> bool:
    """The refusals the contract decides on the market and the position
    alone: no fresh mark, no position, a healthy one, more than 4 makers."""
    try:
        mark = require_fresh_price(get_market(state, r.market), params, timestamp_ms)
    except RuleError:
        return True
    position = state.positions.get((r.account, r.market))
    if position is None or position.size == 0:
        return True
    return not is_liquidatable(position, mark, state.markets[r.market], params) \
        or len(r.makers) > MAX_LIQUIDATION_MAKERS_V2


def get_pending_reason(state: State, r: Liquidate, params, timestamp_ms: int,
                       named_ladder: bool = True) -> str | None:
    """Why the record takes a branch the contract does not port (None: it is
    refused or proven); a dry run of the rule's own steps, undone.  Where
    rules v3 stop, a log under rules v2 (``named_ladder`` False) went down
    the ranked ladder: pending there."""
    snapshot, dirty = state.snapshot(), set(state.dirty)
    try:
        market = state.markets[r.market]
        mark = market.mark_price
        rules = LIQUIDATION_V3 if named_ladder else LIQUIDATION_V2
        position = settle_liquidation_funding(state, rules, r.account, r.market,
                                              state.positions[(r.account, r.market)], params)
        qty = compute_liquidation_size(position, mark, state.markets[r.market], params)
        position = cancel_orders_v2(state, r.account, r.market, position)
        if (r.account, r.market) in state.auctions:
            bankrupt = compute_equity_scaled(position, mark, state.markets[r.market], params) < 0
            return RANKED if bankrupt and not named_ladder else None  # refused, or its auction ends (v3 stop)
        try:
            position, rest = process_book_step(state, r, position, qty, mark, params, timestamp_ms)
        except RuleError:
            return None     # a maker refused: the record is
        if any(owner == INSURANCE_ADDRESS for owner, _ in r.makers):
            return "a maker order of the insurance fund's address (the rules never place one)"
        if not (rest and position.size and not r.makers):
            return None     # v2: only a record naming no makers sends the lots on
        if params.liquidation_policy == LIQUIDATION_BOOK_VAULT:
            return "what the book did not take goes to the vault (its equity is read over every market)"
        start, end = compute_auction_prices(position, mark, state.markets[r.market], params)
        solvent = compute_equity_scaled(position, mark, state.markets[r.market], params) >= 0
        auction = params.liquidation_policy == LIQUIDATION_BOOK_AUCTION and solvent and start != end
        return RANKED if not auction and not named_ladder else None  # an auction started, or v3 stop
    finally:
        state.revert(snapshot)
        state.dirty.clear()
        state.dirty.update(dirty)


def get_book_reads(r: Liquidate) -> list[bytes]:
    """The leaves onestep_book.vy reads past the early refusals, in its order:
    the market, the position, the auction, the globals, then per maker its
    order and, for an owner not named before, its account and position."""
    keys = [get_market_key(r.market), get_position_key(r.account, r.market), get_auction_key(r.account, r.market),
            GLOBAL_KEY]
    owners: list[bytes] = []
    for owner, nonce in r.makers:
        keys.append(get_order_key(owner, nonce))
        if owner not in owners:
            owners.append(owner)
            keys += [get_account_key(owner), get_position_key(owner, r.market)]
    return keys


def plan_refused_early(runner, r: Liquidate, params, policy: str):
    """The plan of a book-policy Liquidate refused before anything is written
    (the market and the position read), or None when it goes on; rules v1 are
    pending (their cancel-all writes one leaf per open order)."""
    if runner.rules.schema_version == 1:
        raise PendingKind(f"Liquidate in a {policy} market under rules v1: it cancels every open order of the "
                          "owner in the market, one leaf each, with no index")
    if not is_refused_early(runner.state, r, params, runner.ctx.timestamp_ms):
        return None
    reads = [(get_market_key(r.market), False), (get_position_key(r.account, r.market), False)]
    return (lambda ok, writes: reads), ()


def plan_book(runner, r: Liquidate, params):
    """(plan, nonces) of a Liquidate in a book-first market (the market listed
    and the account not the fund's: prover.plan_liquidate checks)."""
    early = plan_refused_early(runner, r, params, "book-first")
    if early is not None:
        return early
    state, timestamp_ms = runner.state, runner.ctx.timestamp_ms
    market, position = get_market_key(r.market), get_position_key(r.account, r.market)
    reason = get_pending_reason(state, r, params, timestamp_ms, get_liquidation_rules(runner.rules).named_ladder)
    if reason is not None:
        raise PendingKind(f"Liquidate in the book: {reason}")
    auction = get_auction_key(r.account, r.market)
    reads = [(key, False) for key in get_book_reads(r)]

    def plan(ok: bool, writes) -> list[tuple[bytes, bool]]:
        if not ok:
            return reads
        out = reads + [(position, True), (market, True), (GLOBAL_KEY, True)]
        done: set[bytes] = set()
        for owner, nonce in r.makers:
            order = get_order_key(owner, nonce)
            if order not in writes:
                continue    # passed over (or nothing left for it): unchanged
            out.append((order, True))
            if owner not in done:
                done.add(owner)
                out += [(get_account_key(owner), True), (get_position_key(owner, r.market), True)]
        if auction in writes:
            out.append((auction, True))
        return out
    return plan, ()
