"""Scenarios for the Deleverage tests (rules v3): a long (``alice``) against
named shorts, a price that makes it liquidatable, applied without the
engine's scan so that each test writes its own records."""
from __future__ import annotations

import msgspec

from sequencer.core.invariants import compute_balance_violations, compute_conservation, compute_negative_balances
from sequencer.core.markets import DEVNET_MARKETS, LIQUIDATION_LADDER, USDC
from sequencer.core.matching import Exchange
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.state import Position
from sequencer.lab.venue import Venue

BTC = 1
ONE_BTC = 10**8
CENT_BTC = ONE_BTC // 100
FUND = INSURANCE_ADDRESS


def usd(dollars: int) -> int:
    return dollars * USDC


def markets_with(policy: int = LIQUIDATION_LADDER) -> dict:
    """The devnet markets under ``policy`` with no fee share to the fund (its
    balance is then exactly the genesis amount plus what a test moves)."""
    return {m: msgspec.structs.replace(p, liquidation_policy=policy, insurance_fee_share_ppm=0)
            for m, p in DEVNET_MARKETS.items()}


def make_venue(fund: int, policy: int = LIQUIDATION_LADDER, schema_version: int | None = None, **extra: int) -> Venue:
    balances = {"alice": usd(100_000), "mm": usd(10_000_000), "erin": usd(1_000_000), **extra}
    venue = Venue(balances, fund=fund, markets=markets_with(policy))
    venue.exchange = Exchange(venue.markets)
    if schema_version is not None:
        venue.ctx = msgspec.structs.replace(venue.ctx, schema_version=schema_version)
    return venue


def alice_long(shorts: dict[str, tuple[int, int]], fund: int = usd(10_000), alice_leverage: int = 10,
               policy: int = LIQUIDATION_LADDER, schema_version: int | None = None, entry: int = usd(60_000),
               **extra: int) -> Venue:
    """alice goes long at ``entry`` (``alice_leverage``) against each short in
    ``shorts`` (name: (size, leverage)), in that order."""
    venue = make_venue(fund, policy, schema_version, **{name: usd(1_000_000) for name in shorts}, **extra)
    venue.set_price(entry)
    for name, (size, leverage) in shorts.items():
        venue.place(name, False, entry, size, leverage=leverage)
    total = sum(size for size, _ in shorts.values())
    venue.place("alice", True, entry, total, leverage=alice_leverage)
    assert venue.size("alice") == total
    return venue


def move_price(venue: Venue, price: int) -> None:
    """The price alone (no liquidation scan), one ms later."""
    venue.now += 1
    assert venue.apply_price(price) is None


def state_of(venue: Venue) -> dict:
    return venue.state.to_tables()


def check_invariants(venue: Venue) -> None:
    assert compute_conservation(venue.state, venue.markets).discrepancy == 0
    assert compute_negative_balances(venue.state) == []
    assert compute_balance_violations(venue.state) == []


def fund_position(venue: Venue) -> Position:
    return venue.state.positions.get((FUND, BTC)) or Position()


def equity_at_mark(venue: Venue, name: str) -> int:
    """Margin plus unrealised PnL at the mark (funding settled or none), in quote units x scale."""
    position = venue.position(name)
    params = venue.markets[BTC]
    return position.margin * params.scale + position.size * venue.mark() - position.cost * params.scale
