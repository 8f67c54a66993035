"""Bots trade through the API against an `isoroll node` process on the real
broker; the node is killed (kill -9) and restarted (snapshot + replay of the
log); the order books (GET /v1/markets/{id}/book), every position, every
open order and every account's fills come back identical.

1. Quiesced kill: the bots stop, everything is read, kill -9, restart: the
   same answers (the books are rebuilt from the state's open orders, the
   fills index from the log before the snapshot plus the replay after it).
2. Kill in the middle of trading (txs in flight): after the restart the node
   answers exactly what a fresh executor that replays the log computes, and
   it sequences new orders on top.
"""
from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import uuid

import httpx
import pytest

from nodes import (dev_clients, free_port, kill_9, make_config, replay_fresh, start_node_process,  # noqa: E402
                   wait_ready, wait_until)

from sequencer.node import views  # noqa: E402
from sequencer.core.markets import USDC, get_market_table  # noqa: E402
from sequencer.core.matching import Exchange  # noqa: E402
from sequencer.core.state import Market  # noqa: E402
from sequencer.oracle import Feeder  # noqa: E402
from sequencer.sdk import ApiError  # noqa: E402

pytestmark = [pytest.mark.kafka]

BTC, ETH = 1, 2
BOTS = 4
FUNDING_FIELDS = ("fundingOwed", "liquidationPrice", "equity")


async def bot(client, seed: int, orders: int, stop: asyncio.Event | None = None) -> int:
    """Random limit orders around 60,000 / 3,000, some IOC, some cancels.
    Returns how many were acknowledged; stops quietly when the node dies."""
    rng = random.Random(seed)
    acked, mine = 0, []
    for _ in range(orders):
        if stop is not None and stop.is_set():
            break
        try:
            if mine and rng.random() < 0.15:
                await client.cancel_order(mine.pop(rng.randrange(len(mine))))
                continue
            market = BTC if rng.random() < 0.7 else ETH
            is_buy = rng.random() < 0.5
            if market == BTC:
                price = (60_000 + rng.randint(-8, 8) * 5) * USDC
                size = rng.randint(1, 5) * 10_000
            else:
                price = (3_000 + rng.randint(-8, 8)) * USDC
                size = rng.randint(1, 5) * 10**7
            tif = "ioc" if rng.random() < 0.2 else "gtc"
            receipt = await client.place_order(market, is_buy, price, size, leverage=rng.choice((5, 10)),
                                               time_in_force=tif)
            acked += 1
            if receipt["order"]["status"] in ("resting", "partially_filled"):
                mine.append(receipt["order"]["nonce"])
        except ApiError as exc:
            if exc.status >= 500:
                return acked
            assert exc.status in (409, 422), exc  # self-trade, an order filled meanwhile, ...
        except (httpx.HTTPError, OSError):
            return acked  # the node died under us: this tx was not acknowledged
    return acked


async def read_everything(url: str, addresses: list[str]) -> dict:
    async with httpx.AsyncClient(base_url=url) as http:
        out = {"books": {}, "accounts": {}, "fills": {}}
        markets = (await http.get("/v1/markets")).json()
        out["fundingIndex"] = {m["id"]: m["fundingIndex"] for m in markets}
        for m in markets:
            book = (await http.get(f"/v1/markets/{m['id']}/book", params={"depth": 500})).json()
            out["books"][m["id"]] = {"bids": book["bids"], "asks": book["asks"]}
        for address in addresses:
            out["accounts"][address] = (await http.get(f"/v1/accounts/{address}")).json()
            out["fills"][address] = (await http.get(f"/v1/accounts/{address}/fills",
                                                    params={"limit": 1000})).json()
        return out


def without_funding(view: dict) -> dict:
    """The view with the fields a funding tick moves left out (a tick may
    fall due between the two reads; sizes, margins, entries, orders cannot move)."""
    accounts = {a: {**acc, "positions": [{k: v for k, v in p.items() if k not in FUNDING_FIELDS}
                                         for p in acc["positions"]]}
                for a, acc in view["accounts"].items()}
    return {**view, "accounts": accounts, "fundingIndex": None}


def snapshot_written(tmp_path):
    """A wait_until predicate: the node has written a snapshot (the restart
    then loads it and replays only what came after)."""
    async def written() -> bool:
        return bool(list((tmp_path / "node" / "snapshots").glob("snapshot-*.bin")))
    return written


def assert_same(before: dict, after: dict) -> None:
    if before["fundingIndex"] != after["fundingIndex"]:
        before, after = without_funding(before), without_funding(after)
    assert after["books"] == before["books"]
    for address in before["accounts"]:
        assert after["accounts"][address] == before["accounts"][address], address
    assert after["fills"] == before["fills"]


async def test_books_and_positions_survive_kill_9_and_restart(broker, tmp_path):
    port = free_port()
    # Its own sequencer id (transactional id): other runs on the shared test
    # broker must not fence this node.
    run_id = uuid.uuid4().hex[:8]
    config = make_config(broker, "trade-restart-" + run_id, tmp_path, port, genesis_dev_accounts=5,
                         sequencer_id="trade-restart-" + run_id, snapshot_interval_blocks=20)
    url = f"http://127.0.0.1:{port}"
    process = start_node_process(config, tmp_path / "node.log")
    try:
        await wait_ready(url)
        *bots, oracle_client = dev_clients(url, BOTS + 1)
        addresses = ["0x" + c.address.hex() for c in bots]
        feeder = Feeder(oracle_client, source=None)
        for market, price in ((BTC, 60_000 * USDC), (ETH, 3_000 * USDC)):
            assert (await feeder.post(market, price)).receipt["status"] == "ok"

        # 1. Trade, stop, read, kill -9, restart, read again.
        counts = await asyncio.gather(*(bot(c, seed=i, orders=30) for i, c in enumerate(bots)))
        assert sum(counts) >= 80
        before = await read_everything(url, addresses)
        assert any(before["books"][m]["bids"] and before["books"][m]["asks"] for m in (BTC, ETH))
        assert sum(len(a["positions"]) for a in before["accounts"].values()) >= 2
        assert any(before["fills"].values())
        await wait_until(snapshot_written(tmp_path), timeout=15)   # the node snapshots once a second, when due
        kill_9(process)
        for c in bots:
            await c.stop()
        process = start_node_process(config, tmp_path / "node.log")
        await wait_ready(url)
        assert_same(before, await read_everything(url, addresses))

        # 2. Kill in the middle of trading; the restarted node agrees with a fresh replay.
        head = (await restarted_status(url))["blockNumber"]
        stop = asyncio.Event()
        workers = [asyncio.create_task(bot(c, seed=100 + i, orders=1000, stop=stop)) for i, c in enumerate(bots)]
        await wait_until(lambda: _blocks_past(url, head + 30, workers), timeout=30, interval=0.05)
        kill_9(process)
        stop.set()
        await asyncio.gather(*workers)
        for c in bots:
            await c.stop()
        process = start_node_process(config, tmp_path / "node.log")
        await wait_ready(url)
        restarted = await read_everything(url, addresses)
        fresh = await replay_fresh(config)
        state = fresh.state
        exchange = Exchange.for_context(fresh.ctx)
        exchange.rebuild(state)
        for market in (BTC, ETH):
            book = exchange.book(market, 500)
            assert restarted["books"][market] == {"bids": book["bids"], "asks": book["asks"]}
        tables = get_market_table(fresh.ctx.preset.markets)
        for address in addresses:
            raw = bytes.fromhex(address[2:])
            account = restarted["accounts"][address]
            assert account["collateral"] == state.accounts[raw].collateral
            expected = []
            for market_id, params in sorted(tables.items()):
                position = state.positions.get((raw, market_id))
                if position is None or (position.size == 0 and position.margin == 0):
                    continue
                expected.append(views.describe_position(position, state.markets.get(market_id) or Market(market_id),
                                                        params))
            assert account["positions"] == expected, address
            assert account["openOrders"] == exchange.open_orders(raw), address

        # The restarted node keeps trading on top of what it recovered.
        async with dev_clients(url, 1)[0] as c:
            receipt = await c.place_order(BTC, True, 59_000 * USDC, 10_000, leverage=5)
            assert receipt["status"] == "ok" and receipt["block"] > fresh.head_number
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                kill_9(process)


async def restarted_status(url: str) -> dict:
    async with httpx.AsyncClient() as http:
        return (await http.get(url + "/v1/status")).json()


async def _blocks_past(url: str, n: int, workers) -> bool:
    if all(w.done() for w in workers):
        raise AssertionError(f"the bots stopped early: {[w.result() for w in workers]}")
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(url + "/v1/status")).json()["blockNumber"] >= n
    except httpx.HTTPError:
        return False
