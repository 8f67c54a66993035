"""The API for apps on the real broker: candles, trades, oracle prices and
insurance history from the log; paginated fills; a dry run that reports the
digest, the signer and the first refusing rule and writes nothing (the same
signed tx is then accepted for real); /openapi.json, whose types decode the
node's real answers; the /v1/events stream: snapshot, replay from a block,
account filter, live events, gap for what it cannot replay."""
from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import msgspec
import pytest
import websockets

from nodes import dev_clients, make_config, wait_until
from sequencer.core import eip712, wire
from sequencer.core.markets import USDC
from sequencer.node import api_apps, openapi as oa
from sequencer.node.service import Service
from sequencer.oracle import Feeder
from sequencer.sdk import Client

pytestmark = pytest.mark.kafka

BTC = 1
LOT = 10**8


def usd(x) -> int:
    return int(x * USDC)


def own_id() -> str:
    return "apps-" + uuid.uuid4().hex[:8]


async def get(h: httpx.AsyncClient, path: str, kind=None, status: int = 200):
    r = await h.get(path)
    assert r.status_code == status, (path, r.status_code, r.text)
    if kind is not None:
        msgspec.json.decode(r.content, type=kind)  # the OpenAPI type describes the real answer
    return r.json()


async def trade_twice(a: Client, b: Client, c: Client) -> None:
    feeder = Feeder(c, source=None)
    for price in (60_000, 60_050, 59_990):
        assert (await feeder.post(BTC, usd(price))).receipt["status"] == "ok"
    for price in (60_000, 60_100):
        await b.place_order(BTC, False, usd(price), LOT // 100, leverage=10)
        taker = await a.place_order(BTC, True, usd(price), LOT // 100, leverage=10)
        assert taker["order"]["status"] == "filled"


async def test_history_pages_openapi_and_dry_run(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id=own_id())
    async with Service(config) as service:
        a, b, c, d = dev_clients(service.url)
        async with a, b, c, d, httpx.AsyncClient(base_url=service.url) as h:
            await trade_twice(a, b, c)
            me = wire.hex0x(a.address)
            fills = await get(h, f"/v1/accounts/{me}/fills", list[oa.Fill])
            assert [f["price"] for f in fills] == [usd(60_100), usd(60_000)]

            # Candles: the OHLC of the fills, per interval bucket, from the log's Trade records.
            for interval, width in (("1m", 60_000), ("5m", 300_000), ("1h", 3_600_000)):
                body = await get(h, f"/v1/markets/{BTC}/candles?interval={interval}", oa.Candles)
                expected: dict[int, list[int]] = {}
                for f in reversed(fills):
                    start = f["timestampMs"] // width * width
                    c0 = expected.setdefault(start, [start, f["price"], f["price"], f["price"], f["price"], 0])
                    c0[2], c0[3], c0[4], c0[5] = max(c0[2], f["price"]), min(c0[3], f["price"]), f["price"], \
                        c0[5] + f["size"]
                assert body["candles"] == list(expected.values()), interval
            await get(h, f"/v1/markets/{BTC}/candles?interval=2m", status=400)
            await get(h, "/v1/markets/99/candles", status=404)

            trades = await get(h, f"/v1/markets/{BTC}/trades", list[oa.MarketTrade])
            assert [(t["price"], t["size"], t["takerSide"]) for t in trades] == \
                [(f["price"], f["size"], "buy") for f in fills]
            prices = await get(h, f"/v1/markets/{BTC}/prices", oa.Prices)
            assert [p for _, p in prices["prices"]] == [usd(60_000), usd(60_050), usd(59_990)]
            funding = await get(h, f"/v1/markets/{BTC}/funding", oa.Funding)
            assert funding["nextFundingMs"] % funding["intervalMs"] == 0
            assert funding["nextFundingMs"] > (await a.status())["timestampMs"]
            insurance = await get(h, "/v1/insurance", oa.Insurance)
            assert insurance["balance"] == service.node.chain.state.globals.insurance_fund

            # Pages of one fill: each page's cursor leads to the next, and they add up to the list.
            first = await get(h, f"/v1/accounts/{me}/history/fills?limit=1", oa.FillPage)
            second = await get(h, f"/v1/accounts/{me}/history/fills?limit=1&before={first['next']}", oa.FillPage)
            assert first["items"] + second["items"] == fills
            assert second["next"] is None  # the last page, full or not, has no cursor
            await get(h, f"/v1/accounts/{me}/history/fills?before=x:y", status=400)
            assert (await get(h, f"/v1/accounts/{me}/history/funding", oa.FundingPage))["items"] == []

            # The other answers the document describes.
            await get(h, "/v1/status", oa.Status)
            await get(h, "/v1/markets", list[oa.Market])
            await get(h, f"/v1/markets/{BTC}/book", oa.Book)
            await get(h, f"/v1/accounts/{me}", oa.Account)
            await get(h, f"/v1/accounts/{me}/orders", list[oa.OpenOrder])
            await get(h, "/v1/blocks/2", oa.Block)
            await get(h, "/v1/dev/accounts", list[oa.DevAccount])
            doc = await get(h, "/openapi.json")
            assert doc["openapi"] == "3.1.0" and "DryRun" in doc["components"]["schemas"]
            served = {getattr(r, "path", "").replace(":int", "") for r in service.api.app.routes}
            for _, path, *_ in oa.ENDPOINTS:
                normal = path.replace("{id}", "{market}")
                if not path.startswith(("/v1/proofs", "/v1/l1")):  # the L1 routes come with an L1 node
                    assert normal in served, path
                    assert path in doc["paths"]

            # Dry run: a crossing order would trade; nothing is written, and the same
            # signed tx is then accepted for real.
            await b.place_order(BTC, False, usd(60_000), LOT // 100, leverage=10)
            order = await d.signed_order(BTC, True, usd(60_000), LOT // 100, leverage=10)
            separator = await d.domain_separator()
            head, book = (await a.status())["blockNumber"], await a.book(BTC)
            before = await d.account()
            r = await h.post("/v1/tx/dry-run", json=Client.to_request(order))
            assert r.status_code == 200, r.text
            dry = msgspec.json.decode(r.content, type=oa.DryRun)
            assert dry.ok and dry.error is None and not dry.written and dry.signature_valid
            assert dry.digest == wire.hex0x(eip712.compute_digest(separator, "PlaceOrder", order))
            assert dry.signer == dry.account == wire.hex0x(d.address)
            assert [rec["type"] for rec in dry.records] == ["PlaceOrder", "Trade"]
            assert (await a.status())["blockNumber"] == head and await a.book(BTC) == book
            assert await d.account() == before
            real = await d.submit(order)
            assert real["status"] == "ok" and real["order"]["status"] == "filled" and real["hash"] == dry.hash

            # ... refused by a rule: the first one, with its code, and still nothing written.
            huge = await d.signed_order(BTC, True, usd(60_000), LOT * 1000, leverage=1)
            dry = (await h.post("/v1/tx/dry-run", json=Client.to_request(huge))).json()
            assert (dry["ok"], dry["error"]["code"]) == (False, "insufficient_collateral")
            # ... the same tx again: its nonce is used now.
            dry = (await h.post("/v1/tx/dry-run", json=Client.to_request(order))).json()
            assert dry["error"]["code"] == "nonce_used"
            # ... signed by another key: the signer it recovers, and bad_signature.
            forged = c.sign(msgspec.structs.replace(await c.signed_order(BTC, True, usd(1), LOT // 100),
                                                    account=d.address), separator)  # d's order, c's key
            dry = (await h.post("/v1/tx/dry-run", json=Client.to_request(forged))).json()
            assert dry["signer"] != dry["account"] and dry["signer"] == wire.hex0x(c.address)
            assert (dry["signatureValid"], dry["error"]["code"]) == (False, "bad_signature")
            also = (await h.post("/v1/tx?dryRun=1", json=Client.to_request(huge))).json()
            assert also["error"]["code"] == "insufficient_collateral" and also["written"] is False
            r = await h.post("/v1/tx/dry-run", content=b"{not json")
            assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
            assert (await a.status())["blockNumber"] == head + 1  # only the real order made a block


async def next_event(ws, timeout: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def test_events_snapshot_replay_filter_live_and_gap(broker, topic, tmp_path, api_port, monkeypatch):
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id=own_id())
    async with Service(config) as service:
        a, b, c, d = dev_clients(service.url)
        async with a, b, c, d:
            await trade_twice(a, b, c)
            await d.transfer(c.address, usd(1))  # another account's tx: filtered out below
            head = (await a.status())["blockNumber"]
            me = wire.hex0x(a.address)
            ws_url = service.url.replace("http", "ws") + "/v1/events"
            async with websockets.connect(f"{ws_url}?fromBlock=1&account={me}") as ws:
                snapshot = await next_event(ws)
                assert snapshot["type"] == "snapshot" and snapshot["blockNumber"] == head
                assert snapshot["account"]["positions"][0]["size"] == 2 * LOT // 100
                replayed = []
                while not replayed or replayed[-1] != ("block", head):
                    e = await next_event(ws)
                    replayed.append((e["type"], e.get("number", e.get("block"))))
                    if e["type"] == "receipt":
                        assert e["account"] == me  # only the account's own txs
                    if e["type"] == "fill":
                        assert me in (e["maker"], e["taker"])
                blocks = [n for kind, n in replayed if kind == "block"]
                assert blocks == list(range(1, head + 1))
                assert sum(kind == "fill" for kind, _ in replayed) == 2
                assert sum(kind == "receipt" for kind, _ in replayed) == 2  # its two orders
                # Live: the next block of the account arrives after the replay, once.
                await a.transfer(b.address, usd(1))
                live = [await next_event(ws) for _ in range(2)]
                assert [e["type"] for e in live] == ["block", "receipt"]
                assert live[0]["number"] == head + 1 and live[1]["recordType"] == "Transfer"

            # A start older than the stream replays: a gap event names the blocks to read over HTTP.
            monkeypatch.setattr(api_apps, "REPLAY_BLOCKS", 2)
            async with websockets.connect(f"{ws_url}?fromBlock=1") as ws:
                assert (await next_event(ws))["type"] == "snapshot"
                gap = await next_event(ws)
                new_head = head + 1
                assert (gap["type"], gap["fromBlock"], gap["toBlock"]) == ("gap", 1, new_head - 2)
                assert (await next_event(ws))["number"] == new_head - 1
            async with websockets.connect(f"{ws_url}?account=0xnothex") as ws:
                error = await next_event(ws)
                assert (error["type"], error["code"]) == ("error", "invalid_field") and "address" in error["message"]


async def test_funding_payments_per_account(broker, topic, tmp_path, api_port):
    """A market with a 1 s funding interval: each tick's payment per position is
    its size times the index step (rounded up), long and short pay opposite
    amounts, and they add up to what the account view says is owed."""
    from sequencer.core.markets import get_market_table
    from sequencer.node.node import make_context
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id=own_id())
    table = get_market_table(config.preset)
    fast = {m: msgspec.structs.replace(p, funding_interval_ms=1000, funding_interest_ppm=50) for m, p in table.items()}
    ctx = msgspec.structs.replace(make_context(config), markets=fast)
    async with Service(config, ctx=ctx) as service:
        a, b, c, _ = dev_clients(service.url)
        async with a, b, c, httpx.AsyncClient(base_url=service.url) as h:
            feeder = Feeder(c, source=None)
            await feeder.post(BTC, usd(60_000))
            await b.place_order(BTC, False, usd(60_000), LOT // 10, leverage=10)
            await a.place_order(BTC, True, usd(60_000), LOT // 10, leverage=10)

            async def ticks():
                await feeder.post(BTC, usd(60_000))  # funding waits for a fresh price
                return len((await get(h, f"/v1/markets/{BTC}/funding", oa.Funding))["ticks"]) >= 3
            await wait_until(ticks, timeout=20, interval=0.5)
            pays = {}
            for client in (a, b):
                who = wire.hex0x(client.address)
                pays[who] = (await get(h, f"/v1/accounts/{who}/history/funding?limit=1000", oa.FundingPage))["items"]
            funding = await get(h, f"/v1/markets/{BTC}/funding?limit=1000")
            index_at = {t["block"]: t["fundingIndex"] for t in funding["ticks"]}
            long_pays, short_pays = pays[wire.hex0x(a.address)], pays[wire.hex0x(b.address)]
            assert long_pays and len(long_pays) == len(short_pays)
            for p, q in zip(long_pays, short_pays):
                assert (p["block"], p["size"], q["size"]) == (q["block"], LOT // 10, -LOT // 10)
                assert p["ratePpm"] > 0 and p["payment"] > 0 and q["payment"] < 0  # longs pay when the rate is up
                assert abs(p["payment"] + q["payment"]) <= 1  # the same amount, rounded up on each side
                assert p["block"] in index_at
            owed = (await a.positions())[0]["fundingOwed"]
            total = sum(p["payment"] for p in long_pays)
            assert 0 <= total - owed < len(long_pays)  # each tick rounded up, the view rounds the sum
