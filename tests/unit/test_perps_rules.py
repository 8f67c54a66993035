"""The perps rules in pre/op/post form: PlaceOrder, CancelOrder, Trade (forged
trades get a failed receipt and change nothing), AdjustMargin, OraclePrice."""
from __future__ import annotations

import msgspec
import pytest

from perps_support import (ADDR, BTC, BTC_PARAMS, CTX, KEYS, ONE_BTC, Sim, sign, sign_oracle, usd)
from sequencer.core import signing
from sequencer.core.encoding import GENESIS_PARENT_HASH, encode_block, make_block
from sequencer.core.invariants import compute_conservation, compute_negative_balances
from sequencer.core.markets import DEVNET_MARKETS, DEVNET_ORACLE_KEYS
from sequencer.core.records import PlaceOrder, Trade
from sequencer.core.transition import apply_block_bytes

replace = msgspec.structs.replace
PRICE = usd(60_000)
HALF = ONE_BTC // 2


def resting_pair(**kw) -> tuple[Sim, PlaceOrder, PlaceOrder]:
    """alice's ask rests; bob's bid is registered last (the taker), not matched."""
    sim = Sim(alice=usd(100_000), bob=usd(100_000), carol=usd(100_000))
    sim.set_price(PRICE)
    maker = sim.order("alice", False, PRICE, ONE_BTC)
    assert sim.apply(maker) is None
    taker = sim.order("bob", True, PRICE + usd(100), ONE_BTC, **kw)
    assert sim.apply(taker) is None
    return sim, maker, taker


def trade(maker: PlaceOrder, taker: PlaceOrder, price: int = PRICE, size: int = HALF) -> Trade:
    return Trade(BTC, maker.account, maker.nonce, taker.account, taker.nonce, price, size)


def assert_refused(sim: Sim, record, code: str) -> None:
    before = sim.state.to_tables()
    error = sim.apply(record)
    assert error is not None and error.code == code, error
    assert sim.state.to_tables() == before


# --- trades -----------------------------------------------------------------------------

def test_valid_trade_settles_both_sides_and_fees():
    sim, maker, taker = resting_pair()
    assert sim.apply(trade(maker, taker)) is None
    notional = usd(30_000)
    assert sim.position("alice") == replace(sim.position("alice"), size=-HALF, cost=-notional, margin=notional // 10)
    assert sim.position("bob").size == HALF and sim.position("bob").margin == notional // 10
    assert sim.free("alice") == usd(100_000) - usd(3_000) - notional * 100 // 10**6
    assert sim.free("bob") == usd(100_000) - usd(3_000) - notional * 500 // 10**6
    fees = notional * 600 // 10**6                                      # a fifth to the insurance fund
    assert (sim.state.globals.fee_pool, sim.state.globals.insurance_fund) == (fees - fees // 5, fees // 5)
    assert sim.state.orders[(ADDR["alice"], maker.nonce)].filled == HALF
    assert sim.state.markets[BTC].open_interest == HALF
    assert compute_conservation(sim.state, DEVNET_MARKETS).discrepancy == 0


@pytest.mark.parametrize("name, make, code", [
    ("price above the buyer's limit", lambda m, t: trade(m, t, price=PRICE + usd(101)), "price_outside_limit"),
    ("price below the seller's limit", lambda m, t: trade(m, t, price=PRICE - usd(1)), "price_outside_limit"),
    ("overfill", lambda m, t: trade(m, t, size=ONE_BTC + 10_000), "overfill"),
    ("unregistered order", lambda m, t: replace(trade(m, t), maker_nonce=999), "unknown_order"),
    ("maker and taker swapped", lambda m, t: Trade(BTC, t.account, t.nonce, m.account, m.nonce, PRICE, HALF),
     "not_taker"),
    ("size off the step", lambda m, t: trade(m, t, size=HALF + 1), "invalid_size"),
    ("price off the tick", lambda m, t: trade(m, t, price=PRICE + 1), "invalid_price"),
    ("zero size", lambda m, t: trade(m, t, size=0), "invalid_size"),
    ("wrong market", lambda m, t: replace(trade(m, t), market=2), "wrong_market"),
])
def test_forged_trade_changes_nothing(name, make, code):
    sim, maker, taker = resting_pair()
    assert_refused(sim, make(maker, taker), code)


def test_trade_against_cancelled_or_expired_order_or_stale_price_changes_nothing():
    sim, maker, taker = resting_pair()
    assert sim.apply(sim.cancel_record("alice", maker.nonce)) is None
    assert_refused(sim, trade(maker, taker), "order_cancelled")

    sim, maker, taker = resting_pair(expiry=None)
    sim.now = taker.expiry + 1
    assert_refused(sim, trade(maker, taker), "order_expired")

    sim, maker, taker = resting_pair()
    sim.now += BTC_PARAMS.oracle_max_age_ms + 1
    assert_refused(sim, trade(maker, taker), "stale_oracle_price")


def test_taker_must_be_the_last_placed_order():
    sim, maker, taker = resting_pair()
    assert sim.apply(sim.order("carol", True, usd(50_000), ONE_BTC)) is None
    assert_refused(sim, trade(maker, taker), "not_taker")


def test_wrong_signature_on_the_order_means_no_order_and_no_trade():
    sim = Sim(alice=usd(100_000), bob=usd(100_000))
    sim.set_price(PRICE)
    maker = sim.order("alice", False, PRICE, ONE_BTC)
    assert sim.apply(maker) is None
    forged = sign(PlaceOrder(ADDR["bob"], BTC, True, PRICE, ONE_BTC, 10, 0, False, 7, sim.now + 1000, b""),
                  KEYS["carol"])
    assert_refused(sim, forged, "bad_signature")
    assert_refused(sim, Trade(BTC, maker.account, maker.nonce, ADDR["bob"], 7, PRICE, HALF), "unknown_order")


def test_forged_trade_in_a_block_gets_a_failed_receipt():
    sim, maker, taker = resting_pair()
    before = sim.state.to_tables()
    block = make_block(1, GENESIS_PARENT_HASH, sim.now, [trade(maker, taker, price=PRICE + usd(500))])
    result = apply_block_bytes(sim.state, encode_block(block), CTX)
    assert result.applied and not result.receipts[0].ok
    assert "price_outside_limit" in result.receipts[0].error
    after = sim.state.to_tables()
    assert {k: v for k, v in after.items() if k != "globals"} == {k: v for k, v in before.items() if k != "globals"}


def test_trade_refused_when_the_taker_cannot_pay_margin():
    sim = Sim(alice=usd(100_000), bob=usd(1_000))
    sim.set_price(PRICE)
    maker = sim.order("alice", False, PRICE, ONE_BTC)
    taker = sim.order("bob", True, PRICE, ONE_BTC)
    assert sim.apply(maker) is None and sim.apply(taker) is None
    before = sim.state.to_tables()
    error = sim.apply(trade(maker, taker))
    assert (error.code, error.side) == ("insufficient_collateral", "taker")
    assert sim.state.to_tables() == before


def test_post_only_order_cannot_take():
    sim, maker, _ = resting_pair()
    taker = sim.order("carol", True, PRICE, ONE_BTC, tif=2)
    assert sim.apply(taker) is None
    assert_refused(sim, trade(maker, taker), "post_only")


# --- orders ----------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, code", [
    ("price", PRICE + 1, "invalid_price"), ("size", 1, "invalid_size"), ("leverage", 0, "invalid_leverage"),
    ("leverage", 51, "invalid_leverage"), ("time_in_force", 3, "invalid_time_in_force"), ("market", 42,
                                                                                         "unknown_market"),
])
def test_place_order_refuses_bad_terms(field, value, code):
    sim = Sim(alice=usd(1_000))
    record = sign(replace(sim.order("alice", True, PRICE, ONE_BTC), **{field: value}), KEYS["alice"])
    assert_refused(sim, record, code)


def test_place_order_registers_params_and_sequence():
    sim = Sim(alice=usd(1_000))
    first = sim.order("alice", True, PRICE, ONE_BTC, leverage=5)
    second = sim.order("alice", False, PRICE + usd(1), HALF, tif=1, reduce_only=True)
    assert sim.apply(first) is None and sim.apply(second) is None
    order = sim.state.orders[(ADDR["alice"], second.nonce)]
    assert (order.market, order.is_buy, order.price, order.size, order.time_in_force, order.reduce_only,
            order.seq) == (BTC, False, PRICE + usd(1), HALF, 1, True, 2)
    assert sim.state.globals.order_count == 2
    assert_refused(sim, first, "nonce_used")


# --- margin ------------------------------------------------------------------------------

def test_adjust_margin_moves_collateral_and_keeps_initial_margin():
    sim, maker, taker = resting_pair()
    assert sim.apply(trade(maker, taker)) is None   # bob long 0.5 BTC, margin 3,000
    free = sim.free("bob")
    assert sim.apply(sim.adjust_record("bob", usd(1_000))) is None
    assert (sim.free("bob"), sim.position("bob").margin) == (free - usd(1_000), usd(4_000))
    # Initial requirement at the mark: 0.5 * 60,000 * 2% = 600.
    assert_refused(sim, sim.adjust_record("bob", -usd(3_401)), "insufficient_margin")
    assert sim.apply(sim.adjust_record("bob", -usd(3_400))) is None
    assert sim.position("bob").margin == usd(600)
    assert_refused(sim, sim.adjust_record("bob", usd(10**6)), "insufficient_collateral")
    assert_refused(sim, sim.adjust_record("carol", usd(1)), "no_position")
    assert compute_conservation(sim.state, DEVNET_MARKETS).discrepancy == 0
    assert compute_negative_balances(sim.state) == []


# --- oracle ------------------------------------------------------------------------------

def test_oracle_price_needs_a_quorum_of_distinct_signers_and_monotonic_time():
    sim = Sim()
    sim.now += 10
    one = sign_oracle(BTC, PRICE, sim.now, keys=DEVNET_ORACLE_KEYS[:1])
    assert_refused(sim, one, "no_quorum")
    twice = sign_oracle(BTC, PRICE, sim.now, keys=(DEVNET_ORACLE_KEYS[0], DEVNET_ORACLE_KEYS[0]))
    assert_refused(sim, twice, "bad_signature")
    outsider = sign_oracle(BTC, PRICE, sim.now, keys=(DEVNET_ORACLE_KEYS[0], KEYS["alice"]))
    assert_refused(sim, outsider, "bad_signature")
    tampered = replace(sign_oracle(BTC, PRICE, sim.now), price=PRICE * 2)
    assert_refused(sim, tampered, "bad_signature")
    future = sign_oracle(BTC, PRICE, sim.now + 1)
    assert_refused(sim, future, "oracle_time_in_future")
    assert sim.apply(sign_oracle(BTC, PRICE, sim.now, keys=DEVNET_ORACLE_KEYS)) is None
    assert (sim.state.markets[BTC].oracle_price, sim.state.markets[BTC].oracle_time_ms) == (PRICE, sim.now)
    assert_refused(sim, sign_oracle(BTC, PRICE + 1, sim.now), "oracle_time_not_monotonic")
    assert_refused(sim, sign_oracle(42, PRICE, sim.now), "unknown_market")


def test_signature_backends_agree_on_oracle_signers():
    record = sign_oracle(BTC, PRICE, 1)
    from sequencer.core import eip712
    from perps_support import SEPARATOR
    digest = eip712.compute_digest(SEPARATOR, "OraclePrice", record)
    assert (signing.get_recover("py-ecc")(digest, record.signatures[0])
            == signing.get_recover("coincurve")(digest, record.signatures[0]))


# --- fuzz: sequencer decisions and signed records near a live state -------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from perps_support import FAST_CTX  # noqa: E402
from sequencer.core.invariants import compute_balance_violations  # noqa: E402
from sequencer.core.records import AdjustMargin, CancelOrder, FundingTick, Liquidate, OraclePrice  # noqa: E402
from sequencer.core.rules.positions import INSURANCE_ADDRESS  # noqa: E402

_addresses = st.sampled_from([ADDR["alice"], ADDR["bob"], ADDR["carol"], INSURANCE_ADDRESS, b"\x01" * 20, b""])
_ints = st.one_of(st.integers(-3, 8), st.sampled_from([HALF, ONE_BTC, PRICE, PRICE - usd(5_000), 10_000, 100]),
                  st.integers(-(2**63), 2**64 - 1))
_records = st.one_of(
    st.builds(Trade, st.sampled_from([BTC, 2, 9]), _addresses, _ints, _addresses, _ints, _ints, _ints),
    st.builds(Liquidate, _addresses, st.sampled_from([BTC, 2, 9])),
    st.builds(FundingTick, st.sampled_from([BTC, 2]), _ints, _ints),
    st.builds(OraclePrice, st.sampled_from([BTC, 2]), _ints, _ints, st.just(())),
    st.builds(AdjustMargin, _addresses, st.sampled_from([BTC, 2]), _ints, _ints, _ints, st.just(b"")),
    st.builds(CancelOrder, _addresses, _ints, _ints, _ints, st.just(b"")),
    st.builds(PlaceOrder, _addresses, st.sampled_from([BTC, 2]), st.booleans(), _ints, _ints, _ints, _ints,
              st.booleans(), _ints, _ints, st.just(b"")),
)


@settings(max_examples=150, deadline=None)
@given(records=st.lists(_records, max_size=8), advance=st.integers(0, 120_000))
def test_arbitrary_perps_records_never_hit_internal_error_and_conserve(records, advance):
    sim, maker, taker = resting_pair()
    assert sim.apply(trade(maker, taker)) is None
    sim.ctx = FAST_CTX
    sim.now += advance
    for record in records:
        before = sim.state.to_tables()
        error = sim.apply(record)
        assert error is None or error.code != "internal_error", error
        if error is not None:
            assert sim.state.to_tables() == before
        assert compute_conservation(sim.state, DEVNET_MARKETS).discrepancy == 0
        assert compute_balance_violations(sim.state) == []
        assert compute_negative_balances(sim.state) == []
