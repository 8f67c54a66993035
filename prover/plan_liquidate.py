"""The witness plans of the liquidation ladder's records (Liquidate,
AuctionEnd, ForcedClose), the twin of l1_bridge/contracts/onestep_liquidate.vy
(Liquidate, ForcedClose) and onestep_auction_end.vy (AuctionEnd).

Each planner decides from the pre-state which branch of the rule the record
takes (rules v3: sequencer/core/rules/liquidation.py, auction.py) and either
returns the leaves the one-step opens, in its order, or raises
``PendingKind`` for a branch the one-step does not port (it reverts
"pending" there).  The one-step is the twin of rules v3, where no branch of
these kinds ranks the opposite positions: a Liquidate under the ladder
policy, a position in auction gone bankrupt, an AuctionEnd of a position
still liquidatable stop after the funding settlement and the order epoch
(Deleverage records name the counterparties, prover.plan_ladder); a
backstop takeover the fund cannot pay is not made; a ForcedClose goes to
the insurance fund under every policy.  The position each record acts on
has its funding settled as the rules do (``settle_liquidation_funding``:
under v3 funding owed past its margin moves into its cost), so the dry
runs below decide the branch the rule takes.  Pending:

* under rules v2 (a log replayed with schema 2), where v3 stop and v2 go
  down the ladder (a close at the mark or auto-deleveraging ranks every
  opposite position of the market: no bounded witness);
* under rules v1 (schema 1), a branch that cancels the owner's open orders
  one leaf each (``cancel_open_orders``): the state tree has no per-owner
  index of orders, so no witness can show all of them.

A Liquidate under a book policy (2, 3, 4) is planned whole by
prover.plan_book (the one-step forwards it to onestep_book.vy), one naming
no makers under book+vault by prover.plan_vault_step (onestep_vault_step.vy).

A leaf the record empties is planned like any write (``TraceRunner._open``
adds the deletion witness).

Pure: no I/O.
"""
from __future__ import annotations

from prover.keys import GLOBAL_KEY, get_account_key, get_auction_key, get_market_key, get_position_key
from prover.records import PendingKind
from prover.plan_book import plan_book
from prover.plan_vault_step import plan_vault_step
from sequencer.core.markets import LIQUIDATION_BACKSTOP, LIQUIDATION_BOOK_VAULT
from sequencer.core.records import AuctionEnd, ForcedClose, Liquidate
from sequencer.core.rules.base import RuleError, get_market, get_market_params, require_fresh_price
from sequencer.core.rules.liquidation import (BOOK_POLICIES, LiquidationRules, get_liquidation_rules, process_backstop,
                                              settle_liquidation_funding)
from sequencer.core.rules.margin import compute_liquidation_size, is_liquidatable
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.state import State

CANCELS_ORDERS = ("cancels the owner's open orders in the market one leaf each (rules v1 cancel_open_orders): "
                  "the state tree has no per-owner index of orders")
RANKS = "ranks every opposite position of the market (the close at the mark, auto-deleveraging)"


def nothing(ok: bool, writes: set[bytes]) -> list[tuple[bytes, bool]]:
    return []


def has_fresh_mark(state: State, market_id: int, params, timestamp_ms: int) -> bool:
    try:
        require_fresh_price(get_market(state, market_id), params, timestamp_ms)
    except RuleError:
        return False
    return True


def is_refused(state: State, r: Liquidate, params, timestamp_ms: int, max_makers: int) -> bool:
    """The refusals of rules.liquidation.process_liquidate after the market and
    the account (stale mark, no position, a healthy one, more makers than
    ``max_makers``, makers out of policy)."""
    if not has_fresh_mark(state, r.market, params, timestamp_ms):
        return True
    position = state.positions.get((r.account, r.market))
    if position is None or position.size == 0:
        return True
    mark = state.markets[r.market].mark_price
    if not is_liquidatable(position, mark, state.markets[r.market], params):
        return True
    return len(r.makers) > max_makers or bool(r.makers) and params.liquidation_policy not in BOOK_POLICIES


TAKEN, SHORT, REFUSED = "taken", "short", "refused"


def try_fund_takeover(state: State, rules: LiquidationRules, account: bytes, market_id: int, params, whole: bool,
                      fee_ppm: int | None = None) -> str:
    """A dry run (undone) of the backstop's takeover of the account's position
    (its funding settled as ``rules`` settle it: under v3 a deficit moves
    into its cost; ``process_backstop``: its liquidation size, or ``whole``; the
    liquidation fee unless ``fee_ppm``): REFUSED when its notional leaves 64
    bits (the rule refuses it), SHORT when it leaves the fund negative (rules
    v3 do not make it), else TAKEN."""
    snapshot, dirty = state.snapshot(), set(state.dirty)
    try:
        mark = state.markets[market_id].mark_price
        position = settle_liquidation_funding(state, rules, account, market_id, state.positions[(account, market_id)],
                                              params)
        qty = abs(position.size) if whole else compute_liquidation_size(position, mark, state.markets[market_id],
                                                                        params)
        try:
            process_backstop(state, account, position, qty, mark, params, fee_ppm)
        except RuleError:
            return REFUSED
        return TAKEN if state.globals.insurance_fund >= 0 else SHORT
    finally:
        state.revert(snapshot)
        state.dirty.clear()
        state.dirty.update(dirty)


def plan_liquidate(runner, r: Liquidate):
    """Witness: nothing for an unlisted market or the fund's account; a book
    policy's is prover.plan_book's (onestep_liquidate.vy forwards the record
    to onestep_book.vy); else the globals, the market and the position
    (read; a refused record stops there). The backstop: the fund's position
    (read), then if the fund takes the lots over the position, the market,
    the fund's position and the globals written; if it cannot pay, the
    position (its funding settled), the market and the globals written.
    The ladder policy: the auction (read; a position in auction that is not
    bankrupt is refused there), then the auction (deleted, if there was
    one), the position (its funding settled, its order epoch), the market
    and the globals written."""
    state, params = runner.state, get_market_params(runner.rules, r.market)
    if params is None or r.account == INSURANCE_ADDRESS:
        return nothing, ()
    if params.liquidation_policy == LIQUIDATION_BOOK_VAULT and not r.makers:
        return plan_vault_step(runner, r, params)  # onestep_liquidate.vy forwards these to onestep_vault_step.vy
    if params.liquidation_policy in BOOK_POLICIES:
        return plan_book(runner, r, params)  # onestep_liquidate.vy forwards these to onestep_book.vy
    rules = get_liquidation_rules(runner.rules)
    market, position = get_market_key(r.market), get_position_key(r.account, r.market)
    reads = [(GLOBAL_KEY, False), (market, False), (position, False)]
    if is_refused(state, r, params, runner.ctx.timestamp_ms, rules.max_makers):
        return (lambda ok, writes: reads), ()
    if params.liquidation_policy == LIQUIDATION_BACKSTOP:
        outcome = try_fund_takeover(state, rules, r.account, r.market, params, whole=False)
        if outcome == SHORT and not rules.named_ladder:
            raise PendingKind(f"the backstop's takeover leaves the fund negative: auto-deleveraging {RANKS}")
        fund = get_position_key(INSURANCE_ADDRESS, r.market)
        written = [(position, True), (market, True)] + ([(fund, True)] if outcome == TAKEN else [])
        return (lambda ok, writes: reads + ([(fund, False)] + written + [(GLOBAL_KEY, True)] if ok else [])), ()
    if not rules.named_ladder:
        raise PendingKind(f"Liquidate under the ladder policy (rules v{runner.rules.schema_version}) {RANKS}")
    auction = get_auction_key(r.account, r.market)
    return (lambda ok, writes: reads + [(auction, False)] + (
        ([(auction, True)] if auction in writes else []) + [(position, True), (market, True), (GLOBAL_KEY, True)]
        if ok else [])), ()


def plan_auction_end(runner, r: AuctionEnd):
    """Witness (onestep_auction_end.vy): nothing for an unlisted market; else
    the auction (read); for an ended one the position and the market (read);
    then, when it ends, the auction again (deleted); a position still
    liquidatable (rules v3: its lots stay, its funding settles, its orders
    are cancelled) reads the globals and writes the auction (deleted), the
    position, the market and the globals."""
    state, params = runner.state, get_market_params(runner.rules, r.market)
    if params is None:
        return nothing, ()
    auction_key = get_auction_key(r.account, r.market)
    auction = state.auctions.get((r.account, r.market))
    reads = [(auction_key, False)]
    kept: list[tuple[bytes, bool]] = []
    if auction is not None and runner.ctx.timestamp_ms >= auction.end_ms:
        position_key, market_key = get_position_key(r.account, r.market), get_market_key(r.market)
        reads += [(position_key, False), (market_key, False)]
        position = state.positions.get((r.account, r.market))
        if position is not None and position.size != 0 and has_fresh_mark(
                state, r.market, params, runner.ctx.timestamp_ms) and is_liquidatable(
                position, state.markets[r.market].mark_price, state.markets[r.market], params):
            if not get_liquidation_rules(runner.rules).named_ladder:
                raise PendingKind(f"AuctionEnd of a position still liquidatable under rules "
                                  f"v{runner.rules.schema_version}: the ladder {RANKS}")
            reads.append((GLOBAL_KEY, False))
            kept = [(position_key, True), (market_key, True), (GLOBAL_KEY, True)]
    return (lambda ok, writes: reads + ([(auction_key, True)] + kept if ok else [])), ()


def plan_forced_close(runner, r: ForcedClose):
    """Witness: the globals (read; written when the entry is served as a
    no-op: out of inbox order it is refused). In a listed market of a user:
    the globals and the position (read); a flat position: the position
    (written: its order epoch, its margin 0), the account when margin is
    released, the globals; an open one: the market (read), then on a stale
    mark (or a notional past 64 bits) the globals (the close undone); else
    the fund's position (read) and, when the fund cannot pay (rules v3: the
    close undone), the globals; taken over by the fund (every policy; the
    liquidation fee if liquidatable, none if healthy): the position, the
    market, the fund's position, the account when margin is left, the
    globals (written)."""
    state, rules, timestamp_ms = runner.state, runner.rules, runner.ctx.timestamp_ms
    if r.inbox_index != state.globals.inbox_count:
        return (lambda ok, writes: [(GLOBAL_KEY, False)]), ()
    params = get_market_params(rules, r.market) if isinstance(r.market, int) else None
    if params is None or r.account == INSURANCE_ADDRESS:
        return (lambda ok, writes: [(GLOBAL_KEY, True)]), ()
    if rules.schema_version == 1:
        raise PendingKind(f"ForcedClose in a listed market under rules v1 {CANCELS_ORDERS}")
    position_key, account_key = get_position_key(r.account, r.market), get_account_key(r.account)
    position = state.positions.get((r.account, r.market))
    reads = [(GLOBAL_KEY, False), (position_key, False)]
    if position is None or position.size == 0:
        released = [(account_key, True)] if position is not None and position.margin > 0 else []
        return (lambda ok, writes: reads + [(position_key, True)] + released + [(GLOBAL_KEY, True)]), ()
    market_key = get_market_key(r.market)
    reads.append((market_key, False))
    if not has_fresh_mark(state, r.market, params, timestamp_ms):
        return (lambda ok, writes: reads + [(GLOBAL_KEY, True)]), ()
    market = state.markets[r.market]
    liquidatable = is_liquidatable(position, market.mark_price, market, params)
    liquidation_rules = get_liquidation_rules(rules)
    named = liquidation_rules.named_ladder
    if not named and (params.liquidation_policy != LIQUIDATION_BACKSTOP or not liquidatable):
        raise PendingKind(f"ForcedClose of an open position through the ladder (rules v{rules.schema_version}) "
                          f"{RANKS}")
    outcome = try_fund_takeover(state, liquidation_rules, r.account, r.market, params, True,
                                None if liquidatable or not named else 0)
    if outcome == REFUSED:
        return (lambda ok, writes: reads + [(GLOBAL_KEY, True)]), ()
    fund = get_position_key(INSURANCE_ADDRESS, r.market)
    if outcome == SHORT:
        if not named:
            raise PendingKind(f"the backstop's takeover leaves the fund negative: auto-deleveraging {RANKS}")
        return (lambda ok, writes: reads + [(fund, False), (GLOBAL_KEY, True)]), ()
    return (lambda ok, writes: reads + [(fund, False), (position_key, True), (market_key, True), (fund, True)]
            + ([(account_key, True)] if account_key in writes else []) + [(GLOBAL_KEY, True)]), ()


PLANNERS = {Liquidate: plan_liquidate, AuctionEnd: plan_auction_end, ForcedClose: plan_forced_close}
