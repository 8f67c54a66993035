"""The mark price and oracle integrity (issue 10), pre/op/post through the
block builder's Exchange and through apply_record, with replay.

The mark is median(oracle, oracle + clamp(basis EMA), last trade), committed
in the market leaf (word 6) and recomputed by every applied OraclePrice
(sequencer.core.rules.mark).  What an adversary tries: wash-trade far from the
oracle to drag the mark and liquidate a victim; push one wild oracle print;
trade or liquidate on a stale oracle.
"""
from __future__ import annotations

import msgspec
from hypothesis import given, settings, strategies as st

from l1_bridge.proofs import compute_position_equity
from perps_support import ADDR, BTC, BTC_PARAMS, ONE_BTC, Sim, sign_oracle, usd
from prover.tree import SparseMerkleTree
from sequencer.core.commitment import compute_dirty_leaves, encode_market_leaf
from sequencer.core.presets import PPM
from sequencer.core.records import Deleverage, FundingTick, Liquidate, Trade
from sequencer.core.rules.funding import get_due_funding_time
from sequencer.core.rules.margin import compute_equity, is_liquidatable
from sequencer.core.rules.mark import (compute_basis_band, compute_mark_price, compute_median3,
                                       get_mark_trade_price, record_trade_price)
from sequencer.core.rules.orders import IMMEDIATE_OR_CANCEL
from sequencer.core.state import Market, Position
from sequencer.node.views import describe_market, describe_position

ORACLE = usd(60_000)
BAND = compute_basis_band(ORACLE, BTC_PARAMS)  # 0.5% of 60,000 = 300 USDC


def market(sim: Sim) -> Market:
    return sim.state.markets[BTC]


def trades(out) -> list[Trade]:
    return [r for r in out if isinstance(r, Trade)]


def liquidations(out) -> list[Liquidate | Deleverage]:
    """The liquidation steps (rules v3: a step down the ladder is a Deleverage)."""
    return [r for r in out if isinstance(r, (Liquidate, Deleverage))]


def victim_short_at_20x() -> Sim:
    """bob is short 1 BTC at 60,000 at 20x (margin 3,000) against carol; at a
    mark of 66,000 his equity would be -3,000: liquidatable.  alice and dave
    are the wash traders with 200,000 each."""
    sim = Sim(fund=usd(100_000), alice=usd(200_000), bob=usd(10_000), carol=usd(200_000), dave=usd(200_000))
    sim.set_price(ORACLE)
    sim.place("carol", True, ORACLE, ONE_BTC, leverage=5)
    assert trades(sim.place("bob", False, ORACLE, ONE_BTC, leverage=20, tif=IMMEDIATE_OR_CANCEL))
    assert sim.size("bob") == -ONE_BTC
    return sim


def wash_trade(sim: Sim, price: int, size: int = ONE_BTC // 100) -> list:
    """alice bids at ``price``, dave sells into it (two accounts of one trader)."""
    sim.place("alice", True, price, size, leverage=5)
    return sim.place("dave", False, price, size, leverage=5, tif=IMMEDIATE_OR_CANCEL)


# --- the wash trader ----------------------------------------------------------------------

def test_wash_trading_ten_percent_above_the_oracle_moves_the_mark_at_most_the_band_and_liquidates_nobody():
    sim = victim_short_at_20x()
    victim = sim.position("bob")
    assert is_liquidatable(victim, usd(66_000), market(sim), BTC_PARAMS)  # were the last trade the mark
    assert market(sim).mark_price == ORACLE

    # Ten minutes of self-trades at 66,000, one per second, the oracle steady at
    # 60,000 and posted every second (each post also runs the liquidation scan).
    marks, out = [], []
    for _ in range(600):
        sim.now += 1_000
        out += wash_trade(sim, usd(66_000))
        out += sim.set_price(ORACLE)
        marks.append(market(sim).mark_price)

    assert len(trades(out)) == 600 and market(sim).last_trade_price == usd(66_000)
    assert liquidations(out) == []
    assert sim.position("bob") == victim                        # untouched
    assert max(marks) <= ORACLE + BAND                          # never beyond the band
    ema = market(sim).basis_ema                                 # the sample is clamped to the band; ten
    assert BAND - BAND // 10_000 <= ema <= BAND                  # half-lives bring the EMA within 0.01% of it
    assert marks[-1] == ORACLE + ema
    assert marks[59] - ORACLE < BAND * 2 // 3                    # after one minute: about 1 - 1/e of the band
    assert not is_liquidatable(victim, marks[-1], market(sim), BTC_PARAMS)
    assert sim.apply(Liquidate(ADDR["bob"], BTC)).code == "not_liquidatable"
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_a_burst_of_self_trades_in_one_block_moves_the_basis_ema_once():
    sim = victim_short_at_20x()
    sim.now += BTC_PARAMS.mark_ema_half_life_ms                  # a quiet minute: the first trade weighs 1/2
    before = market(sim)
    wash_trade(sim, usd(66_000))
    after_one = market(sim).basis_ema
    # the sample is clamped to the band; after the half-life it moves the EMA half way
    assert after_one == before.basis_ema + (BAND - before.basis_ema) // 2
    for _ in range(40):                                          # the same block time: no weight at all
        wash_trade(sim, usd(66_000))
    assert market(sim).basis_ema == after_one
    assert market(sim).mark_price == before.mark_price           # the mark waits for the next oracle price
    sim.set_price(ORACLE)
    assert market(sim).mark_price == ORACLE + after_one          # median(oracle, oracle + EMA, 66,000)
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_the_last_trade_counts_only_while_fresh():
    sim = victim_short_at_20x()
    sim.now += 1_000
    wash_trade(sim, usd(59_880))                                 # below the oracle, inside the band
    sim.set_price(ORACLE)
    m = market(sim)
    assert m.basis_ema < 0 and m.mark_price == max(usd(59_880), ORACLE + m.basis_ema)
    sim.set_price(ORACLE, advance_ms=BTC_PARAMS.mark_trade_max_age_ms + 1)   # the trade is now stale
    m = market(sim)
    assert get_mark_trade_price(m, sim.now, BTC_PARAMS) == ORACLE
    assert m.mark_price == ORACLE                                # median(oracle, oracle + EMA, oracle)


# --- oracle jumps -------------------------------------------------------------------------

def ten_x_long() -> Sim:
    """alice is long 1 BTC at 60,000 at 10x: liquidatable below about 54,656."""
    sim = Sim(fund=usd(100_000), alice=usd(20_000), bob=usd(200_000))
    sim.set_price(ORACLE)
    sim.place("bob", False, ORACLE, ONE_BTC, leverage=5)
    sim.place("alice", True, ORACLE, ONE_BTC, leverage=10, tif=IMMEDIATE_OR_CANCEL)
    assert sim.size("alice") == ONE_BTC
    return sim


def test_a_single_wild_oracle_print_is_held_until_confirmed_and_liquidates_nobody():
    sim = ten_x_long()
    before = market(sim)
    sim.now += 1_000
    out = sim.exchange.on_oracle_price(sim.state, sign_oracle(BTC, usd(30_000), sim.now), sim.now, sim.ctx)
    sim.log.extend((sim.now, r) for r in out)
    m = market(sim)
    assert liquidations(out) == []
    assert (m.oracle_price, m.oracle_time_ms, m.mark_price) == (before.oracle_price, before.oracle_time_ms,
                                                                 before.mark_price)
    assert (m.pending_oracle_price, m.pending_oracle_time_ms) == (usd(30_000), sim.now)
    assert sim.size("alice") == ONE_BTC
    # the next print is back near 60,000: applied, the wild one dropped
    out = sim.post_price(usd(60_010))
    m = market(sim)
    assert liquidations(out) == [] and sim.size("alice") == ONE_BTC
    assert (m.oracle_price, m.mark_price, m.pending_oracle_price) == (usd(60_010), usd(60_010), 0)
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_a_jump_confirmed_by_the_next_print_is_applied_and_liquidates():
    sim = ten_x_long()
    assert liquidations(sim.post_price(usd(50_000))) == []       # held
    out = sim.post_price(usd(50_400))                            # within 1% of it: confirmed
    m = market(sim)
    assert (m.oracle_price, m.pending_oracle_price) == (usd(50_400), 0) and m.mark_price == usd(50_400)
    assert liquidations(out) == [Deleverage(ADDR["alice"], BTC, (ADDR["bob"],))] and sim.size("alice") == 0
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_a_jump_after_the_window_is_applied_at_once_and_times_stay_monotonic():
    sim = ten_x_long()
    sim.post_price(usd(50_000))
    pending_time = market(sim).pending_oracle_time_ms
    # a price stamped at or before the pending one is refused (no replays around a held print)
    assert sim.apply(sign_oracle(BTC, usd(60_000), pending_time)).code == "oracle_time_not_monotonic"
    # the applied price is older than the jump window: a large move is taken as it is
    sim.now += BTC_PARAMS.oracle_jump_window_ms + 1
    assert sim.apply(sign_oracle(BTC, usd(70_000), sim.now)) is None
    m = market(sim)
    assert (m.oracle_price, m.pending_oracle_price) == (usd(70_000), 0)


# --- a stale oracle -----------------------------------------------------------------------

def test_a_stale_oracle_blocks_liquidations_fills_funding_and_margin_withdrawals():
    sim = ten_x_long()
    sim.now += BTC_PARAMS.oracle_max_age_ms // 2
    assert liquidations(sim.post_price(usd(50_000))) == []       # a jump, never confirmed
    sim.now = market(sim).oracle_time_ms + BTC_PARAMS.oracle_max_age_ms + 1
    assert is_liquidatable(sim.position("alice"), usd(50_000), market(sim), BTC_PARAMS)
    before = sim.state.to_tables()

    assert sim.apply(Liquidate(ADDR["alice"], BTC)).code == "stale_oracle_price"
    order = sim.order("bob", True, ORACLE, ONE_BTC // 10, leverage=5)   # would cross alice? no: a fresh order
    sim.submit(order)                                                  # rests: nothing fills on a stale oracle
    sell = sim.order("alice", False, ORACLE, ONE_BTC // 10, leverage=10, tif=IMMEDIATE_OR_CANCEL)
    out = sim.submit(sell)
    assert trades(out) == [] and sim.size("alice") == ONE_BTC
    assert get_due_funding_time(market(sim), BTC_PARAMS, sim.now) is None
    assert sim.exchange.due_funding(sim.state, sim.now, sim.ctx) == []
    boundary = sim.now // BTC_PARAMS.funding_interval_ms * BTC_PARAMS.funding_interval_ms
    assert sim.apply(FundingTick(BTC, 10, boundary)).code == "stale_oracle_price"
    assert sim.apply(sim.adjust_record("alice", -usd(100))).code == "stale_oracle_price"
    after = sim.state.to_tables()
    assert after["positions"] == before["positions"] and after["markets"] == before["markets"]


# --- properties, commitment, views ----------------------------------------------------------

prices = st.integers(1, 10**15)


@settings(max_examples=400, deadline=None)
@given(oracle=prices, ema=st.integers(-10**15, 10**15), last=st.integers(0, 10**15),
       age=st.integers(0, 200_000), band=st.integers(0, 7_999))
def test_the_mark_is_a_median_between_its_inputs_and_within_the_band(oracle, ema, last, age, band):
    params = msgspec.structs.replace(BTC_PARAMS, mark_basis_band_ppm=band)
    now = 10**9
    m = Market(BTC, oracle_price=oracle, oracle_time_ms=now, basis_ema=ema, last_trade_price=last,
               last_trade_time_ms=now - age)
    mark = compute_mark_price(m, now, params)
    b = oracle * band // PPM
    inputs = (oracle, oracle + max(-b, min(b, ema)), get_mark_trade_price(m, now, params))
    assert min(inputs) <= mark <= max(inputs)
    assert mark == sorted(inputs)[1] == compute_median3(*inputs)
    assert abs(mark - oracle) <= b and mark > 0


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 120_000), st.integers(1, 10**6)), min_size=1, max_size=40))
def test_the_basis_ema_stays_in_the_band_and_moves_with_time_not_with_the_number_of_trades(steps):
    m = Market(BTC, oracle_price=ORACLE, oracle_time_ms=1, mark_price=ORACLE)
    t = 10**9
    for dt, price_usd in steps:
        t += dt
        old = m
        m = record_trade_price(m, price_usd * 10**6, t, BTC_PARAMS)
        assert abs(m.basis_ema) <= BAND
        if dt == 0 and old.last_trade_time_ms:
            assert m.basis_ema == old.basis_ema


def test_the_mark_is_committed_at_word_six_and_the_escape_values_positions_at_it():
    m = Market(BTC, oracle_price=usd(61_000), oracle_time_ms=5, mark_price=usd(60_500), basis_ema=-7,
               last_trade_price=usd(60_400), last_trade_time_ms=4)
    leaf = encode_market_leaf(m)
    assert len(leaf) == 12 * 32
    assert int.from_bytes(leaf[192:224], "big") == usd(60_500)
    assert int.from_bytes(leaf[224:256], "big", signed=True) == -7
    long = Position(size=ONE_BTC, cost=usd(60_000), margin=usd(600))
    # the bridge's arithmetic (l1_bridge.proofs, bridge.vy _position_equity) at the mark: 600 + 500
    assert compute_position_equity(long, m, BTC_PARAMS.scale, BTC_PARAMS.scale * PPM) == usd(1_100)
    assert compute_equity(long, m.mark_price, m, BTC_PARAMS) == usd(1_100)


def test_the_api_shows_the_mark():
    sim = victim_short_at_20x()
    sim.now += 1_000
    wash_trade(sim, usd(66_000))
    sim.set_price(ORACLE)
    m = market(sim)
    assert m.mark_price != m.oracle_price
    view = describe_market(BTC_PARAMS, m)
    assert (view["markPrice"], view["oraclePrice"]) == (m.mark_price, ORACLE)
    position = describe_position(sim.position("bob"), m, BTC_PARAMS)
    assert position["markPrice"] == m.mark_price
    assert position["unrealizedPnl"] == -ONE_BTC * m.mark_price // BTC_PARAMS.scale + usd(60_000)


def test_replay_reaches_the_same_state_root():
    sim = victim_short_at_20x()
    for i in range(30):
        sim.now += 700
        wash_trade(sim, usd(60_000 + 50 * (i % 7)))
        sim.set_price(ORACLE + usd(i))
    sim.post_price(usd(40_000))                                  # a pending jump in the state too

    def root(state) -> bytes:
        tree = SparseMerkleTree()
        state.dirty = {(table, key) for table in ("accounts", "positions", "orders", "markets")
                       for key in getattr(state, table)} | {("globals", None)}
        tree.update(compute_dirty_leaves(state))
        return tree.root

    replayed = sim.replay()
    assert replayed.to_tables() == sim.state.to_tables()
    assert root(replayed) == root(sim.replay()) == root(sim.state)
    assert market(sim).pending_oracle_price == usd(40_000)
