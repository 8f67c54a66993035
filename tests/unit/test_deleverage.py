"""Deleverage (tag 24, rules v3) in pre/op/post form, one branch of
``process_deleverage`` at a time: each refusal (nothing moves), the close at
the mark over 1 to 6 named counterparties (whole and partial), bad debt paid
by the fund, auto-deleveraging when the fund cannot pay (whole: margin exactly
0; partial: each counterparty within its cap, the rest's margin >= 0), the
fund's own position named at the mark and passed over in ADL, a negative
margin after funding; then what else v3 changed (Liquidate and AuctionEnd
stop, the backstop writes the funding-settled position, a forced close goes
to the fund) and Hypothesis properties over random markets, positions and
named lists (conservation exact, no negative balance, determinism, open
interest = the longs)."""
from __future__ import annotations

import msgspec
import pytest
from hypothesis import event, given, settings, strategies as st

from deleverage_support import (BTC, CENT_BTC, FUND, ONE_BTC, alice_long, check_invariants, equity_at_mark,
                                fund_position, move_price, state_of, usd)
from sequencer.core.markets import (LIQUIDATION_BACKSTOP, LIQUIDATION_BOOK_AUCTION, LIQUIDATION_BOOK_FIRST,
                                    LIQUIDATION_LADDER)
from sequencer.core.matching import choose_deleverage_counterparties, choose_unwind_counterparties
from sequencer.core.records import AuctionEnd, Deleverage, ForcedClose, Liquidate
from sequencer.core.rules.liquidation import (MAX_DELEVERAGE_COUNTERPARTIES, absorb_funding_deficit, compute_liquidation_size,
                                              can_fund_pay_shortfall, make_deleverage_cap,
                                              rank_by_profit_and_leverage)
from sequencer.core.rules.margin import compute_fee, compute_equity_scaled, is_liquidatable
from sequencer.core.rules.positions import settle_funding
from sequencer.core.state import Position

SIX = {f"s{i}": (CENT_BTC, 10) for i in range(1, 7)}
"""Six 10x shorts of 0.01 BTC at 60,000 against alice's 10x long of 0.06 BTC
(margin 360, bankruptcy price 54,000, liquidatable below about 54,656; 3,240
of notional at 54,000 is below the partial threshold: a step is the whole)."""


def names(venue, *who: str) -> tuple[bytes, ...]:
    return tuple(venue.address(n) if n != "fund" else FUND for n in who)


def deleverage(venue, *who: str, account: str = "alice") -> Deleverage:
    return Deleverage(venue.address(account), BTC, names(venue, *who))


def refused(venue, record, code: str) -> None:
    before = state_of(venue)
    error = venue.apply(record)
    assert error is not None and error.code == code, error
    assert state_of(venue) == before


def liquidatable_alice(fund: int = usd(10_000), price: int = usd(54_300), shorts=None, **kw):
    venue = alice_long(SIX if shorts is None else shorts, fund=fund, **kw)
    move_price(venue, price)
    return venue


# --- refusals: each leaves the state as it was ---------------------------------------------------

def test_a_market_not_listed_is_refused():
    venue = liquidatable_alice()
    refused(venue, Deleverage(venue.address("alice"), 99, names(venue, "s1")), "unknown_market")


def test_the_insurance_fund_without_a_position_is_refused():
    """A Deleverage naming the fund as its account unwinds the fund's own
    position (below); with none in the market there is nothing to unwind."""
    venue = liquidatable_alice()
    refused(venue, Deleverage(FUND, BTC, names(venue, "s1")), "no_position")


def test_a_stale_mark_is_refused():
    venue = liquidatable_alice()
    venue.now += venue.markets[BTC].oracle_max_age_ms + 1
    refused(venue, deleverage(venue, "s1"), "stale_oracle_price")


def test_an_account_without_a_position_is_refused():
    venue = liquidatable_alice(mm=usd(1))
    refused(venue, deleverage(venue, "s1", account="erin"), "no_position")


def test_a_healthy_position_is_refused():
    venue = alice_long(SIX)
    move_price(venue, usd(54_700))                          # just above the threshold
    refused(venue, deleverage(venue, "s1"), "not_liquidatable")


@pytest.mark.parametrize("who", [(), ("s1",) * 2, tuple(f"s{i}" for i in range(1, 7)) + ("erin",),
                                 ("s1", "alice")])
def test_a_list_that_is_empty_too_long_repeated_or_names_the_account_is_refused(who):
    venue = liquidatable_alice()
    refused(venue, deleverage(venue, *who), "invalid_counterparties")


def test_an_address_that_is_not_20_bytes_is_refused():
    venue = liquidatable_alice()
    refused(venue, Deleverage(venue.address("alice"), BTC, (venue.address("s1")[:19],)), "invalid_counterparties")


def test_a_counterparty_on_the_same_side_or_without_a_position_is_refused():
    venue = liquidatable_alice()
    venue.place("mm", False, usd(54_300), 2 * CENT_BTC, leverage=2)
    venue.place("erin", True, usd(54_300), CENT_BTC, leverage=2)    # erin long, like alice
    venue.place("s1", True, usd(54_300), CENT_BTC, leverage=10)      # s1 buys its short back: flat
    assert venue.size("erin") == CENT_BTC and venue.size("s1") == 0
    refused(venue, deleverage(venue, "erin"), "invalid_counterparty")
    refused(venue, deleverage(venue, "s2", "s1"), "invalid_counterparty")      # s1 has no position any more
    refused(venue, deleverage(venue, "s2", "nobody"), "invalid_counterparty")  # never had one


def test_a_counterparty_with_less_than_one_quote_unit_of_equity_is_refused():
    """frank went short 0.01 at 50,000 at 50x (margin 10): at 54,300 he has
    lost 43, his equity is below 0 (no scan has liquidated him)."""
    venue = alice_long(SIX, frank=usd(1_000_000))
    move_price(venue, usd(50_000))
    venue.place("erin", True, usd(50_000), CENT_BTC, leverage=1)
    venue.place("frank", False, usd(50_000), CENT_BTC, leverage=50)
    move_price(venue, usd(54_300))
    market, params = venue.state.markets[BTC], venue.markets[BTC]
    assert compute_equity_scaled(venue.position("frank"), venue.mark(), market, params) < params.scale
    refused(venue, deleverage(venue, "s1", "frank"), "invalid_counterparty")


def test_a_position_in_auction_is_refused():
    venue = alice_long(SIX, policy=LIQUIDATION_BOOK_AUCTION)
    move_price(venue, usd(54_300))
    assert venue.apply(Liquidate(venue.address("alice"), BTC)) is None      # no makers: the auction starts
    assert (venue.address("alice"), BTC) in venue.state.auctions
    refused(venue, deleverage(venue, "s1"), "in_auction")


# --- close at the mark ------------------------------------------------------------------------------

@pytest.mark.parametrize("count", range(1, MAX_DELEVERAGE_COUNTERPARTIES + 1))
def test_close_at_the_mark_against_one_to_six_named_counterparties(count):
    """Each named short closes whole in order (0.01 each), the others are
    untouched; alice's equity at the mark drops by exactly the fee, which the
    fund gets; whole with six, partial with fewer."""
    venue = liquidatable_alice()
    named = [f"s{i}" for i in range(1, count + 1)]
    free = {n: venue.free(n) for n in SIX}
    equity, fund = equity_at_mark(venue, "alice"), venue.state.globals.insurance_fund
    order_count = venue.state.globals.order_count
    assert venue.apply(deleverage(venue, *named)) is None
    closed = count * CENT_BTC
    fee = compute_fee(closed * usd(54_300) // ONE_BTC, venue.markets[BTC].liquidation_fee_ppm)
    assert venue.size("alice") == 6 * CENT_BTC - closed
    assert venue.state.globals.insurance_fund == fund + fee
    assert equity_at_mark(venue, "alice") == equity - fee * venue.markets[BTC].scale
    assert venue.position("alice").order_epoch == order_count                  # its orders cancelled
    for name in SIX:
        if name in named:   # margin 60 + profit (60,000 - 54,300) x 0.01 = 57 released to free collateral
            assert venue.position(name) == Position() and venue.free(name) == free[name] + usd(60) + usd(57)
        else:
            assert venue.size(name) == -CENT_BTC and venue.free(name) == free[name]
    check_invariants(venue)


def test_a_counterparty_larger_than_the_step_takes_only_what_is_left():
    venue = alice_long({"big": (5 * CENT_BTC, 10), "s1": (CENT_BTC, 10)})
    venue.place("big", False, usd(60_000), 5 * CENT_BTC, leverage=10)
    venue.place("erin", True, usd(60_000), 5 * CENT_BTC, leverage=2)       # big is short 0.10 in all
    move_price(venue, usd(54_300))
    assert venue.apply(deleverage(venue, "s1", "big")) is None               # s1 first: the engine's order
    assert venue.size("alice") == 0 and venue.size("s1") == 0 and venue.size("big") == -5 * CENT_BTC
    check_invariants(venue)


def test_a_partial_liquidation_step_closes_only_the_step():
    """1 BTC at 54,300 is above the 10,000 partial threshold and solvent: the
    step is 20% (0.2 BTC), though the named short could take it all."""
    venue = liquidatable_alice(shorts={"s1": (ONE_BTC, 10)})
    position, market = venue.position("alice"), venue.state.markets[BTC]
    step = compute_liquidation_size(position, venue.mark(), market, venue.markets[BTC])
    assert step == ONE_BTC // 5
    assert venue.apply(deleverage(venue, "s1")) is None
    assert venue.size("alice") == ONE_BTC - step and venue.size("s1") == -(ONE_BTC - step)
    check_invariants(venue)


def test_bad_debt_is_paid_by_the_fund():
    """At 53,000 alice's 0.06 has lost 420 against a margin of 360: the fund pays 60."""
    venue = liquidatable_alice(price=usd(53_000))
    fund = venue.state.globals.insurance_fund
    assert venue.apply(deleverage(venue, *SIX)) is None
    assert venue.position("alice") == Position(order_epoch=venue.state.globals.order_count)
    assert venue.state.globals.insurance_fund == fund - usd(60)
    assert all(venue.size(n) == 0 for n in SIX)
    check_invariants(venue)


# --- the fund cannot pay: auto-deleveraging -----------------------------------------------------

def test_fund_short_deleverages_the_whole_position_at_its_bankruptcy_price():
    """Fund 0, alice bankrupt at 53,000: closed at 54,000 against the six,
    her margin exactly 0; the fund does not move."""
    venue = liquidatable_alice(fund=0, price=usd(53_000))
    free = {n: venue.free(n) for n in SIX}
    assert venue.apply(deleverage(venue, *SIX)) is None
    alice = venue.position("alice")
    assert (alice.size, alice.cost, alice.margin) == (0, 0, 0)
    assert venue.state.globals.insurance_fund == 0
    for name in SIX:     # margin 60 + (60,000 - 54,000) x 0.01 = 60 of profit at the bankruptcy price
        assert venue.position(name) == Position() and venue.free(name) == free[name] + usd(60) + usd(60)
    check_invariants(venue)


def test_a_bankrupt_position_the_fund_cannot_pay_whole_is_deleveraged_at_its_bankruptcy_price_even_in_part():
    """At 53,000 alice's 0.06 is 60 short of her margin and the fund holds 0:
    though two of the six (0.02) would lose only 140 of her 360 at the mark
    (no bad debt in this step), the fund cannot pay the whole position's, so
    the step is auto-deleveraged: s1 and s2 take 0.02 at her bankruptcy price
    (54,000), her rest keeps 4/6 of her margin and her bankruptcy price, and
    every lot, now and later, loses alike (can_fund_pay_shortfall)."""
    venue = liquidatable_alice(fund=0, price=usd(53_000))
    free = {n: venue.free(n) for n in SIX}
    assert venue.apply(deleverage(venue, "s1", "s2")) is None
    alice = venue.position("alice")
    assert alice.size == 4 * CENT_BTC and alice.margin == usd(240)
    assert alice.cost - alice.margin == usd(54_000) * 4 * CENT_BTC // ONE_BTC      # bankruptcy price 54,000 kept
    assert equity_at_mark(venue, "alice") == -usd(40) * venue.markets[BTC].scale  # 4/6 of the deficit
    assert venue.state.globals.insurance_fund == 0
    for name in ("s1", "s2"):    # margin 60 + (60,000 - 54,000) x 0.01 at the bankruptcy price
        assert venue.position(name) == Position() and venue.free(name) == free[name] + usd(60) + usd(60)
    assert venue.apply(deleverage(venue, "s3", "s4", "s5", "s6")) is None
    assert venue.size("alice") == 0 and venue.position("alice").margin == 0
    for name in ("s3", "s4", "s5", "s6"):   # the last four lose exactly what the first two did
        assert venue.free(name) == free[name] + usd(60) + usd(60)
    check_invariants(venue)


@pytest.mark.parametrize("fund, at_mark", [(usd(60), True), (usd(60) - 1, False)])
def test_the_close_at_the_mark_needs_a_fund_that_holds_the_whole_positions_bad_debt(fund, at_mark):
    """The fairness pre-check: alice's whole bad debt at 53,000 is 60.  A fund
    of 60 holds it: the step closes at the mark (s1 and s2 get 70 of profit
    each; alice's margin absorbs it, no fee is left to charge) and the fund
    pays nothing yet; one unit less and the same record auto-deleverages at
    54,000 (60 of profit each), the fund untouched."""
    venue = liquidatable_alice(fund=fund, price=usd(53_000))
    free = {n: venue.free(n) for n in SIX}
    assert venue.apply(deleverage(venue, "s1", "s2")) is None
    profit = usd(70) if at_mark else usd(60)
    assert all(venue.free(n) == free[n] + usd(60) + profit for n in ("s1", "s2"))
    assert venue.size("alice") == 4 * CENT_BTC and venue.state.globals.insurance_fund == fund
    check_invariants(venue)


def test_fund_short_partial_deleverage_leaves_the_rest_with_its_margin_and_bankruptcy_price():
    """At 50,000 four of the six (0.04) lose 400 at the mark against alice's
    360 of margin: the fund (0) cannot pay, so they take 0.04 at her bankruptcy price."""
    venue = liquidatable_alice(fund=0, price=usd(50_000))
    before = venue.position("alice")
    assert venue.apply(deleverage(venue, "s1", "s2", "s3", "s4")) is None
    alice = venue.position("alice")
    assert alice.size == 2 * CENT_BTC and alice.margin >= 0
    assert alice.margin == usd(120)                         # 2/6 of 360: the rest keeps its bankruptcy price
    assert alice.cost * before.margin == before.cost * alice.margin
    assert venue.state.globals.insurance_fund == 0 and venue.size("s5") == -CENT_BTC
    assert all(venue.size(n) == 0 for n in ("s1", "s2", "s3", "s4"))
    check_invariants(venue)


def test_auto_deleverage_takes_no_more_from_a_counterparty_than_its_cap():
    """At 45,000 (alice bankrupt by 540 on 0.06) the late short (opened at
    45,000 at 50x: margin 9, no profit) can pay the 9,000 gap per BTC for
    about 0.001 BTC only: its cap, not its size, bounds it; the six take the rest."""
    venue = alice_long(SIX, fund=0, late=usd(1_000_000))
    move_price(venue, usd(45_000))
    venue.place("erin", True, usd(45_000), CENT_BTC, leverage=1)
    venue.place("late", False, usd(45_000), CENT_BTC, leverage=50)
    alice, late = venue.position("alice"), venue.position("late")
    cap = make_deleverage_cap(alice, venue.mark(), venue.state.markets[BTC], venue.markets[BTC])
    assert 0 < cap(late) < CENT_BTC
    assert venue.apply(deleverage(venue, "late", "s1", "s2", "s3", "s4", "s5")) is None
    assert venue.size("late") == -(CENT_BTC - cap(late)) and venue.position("late").margin >= 0
    assert venue.size("alice") == CENT_BTC - cap(late)                   # s1..s5 took 0.05
    assert venue.position("alice").margin >= 0 and venue.state.globals.insurance_fund == 0
    check_invariants(venue)


def test_a_negative_margin_after_funding_moves_into_the_cost():
    """Funding owed beyond alice's margin: the deficit moves into her cost
    (absorb_funding_deficit), so her margin is never negative, her equity and
    bankruptcy price are as before, a partial ADL leaves the rest with a
    margin of 0 or more and the whole ends at exactly 0."""
    venue = liquidatable_alice(fund=0, price=usd(53_000))
    market = venue.state.markets[BTC]
    # alice (and the shorts' mirror image) owe 400 of funding per 0.06 BTC: more than her 360 of margin
    index = usd(400) * venue.markets[BTC].scale * 1_000_000 // (6 * CENT_BTC)
    venue.state.set_market(msgspec.structs.replace(market, funding_index=market.funding_index + index))
    owing = settled(venue, "alice")
    assert owing.margin < 0
    absorbed = absorb_funding_deficit(owing)
    assert (absorbed.margin, absorbed.margin - absorbed.cost) == (0, owing.margin - owing.cost)
    assert venue.apply(deleverage(venue, "s1", "s2")) is None
    rest = venue.position("alice")
    assert 0 < abs(rest.size) < abs(owing.size) and rest.margin >= 0
    assert venue.apply(deleverage(venue, "s3", "s4", "s5", "s6")) is None
    assert (venue.size("alice"), venue.position("alice").margin) == (0, 0)
    check_invariants(venue)


def settled(venue, name: str) -> Position:
    """The position with its funding settled (computed on the state, then undone)."""
    snapshot = venue.state.snapshot()
    position = settle_funding(venue.state, venue.address(name), BTC, venue.position(name), venue.markets[BTC])
    venue.state.revert(snapshot)
    return position


# --- the fund's own position -----------------------------------------------------------------------

def fund_holds_a_short(fund: int, price: int = usd(60_000)):
    """s6 asks for a forced close at ``price`` (healthy: fee 0): the fund takes
    its 0.01 short over at the mark (rules v3; the rule alone: the engine
    would unwind it at once, below)."""
    venue = alice_long(SIX, fund=fund)
    if price != usd(60_000):
        move_price(venue, price)
    assert venue.apply(ForcedClose(0, venue.address("s6"), BTC)) is None
    assert fund_position(venue).size == -CENT_BTC and venue.state.globals.insurance_fund == fund
    return venue


def test_the_funds_own_position_named_first_closes_at_the_mark_into_the_fund():
    venue = fund_holds_a_short(usd(10_000))
    move_price(venue, usd(54_300))
    chosen = choose_deleverage_counterparties(venue.state, venue.address("alice"), venue.position("alice"),
                                              venue.mark(), venue.markets[BTC])
    assert chosen[0] == FUND and set(chosen[1:]) == set(names(venue, "s1", "s2", "s3", "s4", "s5"))
    record = Deleverage(venue.address("alice"), BTC, chosen)
    fee = compute_fee(usd(54_300) * 6 // 100, venue.markets[BTC].liquidation_fee_ppm)
    assert venue.apply(record) is None
    assert fund_position(venue).size == 0 and venue.size("alice") == 0
    # the fund's short (60,000 -> 54,300 on 0.01) realises 57 into the fund, with the fee
    assert venue.state.globals.insurance_fund == usd(10_000) + usd(57) + fee
    check_invariants(venue)


def test_the_funds_own_position_is_passed_over_in_auto_deleveraging():
    """Fund 0 with a short of 0.01 taken over at 52,000: at 45,000 alice's bad
    debt (540) is more than the fund's short earns (70), so the record
    deleverages; the fund's position takes no part; the five users take 0.05
    (a part: margin >= 0).  Named alone, the fund cannot pay the last 0.01's
    bad debt (90 > 70) and takes no lot in ADL: refused."""
    venue = fund_holds_a_short(0, usd(52_000))
    move_price(venue, usd(45_000))
    assert venue.apply(Deleverage(venue.address("alice"), BTC,
                                  names(venue, "fund", "s1", "s2", "s3", "s4", "s5"))) is None
    assert fund_position(venue).size == -CENT_BTC and venue.state.globals.insurance_fund == 0
    assert venue.size("alice") == CENT_BTC and venue.position("alice").margin >= 0
    refused(venue, Deleverage(venue.address("alice"), BTC, (FUND,)), "deleverage_failed")   # the fund alone: no lot
    check_invariants(venue)


# --- what else rules v3 changed -------------------------------------------------------------------

@pytest.mark.parametrize("policy", [LIQUIDATION_LADDER, LIQUIDATION_BOOK_FIRST])
def test_a_v3_liquidate_stops_where_the_ladder_starts(policy):
    """Ladder policy, or book-first with no makers: the record settles funding
    and cancels the owner's orders; no lot moves, the fund does not move."""
    venue = liquidatable_alice(policy=policy)
    before, fund = venue.position("alice"), venue.state.globals.insurance_fund
    assert venue.apply(Liquidate(venue.address("alice"), BTC)) is None
    after = venue.position("alice")
    assert (after.size, after.cost, after.margin) == (before.size, before.cost, before.margin)
    assert after.order_epoch == venue.state.globals.order_count
    assert venue.state.globals.insurance_fund == fund and all(venue.size(n) == -CENT_BTC for n in SIX)
    check_invariants(venue)


def test_a_v3_auction_end_keeps_the_unsold_lots_in_the_position():
    venue = liquidatable_alice(policy=LIQUIDATION_BOOK_AUCTION)
    assert venue.apply(Liquidate(venue.address("alice"), BTC)) is None
    auction = venue.state.auctions[(venue.address("alice"), BTC)]
    venue.now = auction.end_ms
    assert venue.apply_price(usd(54_300)) is None
    assert venue.apply(AuctionEnd(venue.address("alice"), BTC)) is None
    assert venue.state.auctions == {} and venue.size("alice") == 6 * CENT_BTC
    assert all(venue.size(n) == -CENT_BTC for n in SIX)
    assert venue.position("alice").order_epoch == venue.state.globals.order_count
    assert venue.apply(deleverage(venue, *SIX)) is None and venue.size("alice") == 0     # the ladder goes on
    check_invariants(venue)


def test_a_v3_backstop_the_fund_cannot_pay_writes_only_the_funding_settled_position():
    venue = liquidatable_alice(fund=0, price=usd(50_000), policy=LIQUIDATION_BACKSTOP)
    market = venue.state.markets[BTC]
    venue.state.set_market(msgspec.structs.replace(market, funding_index=market.funding_index + 10**12))
    expected = settled(venue, "alice")
    assert expected.margin < venue.position("alice").margin
    assert venue.apply(Liquidate(venue.address("alice"), BTC)) is None
    assert venue.position("alice") == expected and fund_position(venue).size == 0
    assert venue.state.globals.insurance_fund == 0
    check_invariants(venue)


@pytest.mark.parametrize("price, fee", [(usd(60_000), False), (usd(54_300), True)])
def test_a_v3_forced_close_goes_to_the_fund_at_the_mark(price, fee):
    venue = liquidatable_alice(price=price)
    assert is_liquidatable(venue.position("alice"), price, venue.state.markets[BTC], venue.markets[BTC]) == fee
    fund, free = venue.state.globals.insurance_fund, venue.free("alice")
    equity = equity_at_mark(venue, "alice") // venue.markets[BTC].scale
    assert venue.apply(ForcedClose(0, venue.address("alice"), BTC)) is None
    charged = compute_fee(6 * CENT_BTC * price // ONE_BTC, venue.markets[BTC].liquidation_fee_ppm) if fee else 0
    assert venue.size("alice") == 0 and venue.free("alice") == free + equity - charged
    assert fund_position(venue).size == 6 * CENT_BTC and venue.state.globals.insurance_fund == fund + charged
    assert all(venue.size(n) == -CENT_BTC for n in SIX)
    check_invariants(venue)


def test_a_v3_forced_close_the_fund_cannot_pay_is_served_with_nothing_moved():
    venue = liquidatable_alice(fund=0, price=usd(50_000))
    before = state_of(venue)
    venue.submit(ForcedClose(0, venue.address("alice"), BTC))
    after = state_of(venue)
    assert after["globals"].inbox_count == before["globals"].inbox_count + 1          # served
    assert after["positions"] == before["positions"] and after["accounts"] == before["accounts"]
    assert after["globals"].insurance_fund == 0


# --- properties ------------------------------------------------------------------------------------

CANDIDATES = ("s0", "s1", "s2", "s3", "s4", "s5", "s6", "alice", "erin", "fund", "nobody")


@st.composite
def scenarios(draw):
    count = draw(st.integers(1, 7))
    shorts = {f"s{i}": (draw(st.integers(1, 40)) * CENT_BTC // 10, draw(st.integers(1, 50))) for i in range(count)}
    fund = draw(st.sampled_from([0, usd(10), usd(1_000), usd(1_000_000)]))
    leverage = draw(st.integers(2, 20))
    price = draw(st.integers(40_000, 60_000)) * usd(1)
    named = draw(st.lists(st.sampled_from(CANDIDATES), min_size=0, max_size=8))
    forced = draw(st.booleans())       # the fund takes s0's short over first
    return shorts, fund, leverage, price, named, forced


def run_scenario(shorts, fund, leverage, price, named, forced):
    venue = alice_long(shorts, fund=fund, alice_leverage=leverage)
    if forced:
        assert venue.apply(ForcedClose(0, venue.address("s0"), BTC)) is None
    move_price(venue, price)
    record = Deleverage(venue.address("alice"), BTC, names(venue, *named))
    before = state_of(venue)
    error = venue.apply(record)
    return venue, before, error


@settings(max_examples=60, deadline=None)
@given(scenario=scenarios())
def test_any_deleverage_conserves_money_keeps_balances_and_is_deterministic(scenario):
    venue, before, error = run_scenario(*scenario)
    if error is not None:
        assert state_of(venue) == before
    else:
        old = before["positions"]
        alice_before = dict(old)[(venue.address("alice"), BTC)]
        assert 0 <= venue.size("alice") < alice_before.size
        named = set(names(venue, *scenario[4]))
        for (address, market), position in dict(old).items():      # only the named counterparties move
            if address not in named and address != venue.address("alice"):
                now = venue.state.positions.get((address, market))
                assert now is not None and now.size == position.size
            elif address in named:
                now = venue.state.positions.get((address, market)) or Position()
                assert abs(now.size) <= abs(position.size) and now.size * position.size >= 0
    check_invariants(venue)
    again, _, error_again = run_scenario(*scenario)
    assert state_of(again) == state_of(venue) and (error_again is None) == (error is None)


@settings(max_examples=40, deadline=None)
@given(scenario=scenarios())
def test_the_engines_choice_is_accepted_whenever_it_names_someone(scenario):
    """The engine's named list (fund first, then the ranking; users alone with
    their caps when the fund cannot pay) is a valid record for a liquidatable
    position, and each one closes at least one lot."""
    venue = make_liquidatable_scenario(scenario)
    if venue is None:
        return
    position, params = venue.position("alice"), venue.markets[BTC]
    chosen = choose_deleverage_counterparties(venue.state, venue.address("alice"), position, venue.mark(), params)
    assert len(chosen) <= MAX_DELEVERAGE_COUNTERPARTIES
    if not chosen:
        return
    error = venue.apply(Deleverage(venue.address("alice"), BTC, chosen))
    if error is not None:        # only a partial ADL of a negative margin may be refused (no funding here)
        pytest.fail(f"the engine's choice was refused: {error}")
    assert abs(venue.size("alice")) < abs(position.size)
    check_invariants(venue)


@pytest.mark.parametrize("schema_version", [1, 2])
def test_a_deleverage_in_a_log_of_schema_1_or_2_is_refused_and_nothing_moves(schema_version):
    """The kind is rules v3 only: an older log holding one (only a dishonest
    sequencer writes it there) gets a failed receipt, not a crash."""
    venue = liquidatable_alice(schema_version=schema_version)
    refused(venue, deleverage(venue, *SIX), "record_not_enabled")
    # and under those rules the engine liquidates with a Liquidate down the ranked ladder, no Deleverage
    out = venue.exchange.liquidate_accounts(venue.state, BTC, [venue.address("alice")], venue.now, venue.ctx)
    assert [type(r) for r in out] == [Liquidate] and venue.size("alice") == 0
    check_invariants(venue)


# --- what the engine writes (sequencer.core.matching) ----------------------------------------------

@pytest.mark.parametrize("fund", [usd(10_000), 0])
def test_the_engine_under_backstop_writes_the_takeover_or_when_the_fund_cannot_pay_a_deleverage(fund):
    """Backstop policy, alice bankrupt at 53,000 (60 of bad debt): a fund that
    can pay takes the position over in a zero-maker Liquidate; an empty one
    cannot, and the engine writes no Liquidate that would only settle funding
    but a Deleverage that deleverages her against the six."""
    venue = alice_long(SIX, fund=fund, policy=LIQUIDATION_BACKSTOP)
    out = venue.set_price(usd(53_000))
    steps = [r for r in out if isinstance(r, (Liquidate, Deleverage))]
    assert venue.size("alice") == 0
    if fund:
        assert steps == [Liquidate(venue.address("alice"), BTC)]
        assert fund_position(venue).size == 6 * CENT_BTC and venue.state.globals.insurance_fund == fund - usd(60)
    else:
        assert [type(r) for r in steps] == [Deleverage] and len(steps[0].counterparties) == 6
        assert fund_position(venue).size == 0 and venue.state.globals.insurance_fund == 0
        assert venue.position("alice").margin == 0
    check_invariants(venue)
    assert venue.replay().to_tables() == venue.state.to_tables()


def test_the_engine_under_book_auction_starts_an_auction_then_deleverages_what_it_did_not_sell():
    venue = alice_long(SIX, policy=LIQUIDATION_BOOK_AUCTION)
    out = venue.set_price(usd(54_300))
    assert [r for r in out if isinstance(r, (Liquidate, Deleverage))] == [Liquidate(venue.address("alice"), BTC)]
    auction = venue.state.auctions[(venue.address("alice"), BTC)]
    venue.now = auction.end_ms
    venue.apply_price(usd(54_300))
    out = venue.exchange.due_auction_ends(venue.state, venue.now, venue.ctx)
    venue.log.extend((venue.now, r) for r in out)
    assert [type(r) for r in out] == [AuctionEnd, Deleverage] and venue.size("alice") == 0
    check_invariants(venue)
    assert venue.replay().to_tables() == venue.state.to_tables()


# --- the fund unwinds its own position (Deleverage naming the fund) -----------------------------

def fund_holds_alices_long(fund: int, price: int = usd(60_000)):
    """alice asks for a forced close at 60,000 (healthy: no fee): the fund
    takes her 0.06 long over at the mark (the rule alone: no engine), then
    the price moves to ``price`` (no scan)."""
    venue = alice_long(SIX, fund=fund)
    assert venue.apply(ForcedClose(0, venue.address("alice"), BTC)) is None
    taken = fund_position(venue)
    assert (taken.size, taken.cost, taken.margin) == (6 * CENT_BTC, usd(3_600), 0)
    if price != usd(60_000):
        move_price(venue, price)
    return venue


def unwind(venue, *who: str) -> Deleverage:
    return Deleverage(FUND, BTC, names(venue, *who))


def move_funding(venue, per_cent_btc: int) -> None:
    """The funding index moves so that a long of 0.01 owes exactly
    ``per_cent_btc`` (a short is owed as much; no dust)."""
    market, params = venue.state.markets[BTC], venue.markets[BTC]
    delta = per_cent_btc * params.scale * 1_000_000 // CENT_BTC
    venue.state.set_market(msgspec.structs.replace(market, funding_index=market.funding_index + delta))


@pytest.mark.parametrize("who, left", [(tuple(SIX), 0), (("s1", "s2"), 4 * CENT_BTC)])
def test_the_fund_unwinds_its_position_at_the_mark_its_pnl_into_the_fund(who, left):
    """At 58,000 the fund's long (taken at 60,000) has lost 20 per 0.01: the
    named shorts buy it back at the mark (each: margin 60 + 20 of profit
    released), the fund realises the loss of the lots it gives up; a rest
    keeps its entry (cost 600 per 0.01) and a margin of 0.  No liquidatable
    check: the fund is not liquidated, it unwinds."""
    venue = fund_holds_alices_long(usd(10_000), usd(58_000))
    free = {n: venue.free(n) for n in SIX}
    assert venue.apply(unwind(venue, *who)) is None
    closed = 6 * CENT_BTC - left
    rest = fund_position(venue)
    assert (rest.size, rest.cost, rest.margin) == (left, usd(600) * left // CENT_BTC, 0)
    assert venue.state.globals.insurance_fund == usd(10_000) - usd(20) * closed // CENT_BTC
    assert venue.state.markets[BTC].open_interest == left
    for name in SIX:
        if name in who:
            assert venue.position(name) == Position() and venue.free(name) == free[name] + usd(60) + usd(20)
        else:
            assert venue.size(name) == -CENT_BTC and venue.free(name) == free[name]
    check_invariants(venue)


def test_the_unwind_at_the_mark_rounds_in_the_funds_favour():
    """A mark of 58,000.000001: 0.01 of it is 580.00000001 USDC, so the fund
    (selling) gets 580.000001, one unit more than the floor, and s1 pays it."""
    venue = fund_holds_alices_long(usd(10_000), usd(58_000) + 1)
    assert venue.mark() == usd(58_000) + 1
    free = venue.free("s1")
    assert venue.apply(unwind(venue, "s1")) is None
    price = usd(580) + 1                                          # ceil(0.01 x 58,000.000001)
    assert venue.state.globals.insurance_fund == usd(10_000) + price - usd(600)
    assert venue.free("s1") == free + usd(60) + usd(600) - price
    check_invariants(venue)


@pytest.mark.parametrize("fund", [usd(300), 0])
def test_a_fund_that_cannot_pay_the_loss_unwinds_whole_at_its_bankruptcy_price(fund):
    """At 50,000 the fund's long has lost 600 against ``fund`` of cash: the
    close at the mark would leave it below 0, so it closes at its bankruptcy
    price, the insurance fund standing as its margin: (3,600 - fund) for
    0.06, i.e. 55,000 with 300 (each short: 50 of profit), 60,000 with 0 (no
    profit); the fund ends at exactly 0."""
    venue = fund_holds_alices_long(fund, usd(50_000))
    free = {n: venue.free(n) for n in SIX}
    assert venue.apply(unwind(venue, *SIX)) is None
    assert fund_position(venue).size == 0 and venue.state.globals.insurance_fund == 0
    profit = usd(600) - (usd(3_600) - fund) // 6                  # per 0.01: 60,000 less the price paid
    assert all(venue.free(n) == free[n] + usd(60) + profit for n in SIX)
    check_invariants(venue)


def test_a_fund_that_cannot_pay_unwinds_a_part_at_its_bankruptcy_price_which_the_rest_keeps():
    """Fund 100, at 50,000, s1 and s2 named: at the mark their 0.02 would
    cost the fund 200, so they take it at the fund's bankruptcy price (2/6 of
    (100 - 3,600), rounded down: 1,166.666667 for the fund) and the rest
    (0.04, cost 2,400, the fund's 66.666667 of cash behind it) keeps that
    price (58,333.33)."""
    venue = fund_holds_alices_long(usd(100), usd(50_000))
    free = venue.free("s1")
    chosen = choose_unwind_counterparties(venue.state, fund_position(venue), venue.mark(), venue.markets[BTC])
    assert len(chosen) == 6                                   # the engine's list covers it all (each within its cap)
    assert venue.apply(unwind(venue, "s1", "s2")) is None
    rest = fund_position(venue)
    assert (rest.size, rest.cost, rest.margin) == (4 * CENT_BTC, usd(2_400), 0)
    assert venue.state.globals.insurance_fund == 66_666_667
    # the rest's bankruptcy notional is (its share of) the whole's, rounded in the fund's favour
    assert (rest.cost - venue.state.globals.insurance_fund) * 6 <= (usd(3_600) - usd(100)) * 4
    assert venue.free("s1") == free + usd(60) + (usd(600) - 583_333_333)
    check_invariants(venue)


def test_an_unwind_the_fund_cannot_pay_whole_goes_at_its_bankruptcy_price_whoever_is_named_first():
    """Fund 300 at 50,000 (loss 600 on 0.06): the fund cannot pay the whole
    loss at the mark, so even s1 and s2 named alone take their part at the
    fund's bankruptcy price (55,000), as s3..s6 do after them: +50 each,
    as the engine's one record naming all six gives (at the mark, s1 and s2
    would have gained 100 and the others 25)."""
    venue = fund_holds_alices_long(usd(300), usd(50_000))
    free = {n: venue.free(n) for n in SIX}
    assert venue.apply(unwind(venue, "s1", "s2")) is None
    assert venue.apply(unwind(venue, "s3", "s4", "s5", "s6")) is None
    assert fund_position(venue).size == 0 and venue.state.globals.insurance_fund == 0
    assert all(venue.free(n) - free[n] - usd(60) == usd(50) for n in SIX)
    check_invariants(venue)
    engine = fund_holds_alices_long(usd(300), usd(50_000))
    chosen = choose_unwind_counterparties(engine.state, fund_position(engine), engine.mark(), engine.markets[BTC])
    free = {n: engine.free(n) for n in SIX}
    assert engine.apply(Deleverage(FUND, BTC, chosen)) is None
    assert all(engine.free(n) - free[n] - usd(60) == usd(50) for n in SIX)


def test_funding_the_fund_owes_is_paid_from_the_fund_then_the_position_unwinds_at_the_mark():
    """The index moves so that the fund's 0.06 long owes 60 (each short is
    owed 10): the record settles it out of the fund, then closes at the mark
    (60,000: no PnL); each short gets its margin and its funding."""
    venue = fund_holds_alices_long(usd(10_000))
    move_funding(venue, usd(10))
    free = {n: venue.free(n) for n in SIX}
    assert venue.apply(unwind(venue, *SIX)) is None
    assert fund_position(venue).size == 0 and venue.state.globals.insurance_fund == usd(10_000) - usd(60)
    assert all(venue.free(n) == free[n] + usd(60) + usd(10) for n in SIX)
    check_invariants(venue)


def test_funding_the_fund_owes_beyond_its_cash_is_carried_by_the_bankruptcy_price():
    """Fund 30, owing 60 of funding: settled, it is 30 below 0; the deficit
    moves into the position's cost (absorb_funding_deficit) and the shorts
    buy it back at 60,500 (3,630 for 0.06): each gets its margin and funding
    (70) less 5; the fund ends at exactly 0."""
    venue = fund_holds_alices_long(usd(30))
    move_funding(venue, usd(10))
    free = {n: venue.free(n) for n in SIX}
    assert venue.apply(unwind(venue, *SIX)) is None
    assert fund_position(venue).size == 0 and venue.state.globals.insurance_fund == 0
    assert all(venue.free(n) == free[n] + usd(70) - usd(5) for n in SIX)
    check_invariants(venue)


def test_an_unwind_without_users_naming_itself_or_a_user_on_its_side_or_on_a_stale_mark_is_refused():
    venue = fund_holds_alices_long(usd(10_000))
    refused(venue, Deleverage(FUND, BTC, ()), "invalid_counterparties")                # no users
    refused(venue, Deleverage(FUND, BTC, (FUND,)), "invalid_counterparties")           # itself
    venue.place("mm", False, usd(60_000), CENT_BTC, leverage=2)
    venue.place("erin", True, usd(60_000), CENT_BTC, leverage=2)                       # erin long, as the fund
    refused(venue, unwind(venue, "erin"), "invalid_counterparty")
    refused(venue, unwind(venue, "s1", "erin"), "invalid_counterparty")
    refused(venue, unwind(venue, "s1", "nobody"), "invalid_counterparty")
    venue.now += venue.markets[BTC].oracle_max_age_ms + 1
    refused(venue, unwind(venue, "s1"), "stale_oracle_price")


# --- the fairness pre-check and absorb, around the counterparties ---------------------------------

def test_a_counterparty_owing_funding_past_its_margin_with_a_big_profit_closes_at_the_mark():
    """thin went short 0.01 at 60,000 at 50x (margin 12) and owes 20 of
    funding: -8 after settlement, but 80 of profit at 52,000 (equity 72). Its
    deficit moves into its cost (absorb_funding_deficit) and the record
    applies: thin gets its equity, 72, back."""
    venue = alice_long({**SIX, "thin": (CENT_BTC, 50)}, fund=usd(10_000))
    move_price(venue, usd(52_000))
    move_funding(venue, -usd(20))                                  # the shorts owe 20 per 0.01
    market, params = venue.state.markets[BTC], venue.markets[BTC]
    assert is_liquidatable(venue.position("alice"), venue.mark(), market, params)
    assert settled(venue, "thin").margin == -usd(8)
    free = venue.free("thin")
    assert venue.apply(deleverage(venue, "thin", "s1", "s2", "s3", "s4", "s5")) is None
    thin = venue.position("thin")
    assert (thin.size, thin.cost, thin.margin) == (0, 0, 0) and venue.free("thin") == free + usd(72)
    check_invariants(venue)


def test_a_liquidated_position_owing_funding_past_its_margin_closes_at_the_mark_with_the_fund_paying():
    """alice owes 400 of funding past her 360 of margin: absorbed into her
    cost, her bad debt at 53,000 is 40 + 420 of loss = 460 (about: the
    funding is 400/6 per 0.01, rounded); the fund (10,000) holds it, so the
    six close at the mark and the fund pays it."""
    venue = liquidatable_alice(price=usd(53_000))
    move_funding(venue, usd(400) // 6)
    owing = settled(venue, "alice")
    assert owing.margin < 0
    fund = venue.state.globals.insurance_fund
    assert venue.apply(deleverage(venue, *SIX)) is None
    assert venue.size("alice") == 0 and venue.position("alice").margin == 0
    assert venue.state.globals.insurance_fund == fund + owing.margin - usd(420)      # bad debt: 420 - margin
    check_invariants(venue)


# --- what the engine writes to unwind the fund ------------------------------------------------------

def fund_unwinds(out) -> list[Deleverage]:
    return [r for r in out if isinstance(r, Deleverage) and r.account == FUND]


def test_the_engine_unwinds_a_forced_close_in_the_same_admit_naming_the_ranked_users():
    """alice's forced close hands her 0.06 long to the fund; the same admit
    writes Deleverage(fund, BTC, the six shorts in the order of
    rank_by_profit_and_leverage), closing it at the mark: the fund is flat."""
    venue = alice_long(SIX, fund=usd(10_000))
    move_price(venue, usd(58_000))
    ranked = [a for a, _, _ in rank_by_profit_and_leverage(venue.state, BTC, False, venue.mark(), venue.markets[BTC])]
    record = ForcedClose(0, venue.address("alice"), BTC)
    out = venue.submit(record)
    assert out == [record, Deleverage(FUND, BTC, tuple(ranked))]
    assert fund_position(venue).size == 0 and all(venue.size(n) == 0 for n in SIX)
    check_invariants(venue)
    assert venue.replay().to_tables() == venue.state.to_tables()


def test_the_engine_unwinds_over_several_records_when_more_than_six_users_are_needed():
    shorts = {f"w{i}": (CENT_BTC, 10) for i in range(10)}
    venue = alice_long(shorts, fund=usd(10_000))
    out = venue.submit(ForcedClose(0, venue.address("alice"), BTC))
    assert [len(r.counterparties) for r in fund_unwinds(out)] == [6, 4]
    assert fund_position(venue).size == 0 and all(venue.size(n) == 0 for n in shorts)
    check_invariants(venue)


@pytest.mark.parametrize("event", ["price", "funding"])
def test_the_engine_unwinds_a_position_the_fund_still_holds_after_a_price_update_or_a_funding_tick(event):
    """The fund holds alice's long (the rule alone took it over); the next
    price update, or the next funding tick, makes the engine unwind it."""
    venue = fund_holds_alices_long(usd(10_000))
    if event == "price":
        out = venue.set_price(usd(59_000))
    else:
        venue.now += venue.markets[BTC].funding_interval_ms
        assert venue.apply_price(usd(60_000)) is None           # a fresh mark, no scan
        out = venue.funding()
        assert any(type(r).__name__ == "FundingTick" for r in out)
    assert len(fund_unwinds(out)) == 1 and fund_position(venue).size == 0
    check_invariants(venue)
    assert venue.replay().to_tables() == venue.state.to_tables()


def test_the_engine_unwinds_a_fund_that_cannot_pay_at_its_bankruptcy_price_and_liquidates_nobody_needlessly():
    """Fund 0: the fall to 50,000 costs its long 600 it does not have, so the
    engine's record (all six, within their caps) closes it at 60,000, its
    bankruptcy price: each short gets its margin back, the fund stays at 0."""
    venue = fund_holds_alices_long(0)
    free = {n: venue.free(n) for n in SIX}
    out = venue.set_price(usd(50_000))
    assert len(fund_unwinds(out)) == 1 and not any(isinstance(r, Liquidate) for r in out)
    assert fund_position(venue).size == 0 and venue.state.globals.insurance_fund == 0
    assert all(venue.free(n) == free[n] + usd(60) for n in SIX)
    check_invariants(venue)


def test_under_backstop_the_engine_leaves_the_funds_positions():
    venue = alice_long(SIX, fund=usd(10_000), policy=LIQUIDATION_BACKSTOP)
    record = ForcedClose(0, venue.address("alice"), BTC)
    assert venue.submit(record) == [record]
    out = venue.set_price(usd(59_000))
    assert fund_unwinds(out) == [] and fund_position(venue).size == 6 * CENT_BTC
    check_invariants(venue)


def test_the_engine_writes_no_unwind_without_a_user_on_the_other_side():
    """Nobody on the other side with a quote unit of equity: no record, the
    fund keeps the position until one is there."""
    venue = alice_long({"s1": (CENT_BTC, 50)}, fund=usd(10_000), alice_leverage=2)
    assert venue.apply(ForcedClose(0, venue.address("alice"), BTC)) is None
    move_price(venue, usd(61_200))               # s1 (margin 12) has lost 12: below one quote unit of equity
    assert choose_unwind_counterparties(venue.state, fund_position(venue), venue.mark(), venue.markets[BTC]) == ()
    assert fund_unwinds(venue.exchange.unwind_fund(venue.state, BTC, venue.now, venue.ctx)) == []
    assert fund_position(venue).size == CENT_BTC


# --- properties of the engine's lists against the new decisions ----------------------------------

@settings(max_examples=40, deadline=None)
@given(scenario=scenarios())
def test_the_engines_list_suits_the_branch_the_rule_takes(scenario):
    """When the fund cannot hold the whole position's bad debt at the mark
    (can_fund_pay_shortfall), the engine names users alone and the record
    auto-deleverages: the fund does not move and the rest of the position
    keeps its bankruptcy price (its margin - cost per lot, rounded in the
    rest's favour); when it can, the record closes at the mark and the fund
    pays at most that bad debt."""
    venue = make_liquidatable_scenario(scenario)
    if venue is None:
        return
    position, market, params = venue.position("alice"), venue.state.markets[BTC], venue.markets[BTC]
    pays = can_fund_pay_shortfall(venue.state, position, venue.mark(), params)
    chosen = choose_deleverage_counterparties(venue.state, venue.address("alice"), position, venue.mark(), params)
    if not chosen:
        return
    cash = venue.state.globals.insurance_fund
    assert venue.apply(Deleverage(venue.address("alice"), BTC, chosen)) is None
    rest = venue.position("alice")
    if not pays:
        event("auto-deleveraged")
        assert FUND not in chosen and venue.state.globals.insurance_fund == cash
        if rest.size:
            # (margin - cost) / size is kept, the rest's share rounded in its favour
            assert (rest.margin - rest.cost) * position.size >= (position.margin - position.cost) * rest.size
    else:
        event("closed at the mark")
        shortfall = -compute_equity_scaled(position, venue.mark(), market, params)
        assert venue.state.globals.insurance_fund * params.scale >= cash * params.scale - max(0, shortfall)
    check_invariants(venue)


@st.composite
def unwind_scenarios(draw):
    count = draw(st.integers(1, 8))
    shorts = {f"s{i}": (draw(st.integers(1, 40)) * CENT_BTC // 10, draw(st.integers(1, 20))) for i in range(count)}
    fund = draw(st.sampled_from([0, usd(10), usd(1_000), usd(1_000_000)]))
    price = draw(st.integers(40_000, 75_000)) * usd(1) + draw(st.integers(0, 999_999))
    funding = draw(st.sampled_from([0, 0, usd(1), usd(50), -usd(50)]))
    return shorts, fund, price, funding


@settings(max_examples=60, deadline=None)
@given(scenario=unwind_scenarios())
def test_the_engines_unwind_list_is_accepted_and_conserves_money(scenario):
    """Whatever the fund's cash, the price and the funding it owes: the
    engine's unwind list (at most six ranked users on the other side) is
    accepted whenever it names someone, closes at least one lot of the
    fund's position, leaves the fund >= 0 and conserves money."""
    shorts, fund, price, funding = scenario
    venue = alice_long(shorts, fund=fund, alice_leverage=2)
    assert venue.apply(ForcedClose(0, venue.address("alice"), BTC)) is None
    move_price(venue, price)
    if funding:
        move_funding(venue, funding)
    position = fund_position(venue)
    chosen = choose_unwind_counterparties(venue.state, position, venue.mark(), venue.markets[BTC])
    assert len(chosen) <= MAX_DELEVERAGE_COUNTERPARTIES and FUND not in chosen
    if not chosen:
        event("nobody to unwind against")
        return
    error = venue.apply(Deleverage(FUND, BTC, chosen))
    assert error is None, error
    assert abs(fund_position(venue).size) < abs(position.size) and venue.state.globals.insurance_fund >= 0
    event("unwound whole" if not fund_position(venue).size else "unwound in part")
    check_invariants(venue)


def test_the_funds_bankruptcy_price_unwind_keeps_the_funding_dust_swept_meanwhile():
    """Fund 0 at 50,000 (the unwind goes to the fund's bankruptcy price) and
    a funding index change that leaves each 0.01 a fraction of a unit of
    dust: the shorts' settlements sweep whole units of it into the insurance
    fund, which stays there after the fund's margin left (0) is counted back:
    conservation is exact."""
    venue = fund_holds_alices_long(0, usd(50_000))
    market = venue.state.markets[BTC]
    venue.state.set_market(msgspec.structs.replace(market, funding_index=market.funding_index + 10**14 // 3))
    assert venue.apply(unwind(venue, *SIX)) is None
    assert fund_position(venue).size == 0
    check_invariants(venue)


def make_liquidatable_scenario(scenario):
    """alice long against the scenario's shorts (one forced closed first if
    drawn so), at the scenario's price; None unless that leaves her liquidatable."""
    shorts, fund, leverage, price, _, forced = scenario
    venue = alice_long(shorts, fund=fund, alice_leverage=leverage)
    if forced:
        assert venue.apply(ForcedClose(0, venue.address("s0"), BTC)) is None
    move_price(venue, price)
    position = venue.position("alice")
    if not is_liquidatable(position, venue.mark(), venue.state.markets[BTC], venue.markets[BTC]):
        return None
    return venue
