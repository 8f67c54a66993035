"""Funding: when a market's next FundingTick is due."""
from __future__ import annotations

from sequencer.core.markets import MarketParams
from sequencer.core.state import Market


def get_due_funding_time(market: Market | None, params: MarketParams, timestamp_ms: int) -> int | None:
    """The funding boundary a FundingTick may settle at ``timestamp_ms``: the
    last interval boundary, when it is after the market's funding time and the
    oracle price is there and fresh (funding waits for a fresh one); else None."""
    if market is None or market.oracle_price == 0:
        return None
    boundary = timestamp_ms // params.funding_interval_ms * params.funding_interval_ms
    if boundary <= market.funding_time_ms or timestamp_ms - market.oracle_time_ms > params.oracle_max_age_ms:
        return None
    return boundary
