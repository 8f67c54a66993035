"""The insurance fund's share of trading fees (issue 10, "insurance fund fed by
revenue"): the split is exact, the shipped tables take a fifth, a market can
set its own share (0 .. 1e6 ppm), and conservation holds to the unit."""
from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, strategies as st

from perps_support import ADDR, BTC, ONE_BTC, Sim, usd
from sequencer.core.invariants import compute_conservation
from sequencer.core.markets import (DEVNET_MARKETS, INSURANCE_FEE_SHARE_PPM, PRODUCTION_MARKETS, check_market_params)
from sequencer.core.presets import PPM
from sequencer.core.rules.margin import compute_fee
from sequencer.core.rules.trades import compute_fee_split

replace = msgspec.structs.replace


@given(st.integers(0, 2**62), st.integers(0, PPM))
def test_the_split_adds_up_and_rounds_the_fund_down(fees, share):
    to_fund, to_pool = compute_fee_split(fees, replace(DEVNET_MARKETS[BTC], insurance_fee_share_ppm=share))
    assert to_fund + to_pool == fees
    assert to_fund * PPM <= fees * share < (to_fund + 1) * PPM           # floor(fees x share / 1e6)
    assert 0 <= to_fund <= fees


def test_the_shipped_tables_give_the_fund_a_fifth():
    assert INSURANCE_FEE_SHARE_PPM == 200_000
    for table in (DEVNET_MARKETS, PRODUCTION_MARKETS):
        assert {p.insurance_fee_share_ppm for p in table.values()} == {INSURANCE_FEE_SHARE_PPM}


@pytest.mark.parametrize("share", [-1, PPM + 1])
def test_a_share_outside_0_to_1e6_is_refused(share):
    with pytest.raises(ValueError, match="fee share"):
        check_market_params(replace(DEVNET_MARKETS[BTC], insurance_fee_share_ppm=share))


def crossed(sim: Sim, size: int, price: int) -> tuple[int, int]:
    """bob rests an ask, alice takes it; returns the (maker, taker) fees charged."""
    sim.set_price(usd(60_000))
    sim.place("bob", False, price, size)
    out = sim.place("alice", True, price, size, tif=1)
    assert [type(r).__name__ for r in out] == ["PlaceOrder", "Trade"]
    notional = size * price // ONE_BTC
    return compute_fee(notional, DEVNET_MARKETS[BTC].maker_fee_ppm), compute_fee(notional, DEVNET_MARKETS[BTC].taker_fee_ppm)


def test_a_trade_pays_the_fund_its_share_and_the_pool_the_rest():
    sim = Sim(fund=usd(1_000), alice=usd(100_000), bob=usd(100_000))
    pre = (sim.state.globals.insurance_fund, sim.state.globals.fee_pool, sim.free("alice"), sim.free("bob"))
    maker_fee, taker_fee = crossed(sim, ONE_BTC // 10, usd(60_000))         # notional 6,000 USDC
    fees = maker_fee + taker_fee
    assert fees == 600_000 + 3_000_000                                     # 1 bp + 5 bp
    g = sim.state.globals
    assert g.insurance_fund - pre[0] == fees // 5 == 720_000
    assert g.fee_pool - pre[1] == fees - fees // 5
    assert compute_conservation(sim.state, DEVNET_MARKETS).discrepancy == 0


def test_rounding_gives_the_remainder_to_the_pool_exactly():
    # One step of BTC at 60,001 USDC: notional 6.0001 USDC, fees 601 + 3,001 = 3,602 units,
    # whose fifth (720.4) is not whole: the fund takes 720, the pool 2,882.
    sim = Sim(alice=usd(100_000), bob=usd(100_000))
    step = DEVNET_MARKETS[BTC].step_size
    maker_fee, taker_fee = crossed(sim, 10 * step, usd(60_001))
    fees = maker_fee + taker_fee
    assert fees * INSURANCE_FEE_SHARE_PPM % PPM                           # a remainder to place
    g = sim.state.globals
    assert (g.insurance_fund, g.fee_pool) == (fees * INSURANCE_FEE_SHARE_PPM // PPM,
                                              fees - fees * INSURANCE_FEE_SHARE_PPM // PPM)
    assert compute_conservation(sim.state, DEVNET_MARKETS).discrepancy == 0


@pytest.mark.parametrize("share", [0, 1, 333_333, PPM])
def test_a_market_sets_its_own_share(share):
    markets = {m: replace(p, insurance_fee_share_ppm=share) for m, p in DEVNET_MARKETS.items()}
    sim = Sim(ctx=replace(Sim().ctx, markets=markets), alice=usd(100_000), bob=usd(100_000))
    sim.exchange = type(sim.exchange)(markets)
    maker_fee, taker_fee = crossed(sim, ONE_BTC // 10, usd(60_000))
    fees = maker_fee + taker_fee
    g = sim.state.globals
    assert (g.insurance_fund, g.fee_pool) == (fees * share // PPM, fees - fees * share // PPM)
    assert compute_conservation(sim.state, markets).discrepancy == 0


def test_a_refused_trade_moves_no_fee():
    """An attacker cannot make the fund or the pool move without a fill."""
    sim = Sim(alice=usd(100_000), bob=usd(1))                 # bob cannot margin a 6,000 USDC short
    sim.set_price(usd(60_000))
    sim.place("alice", True, usd(60_000), ONE_BTC // 10)
    before = sim.state.to_tables()
    with pytest.raises(Exception):
        sim.place("bob", False, usd(60_000), ONE_BTC // 10, tif=1)
    assert sim.state.to_tables() == before
    assert (sim.state.globals.insurance_fund, sim.state.globals.fee_pool) == (0, 0)
    assert ADDR["bob"] in sim.state.accounts
