"""The liquidation ladder's book step and the Dutch auction (issue 10), pre/op/post:
the liquidation order fills resting orders no worse than the bankruptcy
price, in price-time priority, a bounded number per record; a maker that
cannot fill is passed over; what the book does not take goes to the ladder
(book-first) or to keepers (book+auction); the fund never holds a position
and never pays for a fill at or above the bankruptcy price.  Attacker views:
front-running one's own liquidation at the bankruptcy price, spoofing the
book with orders that cannot fill or sit beyond the bankruptcy price, a
keeper bidding with collateral it does not have."""
from __future__ import annotations

import msgspec
import pytest

from sequencer.core.invariants import compute_balance_violations, compute_conservation, compute_negative_balances
from sequencer.core.markets import (DEVNET_MARKETS, LIQUIDATION_BOOK_AUCTION, LIQUIDATION_BOOK_FIRST,
                                    LIQUIDATION_LADDER, USDC)
from sequencer.core.records import AuctionBid, AuctionEnd, Deleverage, Liquidate, OraclePrice, Trade
from sequencer.core.rules.base import TradeError
from sequencer.core.rules.trades import get_live_order
from sequencer.core.rules.auction import compute_auction_price
from sequencer.core.rules.liquidation import MAX_LIQUIDATION_MAKERS_V2, compute_liquidation_limit
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.state import Auction, State, is_order_open
from sequencer.lab.checks import get_crossed_books, get_fund_positions, get_stuck_liquidations
from sequencer.core.rules.orders import IMMEDIATE_OR_CANCEL
from sequencer.lab.venue import Venue

BTC = 1
ONE_BTC = 10**8
TENTH = ONE_BTC // 10
PARAMS = DEVNET_MARKETS[BTC]


def usd(dollars: int) -> int:
    return dollars * USDC


def markets_with(policy: int) -> dict:
    return {m: msgspec.structs.replace(p, liquidation_policy=policy) for m, p in DEVNET_MARKETS.items()}


def check(venue: Venue) -> None:
    """Conservation exact, nothing negative, no crossed book, the fund flat, the log replays."""
    assert compute_conservation(venue.state, venue.markets).discrepancy == 0
    assert compute_balance_violations(venue.state) == [] and compute_negative_balances(venue.state) == []
    assert get_crossed_books(venue.exchange) == []
    assert get_fund_positions(venue.state) == []
    assert venue.replay().to_tables() == venue.state.to_tables()


def alice_long(policy: int = LIQUIDATION_BOOK_FIRST, fund: int = usd(10_000), schema_version: int | None = None) -> Venue:
    """alice 10x long 0.1 BTC at 60,000 against mm (margin 600, bankruptcy price
    54,000, liquidatable below 54,655.87); under the current rules unless ``schema_version`` is given."""
    venue = Venue({"alice": usd(1_000), "mm": usd(10_000_000), "bob": usd(100_000), "carol": usd(100_000),
                   "dave": usd(1_000), "keeper": usd(100_000), "poor": usd(50)}, fund=fund,
                  markets=markets_with(policy))
    if schema_version is not None:
        venue.ctx = msgspec.structs.replace(venue.ctx, schema_version=schema_version)
    venue.set_price(usd(60_000))
    venue.place("mm", False, usd(60_000), TENTH, leverage=2)
    venue.place("alice", True, usd(60_000), TENTH, leverage=10)
    assert venue.size("alice") == TENTH
    return venue


def liquidations(records) -> list[Liquidate]:
    return [r for r in records if isinstance(r, Liquidate)]


def ladder_steps(records) -> list[Deleverage]:
    """Rules v3: the ladder's steps, each a Deleverage naming its counterparties."""
    return [r for r in records if isinstance(r, Deleverage)]


def test_the_liquidation_order_fills_the_best_bid_above_the_bankruptcy_price():
    venue = alice_long()
    venue.place("bob", True, usd(54_200), TENTH, leverage=5)     # the best bid, above bankruptcy
    venue.place("carol", True, usd(54_100), TENTH, leverage=5)
    fund, mm = venue.state.globals.insurance_fund, venue.position("mm")
    assert compute_liquidation_limit(venue.position("alice"), venue.state.markets[BTC], PARAMS) == usd(54_000)
    out = liquidations(venue.set_price(usd(54_300)))
    assert out == [Liquidate(venue.address("alice"), BTC, ((venue.address("bob"), 1),))]
    assert venue.size("alice") == 0 and venue.size("bob") == TENTH and venue.size("carol") == 0
    # alice sold at 54,200: loss 580 of her 600, fee 0.5% of 5,420 = 27.1 capped by the 20 left
    assert venue.position("alice").margin == 0
    assert venue.state.globals.insurance_fund == fund + usd(20) + usd(5_420) * 100 // 10**6 * 20 // 100
    assert venue.position("mm") == mm                               # nobody was closed at the mark
    assert (venue.address("bob"), 1) not in venue.exchange.orders   # filled, out of the book
    check(venue)


def test_a_front_runner_at_the_bankruptcy_price_gets_it_and_the_fund_pays_nothing():
    """carol rests a bid at exactly alice's bankruptcy price (54,000): allowed, she
    buys at 54,000, alice's margin ends at exactly 0, no fee, the fund does not pay."""
    venue = alice_long()
    venue.place("carol", True, usd(54_000), TENTH, leverage=5)
    venue.place("bob", True, usd(53_999), TENTH, leverage=5)      # beyond bankruptcy: never met
    fund = venue.state.globals.insurance_fund
    out = liquidations(venue.set_price(usd(54_300)))
    assert [m for r in out for m in r.makers] == [(venue.address("carol"), 1)]
    assert venue.size("alice") == 0 and venue.position("alice").margin == 0
    assert venue.size("carol") == TENTH and venue.size("bob") == 0
    assert venue.state.globals.insurance_fund == fund + usd(5_400) * 100 // 10**6 * 20 // 100   # carol's fee share
    check(venue)


def test_a_record_naming_a_maker_beyond_bankruptcy_or_out_of_order_is_refused():
    venue = alice_long()
    venue.place("bob", True, usd(53_000), TENTH, leverage=5)       # beyond bankruptcy
    venue.place("carol", True, usd(54_100), TENTH, leverage=5)
    venue.place("dave", True, usd(54_200), TENTH // 10, leverage=5)
    venue.now += 1
    assert venue.apply(OraclePrice(BTC, usd(54_300), venue.now, ())) is None
    if getattr(venue.state.markets[BTC], "pending_oracle_price", 0):   # a jump waits for its confirmation
        venue.now += 1
        assert venue.apply(OraclePrice(BTC, usd(54_300), venue.now, ())) is None
    before = venue.state.to_tables()
    alice, bob, carol, dave = (venue.address(n) for n in ("alice", "bob", "carol", "dave"))
    for makers, code in ((((bob, 1),), "maker_beyond_bankruptcy"),
                         (((carol, 1), (dave, 1)), "makers_out_of_order"),
                         (((alice, 2),), "invalid_maker"),
                         (((carol, 99),), "invalid_maker"),
                         (((carol, 1),) * (MAX_LIQUIDATION_MAKERS_V2 + 1), "invalid_makers")):
        error = venue.apply(Liquidate(alice, BTC, makers))
        assert error is not None and error.code == code, (makers, error)
        assert venue.state.to_tables() == before
    assert venue.apply(Liquidate(alice, BTC, ((dave, 1), (carol, 1)))) is None
    assert venue.size("dave") == TENTH // 10 and venue.size("carol") == TENTH - TENTH // 10
    check(venue)


def test_a_spoofed_bid_that_cannot_fill_is_passed_over_and_the_honest_one_fills():
    """dave's 50x bid at 56,000 would be the best price, but at a mark of
    54,300 his new long would be bankrupt at once: the maker check refuses it,
    the Exchange passes over it, bob's 54,200 fills; dave's bid stays."""
    venue = alice_long()
    venue.place("dave", True, usd(56_000), TENTH // 10, leverage=50)
    venue.place("bob", True, usd(54_200), TENTH, leverage=5)
    out = liquidations(venue.set_price(usd(54_300)))
    assert [m for r in out for m in r.makers] == [(venue.address("bob"), 1)]
    assert venue.size("alice") == 0 and venue.size("dave") == 0
    assert (venue.address("dave"), 1) in venue.exchange.orders
    # the rule alone skips it too when a record names it: nothing of dave's moves
    check(venue)


def test_makers_are_bounded_per_record_and_the_next_records_continue():
    """Twelve small bids at or above the mark: the first Liquidate names
    MAX_LIQUIDATION_MAKERS_V2 of them best first, the next ones the rest; alice is
    closed by the book alone.  (Fills below the mark move the bankruptcy
    price of what is left toward the mark: bids beyond it are then not met.)"""
    venue = Venue({"alice": usd(10_000), "mm": usd(10_000_000), **{f"b{i}": usd(10_000) for i in range(12)}},
                  fund=usd(1_000), markets=markets_with(LIQUIDATION_BOOK_FIRST))
    venue.set_price(usd(60_000))
    venue.place("mm", False, usd(60_000), ONE_BTC // 10 * 12 // 10, leverage=2)
    venue.place("alice", True, usd(60_000), ONE_BTC // 10 * 12 // 10, leverage=10)
    for i in range(12):
        venue.place(f"b{i}", True, usd(54_410 - 10 * i), ONE_BTC // 100, leverage=5)
    mm = venue.position("mm")
    out = liquidations(venue.set_price(usd(54_300)))
    assert [len(r.makers) for r in out] == [MAX_LIQUIDATION_MAKERS_V2] * (12 // MAX_LIQUIDATION_MAKERS_V2)
    assert [m for r in out for m in r.makers] == [(venue.address(f"b{i}"), 1) for i in range(12)]
    assert venue.size("alice") == 0 and venue.position("mm") == mm
    check(venue)


def test_what_the_book_does_not_take_goes_down_the_ladder():
    venue = alice_long()
    venue.place("bob", True, usd(54_200), TENTH // 4, leverage=5)
    out = liquidations(venue.set_price(usd(54_300)))
    assert [m for r in out for m in r.makers] == [(venue.address("bob"), 1)]
    assert venue.size("alice") == 0 and venue.size("bob") == TENTH // 4
    assert venue.size("mm") == -TENTH // 4                              # mm closed the rest at the mark
    check(venue)


def test_the_ladder_policy_never_looks_at_the_book():
    venue = alice_long(policy=LIQUIDATION_LADDER)
    venue.place("bob", True, usd(54_200), TENTH, leverage=5)
    out = venue.set_price(usd(54_300))
    # rules v3: no zero-maker Liquidate (it would only settle funding and cancel orders): one Deleverage
    assert liquidations(out) == []
    assert ladder_steps(out) == [Deleverage(venue.address("alice"), BTC, (venue.address("mm"),))]
    assert venue.size("bob") == 0 and venue.size("mm") == 0
    check(venue)


def test_liquidate_cancels_the_owners_orders_by_its_order_epoch():
    """Rules v2: one write (the position's order epoch) cancels them all; the
    order leaves keep their flags, the book and the API see them cancelled,
    and a Trade naming one is refused."""
    venue = alice_long()
    alice = venue.address("alice")
    venue.place("alice", False, usd(70_000), TENTH // 100, leverage=10)
    venue.place("alice", True, usd(50_000), TENTH // 100, leverage=10)
    assert venue.state.get_open_order_nonces(alice, BTC) == [2, 3]
    count = venue.state.globals.order_count
    venue.set_price(usd(54_300))
    assert venue.state.positions[(alice, BTC)].order_epoch == count
    assert not any(is_order_open(venue.state, alice, n) for n in (2, 3))
    assert not any(venue.state.orders[(alice, n)].cancelled for n in (2, 3))
    assert not any(k[0] == alice for k in venue.exchange.orders)
    venue.exchange.rebuild(venue.state)
    assert not any(k[0] == alice for k in venue.exchange.orders)
    trade = Trade(BTC, alice, 2, venue.address("bob"), 9, usd(70_000), TENTH // 100)
    with pytest.raises(TradeError) as refused:
        get_live_order(venue.state, alice, 2, "maker", trade, venue.state.globals.timestamp_ms)
    assert refused.value.code == "order_cancelled"
    rebuilt = State.from_tables(venue.state.to_tables())
    assert rebuilt.open_orders == venue.state.open_orders
    check(venue)


def test_the_open_orders_index_follows_writes_and_reverts():
    venue = alice_long()
    state = venue.state
    snapshot = state.snapshot()
    venue.place("bob", True, usd(50_000), TENTH, leverage=5)
    venue.place("bob", True, usd(50_001), TENTH, leverage=5)
    venue.submit(venue.cancel_record("bob", 1))
    assert state.get_open_order_nonces(venue.address("bob"), BTC) == [2]
    state.revert(snapshot)
    assert state.get_open_order_nonces(venue.address("bob"), BTC) == []
    scan = {}
    for (address, nonce), order in state.orders.items():
        if not order.cancelled and order.filled < order.size:
            scan.setdefault((address, order.market), set()).add(nonce)
    assert state.open_orders == scan


# --- the Dutch auction (book+auction) ---------------------------------------------------

def start_auction() -> tuple[Venue, Auction]:
    venue = alice_long(policy=LIQUIDATION_BOOK_AUCTION)
    out = liquidations(venue.set_price(usd(54_300)))
    assert [r.makers for r in out] == [()]
    auction = venue.state.auctions[(venue.address("alice"), BTC)]
    assert auction == Auction(TENTH, usd(54_300), usd(54_000), venue.now, venue.now + PARAMS.auction_duration_ms)
    assert venue.size("alice") == TENTH and venue.size("mm") == -TENTH    # nobody closed at the mark
    assert get_stuck_liquidations(venue.state, venue.markets, venue.now) == []
    return venue, auction


def bid(venue: Venue, name: str, size: int, price: int, leverage: int = 5) -> AuctionBid:
    return AuctionBid(venue.address(name), venue.address("alice"), BTC, size, price, leverage,
                      venue.next_nonce(name), venue.now + 60_000, b"")


def test_the_auction_price_decays_linearly_from_the_mark_to_the_bankruptcy_price():
    auction = Auction(TENTH, usd(54_300), usd(54_000), 0, 60_000)
    prices = [compute_auction_price(auction, t, PARAMS) for t in (-5, 0, 1, 30_000, 59_999, 60_000, 90_000)]
    assert prices == [usd(54_300), usd(54_300), usd(54_300), usd(54_150), usd(54_001), usd(54_000), usd(54_000)]
    short = Auction(TENTH, usd(66_000), usd(66_600), 0, 60_000)
    assert [compute_auction_price(short, t, PARAMS) for t in (0, 30_000, 59_999)] == \
        [usd(66_000), usd(66_300), usd(66_599)]


def test_a_keeper_takes_lots_at_the_current_price_and_the_rest_sells_later():
    venue, auction = start_auction()
    venue.now += 20_000
    fund = venue.state.globals.insurance_fund
    venue.set_price(usd(54_300))                          # a fresh mark; alice is in auction, not liquidated again
    price = compute_auction_price(auction, venue.now, PARAMS)
    assert price == usd(54_200)
    venue.submit(bid(venue, "keeper", TENTH // 2, usd(54_250)))
    assert venue.size("keeper") == TENTH // 2 and venue.size("alice") == TENTH // 2
    assert venue.state.auctions[(venue.address("alice"), BTC)].size == TENTH // 2
    assert venue.state.globals.insurance_fund > fund      # the liquidation fee
    venue.submit(bid(venue, "bob", TENTH // 2, usd(54_200)))
    assert venue.size("alice") == 0 and (venue.address("alice"), BTC) not in venue.state.auctions
    check(venue)


def test_a_keeper_without_the_collateral_or_past_its_limit_is_refused_and_nothing_moves():
    venue, auction = start_auction()
    before = venue.state.to_tables()
    for record, code in ((bid(venue, "poor", TENTH, usd(54_300), leverage=1), "insufficient_collateral"),
                         (bid(venue, "keeper", TENTH, usd(54_299)), "price_outside_limit"),
                         (bid(venue, "keeper", TENTH * 2, usd(54_300)), "auction_size"),
                         (bid(venue, "alice", TENTH, usd(54_300)), "invalid_bidder"),
                         (AuctionBid(venue.address("keeper"), venue.address("bob"), BTC, TENTH, usd(54_300), 5,
                                     venue.next_nonce("keeper"), venue.now + 60_000, b""), "no_auction")):
        with pytest.raises(Exception) as info:
            venue.submit(record)
        assert getattr(info.value, "code", None) == code, (record, info.value)
        assert venue.state.to_tables() == before


def test_an_auction_that_does_not_sell_ends_down_the_ladder():
    venue, auction = start_auction()
    error = venue.apply(AuctionEnd(venue.address("alice"), BTC))
    assert error is not None and error.code == "auction_live"
    venue.now = auction.end_ms
    venue.set_price(usd(54_300))
    out = venue.exchange.due_auction_ends(venue.state, venue.now, venue.ctx)
    venue.log.extend((venue.now, r) for r in out)
    # rules v3: the AuctionEnd keeps the lots; the engine's Deleverage closes them at the mark against mm
    assert out == [AuctionEnd(venue.address("alice"), BTC), Deleverage(venue.address("alice"), BTC,
                                                                       (venue.address("mm"),))]
    assert venue.size("alice") == 0 and venue.size("mm") == 0             # closed at the mark against mm
    assert venue.state.auctions == {}
    assert get_stuck_liquidations(venue.state, venue.markets, venue.now) == []
    check(venue)


def test_a_position_that_goes_bankrupt_in_auction_leaves_it_for_the_fund():
    venue, auction = start_auction()
    fund = venue.state.globals.insurance_fund
    out = liquidations(venue.set_price(usd(53_500)))                       # below 54,000: bankrupt
    assert len(out) == 1 and venue.size("alice") == 0 and venue.state.auctions == {}
    assert venue.state.globals.insurance_fund == fund - usd(50)           # 0.1 x (54,000 - 53,500)
    check(venue)


def test_a_keeper_bid_is_the_block_builders_user_record():
    venue, auction = start_auction()
    out = venue.submit(bid(venue, "keeper", TENTH, usd(54_300)))
    assert isinstance(out[0], AuctionBid) and venue.size("keeper") == TENTH
    assert venue.size("alice") == 0
    assert venue.position("alice").margin > 0                              # sold at the mark: margin left
    check(venue)


def test_an_ioc_keeper_unwind_after_the_auction_is_an_ordinary_order():
    venue, _ = start_auction()
    venue.submit(bid(venue, "keeper", TENTH, usd(54_300)))
    venue.place("bob", True, usd(54_250), TENTH, leverage=5)
    venue.place("keeper", False, usd(54_250), TENTH, leverage=5, tif=IMMEDIATE_OR_CANCEL, reduce_only=True)
    assert venue.size("keeper") == 0 and INSURANCE_ADDRESS not in {k[0] for k in venue.state.positions
                                                                   if venue.state.positions[k].size}
    check(venue)


def test_the_api_lists_running_auctions_with_their_price_now():
    from sequencer.node.api_auctions import describe_auctions
    venue, auction = start_auction()
    listed = describe_auctions(venue.state, venue.markets, auction.start_ms + 30_000)
    assert listed == [{"owner": "0x" + venue.address("alice").hex(), "market": BTC, "side": "long", "size": TENTH,
                       "startPrice": usd(54_300), "endPrice": usd(54_000), "startMs": auction.start_ms,
                       "endMs": auction.end_ms, "price": usd(54_150), "over": False}]
    assert describe_auctions(venue.state, venue.markets, auction.end_ms, market=2) == []
    assert describe_auctions(venue.state, venue.markets, auction.end_ms)[0]["over"] is True


def test_the_cli_parses_auction_list_and_bid():
    import argparse
    from sequencer import cli_trading
    parser = argparse.ArgumentParser()
    cli_trading.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["auction", "bid", "0x" + "11" * 20, "BTC-USD", "0.1", "54000", "--leverage", "5"])
    assert (args.func, args.owner, args.size, args.price, args.leverage) == \
        (cli_trading.cmd_auction_bid, "0x" + "11" * 20, "0.1", "54000", 5)
    assert parser.parse_args(["auction", "list"]).func is cli_trading.cmd_auction_list


def test_the_block_builder_writes_the_book_liquidation_and_a_follower_agrees():
    """Through BlockAssembler: a price makes alice liquidatable, the block holds
    her Liquidate naming bob's bid, and a follower applying the block's bytes
    reaches the same state root."""
    from perps_support import ADDR, T0, Sim, sign_oracle
    from sequencer.core.encoding import compute_record_hash, encode_record
    from sequencer.core.matching import Exchange
    from sequencer.executor.chain import Chain
    from sequencer.node.assembler import BlockAssembler, CheckedRecord

    def checked(record) -> CheckedRecord:
        raw = encode_record(record)
        return CheckedRecord(record, raw, compute_record_hash(raw))

    sim = Sim(fund=usd(10_000), alice=usd(1_000), bob=usd(100_000), carol=usd(10_000_000))
    genesis = sim.make_genesis()
    chain = Chain(sim.state, sim.ctx)
    asm = BlockAssembler(chain.state, sim.ctx, max_records=4096, exchange=Exchange(DEVNET_MARKETS))
    follower = Chain(genesis, sim.ctx)
    setup = [checked(sign_oracle(BTC, usd(60_000), T0)), checked(sim.order("carol", False, usd(60_000), TENTH, leverage=2)),
             checked(sim.order("alice", True, usd(60_000), TENTH, leverage=10)),
             checked(sim.order("bob", True, usd(54_200), TENTH, leverage=5))]
    for now, txs in ((T0, setup), (T0 + 1_000, [checked(sign_oracle(BTC, usd(54_300), T0 + 999)),
                                                checked(sign_oracle(BTC, usd(54_300), T0 + 1_000))])):
        assembly = asm.assemble(txs, now)
        asm.commit(assembly)
        follower.apply_message(len(follower.block_infos), assembly.message)
    derived = [r for outcome in assembly.outcomes for r in outcome.derived]
    assert Liquidate(ADDR["alice"], BTC, ((ADDR["bob"], 1),)) in derived
    assert chain.state.positions[(ADDR["alice"], BTC)].size == 0
    assert chain.state.positions[(ADDR["bob"], BTC)].size == TENTH
    assert follower.compute_state_root() == chain.compute_state_root()


def test_a_log_replays_under_the_rules_of_its_schema_version():
    """A log written under rules v2 (pinned: its liquidation is a Liquidate down
    the ranked ladder) replays to the same state under v2; under rules v1 (a
    log written before v2) it cancels by each order's flag and leaves no epoch."""
    venue = alice_long(schema_version=2)
    alice = venue.address("alice")
    venue.place("alice", False, usd(70_000), TENTH // 100, leverage=10)
    venue.place("alice", True, usd(50_000), TENTH // 100, leverage=10)
    count = venue.state.globals.order_count
    out = venue.set_price(usd(54_300))
    assert liquidations(out) == [Liquidate(alice, BTC)] and ladder_steps(out) == []
    assert venue.size("alice") == 0
    assert venue.replay().to_tables() == venue.state.to_tables()
    v1 = venue.replay(msgspec.structs.replace(venue.ctx, schema_version=1))
    assert all(v1.orders[(alice, n)].cancelled for n in (2, 3))
    assert all(p.order_epoch == 0 for p in v1.positions.values())
    assert venue.state.positions[(alice, BTC)].order_epoch == count
