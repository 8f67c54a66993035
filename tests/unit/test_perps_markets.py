"""Market tables, oracle signer sets, the margin math helpers and the order params hash."""
from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from perps_support import ADDR, BTC, BTC_PARAMS, CTX, KEYS, ONE_BTC, Sim, sign_oracle, usd
from sequencer.core import eip712, signing
from sequencer.core.markets import (DEVNET_MARKETS, LARGE_CAP, MARKET_TABLES, ORACLE_SETS, PPM,
                                    PRODUCTION_MARKETS, check_market_params, compute_median_price,
                                    make_oracle_set)
from sequencer.core.rules.base import get_market_params, get_oracle_set
from sequencer.core.rules.margin import (compute_entry_price, compute_equity, compute_funding_owed,
                                         compute_initial_requirement, compute_maintenance, compute_unrealized_pnl)
from sequencer.core.rules.orders import compute_order_params_hash
from sequencer.core.presets import DEVNET, MAINNET
from sequencer.core.records import PlaceOrder
from sequencer.core.state import Market, Position


@pytest.mark.parametrize("table", list(MARKET_TABLES.values()))
def test_every_market_is_consistent(table):
    for market_id, params in table.items():
        assert params.id == market_id
        check_market_params(params)
        assert params.max_leverage == PPM // params.initial_margin_ppm
        assert params.liquidation_fee_ppm <= 15_000          # dYdX v4's maximum liquidation fee


def test_presets_name_their_tables_and_devnet_has_btc_and_eth():
    assert DEVNET.markets == "devnet" and MAINNET.markets == "production"
    assert (DEVNET_MARKETS[1].symbol, DEVNET_MARKETS[2].symbol) == ("BTC-USD", "ETH-USD")
    assert (PRODUCTION_MARKETS[1].initial_margin_ppm, PRODUCTION_MARKETS[1].maintenance_margin_ppm) == LARGE_CAP
    assert get_market_params(CTX, BTC) is DEVNET_MARKETS[BTC]
    assert get_market_params(msgspec.structs.replace(CTX, markets={7: DEVNET_MARKETS[1]}), BTC) is None


def test_bad_market_parameters_are_refused():
    with pytest.raises(ValueError, match="exact notionals"):
        check_market_params(msgspec.structs.replace(BTC_PARAMS, step_size=1))
    with pytest.raises(ValueError, match="liquidation fee"):
        check_market_params(msgspec.structs.replace(BTC_PARAMS, liquidation_fee_ppm=12_000))


def test_oracle_sets_and_median():
    devnet = ORACLE_SETS["devnet"]
    assert (len(devnet.signers), devnet.quorum) == (3, 2)
    with pytest.raises(ValueError, match="majority"):
        make_oracle_set(devnet.signers, 1)
    with pytest.raises(ValueError, match="distinct"):
        make_oracle_set((devnet.signers[0], devnet.signers[0]), 2)
    assert compute_median_price([5, 1, 3]) == 3 and compute_median_price([4, 1, 3, 2]) == 2


def test_configured_oracle_signers_replace_the_preset_set():
    ctx = msgspec.structs.replace(CTX, oracle_signers=(ADDR["alice"], ADDR["bob"], ADDR["carol"]), oracle_quorum=2)
    assert get_oracle_set(ctx).signers == (ADDR["alice"], ADDR["bob"], ADDR["carol"])
    sim = Sim(ctx=ctx)
    sim.now += 5
    assert sim.apply(sign_oracle(BTC, usd(60_000), sim.now)).code == "bad_signature"
    assert sim.apply(sign_oracle(BTC, usd(60_000), sim.now, keys=(KEYS["alice"], KEYS["carol"]))) is None


@settings(max_examples=50, deadline=None)
@given(is_buy=st.booleans(), price=st.integers(1, 2**63 - 1), size=st.integers(1, 2**63 - 1),
       leverage=st.integers(0, 2**32 - 1), tif=st.integers(0, 255), reduce_only=st.booleans(),
       nonce=st.integers(0, 2**64 - 1), expiry=st.integers(0, 2**64 - 1), market=st.integers(0, 2**32 - 1))
def test_order_params_hash_is_the_eip712_struct_hash(is_buy, price, size, leverage, tif, reduce_only, nonce,
                                                     expiry, market):
    r = PlaceOrder(ADDR["alice"], market, is_buy, price, size, leverage, tif, reduce_only, nonce, expiry, b"")
    assert compute_order_params_hash(r) == eip712.compute_struct_hash("PlaceOrder", r)


def test_margin_math_on_a_ten_x_long():
    # 1 BTC long at 60,000 with 6,000 margin, mark 57,000, funding index moved by 100 ppm x 60,000.
    position = Position(size=ONE_BTC, cost=usd(60_000), margin=usd(6_000))
    market = Market(BTC, funding_index=100 * usd(60_000))
    mark = usd(57_000)
    assert compute_unrealized_pnl(position, mark, BTC_PARAMS) == -usd(3_000)
    assert compute_funding_owed(position, market, BTC_PARAMS) == usd(6)
    assert compute_equity(position, mark, market, BTC_PARAMS) == usd(6_000 - 3_000 - 6)
    assert compute_maintenance(position, mark, BTC_PARAMS) == usd(57_000) * 12 // 1000
    assert compute_initial_requirement(position, mark, BTC_PARAMS) == usd(57_000) * 2 // 100
    assert compute_entry_price(position, BTC_PARAMS) == usd(60_000)
    short = Position(size=-33_330_000, cost=-usd(20_000))
    assert compute_entry_price(short, BTC_PARAMS) == usd(20_000) * ONE_BTC // 33_330_000
    assert compute_funding_owed(short, market, BTC_PARAMS) < 0


def test_signatures_from_eth_account_sign_orders_the_rules_accept():
    from eth_account import Account
    from eth_account.messages import encode_typed_data
    sim = Sim(alice=usd(1_000))
    order = sim.order("alice", True, usd(60_000), ONE_BTC)
    from perps_support import DOMAIN
    signed = Account.sign_message(encode_typed_data(full_message=eip712.to_typed_data(DOMAIN, "PlaceOrder", order)),
                                  KEYS["alice"])
    record = msgspec.structs.replace(order, signature=signed.signature)
    assert signing.get_recover("coincurve")(
        eip712.compute_digest(eip712.compute_domain_separator(DOMAIN), "PlaceOrder", record),
        record.signature) == ADDR["alice"]
    assert sim.apply(record) is None


def test_api_views_of_positions_and_markets():
    from sequencer.node.views import describe_market, describe_position
    position = Position(size=ONE_BTC, cost=usd(60_000), margin=usd(6_000))
    market = Market(BTC, oracle_price=usd(59_000), mark_price=usd(59_000))
    view = describe_position(position, market, BTC_PARAMS)
    assert (view["entryPrice"], view["unrealizedPnl"], view["fundingOwed"]) == (usd(60_000), -usd(1_000), 0)
    assert view["liquidationPrice"] == -(-54_000 * 10**6 * 10**6 // 988_000)
    m = describe_market(BTC_PARAMS, market)
    assert (m["symbol"], m["oraclePrice"], m["maxLeverage"], m["initialMarginPpm"]) == ("BTC-USD", usd(59_000), 50,
                                                                                       20_000)
