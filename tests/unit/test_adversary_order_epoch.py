"""Rules v2's order epoch from an attacker's side, pre/op/post: a liquidation,
an auction's end and a forced close cancel the owner's orders in the market
with one write (the position's ``order_epoch``); the order leaves keep their
flags.  A trader tries to get a dead order filled or revived (through the
engine, a ModifyOrder, a CancelOrder, a trigger, a scheduled cancel-all), a
dishonest sequencer hand-writes the Trade or Liquidate the engine would not,
an attacker bloats the state with forced closes of accounts holding nothing,
and every rule meets a flat position that keeps an epoch-only leaf.  Each
test ends with the same checks: conservation exact, nothing negative, the
books equal a rebuild from the state (reserves too), and the log replays to
the same state."""
from __future__ import annotations

import msgspec
import pytest

from l1_bridge.proofs import MarketScale, compute_escape_amount, escape_args
from prover.keys import get_position_key
from prover.trace import build_tree
from sequencer.core.commitment import encode_position_leaf
from sequencer.core.invariants import compute_balance_violations, compute_conservation, compute_negative_balances
from sequencer.core.markets import DEVNET_MARKETS, LIQUIDATION_BOOK_FIRST, USDC
from sequencer.core.matching import Exchange
from sequencer.core.records import (ForcedClose, FundingTick, Liquidate, ModifyOrder, PlaceTrigger, ScheduleCancel,
                                    Trade)
from sequencer.core.rules.orders import IMMEDIATE_OR_CANCEL
from sequencer.core.rules.triggers import STOP_LOSS, TAKE_PROFIT, fires_above
from sequencer.core.state import Position, get_order_epoch, is_empty_position, is_order_open
from sequencer.lab.checks import get_crossed_books
from sequencer.lab.venue import Venue

BTC, ETH = 1, 2
ONE_BTC = 10**8
TENTH = ONE_BTC // 10
SMALL = TENTH // 100          # 0.001 BTC: ~50-70 USDC of notional, above the minimum


def usd(dollars: int) -> int:
    return dollars * USDC


def markets_with(policy: int) -> dict:
    return {m: msgspec.structs.replace(p, liquidation_policy=policy) for m, p in DEVNET_MARKETS.items()}


def check(venue: Venue) -> None:
    """Conservation exact, nothing negative, no crossed book, the books and
    reserves equal a rebuild from the state, the log replays to the state."""
    assert compute_conservation(venue.state, venue.markets).discrepancy == 0
    assert compute_balance_violations(venue.state) == [] and compute_negative_balances(venue.state) == []
    assert get_crossed_books(venue.exchange) == []
    rebuilt = Exchange(venue.markets)
    rebuilt.rebuild(venue.state)
    assert rebuilt.dump() == venue.exchange.dump()
    assert rebuilt.reserved == venue.exchange.reserved
    assert all(is_order_open(venue.state, *key) for key in venue.exchange.orders)
    assert venue.replay().to_tables() == venue.state.to_tables()


def liquidated_alice(policy: int = LIQUIDATION_BOOK_FIRST, before=None) -> tuple[Venue, dict]:
    """Pre: alice 10x long 0.1 BTC at 60,000 (bankruptcy 54,000) with a resting
    ask at 70,000 (nonce 2) and bid at 50,000 (nonce 3); bob's bid at 54,200
    takes her liquidation at 54,300 (``before(venue)`` runs just before the
    price falls).  Returns the venue and facts about it."""
    venue = Venue({"alice": usd(1_000), "mm": usd(10_000_000), "bob": usd(100_000), "carol": usd(100_000),
                   "dave": usd(100_000)}, fund=usd(10_000), markets=markets_with(policy))
    venue.set_price(usd(60_000))
    venue.set_price(usd(3_000), market=ETH)
    venue.place("mm", False, usd(60_000), TENTH, leverage=2)
    venue.place("alice", True, usd(60_000), TENTH, leverage=10)
    venue.place("alice", False, usd(70_000), SMALL, leverage=10)
    venue.place("alice", True, usd(50_000), SMALL, leverage=10)
    venue.place("bob", True, usd(54_200), TENTH, leverage=5)
    alice = venue.address("alice")
    assert venue.exchange.reserved[alice] > 0
    if before is not None:
        before(venue)
    count = venue.state.globals.order_count
    out = venue.set_price(usd(54_300))
    assert [r for r in out if isinstance(r, Liquidate)] == [Liquidate(alice, BTC, ((venue.address("bob"), 1),))]
    position = venue.state.positions[(alice, BTC)]
    assert (position.size, position.margin, position.order_epoch) == (0, 0, count)
    return venue, {"alice": alice, "epoch": count}


# --- a dead order never fills ------------------------------------------------------------

def test_a_dead_order_does_not_fill_through_the_engine():
    """Op: carol sells at 50,000 and dave buys at 70,000 (alice's dead bid and
    ask would cross).  Post: neither meets alice; the book holds none of hers
    and her reserve is gone, so she may withdraw all her free collateral."""
    venue, facts = liquidated_alice()
    alice = facts["alice"]
    assert not any(key[0] == alice for key in venue.exchange.orders) and alice not in venue.exchange.reserved
    sell = venue.place("carol", False, usd(50_000), SMALL, tif=IMMEDIATE_OR_CANCEL)
    buy = venue.place("dave", True, usd(70_000), SMALL, tif=IMMEDIATE_OR_CANCEL)
    assert not any(isinstance(r, Trade) and alice in (r.maker, r.taker) for r in sell + buy)
    assert venue.size("alice") == 0
    venue.submit(venue.withdraw_record("alice", venue.free("alice")))   # no reserve left to block it
    assert venue.free("alice") == 0
    check(venue)


def test_a_dishonest_sequencer_cannot_fill_a_dead_maker():
    """Op: a hand-made Trade naming alice's dead bid as the maker of carol's
    sell.  Post: refused (order_cancelled, the maker's side), nothing changed."""
    venue, facts = liquidated_alice()
    sell = venue.order("carol", False, usd(50_000), SMALL, tif=IMMEDIATE_OR_CANCEL)
    assert venue.apply(sell) is None
    before = venue.state.to_tables()
    error = venue.apply(Trade(BTC, facts["alice"], 3, venue.address("carol"), sell.nonce, usd(50_000), SMALL))
    assert error is not None and (error.code, error.side) == ("order_cancelled", "maker")
    assert venue.state.to_tables() == before
    check(venue)


def test_a_dishonest_sequencer_cannot_fill_a_dead_taker_placed_just_before_the_liquidation():
    """Pre: alice's last order is the order placed last when she is liquidated
    (its seq == the epoch == order_count, so the taker check alone would pass).
    Op: a Trade taking bob's resting ask with it.  Post: refused on the taker's side."""
    venue = Venue({"alice": usd(1_000), "mm": usd(10_000_000), "bob": usd(100_000)}, fund=usd(10_000),
                  markets=markets_with(LIQUIDATION_BOOK_FIRST))
    venue.set_price(usd(60_000))
    venue.place("mm", False, usd(60_000), TENTH, leverage=2)
    venue.place("alice", True, usd(60_000), TENTH, leverage=10)
    venue.place("bob", False, usd(80_000), SMALL, leverage=5)                    # bob's ask, nonce 1
    last = venue.order("alice", True, usd(50_000), SMALL, leverage=10)
    assert venue.apply(last) is None                                               # the rule alone: it rests
    alice = venue.address("alice")
    assert venue.state.orders[(alice, last.nonce)].seq == venue.state.globals.order_count
    venue.now += 1
    assert venue.apply_price(usd(54_300)) is None
    assert venue.apply(Liquidate(alice, BTC)) is None                              # the ladder, no makers
    assert venue.state.positions[(alice, BTC)].order_epoch == venue.state.globals.order_count
    before = venue.state.to_tables()
    error = venue.apply(Trade(BTC, venue.address("bob"), 1, alice, last.nonce, usd(80_000), SMALL))
    assert error is not None and (error.code, error.side) == ("order_cancelled", "taker")
    assert venue.state.to_tables() == before
    venue.exchange.rebuild(venue.state)
    check(venue)


def test_a_liquidate_naming_a_dead_maker_is_refused_and_a_newer_order_of_its_owner_fills():
    """Pre: bob was liquidated (his bid at 54,000 dead), then placed a new bid.
    Op: alice's liquidation naming the dead bid, then the engine's own.
    Post: the first refused (invalid_maker), the engine fills bob's new bid."""
    venue = Venue({"alice": usd(1_000), "bob": usd(1_000), "mm": usd(10_000_000), "carol": usd(100_000)},
                  fund=usd(100_000), markets=markets_with(LIQUIDATION_BOOK_FIRST))
    venue.set_price(usd(60_000))
    venue.place("mm", False, usd(60_000), TENTH, leverage=2)
    venue.place("bob", True, usd(60_000), TENTH, leverage=10)                      # bob 10x long
    venue.place("bob", True, usd(54_400), SMALL, leverage=10)                      # bob's bid, nonce 2
    venue.place("carol", True, usd(54_100), TENTH, leverage=5)
    out = venue.set_price(usd(54_300))                                             # bob liquidated
    bob = venue.address("bob")
    assert any(isinstance(r, Liquidate) and r.account == bob for r in out) and venue.size("bob") == 0
    assert not is_order_open(venue.state, bob, 2)
    venue.set_price(usd(56_000))
    venue.place("mm", False, usd(56_000), TENTH, leverage=2)
    venue.place("alice", True, usd(56_000), TENTH, leverage=10)                   # alice: bankruptcy 50,400
    venue.place("bob", True, usd(55_000), SMALL, leverage=5)                       # bob's new bid, nonce 3
    venue.now += 1
    assert venue.apply_price(usd(50_900)) is None
    alice = venue.address("alice")
    error = venue.apply(Liquidate(alice, BTC, ((bob, 2),)))
    assert error is not None and error.code == "invalid_maker"
    out = venue.exchange.liquidate_market(venue.state, BTC, venue.now, venue.ctx)
    venue.log.extend((venue.now, r) for r in out)
    assert (bob, 3) in [m for r in out if isinstance(r, Liquidate) and r.account == alice for m in r.makers]
    assert venue.state.orders[(bob, 3)].filled == SMALL and venue.state.orders[(bob, 2)].filled == 0
    check(venue)


# --- cancel, modify, scheduled cancel-all, triggers --------------------------------------

def test_cancel_of_a_dead_order_sets_its_flag_and_changes_nothing_else():
    """Op: alice cancels her dead bid.  Post: accepted (the rule reads the flag
    only), the flag set, the book and the reserves as before; a second cancel
    is refused (order_not_open)."""
    venue, facts = liquidated_alice()
    alice = facts["alice"]
    book, reserved = venue.exchange.dump(), dict(venue.exchange.reserved)
    venue.submit(venue.cancel_record("alice", 3))
    assert venue.state.orders[(alice, 3)].cancelled
    assert venue.exchange.dump() == book and venue.exchange.reserved == reserved
    with pytest.raises(Exception) as refused:
        venue.submit(venue.cancel_record("alice", 3))
    assert getattr(refused.value, "code", None) == "order_not_open"
    check(venue)


def modify_record(venue: Venue, name: str, order_nonce: int, price: int, size: int) -> ModifyOrder:
    return venue.sign(ModifyOrder(venue.address(name), order_nonce, price, size, venue.next_nonce(name),
                                  venue.now + 3_600_000, b""), name)


def test_modify_of_a_dead_order_is_refused_and_changes_nothing():
    """Pre: alice's bid dead by her order epoch (her liquidation), its flag
    clear.  Op: she modifies it.  Post (rules v4): refused, order_not_open
    naming the order epoch; the state, the book and the reserves as before;
    a sell at her old price finds nothing of hers.  (v1-v3 accepted it: the
    rule read the flag only, and the replacement was a live new order.)"""
    venue, facts = liquidated_alice()
    alice = facts["alice"]
    before, book, reserved = venue.state.to_tables(), venue.exchange.dump(), dict(venue.exchange.reserved)
    with pytest.raises(Exception) as refused:
        venue.submit(modify_record(venue, "alice", 3, usd(49_000), SMALL))
    assert getattr(refused.value, "code", None) == "order_not_open"
    assert "order epoch" in str(refused.value)
    assert venue.state.to_tables() == before
    assert venue.exchange.dump() == book and venue.exchange.reserved == reserved
    assert not any(key[0] == alice for key in venue.exchange.orders)
    sell = venue.place("carol", False, usd(49_000), SMALL, leverage=1, tif=IMMEDIATE_OR_CANCEL)
    assert not any(isinstance(t, Trade) and t.maker == alice for t in sell)
    check(venue)


def test_a_modify_of_a_dead_order_is_refused_by_the_epoch_before_its_terms():
    """Op: alice modifies her dead bid to a size she cannot cover.  Post:
    refused for the epoch (order_not_open), not for the collateral; the dead
    order stays out of the book, no reserve for it."""
    venue, facts = liquidated_alice()
    alice = facts["alice"]
    before = venue.state.to_tables()
    with pytest.raises(Exception) as refused:
        venue.submit(modify_record(venue, "alice", 3, usd(50_000), 100 * ONE_BTC))
    assert getattr(refused.value, "code", None) == "order_not_open"
    assert venue.state.to_tables() == before
    assert not any(key[0] == alice for key in venue.exchange.orders) and alice not in venue.exchange.reserved
    check(venue)


def test_a_scheduled_cancel_all_after_a_liquidation_cancels_the_new_order_by_its_epoch():
    """Pre: alice scheduled a cancel-all, was liquidated, then placed a new bid.
    Op: the cancel-all runs.  Post (rules v4): her order epoch moved up to the
    last placement, so the new order is dead too (the flags left as they
    were), the book and reserves empty for her and equal to a rebuild."""
    venue = Venue({"alice": usd(1_000), "mm": usd(10_000_000), "bob": usd(100_000)}, fund=usd(10_000),
                  markets=markets_with(LIQUIDATION_BOOK_FIRST))
    venue.set_price(usd(60_000))
    venue.place("mm", False, usd(60_000), TENTH, leverage=2)
    venue.place("alice", True, usd(60_000), TENTH, leverage=10)
    venue.place("alice", True, usd(50_000), SMALL, leverage=10)                    # nonce 2: dies
    venue.place("bob", True, usd(54_200), TENTH, leverage=5)
    alice = venue.address("alice")
    venue.submit(venue.sign(ScheduleCancel(alice, venue.now + 10_000, venue.next_nonce("alice"), venue.now + 60_000,
                                           b""), "alice"))
    venue.set_price(usd(54_300))
    assert venue.size("alice") == 0 and not is_order_open(venue.state, alice, 2)
    venue.set_price(usd(54_300))
    new = venue.order("alice", True, usd(40_000), SMALL, leverage=10)
    venue.submit(new)
    assert is_order_open(venue.state, alice, new.nonce) and (alice, new.nonce) in venue.exchange.orders
    venue.now += 10_000
    out = venue.exchange.run_scheduled_cancel(venue.state, alice, venue.now, venue.ctx)
    venue.log.extend((venue.now, r) for r in out)
    assert len(out) == 1
    assert not any(is_order_open(venue.state, alice, n) for n in (2, new.nonce))
    assert not venue.state.orders[(alice, new.nonce)].cancelled
    assert get_order_epoch(venue.state, alice, BTC) == venue.state.globals.order_count
    assert not any(key[0] == alice for key in venue.exchange.orders) and alice not in venue.exchange.reserved
    check(venue)


def test_a_trigger_placed_before_the_liquidation_fires_after_it_with_a_live_order():
    """Pre: alice's buy take-profit at 52,000 was placed before her liquidation
    (a liquidation cancels orders, not triggers: v1 did the same).  Op: the
    mark falls to 52,000 and the trigger fires.  Post: its order's seq is above
    the epoch (live) and it fills carol's ask: alice opens a new long.
    Acceptable: the owner signed the trigger; it is not one of the orders the
    epoch cancels.  Say so to the owner (API: pending triggers survive a
    liquidation)."""
    assert not fires_above(True, TAKE_PROFIT) and fires_above(True, STOP_LOSS)
    placed = []

    def place_trigger(venue: Venue) -> None:
        trigger = venue.sign(PlaceTrigger(venue.address("alice"), BTC, True, usd(52_000), usd(52_500), SMALL, 10,
                                          TAKE_PROFIT, False, venue.next_nonce("alice"), venue.now + 3_600_000, b""),
                             "alice")
        venue.submit(trigger)
        placed.append(trigger)

    venue, facts = liquidated_alice(before=place_trigger)
    alice, trigger = facts["alice"], placed[0]
    assert (alice, trigger.nonce) in venue.state.triggers          # the liquidation left it pending
    venue.place("carol", False, usd(52_500), SMALL, leverage=5)
    venue.set_price(usd(52_000))
    out = venue.exchange.fire_trigger(venue.state, (alice, trigger.nonce), venue.now, venue.ctx)
    venue.log.extend((venue.now, r) for r in out)
    order = venue.state.orders[(alice, trigger.nonce)]
    assert order.seq > facts["epoch"]
    assert [t.taker_nonce for t in out if isinstance(t, Trade)] == [trigger.nonce]
    assert venue.size("alice") == SMALL
    check(venue)


def test_an_order_placed_right_after_the_liquidation_in_the_same_block_is_live():
    """Op: at the liquidation's block time alice places a new bid, then carol
    sells into it.  Post: the bid rests (seq above the epoch) and fills."""
    venue, facts = liquidated_alice()
    alice = facts["alice"]
    bid = venue.order("alice", True, usd(53_000), SMALL, leverage=10)
    venue.submit(bid)
    assert venue.state.orders[(alice, bid.nonce)].seq == venue.state.globals.order_count > facts["epoch"]
    assert is_order_open(venue.state, alice, bid.nonce)
    venue.place("carol", False, usd(53_000), SMALL, tif=IMMEDIATE_OR_CANCEL)
    assert venue.size("alice") == SMALL and venue.state.positions[(alice, BTC)].order_epoch == facts["epoch"]
    check(venue)


def test_the_epoch_of_one_market_leaves_the_owners_orders_in_another_live():
    """Pre: alice has a resting ETH bid.  Op: her BTC liquidation.  Post: the
    ETH bid is open, in the book, and fills."""
    venue = Venue({"alice": usd(1_000), "mm": usd(10_000_000), "bob": usd(100_000), "carol": usd(100_000)},
                  fund=usd(10_000), markets=markets_with(LIQUIDATION_BOOK_FIRST))
    venue.set_price(usd(60_000))
    venue.set_price(usd(3_000), market=ETH)
    venue.place("mm", False, usd(60_000), TENTH, leverage=2)
    venue.place("alice", True, usd(60_000), TENTH, leverage=10)
    eth_bid = venue.order("alice", True, usd(2_900), 2 * 10**7, market=ETH, leverage=10)
    venue.submit(eth_bid)
    venue.place("bob", True, usd(54_200), TENTH, leverage=5)
    venue.set_price(usd(54_300))
    alice = venue.address("alice")
    assert venue.size("alice") == 0 and venue.state.positions[(alice, BTC)].order_epoch > 0
    assert is_order_open(venue.state, alice, eth_bid.nonce) and (alice, eth_bid.nonce) in venue.exchange.orders
    venue.place("carol", False, usd(2_900), 2 * 10**7, market=ETH, tif=IMMEDIATE_OR_CANCEL)
    assert venue.size("alice", ETH) == 2 * 10**7
    check(venue)


# --- forced closes and epoch-only leaves -------------------------------------------------

def forced_close(venue: Venue, address: bytes, market: int) -> list:
    return venue.submit(ForcedClose(venue.state.globals.inbox_count, address, market))


def test_forced_closes_of_accounts_holding_nothing_each_leave_one_leaf():
    """Op: forced closes of 20 addresses with no account and no position (what
    20 L1 senders can file, each paying FORCED_FEE, 0.01 ETH in production:
    bridge.vy forceClose is the CALLER's only).  Post: 20 epoch-only position
    leaves, nothing else but the inbox counters; each leaf behaves as the
    absent position it stands for."""
    venue = Venue({"bob": usd(100_000), "mm": usd(100_000)})
    venue.set_price(usd(60_000))
    venue.place("mm", False, usd(61_000), TENTH, leverage=2)          # order_count 1: an epoch of 1 to write
    strangers = [bytes([7, i]) + bytes(18) for i in range(20)]
    accounts = dict(venue.state.accounts)
    for address in strangers:
        forced_close(venue, address, BTC)
    assert venue.state.globals.inbox_count == len(strangers)
    assert dict(venue.state.accounts) == accounts
    assert all(venue.state.positions[(a, BTC)] == Position(order_epoch=1) for a in strangers)
    tree = build_tree(venue.state)
    assert [len(tree.get(get_position_key(a, BTC))) for a in strangers] == [160] * len(strangers)
    for address in strangers[:3]:                       # each leaf stands for the absent position
        venue.apply(ForcedClose(venue.state.globals.inbox_count, address, BTC))
    assert all(venue.state.positions[(a, BTC)] == Position(order_epoch=1) for a in strangers)
    check(venue)


def test_forced_close_of_an_account_with_no_position_after_orders_were_placed_writes_an_epoch_leaf():
    """Pre: orders were placed (order_count > 0); eve has collateral and a
    resting bid but no position.  Op: eve's forced close.  Post: her bid is
    dead and out of the book, her leaf is (0, 0, 0, 0, epoch) (five words),
    AdjustMargin into it is refused as for an absent position, the escape
    amount is her free collateral, and a later fill opens from it with the
    market's current funding index (not the leaf's 0)."""
    venue = Venue({"eve": usd(10_000), "bob": usd(100_000), "mm": usd(10_000_000)}, fund=usd(10_000))
    venue.set_price(usd(60_000))
    venue.place("mm", False, usd(61_000), TENTH, leverage=2)
    venue.place("bob", True, usd(60_000), TENTH, leverage=2)
    venue.place("mm", False, usd(60_000), TENTH, leverage=2)
    interval = DEVNET_MARKETS[BTC].funding_interval_ms
    venue.now = (venue.now // interval + 1) * interval
    assert venue.apply_price(usd(60_000)) is None
    assert venue.apply(FundingTick(BTC, 100, venue.now)) is None          # a rate the engine could have set
    eve = venue.address("eve")
    bid = venue.order("eve", True, usd(50_000), SMALL, leverage=10)
    venue.submit(bid)
    assert venue.state.markets[BTC].funding_index != 0
    forced_close(venue, eve, BTC)
    position = venue.state.positions[(eve, BTC)]
    assert position == Position(order_epoch=venue.state.globals.order_count) and not is_empty_position(position)
    assert len(encode_position_leaf(position)) == 160
    assert not is_order_open(venue.state, eve, bid.nonce) and (eve, bid.nonce) not in venue.exchange.orders
    assert eve not in venue.exchange.reserved
    error = venue.apply(venue.adjust_record("eve", usd(1)))
    assert error is not None and error.code == "no_position"
    markets = [MarketScale.from_params(DEVNET_MARKETS[m]) for m in sorted(DEVNET_MARKETS)]
    assert compute_escape_amount(venue.state, eve, markets) == venue.free("eve")
    tree = build_tree(venue.state)
    args = escape_args(tree, eve, _fake_output(tree.root), [m.id for m in markets])
    assert [len(entry[1]) for entry in args[4] if entry[0]] == [160]     # bridge.vy accepts >= 128 bytes
    venue.place("eve", True, usd(61_000), SMALL, leverage=10)
    opened = venue.state.positions[(eve, BTC)]
    assert opened.size == SMALL and opened.funding_snapshot == venue.state.markets[BTC].funding_index
    assert opened.order_epoch == position.order_epoch
    check(venue)


class _fake_output:
    """The only field escape_args reads before the proofs: the state root."""

    def __init__(self, root: bytes) -> None:
        self.state_root = root

    def as_arg(self) -> tuple:
        return (self.state_root,)


def test_a_flat_liquidated_position_keeps_its_epoch_leaf_through_later_rules():
    """Pre: alice liquidated whole (margin 0): her leaf is (0, 0, 0, snap, epoch).
    Op: AdjustMargin into it (refused, no_position), a new long and its close.
    Post: the epoch is kept through each write (her dead orders never revive),
    the flat position after the close keeps a leaf."""
    venue, facts = liquidated_alice()
    alice = facts["alice"]
    error = venue.apply(venue.adjust_record("alice", usd(1)))
    assert error is not None and error.code == "no_position"
    venue.place("carol", False, usd(54_300), SMALL, leverage=5)
    venue.place("alice", True, usd(54_300), SMALL, leverage=10)
    assert venue.size("alice") == SMALL
    venue.place("dave", True, usd(54_300), SMALL, leverage=5)
    venue.place("alice", False, usd(54_300), SMALL, leverage=10, tif=IMMEDIATE_OR_CANCEL)
    position = venue.state.positions[(alice, BTC)]
    assert position.size == 0 and position.order_epoch == facts["epoch"]
    assert not any(is_order_open(venue.state, alice, n) for n in (2, 3))
    check(venue)


def test_a_forced_close_on_a_stale_mark_keeps_the_orders_live():
    """Pre: alice long with a resting bid, the mark stale.  Op: her forced
    close.  Post: served as a no-op: no epoch, the bid open and in the book."""
    venue = Venue({"alice": usd(1_000), "mm": usd(10_000_000)}, fund=usd(10_000))
    venue.set_price(usd(60_000))
    venue.place("mm", False, usd(60_000), TENTH, leverage=2)
    venue.place("alice", True, usd(60_000), TENTH, leverage=10)
    bid = venue.order("alice", True, usd(50_000), SMALL, leverage=10)
    venue.submit(bid)
    alice = venue.address("alice")
    venue.now += DEVNET_MARKETS[BTC].oracle_max_age_ms + 1
    forced_close(venue, alice, BTC)
    assert venue.state.positions[(alice, BTC)].order_epoch == 0 and venue.size("alice") == TENTH
    assert is_order_open(venue.state, alice, bid.nonce) and (alice, bid.nonce) in venue.exchange.orders
    check(venue)


def test_an_auctions_end_kills_the_orders_placed_during_the_auction():
    """Pre: alice's position is auctioned (book+auction, no bids near), her
    orders cancelled by the Liquidate's epoch; during the auction she places
    a new bid (live: seq above that epoch).  Op: the auction ends with the
    position still liquidatable.  Post: the AuctionEnd's epoch kills the new
    bid too, the engine drops it with its reserve, the rest goes down the
    ladder, and the books equal a rebuild."""
    from sequencer.core.markets import LIQUIDATION_BOOK_AUCTION
    from sequencer.core.records import AuctionEnd
    venue = Venue({"alice": usd(1_000), "mm": usd(10_000_000)}, fund=usd(10_000),
                  markets=markets_with(LIQUIDATION_BOOK_AUCTION))
    venue.set_price(usd(60_000))
    venue.place("mm", False, usd(60_000), TENTH, leverage=2)
    venue.place("alice", True, usd(60_000), TENTH, leverage=10)
    venue.place("alice", True, usd(45_000), SMALL, leverage=10)                    # nonce 2
    alice = venue.address("alice")
    venue.set_price(usd(54_300))
    auction = venue.state.auctions[(alice, BTC)]
    first = venue.state.positions[(alice, BTC)].order_epoch
    assert first and not is_order_open(venue.state, alice, 2)
    during = venue.order("alice", True, usd(40_000), SMALL, leverage=10)
    venue.submit(during)
    assert is_order_open(venue.state, alice, during.nonce) and alice in venue.exchange.reserved
    venue.now = auction.end_ms
    venue.set_price(usd(54_300), advance_ms=0)
    out = venue.exchange.due_auction_ends(venue.state, venue.now, venue.ctx)
    venue.log.extend((venue.now, r) for r in out)
    assert AuctionEnd(alice, BTC) in out
    assert venue.state.positions[(alice, BTC)].order_epoch > first
    assert not is_order_open(venue.state, alice, during.nonce) and not venue.state.orders[(alice, during.nonce)].cancelled
    assert not any(key[0] == alice for key in venue.exchange.orders) and alice not in venue.exchange.reserved
    check(venue)


def test_dust_bids_cannot_push_a_liquidation_to_the_ladder_past_real_liquidity():
    """Pre: alice 10x long 1 BTC at 60,000 (mm the short); bob bids 1 BTC at
    54,200 (within her bankruptcy price 54,000); eve rests 4 x 63 one-step
    bids at 54,300 ahead of it.  Op: the mark falls to 54,300.  Post wanted:
    bob's bid takes the rest before anyone is closed at the mark (mm's short
    untouched)."""
    from sequencer.core.matching import MAX_LIQUIDATION_STEPS
    from sequencer.core.rules.liquidation import MAX_LIQUIDATION_MAKERS_V2
    step = DEVNET_MARKETS[BTC].step_size
    venue = Venue({"alice": usd(10_000), "mm": usd(10_000_000), "bob": usd(100_000), "eve": usd(100_000)},
                  fund=usd(100_000), markets=markets_with(LIQUIDATION_BOOK_FIRST))
    venue.set_price(usd(60_000))
    venue.place("mm", False, usd(60_000), ONE_BTC, leverage=2)
    venue.place("alice", True, usd(60_000), ONE_BTC, leverage=10)
    venue.place("bob", True, usd(54_200), ONE_BTC, leverage=5)
    dust = MAX_LIQUIDATION_MAKERS_V2 * (MAX_LIQUIDATION_STEPS - 1)
    for _ in range(dust):
        venue.place("eve", True, usd(54_300), step, leverage=10)
    out = [r for r in venue.set_price(usd(54_300)) if isinstance(r, Liquidate)]
    check(venue)
    assert len(out) < MAX_LIQUIDATION_STEPS or out[-1].makers, "the last step went down the ladder"
    assert venue.size("mm") == -ONE_BTC, "mm's short was closed at the mark with bob's bid left in the book"
