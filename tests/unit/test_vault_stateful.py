"""A Hypothesis adversary around the backstop vault under the book+vault
liquidation policy: deposits, withdrawals (some locked, some too large),
leveraged traders, makers, price moves that liquidate into the vault, unwinds
at block starts and time passing.  After every step: conservation exact with
the vault's account and positions counted, no negative balance, the share
total equal to the holders' sum, the vault's limits kept after each takeover,
and a share's value never lower after a deposit or a withdrawal; at the end
the log replays to the same state."""
from __future__ import annotations

from fractions import Fraction

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from perps_support import ADDR, BTC, BTC_PARAMS, CTX, ONE_BTC, Sim, usd
from sequencer.core.invariants import compute_balance_violations, compute_conservation, compute_negative_balances
from sequencer.core.markets import DEVNET_MARKETS
from sequencer.core.matching import Exchange
from sequencer.core.rules.base import RuleError
from sequencer.core.rules.vault import VAULT_ADDRESS, compute_vault_equity, get_total_shares
from sequencer.core.vault_book import get_due_vault_unwinds
from test_vault import deposit_record, withdraw_record

markets_module = pytest.importorskip("sequencer.core.markets")
POLICY = getattr(markets_module, "LIQUIDATION_BOOK_VAULT", None)
pytestmark = pytest.mark.skipif(POLICY is None, reason="no book+vault liquidation policy in this executor")

HOLDERS = ("carol", "dave")
TRADERS = ("alice", "bob")
MAKER = "erin"
START = usd(60_000)


def make_sim() -> Sim:
    markets = dict(DEVNET_MARKETS)
    markets[BTC] = msgspec.structs.replace(BTC_PARAMS, liquidation_policy=POLICY)
    sim = Sim(fund=usd(50_000), ctx=msgspec.structs.replace(CTX, markets=markets), alice=usd(20_000),
              bob=usd(20_000), carol=usd(500_000), dave=usd(500_000), erin=usd(5_000_000))
    sim.exchange = Exchange(markets)
    sim.set_price(START)
    return sim


def share_value(sim: Sim) -> Fraction:
    return (compute_vault_equity(sim.state, sim.ctx, sim.now) + 1) / (get_total_shares(sim.state) + 1)


def check(sim: Sim) -> None:
    assert compute_conservation(sim.state, sim.ctx.markets).discrepancy == 0
    assert compute_balance_violations(sim.state) == []
    assert compute_negative_balances(sim.state) == []
    assert get_total_shares(sim.state) == sum(s.shares for a, s in sim.state.vault_shares.items()
                                              if a != VAULT_ADDRESS)


def mark(sim: Sim) -> int:
    market = sim.state.markets[BTC]
    return market.mark_price if getattr(market, "mark_price", 0) else market.oracle_price


def on_tick(price: int) -> int:
    return max(BTC_PARAMS.tick_size, price // BTC_PARAMS.tick_size * BTC_PARAMS.tick_size)


OPS = st.one_of(
    st.tuples(st.just("deposit"), st.sampled_from(HOLDERS), st.integers(usd(10), usd(200_000))),
    st.tuples(st.just("withdraw"), st.sampled_from(HOLDERS), st.integers(1, 100)),
    st.tuples(st.just("open"), st.sampled_from(TRADERS), st.booleans(), st.integers(1, 40), st.integers(10, 50)),
    st.tuples(st.just("open"), st.sampled_from(TRADERS), st.booleans(), st.integers(1, 40), st.integers(10, 50)),
    st.tuples(st.just("squeeze"), st.sampled_from(TRADERS), st.booleans(), st.integers(1, 60), st.integers(10, 45),
              st.integers(10_000, 45_000)),
    st.tuples(st.just("quote"), st.integers(1, 60)),
    st.tuples(st.just("price"), st.integers(-40_000, 40_000)),
    st.tuples(st.just("price"), st.integers(-40_000, 40_000)),
    st.tuples(st.just("time"), st.integers(1, 120_000)),
    st.tuples(st.just("unwind")),
)


def run_op(sim: Sim, op: tuple) -> None:
    kind = op[0]
    if kind == "deposit":
        _, name, amount = op
        before = share_value(sim)
        sim.submit(deposit_record(sim, name, min(amount, max(usd(10), sim.free(name)))))
        assert share_value(sim) >= before
    elif kind == "withdraw":
        _, name, percent = op
        entry = sim.state.vault_shares.get(ADDR[name])
        if entry is None:
            return
        before = share_value(sim)
        sim.submit(withdraw_record(sim, name, max(1, entry.shares * percent // 100)))
        assert share_value(sim) >= before
    elif kind == "open":
        # the maker rests the other side just off the mark and the trader takes it (immediate-or-cancel)
        _, name, buy, hundredths, leverage = op
        size = ONE_BTC * hundredths // 100
        price = on_tick(mark(sim) * (1_001_000 if buy else 999_000) // 1_000_000)
        sim.place(MAKER, not buy, price, size, leverage=5)
        sim.place(name, buy, price, size, leverage=leverage, tif=1)
    elif kind == "squeeze":
        # a trader opens, then the price moves against it: a liquidation the book may not take
        _, name, buy, hundredths, leverage, ppm = op
        run_op(sim, ("open", name, buy, hundredths, leverage))
        run_op(sim, ("price", -ppm if buy else ppm))
        run_op(sim, ("price", 0))                          # confirms a jump the oracle held
    elif kind == "quote":
        _, hundredths = op
        size = ONE_BTC * hundredths // 100
        sim.place(MAKER, True, on_tick(mark(sim) * 998 // 1000), size, leverage=5)
        sim.place(MAKER, False, on_tick(mark(sim) * 1002 // 1000), size, leverage=5)
    elif kind == "price":
        _, ppm = op
        sim.set_price(on_tick(sim.state.markets[BTC].oracle_price * (1_000_000 + ppm) // 1_000_000))
    elif kind == "time":
        sim.now += op[1]
        sim.set_price(sim.state.markets[BTC].oracle_price)
    else:
        out = get_due_vault_unwinds(sim.exchange, sim.state, sim.now, sim.ctx)
        sim.log.extend((sim.now, r) for r in out)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=10, max_size=40))
def test_the_vault_keeps_conservation_and_its_share_value_under_an_adversary(ops):
    sim = make_sim()
    sim.submit(deposit_record(sim, "carol", usd(100_000)))
    for op in ops:
        vault_before = sim.state.positions.get((VAULT_ADDRESS, BTC))
        try:
            run_op(sim, op)
        except RuleError:
            pass                                           # refused: the state is as before (Exchange.admit)
        vault = sim.state.positions.get((VAULT_ADDRESS, BTC))
        before = vault_before.size if vault_before else 0
        if vault is not None and abs(vault.size) > abs(before):
            event("the vault took a position over")
            # it posted margin only within its share of its equity (fees only add to that equity)
            equity = compute_vault_equity(sim.state, sim.ctx, sim.now)
            cap = equity * CTX.preset.vault_max_market_share_ppm
            assert vault.margin * 1_000_000 <= max(cap, (vault_before.margin if vault_before else 0) * 1_000_000)
        elif vault is not None and abs(vault.size) < abs(before):
            event("the vault's position shrank (unwind or liquidation)")
        check(sim)
    assert sim.replay().to_tables() == sim.state.to_tables()
