"""Liquidate: a position below maintenance at the mark price, in a ladder
that always ends with the liquidated part closed (issue 10).  What the ladder
does is the market's ``liquidation_policy`` (sequencer.core.markets):

1. the owner's open orders in the market are cancelled (they cannot reopen it);
2. book first (book-first, book+auction, book+vault): the step (the whole
   position, or a partial step of a large solvent one) goes into the book as
   an immediate-or-cancel order no worse than the position's bankruptcy
   price (dYdX's fillable price): it fills the resting orders the record
   names (``Liquidate.makers``, at most ``MAX_LIQUIDATION_MAKERS``, best
   first), each maker checked like any fill; the liquidation fee goes to the
   insurance fund, capped by what the position has left;
3. what the book did not take: book-first closes it at the mark against the
   opposite positions ranked by profit x leverage; book+auction puts it up
   for a Dutch auction among keepers (sequencer.core.rules.auction); book+vault
   hands it to the backstop vault (sequencer.core.rules.vault), the rest as book-first;
4. bad debt is paid by the insurance fund, which never holds a position;
5. when the fund cannot pay it, the position is auto-deleveraged: closed at its
   bankruptcy price against the opposite positions ranked by profit x
   leverage (profitable ones first), none losing more (against the mark)
   than its margin and the profit of the lots it gives up.

Policy ``ladder`` skips step 2 (the rules before the book step); ``backstop``
is the rules before issue 10 (the fund takes the part over at the mark with
margin 0, else ADL at the bankruptcy price ranked by unrealised PnL with the
fund's own position last), kept so the liquidation lab can compare them."""
from __future__ import annotations

from fractions import Fraction
from typing import Callable

import msgspec

from sequencer.core.markets import (LIQUIDATION_BACKSTOP, LIQUIDATION_BOOK_AUCTION, LIQUIDATION_BOOK_VAULT,
                                    LIQUIDATION_LADDER, MarketParams)
from sequencer.core.presets import MAX_INT64, PPM
from sequencer.core.records import Deleverage, ForcedClose, Liquidate
from sequencer.core.rules.accounts import advance_inbox, process_inbox_index
from sequencer.core.rules.base import (Context, RuleError, TradeError, get_account_or_empty, get_market,
                                       get_market_params, hex_address, require, require_fresh_price,
                                       require_market_params)
from sequencer.core.rules.margin import (ceil_div, compute_equity, compute_equity_scaled, compute_fee,
                                         compute_funding_owed, compute_liquidation_size,
                                         compute_long_change, compute_maintenance, compute_unrealized_pnl,
                                         is_liquidatable, is_solvent_at)
from sequencer.core.rules.positions import (INSURANCE_ADDRESS, absorb_funding_deficit, add_insurance,
                                            add_open_interest, apply_close, apply_fill, close_and_release,
                                            get_position, settle_funding)
from sequencer.core.rules.orders import IMMEDIATE_OR_CANCEL
from sequencer.core.rules.trades import settle_fill
from sequencer.core.state import Auction, Market, Order, Position, State, get_order_epoch, is_empty_position

replace = msgspec.structs.replace

MAX_LIQUIDATION_MAKERS = 8
"""Resting orders one Liquidate record may fill under rules v1; a liquidation
that needs more continues in the next record."""
MAX_LIQUIDATION_MAKERS_V2 = 4
"""The same under rules v2: the one step that re-executes a Liquidate on L1
opens three leaves a maker (its order, account and position), read and
written, within the trace's 32 openings (docs/fraud-proofs.md)."""
MAX_DELEVERAGE_COUNTERPARTIES = 6
"""Opposite positions one Deleverage record may name (rules v3): the one step
that re-executes it on L1 reads and writes each one's position and account
leaf, four openings each, within the trace's 32 (docs/fraud-proofs.md)."""
BOOK_POLICIES = frozenset({2, 3, 4})
"""The policies that send the liquidation order into the book first."""


def process_backstop(state: State, address: bytes, position: Position, qty: int, mark: int,
                     params: MarketParams, fee_ppm: int | None = None) -> None:
    """The insurance fund takes ``qty`` lots over at the mark price (rounded
    against the liquidated account), charges the capped fee (``fee_ppm``, the
    liquidation fee unless given) and pays any bad debt."""
    long = position.size > 0
    gross = qty * mark
    notional = -(gross // params.scale) if long else ceil_div(gross, params.scale)
    require(abs(notional) <= MAX_INT64, "notional_overflow", "the liquidation notional leaves the 64-bit range")
    closed, realised = apply_close(position, qty, notional)
    margin = position.margin + realised
    fee_ppm = params.liquidation_fee_ppm if fee_ppm is None else fee_ppm
    fee = min(compute_fee(abs(notional), fee_ppm), max(0, margin))
    bad_debt = max(0, -margin)
    state.set_position(address, params.id, replace(closed, margin=margin - fee + bad_debt))
    add_open_interest(state, params.id, compute_long_change(position.size, closed.size))
    fund = settle_funding(state, INSURANCE_ADDRESS, params.id, get_position(state, INSURANCE_ADDRESS, params.id),
                          params)
    taken, fund_realised = apply_fill(fund, qty if long else -qty, -notional)
    state.set_position(INSURANCE_ADDRESS, params.id, taken)
    add_open_interest(state, params.id, compute_long_change(fund.size, taken.size))
    add_insurance(state, fee - bad_debt + fund_realised)


def rank_deleverage_counterparties(state: State, market_id: int, long: bool, mark: int,
                                   params: MarketParams) -> list[tuple[bytes, Position]]:
    """Positions on the ``long`` side, most profitable (unrealised PnL at the
    mark) first, ties by address; the insurance fund's own position last."""
    ranked = []
    fund = None
    for (address, m), position in state.positions.items():
        if m != market_id or position.size == 0 or (position.size > 0) != long:
            continue
        if address == INSURANCE_ADDRESS:
            fund = (address, position)
        else:
            ranked.append((-compute_unrealized_pnl(position, mark, params), address, position))
    ranked.sort(key=lambda item: (item[0], item[1]))
    result = [(address, position) for _, address, position in ranked]
    return result + [fund] if fund else result


def process_auto_deleverage(state: State, address: bytes, position: Position, mark: int,
                            params: MarketParams) -> None:
    """Close the whole position at its bankruptcy price (its margin ends at
    exactly 0) against the most profitable opposite positions."""
    qty, long = abs(position.size), position.size > 0
    bankrupt_notional = position.margin - position.cost  # the account's notional for closing it all
    closed, _ = apply_close(position, qty, bankrupt_notional)
    state.set_position(address, params.id, replace(closed, margin=0))
    add_open_interest(state, params.id, compute_long_change(position.size, 0))
    counterparties = [(other, counter, 0) for other, counter in
                      rank_deleverage_counterparties(state, params.id, not long, mark, params)]
    close_against(state, counterparties, qty, -bankrupt_notional, params,
                  failure=RuleError("deleverage_failed", "not enough opposite positions to deleverage against"))


def settle_liquidation_funding(state: State, rules: LiquidationRules, address: bytes, market_id: int,
                               position: Position, params: MarketParams) -> Position:
    """Settle the funding of the position a liquidation record acts on (v3:
    with any deficit moved into its cost, ``absorb_funding_deficit``)."""
    position = settle_funding(state, address, market_id, position, params)
    return absorb_funding_deficit(position) if rules.named_ladder else position


def deleverage_position(state: State, address: bytes, position: Position, qty: int, notional: int,
                        params: MarketParams, absorb_deficit: bool = False) -> None:
    position = settle_funding(state, address, params.id, position, params)
    if absorb_deficit:
        position = absorb_funding_deficit(position)
    old_size = position.size
    if address == INSURANCE_ADDRESS:
        position, realised = apply_close(position, qty, notional)
        add_insurance(state, realised)
    else:
        account = state.accounts[address]
        position, free = close_and_release(state, address, position, qty, notional, account.collateral, "")
        state.set_account(address, replace(account, collateral=free))
    state.set_position(address, params.id, position)
    add_open_interest(state, params.id, compute_long_change(old_size, position.size))


# --- the ladder (issue 10) -----------------------------------------------------------

def cancel_open_orders(state: State, address: bytes, market_id: int) -> None:
    """Cancel every open order of ``address`` in the market (through the
    state's per-owner index: the cost does not grow with the book)."""
    for nonce in state.get_open_order_nonces(address, market_id):
        state.set_order(address, nonce, replace(state.orders[(address, nonce)], cancelled=True))


def cancel_orders_v1(state: State, address: bytes, market_id: int, position: Position | None) -> Position | None:
    """Rules v1: every open order's cancelled flag is set, one leaf an order."""
    cancel_open_orders(state, address, market_id)
    return position


def cancel_orders_v2(state: State, address: bytes, market_id: int, position: Position | None) -> Position:
    """Rules v2: one write cancels every order of the owner in the market
    placed so far: the position's ``order_epoch`` becomes the last placement
    sequence number.  A position the tree does not hold (absent, or flat and
    empty in memory) starts from the empty leaf, as L1 reads it."""
    if is_empty_position(position):
        position = Position()
    position = replace(position, order_epoch=state.globals.order_count)
    state.set_position(address, market_id, position)
    return position


class LiquidationRules(msgspec.Struct, frozen=True):
    """What changed in the liquidation rules between log schema versions."""
    max_makers: int
    """Resting orders one Liquidate may name."""
    cancel_orders: Callable[[State, bytes, int, Position | None], Position | None]
    """Cancels the owner's orders in the market; returns the position to go on with."""
    ladder_after_makers: bool
    """v1: a record naming fewer than ``max_makers`` sends what the book left
    on in the same record; v2: only a record naming none does."""
    cancel_without_position: bool
    """v2: a forced close cancels the owner's orders even where the tree holds no position."""
    named_ladder: bool = False
    """v3: the ladder closes only against the opposite positions a Deleverage
    record names; a Liquidate or an AuctionEnd stops where v1 and v2 ranked
    every opposite position, and a forced close goes to the insurance fund."""
    absorb_vault_deficit: bool = False
    """v4: the vault's funding, settled when it takes lots over
    (rules.vault.take_vault_side), moves any deficit past its margin into its
    cost (``absorb_funding_deficit``); before, the vault's position could be
    written with a negative margin, which no position leaf holds."""


LIQUIDATION_V1 = LiquidationRules(MAX_LIQUIDATION_MAKERS, cancel_orders_v1, True, False)
LIQUIDATION_V2 = LiquidationRules(MAX_LIQUIDATION_MAKERS_V2, cancel_orders_v2, False, True)
LIQUIDATION_V3 = LiquidationRules(MAX_LIQUIDATION_MAKERS_V2, cancel_orders_v2, False, True, named_ladder=True)
LIQUIDATION_V4 = msgspec.structs.replace(LIQUIDATION_V3, absorb_vault_deficit=True)
LIQUIDATION_RULES = {1: LIQUIDATION_V1, 2: LIQUIDATION_V2, 3: LIQUIDATION_V3, 4: LIQUIDATION_V4}


def get_liquidation_rules(ctx: Context) -> LiquidationRules:
    """The liquidation rules of the context's log schema version."""
    return LIQUIDATION_RULES[ctx.schema_version]


def rank_by_profit_and_leverage(state: State, market_id: int, long: bool, mark: int,
                                params: MarketParams) -> list[tuple[bytes, Position, int]]:
    """User positions on the ``long`` side with equity of at least one quote
    unit at the mark, ranked by unrealised PnL x leverage (PnL x notional /
    equity), highest first (the profitable ones before the others), ties by
    address; with their S x equity."""
    market = state.markets[market_id]
    ranked = []
    for (address, m), position in state.positions.items():
        if m != market_id or position.size == 0 or (position.size > 0) != long or address == INSURANCE_ADDRESS:
            continue
        equity = compute_equity_scaled(position, mark, market, params)
        pnl = position.size * mark - position.cost * params.scale          # S x unrealised PnL
        if equity < params.scale:
            continue
        ranked.append((-Fraction(pnl * abs(position.size), equity), address, position, equity))
    ranked.sort(key=lambda item: (item[0], item[1]))
    return [(address, position, equity) for _, address, position, equity in ranked]


def close_against(state: State, counterparties: list[tuple[bytes, Position, int]], qty: int, total: int,
                  params: MarketParams, cap=None, failure: RuleError | None = None,
                  absorb_deficit: bool = False) -> None:
    """Close ``qty`` lots of the counterparties' positions, in order, for
    ``total`` (their signed notional together); ``cap(position)`` bounds the
    lots one counterparty takes (rules v3, ``absorb_deficit``: each one's
    funding deficit moves into its cost first).  Refused (``failure``, by
    default ``insolvent``) if they cannot take it all."""
    remaining, remaining_notional = qty, total
    for address, position, equity in counterparties:
        take = min(remaining, abs(position.size))
        if cap is not None:
            take = min(take, cap(position))
        if take <= 0:
            continue
        notional = remaining_notional if take == remaining else total * take // qty
        deleverage_position(state, address, position, take, notional, params, absorb_deficit)
        remaining, remaining_notional = remaining - take, remaining_notional - notional
        if remaining == 0:
            return
    raise failure or RuleError("insolvent", "the opposite positions cannot take the liquidated position over")


def process_close_at_mark(state: State, address: bytes, position: Position, qty: int, mark: int,
                          params: MarketParams, fee_ppm: int | None = None,
                          counterparties: list[tuple[bytes, Position, int]] | None = None,
                          absorb_deficit: bool = False) -> None:
    """Close ``qty`` lots at the mark (rounded against the account) against
    ``counterparties`` in order (by default the opposite positions ranked by
    profit x leverage); fee (``fee_ppm``, the
    liquidation fee unless given) to the insurance fund, capped by the margin
    left and by the equity at the mark of what is left (a partial step never
    leaves the rest below 0); bad debt paid by the fund."""
    long = position.size > 0
    gross = qty * mark
    notional = -(gross // params.scale) if long else ceil_div(gross, params.scale)
    require(abs(notional) <= MAX_INT64, "notional_overflow", "the liquidation notional leaves the 64-bit range")
    closed, realised = apply_close(position, qty, notional)
    margin = position.margin + realised
    fee_ppm = params.liquidation_fee_ppm if fee_ppm is None else fee_ppm
    left = compute_equity_scaled(replace(closed, margin=margin), mark, state.markets[params.id], params)
    fee = min(compute_fee(abs(notional), fee_ppm), max(0, margin), max(0, left // params.scale))
    bad_debt = max(0, -margin)
    state.set_position(address, params.id, replace(closed, margin=margin - fee + bad_debt))
    add_open_interest(state, params.id, compute_long_change(position.size, closed.size))
    add_insurance(state, fee - bad_debt)
    if counterparties is None:
        counterparties = rank_by_profit_and_leverage(state, params.id, not long, mark, params)
    close_against(state, counterparties, qty, -notional, params, absorb_deficit=absorb_deficit)


def make_deleverage_cap(position: Position, mark: int, market: Market, params: MarketParams) -> Callable[[Position], int]:
    """The lots one counterparty may take when ``position`` is closed at its
    bankruptcy price: ``t`` with t x gap / (S x qty) <= margin - 1 + t x
    profit per lot, so its margin stays >= 0 (never more than its equity)."""
    qty = abs(position.size)
    gap = abs(abs(position.margin - position.cost) * params.scale - mark * qty)  # S x qty x |bankruptcy - mark|

    def cap(counter: Position) -> int:
        size = abs(counter.size)
        profit = counter.size * mark - counter.cost * params.scale      # S x unrealised PnL
        excess = gap * size - profit * qty
        if excess <= 0:
            return size
        margin = counter.margin - compute_funding_owed(counter, market, params) - 1
        return max(0, margin) * params.scale * qty * size // excess // params.step_size * params.step_size

    return cap


def process_deleverage_bankrupt(state: State, address: bytes, position: Position, mark: int,
                                params: MarketParams) -> None:
    """Close the whole position at its bankruptcy price (its margin ends at
    exactly 0) against the opposite positions ranked by profit x leverage
    (the profitable ones first; the others only when those cannot take it
    all); none takes more lots than its margin and the profit of those lots
    can pay the price gap for (so never more than its equity)."""
    qty, long = abs(position.size), position.size > 0
    bankrupt_notional = position.margin - position.cost  # the account's notional for closing it all
    closed, _ = apply_close(position, qty, bankrupt_notional)
    state.set_position(address, params.id, replace(closed, margin=0))
    add_open_interest(state, params.id, compute_long_change(position.size, 0))
    cap = make_deleverage_cap(position, mark, state.markets[params.id], params)
    counterparties = rank_by_profit_and_leverage(state, params.id, not long, mark, params)
    close_against(state, counterparties, qty, -bankrupt_notional, params, cap)


def process_ladder(state: State, address: bytes, position: Position, qty: int, mark: int,
                   params: MarketParams, fee_ppm: int | None = None) -> None:
    """Close at the mark with the fund paying any bad debt; if the fund cannot,
    auto-deleverage at the bankruptcy price instead."""
    snapshot = state.snapshot()
    process_close_at_mark(state, address, position, qty, mark, params, fee_ppm)
    if state.globals.insurance_fund >= 0:
        state.commit(snapshot)
        return
    state.revert(snapshot)
    process_deleverage_bankrupt(state, address, position, mark, params)


def process_ladder_step(state: State, rules: LiquidationRules, address: bytes, position: Position, qty: int,
                        mark: int, params: MarketParams) -> None:
    """Where a Liquidate or an AuctionEnd reaches the ladder: rules v1 and v2
    run it here against every opposite position, ranked; rules v3 leave the
    lots in the position for Deleverage records, each naming its
    counterparties (process_deleverage), so that no record's witness grows
    with the market."""
    if not rules.named_ladder:
        process_ladder(state, address, position, qty, mark, params)


def process_fund_takeover(state: State, address: bytes, position: Position, qty: int, mark: int,
                          params: MarketParams, rules: LiquidationRules = LIQUIDATION_V1) -> None:
    """The rules before issue 10 (``MarketParams.fund_takes_over``).  Under
    rules v3 a takeover the fund cannot pay for is not made: the position
    waits for Deleverage records."""
    snapshot = state.snapshot()
    process_backstop(state, address, position, qty, mark, params)
    if state.globals.insurance_fund >= 0:
        state.commit(snapshot)
        return
    state.revert(snapshot)
    if rules.named_ladder:
        state.set_position(address, params.id, position)   # its funding is settled all the same
        return
    process_auto_deleverage(state, address, position, mark, params)
    require(state.globals.insurance_fund >= 0, "insolvent", "the insurance fund would go negative")


def process_liquidate(state: State, r: Liquidate, timestamp_ms: int, ctx: Context,
                      rules: LiquidationRules = LIQUIDATION_V1) -> None:
    params = require_market_params(ctx, r.market)
    require(r.account != INSURANCE_ADDRESS, "not_liquidatable", "the insurance fund is not liquidated")
    mark = require_fresh_price(get_market(state, r.market), params, timestamp_ms)
    position = state.positions.get((r.account, r.market))
    require(position is not None and position.size != 0, "no_position",
            f"{hex_address(r.account)} has no open position in market {r.market}")
    market = state.markets[r.market]
    require(is_liquidatable(position, mark, market, params), "not_liquidatable",
            f"equity {compute_equity(position, mark, market, params)} is not below maintenance "
            f"{compute_maintenance(position, mark, params)}")
    require(len(r.makers) <= rules.max_makers and (not r.makers or params.liquidation_policy in BOOK_POLICIES),
            "invalid_makers", f"a Liquidate names at most {rules.max_makers} makers, and only under a book-first "
                              "policy")
    position = settle_liquidation_funding(state, rules, r.account, r.market, position, params)
    qty = compute_liquidation_size(position, mark, state.markets[r.market], params)
    if params.liquidation_policy == LIQUIDATION_BACKSTOP:
        process_fund_takeover(state, r.account, position, qty, mark, params, rules)
        return
    position = rules.cancel_orders(state, r.account, r.market, position)
    if (r.account, r.market) in state.auctions:
        process_liquidate_in_auction(state, r.account, position, mark, params, rules)
        return
    if params.liquidation_policy == LIQUIDATION_LADDER:
        process_ladder_step(state, rules, r.account, position, qty, mark, params)
        return
    position, rest = process_book_step(state, r, position, qty, mark, params, timestamp_ms)
    book_exhausted = len(r.makers) < rules.max_makers if rules.ladder_after_makers else not r.makers
    if rest and position.size and book_exhausted:
        process_unfilled(state, ctx, r.account, position, min(rest, abs(position.size)), mark, params, timestamp_ms,
                         rules)


def process_liquidate_v2(state: State, r: Liquidate, timestamp_ms: int, ctx: Context) -> None:
    """Rules v2: at most ``MAX_LIQUIDATION_MAKERS_V2`` makers, the owner's
    orders in the market cancelled by its order epoch, and what the book did
    not take goes on (auction, vault, ladder) only in a record naming no
    makers: a record fills makers or goes down the ladder, never both, so the
    witness of either stays bounded.  The engine writes the next record while
    the position is still liquidatable."""
    process_liquidate(state, r, timestamp_ms, ctx, LIQUIDATION_V2)


def process_liquidate_v3(state: State, r: Liquidate, timestamp_ms: int, ctx: Context) -> None:
    """Rules v3: as v2, but a Liquidate stops where the ladder would close
    against ranked opposite positions (and a backstop takeover the fund
    cannot pay for is not made): Deleverage records go on from there."""
    process_liquidate(state, r, timestamp_ms, ctx, LIQUIDATION_V3)


def process_liquidate_in_auction(state: State, address: bytes, position: Position, mark: int,
                                 params: MarketParams, rules: LiquidationRules = LIQUIDATION_V1) -> None:
    """A position whose auction is running is left to it unless it went
    bankrupt at the mark meanwhile: then the auction ends and the whole
    position goes down the ladder (fund, ADL)."""
    market = state.markets[params.id]
    require(compute_equity_scaled(position, mark, market, params) < 0, "in_auction",
            f"{hex_address(address)}'s position is being auctioned (AuctionBid, AuctionEnd)")
    state.set_auction(address, params.id, None)
    process_ladder_step(state, rules, address, position, abs(position.size), mark, params)


# --- rules v3: the ladder against named counterparties (Deleverage) --------------------

def get_deleverage_counterparties(state: State, r: Deleverage, long: bool, mark: int,
                                  params: MarketParams) -> list[tuple[bytes, Position, int]]:
    """The positions the record names, checked as witnesses: each on the
    ``long`` side of the market, and a user's with equity of at least one
    quote unit at the mark (the insurance fund's own position may be named:
    a close at the mark unwinds what it took over).  Anything else refuses
    the record.  Their order is the engine's ranking (profit x leverage);
    the rule does not re-rank them."""
    count = len(r.counterparties)
    require(isinstance(r.counterparties, tuple) and 1 <= count <= MAX_DELEVERAGE_COUNTERPARTIES
            and all(isinstance(a, bytes) and len(a) == 20 for a in r.counterparties)
            and len(set(r.counterparties)) == count and r.account not in r.counterparties,
            "invalid_counterparties", f"a Deleverage names 1 to {MAX_DELEVERAGE_COUNTERPARTIES} distinct 20-byte "
                                      "counterparties, not the liquidated account")
    market = state.markets[params.id]
    named = []
    for address in r.counterparties:
        position = state.positions.get((address, params.id))
        what = f"counterparty {hex_address(address)}"
        require(position is not None and position.size != 0 and (position.size > 0) == long,
                "invalid_counterparty", f"{what} has no position on the other side in market {params.id}")
        equity = compute_equity_scaled(position, mark, market, params)
        require(address == INSURANCE_ADDRESS or equity >= params.scale, "invalid_counterparty",
                f"{what} has less than one quote unit of equity at the mark")
        named.append((address, position, equity))
    return named


def compute_takes(counterparties: list[tuple[bytes, Position, int]], qty: int, cap=None) -> int:
    """The lots ``close_against`` would close of ``qty``: each counterparty in
    order takes what is left, at most its size and ``cap``."""
    remaining = qty
    for _, position, _ in counterparties:
        take = min(remaining, abs(position.size))
        if cap is not None:
            take = min(take, cap(position))
        remaining -= max(0, take)
    return qty - remaining


def process_deleverage_slice(state: State, address: bytes, position: Position, mark: int, params: MarketParams,
                             counterparties: list[tuple[bytes, Position, int]]) -> None:
    """Auto-deleveraging against named counterparties: the lots they can take
    (each capped as in ``make_deleverage_cap``) close at the position's
    bankruptcy price.  Whole, the margin ends at exactly 0; a part closes for
    its share of the bankruptcy notional, rounded down, so the margin left is
    never below the part's share of it and the rest keeps its bankruptcy
    price.  The insurance fund's position takes no part (the fund is short)."""
    qty = abs(position.size)
    cap = make_deleverage_cap(position, mark, state.markets[params.id], params)
    users = [c for c in counterparties if c[0] != INSURANCE_ADDRESS]
    lots = compute_takes(users, qty, cap)
    require(lots > 0, "deleverage_failed", "the named counterparties can take no lot at the bankruptcy price")
    notional = (position.margin - position.cost) * lots // qty   # the account's share of its bankruptcy notional
    closed, realised = apply_close(position, lots, notional)
    margin = 0 if lots == qty else position.margin + realised
    state.set_position(address, params.id, replace(closed, margin=margin))
    add_open_interest(state, params.id, compute_long_change(position.size, closed.size))
    close_against(state, users, lots, -notional, params, cap, absorb_deficit=True)


def can_fund_pay_shortfall(state: State, position: Position, mark: int, params: MarketParams) -> bool:
    """Whether the insurance fund holds the whole position's bad debt at the
    mark (its negative equity).  Decided on the whole position, not on the
    step: a bankrupt position closed at the mark in several records would
    otherwise leave its margin to the first counterparties named and its bad
    debt to the last, so the order the sequencer names them in would decide
    who loses; at the bankruptcy price every lot loses alike."""
    shortfall = -compute_equity_scaled(position, mark, state.markets[params.id], params)
    return state.globals.insurance_fund * params.scale >= shortfall


def process_named_ladder(state: State, address: bytes, position: Position, qty: int, mark: int,
                         params: MarketParams, counterparties: list[tuple[bytes, Position, int]]) -> None:
    """The ladder over named counterparties: when the fund can pay the whole
    position's bad debt at the mark (``can_fund_pay_shortfall``), close at the
    mark what they can take of ``qty`` (the fund paying what this step
    leaves); else, or if the fund still ends short, auto-deleverage instead
    (``process_deleverage_slice``)."""
    if can_fund_pay_shortfall(state, position, mark, params):
        snapshot = state.snapshot()
        lots = compute_takes(counterparties, qty)
        process_close_at_mark(state, address, position, lots, mark, params, None, counterparties,
                              absorb_deficit=True)
        if state.globals.insurance_fund >= 0:
            state.commit(snapshot)
            return
        state.revert(snapshot)
    process_deleverage_slice(state, address, position, mark, params, counterparties)


def process_fund_unwind(state: State, position: Position, mark: int, params: MarketParams,
                        counterparties: list[tuple[bytes, Position, int]]) -> None:
    """The insurance fund's own position (what forced closes handed it) closes
    against the named users: at the mark, rounded in the fund's favour, its
    PnL into the fund, when the fund holds the whole position's loss at the
    mark (``can_fund_pay_shortfall``, the insurance fund standing as its
    margin: as for a liquidated position, the order users are named in does
    not decide who gains); else, or if the fund still ends short, at the
    fund's bankruptcy price within each one's cap, as a liquidated position
    is auto-deleveraged."""
    if can_fund_pay_shortfall(state, position, mark, params):
        snapshot = state.snapshot()
        close_fund_at_mark(state, position, mark, params, counterparties)
        if state.globals.insurance_fund >= 0:
            state.commit(snapshot)
            return
        state.revert(snapshot)
    cash = state.globals.insurance_fund
    process_deleverage_slice(state, INSURANCE_ADDRESS, absorb_funding_deficit(replace(position, margin=cash)), mark,
                             params, counterparties)
    left = state.positions[(INSURANCE_ADDRESS, params.id)]
    state.set_position(INSURANCE_ADDRESS, params.id, replace(left, margin=0))
    g = state.globals      # the margin left is the fund's cash, plus the dust the users' settlements swept in meanwhile
    state.set_globals(replace(g, insurance_fund=left.margin + g.insurance_fund - cash))


def close_fund_at_mark(state: State, position: Position, mark: int, params: MarketParams,
                       counterparties: list[tuple[bytes, Position, int]]) -> None:
    """Close what the named users can take of the fund's position at the
    mark, rounded in the fund's favour; its realised PnL into the fund."""
    lots = compute_takes(counterparties, abs(position.size))
    gross = lots * mark
    notional = -ceil_div(gross, params.scale) if position.size > 0 else gross // params.scale
    require(abs(notional) <= MAX_INT64, "notional_overflow", "the unwind notional leaves the 64-bit range")
    closed, realised = apply_close(position, lots, notional)
    state.set_position(INSURANCE_ADDRESS, params.id, closed)
    add_open_interest(state, params.id, compute_long_change(position.size, closed.size))
    add_insurance(state, realised)
    close_against(state, counterparties, lots, -notional, params, absorb_deficit=True)


def process_deleverage(state: State, r: Deleverage, timestamp_ms: int, ctx: Context) -> None:
    """Rules v3: one step of a liquidation's ladder against the counterparties
    the record names.  The position must be liquidatable at a fresh mark and
    not in auction; its funding settles and its orders in the market are
    cancelled (its order epoch), then its liquidation size (the whole of a
    bankrupt one) closes against them as far as they can take it.  A record
    of the insurance fund's own position unwinds it instead, at any time
    (``process_fund_unwind``): forced closes hand the fund positions, and
    this is how it gives them back rather than carry their risk."""
    params = require_market_params(ctx, r.market)
    mark = require_fresh_price(get_market(state, r.market), params, timestamp_ms)
    position = state.positions.get((r.account, r.market))
    require(position is not None and position.size != 0, "no_position",
            f"{hex_address(r.account)} has no open position in market {r.market}")
    market = state.markets[r.market]
    require(r.account == INSURANCE_ADDRESS or is_liquidatable(position, mark, market, params), "not_liquidatable",
            f"equity {compute_equity(position, mark, market, params)} is not below maintenance "
            f"{compute_maintenance(position, mark, params)}")
    counterparties = get_deleverage_counterparties(state, r, position.size < 0, mark, params)
    if r.account == INSURANCE_ADDRESS:
        position = settle_funding(state, r.account, r.market, position, params)
        process_fund_unwind(state, position, mark, params, counterparties)
        return
    require((r.account, r.market) not in state.auctions, "in_auction",
            f"{hex_address(r.account)}'s position is being auctioned (AuctionBid, AuctionEnd)")
    position = settle_liquidation_funding(state, LIQUIDATION_V3, r.account, r.market, position, params)
    position = cancel_orders_v2(state, r.account, r.market, position)
    qty = compute_liquidation_size(position, mark, state.markets[r.market], params)
    process_named_ladder(state, r.account, position, qty, mark, params, counterparties)


# --- step 2: the liquidation order into the book ---------------------------------------

def compute_liquidation_limit(position: Position, market: Market, params: MarketParams) -> int:
    """The worst price the position's liquidation order may fill at: its
    bankruptcy price (where its equity is 0; funding owed counted), rounded
    to the tick on the safe side (up for a long, which sells; down for a
    short).  0 when a short has no such price above 0 (nothing can fill)."""
    scale, size, tick = params.scale, position.size, params.tick_size
    net = position.margin - compute_funding_owed(position, market, params) - position.cost
    if size > 0:
        return max(tick, ceil_div(ceil_div(-net * scale, size), tick) * tick)
    return max(0, net * scale // -size // tick * tick)


def is_within_limit(long: bool, price: int, limit: int) -> bool:
    """Whether a resting order at ``price`` can take a liquidation order of a
    ``long`` (a sell, limit from below) or a short (a buy, limit from above)."""
    return price >= limit if long else 0 < price <= limit


def get_liquidation_maker(state: State, r: Liquidate, key: tuple[bytes, int], long: bool, limit: int,
                          previous: Order | None, timestamp_ms: int) -> Order:
    """The named resting order, checked as a witness: open, unexpired, resting,
    in the market, on the other side, within the limit, not the owner's, and
    after ``previous`` in price-time priority.  Anything else refuses the record."""
    order = state.orders.get(key)
    what = f"maker ({hex_address(key[0])}, {key[1]})"
    require(order is not None and not order.cancelled and order.filled < order.size
            and order.expiry >= timestamp_ms and order.time_in_force != IMMEDIATE_OR_CANCEL,
            "invalid_maker", f"{what} is not an open resting order")
    require(order.market == r.market and order.is_buy == long and key[0] != r.account, "invalid_maker",
            f"{what} is not on the other side of the liquidated position in market {r.market}")
    require(order.seq > get_order_epoch(state, key[0], r.market), "invalid_maker",
            f"{what} was cancelled by its owner's liquidation or forced close")
    require(is_within_limit(long, order.price, limit), "maker_beyond_bankruptcy",
            f"{what} at {order.price} is beyond the position's bankruptcy price {limit}")
    if previous is not None:
        better = order.price < previous.price if long else order.price > previous.price
        require(better or (order.price == previous.price and order.seq > previous.seq), "makers_out_of_order",
                f"{what} comes before the maker named ahead of it in price-time priority")
    return order


def process_book_step(state: State, r: Liquidate, position: Position, qty: int, mark: int,
                      params: MarketParams, timestamp_ms: int) -> tuple[Position, int]:
    """Fill up to ``qty`` lots of the position against the named makers in
    order; a maker whose own side of the fill fails (its margin, its bounds,
    reduce-only) is passed over.  Returns the position and the lots left."""
    market = state.markets[params.id]
    limit = compute_liquidation_limit(position, market, params)
    long, rest, previous = position.size > 0, qty, None
    for key in r.makers:
        order = get_liquidation_maker(state, r, key, long, limit, previous, timestamp_ms)
        previous = order
        fill = min(rest, order.size - order.filled)
        if fill <= 0:
            continue
        snapshot = state.snapshot()
        try:
            position = fill_liquidation_order(state, r.account, position, key, order, fill, mark, params)
        except RuleError:
            state.revert(snapshot)
            continue
        state.commit(snapshot)
        rest -= fill
    return position, rest


def fill_liquidation_order(state: State, address: bytes, position: Position, key: tuple[bytes, int],
                           order: Order, fill: int, mark: int, params: MarketParams) -> Position:
    """One fill of the liquidation order at the maker's price: the maker's side
    settles like any fill (maker fee; reduce-only, margin and bounds checked),
    the liquidated side closes ``fill`` lots at that price."""
    long = position.size > 0
    maker_fee, maker_oi = settle_fill(state, key[0], order, -fill if not long else fill, order.price,
                                      params.maker_fee_ppm, params, mark, "maker")
    position = close_liquidated_slice(state, address, position, fill, order.price, mark, params)
    add_open_interest(state, params.id, maker_oi)
    state.set_order(key[0], key[1], replace(order, filled=order.filled + fill))
    to_fund = maker_fee * params.insurance_fee_share_ppm // PPM
    g = state.globals
    state.set_globals(replace(g, fee_pool=g.fee_pool + maker_fee - to_fund, insurance_fund=g.insurance_fund + to_fund))
    return position


def close_liquidated_slice(state: State, address: bytes, position: Position, lots: int, price: int, mark: int,
                           params: MarketParams) -> Position:
    """Close ``lots`` of a liquidated position at ``price`` (a book fill or an
    auction bid), never beyond its bankruptcy price: its realised PnL stays
    in its margin and the liquidation fee, capped by what the position has
    left (its margin and its equity at the mark), goes to the insurance fund."""
    market = state.markets[params.id]
    if not is_solvent_at(position, price, market, params):
        raise TradeError("", "below_bankruptcy", f"a close at {price} is beyond the bankruptcy price of "
                                                 f"{hex_address(address)}'s position")
    long = position.size > 0
    gross = lots * price
    notional = -(gross // params.scale) if long else ceil_div(gross, params.scale)
    closed, realised = apply_close(position, lots, notional)
    margin = position.margin + realised
    if margin < 0:
        raise TradeError("", "below_bankruptcy", "the close would leave the position's margin negative")
    left = max(0, compute_equity_scaled(replace(closed, margin=margin), mark, market, params) // params.scale)
    fee = min(compute_fee(abs(notional), params.liquidation_fee_ppm), margin, left)
    closed = replace(closed, margin=margin - fee)
    state.set_position(address, params.id, closed)
    add_open_interest(state, params.id, compute_long_change(position.size, closed.size))
    add_insurance(state, fee)
    return closed


# --- step 3: what the book did not take --------------------------------------------------

def process_unfilled(state: State, ctx: Context, address: bytes, position: Position, lots: int, mark: int,
                     params: MarketParams, timestamp_ms: int, rules: LiquidationRules = LIQUIDATION_V1) -> None:
    """The lots the book did not take, by policy: the auction (a solvent
    position), the vault, or the ladder's close at the mark (fund, ADL)."""
    policy = params.liquidation_policy
    market = state.markets[params.id]
    solvent = compute_equity_scaled(position, mark, market, params) >= 0
    start, end = compute_auction_prices(position, mark, market, params)
    if policy == LIQUIDATION_BOOK_AUCTION and solvent and start != end:
        start_auction(state, address, position, lots, mark, params, timestamp_ms)
        return
    if policy == LIQUIDATION_BOOK_VAULT:
        taken = process_vault_step(state, ctx, address, position, lots, mark, params)
        position, lots = state.positions[(address, params.id)], lots - taken
        if not lots or not position.size:
            return
    process_ladder_step(state, rules, address, position, min(lots, abs(position.size)), mark, params)


def process_vault_step(state: State, ctx: Context, address: bytes, position: Position, lots: int, mark: int,
                       params: MarketParams) -> int:
    """The backstop vault takes what it can (sequencer.core.rules.vault,
    /tmp/team/vault.md); undone when its bad debt would leave the fund negative."""
    try:
        from sequencer.core.rules.vault import process_vault_takeover
    except ImportError:
        raise RuleError("vault_unavailable", "this executor has no backstop vault (policy book+vault)") from None
    snapshot = state.snapshot()
    taken = process_vault_takeover(state, ctx, address, position, lots, mark, params,
                                   absorb_deficit=get_liquidation_rules(ctx).absorb_vault_deficit)
    if state.globals.insurance_fund < 0:
        state.revert(snapshot)
        return 0
    state.commit(snapshot)
    return taken


def compute_auction_prices(position: Position, mark: int, market: Market, params: MarketParams) -> tuple[int, int]:
    """(start, end) of an auction of the position now: the mark rounded to the
    tick in the owner's favour, and its bankruptcy price; equal when there is
    nothing to decay (the ladder then takes the lots at once)."""
    long, tick = position.size > 0, params.tick_size
    end = compute_liquidation_limit(position, market, params)
    start = ceil_div(mark, tick) * tick if long else max(tick, mark // tick * tick)
    return (max(start, end), end) if long else (min(start, end), end)


def start_auction(state: State, address: bytes, position: Position, lots: int, mark: int, params: MarketParams,
                  timestamp_ms: int) -> None:
    """Put ``lots`` of a solvent position up for a Dutch auction: from the mark
    (rounded to the tick in the owner's favour) to the bankruptcy price over
    the market's auction duration (sequencer.core.rules.auction)."""
    start, end = compute_auction_prices(position, mark, state.markets[params.id], params)
    state.set_auction(address, params.id, Auction(lots, start, end, timestamp_ms,
                                                  timestamp_ms + params.auction_duration_ms))


# --- forced close (the bridge's forceClose, inbox kind 3) -------------------------------

def process_forced_close(state: State, r: ForcedClose, timestamp_ms: int, ctx: Context,
                         rules: LiquidationRules = LIQUIDATION_V1) -> None:
    """Close the account's whole position in the market at the mark and free
    its margin (docs/engine.md, "Forced close").  In inbox order, once each;
    it never fails once in order and never blocks the inbox: whatever cannot
    be closed (unknown market, no position, no fresh mark, no counterparty)
    leaves the state as it was and the request is served all the same."""
    process_inbox_index(state, r.inbox_index)
    snapshot = state.snapshot()
    try:
        close_forced_position(state, r.account, r.market, timestamp_ms, ctx, rules)
    except RuleError:
        state.revert(snapshot)
    else:
        state.commit(snapshot)
    advance_inbox(state, r)


def process_forced_close_v2(state: State, r: ForcedClose, timestamp_ms: int, ctx: Context) -> None:
    """Rules v2: the owner's orders in the market are cancelled by its order
    epoch, whether or not the tree holds a position there."""
    process_forced_close(state, r, timestamp_ms, ctx, LIQUIDATION_V2)


def process_forced_close_v3(state: State, r: ForcedClose, timestamp_ms: int, ctx: Context) -> None:
    """Rules v3: the insurance fund takes the whole position over at the mark
    (a healthy one without a fee, a liquidatable one with the liquidation
    fee), so that a forced close depends on no choice of counterparties the
    operator could leave empty; when the fund cannot pay its bad debt the
    request is served with the state as it was."""
    process_forced_close(state, r, timestamp_ms, ctx, LIQUIDATION_V3)


def close_forced_position(state: State, address: bytes, market_id: int, timestamp_ms: int, ctx: Context,
                          rules: LiquidationRules = LIQUIDATION_V1) -> None:
    """Cancel the owner's orders in the market, close the position whole
    through the ladder (a liquidatable one with the liquidation fee, a healthy
    one without a fee), then move what margin is left to free collateral."""
    params = get_market_params(ctx, market_id) if isinstance(market_id, int) else None
    if params is None or not isinstance(address, bytes) or len(address) != 20 or address == INSURANCE_ADDRESS:
        return
    position = state.positions.get((address, market_id))
    if position is None and not rules.cancel_without_position:
        return
    position = rules.cancel_orders(state, address, market_id, position)
    if position.size:
        market = state.markets[market_id]
        mark = require_fresh_price(market, params, timestamp_ms)
        liquidatable = is_liquidatable(position, mark, market, params)
        position = settle_liquidation_funding(state, rules, address, market_id, position, params)
        if rules.named_ladder:
            process_backstop(state, address, position, abs(position.size), mark, params, None if liquidatable else 0)
            require(state.globals.insurance_fund >= 0, "insolvent", "the insurance fund cannot pay the bad debt")
        elif liquidatable and params.liquidation_policy == LIQUIDATION_BACKSTOP:
            process_fund_takeover(state, address, position, abs(position.size), mark, params)
        else:
            process_ladder(state, address, position, abs(position.size), mark, params,
                           None if liquidatable else 0)
    release_margin(state, address, market_id)


def release_margin(state: State, address: bytes, market_id: int) -> None:
    """Move the margin of a closed (size 0) position to free collateral."""
    position = state.positions.get((address, market_id)) or Position()
    if position.size == 0 and position.margin > 0:
        account = get_account_or_empty(state, address)
        state.set_account(address, replace(account, collateral=account.collateral + position.margin))
        state.set_position(address, market_id, replace(position, margin=0))
