"""Liquidation in pre/op/post form: the exact threshold, stale prices, partial
steps, backstop and bad debt from the insurance fund, auto-deleveraging when
the fund is short; the owner's free collateral and other positions never move."""
from __future__ import annotations

import msgspec
from hypothesis import given, settings, strategies as st

from perps_support import ADDR, BTC, BTC_PARAMS, CTX, ETH, ONE_BTC, Sim, sign_oracle, usd
from sequencer.core.invariants import (compute_balance_violations, compute_conservation,
                                       compute_negative_balances)
from sequencer.core.markets import DEVNET_MARKETS, LIQUIDATION_BACKSTOP
from sequencer.core.matching import Exchange
from sequencer.core.rules.margin import compute_liquidation_price, is_liquidatable
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.records import Deleverage, Liquidate
from sequencer.core.state import Market, Position

PRICE = usd(60_000)
ETH_PRICE = 3_000 * 10**6


def check_invariants(sim: Sim) -> None:
    assert compute_conservation(sim.state, DEVNET_MARKETS).discrepancy == 0
    assert compute_balance_violations(sim.state) == []
    assert compute_negative_balances(sim.state) == []


def long_alice(fund: int = usd(100_000), size: int = ONE_BTC) -> Sim:
    """alice: 10x long `size` BTC at 60,000 (bob short), and a 5x ETH long (carol short)."""
    sim = Sim(fund=fund, alice=usd(20_000), bob=usd(1_000_000), carol=usd(1_000_000), dave=usd(1_000_000),
              erin=usd(1_000_000))
    sim.set_price(PRICE)
    sim.set_price(ETH_PRICE, market=ETH)
    sim.place("bob", False, PRICE, size)
    sim.place("alice", True, PRICE, size, leverage=10)
    sim.place("carol", False, ETH_PRICE, 10**9, market=ETH)
    sim.place("alice", True, ETH_PRICE, 10**9, market=ETH, leverage=5)
    return sim


def owner_view(sim: Sim, name: str = "alice"):
    return sim.free(name), sim.position(name, ETH), sim.state.accounts[ADDR[name]].nonces


def liquidations(records) -> list[Liquidate | Deleverage]:
    """The liquidation steps (rules v3: a step down the ladder is a Deleverage naming its counterparties)."""
    return [r for r in records if isinstance(r, (Liquidate, Deleverage))]


def test_ten_x_long_liquidated_on_the_move_that_crosses_and_not_one_unit_earlier():
    sim = long_alice()
    threshold = compute_liquidation_price(sim.position("alice"), sim.state.markets[BTC], BTC_PARAMS)
    # (cost - margin) / (size * (1 - MMF)) = 54,000 / 0.988, rounded up.
    assert threshold == -(-54_000 * 10**6 * 10**6 // 988_000)
    before = owner_view(sim)
    assert liquidations(sim.set_price(threshold)) == []
    assert sim.size("alice") == ONE_BTC
    out = sim.set_price(threshold - 1)
    assert liquidations(out) and all(r.account == ADDR["alice"] for r in liquidations(out))
    assert owner_view(sim) == before                         # isolation: not one unit elsewhere
    position, market = sim.position("alice"), sim.state.markets[BTC]
    assert not is_liquidatable(position, market.oracle_price, market, BTC_PARAMS)
    assert 0 <= sim.size("alice") < ONE_BTC                   # partial steps above the threshold notional
    assert sim.size("alice") == -sim.size("bob")              # closed at the mark against bob's short
    assert (INSURANCE_ADDRESS, BTC) not in sim.state.positions  # the fund never holds a position
    check_invariants(sim)
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_short_threshold_is_symmetric():
    sim = long_alice()
    position = sim.position("bob")
    threshold = compute_liquidation_price(position, sim.state.markets[BTC], BTC_PARAMS)
    market = sim.state.markets[BTC]
    assert not is_liquidatable(position, threshold, market, BTC_PARAMS)
    assert is_liquidatable(position, threshold + 1, market, BTC_PARAMS)


def test_stale_oracle_blocks_the_liquidation():
    sim = long_alice()
    sim.now += 1
    assert sim.apply(sign_oracle(BTC, usd(50_000), sim.now)) is None   # no scan: applied directly
    sim.now += BTC_PARAMS.oracle_max_age_ms + 2
    before = sim.state.to_tables()
    error = sim.apply(Liquidate(ADDR["alice"], BTC))
    assert error.code == "stale_oracle_price"
    assert sim.state.to_tables() == before
    assert liquidations(sim.set_price(usd(50_000))) == [Deleverage(ADDR["alice"], BTC, (ADDR["bob"],))]


def test_healthy_position_is_not_liquidated():
    sim = long_alice()
    before = sim.state.to_tables()
    assert sim.apply(Liquidate(ADDR["alice"], BTC)).code == "not_liquidatable"
    assert sim.apply(Liquidate(INSURANCE_ADDRESS, BTC)).code == "not_liquidatable"
    assert sim.apply(Liquidate(ADDR["dave"], BTC)).code == "no_position"
    assert sim.state.to_tables() == before


def test_small_position_closed_whole_leftover_margin_stays_isolated():
    sim = long_alice(size=ONE_BTC // 10)                       # 6,000 notional: below the partial threshold
    before, fund = owner_view(sim), sim.state.globals.insurance_fund  # 100,000 + its share of the fees
    out = sim.set_price(usd(54_600))
    assert liquidations(out) == [Deleverage(ADDR["alice"], BTC, (ADDR["bob"],))]
    position = sim.position("alice")
    # closed at the mark: margin 600 - loss 540 - fee 0.5% of 5,460 = 32.7 left in the empty position
    assert (position.size, position.cost, position.margin) == (0, 0, usd(600) - usd(540) - 27_300_000)
    assert owner_view(sim) == before
    assert sim.size("bob") == 0 and (INSURANCE_ADDRESS, BTC) not in sim.state.positions  # bob's short took it
    assert sim.state.globals.insurance_fund == fund + 27_300_000
    check_invariants(sim)
    # The owner takes the leftover back with AdjustMargin.
    assert sim.apply(sim.adjust_record("alice", -position.margin)) is None
    assert sim.free("alice") == before[0] + usd(600) - usd(540) - 27_300_000


def test_bad_debt_paid_by_the_insurance_fund():
    sim = long_alice()
    before, fund = owner_view(sim), sim.state.globals.insurance_fund  # 100,000 + its share of the fees
    out = sim.set_price(usd(50_000))                           # equity 6,000 - 10,000 < 0: bankrupt
    assert liquidations(out) == [Deleverage(ADDR["alice"], BTC, (ADDR["bob"],))]
    assert (sim.position("alice").size, sim.position("alice").margin) == (0, 0)
    assert sim.state.globals.insurance_fund == fund - usd(4_000)
    assert sim.size("bob") == 0 and (INSURANCE_ADDRESS, BTC) not in sim.state.positions  # closed at the mark
    assert owner_view(sim) == before
    check_invariants(sim)


def test_insurance_fund_exhausted_auto_deleverages_the_most_profitable_opposite_positions():
    sim = long_alice(fund=0)
    sim.place("dave", False, PRICE, ONE_BTC)                   # dave short 1 (more profitable than bob's 1?)
    sim.place("erin", True, PRICE, ONE_BTC, leverage=2)        # erin long 1 at 2x: survives the drop
    sim.place("carol", False, usd(62_000), ONE_BTC // 2)
    sim.place("erin", True, usd(62_000), ONE_BTC // 2, leverage=2)  # carol short 0.5 at 62,000: best PnL/lot
    bob_free, carol_free, dave_free = sim.free("bob"), sim.free("carol"), sim.free("dave")
    before, fund = owner_view(sim), sim.state.globals.insurance_fund  # its share of the fees: < the debt
    out = sim.set_price(usd(50_000))
    first, second = sorted(["bob", "dave"], key=lambda n: ADDR[n])
    assert liquidations(out) == [Deleverage(ADDR["alice"], BTC, (ADDR[first],))]   # the first ranked covers her
    assert (sim.position("alice").size, sim.position("alice").margin, sim.position("alice").cost) == (0, 0, 0)
    assert owner_view(sim) == before
    assert sim.state.globals.insurance_fund == fund                # deleveraging does not touch the fund
    assert (INSURANCE_ADDRESS, BTC) not in sim.state.positions
    # Ranked by unrealised PnL at the mark: bob and dave (+10,000 each on 1 BTC; bob first by address
    # order if tied) ahead of carol (+6,000 on 0.5).  Closed at alice's bankruptcy price 54,000.
    assert sim.size(first) == 0 and sim.size(second) == -ONE_BTC and sim.size("carol") == -ONE_BTC // 2
    gain = usd(60_000) - usd(54_000)
    released = usd(6_000) + gain
    assert sim.free(first) == {"bob": bob_free, "dave": dave_free}[first] + released
    assert sim.free("carol") == carol_free
    check_invariants(sim)
    assert sim.replay().to_tables() == sim.state.to_tables()


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 10_000), entry=st.integers(1_000, 100_000), leverage=st.integers(1, 50),
       funding=st.integers(-10**12, 10**12), long=st.booleans())
def test_liquidation_price_is_the_exact_threshold(size, entry, leverage, funding, long):
    lots = size * BTC_PARAMS.step_size
    cost = lots * usd(entry) // ONE_BTC
    position = Position(size=lots if long else -lots, cost=cost if long else -cost, margin=cost // leverage)
    market = Market(BTC, funding_index=funding)
    threshold = compute_liquidation_price(position, market, BTC_PARAMS)
    if long:
        if threshold > 0:
            assert is_liquidatable(position, threshold - 1, market, BTC_PARAMS)
        assert not is_liquidatable(position, max(threshold, 1), market, BTC_PARAMS)
    else:
        assert not is_liquidatable(position, threshold, market, BTC_PARAMS) or threshold == 0
        assert is_liquidatable(position, threshold + 1, market, BTC_PARAMS)


LEGACY_MARKETS = {m: msgspec.structs.replace(p, liquidation_policy=LIQUIDATION_BACKSTOP) for m, p in DEVNET_MARKETS.items()}


def fund_short_then_alice_long(fund: int, schema_version: int = 2) -> Sim:
    """The liquidation rules before issue 10 (``liquidation_policy`` backstop, kept for the
    liquidation lab), under rules v2 by default (v3 never deleverages the fund's own position,
    tests/unit/test_deleverage.py): the insurance fund holds a short of its own (it
    backstopped frank's 10x short when BTC rose from 40,000 to 45,000); then
    alice goes 10x long 1 BTC at 60,000 against bob's 0.9 short and the fund's 0.1."""
    sim = Sim(fund=fund, ctx=msgspec.structs.replace(CTX, markets=LEGACY_MARKETS, schema_version=schema_version),
              alice=usd(20_000),
              bob=usd(1_000_000), erin=usd(1_000_000), frank=usd(1_000))
    sim.exchange = Exchange(LEGACY_MARKETS)
    sim.set_price(usd(40_000))
    sim.place("erin", True, usd(40_000), ONE_BTC // 10, leverage=2)
    sim.place("frank", False, usd(40_000), ONE_BTC // 10, leverage=10)
    assert liquidations(sim.set_price(usd(45_000))) == [Liquidate(ADDR["frank"], BTC)]
    assert sim.state.positions[(INSURANCE_ADDRESS, BTC)].size == -ONE_BTC // 10
    sim.set_price(PRICE)
    sim.place("bob", False, PRICE, ONE_BTC * 9 // 10)
    sim.place("alice", True, PRICE, ONE_BTC * 9 // 10, leverage=10)
    sim.place("erin", False, PRICE, ONE_BTC // 10, leverage=2)   # erin closes her long: alice takes it
    sim.place("alice", True, PRICE, ONE_BTC // 10, leverage=10)
    assert sim.size("alice") == ONE_BTC and sim.size("bob") == -ONE_BTC * 9 // 10
    return sim


def test_auto_deleverage_reaches_the_insurance_funds_own_position_last():
    sim = fund_short_then_alice_long(fund=usd(3_000))
    fund_before = sim.state.globals.insurance_fund
    fund_short = sim.state.positions[(INSURANCE_ADDRESS, BTC)]
    before = owner_view(sim)
    # At 50,000 alice is bankrupt (bad debt 4,000 > the fund): she is closed at her bankruptcy
    # price 54,000 against bob's 0.9 (ranked first) and then the fund's own 0.1 short.
    assert liquidations(sim.set_price(usd(50_000))) == [Liquidate(ADDR["alice"], BTC)]
    assert (sim.size("alice"), sim.position("alice").margin) == (0, 0)
    assert sim.size("bob") == 0
    assert (INSURANCE_ADDRESS, BTC) not in sim.state.positions or \
        sim.state.positions[(INSURANCE_ADDRESS, BTC)].size == 0
    # The fund's short closed at 54,000 realises its loss against its entry, into the fund.
    realised = -(usd(54_000) * (ONE_BTC // 10) // ONE_BTC) - fund_short.cost
    assert sim.state.globals.insurance_fund == fund_before + realised
    assert owner_view(sim) == before
    check_invariants(sim)
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_a_liquidation_that_would_leave_the_fund_negative_is_refused_as_insolvent():
    sim = fund_short_then_alice_long(fund=usd(150))            # frank's bad debt (100) leaves it 50
    assert 0 <= sim.state.globals.insurance_fund < usd(900)
    before = sim.state.to_tables()
    sim.now += 1
    sim.apply_price(usd(50_000))                                  # the price alone, no liquidation yet
    error = sim.apply(Liquidate(ADDR["alice"], BTC))
    # Deleveraging the fund's 0.1 short (entry 45,000) at 54,000 costs it 900 it does not have.
    assert error is not None and error.code == "insolvent"
    assert sim.size("alice") == ONE_BTC                        # nothing moved: the record is atomic
    assert dict(before["positions"]) == sim.state.positions and dict(before["accounts"]) == sim.state.accounts
    assert sim.state.globals.insurance_fund == before["globals"].insurance_fund
    check_invariants(sim)
