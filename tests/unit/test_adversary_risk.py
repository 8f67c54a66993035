"""Issue 10: what an adversarial trader does to the risk engine, as
pre/op/post tests through ``apply_record`` and through the block builder's
path (``Exchange`` matching + the rules).  Units as in docs/engine.md: BTC-USD
on the devnet table unless said; 1 USDC = 1_000_000; 1 BTC = 10**8 lots.

Each test states the outcome the rules must give; the comment above it says
what the rules of the base commit do instead (the figure that made it fail).
"""
from __future__ import annotations

import msgspec
import pytest

from sequencer.core.invariants import compute_conservation
from sequencer.core.markets import DEVNET_MARKETS, PRODUCTION_MARKETS, USDC
from sequencer.core.matching import Exchange, choose_deleverage_counterparties
from sequencer.core.records import Deleverage, Deposit, Liquidate, OraclePrice, Trade
from sequencer.core.transition import RuleError
from sequencer.lab.checks import (INSURANCE_ADDRESS, compute_position_equity, compute_solvency_gap,
                                  get_crossed_books, get_fund_positions, get_negative_equity_positions,
                                  get_stuck_liquidations)
from sequencer.core.rules.orders import IMMEDIATE_OR_CANCEL, POST_ONLY
from sequencer.core.state import is_order_open
from sequencer.lab.venue import Venue

BTC = 1
ONE_BTC = 10**8
STEP = DEVNET_MARKETS[BTC].step_size


def usd(dollars: int) -> int:
    return dollars * USDC


def equity(venue: Venue, name: str) -> int:
    return compute_position_equity(venue.state, venue.markets, BTC, venue.position(name))


def liquidations(records) -> list[Liquidate | Deleverage]:
    """The liquidation steps (rules v3: a step down the ladder is a Deleverage)."""
    return [r for r in records if isinstance(r, (Liquidate, Deleverage))]


def engine_deleverage(venue: Venue, name: str, market: int = None) -> Deleverage:
    """The Deleverage the engine writes for ``name``'s position now (rules v3)."""
    market = BTC if market is None else market
    address, params = venue.address(name), venue.markets[market]
    position = venue.state.positions[(address, market)]
    mark = venue.state.markets[market].oracle_price
    return Deleverage(address, market, choose_deleverage_counterparties(venue.state, address, position, mark, params))


def check_conserved(venue: Venue) -> None:
    assert compute_conservation(venue.state, venue.markets).discrepancy == 0


# --- 1. bad debt by a sliver sale -------------------------------------------------------

def long_ten_btc_at_2x_then_oracle_31k() -> Venue:
    """a: long 10 BTC at 60,000 at 2x (margin 300,000); the oracle at 31,000
    leaves a's equity +10,000, above maintenance (3,720); b will bid 5 BTC at 1 USDC."""
    venue = Venue({"a": usd(400_000), "b": usd(10_000), "c": usd(1_000_000)}, fund=usd(200_000))
    venue.set_price(usd(60_000))
    venue.place("c", False, usd(60_000), 10 * ONE_BTC, leverage=10)
    venue.place("a", True, usd(60_000), 10 * ONE_BTC, leverage=2)
    assert liquidations(venue.set_price(usd(31_000))) == []
    assert equity(venue, "a") == usd(10_000)
    venue.place("b", True, usd(1), 5 * ONE_BTC, leverage=10)
    return venue


# Base rules: the sale fills at 1 USDC; a is left with 5 BTC, margin 5 USDC and
# equity -144,995 USDC, b gains 154,995, and the next Liquidate makes the
# insurance fund pay 144,995.
@pytest.mark.parametrize("path", ["rules", "builder"])
def test_sliver_sale_below_the_bankruptcy_price_is_refused(path):
    venue = long_ten_btc_at_2x_then_oracle_31k()
    fund_before, a_before = venue.state.globals.insurance_fund, venue.position("a")
    sale = venue.order("a", False, usd(1), 5 * ONE_BTC, tif=IMMEDIATE_OR_CANCEL, reduce_only=True)
    if path == "rules":
        assert venue.apply(sale) is None
        error = venue.apply(Trade(BTC, venue.address("b"), 1, venue.address("a"), sale.nonce, usd(1), 5 * ONE_BTC))
        assert error is not None and error.code == "below_bankruptcy"
    else:
        out = venue.submit(sale)
        assert [r for r in out if isinstance(r, Trade)] == []
    assert venue.position("a") == a_before and venue.size("b") == 0
    assert get_negative_equity_positions(venue.state, venue.markets) == []
    venue.set_price(usd(30_500))                    # a liquidatable now: no bad debt to pay
    assert venue.state.globals.insurance_fund >= fund_before
    check_conserved(venue)


# --- 2. a reserve-free resting reduce-only order ----------------------------------------------

def market_with_reduce_only_bid(price: int, markets=DEVNET_MARKETS) -> tuple[Venue, list | RuleError]:
    """mm quotes 59,999 / 60,001 (1 BTC each); x goes short one step and then
    bids reduce-only GTC for 1,000 BTC at ``price``."""
    venue = Venue({"mm": usd(10_000_000), "x": usd(1_000), "long": usd(13_000), "seller": usd(7_000)},
                  markets=markets)
    venue.set_price(usd(60_000))
    venue.place("mm", True, usd(59_999), ONE_BTC, leverage=10)
    venue.place("mm", False, usd(60_001), ONE_BTC, leverage=10)
    venue.place("x", False, usd(59_999), STEP, tif=IMMEDIATE_OR_CANCEL)
    assert venue.size("x") == -STEP
    return venue, venue.try_place("x", True, price, 1_000 * ONE_BTC, reduce_only=True)


# Base rules: the reduce-only bid fills one step and the rest (999.9999 BTC at
# 120,000) rests with no reserve as the best bid: post-only asks below 120,000
# are refused, the sequencer's funding rate is the cap (100 ppm per minute on
# devnet, against 0 for the honest 59,999/60,001 book).
def test_reduce_only_order_never_rests_as_book_depth():
    venue, _ = market_with_reduce_only_bid(usd(120_000))
    assert venue.size("x") in (0, -STEP)
    assert venue.exchange.book(BTC, 1)["bids"][0][0] == usd(59_999)
    assert venue.exchange.compute_funding_rate(BTC, venue.mark()) < DEVNET_MARKETS[BTC].funding_cap_ppm
    assert not isinstance(venue.try_place("mm", False, usd(100_000), STEP, tif=POST_ONLY), RuleError)


# Base rules (production table, hourly funding capped at 6,000 ppm): the
# resting bid drives two capped ticks and a 10 BTC 50x long (entered at the
# mark, margin 12,000) is liquidated by funding alone after two hours.
def test_reduce_only_order_cannot_liquidate_a_long_through_funding():
    venue, _ = market_with_reduce_only_bid(usd(120_000), markets={BTC: PRODUCTION_MARKETS[BTC]})
    venue.place("mm", False, usd(60_000), 10 * ONE_BTC, leverage=10)
    venue.place("long", True, usd(60_000), 10 * ONE_BTC, leverage=50)
    assert venue.size("long") == 10 * ONE_BTC
    interval = PRODUCTION_MARKETS[BTC].funding_interval_ms
    out = []
    for _ in range(2):
        venue.now = (venue.now // interval + 1) * interval
        out += venue.set_price(usd(60_000), advance_ms=0)
        out += venue.funding()
    assert venue.address("long") not in {r.account for r in liquidations(out)}
    assert venue.size("long") == 10 * ONE_BTC


# Base rules: at the largest price the log allows, the reduce-only bid makes
# every other account's sell price its risk at that bid: a seller with 7,000
# USDC is refused a 1 BTC 10x GTC sell at 60,000 (insufficient_collateral).
def test_reduce_only_bid_at_the_max_price_does_not_block_sellers():
    top = (2**63 - 1) // USDC * USDC
    venue, _ = market_with_reduce_only_bid(top)
    out = venue.try_place("seller", False, usd(60_000), ONE_BTC, leverage=10)
    assert not isinstance(out, RuleError), out
    out = venue.try_place("seller", False, usd(59_999), STEP, leverage=10, tif=IMMEDIATE_OR_CANCEL)
    assert not isinstance(out, RuleError), out


# The mid premium of the rules before issue 10: one ask of one step at 90,000
# over a bid-only book made the mid (59,999 + 90,000) / 2, +25% as an 8-hour
# rate, the cap every interval.
def test_one_small_order_on_a_thin_side_does_not_move_funding():
    venue = Venue({"mm": usd(10_000_000), "x": usd(1_000)})
    venue.set_price(usd(60_000))
    venue.place("mm", True, usd(59_999), ONE_BTC, leverage=10)
    venue.place("x", False, usd(90_000), STEP)
    assert venue.exchange.book(BTC, 1)["asks"] == [[usd(90_000), STEP, 1]]
    assert venue.exchange.compute_funding_rate(BTC, venue.mark()) == DEVNET_MARKETS[BTC].funding_interest_ppm


def test_funding_averages_the_premium_samples_since_the_last_tick():
    """A premium seen at one oracle price of twelve counts for a twelfth."""
    venue = Venue({"mm": usd(10_000_000)})
    venue.set_price(usd(60_000))                                   # sample 1: empty book, 0
    spike = venue.order("mm", True, usd(61_000), ONE_BTC, leverage=10)
    venue.submit(spike)                                            # 61,000 of depth, no asks
    venue.set_price(usd(60_000))                                   # sample 2: +1,000 / 60,000
    venue.submit(venue.cancel_record("mm", spike.nonce))
    for _ in range(9):
        venue.set_price(usd(60_000))                               # samples 3-11: 0
    premiums = [0, usd(1_000) * 1_000_000 // usd(60_000)] + [0] * 10   # and one at the tick
    params = DEVNET_MARKETS[BTC]
    expected = sum(premiums) // len(premiums) * params.funding_interval_ms // (8 * 3_600_000)
    ticks = [r for r in venue.funding() if type(r).__name__ == "FundingTick"]
    assert [t.rate_ppm for t in ticks] == [expected + params.funding_interest_ppm]
    assert 0 < expected < usd(1_000) * 1_000_000 // usd(60_000) * params.funding_interval_ms // (8 * 3_600_000)


# --- 3. self-trade prevention bypassed ------------------------------------------------------

def is_refused_as_self_trade(result) -> bool:
    return isinstance(result, RuleError) and result.code == "self_trade"


# Base rules: a's GTC sell of 2 steps at 59,999 is accepted, fills nothing and
# rests at 59,999 against a's own bid at 59,999 (and b's reduce-only 60,001):
# a crossed book.
def test_self_trade_behind_an_unfillable_reduce_only_order_is_refused():
    venue = Venue({"a": usd(100_000), "b": usd(100_000), "c": usd(100_000)})
    venue.set_price(usd(60_000))
    venue.place("c", True, usd(60_000), STEP)
    venue.place("b", False, usd(60_000), STEP, tif=IMMEDIATE_OR_CANCEL)
    assert venue.size("b") == -STEP
    venue.try_place("b", True, usd(60_001), 5 * STEP, reduce_only=True)   # may be refused: reduce-only is IOC
    venue.place("a", True, usd(59_999), STEP)
    result = venue.try_place("a", False, usd(59_999), 2 * STEP)
    assert is_refused_as_self_trade(result), result
    assert get_crossed_books(venue.exchange) == []


# Base rules: c's 50x bid at 60,001 cannot fill once the mark is 59,000 (it
# would open below maintenance), so a's 1-step sell at 59,000 counts c's size
# as depth, passes c over, stops at its own bid and rests: bid 60,001 and
# 59,000 against ask 59,000.
def test_self_trade_behind_a_maker_that_cannot_fill_is_refused():
    venue = Venue({"a": usd(100_000), "c": usd(100_000)})
    venue.set_price(usd(60_000))
    venue.place("c", True, usd(60_001), STEP, leverage=50)
    venue.set_price(usd(59_000))
    venue.place("a", True, usd(59_000), STEP)
    result = venue.try_place("a", False, usd(59_000), STEP)
    assert is_refused_as_self_trade(result), result
    assert get_crossed_books(venue.exchange) == []
    assert_books_match_the_state(venue)


def assert_books_match_the_state(venue: Venue) -> None:
    rebuilt = Exchange(venue.markets)
    rebuilt.rebuild(venue.state)
    assert rebuilt.dump() == venue.exchange.dump() and rebuilt.reserved == venue.exchange.reserved


# Base rules: b's GTC ask at 59,000 passes c's unfillable bid over and rests
# under it (bid 60,001 over ask 59,000).
def test_an_order_whose_rest_would_cross_the_book_is_refused_whole():
    venue = Venue({"b": usd(100_000), "c": usd(100_000), "d": usd(100_000)})
    venue.set_price(usd(60_000))
    venue.place("c", True, usd(60_001), STEP, leverage=50)
    venue.place("d", True, usd(59_500), STEP)
    venue.set_price(usd(59_000))
    before = venue.state.to_tables()
    result = venue.try_place("b", False, usd(59_000), 2 * STEP)        # fills d's bid, then would rest under c's
    assert isinstance(result, RuleError) and result.code == "would_cross_book", result
    assert venue.state.to_tables() == before                           # d's fill undone with the rest
    assert get_crossed_books(venue.exchange) == []
    assert_books_match_the_state(venue)
    out = venue.place("b", False, usd(59_000), 2 * STEP, tif=IMMEDIATE_OR_CANCEL)   # IOC: no rest, d fills
    assert [t.maker for t in out if isinstance(t, Trade)] == [venue.address("d")]


# --- 4. the insurance fund goes insolvent and liquidations stick -----------------------------------

def fund_backstops_five_shorts(buyer_leverage: int) -> Venue:
    """Five 50x shorts of 0.1 BTC at 60,000 (against l's 1x long of 0.5 BTC)
    are liquidated at 60,600 with an empty fund (before issue 10 the fund took
    them over); at 90,000 n buys 0.5 BTC (at ``buyer_leverage``) from l if l
    still has its long, else from mm; l withdraws everything."""
    shorts = {f"s{i}": usd(200) for i in range(5)}
    venue = Venue({"l": usd(100_000), "n": usd(100_000), "mm": usd(1_000_000), **shorts})
    venue.set_price(usd(60_000))
    for name in shorts:
        venue.place(name, False, usd(60_000), ONE_BTC // 10, leverage=50)
    venue.place("l", True, usd(60_000), ONE_BTC // 2, leverage=1)
    liquidated = liquidations(venue.set_price(usd(60_600)))
    assert {r.account for r in liquidated} == {venue.address(name) for name in shorts}
    venue.set_price(usd(90_000))
    venue.place("n", True, usd(90_000), ONE_BTC // 2, leverage=buyer_leverage)
    if venue.size("l"):
        venue.place("l", False, usd(90_000), venue.size("l"), tif=IMMEDIATE_OR_CANCEL, reduce_only=True)
    if venue.size("n") < ONE_BTC // 2:
        venue.place("mm", False, usd(90_000), ONE_BTC // 2 - venue.size("n"), tif=IMMEDIATE_OR_CANCEL)
    assert venue.size("l") == 0 and venue.size("n") == ONE_BTC // 2
    assert venue.apply(venue.withdraw_record("l", venue.free("l"))) is None
    return venue


# Base rules: the fund holds the 0.5 BTC short taken at 60,600 with margin 0;
# at 90,000 it has 151.5 in cash and -14,700 unrealised; l withdraws 114,962.5
# after depositing 100,000 and the users' claims exceed what the bridge holds
# by 14,548.5 USDC.
def test_backstop_never_leaves_claims_above_the_bridge_balance():
    venue = fund_backstops_five_shorts(buyer_leverage=1)
    assert get_fund_positions(venue.state) == []
    assert compute_solvency_gap(venue.state, venue.markets) <= 0
    check_conserved(venue)


# Base rules: n's 50x long (margin 900) has only the fund's short against it;
# from 89,200 down every Liquidate of n fails `insolvent` (backstop and ADL
# both realise the fund's loss on its short), n stays open and liquidatable.
def test_no_liquidation_sticks_when_the_fund_is_the_only_counterparty():
    venue = fund_backstops_five_shorts(buyer_leverage=50)
    for price in range(89_200, 79_999, -400):
        venue.set_price(usd(price))
        assert get_stuck_liquidations(venue.state, venue.markets, venue.now) == [], price
    assert venue.size("n") == 0 or equity(venue, "n") >= 0
    check_conserved(venue)


# --- 5. a healthy-enough position deleveraged whole ---------------------------------------

def fund_short_then_d_long_at_90k() -> Venue:
    """The fund backstopped five 0.1 BTC shorts at 60,600 (its own 0.5 BTC short);
    d then goes long 10 BTC at 90,000 at 20x (margin 45,000)."""
    venue = fund_backstops_five_shorts(buyer_leverage=1)
    venue.apply(Deposit(venue.state.globals.inbox_count, venue.address("d"), usd(100_000)))
    venue.apply(Deposit(venue.state.globals.inbox_count, venue.address("e"), usd(10_000_000)))
    venue.place("e", False, usd(90_000), 10 * ONE_BTC, leverage=1)
    venue.place("d", True, usd(90_000), 10 * ONE_BTC, leverage=20)
    assert venue.size("d") == 10 * ONE_BTC
    return venue


# Base rules: at 86,500 d (equity +10,000, maintenance 10,380) is liquidatable;
# the backstop would realise the fund's loss on its own short, so d is closed
# whole by ADL at its bankruptcy price and loses all 10,000.  A 20% partial
# liquidation costs 865 (0.5% of 173,000).
def test_liquidatable_but_solvent_position_is_reduced_partially_not_deleveraged():
    venue = fund_short_then_d_long_at_90k()
    free_before = venue.free("d")
    venue.now += 1
    assert venue.apply(OraclePrice(BTC, usd(86_500), venue.now, ())) is None      # the price alone, no scan
    assert equity(venue, "d") == usd(10_000)
    assert venue.apply(engine_deleverage(venue, "d")) is None           # rules v3: the ladder step
    assert venue.size("d") == 8 * ONE_BTC
    kept = equity(venue, "d") + venue.free("d") - free_before
    assert kept == usd(10_000) - usd(865)
    check_conserved(venue)


# --- 6. margin checks ----------------------------------------------------------------------------

# Base rules: a 50x long of 1 BTC bought 0.7% above the mark (60,420 vs
# 60,000) opens with equity 788.4 at the mark against an initial requirement
# of 1,200 (only maintenance, 720, is checked).
@pytest.mark.parametrize("path", ["rules", "builder"])
def test_opening_fill_needs_initial_margin_at_the_worse_of_fill_and_mark(path):
    venue = Venue({"a": usd(10_000), "mm": usd(1_000_000)})
    venue.set_price(usd(60_000))
    venue.place("mm", False, usd(60_420), ONE_BTC, leverage=10)
    buy = venue.order("a", True, usd(60_420), ONE_BTC, leverage=50, tif=IMMEDIATE_OR_CANCEL)
    if path == "rules":
        assert venue.apply(buy) is None
        error = venue.apply(Trade(BTC, venue.address("mm"), 1, venue.address("a"), buy.nonce, usd(60_420), ONE_BTC))
        assert error is not None and error.code == "insufficient_margin"
    else:
        result = venue.submit(buy)
        assert [r for r in result if isinstance(r, Trade)] == []
    assert venue.size("a") == 0


# Base rules: a's resting bid at 50,000 survives a's liquidation at 54,000 and
# a seller then reopens a 1 BTC long for a.
def test_orders_of_a_liquidated_position_are_cancelled():
    venue = Venue({"a": usd(20_000), "mm": usd(1_000_000), "seller": usd(1_000_000)}, fund=usd(100_000))
    venue.set_price(usd(60_000))
    venue.place("mm", False, usd(60_000), ONE_BTC // 10)
    venue.place("a", True, usd(60_000), ONE_BTC // 10, leverage=10)
    resting = venue.order("a", True, usd(50_000), ONE_BTC // 10, leverage=10)
    venue.submit(resting)
    assert liquidations(venue.set_price(usd(54_000))) == [Deleverage(venue.address("a"), BTC, (venue.address("mm"),))]
    assert venue.size("a") == 0
    assert not is_order_open(venue.state, venue.address("a"), resting.nonce)   # by the order epoch
    venue.place("seller", False, usd(50_000), ONE_BTC // 10, tif=IMMEDIATE_OR_CANCEL)
    assert venue.size("a") == 0


# Base rules: an order of one step at 1 USDC and 50x is accepted and reserves 3 micro-USDC.
@pytest.mark.parametrize("path", ["rules", "builder"])
def test_an_order_below_the_minimum_notional_is_refused(path):
    venue = Venue({"a": usd(1_000)})
    venue.set_price(usd(60_000))
    dust = venue.order("a", True, usd(1), STEP, leverage=50)
    if path == "rules":
        error = venue.apply(dust)
        assert error is not None and error.code == "below_min_notional"
    else:
        with pytest.raises(RuleError) as refused:
            venue.submit(dust)
        assert refused.value.code == "below_min_notional"
        assert venue.exchange.reserved == {}


# --- 7. 64-bit totals ---------------------------------------------------------------------------

# Base rules: three maximum deposits (2**63 - 1 each) take total_deposited to
# 27,670,116,110,564,327,421 > 2**64 and the snapshot encoder raises OverflowError.
def test_three_maximum_deposits_keep_the_state_encodable():
    venue = Venue({})
    top = venue.ctx.preset.max_amount
    for name in ("a", "b", "c"):
        assert venue.apply(Deposit(venue.state.globals.inbox_count, venue.address(name), top)) is None
    assert venue.state.globals.inbox_count == 3
    encoded = msgspec.msgpack.encode(venue.state.to_tables())
    assert msgspec.msgpack.decode(encoded) is not None
    assert all(0 <= v < 2**63 for v in (venue.state.globals.total_deposited,
                                        *(a.collateral for a in venue.state.accounts.values())))
    check_conserved(venue)


# --- the ladder's last rung ---------------------------------------------------------------

def test_auto_deleverage_takes_no_more_from_a_counterparty_than_its_margin_and_profit_cover():
    """alice (10x long 1 BTC at 60,000) is bankrupt at 50,000 with an empty
    fund: ADL at her bankruptcy price 54,000.  carol's 50x short of 1 BTC at
    51,000 ranks first (profit x leverage) but can pay the 4,000 gap per BTC
    against 1,000 of profit per BTC and 1,020 of margin for 0.3399 BTC only;
    bob's 0.5 and mm's short take the rest."""
    venue = Venue({"alice": usd(20_000), "bob": usd(100_000), "carol": usd(5_000), "erin": usd(200_000),
                   "mm": usd(1_000_000)})
    venue.set_price(usd(60_000))
    venue.place("bob", False, usd(60_000), ONE_BTC // 2)
    venue.place("mm", False, usd(60_000), ONE_BTC // 2, leverage=1)
    venue.place("alice", True, usd(60_000), ONE_BTC, leverage=10)
    venue.now += 1
    assert venue.apply_price(usd(51_000)) is None      # no scan yet
    venue.place("erin", True, usd(51_000), ONE_BTC, leverage=1)
    venue.place("carol", False, usd(51_000), ONE_BTC, leverage=50, tif=IMMEDIATE_OR_CANCEL)
    assert venue.size("carol") == -ONE_BTC
    venue.now += 1
    assert venue.apply_price(usd(50_000)) is None
    carol_equity = equity(venue, "carol")
    carol_free = venue.free("carol")
    record = engine_deleverage(venue, "alice")         # rules v3: the engine names them, ranked
    assert record.counterparties == (venue.address("carol"), venue.address("bob"), venue.address("mm"))
    assert venue.apply(record) is None
    assert venue.size("alice") == 0 and venue.position("alice").margin == 0
    assert venue.size("carol") == -(ONE_BTC - 33_990_000)                     # 0.3399 BTC taken
    assert venue.size("bob") == 0
    assert venue.size("mm") == -(ONE_BTC // 2 - (ONE_BTC - 33_990_000 - ONE_BTC // 2))
    assert venue.position("carol").margin >= 0
    lost = carol_equity - (equity(venue, "carol") + venue.free("carol") - carol_free)
    assert 0 < lost <= carol_equity
    assert get_fund_positions(venue.state) == []
    check_conserved(venue)


def test_a_share_of_trading_fees_feeds_the_insurance_fund():
    markets = {BTC: msgspec.structs.replace(DEVNET_MARKETS[BTC], insurance_fee_share_ppm=200_000)}
    venue = Venue({"a": usd(100_000), "b": usd(100_000)}, fund=usd(1_000), markets=markets)
    venue.set_price(usd(60_000))
    venue.place("a", True, usd(60_000), ONE_BTC)
    venue.place("b", False, usd(60_000), ONE_BTC, tif=IMMEDIATE_OR_CANCEL)
    fees = usd(60_000) * (100 + 500) // 1_000_000                  # maker 1 bp + taker 5 bp
    assert venue.state.globals.insurance_fund == usd(1_000) + fees // 5
    assert venue.state.globals.fee_pool == fees - fees // 5
    check_conserved(venue)
