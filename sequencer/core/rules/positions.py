"""Isolated positions: the journaled writes every position-changing rule
shares (funding settlement, closing, filling, open interest, the insurance
fund), and the AdjustMargin rule.

Funding remainders are kept exactly in ``Market.funding_dust`` (units of
1/(S*1e6)) and swept whole into the insurance fund, so conservation holds
exactly (sequencer.core.invariants).
"""
from __future__ import annotations

import msgspec

from sequencer.core.markets import MarketParams
from sequencer.core.presets import PPM
from sequencer.core.records import AdjustMargin
from sequencer.core.rules.base import (Context, TradeError, get_market, hex_address, process_user_preamble,
                                       require, require_fresh_price, require_market_params)
from sequencer.core.rules.margin import ceil_div, is_initial_margin_kept
from sequencer.core.state import Position, State

replace = msgspec.structs.replace

INSURANCE_ADDRESS = bytes(20)
"""The insurance fund's pseudo-account: it holds the positions it takes over
as backstop (margin 0; their PnL and funding settle into Globals.insurance_fund)."""


def add_insurance(state: State, amount: int) -> None:
    if amount:
        g = state.globals
        state.set_globals(replace(g, insurance_fund=g.insurance_fund + amount))


def add_open_interest(state: State, market_id: int, delta: int) -> None:
    """Open interest is the sum of the long sizes."""
    if delta:
        market = state.markets[market_id]
        state.set_market(replace(market, open_interest=market.open_interest + delta))


def get_position(state: State, address: bytes, market_id: int) -> Position:
    position = state.positions.get((address, market_id))
    if position is None:
        return Position(funding_snapshot=get_market(state, market_id).funding_index)
    return position


def settle_funding(state: State, address: bytes, market_id: int, position: Position,
                   params: MarketParams) -> Position:
    """Pay the funding owed since the snapshot out of the margin (the fund's
    positions: out of the fund), rounded up; the exact remainder goes to
    Market.funding_dust and whole units of it to the insurance fund."""
    market = state.markets[market_id]
    index = market.funding_index
    numerator = position.size * (index - position.funding_snapshot)
    if numerator == 0:
        return position if position.funding_snapshot == index else replace(position, funding_snapshot=index)
    denominator = params.scale * PPM
    owed = ceil_div(numerator, denominator)
    dust = market.funding_dust + owed * denominator - numerator
    sweep = dust // denominator
    state.set_market(replace(market, funding_dust=dust - sweep * denominator))
    if address == INSURANCE_ADDRESS:
        add_insurance(state, sweep - owed)
        return replace(position, funding_snapshot=index)
    add_insurance(state, sweep)
    return replace(position, margin=position.margin - owed, funding_snapshot=index)


def apply_close(position: Position, qty: int, notional: int) -> tuple[Position, int]:
    """Close ``qty`` lots (0 < qty <= |size|) for the account's signed
    ``notional``; the cost removed is rounded up, so the realised PnL
    (returned) is rounded down.  Margin is left to the caller."""
    size = position.size
    removed = position.cost if qty == abs(size) else ceil_div(position.cost * qty, abs(size))
    new_size = size - qty if size > 0 else size + qty
    return replace(position, size=new_size, cost=position.cost - removed), -notional - removed


def apply_fill(position: Position, delta: int, notional: int) -> tuple[Position, int]:
    """Add ``delta`` lots bought (>0) or sold (<0) for the signed ``notional``;
    returns the position and the realised PnL (margin left to the caller)."""
    size = position.size
    if size == 0 or (size > 0) == (delta > 0):
        return replace(position, size=size + delta, cost=position.cost + notional), 0
    closing = min(abs(delta), abs(size))
    if closing == abs(delta):
        return apply_close(position, closing, notional)
    close_notional = notional * closing // abs(delta)
    position, realised = apply_close(position, closing, close_notional)
    return replace(position, size=size + delta, cost=notional - close_notional), realised


def close_and_release(state: State, address: bytes, position: Position, qty: int, notional: int,
                      free: int, side: str) -> tuple[Position, int]:
    """Close ``qty`` lots; realised PnL goes with the closed share of the
    margin to free collateral (never below 0: a loss stays in the position).
    Returns (position, free)."""
    share = position.margin if qty == abs(position.size) else position.margin * qty // abs(position.size)
    closed, realised = apply_close(position, qty, notional)
    released = min(max(0, share + realised), max(0, position.margin + realised))
    margin = position.margin + realised - released
    if margin < 0:
        raise TradeError(side, "below_bankruptcy",
                         f"fill would leave the position of {hex_address(address)} with margin {margin}: "
                         "the price is beyond its bankruptcy price (it can only be liquidated)")
    return replace(closed, margin=margin), free + released


def process_adjust_margin(state: State, r: AdjustMargin, timestamp_ms: int, ctx: Context) -> None:
    """Move collateral between free and one isolated position."""
    require(r.amount != 0 and abs(r.amount) <= ctx.preset.max_amount, "invalid_amount",
            f"amount must be a non-zero integer within +-{ctx.preset.max_amount}, got {r.amount}")
    params = require_market_params(ctx, r.market)
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    position = state.positions.get((r.account, r.market))
    # A position with no size, cost or margin is no position: its leaf is empty
    # in the state tree (commitment.compute_leaf), so a rule that told it apart
    # from an absent one would depend on state the state root does not commit
    # (the one-step could not re-execute it).  A flat position holding leftover
    # margin (after a whole liquidation) is one: its owner takes the margin back.
    require(position is not None and (position.size != 0 or position.cost != 0 or position.margin != 0),
            "no_position", f"{hex_address(r.account)} has no position in market {r.market}")
    position = settle_funding(state, r.account, r.market, position, params)
    if r.amount > 0:
        require(account.collateral >= r.amount, "insufficient_collateral",
                f"free collateral {account.collateral} is less than the amount {r.amount}")
    else:
        require(position.margin >= -r.amount, "insufficient_margin",
                f"position margin {position.margin} is less than {-r.amount}")
    position = replace(position, margin=position.margin + r.amount)
    require(position.margin >= 0, "insufficient_margin",
            f"funding owed leaves the position margin at {position.margin}")
    if r.amount < 0 and position.size:
        market = state.markets[r.market]
        mark = require_fresh_price(market, params, timestamp_ms)
        require(is_initial_margin_kept(position, mark, market, params), "insufficient_margin",
                "the position would fall below its initial margin requirement")
    state.set_account(r.account, replace(account, collateral=account.collateral - r.amount))
    state.set_position(r.account, r.market, position)


def absorb_funding_deficit(position: Position) -> Position:
    """Rules v3: funding owed beyond a position's margin moves into its cost.
    Its margin stays >= 0 (a position leaf holds no negative margin), while
    its equity, its bankruptcy price (margin - cost) and the money in the
    system are exactly as before: the deficit lowers its unrealised PnL
    instead, and the close that follows realises it (bad debt paid by the
    fund, or auto-deleveraging)."""
    if position.margin >= 0:
        return position
    return replace(position, cost=position.cost - position.margin, margin=0)
