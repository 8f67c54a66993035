"""The liquidation auction (policy book+auction, issue 10): what the book did
not take of a solvent liquidation is sold to keepers in a Dutch auction
(Maker's Clipper): the price moves linearly from the mark at the start
toward the position's bankruptcy price over the market's
``auction_duration_ms``; a keeper's ``AuctionBid`` takes lots at the current
price; at the end, ``AuctionEnd`` sends what is unsold down the ladder
(the fund pays bad debt, ADL).  The ladder starts an auction
(``liquidation.start_auction``); the lots stay in the owner's position
until a bid takes them, so the insurance fund never holds them.

The price is rounded to the tick in the owner's favour (up when a long is
sold, down when a short is bought back) and is never beyond the bankruptcy
price, so an auction sale never leaves bad debt for the fund."""
from __future__ import annotations

import msgspec

from sequencer.core.markets import MarketParams
from sequencer.core.records import AuctionBid, AuctionEnd
from sequencer.core.rules.base import (Context, get_market, hex_address, process_user_preamble, require,
                                       require_fresh_price, require_market_params)
from sequencer.core.rules.liquidation import (LIQUIDATION_V1, LIQUIDATION_V2, LIQUIDATION_V3, LiquidationRules,
                                              close_liquidated_slice, process_ladder_step,
                                              settle_liquidation_funding)
from sequencer.core.rules.margin import ceil_div, compute_equity_scaled, is_liquidatable
from sequencer.core.rules.positions import INSURANCE_ADDRESS, add_open_interest, settle_funding
from sequencer.core.rules.trades import settle_fill
from sequencer.core.state import Auction, Order, State

replace = msgspec.structs.replace


def compute_auction_price(auction: Auction, timestamp_ms: int, params: MarketParams) -> int:
    """The price at ``timestamp_ms``: start + (end - start) x elapsed / duration,
    elapsed clamped to the auction, rounded to the tick toward the start price
    (the owner's favour: the keeper never gets more than the decay so far)."""
    duration = auction.end_ms - auction.start_ms
    elapsed = min(max(0, timestamp_ms - auction.start_ms), duration)
    numerator = auction.start_price * duration + (auction.end_price - auction.start_price) * elapsed
    tick = params.tick_size
    if auction.end_price <= auction.start_price:         # a long is sold: the price falls
        return ceil_div(numerator, duration * tick) * tick
    return numerator // (duration * tick) * tick          # a short is bought back: the price rises


def process_auction_bid(state: State, r: AuctionBid, timestamp_ms: int, ctx: Context) -> None:
    """A keeper takes ``r.size`` lots at the current auction price if it is no
    worse than ``r.price`` for it: the keeper's side is an ordinary fill at
    its leverage (collateral, initial margin and bounds checked, no fee), the
    owner's side closes at that price with the capped liquidation fee."""
    params = require_market_params(ctx, r.market)
    require(len(r.account) == 20 and len(r.owner) == 20, "invalid_address", "account and owner must be 20 bytes")
    require(r.account not in (r.owner, INSURANCE_ADDRESS), "invalid_bidder",
            "the owner and the insurance fund cannot bid in the auction")
    require(1 <= r.leverage <= params.max_leverage, "invalid_leverage",
            f"leverage {r.leverage} must be within 1..{params.max_leverage}")
    require(0 < r.size <= ctx.preset.max_amount and r.size % params.step_size == 0 and r.price > 0,
            "invalid_size", f"size must be a positive multiple of the step size {params.step_size}, price positive")
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    state.set_account(r.account, account)
    auction = state.auctions.get((r.owner, r.market))
    require(auction is not None, "no_auction", f"no auction of {hex_address(r.owner)}'s position in {r.market}")
    require(timestamp_ms < auction.end_ms, "auction_over", f"the auction ended at {auction.end_ms} ms")
    mark = require_fresh_price(get_market(state, r.market), params, timestamp_ms)
    position = settle_funding(state, r.owner, r.market, state.positions[(r.owner, r.market)], params)
    require(r.size <= min(auction.size, abs(position.size)), "auction_size",
            f"the auction has {min(auction.size, abs(position.size))} lots left, the bid is for {r.size}")
    price = compute_auction_price(auction, timestamp_ms, params)
    long = position.size > 0
    require(price <= r.price if long else price >= r.price, "price_outside_limit",
            f"the auction price {price} is worse than the bid's limit {r.price}")
    keeper = Order(b"", r.size, market=r.market, is_buy=long, price=price, leverage=r.leverage)
    _, keeper_oi = settle_fill(state, r.account, keeper, r.size if long else -r.size, price, 0, params, mark, "taker")
    close_liquidated_slice(state, r.owner, position, r.size, price, mark, params)
    add_open_interest(state, r.market, keeper_oi)
    left = auction.size - r.size
    state.set_auction(r.owner, r.market, replace(auction, size=left) if left else None)


def process_auction_end(state: State, r: AuctionEnd, timestamp_ms: int, ctx: Context,
                        rules: LiquidationRules = LIQUIDATION_V1) -> None:
    """After the auction's end: what it did not sell goes down the ladder (the
    whole position if it went bankrupt) while the position is still
    liquidatable at a fresh mark; a position that recovered keeps it."""
    params = require_market_params(ctx, r.market)
    auction = state.auctions.get((r.account, r.market))
    require(auction is not None, "no_auction", f"no auction of {hex_address(r.account)}'s position in {r.market}")
    require(timestamp_ms >= auction.end_ms, "auction_live", f"the auction runs until {auction.end_ms} ms")
    state.set_auction(r.account, r.market, None)
    position = state.positions.get((r.account, r.market))
    if position is None or position.size == 0:
        return
    market = state.markets[r.market]
    mark = require_fresh_price(market, params, timestamp_ms)
    if not is_liquidatable(position, mark, market, params):
        return
    position = settle_liquidation_funding(state, rules, r.account, r.market, position, params)
    position = rules.cancel_orders(state, r.account, r.market, position)
    bankrupt = compute_equity_scaled(position, mark, market, params) < 0
    lots = abs(position.size) if bankrupt else min(auction.size, abs(position.size))
    process_ladder_step(state, rules, r.account, position, lots, mark, params)


def process_auction_end_v2(state: State, r: AuctionEnd, timestamp_ms: int, ctx: Context) -> None:
    """Rules v2: the owner's orders in the market are cancelled by its order epoch."""
    process_auction_end(state, r, timestamp_ms, ctx, LIQUIDATION_V2)


def process_auction_end_v3(state: State, r: AuctionEnd, timestamp_ms: int, ctx: Context) -> None:
    """Rules v3: what the auction did not sell stays in the position, whose
    orders are cancelled; the engine's next Liquidate (a new auction, or
    Deleverage records down the ladder) goes on from there."""
    process_auction_end(state, r, timestamp_ms, ctx, LIQUIDATION_V3)
