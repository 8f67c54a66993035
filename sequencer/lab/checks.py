"""What must hold after every step against an adversary (issue 10), as pure
functions of a state (and the books): the lab reports them, the adversary
tests assert them.

- solvency: what users can claim (free collateral, the positive equities of
  their positions, the fee pool) never exceeds what the bridge holds for the
  L2 (deposits minus withdrawals);
- no position with negative equity at the mark;
- no liquidatable position left open while the oracle is fresh (stuck);
- the insurance fund holds no position;
- no book is crossed.
"""
from __future__ import annotations

from sequencer.core.markets import MarketParams
from sequencer.core.state import State

from sequencer.core.rules.margin import compute_equity, is_liquidatable
from sequencer.core.rules.positions import INSURANCE_ADDRESS


def iter_user_positions(state: State, market_id: int | None = None):
    """(address, market, position) of every open position that is not the insurance fund's."""
    for (address, m), position in state.positions.items():
        if position.size and address != INSURANCE_ADDRESS and (market_id is None or m == market_id):
            yield address, m, position


def compute_position_equity(state: State, markets: dict[int, MarketParams], market_id: int, position) -> int:
    market = state.markets[market_id]
    return compute_equity(position, market.mark_price, market, markets[market_id])


def compute_claims(state: State, markets: dict[int, MarketParams]) -> int:
    """Free collateral + fee pool + the positive equities of user positions at the mark."""
    claims = sum(a.collateral for a in state.accounts.values()) + state.globals.fee_pool
    for address, m, position in iter_user_positions(state):
        claims += max(0, compute_position_equity(state, markets, m, position))
    for (address, m), position in state.positions.items():
        if not position.size and address != INSURANCE_ADDRESS:
            claims += position.margin          # a flat position's leftover margin is the owner's
    return claims


def compute_solvency_gap(state: State, markets: dict[int, MarketParams]) -> int:
    """Claims minus what the bridge holds for the L2; > 0 means the users
    together can claim more than is there."""
    g = state.globals
    return compute_claims(state, markets) - (g.total_deposited - g.total_withdrawn)


def get_negative_equity_positions(state: State, markets: dict[int, MarketParams]) -> list[tuple[bytes, int, int]]:
    return [(address, m, equity) for address, m, position in iter_user_positions(state)
            if (equity := compute_position_equity(state, markets, m, position)) < 0]


def get_stuck_liquidations(state: State, markets: dict[int, MarketParams], timestamp_ms: int) -> list[tuple[bytes, int]]:
    """Liquidatable positions in markets whose oracle price is fresh at
    ``timestamp_ms``, except those in a liquidation auction that is still
    running (book+auction: its end sends what is unsold down the ladder)."""
    stuck = []
    for address, m, position in iter_user_positions(state):
        market, params = state.markets[m], markets[m]
        fresh = timestamp_ms - market.oracle_time_ms <= params.oracle_max_age_ms
        auction = state.auctions.get((address, m))
        if auction is not None and timestamp_ms < auction.end_ms:
            continue
        if fresh and is_liquidatable(position, market.mark_price, market, params):
            stuck.append((address, m))
    return stuck


def get_fund_positions(state: State) -> list[tuple[int, int]]:
    """(market, size) of every open position the insurance fund holds."""
    return [(m, p.size) for (address, m), p in state.positions.items() if address == INSURANCE_ADDRESS and p.size]


def get_crossed_books(exchange) -> list[tuple[int, int, int]]:
    """(market, best bid, best ask) of every crossed book."""
    crossed = []
    for market_id, book in sorted(exchange.books.items()):
        bid, ask = book.bids.best(), book.asks.best()
        if bid is not None and ask is not None and bid >= ask:
            crossed.append((market_id, bid, ask))
    return crossed
