"""Funding in pre/op/post form: the tick rule (cap, alignment, once per
interval), the sequencer's rate, and payments between longs and shorts that
sum to zero apart from rounding into the insurance fund."""
from __future__ import annotations

import msgspec
from hypothesis import given, settings, strategies as st

from perps_support import ADDR, BTC, BTC_PARAMS, ONE_BTC, Sim, usd
from sequencer.core.invariants import compute_conservation, compute_negative_balances
from sequencer.core.markets import DEVNET_MARKETS, compute_funding_cap_ppm
from sequencer.core.rules.margin import compute_funding_owed
from sequencer.core.records import FundingTick

INTERVAL = BTC_PARAMS.funding_interval_ms


def pair(size: int = ONE_BTC, price: int = usd(60_000)) -> Sim:
    sim = Sim(alice=usd(1_000_000), bob=usd(1_000_000))
    sim.set_price(price)
    sim.place("bob", False, price, size)
    sim.place("alice", True, price, size)
    return sim


def boundary(sim: Sim) -> int:
    return sim.now // INTERVAL * INTERVAL


def test_devnet_cap_follows_dydx_rule():
    # 600% x (IMF - MMF) per 8 hours, pro rata for a one-minute interval.
    assert BTC_PARAMS.funding_cap_ppm == 6 * (20_000 - 12_000) * 60_000 // (8 * 3_600_000) == 100
    assert compute_funding_cap_ppm(20_000, 12_000, 3_600_000) == 6_000


def test_tick_rule_cap_alignment_and_once_per_interval():
    sim = pair()
    t = boundary(sim)
    before = sim.state.to_tables()
    for record, code in [(FundingTick(BTC, 101, t), "funding_rate_above_cap"),
                         (FundingTick(BTC, -101, t), "funding_rate_above_cap"),
                         (FundingTick(BTC, 10, t + 1), "funding_time_not_aligned"),
                         (FundingTick(BTC, 10, t + INTERVAL), "funding_not_due")]:
        assert sim.apply(record).code == code
        assert sim.state.to_tables() == before
    assert sim.apply(FundingTick(BTC, 100, t)) is None
    assert sim.state.markets[BTC].funding_index == 100 * usd(60_000)
    assert sim.apply(FundingTick(BTC, 10, t)).code == "funding_not_due"


def test_funding_between_a_long_and_a_short_sums_to_zero_apart_from_rounding():
    size = 3 * BTC_PARAMS.step_size
    sim = pair(size=size)
    sim.set_price(usd(60_000) + 1)                # an oracle price off the tick: inexact payments
    alice_margin, bob_margin = sim.position("alice").margin, sim.position("bob").margin
    fund = sim.state.globals.insurance_fund
    assert sim.apply(FundingTick(BTC, 77, boundary(sim))) is None
    exact = size * 77 * (usd(60_000) + 1) / (ONE_BTC * 10**6)   # 1386.00000002 quote units
    assert compute_funding_owed(sim.position("alice"), sim.state.markets[BTC], BTC_PARAMS) == 1387
    assert compute_funding_owed(sim.position("bob"), sim.state.markets[BTC], BTC_PARAMS) == -1386
    # Settle both (any touch settles; here a margin top-up of one unit).
    assert sim.apply(sim.adjust_record("alice", 1)) is None
    assert sim.apply(sim.adjust_record("bob", 1)) is None
    paid = alice_margin + 1 - sim.position("alice").margin
    received = sim.position("bob").margin - (bob_margin + 1)
    assert (paid, received) == (1387, 1386) and 1386 < exact < 1387
    assert sim.state.globals.insurance_fund - fund == paid - received
    assert sim.state.markets[BTC].funding_dust == 0
    assert compute_conservation(sim.state, DEVNET_MARKETS).discrepancy == 0


def test_sequencer_rate_from_book_premium_and_due_once():
    sim = pair()
    sim.place("alice", True, usd(60_300), ONE_BTC // 2)
    sim.place("bob", False, usd(60_500), ONE_BTC // 2)
    # Impact prices (a 25,000 USDC market order each way: 500 USDC / IMF): bid 60,300, ask 60,500;
    # the premium max(0, 60,300 - 60,000) / 60,000 is 5,000 ppm as an 8-hour rate.  The first
    # tick averages it (sampled at the tick) with the empty book's 0 sampled at the first
    # price: 2,500 ppm, per minute 2,500 * 60 s / 8 h = 5; the next one sees only the quotes: 10.
    out = sim.funding()
    assert out == [FundingTick(BTC, 5, boundary(sim))]
    assert sim.funding() == []
    assert sim.funding(advance_ms=INTERVAL) == [FundingTick(BTC, 10, boundary(sim))]
    sim.now += BTC_PARAMS.oracle_max_age_ms + INTERVAL
    assert sim.funding() == []                    # stale price: funding waits
    assert sim.replay().to_tables() == sim.state.to_tables()


@settings(max_examples=40, deadline=None)
@given(rates=st.lists(st.integers(-100, 100), min_size=1, max_size=6),
       prices=st.lists(st.integers(1, 10**9), min_size=6, max_size=6),
       size=st.integers(1, 1_000))
def test_funding_conserves_exactly_over_many_ticks(rates, prices, size):
    sim = pair(size=size * BTC_PARAMS.step_size)
    for rate, offset in zip(rates, prices):
        sim.now = boundary(sim) + INTERVAL
        sim.set_price(usd(60_000) + offset, advance_ms=0)
        assert sim.apply(FundingTick(BTC, rate, boundary(sim))) is None
        for name in ("alice", "bob"):
            assert sim.apply(sim.adjust_record(name, usd(10))) is None
        assert compute_conservation(sim.state, DEVNET_MARKETS).discrepancy == 0
        assert compute_negative_balances(sim.state) == []
    total_margin = sim.position("alice").margin + sim.position("bob").margin
    assert total_margin + sim.state.globals.insurance_fund > 0
    assert ADDR["alice"] in sim.state.accounts


def test_funding_index_stays_in_the_signed_64_bit_range():
    sim = pair()
    market = sim.state.markets[BTC]
    sim.state.markets[BTC] = msgspec.structs.replace(market, funding_index=2**63 - 50 * usd(60_000))
    assert sim.apply(FundingTick(BTC, 100, boundary(sim))).code == "funding_index_overflow"
    assert sim.apply(FundingTick(BTC, 49, boundary(sim))) is None
