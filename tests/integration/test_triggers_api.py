"""Trigger orders, modify and the dead-man's switch through the node on the real
broker: the SDK and the CLI sign them, the idle builder fires a stop-loss once
the mark crosses (not a tick before), a modify replaces an order in one tx,
a scheduled cancel-all clears the book at its time, and a fresh replay of the
log reaches the same state root."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from nodes import dev_clients, make_config, replay_fresh, run_cli, wait_until
from sequencer.core.markets import USDC
from sequencer.executor.genesis import get_dev_accounts
from sequencer.node.service import Service
from sequencer.oracle import Feeder
from sequencer.sdk import ApiError

pytestmark = pytest.mark.kafka

BTC, LOT = 1, 10**8


def usd(x) -> int:
    return int(x * USDC)


async def test_stop_loss_modify_and_dead_mans_switch(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id="triggers-" + uuid.uuid4().hex[:8])
    async with Service(config) as service:
        a, b, c, _ = dev_clients(service.url)
        key_a = "0x" + get_dev_accounts(1)[0][0].hex()
        url = ["--url", service.url]
        async with a, b, c:
            feeder = Feeder(c, source=None)
            assert (await feeder.post(BTC, usd(60_000))).receipt["status"] == "ok"
            await b.place_order(BTC, False, usd(60_000), LOT // 10, leverage=10)
            assert (await a.place_order(BTC, True, usd(60_000), LOT // 10, leverage=10))["order"]["status"] == "filled"

            # A stop-loss from the CLI in human units: sell 0.1 BTC when the mark falls to 58,000.
            code, out, err = await run_cli("order", "place", *url, "--key", key_a, "BTC-USD", "sell", "0.1", "57500",
                                       "--trigger-price", "58000", "--sl")
            assert code == 0, (out, err)
            assert "stop-loss" in out and "when the mark reaches 58000 USDC, limit 57500 USDC" in out, out
            (pending,) = await a.triggers()
            assert (pending["kind"], pending["triggerPrice"], pending["price"], pending["size"], pending["reduceOnly"],
                    pending["firesWhenMark"]) == ("stop-loss", usd(58_000), usd(57_500), LOT // 10, True, "<=")
            collateral = (await a.account())["collateral"]
            assert (await a.account())["openOrders"] == []  # it reserves nothing and is not in the book

            # A refused one: its limit above its trigger could never fill when it fires.
            code, out, err = await run_cli("order", "place", *url, "--key", key_a, "BTC-USD", "sell", "0.1", "59000",
                                       "--trigger-price", "58000", "--sl")
            assert code != 0 and "limit_inside_trigger" in out + err, (out, err)

            await b.place_order(BTC, True, usd(57_800), LOT // 10, leverage=10)  # the bid the stop sells into
            assert (await feeder.post(BTC, usd(58_001))).receipt["status"] == "ok"
            await asyncio.sleep(1.0)  # the idle builder wakes every 0.25 s: one tick above, nothing fires
            assert len(await a.triggers()) == 1 and (await a.positions())[0]["size"] == LOT // 10
            assert (await feeder.post(BTC, usd(58_000))).receipt["status"] == "ok"

            async def closed():
                positions = await a.positions()
                return not positions or positions[0]["size"] == 0
            await wait_until(closed, timeout=10)
            assert await a.triggers() == []
            fills = await a.fills()
            assert fills[0]["price"] == usd(57_800) and fills[0]["size"] == LOT // 10
            assert (await a.account())["collateral"] > collateral  # the margin came back

            # Modify from the SDK: a resting bid moves and grows, one tx.
            first = await a.place_order(BTC, True, usd(50_000), LOT // 100, leverage=5)
            nonce = first["order"]["nonce"]
            moved = await a.modify_order(nonce, usd(51_000), LOT // 50)
            assert moved["status"] == "ok" and moved["order"]["status"] == "resting"
            orders = await a.open_orders()
            assert [(o["nonce"], o["price"], o["remaining"]) for o in orders] == [
                (moved["order"]["nonce"], usd(51_000), LOT // 50)]
            with pytest.raises(ApiError) as refused:  # the old order is gone: a second modify of it is refused
                await a.submit(await a.signed_modify(nonce, usd(52_000), LOT // 50))
            assert refused.value.code == "order_not_open"

            # And from the CLI, in human units.
            code, out, err = await run_cli("modify", *url, "--key", key_a, str(moved["order"]["nonce"]),
                                       "--price", "51500")
            assert code == 0 and "resting" in out, (out, err)
            (order,) = await a.open_orders()
            assert (order["price"], order["remaining"]) == (usd(51_500), LOT // 50)

            # The dead-man's switch: set far in the past is refused; in 6 s it clears the book.
            code, out, err = await run_cli("schedule-cancel", *url, "--key", key_a, "--at", "2020-01-01T00:00:00Z")
            assert code != 0 and "schedule_too_soon" in out + err, (out, err)
            await a.place_trigger(BTC, False, usd(45_000), usd(44_000), LOT // 100, tpsl="sl")
            await b.place_order(BTC, False, usd(70_000), LOT // 100, leverage=5)  # someone else's order stays
            code, out, err = await run_cli("schedule-cancel", *url, "--key", key_a, "--in", "6s")
            assert code == 0 and "dead-man's switch: 20" in out, (out, err)
            at = (await a.account())["scheduledCancel"]["cancelAtMs"]
            assert at and (await a.account())["scheduledCancel"]["runsLeftToday"] == 10
            assert len(await a.open_orders()) == 1 and len(await a.triggers()) == 1

            async def cleared():
                account = await a.account()
                return not account["openOrders"] and not account["triggers"] and \
                    account["scheduledCancel"]["cancelAtMs"] is None
            await wait_until(cleared, timeout=20)
            assert time.time() * 1000 >= at
            assert (await a.account())["scheduledCancel"]["runsLeftToday"] == 9
            assert [o["price"] for o in await b.open_orders()] == [usd(70_000)]
            live_root, live_tables = service.node.chain.state_root, service.node.chain.state.to_tables()

    chain = await replay_fresh(config)
    assert chain.state_root == live_root and chain.state.to_tables() == live_tables
    text = json.dumps([str(r.error) for r in chain.receipts.values() if not r.ok])
    assert "trigger_not_crossed" not in text and "schedule_not_due" not in text
