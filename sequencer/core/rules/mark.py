"""The mark price and oracle integrity (issue 10): pure functions of one
market and its parameters, integers only.

The mark is the median of three prices the state machine sees, as Hyperliquid
and Lighter take it:

    mark = median(oracle, oracle + clamp(basis_ema), last trade)

* ``basis_ema`` is an EMA of the trade-vs-oracle basis ``clamp(price - oracle)``,
  updated by every Trade and weighted by the time since the previous trade:
  ``ema += (sample - ema) * dt / (dt + H)`` with ``dt = min(t - last_trade_time, H)``
  (``H`` the half-life, rounded toward zero).  A trade after ``H`` moves it half
  way, trades in the same millisecond (a burst in one block) do not move it, and
  continuous trading moves it by about ``1 - exp(-T / H)`` over ``T`` whatever the
  number of trades.
* ``clamp`` bounds a basis to +-``mark_basis_band_ppm`` of the oracle, so the mark
  stays within that band of the oracle (the median lies between the oracle and
  oracle + basis whenever the last trade is outside them).
* The last trade counts while at most ``mark_trade_max_age_ms`` old, else the oracle.

The mark is recomputed by every applied OraclePrice and committed in the
market leaf (word 6), so the escape hatch and the verifiers read the number
the rules used (``rules.base.require_fresh_price`` returns it).

Oracle integrity: a price more than ``oracle_jump_ppm`` from the applied one,
within ``oracle_jump_window_ms`` of it, is held pending; it is applied only when
the next price lies within ``oracle_confirm_band_ppm`` of it (the confirming
price is the one applied).  While pending, the oracle, its time and the mark
stay as they were.
"""
from __future__ import annotations

import msgspec

from sequencer.core.markets import MarketParams
from sequencer.core.presets import PPM
from sequencer.core.state import Market

replace = msgspec.structs.replace


def compute_median3(a: int, b: int, c: int) -> int:
    return max(min(a, b), min(max(a, b), c))


def compute_basis_band(oracle: int, params: MarketParams) -> int:
    """The largest |basis| counted: ``mark_basis_band_ppm`` of the oracle, rounded down."""
    return oracle * params.mark_basis_band_ppm // PPM


def clamp_basis(basis: int, oracle: int, params: MarketParams) -> int:
    band = compute_basis_band(oracle, params)
    return max(-band, min(band, basis))


def compute_basis_ema(market: Market, price: int, timestamp_ms: int, params: MarketParams) -> int:
    """The basis EMA after a trade at ``price`` at block time ``timestamp_ms``
    (module docstring), clamped to the band at the current oracle.  Written
    out flat: it runs on every Trade."""
    oracle, ema = market.oracle_price, market.basis_ema
    band = oracle * params.mark_basis_band_ppm // PPM
    sample = price - oracle
    sample = band if sample > band else -band if sample < -band else sample
    half_life = params.mark_ema_half_life_ms
    dt = timestamp_ms - market.last_trade_time_ms if market.last_trade_time_ms else half_life
    if dt > half_life:
        dt = half_life
    gap = sample - ema
    if gap and dt:
        step = abs(gap) * dt // (dt + half_life)
        ema += step if gap > 0 else -step
    return band if ema > band else -band if ema < -band else ema


def get_mark_trade_price(market: Market, timestamp_ms: int, params: MarketParams) -> int:
    """The last trade price, or the oracle when there is none or it is stale."""
    fresh = timestamp_ms - market.last_trade_time_ms <= params.mark_trade_max_age_ms
    return market.last_trade_price if market.last_trade_price and fresh else market.oracle_price


def compute_mark_price(market: Market, timestamp_ms: int, params: MarketParams) -> int:
    """median(oracle, oracle + clamp(basis EMA), last trade) at block time ``timestamp_ms``."""
    oracle = market.oracle_price
    return compute_median3(oracle, oracle + clamp_basis(market.basis_ema, oracle, params),
                           get_mark_trade_price(market, timestamp_ms, params))


def record_trade_price(market: Market, price: int, timestamp_ms: int, params: MarketParams,
                       open_interest_change: int = 0) -> Market:
    """The market after a trade at ``price``: the basis EMA and the last trade
    (the mark itself moves at the next oracle price), and the trade's change of
    open interest, so that a Trade writes its market once."""
    return replace(market, basis_ema=compute_basis_ema(market, price, timestamp_ms, params),
                   last_trade_price=price, last_trade_time_ms=timestamp_ms,
                   open_interest=market.open_interest + open_interest_change)


def is_oracle_jump(market: Market, price: int, time_ms: int, params: MarketParams) -> bool:
    """``price`` moves more than the jump threshold from the applied oracle
    price within the jump window of it."""
    applied = market.oracle_price
    return (applied > 0 and time_ms - market.oracle_time_ms <= params.oracle_jump_window_ms
            and abs(price - applied) * PPM > params.oracle_jump_ppm * applied)


def is_confirming(market: Market, price: int, params: MarketParams) -> bool:
    """``price`` lies within the confirmation band of the pending price."""
    pending = market.pending_oracle_price
    return pending > 0 and abs(price - pending) * PPM <= params.oracle_confirm_band_ppm * pending


def apply_oracle_price(market: Market, price: int, time_ms: int, timestamp_ms: int,
                       params: MarketParams) -> Market:
    """The market after a quorum-signed price observed at ``time_ms`` in a block
    at ``timestamp_ms``: held pending if it is an unconfirmed jump, else applied
    with the mark recomputed."""
    if is_oracle_jump(market, price, time_ms, params) and not is_confirming(market, price, params):
        return replace(market, pending_oracle_price=price, pending_oracle_time_ms=time_ms)
    applied = replace(market, oracle_price=price, oracle_time_ms=time_ms, pending_oracle_price=0,
                      pending_oracle_time_ms=0)
    return replace(applied, mark_price=compute_mark_price(applied, timestamp_ms, params))
