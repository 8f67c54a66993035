"""`isoroll account` in human units (raw on --raw, the API's JSON on --json), and
`isoroll ... | head`: a reader that goes away ends the command quietly (exit
141 as SIGPIPE would, no traceback), as subprocesses against a node on the
real broker."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal

import pytest

from nodes import dev_clients, make_config
from sequencer.core.markets import USDC
from sequencer.node.service import Service
from sequencer.oracle import Feeder

pytestmark = pytest.mark.kafka

BTC, LOT = 1, 10**8


def isoroll(*args: str, stdout=subprocess.PIPE) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOROLL_")}
    return subprocess.Popen([sys.executable, "-m", "isoroll.cli", *args], stdout=stdout, stderr=subprocess.PIPE,
                            text=True, env=env)


async def output(*args: str) -> str:
    def run():
        proc = isoroll(*args)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, (args, out, err)
        return out
    return await asyncio.to_thread(run)


async def test_account_units_and_a_closed_pipe(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id="cli-" + uuid.uuid4().hex[:8])
    async with Service(config) as service:
        a, b, c, _ = dev_clients(service.url)
        async with a, b, c:
            assert (await Feeder(c, source=None).post(BTC, 60_000 * USDC)).receipt["status"] == "ok"
            await b.place_order(BTC, False, 60_000 * USDC, LOT // 20, leverage=10)
            await a.place_order(BTC, True, 60_000 * USDC, LOT // 20, leverage=10)
            address = "0x" + a.address.hex()
            url = ["--url", service.url]
            api = json.loads(await output("account", *url, address, "--json"))
            p = api["positions"][0]
            human = await output("account", *url, address)
            liq = Decimal(p["liquidationPrice"]) / USDC
            assert f"collateral  {Decimal(api['collateral']) / USDC} USDC ({api['collateral']} units)" in human
            assert (f"position    BTC-USD long 0.05 BTC, entry 60000 USDC, mark 60000 USDC, "
                    f"liquidation {liq} USDC, margin {p['margin'] // USDC} USDC, unrealized PnL 0 USDC, "
                    f"funding owed 0 USDC, equity {p['equity'] // USDC} USDC") in human, human
            raw = await output("account", *url, address, "--raw")
            assert f"position    market 1: size {p['size']}, margin {p['margin']}, entryPrice {p['entryPrice']}" in raw

            def closed_reader(*args):
                read, write = os.pipe()
                os.close(read)  # the reader is gone before the command prints
                proc = isoroll(*args, stdout=write)
                os.close(write)
                _, err = proc.communicate(timeout=30)
                return proc.returncode, err
            for args in (("account", *url, address), ("markets", *url)):
                code, err = await asyncio.to_thread(closed_reader, *args)
                assert (code, err) == (141, ""), (args, code, err)
