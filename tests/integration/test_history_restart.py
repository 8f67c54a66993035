"""The history is a projection of the log that survives restarts (real broker).

A node trades, is stopped and started again on the same data directory: the
fills, funding payments, trades, candles and insurance-fund history from
genesis are served as before, with no duplicates, and new blocks add to them.
Then the two ways the file and the snapshots can disagree:
- the file is ahead of the node's start (the snapshots are gone, the node
  replays the log from genesis): it skips the blocks it holds;
- the file is gone (a node upgraded from before the file, a lost disk): it is
  rebuilt from the log from genesis in the background, and ends equal.
"""
from __future__ import annotations

import uuid

import httpx
import pytest

from nodes import dev_clients, make_config, wait_until
from test_apps_api import get  # a GET that decodes the answer with its OpenAPI type
from sequencer.core import wire
from sequencer.core.markets import USDC, get_market_table
from sequencer.node import openapi as oa
from sequencer.node.api_history import HISTORY_FILE
from sequencer.node.service import Service
from sequencer.oracle import Feeder

pytestmark = pytest.mark.kafka

BTC = 1
LOT = 10**8


def usd(x) -> int:
    return int(x * USDC)


async def walk(h: httpx.AsyncClient, path: str, kind, limit: int = 2) -> list[dict]:
    """Every item of a paginated history, following ``next`` (small pages on purpose)."""
    items, cursor = [], None
    while True:
        page = await get(h, f"{path}?limit={limit}" + (f"&before={cursor}" if cursor else ""), kind)
        items += page["items"]
        cursor = page["next"]
        if cursor is None:
            return items


async def read_history(h: httpx.AsyncClient, accounts: list[str]) -> dict:
    return {
        "fills": {a: await walk(h, f"/v1/accounts/{a}/history/fills", oa.FillPage) for a in accounts},
        "funding": {a: await walk(h, f"/v1/accounts/{a}/history/funding", oa.FundingPage) for a in accounts},
        "trades": await get(h, f"/v1/markets/{BTC}/trades?limit=5000"),
        "candles": (await get(h, f"/v1/markets/{BTC}/candles?interval=1m&limit=5000"))["candles"],
        "prices": (await get(h, f"/v1/markets/{BTC}/prices?limit=5000"))["prices"],
        "insurance": await walk(h, "/v1/insurance/history", oa.InsurancePage),
    }


async def trade(a, b, feeder, prices) -> None:
    for price in prices:
        assert (await feeder.post(BTC, usd(price))).receipt["status"] == "ok"
        await b.place_order(BTC, False, usd(price), LOT // 100, leverage=10)
        taker = await a.place_order(BTC, True, usd(price), LOT // 100, leverage=10)
        assert taker["order"]["status"] == "filled"


def keys(items: list[dict]) -> list[tuple[int, int]]:
    return [(i["block"], i.get("index", 0)) for i in items]


async def test_history_survives_restarts_without_duplicates(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id="hist-" + uuid.uuid4().hex[:8])
    share = get_market_table(config.preset)[BTC].insurance_fee_share_ppm
    history_file = config.snapshot_dir / HISTORY_FILE

    # Pre: a node trades three times.
    async with Service(config) as service:
        a, b, c, _ = dev_clients(service.url)
        accounts = [wire.hex0x(a.address), wire.hex0x(b.address)]
        async with a, b, c, httpx.AsyncClient(base_url=service.url) as h:
            await trade(a, b, Feeder(c, source=None), (60_000, 60_100, 59_900))
            before = await read_history(h, accounts)
            fund = (await get(h, "/v1/insurance/history"))["balance"]
            assert fund == service.node.chain.state.globals.insurance_fund
    fills = before["fills"][accounts[0]]
    assert [f["price"] for f in fills] == [usd(59_900), usd(60_100), usd(60_000)]  # newest first
    assert before["fills"][accounts[1]] == fills                                    # one fill, both sides
    fee_shares = [i for i in before["insurance"] if i["kind"] == "fee_share"]
    assert sum(i["amount"] for i in fee_shares) == sum((f["makerFee"] + f["takerFee"]) * share // 10**6
                                                       for f in fills) > 0
    assert before["insurance"][0]["balance"] == fund                    # the newest change ends at the balance
    assert len(before["prices"]) == 3 and len(before["trades"]) == 3
    assert history_file.exists()

    # Op 1: a clean restart on the same data directory (snapshot + replay of the rest).
    async with Service(config) as service:
        a, b, c, _ = dev_clients(service.url)
        async with a, b, c, httpx.AsyncClient(base_url=service.url) as h:
            assert await read_history(h, accounts) == before                # post: all of it, nothing twice
            await trade(a, b, Feeder(c, source=None), (60_200,))
            after_trade = await read_history(h, accounts)
    fills_after = after_trade["fills"][accounts[0]]
    assert fills_after[1:] == fills and fills_after[0]["price"] == usd(60_200)
    assert len(set(keys(fills_after))) == len(fills_after) == 4
    assert after_trade["insurance"][1:] == before["insurance"]

    # Op 2: the snapshots are gone; the node replays the log from genesis while the
    # file already holds every block: it skips them (no duplicates).
    for path in config.snapshot_dir.glob("snapshot-*.bin"):
        path.unlink()
    (config.snapshot_dir / "index.bin").unlink(missing_ok=True)
    async with Service(config) as service:
        async with httpx.AsyncClient(base_url=service.url) as h:
            assert service.node.chain.head_number >= fills_after[0]["block"]
            assert await read_history(h, accounts) == after_trade

    # Op 3: the file is gone; the node starts from its snapshot and rebuilds the
    # history before it from the log in the background.
    for suffix in ("", "-wal", "-shm"):
        history_file.with_name(HISTORY_FILE + suffix).unlink(missing_ok=True)
    async with Service(config) as service:
        async with httpx.AsyncClient(base_url=service.url) as h:
            async def rebuilt():
                return (await get(h, "/v1/insurance/history"))["historyFromBlock"] == 0
            await wait_until(rebuilt, timeout=30, interval=0.2)
            assert await read_history(h, accounts) == after_trade
