"""The sequencer-side books (sequencer.core.matching.Exchange) in pre/op/post form:
price-time priority, partial fills, IOC, post-only, self-trade prevention,
reduce-only, pre-trade risk, cancels, rebuild after a restart."""
from __future__ import annotations

import pytest

from perps_support import ADDR, BTC, ETH, ONE_BTC, Sim, usd
from sequencer.core.markets import DEVNET_MARKETS
from sequencer.core.matching import Exchange
from sequencer.core.rules.orders import IMMEDIATE_OR_CANCEL, POST_ONLY
from sequencer.core.records import PlaceOrder, Trade
from sequencer.core.transition import RuleError

RICH = usd(1_000_000)


def rich_sim(**extra) -> Sim:
    sim = Sim(alice=RICH, bob=RICH, carol=RICH, dave=RICH, **extra)
    sim.set_price(usd(60_000))
    return sim


def trades(records) -> list[tuple[bytes, int, int, int]]:
    return [(t.maker, t.maker_nonce, t.price, t.size) for t in records if isinstance(t, Trade)]


def assert_rebuild_equal(sim: Sim) -> None:
    rebuilt = Exchange(DEVNET_MARKETS)
    rebuilt.rebuild(sim.state)
    sim.exchange.prune_expired(sim.state.globals.timestamp_ms)
    assert rebuilt.dump() == sim.exchange.dump()
    assert rebuilt.reserved == sim.exchange.reserved
    assert rebuilt.book(BTC) == sim.exchange.book(BTC)


def test_price_time_priority_and_partial_fill():
    sim = rich_sim()
    sim.place("alice", False, usd(60_100), ONE_BTC)       # first at 60,100
    sim.place("bob", False, usd(60_100), ONE_BTC)         # second at 60,100
    sim.place("carol", False, usd(60_000), ONE_BTC)       # better price, placed last
    out = sim.place("dave", True, usd(60_200), 5 * ONE_BTC // 2)
    assert trades(out) == [(ADDR["carol"], 1, usd(60_000), ONE_BTC),
                           (ADDR["alice"], 1, usd(60_100), ONE_BTC),
                           (ADDR["bob"], 1, usd(60_100), ONE_BTC // 2)]
    assert sim.exchange.book(BTC) == {"market": BTC, "bids": [], "asks": [[usd(60_100), ONE_BTC // 2, 1]]}
    assert sim.size("dave") == 5 * ONE_BTC // 2
    assert sim.size("alice") + sim.size("bob") + sim.size("carol") == -5 * ONE_BTC // 2
    assert sim.state.orders[(ADDR["bob"], 1)].filled == ONE_BTC // 2
    assert_rebuild_equal(sim)


def test_taker_remainder_rests_good_till_cancel():
    sim = rich_sim()
    sim.place("alice", False, usd(60_000), ONE_BTC // 4)
    out = sim.place("bob", True, usd(60_000), ONE_BTC)
    assert trades(out) == [(ADDR["alice"], 1, usd(60_000), ONE_BTC // 4)]
    assert sim.exchange.book(BTC)["bids"] == [[usd(60_000), 3 * ONE_BTC // 4, 1]]
    assert_rebuild_equal(sim)


def test_immediate_or_cancel_never_rests():
    sim = rich_sim()
    sim.place("alice", False, usd(60_000), ONE_BTC // 4)
    out = sim.place("bob", True, usd(60_000), ONE_BTC, tif=IMMEDIATE_OR_CANCEL)
    assert trades(out) == [(ADDR["alice"], 1, usd(60_000), ONE_BTC // 4)]
    assert sim.exchange.book(BTC) == {"market": BTC, "bids": [], "asks": []}
    # ...and it can never become a maker: a Trade naming it as maker is refused.
    sim.place("carol", False, usd(60_000), ONE_BTC, tif=IMMEDIATE_OR_CANCEL)
    forged = Trade(BTC, ADDR["bob"], 1, ADDR["carol"], 1, usd(60_000), ONE_BTC // 4)
    assert sim.apply(forged).code == "not_resting"
    assert_rebuild_equal(sim)


def test_post_only_rejected_when_it_would_cross_and_rests_otherwise():
    sim = rich_sim()
    sim.place("alice", False, usd(60_000), ONE_BTC)
    before = sim.state.to_tables()
    with pytest.raises(RuleError) as exc:
        sim.place("bob", True, usd(60_000), ONE_BTC, tif=POST_ONLY)
    assert exc.value.code == "post_only_would_cross"
    assert sim.state.to_tables() == before
    out = sim.place("bob", True, usd(59_999), ONE_BTC, tif=POST_ONLY)
    assert trades(out) == []
    assert sim.exchange.book(BTC)["bids"] == [[usd(59_999), ONE_BTC, 1]]
    assert_rebuild_equal(sim)


def test_self_trade_prevention_rejects_the_new_order_whole():
    sim = rich_sim()
    sim.place("bob", False, usd(60_000), ONE_BTC // 2)
    sim.place("alice", False, usd(60_100), ONE_BTC)
    before = sim.state.to_tables()
    with pytest.raises(RuleError) as exc:
        sim.place("alice", True, usd(60_200), ONE_BTC)   # would take bob's, then hit its own
    assert exc.value.code == "self_trade"
    assert sim.state.to_tables() == before
    # Not reaching its own order is fine.
    out = sim.place("alice", True, usd(60_000), ONE_BTC // 2)
    assert trades(out) == [(ADDR["bob"], 1, usd(60_000), ONE_BTC // 2)]
    # The rules refuse a self-trade too.
    sim.place("alice", True, usd(60_000), ONE_BTC // 2)
    assert sim.apply(Trade(BTC, ADDR["alice"], 4, ADDR["alice"], 4, usd(60_000), 10_000)).code == "self_trade"


def test_reduce_only_reduces_and_fills_at_most_the_position():
    sim = rich_sim()
    with pytest.raises(RuleError) as exc:
        sim.place("alice", False, usd(60_000), ONE_BTC, reduce_only=True, tif=IMMEDIATE_OR_CANCEL)
    assert exc.value.code == "reduce_only"
    sim.place("bob", False, usd(60_000), ONE_BTC)
    sim.place("alice", True, usd(60_000), ONE_BTC)            # alice long 1
    sim.place("carol", True, usd(60_000), 3 * ONE_BTC)        # a deep bid
    out = sim.place("alice", False, usd(60_000), 2 * ONE_BTC, reduce_only=True, tif=IMMEDIATE_OR_CANCEL)
    assert trades(out) == [(ADDR["carol"], 1, usd(60_000), ONE_BTC)]
    assert sim.size("alice") == 0
    # The rules refuse a reduce-only fill that would open a position.
    sim.place("dave", False, usd(61_000), ONE_BTC)
    taker = sim.order("alice", True, usd(61_000), ONE_BTC, reduce_only=True, tif=IMMEDIATE_OR_CANCEL)
    assert sim.apply(taker) is None       # registered directly, bypassing the Exchange's check
    error = sim.apply(Trade(BTC, ADDR["dave"], 1, ADDR["alice"], taker.nonce, usd(61_000), ONE_BTC))
    assert (error.code, error.side) == ("reduce_only", "taker")


def test_reduce_only_orders_never_rest():
    """dYdX v4: reduce-only is immediate-or-cancel only, so no order rests
    without a reserve (issue 10)."""
    sim = rich_sim()
    sim.place("bob", False, usd(60_000), ONE_BTC)
    sim.place("alice", True, usd(60_000), ONE_BTC)                          # alice long 1
    for tif in (0, 2):                                                      # good-till-cancel, post-only
        with pytest.raises(RuleError) as exc:
            sim.place("alice", False, usd(60_100), ONE_BTC, reduce_only=True, tif=tif)
        assert exc.value.code == "reduce_only_not_ioc"
    assert sim.exchange.book(BTC)["asks"] == []
    assert_rebuild_equal(sim)


def test_pre_trade_risk_and_reserved_collateral():
    sim = Sim(alice=usd(10_000), bob=RICH)
    sim.set_price(usd(60_000))
    with pytest.raises(RuleError) as exc:          # 2 BTC at 10x needs 12,000 + fee
        sim.place("alice", True, usd(60_000), 2 * ONE_BTC)
    assert exc.value.code == "insufficient_collateral"
    resting = sim.place("alice", True, usd(59_000), ONE_BTC)[0]  # rests, reserves 5,900 + maker fee
    reserved = sim.exchange.reserved[ADDR["alice"]]
    assert reserved == usd(5_900) + usd(59_000) * 100 // 1_000_000
    with pytest.raises(RuleError) as exc:
        sim.place("alice", True, usd(59_000), ONE_BTC)
    assert exc.value.code == "insufficient_collateral"
    with pytest.raises(RuleError) as exc:
        sim.submit(sim.withdraw_record("alice", usd(5_000)))
    assert exc.value.code == "collateral_reserved"
    sim.submit(sim.withdraw_record("alice", usd(4_000)))
    sim.submit(sim.cancel_record("alice", resting.nonce))
    assert ADDR["alice"] not in sim.exchange.reserved
    assert sim.exchange.book(BTC)["bids"] == []
    sim.submit(sim.withdraw_record("alice", usd(5_000)))
    assert sim.free("alice") == usd(1_000)


def test_cancel_removes_from_book_and_rules_refuse_the_cancelled_order():
    sim = rich_sim()
    sim.place("alice", False, usd(60_000), ONE_BTC)
    sim.place("alice", False, usd(60_500), ONE_BTC)
    sim.submit(sim.cancel_record("alice", 1))
    assert sim.exchange.book(BTC)["asks"] == [[usd(60_500), ONE_BTC, 1]]
    sim.place("bob", True, usd(59_000), ONE_BTC)
    assert sim.apply(Trade(BTC, ADDR["alice"], 1, ADDR["bob"], 1, usd(60_000), ONE_BTC)).code == "order_cancelled"
    with pytest.raises(RuleError) as exc:
        sim.submit(sim.cancel_record("alice", 1))
    assert exc.value.code == "order_not_open"
    assert_rebuild_equal(sim)


def test_expired_maker_is_dropped_and_refused():
    sim = rich_sim()
    sim.place("alice", False, usd(60_000), ONE_BTC, expiry=sim.now + 1_000)
    sim.place("bob", False, usd(60_100), ONE_BTC)
    sim.now += 2_000
    out = sim.place("carol", True, usd(60_100), ONE_BTC)
    assert trades(out) == [(ADDR["bob"], 1, usd(60_100), ONE_BTC)]
    assert sim.exchange.book(BTC)["asks"] == []


def test_book_depth_aggregates_levels_best_first():
    sim = rich_sim()
    for name, price in (("alice", 59_900), ("bob", 59_900), ("carol", 59_800), ("dave", 59_700)):
        sim.place(name, True, usd(price), ONE_BTC // 10)
    sim.place("alice", False, usd(60_100), ONE_BTC // 5)
    sim.place("bob", False, usd(60_200), ONE_BTC // 5)
    book = sim.exchange.book(BTC, depth=2)
    assert book["bids"] == [[usd(59_900), ONE_BTC // 5, 2], [usd(59_800), ONE_BTC // 10, 1]]
    assert book["asks"] == [[usd(60_100), ONE_BTC // 5, 1], [usd(60_200), ONE_BTC // 5, 1]]


def test_markets_have_separate_books():
    sim = rich_sim()
    sim.set_price(3_000 * 10**6, market=ETH)
    sim.place("alice", False, 3_000 * 10**6, 10**9, market=ETH)
    out = sim.place("bob", True, usd(60_000), ONE_BTC)
    assert trades(out) == []
    out = sim.place("bob", True, 3_000 * 10**6, 10**9, market=ETH)
    assert trades(out) == [(ADDR["alice"], 1, 3_000 * 10**6, 10**9)]
    assert sim.size("bob", ETH) == 10**9
    with pytest.raises(RuleError) as exc:
        sim.submit(PlaceOrder(ADDR["bob"], 9, True, 1, 1, 1, 0, False, 99, sim.now + 1000, bytes(65)))
    assert exc.value.code == "unknown_market"


def test_rebuild_after_a_session_equals_the_live_book():
    sim = rich_sim()
    for i in range(30):
        name = ("alice", "bob", "carol", "dave")[i % 4]
        price = usd(59_900 + (i * 37) % 200)
        try:
            sim.place(name, i % 3 == 0, price, ONE_BTC // 10 * (1 + i % 3), tif=(0, 0, 1)[i % 3])
        except RuleError:
            pass
        if i % 7 == 6:
            try:
                sim.submit(sim.cancel_record(name, sim.nonces[name] - 1))
            except RuleError:
                pass
    assert_rebuild_equal(sim)
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_open_orders_and_fill_descriptions():
    from sequencer.core.markets import DEVNET_MARKETS as TABLE
    from sequencer.node.views import describe_fill
    sim = rich_sim()
    sim.place("alice", False, usd(60_000), ONE_BTC)
    sim.place("alice", True, usd(59_000), ONE_BTC // 2)
    assert [(o["nonce"], o["isBuy"], o["remaining"]) for o in sim.exchange.open_orders(ADDR["alice"])] == [
        (1, False, ONE_BTC), (2, True, ONE_BTC // 2)]
    out = sim.place("bob", True, usd(60_000), ONE_BTC // 4)
    fill = describe_fill(out[1], sim.state.orders[(ADDR["alice"], 1)], TABLE[BTC])
    assert (fill["takerSide"], fill["notional"], fill["makerFee"], fill["takerFee"]) == (
        "buy", usd(15_000), usd(15_000) // 10_000, usd(15_000) * 5 // 10_000)
    assert sim.exchange.open_orders(ADDR["alice"], BTC)[0]["remaining"] == 3 * ONE_BTC // 4


from hypothesis import given, settings, strategies as st  # noqa: E402

from perps_support import FAST_CTX  # noqa: E402

_ints = st.one_of(st.integers(-2, 60), st.sampled_from([usd(60_000), usd(59_990), ONE_BTC, 10_000]),
                  st.integers(-(2**63), 2**64 - 1))


@settings(max_examples=150, deadline=None)
@given(orders=st.lists(st.builds(PlaceOrder, st.sampled_from([ADDR["alice"], ADDR["bob"], b"\x02" * 20, b""]),
                                 st.sampled_from([BTC, ETH, 7]), st.booleans(), _ints, _ints, _ints,
                                 st.integers(-1, 3), st.booleans(), _ints, _ints, st.just(b"")), max_size=10))
def test_admit_refuses_any_bad_order_with_a_rule_error_and_no_change(orders):
    sim = rich_sim()
    sim.ctx = FAST_CTX
    sim.place("carol", False, usd(60_000), ONE_BTC)
    sim.place("dave", True, usd(59_990), ONE_BTC)
    for order in orders:
        before = sim.state.to_tables()
        try:
            sim.submit(order)
        except RuleError as exc:
            assert exc.code != "internal_error"
            assert sim.state.to_tables() == before
    assert_rebuild_equal(sim)
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_an_unexpected_failure_leaves_state_and_books_as_before(monkeypatch):
    sim = rich_sim()
    sim.place("alice", False, usd(60_000), ONE_BTC)
    before, book = sim.state.to_tables(), sim.exchange.dump()

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(sim.exchange, "on_maker_fill", broken)
    with pytest.raises(ZeroDivisionError):
        sim.place("bob", True, usd(60_000), ONE_BTC // 2)
    assert sim.state.to_tables() == before
    assert sim.exchange.dump() == book
