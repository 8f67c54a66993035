"""Liquidate: a position below maintenance at the mark price, in a ladder
that always ends with the liquidated part closed (issue 10):

1. the owner's open orders in the market are cancelled (they cannot reopen it);
2. a solvent position (equity >= 0 at the mark) is reduced by a partial step
   (the whole when small) at the mark against the opposite positions ranked
   by profit x leverage (nobody loses against the mark); the fee, capped by
   what the position has left, goes to the insurance fund;
3. a bankrupt position is closed whole at the mark the same way and the
   insurance fund pays its bad debt;
4. when the fund cannot pay it, the position is auto-deleveraged: closed at its
   bankruptcy price against the opposite positions ranked by profit x
   leverage (profitable ones first), none losing more (against the mark)
   than its margin and the profit of the lots it gives up.
The insurance fund never holds a position.

``MarketParams.fund_takes_over`` selects the rules before issue 10 instead
(the fund takes the part over at the mark with margin 0, else ADL at the
bankruptcy price ranked by unrealised PnL with the fund's own position
last), kept so the liquidation lab can compare them."""
from __future__ import annotations

from fractions import Fraction

import msgspec

from sequencer.core.markets import MarketParams
from sequencer.core.presets import MAX_INT64
from sequencer.core.records import ForcedClose, Liquidate
from sequencer.core.rules.accounts import advance_inbox, process_inbox_index
from sequencer.core.rules.base import (Context, RuleError, get_account_or_empty, get_market, get_market_params,
                                       hex_address, require, require_fresh_price, require_market_params)
from sequencer.core.rules.margin import (ceil_div, compute_equity, compute_equity_scaled, compute_fee,
                                         compute_funding_owed, compute_liquidation_size,
                                         compute_long_change, compute_maintenance, compute_unrealized_pnl,
                                         is_liquidatable)
from sequencer.core.rules.positions import (INSURANCE_ADDRESS, add_insurance, add_open_interest, apply_close,
                                            apply_fill, close_and_release, get_position, settle_funding)
from sequencer.core.state import Position, State

replace = msgspec.structs.replace


def process_backstop(state: State, address: bytes, position: Position, qty: int, mark: int,
                     params: MarketParams) -> None:
    """The insurance fund takes ``qty`` lots over at the mark price (rounded
    against the liquidated account), charges the capped fee and pays any bad debt."""
    long = position.size > 0
    gross = qty * mark
    notional = -(gross // params.scale) if long else ceil_div(gross, params.scale)
    require(abs(notional) <= MAX_INT64, "notional_overflow", "the liquidation notional leaves the 64-bit range")
    closed, realised = apply_close(position, qty, notional)
    margin = position.margin + realised
    fee = min(compute_fee(abs(notional), params.liquidation_fee_ppm), max(0, margin))
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


def deleverage_position(state: State, address: bytes, position: Position, qty: int, notional: int,
                        params: MarketParams) -> None:
    position = settle_funding(state, address, params.id, position, params)
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
    """Cancel every open order of ``address`` in the market (scans the orders table)."""
    keys = [key for key, order in state.orders.items()
            if key[0] == address and order.market == market_id and not order.cancelled and order.filled < order.size]
    for key in keys:
        state.set_order(key[0], key[1], replace(state.orders[key], cancelled=True))


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
                  params: MarketParams, cap=None, failure: RuleError | None = None) -> None:
    """Close ``qty`` lots of the counterparties' positions, in order, for
    ``total`` (their signed notional together); ``cap(position)`` bounds the
    lots one counterparty takes.  Refused (``failure``, by default
    ``insolvent``) if they cannot take it all."""
    remaining, remaining_notional = qty, total
    for address, position, equity in counterparties:
        take = min(remaining, abs(position.size))
        if cap is not None:
            take = min(take, cap(position))
        if take <= 0:
            continue
        notional = remaining_notional if take == remaining else total * take // qty
        deleverage_position(state, address, position, take, notional, params)
        remaining, remaining_notional = remaining - take, remaining_notional - notional
        if remaining == 0:
            return
    raise failure or RuleError("insolvent", "the opposite positions cannot take the liquidated position over")


def process_close_at_mark(state: State, address: bytes, position: Position, qty: int, mark: int,
                          params: MarketParams, fee_ppm: int | None = None) -> None:
    """Close ``qty`` lots at the mark (rounded against the account) against
    the opposite positions ranked by profit x leverage; fee (``fee_ppm``, the
    liquidation fee unless given) to the insurance fund, capped by the margin
    left; bad debt paid by the fund."""
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
    add_insurance(state, fee - bad_debt)
    counterparties = rank_by_profit_and_leverage(state, params.id, not long, mark, params)
    close_against(state, counterparties, qty, -notional, params)


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
    gap = abs(abs(bankrupt_notional) * params.scale - mark * qty)   # S x qty x |bankruptcy price - mark|
    market = state.markets[params.id]

    def cap(counter: Position) -> int:
        """Lots ``t`` with t x gap / (S x qty) <= margin - 1 + t x profit per lot: its margin stays >= 0."""
        size = abs(counter.size)
        profit = counter.size * mark - counter.cost * params.scale      # S x unrealised PnL
        excess = gap * size - profit * qty
        if excess <= 0:
            return size
        margin = counter.margin - compute_funding_owed(counter, market, params) - 1
        return max(0, margin) * params.scale * qty * size // excess // params.step_size * params.step_size

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


def process_fund_takeover(state: State, address: bytes, position: Position, qty: int, mark: int,
                          params: MarketParams) -> None:
    """The rules before issue 10 (``MarketParams.fund_takes_over``)."""
    snapshot = state.snapshot()
    process_backstop(state, address, position, qty, mark, params)
    if state.globals.insurance_fund >= 0:
        state.commit(snapshot)
        return
    state.revert(snapshot)
    process_auto_deleverage(state, address, position, mark, params)
    require(state.globals.insurance_fund >= 0, "insolvent", "the insurance fund would go negative")


def process_liquidate(state: State, r: Liquidate, timestamp_ms: int, ctx: Context) -> None:
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
    position = settle_funding(state, r.account, r.market, position, params)
    qty = compute_liquidation_size(position, mark, state.markets[r.market], params)
    if params.fund_takes_over:
        process_fund_takeover(state, r.account, position, qty, mark, params)
        return
    cancel_open_orders(state, r.account, r.market)
    process_ladder(state, r.account, position, qty, mark, params)


# --- forced close (the bridge's forceClose, inbox kind 3) -------------------------------

def process_forced_close(state: State, r: ForcedClose, timestamp_ms: int, ctx: Context) -> None:
    """Close the account's whole position in the market at the mark and free
    its margin (docs/engine.md, "Forced close").  In inbox order, once each;
    it never fails once in order and never blocks the inbox: whatever cannot
    be closed (unknown market, no position, no fresh mark, no counterparty)
    leaves the state as it was and the request is served all the same."""
    process_inbox_index(state, r.inbox_index)
    snapshot = state.snapshot()
    try:
        close_forced_position(state, r.account, r.market, timestamp_ms, ctx)
    except RuleError:
        state.revert(snapshot)
    else:
        state.commit(snapshot)
    advance_inbox(state, r)


def close_forced_position(state: State, address: bytes, market_id: int, timestamp_ms: int, ctx: Context) -> None:
    """Cancel the owner's orders in the market, close the position whole
    through the ladder (a liquidatable one with the liquidation fee, a healthy
    one without a fee), then move what margin is left to free collateral."""
    params = get_market_params(ctx, market_id) if isinstance(market_id, int) else None
    if params is None or not isinstance(address, bytes) or address == INSURANCE_ADDRESS:
        return
    position = state.positions.get((address, market_id))
    if position is None:
        return
    cancel_open_orders(state, address, market_id)
    if position.size:
        market = state.markets[market_id]
        mark = require_fresh_price(market, params, timestamp_ms)
        liquidatable = is_liquidatable(position, mark, market, params)
        position = settle_funding(state, address, market_id, position, params)
        if liquidatable and params.fund_takes_over:
            process_fund_takeover(state, address, position, abs(position.size), mark, params)
        else:
            process_ladder(state, address, position, abs(position.size), mark, params,
                           None if liquidatable else 0)
    release_margin(state, address, market_id)


def release_margin(state: State, address: bytes, market_id: int) -> None:
    """Move the margin of a closed (size 0) position to free collateral."""
    position = state.positions[(address, market_id)]
    if position.size == 0 and position.margin > 0:
        account = get_account_or_empty(state, address)
        state.set_account(address, replace(account, collateral=account.collateral + position.margin))
        state.set_position(address, market_id, replace(position, margin=0))
