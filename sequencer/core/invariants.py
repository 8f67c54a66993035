"""The invariants every test suite leans on (DESIGN.md), computed from a state.

Conservation (invariant 2), exactly, in rationals:
    deposits - withdrawals = free + margins + uPnL - funding owed
                             + funding dust + insurance fund + fee pool
where uPnL = sum(size * mark / S - cost), funding owed = sum(size * (F -
F_snap) / (S * 1e6)) and funding dust = sum(Market.funding_dust / (S * 1e6)):
the exact funding remainders not yet swept into the insurance fund.  Since
longs and shorts balance in every market, sum(size * mark) is 0 and uPnL is
exactly -sum(cost).
"""
from __future__ import annotations

from fractions import Fraction

import msgspec

from sequencer.core.markets import MarketParams, get_market_table
from sequencer.core.presets import PPM
from sequencer.core.state import State


class Conservation(msgspec.Struct, frozen=True):
    deposits_minus_withdrawals: int
    free: int
    margins: int
    unrealized_pnl: Fraction
    funding_owed: Fraction
    funding_dust: Fraction
    insurance_fund: int
    fee_pool: int

    @property
    def holdings(self) -> Fraction:
        return (self.free + self.margins + self.unrealized_pnl - self.funding_owed + self.funding_dust
                + self.insurance_fund + self.fee_pool)

    @property
    def discrepancy(self) -> Fraction:
        """Holdings minus what came in; exactly 0 when conservation holds."""
        return self.holdings - self.deposits_minus_withdrawals


def compute_conservation(state: State, markets: dict[int, MarketParams] | None = None) -> Conservation:
    markets = markets if markets is not None else get_market_table("devnet")
    upnl = Fraction(0)
    owed = Fraction(0)
    margins = 0
    for (_, market_id), position in state.positions.items():
        margins += position.margin
        if position.size == 0:
            upnl -= position.cost
            continue
        params, market = markets[market_id], state.markets[market_id]
        upnl += Fraction(position.size * market.mark_price, params.scale) - position.cost
        owed += Fraction(position.size * (market.funding_index - position.funding_snapshot), params.scale * PPM)
    dust = sum((Fraction(m.funding_dust, markets[m.id].scale * PPM) for m in state.markets.values()), Fraction(0))
    g = state.globals
    return Conservation(
        deposits_minus_withdrawals=g.total_deposited - g.total_withdrawn,
        free=sum(a.collateral for a in state.accounts.values()),
        margins=margins, unrealized_pnl=upnl, funding_owed=owed, funding_dust=dust,
        insurance_fund=g.insurance_fund, fee_pool=g.fee_pool)


def is_conserved(state: State, markets: dict[int, MarketParams] | None = None) -> bool:
    return compute_conservation(state, markets).discrepancy == 0


def compute_balance_violations(state: State) -> list[str]:
    """Per market: longs equal shorts and open interest equals the longs."""
    longs: dict[int, int] = {}
    net: dict[int, int] = {}
    for (_, market_id), position in state.positions.items():
        net[market_id] = net.get(market_id, 0) + position.size
        longs[market_id] = longs.get(market_id, 0) + max(position.size, 0)
    problems = [f"market {m}: sizes sum to {n}, not 0" for m, n in sorted(net.items()) if n]
    for market_id, market in sorted(state.markets.items()):
        if market.open_interest != longs.get(market_id, 0):
            problems.append(f"market {market_id}: open interest {market.open_interest}, "
                            f"longs {longs.get(market_id, 0)}")
    return problems


def compute_negative_balances(state: State) -> list[str]:
    """Free collateral, margins, the insurance fund and the fee pool are never negative."""
    problems = [f"account 0x{a.hex()} free collateral {acc.collateral}"
                for a, acc in state.accounts.items() if acc.collateral < 0]
    problems += [f"position 0x{a.hex()}/{m} margin {p.margin}"
                 for (a, m), p in state.positions.items() if p.margin < 0]
    g = state.globals
    if g.insurance_fund < 0:
        problems.append(f"insurance fund {g.insurance_fund}")
    if g.fee_pool < 0:
        problems.append(f"fee pool {g.fee_pool}")
    return problems
