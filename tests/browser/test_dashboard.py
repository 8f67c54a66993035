"""The dashboard in a real browser (Debian's chromium through Playwright) on a
node started here: the real Kafka broker, the bridge on anvil with the node's
L1 watcher and checkpointer (the test posts checkpoints itself, and moves L1
time with evm_increaseTime).  Screenshots of each flow go to
tests/browser/screenshots/ (not committed; docs/dashboard.png is one of them).

- two dev accounts place crossing orders from the page; both positions show
  their liquidation price, equal to the node's; the risk preview had it right
  before the fill;
- a withdrawal from the page: waiting for a checkpoint, then in its challenge
  period with a countdown that runs, then claimed on L1 from the page (the L1
  balance grows by exactly the amount);
- the bridge frozen from the page (a forced withdrawal the operator left
  unserved past its grace): each account's escape amount, equal to what the
  exit kit computes from L1 data alone; registered from the page (the bridge
  records exactly it) and, after the registration window, claimed from the
  page (paid exactly it);
- an injected EIP-1193 wallet (eth_signTypedData_v4 answered by eth-account
  with a known key): the node accepts its signatures; a wallet whose
  signatures are not the account's is refused and nothing is written.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from kafka_fixtures import free_port
from nodes import make_config, wait_until
from isoroll.service import Service
from l1_bridge.exit import L1Replay
from sequencer.core.markets import USDC
from sequencer.executor.genesis import get_dev_accounts
from sequencer.oracle import sign_oracle_price
from sequencer.sdk import Client

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SHOTS = Path(__file__).resolve().parent / "screenshots"
BTC = 1
UNIT = USDC


async def screenshot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def post_price(url: str, price_usd: int) -> None:
    async with Client(url) as c:
        record = sign_oracle_price(await c.domain_separator(), BTC, price_usd * UNIT, int(time.time() * 1000))
        await c.submit_oracle_price(record)


async def account(url: str, address: str) -> dict:
    async with httpx.AsyncClient() as h:
        return (await h.get(f"{url}/v1/accounts/{address}")).json()


def shown_usd(text: str) -> float:
    return float(text.replace(",", "").split()[0])


async def open_page(page, url: str) -> None:
    await page.goto(url + "/")
    await page.wait_for_selector("body[data-ready='1']", timeout=20_000)


async def pick(page, key: bytes, address: str) -> None:
    await page.select_option("#account", value="0x" + key.hex())
    await page.wait_for_selector(f"#address:has-text('{address}')")


async def place(page, side: str, price: str, size: str, leverage: str, expect: str) -> str:
    """Fill the order form, return the preview's liquidation price, sign and place."""
    await page.check(f"input[name=side][value={side}]")
    await page.fill("#price", price)
    await page.fill("#size", size)
    await page.fill("#leverage", leverage)
    preview = await page.text_content("#pv-liq")
    await page.evaluate("document.getElementById('toast').className = ''")  # the last one's gone
    await page.click("#place")
    toast = page.locator("#toast.show")
    await toast.wait_for(timeout=15_000)
    assert expect in await toast.text_content()
    return preview


async def l1_node(l1, broker, topic, tmp_path, deposits: dict[bytes, int]):
    """Deposits on L1, then a node whose checkpoints the test posts itself."""
    for key, amount in deposits.items():
        l1.fund(key, 1000 * UNIT)
        await asyncio.to_thread(l1.client.deposit, key, amount)
    config = l1.node_config(broker, topic, tmp_path, checkpoint_interval_seconds=3600.0,
                            checkpoint_interval_blocks=10**6)
    return Service(config)


async def credited(service, address: str, amount: int) -> None:
    async def check():
        a = service.node.chain.state.accounts.get(bytes.fromhex(address[2:]))
        return a is not None and a.collateral == amount
    await wait_until(check, timeout=30)


async def checkpoint(service) -> None:
    await wait_until(lambda: _ready(service), timeout=30)
    await service.l1.services.checkpointer.poll_once(force=True)


async def _ready(service) -> bool:
    return service.l1.services is not None


async def test_trade_positions_withdraw_countdown_claim(l1, broker, topic, tmp_path, page):
    (ka, a_raw), (kb, b_raw) = l1.users[0], l1.users[1]
    a, b = "0x" + a_raw.hex(), "0x" + b_raw.hex()
    async with await l1_node(l1, broker, topic, tmp_path, {ka: 500 * UNIT, kb: 500 * UNIT}) as service:
        await credited(service, a, 500 * UNIT)
        await credited(service, b, 500 * UNIT)
        await post_price(service.url, 60_000)
        await open_page(page, service.url)

        # Crossing orders from two dev accounts: A rests a bid, B sells into it.
        await pick(page, ka, a)
        await place(page, "buy", "60000", "0.05", "10", "resting")
        await pick(page, kb, b)
        preview = await place(page, "sell", "60000", "0.05", "20", "filled")
        for who, size in ((b, "-0.05"), (a, "0.05")):
            if who == a:
                await pick(page, ka, a)
            row = page.locator("#positions tr[data-market='1']")
            await row.wait_for()
            position = (await account(service.url, who))["positions"][0]
            assert position["size"] == int(float(size) * 10**8)
            assert (await row.locator("td").nth(1).text_content()) == size
            liq = await row.locator("td.liq").text_content()
            assert abs(shown_usd(liq) - position["liquidationPrice"] / UNIT) <= 0.01, (liq, position)
            if who == b:
                assert abs(shown_usd(preview) - position["liquidationPrice"] / UNIT) <= 0.01, (preview, position)
                assert position["liquidationPrice"] > 60_000 * UNIT  # a short is liquidated above
            else:
                assert 0 < position["liquidationPrice"] < 60_000 * UNIT
        await screenshot(page, "trade")

        # Withdraw 10 USDC from the page and follow it to L1.
        await page.fill("#withdraw-amount", "10")
        await page.click("#withdraw")
        state = page.locator("#withdrawals tr[data-index='0'] td.state")
        await page.wait_for_selector("#withdrawals tr[data-index='0'] td.state:has-text('waiting for a checkpoint')",
                                     timeout=15_000)
        await checkpoint(service)
        countdown = page.locator("#withdrawals tr[data-index='0'] .countdown")
        await countdown.wait_for(timeout=15_000)
        assert "in challenge period" in await state.text_content()
        first = await countdown.text_content()
        # the countdown ticks (the page re-renders it every second): its next text
        await page.wait_for_function(
            "first => document.querySelector(\"#withdrawals tr[data-index='0'] .countdown\")?.textContent !== first",
            arg=first, timeout=5_000)
        second = await countdown.text_content()
        assert first != second and second.endswith("left"), (first, second)
        await screenshot(page, "withdraw")
        await asyncio.to_thread(l1.advance, l1.client.params()["challenge_period"] + 1)
        claim = page.locator("#withdrawals tr[data-index='0'] button.claim")
        await claim.wait_for(timeout=15_000)
        before = l1.client.token_balance(a)
        await claim.click()
        await page.wait_for_selector("#withdrawals tr[data-index='0'] td.state:has-text('claimed')", timeout=15_000)
        assert l1.client.token_balance(a) - before == 10 * UNIT


async def test_freeze_and_escape_from_the_page(l1, broker, topic, tmp_path, page):
    (ka, a_raw), (kb, b_raw) = l1.users[0], l1.users[1]
    a, b = "0x" + a_raw.hex(), "0x" + b_raw.hex()
    async with await l1_node(l1, broker, topic, tmp_path, {ka: 300 * UNIT, kb: 200 * UNIT}) as service:
        await credited(service, a, 300 * UNIT)
        await credited(service, b, 200 * UNIT)
        async with Client(service.url, ka) as alice:
            await alice.transfer(b, 25 * UNIT)
        await checkpoint(service)
        await asyncio.to_thread(l1.advance, l1.client.params()["challenge_period"] + 1)
        # The operator is gone (its watcher and checkpointer stop; the API still reads L1) and
        # leaves a forced withdrawal unserved past its grace.
        service._l1_task.cancel()
        await asyncio.to_thread(l1.client.force_withdraw, ka, 5 * UNIT)
        await asyncio.to_thread(l1.advance, l1.client.params()["forced_grace"] + 1)

        await open_page(page, service.url)
        await pick(page, ka, a)
        freeze = page.locator("button[data-call^='freeze:']")
        await freeze.wait_for(timeout=15_000)
        await freeze.click()
        await page.wait_for_selector("#frozen:has-text('FROZEN')", timeout=15_000)
        await page.wait_for_selector(f"#escapes tr[data-account='{a}']", timeout=15_000)

        replay = L1Replay(l1.client)
        expected = {who: await asyncio.to_thread(replay.escape_amount, raw) for who, raw in ((a, a_raw), (b, b_raw))}
        assert expected == {a: 275 * UNIT, b: 225 * UNIT}
        for who, amount in expected.items():
            shown = await page.text_content(f"#escapes tr[data-account='{who}'] td:nth-child(2)")
            assert shown_usd(shown) == amount / UNIT
        # Register A's escape from the page; after the window, claim it from the page.
        await page.click(f"#escapes tr[data-account='{a}'] button")
        await page.wait_for_selector(f"#escapes tr[data-account='{a}'] td.state:has-text('registered, due')",
                                     timeout=15_000)
        assert l1.client.escape_info(a)["owed"] == expected[a]
        assert l1.client.escape_info(b)["registered"] is False
        await screenshot(page, "escape")
        await asyncio.to_thread(l1.advance, l1.d.parameters["escape_window"] + 1)
        claim = page.locator(f"#escapes tr[data-account='{a}'] button:has-text('claim escape')")
        await claim.wait_for(timeout=15_000)
        before = l1.client.token_balance(a)
        await claim.click()
        await page.wait_for_selector(f"#escapes tr[data-account='{a}'] td.state:has-text('escaped')", timeout=15_000)
        assert l1.client.token_balance(a) - before == expected[a]  # the pool covers every registration


WALLET = """
window.__walletCalls = [];
window.ethereum = {
  isTestWallet: true,
  async request({ method, params }) {
    window.__walletCalls.push(method);
    if (method === "eth_requestAccounts" || method === "eth_accounts") return [ADDRESS];
    if (method === "eth_chainId") return "0x1";
    if (method === "eth_signTypedData_v4") return await window.testWalletSign(params[0], params[1]);
    throw Object.assign(new Error(`test wallet: ${method} not supported`), { code: 4200 });
  },
};
"""


def sign_typed_data(key: bytes, address: str, typed_json: str) -> str:
    """What a wallet does for eth_signTypedData_v4, with eth-account (not viem)."""
    typed = json.loads(typed_json)
    fields = {f["name"]: f["type"] for f in typed["types"][typed["primaryType"]]}
    message = {k: int(v) if fields[k].startswith(("uint", "int")) else v for k, v in typed["message"].items()}
    domain = dict(typed["domain"], chainId=int(typed["domain"]["chainId"]))
    signed = Account.sign_typed_data(key, full_message=dict(typed, domain=domain, message=message))
    return "0x" + signed.signature.hex().removeprefix("0x")


@pytest.mark.parametrize("honest", [True, False], ids=["own-key", "wrong-key"])
async def test_injected_wallet_signatures(broker, topic, tmp_path, page, honest):
    accounts = get_dev_accounts(4)
    (key, raw), (other_key, _) = accounts[3], accounts[2]
    address = "0x" + raw.hex()
    config = make_config(broker, topic, tmp_path, free_port(), genesis_dev_accounts=4)
    async with Service(config) as service:
        await post_price(service.url, 60_000)
        signer_key = key if honest else other_key  # a wallet that signs with a key not the account's
        await page.expose_function("testWalletSign", lambda who, data: sign_typed_data(signer_key, who, data))
        await page.add_init_script(WALLET.replace("ADDRESS", json.dumps(address)))
        await open_page(page, service.url)
        await page.click("#connect")
        await page.wait_for_selector(f"#address:has-text('{address}')")
        await page.check("input[name=side][value=buy]")
        await page.fill("#price", "55000")
        await page.fill("#size", "0.02")
        await page.click("#place")
        toast = page.locator("#toast.show")
        await toast.wait_for(timeout=15_000)
        assert "eth_signTypedData_v4" in await page.evaluate("window.__walletCalls")
        orders = (await account(service.url, address))["openOrders"]
        if honest:
            await page.wait_for_selector("#toast.show:has-text('resting')")
            assert [(o["price"], o["remaining"], o["isBuy"]) for o in orders] == [(55_000 * UNIT, 2_000_000, True)]
            await page.wait_for_selector("#orders button.cancel")
            await screenshot(page, "wallet")
        else:
            assert "bad_signature" in await toast.text_content()
            assert orders == []
