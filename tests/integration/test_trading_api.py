"""Trading through the API and the SDK on the real broker: two bots trade
BTC-USD at 10x, both get their fills over the WebSocket, positions show the
API.md fields, an oracle move liquidates a position in the same block as the
price (and not one unit of price earlier), the owner's free collateral and
other position do not move; order errors are clear 4xx answers."""
from __future__ import annotations

import time
import uuid

import httpx
import pytest

from nodes import dev_clients, make_config, replay_fresh, wait_until
from sequencer.core.markets import DEVNET_ORACLE_KEYS, USDC
from sequencer.core.signing import address_of
from sequencer.node.service import Service
from sequencer.oracle import Feeder, sign_oracle_price
from sequencer.sdk import ApiError

pytestmark = pytest.mark.kafka

BTC, ETH = 1, 2
BTC_LOT = 10**8   # lots per BTC
ETH_LOT = 10**9


def usd(x) -> int:
    return int(x * USDC)


def long_liquidation_price(cost: int, margin: int, size: int, scale: int, mmf_ppm: int) -> int:
    """docs/engine.md: a long is liquidatable exactly when mark < T (no funding owed)."""
    numerator = 10**6 * scale * (cost - margin)
    denominator = size * (10**6 - mmf_ppm)
    return -(-numerator // denominator)


def own_id() -> str:
    """A sequencer id of this test's own: other runs on the shared broker must not fence it."""
    return "trading-" + uuid.uuid4().hex[:8]


async def expect_error(call, status: int, code: str, words: str) -> ApiError:
    with pytest.raises(ApiError) as raised:
        await call
    error = raised.value
    assert (error.status, error.code) == (status, code), error
    assert words in error.message, error.message
    return error


async def test_two_bots_trade_fills_positions_and_liquidation(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id=own_id())
    async with Service(config) as service:
        a, b, c, _ = dev_clients(service.url)
        async with a, b, c:
            feeder = Feeder(c, source=None)
            for market, price in ((BTC, usd(60_000)), (ETH, usd(3_000))):
                update = await feeder.post(market, price)
                assert update.receipt is not None and update.receipt["status"] == "ok", update.error

            markets = {m["id"]: m for m in await a.markets()}
            btc = markets[BTC]
            assert (btc["symbol"], btc["tickSize"], btc["stepSize"], btc["baseDecimals"]) == ("BTC-USD", USDC, 10_000, 8)
            assert btc["oraclePrice"] == usd(60_000) and btc["maxLeverage"] == 50
            assert btc["initialMarginPpm"] == 20_000 and btc["maintenanceMarginPpm"] == 12_000
            assert {"makerFeePpm", "takerFeePpm", "fundingIntervalMs", "fundingCapPpm", "units"} <= set(btc)

            async with a.stream(("fill",)) as a_fills, b.stream(("fill",)) as b_fills:
                await wait_until(lambda: _true(len(service.api.streams) >= 2), timeout=5)
                # Bot B rests a sell, bot A takes it: 0.1 BTC at 60,000, 10x each.
                size = BTC_LOT // 10
                maker = await b.place_order(BTC, False, usd(60_000), size, leverage=10)
                assert maker["status"] == "ok" and maker["order"]["status"] == "resting"
                book = await a.book(BTC)
                assert book["asks"] == [[usd(60_000), size, 1]] and book["bids"] == []
                taker = await a.place_order(BTC, True, usd(60_000), size, leverage=10)
                assert taker["order"] == {"market": BTC, "nonce": taker["order"]["nonce"], "status": "filled",
                                          "size": size, "filled": size}
                assert [(f["price"], f["size"], f["takerSide"]) for f in taker["fills"]] == [(usd(60_000), size, "buy")]
                for stream, role in ((a_fills, "taker"), (b_fills, "maker")):
                    event = await stream.next(timeout=10)
                    assert event["type"] == "fill" and event["market"] == BTC
                    assert (event["price"], event["size"]) == (usd(60_000), size)
                    assert event[role] == "0x" + (a if role == "taker" else b).address.hex()
                    assert event["block"] == taker["block"]
                # A second market for A, to show isolation later: 1 ETH at 3,000, 5x.
                await b.place_order(ETH, False, usd(3_000), ETH_LOT, leverage=5)
                await a.place_order(ETH, True, usd(3_000), ETH_LOT, leverage=5)
                assert (await a_fills.next(timeout=10))["market"] == ETH
                assert (await b_fills.next(timeout=10))["market"] == ETH

            assert (await a.book(BTC))["asks"] == []
            account_a = await a.account()
            positions = {p["market"]: p for p in account_a["positions"]}
            cost, margin = usd(6_000), usd(600)
            liq = long_liquidation_price(cost, margin, size, BTC_LOT, 12_000)
            assert liq == 54_655_870_446  # docs/engine.md: 54,655.870446 for 10x at 60,000
            assert {k: positions[BTC][k] for k in ("market", "size", "margin", "entryPrice", "unrealizedPnl",
                                                   "fundingOwed", "liquidationPrice")} == {
                "market": BTC, "size": size, "margin": margin, "entryPrice": usd(60_000), "unrealizedPnl": 0,
                "fundingOwed": 0, "liquidationPrice": liq}
            short = {p["market"]: p for p in (await b.account())["positions"]}[BTC]
            assert (short["size"], short["margin"], short["entryPrice"]) == (-size, margin, usd(60_000))
            assert short["liquidationPrice"] > usd(60_000)
            assert positions[ETH]["size"] == ETH_LOT and positions[ETH]["margin"] == usd(600)
            fills = await a.fills()
            assert [(f["market"], f["takerSide"]) for f in fills] == [(ETH, "buy"), (BTC, "buy")]
            assert fills == (await b.fills())

            # One unit of price above the liquidation price: nothing happens.
            above = await feeder.post(BTC, usd(54_656))
            assert above.receipt["liquidations"] == []
            assert {p["market"]: p for p in (await a.positions())}[BTC]["size"] == size
            free_before = (await a.account())["collateral"]
            eth_before = service.node.chain.state.positions[(a.address, ETH)]

            # Below it: liquidated in the same block as the price update.
            crossed = await feeder.post(BTC, usd(54_655))
            assert crossed.receipt["liquidations"] == [{"account": "0x" + a.address.hex(), "market": BTC}]
            block = await a.block(crossed.receipt["block"])
            kinds = [r["type"] for r in block["records"]]
            i = crossed.receipt["index"]
            # rules v3: the ladder's step is a Deleverage naming the opposite position (B's short)
            assert kinds[i:i + 2] == ["OraclePrice", "Deleverage"]
            assert block["records"][i + 1]["account"] == "0x" + a.address.hex()
            assert block["records"][i + 1]["counterparties"] == ["0x" + b.address.hex()]
            assert all(r["status"] == "ok" for r in block["receipts"])
            after = await a.account()
            assert after["collateral"] == free_before  # isolation: not one unit
            assert service.node.chain.state.positions[(a.address, ETH)] == eth_before
            btc_after = {p["market"]: p for p in after["positions"]}.get(BTC)
            assert btc_after is None or btc_after["size"] == 0
            live_root = service.node.chain.state_root
    fresh = await replay_fresh(config)
    assert fresh.state_root == live_root


async def test_order_errors_are_clear_4xx_and_cancel_all(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id=own_id())
    async with Service(config) as service:
        a, b, c, d = dev_clients(service.url)
        async with a, b, c, d:
            feeder = Feeder(c, source=None)
            assert (await feeder.post(BTC, usd(60_000))).receipt["status"] == "ok"
            step = 10_000
            await b.place_order(BTC, False, usd(61_000), 5 * step, leverage=10)
            await b.place_order(BTC, False, usd(61_500), 5 * step, leverage=10)
            await b.place_order(BTC, True, usd(59_000), 5 * step, leverage=10)
            head = (await a.status())["blockNumber"]

            await expect_error(a.place_order(BTC, True, usd(61_000), step, leverage=10, time_in_force="post-only"),
                               409, "post_only_would_cross", "post-only order at 61000000000 would cross")
            await expect_error(b.place_order(BTC, True, usd(61_000), step, leverage=10), 409, "self_trade",
                               "own order")
            await expect_error(a.place_order(BTC, False, usd(60_000), step, leverage=10, time_in_force="ioc",
                                             reduce_only=True), 422, "reduce_only", "would not reduce")
            await expect_error(d.place_order(BTC, True, usd(61_000), 1000 * BTC_LOT, leverage=1), 422,
                               "insufficient_collateral", "does not cover")
            await expect_error(a.place_order(BTC, True, usd(60_000), step, leverage=51), 400, "invalid_leverage",
                               "1..50")
            await expect_error(a.place_order(BTC, True, usd(60_000) + 1, step, leverage=10), 400, "invalid_price",
                               "tick")
            await expect_error(a.place_order(BTC, True, usd(60_000), step + 1, leverage=10), 400, "invalid_size",
                               "step")
            await expect_error(a.place_order(9, True, usd(60_000), step), 400, "unknown_market", "GET /v1/markets")
            await expect_error(a.cancel_order(12345), 422, "unknown_order", "12345")
            assert (await a.status())["blockNumber"] == head  # refused: nothing written

            # IOC: fills what crosses, the rest never rests.
            ioc = await a.place_order(BTC, True, usd(61_200), 10 * step, leverage=10, time_in_force="ioc")
            assert ioc["order"]["status"] == "expired" and ioc["order"]["filled"] == 5 * step
            assert [(f["price"], f["size"]) for f in ioc["fills"]] == [(usd(61_000), 5 * step)]
            assert await a.open_orders() == []
            none = await a.place_order(BTC, True, usd(60_000), step, leverage=10, time_in_force="ioc")
            assert none["order"]["status"] == "expired" and none["fills"] == []
            # The post-only order that does not cross rests.
            post = await a.place_order(BTC, True, usd(59_500), step, leverage=10, time_in_force="post-only")
            assert post["order"]["status"] == "resting"
            book = await a.book(BTC, depth=1)
            assert book["bids"] == [[usd(59_500), step, 1]] and book["asks"] == [[usd(61_500), 5 * step, 1]]

            # Cancel-all is the SDK's: one signed CancelOrder per open order.
            assert len(await b.open_orders()) == 2
            receipts = await b.cancel_all()
            assert [r["status"] for r in receipts] == ["ok", "ok"]
            assert await b.open_orders() == [] and await b.cancel_all() == []
            assert (await a.book(BTC))["asks"] == []
            filled_nonce = (await b.fills())[0]["makerNonce"]  # the sell the IOC took whole
            await expect_error(b.cancel_order(filled_nonce), 409, "order_not_open", "already filled")

            # Oracle prices: quorum, signers, monotonic time.
            head = (await a.status())["blockNumber"]
            separator = await c.domain_separator()
            now = int(time.time() * 1000)
            await expect_error(c.submit_oracle_price(sign_oracle_price(separator, BTC, usd(1), now,
                                                                       DEVNET_ORACLE_KEYS[:1])),
                               422, "no_quorum", "2 of 3")
            stranger = b"\x07" * 32
            await expect_error(c.submit_oracle_price(sign_oracle_price(separator, BTC, usd(1), now,
                                                                       (DEVNET_ORACLE_KEYS[0], stranger))),
                               400, "bad_signature", "0x" + address_of(stranger).hex())
            await expect_error(c.submit_oracle_price(sign_oracle_price(separator, BTC, usd(1), 1)), 409,
                               "oracle_time_not_monotonic", "not after")
            assert (await a.status())["blockNumber"] == head

            async with httpx.AsyncClient(base_url=service.url) as http:
                for path, status, code in (("/v1/markets/9/book", 404, "not_found"),
                                           ("/v1/markets/1/book?depth=0", 400, "invalid_field"),
                                           ("/v1/accounts/0x12/fills", 400, "invalid_field")):
                    response = await http.get(path)
                    assert (response.status_code, response.json()["error"]["code"]) == (status, code), path
                bad = await http.post("/v1/oracle", json={"market": 1, "price": 5, "timestamp": now,
                                                          "signatures": ["0x12"]})
                assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_signature")


async def _true(value):
    return value
