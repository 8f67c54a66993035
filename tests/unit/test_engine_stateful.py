"""Hypothesis stateful test of the whole engine (Exchange + rules): random
orders, cancels, price moves, funding ticks and margin adjustments.

After every step: conservation exact (DESIGN.md invariant 2), longs equal
shorts and open interest matches, no negative free collateral, margin, fund
or fee pool; on a price move or a funding tick, isolation (invariant 3): a
liquidated owner's free collateral and other positions do not change, the
other market does not change, and only deleveraged accounts gain free
collateral.  At the end: replaying the log gives the same state and the same
state root, and the books rebuilt from the state equal the live ones.
"""
from __future__ import annotations

import msgspec
from hypothesis import event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from perps_support import BTC, ETH, FAST_CTX, Sim, usd
from prover.tree import SparseMerkleTree
from sequencer.core.commitment import compute_dirty_leaves
from sequencer.core.invariants import (compute_balance_violations, compute_conservation,
                                       compute_negative_balances)
from sequencer.core.markets import DEVNET_MARKETS
from sequencer.core.matching import Exchange
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.records import FundingTick, Liquidate
from sequencer.core.transition import RuleError

TRADERS = ("alice", "bob", "carol", "dave")


def compute_root(state) -> bytes:
    """The state root over every entry ever touched (the dirty set since genesis)."""
    state.dirty.update((table, key) for table in ("accounts", "positions", "orders", "markets")
                       for key in getattr(state, table))
    state.dirty.add(("globals", None))
    return SparseMerkleTree().update(compute_dirty_leaves(state))
START = {BTC: usd(60_000), ETH: 3_000 * 10**6}
LOT = {BTC: 10**6, ETH: 10**7}        # 0.01 BTC, 0.01 ETH
TICK = {BTC: usd(10), ETH: 10**5}     # price grid of the test orders


class Engine(RuleBasedStateMachine):
    @initialize(fund=st.sampled_from([0, usd(2_000), usd(50_000)]),
                balances=st.lists(st.integers(1_000, 40_000), min_size=4, max_size=4))
    def setup(self, fund, balances):
        self.sim = Sim(fund=fund, **{name: usd(b) for name, b in zip(TRADERS, balances)})
        for market, price in START.items():
            self.sim.set_price(price, market=market)
        self.placed: list[tuple[str, int]] = []

    def mark(self, market: int) -> int:
        return self.sim.state.markets[market].oracle_price

    @rule(name=st.sampled_from(TRADERS), market=st.sampled_from([BTC, ETH]), is_buy=st.booleans(),
          offset=st.integers(-5, 5), lots=st.integers(1, 50), leverage=st.integers(1, 50),
          tif=st.sampled_from([0, 0, 1, 2]), reduce_only=st.booleans())
    def place(self, name, market, is_buy, offset, lots, leverage, tif, reduce_only):
        price = max(TICK[market], self.mark(market) // TICK[market] * TICK[market] + offset * TICK[market])
        order = self.sim.order(name, is_buy, price, lots * LOT[market], market=market, leverage=leverage,
                               tif=tif, reduce_only=reduce_only and lots % 3 == 0)
        self.submit_or_unchanged(order)
        self.placed.append((name, order.nonce))

    @rule(maker=st.sampled_from(TRADERS), taker=st.sampled_from(TRADERS), market=st.sampled_from([BTC, ETH]),
          maker_buys=st.booleans(), lots=st.integers(1, 50), maker_leverage=st.integers(1, 50),
          taker_leverage=st.integers(1, 50))
    def cross(self, maker, taker, market, maker_buys, lots, maker_leverage, taker_leverage):
        """A resting order and an immediate-or-cancel order that crosses it."""
        price = self.mark(market) // TICK[market] * TICK[market]
        size = lots * LOT[market]
        resting = self.sim.order(maker, maker_buys, price, size, market=market, leverage=maker_leverage)
        self.submit_or_unchanged(resting)
        self.placed.append((maker, resting.nonce))
        self.submit_or_unchanged(self.sim.order(taker, not maker_buys, price, size, market=market,
                                                leverage=taker_leverage, tif=1))

    @precondition(lambda self: self.placed)
    @rule(pick=st.integers(0, 10**6))
    def cancel(self, pick):
        name, nonce = self.placed[pick % len(self.placed)]
        self.submit_or_unchanged(self.sim.cancel_record(name, nonce))

    @rule(name=st.sampled_from(TRADERS), market=st.sampled_from([BTC, ETH]), amount=st.integers(-5_000, 5_000))
    def adjust_margin(self, name, market, amount):
        if amount:
            self.submit_or_unchanged(self.sim.adjust_record(name, usd(amount), market))

    @rule(market=st.sampled_from([BTC, ETH]), move_ppm=st.integers(-60_000, 60_000),
          advance=st.integers(1, 20_000))
    def move_price(self, market, move_ppm, advance):
        price = max(1, self.mark(market) + self.mark(market) * move_ppm // 10**6)
        before = self.sim.state.to_tables()
        out = self.sim.set_price(price, market=market, advance_ms=advance)
        self.check_isolation(before, market, out)

    @rule(market=st.sampled_from([BTC, ETH]), rate=st.integers(-100, 100))
    def funding(self, market, rate):
        """A funding tick at the next boundary (the sequencer's rate replaced by a random one within the cap)."""
        interval = DEVNET_MARKETS[market].funding_interval_ms
        sim = self.sim
        sim.now = (sim.now // interval + 1) * interval
        sim.set_price(self.mark(market), market=market, advance_ms=0)  # keep the price fresh
        before = sim.state.to_tables()
        assert sim.apply(FundingTick(market, rate, sim.now)) is None
        out = sim.exchange.liquidate_market(sim.state, market, sim.now, sim.ctx)
        sim.log.extend((sim.now, r) for r in out)
        self.check_isolation(before, market, out)

    @rule()
    def sequencer_funding(self):
        self.sim.funding(advance_ms=30_000)

    # --- helpers ----------------------------------------------------------------------
    def submit_or_unchanged(self, record) -> None:
        before = self.sim.state.to_tables()
        try:
            out = self.sim.submit(record)
        except RuleError as exc:
            event(f"refused {exc.code}")
            assert self.sim.state.to_tables() == before
            return
        event(f"{type(record).__name__} ok, {len(out) - 1} trades")

    def check_isolation(self, before: dict, market: int, out: list) -> None:
        accounts_before = dict(before["accounts"])
        positions_before = dict(before["positions"])
        liquidated = {r.account for r in out if isinstance(r, Liquidate)}
        makers = {maker for r in out if isinstance(r, Liquidate) for maker, _ in r.makers}
        event(f"{len(liquidated)} accounts liquidated")
        if self.sim.state.globals.insurance_fund == 0 and liquidated:
            event("liquidation with an empty fund")
        state = self.sim.state
        for (address, m), position in positions_before.items():
            if m != market:
                assert state.positions.get((address, m)) == position       # other market untouched
        for address, account in state.accounts.items():
            old = accounts_before[address].collateral
            if address in liquidated:
                assert account.collateral == old                           # the owner's free collateral
            elif account.collateral != old and address not in makers:      # only deleveraged accounts gain
                assert account.collateral > old                            # (a maker's fill pays its margin and fee)
                was = positions_before[(address, market)].size
                assert abs(state.positions[(address, market)].size) < abs(was)

    # --- invariants ------------------------------------------------------------------------
    @invariant()
    def conservation_exact(self):
        assert compute_conservation(self.sim.state, DEVNET_MARKETS).discrepancy == 0

    @invariant()
    def balanced_and_non_negative(self):
        assert compute_balance_violations(self.sim.state) == []
        assert compute_negative_balances(self.sim.state) == []

    @invariant()
    def fund_only_holds_positions_it_took_over(self):
        for (address, _), position in self.sim.state.positions.items():
            if address == INSURANCE_ADDRESS:
                assert position.margin == 0

    def teardown(self):
        sim = getattr(self, "sim", None)
        if sim is None:
            return
        replayed = sim.replay(FAST_CTX)
        assert replayed.to_tables() == sim.state.to_tables()
        assert compute_root(replayed) == compute_root(sim.state)
        rebuilt = Exchange(DEVNET_MARKETS)
        sim.state.globals = msgspec.structs.replace(sim.state.globals, timestamp_ms=sim.now)  # as at block end
        rebuilt.rebuild(sim.state)
        sim.exchange.prune_expired(sim.now)
        assert rebuilt.dump() == sim.exchange.dump()
        assert rebuilt.reserved == sim.exchange.reserved


TestEngine = Engine.TestCase
TestEngine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
