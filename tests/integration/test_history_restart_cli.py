"""`isoroll insurance`, `isoroll fills` and `isoroll order place` in human
units with the unit shown, the API's integers on --raw and its JSON on --json
(subprocesses against a node on the real broker); the SDK's history pages
decode with the OpenAPI types."""
from __future__ import annotations

import json
import uuid
from decimal import Decimal

import msgspec
import pytest

from nodes import dev_clients, make_config, run_cli
from sequencer.core.markets import USDC
from sequencer.executor.genesis import get_dev_accounts
from sequencer.node import openapi as oa
from sequencer.node.service import Service
from sequencer.oracle import Feeder

pytestmark = pytest.mark.kafka

BTC, LOT = 1, 10**8


async def isoroll(*args: str) -> str:
    code, out, err = await run_cli(*args)
    assert code == 0, (args, out, err)
    return out


def first_row(text: str, word: str) -> list[str]:
    """The words of the first line of ``text`` that holds ``word``."""
    return next(line.split() for line in text.splitlines() if word in line.split())


def usdc(units: int) -> str:
    return f"{Decimal(units) / USDC:f}"


async def test_insurance_fills_and_order_outputs_in_human_units(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id="hcli-" + uuid.uuid4().hex[:8])
    async with Service(config) as service:
        a, b, c, _ = dev_clients(service.url)
        async with a, b, c:
            await Feeder(c, source=None).post(BTC, 60_000 * USDC)
            await b.place_order(BTC, False, 60_000 * USDC, LOT // 100, leverage=10)
            key_a = "0x" + get_dev_accounts(1)[0][0].hex()
            url = ("--url", service.url)

            # isoroll order place: the taker's fill in BTC and USDC
            out = await isoroll("order", "place", "BTC-USD", "buy", "0.01", "60000", "--leverage", "10",
                                "--key", key_a, *url)
            assert "filled: filled 0.01 BTC of 0.01 BTC" in out, out
            fill = (await a.fills())[0]
            assert f"buy  taker" in out and "0.01 BTC" in out and usdc(fill["takerFee"]) in out, out

            # isoroll insurance: the balance in USDC with its units, each change in USDC
            page = await a.insurance_history(limit=5)
            msgspec.json.decode(msgspec.json.encode(page), type=oa.InsurancePage)
            share = page["items"][0]
            assert share["kind"] == "fee_share" and share["amount"] > 0 and page["balance"] == share["balance"]
            out = await isoroll("insurance", *url)
            assert f"insurance fund  {usdc(page['balance'])} USDC ({page['balance']} units)" in out, out
            assert "amount (USDC)" in out
            assert first_row(out, "fee_share")[-2:] == [usdc(share["amount"]), usdc(share["balance"])], out
            raw = await isoroll("insurance", "--raw", *url)
            assert "amount (units)" in raw
            assert first_row(raw, "fee_share")[-2:] == [str(share["amount"]), str(share["balance"])], raw
            assert json.loads(await isoroll("insurance", "--json", *url)) == \
                await a.insurance_history(limit=20)

            # isoroll fills: both sides of the same fill, each in its own role
            out = await isoroll("fills", "--key", key_a, *url)
            assert "taker" in out and "0.01 BTC" in out and usdc(fill["notional"]) in out
            assert "price, notional and fee in USDC" in out
            maker = await isoroll("fills", "0x" + b.address.hex(), *url)
            assert "sell maker" in " ".join(maker.split()) and usdc(fill["makerFee"]) in maker, maker
            raw = await isoroll("fills", "--raw", "--key", key_a, *url)
            assert str(fill["notional"]) in raw and str(fill["size"]) in raw and "quote units" in raw
            assert json.loads(await isoroll("fills", "--json", "--key", key_a, *url)) == await a.fills(limit=50)

            history = await a.fill_history(limit=1)
            msgspec.json.decode(msgspec.json.encode(history), type=oa.FillPage)
            assert history["items"] == [fill] and history["next"] is None
