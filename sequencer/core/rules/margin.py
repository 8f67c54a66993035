"""Margin maths: pure ``compute_*`` / ``is_*`` functions of one position, its
market and the market's parameters (integers; exact comparisons by
cross-multiplication).

Units: size in base lots, price in quote units per whole base unit,
``S = 10**base_decimals``; a notional is ``size * price / S`` quote units.
The funding index is in ppm x quote units per whole base unit, so a position
owes ``size * (F - F_snap) / (S * 1e6)``.  Rounding always favours the system
(requirements and payments up, payouts down).
"""
from __future__ import annotations

from sequencer.core.markets import MarketParams
from sequencer.core.presets import PPM
from sequencer.core.state import Market, Position


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for b > 0."""
    return -((-a) // b)


def compute_notional(size: int, price: int, params: MarketParams) -> int:
    """|size| * price / S, rounded down (exact for tick prices and step sizes)."""
    return abs(size) * price // params.scale


def compute_fee(notional: int, fee_ppm: int) -> int:
    """A fee of ``fee_ppm`` on ``notional``, rounded up."""
    return ceil_div(notional * fee_ppm, PPM)


def compute_funding_owed(position: Position, market: Market, params: MarketParams) -> int:
    """Funding the position owes since its snapshot (negative: is owed), rounded up."""
    # compute_funding_payment inlined: this runs for both sides of every fill
    return -(-position.size * (market.funding_index - position.funding_snapshot) // (params.scale * PPM))


def compute_funding_payment(size: int, index_change: int, denominator: int) -> int:
    """What ``size`` lots pay for a funding index change, ``size x change /
    denominator`` rounded up (> 0: pays); the denominator is S x 1e6 (the
    bridge's registered funding scale)."""
    return ceil_div(size * index_change, denominator)


def compute_unrealized_pnl(position: Position, mark: int, params: MarketParams) -> int:
    """size * mark / S - cost, rounded down."""
    return position.size * mark // params.scale - position.cost


def compute_equity_scaled(position: Position, mark: int, market: Market, params: MarketParams) -> int:
    """S x equity, exactly: margin - funding owed + size * mark / S - cost."""
    owed = compute_funding_owed(position, market, params)
    return (position.margin - owed - position.cost) * params.scale + position.size * mark


def compute_equity(position: Position, mark: int, market: Market, params: MarketParams) -> int:
    return compute_equity_scaled(position, mark, market, params) // params.scale


def compute_maintenance(position: Position, mark: int, params: MarketParams) -> int:
    """|size| * mark / S * MMF, rounded up."""
    return ceil_div(abs(position.size) * mark * params.maintenance_margin_ppm, params.scale * PPM)


def compute_initial_requirement(position: Position, mark: int, params: MarketParams) -> int:
    """|size| * mark / S * IMF, rounded up."""
    return ceil_div(abs(position.size) * mark * params.initial_margin_ppm, params.scale * PPM)


def is_liquidatable(position: Position, mark: int, market: Market, params: MarketParams) -> bool:
    """equity < maintenance, compared exactly."""
    if position.size == 0:
        return False
    equity = compute_equity_scaled(position, mark, market, params) * PPM
    return equity < abs(position.size) * mark * params.maintenance_margin_ppm


def is_solvent_at(position: Position, price: int, market: Market, params: MarketParams) -> bool:
    """equity >= 0 at ``price``: the position's whole value at that price
    covers what it owes.  Closing any slice at a price where this fails is
    beyond the bankruptcy price: the loss would be taken from the margin the
    rest of the position needs (issue 10, the sliver sale)."""
    return compute_equity_scaled(position, price, market, params) >= 0


def is_initial_margin_kept(position: Position, mark: int, market: Market, params: MarketParams) -> bool:
    """equity >= initial requirement, compared exactly."""
    equity = compute_equity_scaled(position, mark, market, params) * PPM
    return equity >= abs(position.size) * mark * params.initial_margin_ppm


def compute_entry_price(position: Position, params: MarketParams) -> int:
    """|cost| * S / |size|, rounded down (0 when flat)."""
    return abs(position.cost) * params.scale // abs(position.size) if position.size else 0


def compute_liquidation_price(position: Position, market: Market, params: MarketParams) -> int:
    """The threshold T of is_liquidatable at today's funding: a long is
    liquidatable exactly when mark < T, a short exactly when mark > T.
    0 when a long can never be liquidated (and for a flat position)."""
    size, scale, mmf = position.size, params.scale, params.maintenance_margin_ppm
    if size == 0:
        return 0
    net = position.margin - compute_funding_owed(position, market, params)
    if size > 0:
        numerator = PPM * scale * (position.cost - net)
        return max(0, ceil_div(numerator, size * (PPM - mmf)))
    return max(0, PPM * scale * (net - position.cost) // (-size * (PPM + mmf)))


def compute_order_margin(size: int, price: int, leverage: int, fee_ppm: int, params: MarketParams) -> int:
    """Margin plus fee a fill of ``size`` at ``price`` takes from free collateral."""
    notional = compute_notional(size, price, params)
    return ceil_div(notional, leverage) + compute_fee(notional, fee_ppm)


def compute_long_change(old_size: int, new_size: int) -> int:
    """The change of the open interest (the sum of the long sizes) when a
    position goes from ``old_size`` to ``new_size``."""
    return max(new_size, 0) - max(old_size, 0)


def compute_liquidation_size(position: Position, mark: int, market: Market, params: MarketParams) -> int:
    """Whole position, or a partial step (rounded up to the step size) when
    it is above the threshold notional and not bankrupt."""
    size = abs(position.size)
    if (compute_notional(size, mark, params) <= params.partial_liquidation_notional
            or compute_equity_scaled(position, mark, market, params) < 0):
        return size
    part = ceil_div(ceil_div(size * params.partial_liquidation_ppm, PPM), params.step_size) * params.step_size
    return min(part, size)
