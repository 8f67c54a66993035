"""What an attacker would try with Deleverage (rules v3): a sequencer naming
counterparties it should not (the same side, no equity, twice, the liquidated
account itself, the fund in ADL, seven, another market's position, a
healthy position, a position in auction): each refused with nothing moved; a
reordered list (the rule does not re-rank) still conserves money and closes
every counterparty at the mark; a whale needing more than six counterparties
(the engine continues over records); dust counterparties (their number slows
a liquidation down, never breaks one); and the engine under v3 against v2 on
the same scenario: the same end state when six counterparties suffice; the
fund's unwind attacked: a sequencer picking whom the fund's position goes
back to (each closes at the mark, rounding aside), an attacker hedged across
two accounts forcing one side onto the fund then riding a move (the engine
hands it back in the same admit: the fund keeps no exposure, gains the fee
and the rounding, loses nothing), and an operator withholding the unwind
(the bridge can then fall short by the fund's loss)."""
from __future__ import annotations

import pytest
from hypothesis import event, given, settings, strategies as st

from deleverage_support import (BTC, CENT_BTC, FUND, ONE_BTC, alice_long, check_invariants, equity_at_mark,
                                fund_position, move_price, state_of, usd)
from sequencer.core.markets import LIQUIDATION_BOOK_AUCTION, LIQUIDATION_BOOK_FIRST, LIQUIDATION_LADDER
from sequencer.core.matching import MAX_LIQUIDATION_STEPS
from sequencer.core.records import Deleverage, ForcedClose, Liquidate
from sequencer.core.rules.liquidation import MAX_DELEVERAGE_COUNTERPARTIES
from sequencer.lab.checks import get_stuck_liquidations

SIX = {f"s{i}": (CENT_BTC, 10) for i in range(1, 7)}


def named(venue, *who: str) -> tuple[bytes, ...]:
    return tuple(FUND if n == "fund" else venue.address(n) for n in who)


def forge(venue, *who: str, account: str = "alice", market: int = BTC) -> Deleverage:
    return Deleverage(venue.address(account), market, named(venue, *who))


def assert_refused(venue, record, code: str) -> None:
    before = state_of(venue)
    error = venue.apply(record)
    assert error is not None and error.code == code, (record, error)
    assert state_of(venue) == before


def bankrupt_alice(fund: int = usd(10_000), price: int = usd(53_000)):
    venue = alice_long(SIX, fund=fund, eve=usd(1_000_000))
    move_price(venue, price)
    return venue


# --- forged lists ---------------------------------------------------------------------------------

def test_a_counterparty_on_the_same_side_is_refused():
    venue = bankrupt_alice()
    venue.place("mm", False, usd(53_000), CENT_BTC, leverage=2)
    venue.place("eve", True, usd(53_000), CENT_BTC, leverage=2)             # eve long, as alice
    assert_refused(venue, forge(venue, "s1", "eve"), "invalid_counterparty")
    assert venue.apply(forge(venue, *SIX)) is None                          # the honest one goes through


def test_a_counterparty_without_equity_is_refused():
    """eve shorts 0.01 at 50,000 at 50x (margin 10); at 53,000 she has lost 30."""
    venue = alice_long(SIX, eve=usd(1_000_000))
    move_price(venue, usd(50_000))
    venue.place("mm", True, usd(50_000), CENT_BTC, leverage=2)
    venue.place("eve", False, usd(50_000), CENT_BTC, leverage=50)
    move_price(venue, usd(53_000))
    assert equity_at_mark(venue, "eve") < 0
    assert_refused(venue, forge(venue, "eve", "s1"), "invalid_counterparty")


@pytest.mark.parametrize("who", [("s1", "s1"), ("s1", "s2", "s1"), ("alice",), ("s1", "alice"),
                                 ("s1", "s2", "s3", "s4", "s5", "s6", "mm"), ()])
def test_a_repeated_self_naming_too_long_or_empty_list_is_refused(who):
    venue = bankrupt_alice()
    assert_refused(venue, forge(venue, *who), "invalid_counterparties")


def test_the_fund_without_a_position_or_a_position_in_another_market_is_refused():
    venue = bankrupt_alice()
    assert_refused(venue, forge(venue, "fund"), "invalid_counterparty")
    venue.set_price(3_000 * 10**6, market=2)
    venue.place("eve", False, 3_000 * 10**6, 10**8, market=2, leverage=2)
    venue.place("mm", True, 3_000 * 10**6, 10**8, market=2, leverage=2)
    assert venue.position("eve", 2).size < 0                                # short ETH, not BTC
    assert_refused(venue, forge(venue, "eve"), "invalid_counterparty")


def test_the_fund_named_alone_in_auto_deleveraging_takes_nothing():
    """The fund took s6's short over at 52,000; at 45,000 with an empty fund
    it cannot pay alice's bad debt, and in ADL its position takes no part: a
    list naming only the fund deleverages nothing."""
    venue = alice_long(SIX, fund=0)
    move_price(venue, usd(52_000))
    assert venue.apply(ForcedClose(0, venue.address("s6"), BTC)) is None     # the rule alone: no unwind
    assert fund_position(venue).size == -CENT_BTC
    move_price(venue, usd(45_000))
    assert venue.apply(forge(venue, "fund", "s1", "s2", "s3", "s4", "s5")) is None
    assert fund_position(venue).size == -CENT_BTC                            # passed over
    assert venue.size("alice") == CENT_BTC                                   # the five took 0.05
    # the last 0.01's bad debt (150 - 60 = 90) is more than the fund's short earns at the mark (70)
    assert_refused(venue, forge(venue, "fund"), "deleverage_failed")
    check_invariants(venue)


def test_a_healthy_position_is_refused():
    venue = alice_long(SIX)
    move_price(venue, usd(57_000))
    assert_refused(venue, forge(venue, *SIX), "not_liquidatable")


def test_a_position_in_auction_is_refused():
    venue = alice_long(SIX, policy=LIQUIDATION_BOOK_AUCTION)
    move_price(venue, usd(54_300))
    assert venue.apply(Liquidate(venue.address("alice"), BTC)) is None
    assert_refused(venue, forge(venue, *SIX), "in_auction")


def test_a_position_closed_whole_cannot_be_deleveraged_again():
    venue = bankrupt_alice()
    record = forge(venue, *SIX)
    assert venue.apply(record) is None
    assert_refused(venue, record, "no_position")


@settings(max_examples=30, deadline=None)
@given(order=st.permutations(list(SIX)), count=st.integers(1, 6), price=st.integers(53_000, 54_600))
def test_any_order_the_sequencer_picks_closes_each_named_counterparty_at_the_mark_or_better(order, count, price):
    """The rule does not re-rank: a sequencer may pick whom to close.  At the
    mark (the fund paying any bad debt) a counterparty gives nothing up: its
    value at the mark (free collateral + equity) never falls."""
    venue = alice_long(SIX)
    move_price(venue, usd(price))
    who = order[:count]
    value = {n: venue.free(n) * venue.markets[BTC].scale + equity_at_mark(venue, n) for n in SIX}
    assert venue.apply(forge(venue, *who)) is None
    for name in SIX:
        now = venue.free(name) * venue.markets[BTC].scale + equity_at_mark(venue, name)
        assert now >= value[name] if name in who else now == value[name]
        assert venue.size(name) == (0 if name in who else -CENT_BTC)
    check_invariants(venue)


# --- more than six counterparties -----------------------------------------------------------------

WHALE = {f"w{i}": (ONE_BTC // 10, 10) for i in range(10)}


@pytest.mark.parametrize("fund", [usd(1_000_000), 0])
def test_a_whale_needing_ten_counterparties_is_closed_over_several_records(fund):
    """alice's 1 BTC against ten shorts of 0.1, bankrupt at 50,000: each
    Deleverage names at most six; the engine writes the next while she is
    liquidatable.  With a rich fund the whole closes at the mark and the fund
    pays the 4,000 of bad debt (each short: margin 600 + 1,000 of profit);
    with an empty fund, which cannot hold her bad debt, every record
    auto-deleverages at her bankruptcy price (54,000): the ten lose alike,
    whichever records name them (margin 600 + 600 of profit each)."""
    venue = alice_long(WHALE, fund=fund)
    free = {n: venue.free(n) for n in WHALE}
    out = venue.set_price(usd(50_000))
    steps = [r for r in out if isinstance(r, Deleverage)]
    assert len(steps) == 2 and all(1 <= len(r.counterparties) <= MAX_DELEVERAGE_COUNTERPARTIES for r in steps)
    assert [len(r.counterparties) for r in steps] == [6, 4]
    assert not any(isinstance(r, Liquidate) for r in out)                  # the ladder policy writes none
    assert venue.size("alice") == 0 and all(venue.size(n) == 0 for n in WHALE)
    assert venue.position("alice").margin == 0
    gains = {n: venue.free(n) - free[n] for n in WHALE}
    if fund:
        assert venue.state.globals.insurance_fund == fund - usd(4_000)
        assert set(gains.values()) == {usd(600) + usd(1_000)}
    else:
        assert venue.state.globals.insurance_fund == 0
        assert set(gains.values()) == {usd(600) + usd(600)}                # first named and last alike
    check_invariants(venue)
    assert venue.replay().to_tables() == venue.state.to_tables()


def test_dust_counterparties_slow_a_liquidation_down_but_never_break_it():
    """Forty 50x shorts of 0.001 BTC (the smallest with a quote unit of
    equity) rank first by profit x leverage; alice's 0.1 needs them all plus
    the big one: the engine writes Deleverage records (six names each) and
    the liquidation ends within one update's steps; money is conserved and
    no balance is negative."""
    dust = {f"d{i}": (CENT_BTC // 10, 50) for i in range(40)}
    venue = alice_long({**dust, "big": (6 * CENT_BTC, 2)}, fund=usd(10_000))
    out = venue.set_price(usd(53_000))
    steps = [r for r in out if isinstance(r, Deleverage)]
    assert 7 <= len(steps) <= MAX_LIQUIDATION_STEPS
    assert venue.size("alice") == 0
    assert get_stuck_liquidations(venue.state, venue.markets, venue.now) == []
    check_invariants(venue)


# --- v3 against v2 on the same scenario ------------------------------------------------------------

def run_engine(schema_version: int, shorts: dict, fund: int, leverage: int, price: int, policy: int):
    venue = alice_long(shorts, fund=fund, alice_leverage=leverage, schema_version=schema_version, policy=policy)
    out = venue.set_price(price)
    return venue, out


def end_state(venue) -> tuple:
    positions = {k: (p.size, p.cost, p.margin) for k, p in venue.state.positions.items()}
    positions = {k: v for k, v in positions.items() if v != (0, 0, 0)}
    accounts = {a: acc.collateral for a, acc in venue.state.accounts.items()}
    return positions, accounts, venue.state.globals.insurance_fund


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(1, 30), st.integers(1, 50)), min_size=1, max_size=6),
       fund=st.sampled_from([0, usd(50), usd(100_000)]), leverage=st.integers(5, 20),
       price=st.integers(45_000, 57_000), policy=st.sampled_from([LIQUIDATION_LADDER, LIQUIDATION_BOOK_FIRST]))
def test_v3_ends_where_v2_ends_when_six_counterparties_suffice(sizes, fund, leverage, price, policy):
    shorts = {f"s{i}": (lots * CENT_BTC // 2, lev) for i, (lots, lev) in enumerate(sizes)}
    v2, out2 = run_engine(2, shorts, fund, leverage, usd(price), policy)
    v3, out3 = run_engine(3, shorts, fund, leverage, usd(price), policy)
    assert not any(isinstance(r, Deleverage) for r in out2)
    steps = sum(isinstance(r, Liquidate) for r in out2)
    event("no liquidation" if not steps else "one step" if steps == 1 else "several steps")
    event("the fund paid bad debt" if v2.state.globals.insurance_fund < fund else f"the fund did not pay (fund {fund})")
    assert end_state(v3) == end_state(v2)
    check_invariants(v3)


# --- the fund's market risk (rules v3) ------------------------------------------------------------

def test_an_operator_that_never_unwinds_the_fund_leaves_it_market_risk_and_the_bridge_can_fall_short():
    """Found by the stateful adversary before the engine unwound the fund:
    with an empty fund, alice's healthy 2x long of 0.01 is forced closed (the
    fund takes it over at 60,000, no fee), then the price falls 45%.  Only a
    Deleverage naming the fund unwinds its position, and only the sequencer
    writes one: an operator that withholds it (the rule alone here: no
    engine) leaves the fund's loss at the mark as a shortfall, users' claims
    above what the bridge holds by exactly that loss."""
    from sequencer.lab.checks import compute_position_equity, compute_solvency_gap
    venue = alice_long({"s1": (CENT_BTC, 2)}, fund=0, alice_leverage=2)
    assert compute_solvency_gap(venue.state, venue.markets) <= 0
    assert venue.apply(ForcedClose(0, venue.address("alice"), BTC)) is None
    assert fund_position(venue).size == CENT_BTC and venue.state.globals.insurance_fund == 0
    move_price(venue, usd(33_000))                                           # no engine: nothing unwinds
    loss = -compute_position_equity(venue.state, venue.markets, BTC, fund_position(venue))
    assert loss == usd(270)                                                  # 0.01 x (60,000 - 33,000)
    assert compute_solvency_gap(venue.state, venue.markets) == loss
    check_invariants(venue)                                                  # money is conserved all the same


def test_the_engine_hands_a_forced_close_back_at_once_so_the_fall_costs_the_fund_nothing():
    """The same forced close through the engine: in the same admit it writes
    Deleverage(fund, BTC, [s1]), the fund's long closes at 60,000 against s1's
    short (s1 gets its margin back, no PnL), and the 45% fall later finds
    the fund flat: no shortfall, the fund exactly as before."""
    from sequencer.lab.checks import compute_solvency_gap
    venue = alice_long({"s1": (CENT_BTC, 2)}, fund=0, alice_leverage=2)
    free = venue.free("s1")
    record = ForcedClose(0, venue.address("alice"), BTC)
    assert venue.submit(record) == [record, Deleverage(FUND, BTC, (venue.address("s1"),))]
    assert fund_position(venue).size == 0 and venue.size("s1") == 0 and venue.free("s1") == free + usd(300)
    out = venue.set_price(usd(33_000))
    assert not any(isinstance(r, (Liquidate, Deleverage)) for r in out)
    assert venue.state.globals.insurance_fund == 0 and compute_solvency_gap(venue.state, venue.markets) <= 0
    check_invariants(venue)
    assert venue.replay().to_tables() == venue.state.to_tables()


# --- the fund's unwind, attacked --------------------------------------------------------------------

def value_at_mark(venue, name: str) -> int:
    """Free collateral + equity at the mark, x scale."""
    return venue.free(name) * venue.markets[BTC].scale + equity_at_mark(venue, name)


def fund_value_at_mark(venue) -> int:
    """The fund's cash + its position's equity at the mark, x scale."""
    position, params = fund_position(venue), venue.markets[BTC]
    return (venue.state.globals.insurance_fund * params.scale + position.size * venue.mark()
            - position.cost * params.scale)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 20), min_size=6, max_size=6), order=st.permutations(list(SIX)),
       count=st.integers(1, 6), price=st.integers(45_000 * 10**6, 70_000 * 10**6))
def test_a_sequencer_unwinding_the_fund_against_users_it_picks_closes_them_at_the_mark(sizes, order, count, price):
    """The rule does not re-rank: a sequencer picks whom the fund's position
    goes back to.  With a fund that can pay, each named user closes at the
    mark: its value at the mark (free collateral + equity) moves by the
    rounding alone (the total rounded in the fund's favour, split among the
    names rounded down but for the last: less than a unit up, less than one
    unit per name down), the others do not move, the fund's value at the
    mark rises by exactly what the users lost together (>= 0), and money is
    conserved."""
    shorts = {name: (lots * CENT_BTC // 4, 5) for name, lots in zip(SIX, sizes)}     # 5x: solvent to 72,000
    venue = alice_long(shorts, fund=usd(1_000_000))
    assert venue.apply(ForcedClose(0, venue.address("alice"), BTC)) is None
    move_price(venue, price)
    who = order[:count]
    before = {n: value_at_mark(venue, n) for n in SIX}
    fund_before = fund_value_at_mark(venue)
    assert venue.apply(Deleverage(FUND, BTC, named(venue, *who))) is None
    scale = venue.markets[BTC].scale
    losses = {n: before[n] - value_at_mark(venue, n) for n in SIX}
    for name in SIX:
        if name in who:
            assert venue.size(name) == 0 and -scale < losses[name] < (count + 1) * scale
        else:
            assert losses[name] == 0 and venue.size(name) == -shorts[name][0]
    assert fund_value_at_mark(venue) - fund_before == sum(losses.values()) >= 0
    assert fund_position(venue).size == sum(shorts[n][0] for n in SIX if n not in who)
    check_invariants(venue)


@settings(max_examples=40, deadline=None)
@given(lots=st.integers(1, 40), a_leverage=st.sampled_from([2, 5, 10, 20]), b_leverage=st.sampled_from([1, 2]),
       others=st.integers(0, 3), fund=st.sampled_from([0, usd(500), usd(100_000)]),
       close_at=st.integers(57_000, 63_000), move_ppm=st.sampled_from([-300_000, -200_000, -20_000, 20_000,
                                                                      200_000, 300_000]))
def test_an_attacker_hedged_across_two_accounts_gains_nothing_from_the_fund(lots, a_leverage, b_leverage, others,
                                                                           fund, close_at, move_ppm):
    """The attacker holds a long in A and the same short in B (against each
    other), forces A's long onto the fund (ForcedClose), then the price moves
    hard, hoping the fund keeps the long (its loss being B's gain).  The
    engine hands the long back in the same admit (to B, or to the honest
    shorts ranked before it): after the admit the fund holds nothing, its
    cash has not fallen (the fee and the rounding are its), and A + B are
    worth no more at the mark than before; the move then costs the fund
    nothing (no position; the shorts here are 1x-2x, so nobody is
    liquidated) and the bridge is never short."""
    from sequencer.lab.checks import compute_solvency_gap, get_fund_positions
    from deleverage_support import make_venue
    size = lots * CENT_BTC // 4
    venue = make_venue(fund, A=usd(1_000_000), B=usd(1_000_000), **{f"h{i}": usd(1_000_000) for i in range(others)})
    venue.set_price(usd(60_000))
    for name in [f"h{i}" for i in range(others)] + ["B"]:
        venue.place(name, False, usd(60_000), size, leverage=b_leverage)
        venue.place("mm" if name != "B" else "A", True, usd(60_000), size, leverage=2 if name != "B" else a_leverage)
    assert venue.size("A") == size and venue.size("B") == -size
    venue.set_price(usd(close_at))
    cash = venue.state.globals.insurance_fund
    attacker = value_at_mark(venue, "A") + value_at_mark(venue, "B")
    out = venue.submit(ForcedClose(0, venue.address("A"), BTC))
    event("A closed by the fund" if venue.size("A") == 0 else "A liquidated before")
    event("B took the long back" if venue.size("B") != -size else "honest shorts took it back")
    assert get_fund_positions(venue.state) == [] and venue.state.globals.insurance_fund >= cash
    assert value_at_mark(venue, "A") + value_at_mark(venue, "B") <= attacker
    assert len([r for r in out if isinstance(r, Deleverage)]) <= 1
    cash = venue.state.globals.insurance_fund
    out = venue.set_price(venue.mark() + venue.mark() * move_ppm // 10**6)
    assert not any(isinstance(r, (Liquidate, Deleverage)) for r in out)
    assert get_fund_positions(venue.state) == [] and venue.state.globals.insurance_fund == cash
    assert compute_solvency_gap(venue.state, venue.markets) <= 0
    check_invariants(venue)
    assert venue.replay().to_tables() == venue.state.to_tables()
