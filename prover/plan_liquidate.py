"""The witness plans of the liquidation ladder's records (Liquidate,
AuctionEnd, ForcedClose), the twin of l1_bridge/contracts/onestep_liquidate.vy.

Each planner decides from the pre-state which branch of the rule the record
takes (sequencer/core/rules/liquidation.py, auction.py) and either returns
the leaves the one-step opens, in its order, or raises ``PendingKind`` for a
branch the one-step does not port (it reverts "pending" there):

* a branch that cancels the owner's open orders in the market
  (``cancel_open_orders``): the state tree has no per-owner index of orders,
  so no witness can show that it names all of them;
* a branch that ranks the opposite positions (the close at the mark,
  auto-deleveraging): the ranking is over every position of the market.

A leaf the record empties is planned like any write (``TraceRunner._open``
adds the deletion witness).

Pure: no I/O.
"""
from __future__ import annotations

from prover.keys import GLOBAL_KEY, get_auction_key, get_market_key, get_position_key
from prover.records import PendingKind
from prover.plan_book import plan_book
from sequencer.core.markets import LIQUIDATION_BACKSTOP
from sequencer.core.records import AuctionEnd, ForcedClose, Liquidate
from sequencer.core.rules.base import RuleError, get_market, get_market_params, require_fresh_price
from sequencer.core.rules.liquidation import BOOK_POLICIES, MAX_LIQUIDATION_MAKERS, process_backstop
from sequencer.core.rules.margin import compute_liquidation_size, is_liquidatable
from sequencer.core.rules.positions import INSURANCE_ADDRESS, settle_funding
from sequencer.core.state import State

CANCELS_ORDERS = ("cancels the owner's open orders in the market (rules.liquidation.cancel_open_orders): "
                  "the state tree has no per-owner index of orders")


def nothing(ok: bool, writes: set[bytes]) -> list[tuple[bytes, bool]]:
    return []


def has_fresh_mark(state: State, market_id: int, params, timestamp_ms: int) -> bool:
    try:
        require_fresh_price(get_market(state, market_id), params, timestamp_ms)
    except RuleError:
        return False
    return True


def is_refused(state: State, r: Liquidate, params, timestamp_ms: int) -> bool:
    """The refusals of rules.liquidation.process_liquidate after the market and
    the account (stale mark, no position, a healthy one, makers out of policy)."""
    if not has_fresh_mark(state, r.market, params, timestamp_ms):
        return True
    position = state.positions.get((r.account, r.market))
    if position is None or position.size == 0:
        return True
    mark = state.markets[r.market].mark_price
    if not is_liquidatable(position, mark, state.markets[r.market], params):
        return True
    return len(r.makers) > MAX_LIQUIDATION_MAKERS or bool(r.makers) and params.liquidation_policy not in BOOK_POLICIES


def check_fund_takeover(state: State, r: Liquidate, params) -> None:
    """Raise PendingKind when the backstop's takeover leaves the fund negative
    (auto-deleveraging); a dry run of the rule's own steps, undone."""
    snapshot, dirty = state.snapshot(), set(state.dirty)
    try:
        mark = state.markets[r.market].mark_price
        position = settle_funding(state, r.account, r.market, state.positions[(r.account, r.market)], params)
        qty = compute_liquidation_size(position, mark, state.markets[r.market], params)
        try:
            process_backstop(state, r.account, position, qty, mark, params)
        except RuleError:
            return  # a notional past 64 bits: refused
        if state.globals.insurance_fund < 0:
            raise PendingKind("Liquidate under the backstop policy with the fund left negative: auto-deleveraging "
                              "ranks every opposite position")
    finally:
        state.revert(snapshot)
        state.dirty.clear()
        state.dirty.update(dirty)


def plan_liquidate(runner, r: Liquidate):
    """Witness: nothing for an unlisted market or the fund's account; else the
    market and the position (read); if the fund takes the lots over: the
    fund's position and the globals (read), then the position, the market,
    the fund's position and the globals written."""
    state, params = runner.state, get_market_params(runner.rules, r.market)
    if params is None or r.account == INSURANCE_ADDRESS:
        return nothing, ()
    if params.liquidation_policy in BOOK_POLICIES:
        return plan_book(runner, r, params)  # onestep_liquidate.vy forwards these to onestep_book.vy
    market, position = get_market_key(r.market), get_position_key(r.account, r.market)
    reads = [(market, False), (position, False)]
    if not is_refused(state, r, params, runner.ctx.timestamp_ms):
        if params.liquidation_policy != LIQUIDATION_BACKSTOP:
            raise PendingKind(f"Liquidate under policy {params.liquidation_policy} {CANCELS_ORDERS}")
        check_fund_takeover(state, r, params)
    fund = get_position_key(INSURANCE_ADDRESS, r.market)
    return (lambda ok, writes: reads + ([(fund, False), (GLOBAL_KEY, False), (position, True), (market, True),
                                         (fund, True), (GLOBAL_KEY, True)] if ok else [])), ()


def plan_auction_end(runner, r: AuctionEnd):
    """Witness: nothing for an unlisted market; else the auction (read); for
    an ended one the position and the market (read), then, when it ends (a
    closed position, or one no longer liquidatable at a fresh mark), the
    auction again (deleted). A position still liquidatable is pending."""
    state, params = runner.state, get_market_params(runner.rules, r.market)
    if params is None:
        return nothing, ()
    auction_key = get_auction_key(r.account, r.market)
    auction = state.auctions.get((r.account, r.market))
    reads = [(auction_key, False)]
    if auction is not None and runner.ctx.timestamp_ms >= auction.end_ms:
        position = state.positions.get((r.account, r.market))
        if position is not None and position.size != 0 and has_fresh_mark(
                state, r.market, params, runner.ctx.timestamp_ms) and is_liquidatable(
                position, state.markets[r.market].mark_price, state.markets[r.market], params):
            raise PendingKind(f"AuctionEnd of a position still liquidatable {CANCELS_ORDERS}")
        reads += [(get_position_key(r.account, r.market), False), (get_market_key(r.market), False)]
    return (lambda ok, writes: reads + ([(auction_key, True)] if ok else [])), ()


def plan_forced_close(runner, r: ForcedClose):
    """Witness: the globals (read; written when the entry is served). A listed
    market of another account than the fund's is pending."""
    state = runner.state
    if r.inbox_index == state.globals.inbox_count and r.account != INSURANCE_ADDRESS \
            and get_market_params(runner.rules, r.market) is not None:
        raise PendingKind(f"ForcedClose in a listed market {CANCELS_ORDERS}")
    return (lambda ok, writes: [(GLOBAL_KEY, ok)]), ()


PLANNERS = {Liquidate: plan_liquidate, AuctionEnd: plan_auction_end, ForcedClose: plan_forced_close}
