"""Trigger orders, modify and the dead-man's switch from the page, in a real
browser (Debian's chromium through Playwright) on a node over the real broker:

- an order placed from the page with a stop-loss: the trigger is listed, the
  devnet price moves down through it and the page shows the position closed by
  the stop's fill (at the resting bid), the trigger gone;
- a resting order modified from the page (price and size in one signed tx):
  the node holds the replacement, the old order is gone;
- the dead-man's switch armed from the page: its countdown shows, and at its
  time the node cancels every order of the account and the page shows none.
Screenshots go to tests/browser/screenshots/.
"""
from __future__ import annotations

import time
import uuid

import httpx
import pytest

from nodes import dev_clients, make_config, wait_until
from sequencer.core.markets import USDC
from sequencer.executor.genesis import get_dev_accounts
from sequencer.core.signing import address_of
from sequencer.node.service import Service
from sequencer.oracle import sign_oracle_price
from sequencer.sdk import Client
from test_dashboard import open_page, pick, screenshot

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

BTC, LOT = 1, 10**8


async def post_price(url: str, price_usd: int) -> None:
    async with Client(url) as c:
        record = sign_oracle_price(await c.domain_separator(), BTC, price_usd * USDC, int(time.time() * 1000))
        receipt = await c.submit_oracle_price(record)
        assert receipt["status"] == "ok", receipt


async def account(url: str, address: str) -> dict:
    async with httpx.AsyncClient() as h:
        return (await h.get(f"{url}/v1/accounts/{address}")).json()


async def toast_says(page, words: str) -> None:
    toast = page.locator("#toast.show")
    await toast.wait_for(timeout=15_000)
    text = await toast.text_content()
    assert words in text, text
    await page.evaluate("document.getElementById('toast').className = ''")


async def test_stop_loss_fires_modify_and_dead_mans_switch_from_the_page(broker, tmp_path, api_port, page):
    config = make_config(broker, "page-triggers-" + uuid.uuid4().hex[:8], tmp_path, api_port,
                         sequencer_id="page-" + uuid.uuid4().hex[:8])
    async with Service(config) as service:
        url = service.url
        (key_a, _), _ = get_dev_accounts(2)
        _, b, _, _ = dev_clients(url)
        async with b:
            await post_price(url, 60_000)
            await b.place_order(BTC, False, 60_000 * USDC, LOT // 10, leverage=10)
            await open_page(page, url)
            me = "0x" + address_of(key_a).hex()
            await pick(page, key_a, me)

            # Buy 0.1 BTC at 60,000 with a stop-loss at 58,000, from the form.
            await page.check("input[name=side][value=buy]")
            await page.fill("#price", "60000")
            await page.fill("#size", "0.1")
            await page.fill("#leverage", "10")
            await page.fill("#sl", "58000")
            await page.click("#place")
            await toast_says(page, "with stop-loss")
            row = page.locator("#triggers tr", has_text="stop-loss")
            await row.wait_for(timeout=10_000)
            assert "58,000.00" in await row.text_content() and "sell" in await row.text_content()
            (trigger,) = (await account(url, me))["triggers"]
            assert (trigger["triggerPrice"], trigger["size"], trigger["reduceOnly"]) == (58_000 * USDC, LOT // 10, True)
            await page.wait_for_selector("#positions tr[data-market='1']", timeout=10_000)
            await screenshot(page, "triggers-1-stop-loss-pending")

            # The devnet price moves: a bid waits at 57,500; the mark falls to 57,900 and the stop fires.
            await b.place_order(BTC, True, 57_500 * USDC, LOT // 10, leverage=10)
            await post_price(url, 58_100)
            assert len((await account(url, me))["triggers"]) == 1  # above the trigger: still pending
            await post_price(url, 57_900)

            async def closed():
                acc = await account(url, me)
                return not acc["triggers"] and all(p["size"] == 0 for p in acc["positions"])
            await wait_until(closed, timeout=15)
            await page.wait_for_function(
                "!document.querySelector(\"#positions tr[data-market='1']\") || "
                "document.querySelector(\"#positions tr[data-market='1'] td:nth-child(2)\").textContent === '0'",
                timeout=10_000)
            await page.wait_for_function("document.querySelector('#triggers').textContent.includes('none')",
                                         timeout=10_000)
            await page.wait_for_function("document.querySelector('#fills').textContent.includes('57,500.00')",
                                         timeout=10_000)
            await screenshot(page, "triggers-2-stop-loss-fired")

            # Modify a resting bid from the page: 50,000 x 0.01 -> 51,000 x 0.02.
            await page.check("input[name=side][value=buy]")
            await page.fill("#price", "50000")
            await page.fill("#size", "0.01")
            await page.fill("#sl", "")
            await page.click("#place")
            await toast_says(page, "resting")
            (old,) = (await account(url, me))["openOrders"]
            order_row = page.locator(f"#orders tr[data-nonce='{old['nonce']}']")
            await order_row.wait_for(timeout=10_000)
            await order_row.locator(".modify-price").fill("51000")
            await order_row.locator(".modify-size").fill("0.02")
            await order_row.locator(".modify").click()
            await toast_says(page, "order replaced: resting")
            (new,) = (await account(url, me))["openOrders"]
            assert new["nonce"] != old["nonce"]
            assert (new["price"], new["remaining"], new["isBuy"]) == (51_000 * USDC, LOT // 50, True)
            await page.wait_for_selector(f"#orders tr[data-nonce='{new['nonce']}']", timeout=10_000)
            assert await page.locator(f"#orders tr[data-nonce='{old['nonce']}']").count() == 0

            # The dead-man's switch: armed for 8 s, it cancels the bid at its time.
            await page.fill("#dms-seconds", "8")
            armed_at = time.time()
            await page.click("#dms-arm")
            await toast_says(page, "unless you re-arm")
            await page.wait_for_function("document.querySelector('#dms-state').textContent.includes('armed')",
                                         timeout=10_000)
            await screenshot(page, "triggers-3-dead-mans-switch-armed")
            assert (await account(url, me))["openOrders"]  # not before its time

            async def cancelled():
                acc = await account(url, me)
                return not acc["openOrders"] and acc["scheduledCancel"]["cancelAtMs"] is None
            await wait_until(cancelled, timeout=25)
            assert time.time() - armed_at >= 7.5
            await page.wait_for_function("document.querySelector('#orders').textContent.includes('none') && "
                                         "document.querySelector('#dms-state').textContent.includes('off')",
                                         timeout=10_000)
            await screenshot(page, "triggers-4-dead-mans-switch-ran")
