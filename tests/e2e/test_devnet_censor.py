"""The exit drill against a censoring operator (`isoroll devnet --censor`, issue
11): the node runs with ``censor_inbox_from`` as the devnet sets it (the L1
inbox entries present at start are taken, later ones held and never written)
while blocks and outputs go on; every user step is `isoroll l1 ...` in a
process of its own: force-withdraw (held, its grace runs out), a deposit made
meanwhile (never credited), freeze, escape (register, then claim, positions
included), refund."""
from __future__ import annotations

import asyncio
import re

import pytest

from nodes import wait_until
from test_l1_anvil import L1, UNIT, anvil, l1, l2_collateral  # noqa: F401  (fixtures)
from test_l1_cli import forked_isoroll, ok_of  # noqa: F401  (fixture)
from l1_bridge.deploy import PRESETS
from l1_bridge.exit import L1Replay
from isoroll.service import Service
from sequencer.sdk import Client

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DEVNET = PRESETS["devnet"]
BTC = 1


async def open_positions(url: str, long_key: bytes, short_key: bytes) -> None:
    """0.01 BTC at 60,000: long_key long, short_key short (5x)."""
    from sequencer.oracle import Feeder
    async with Client(url) as feed, Client(url, long_key) as buyer, Client(url, short_key) as seller:
        update = await Feeder(feed, source=None).post(BTC, 60_000 * UNIT)
        assert update.receipt is not None and update.receipt["status"] == "ok", update.error
        maker = await seller.place_order(BTC, False, 60_000 * UNIT, 10**6, leverage=5)
        assert maker["status"] == "ok", maker
        taker = await buyer.place_order(BTC, True, 60_000 * UNIT, 10**6, leverage=5)
        assert taker["order"]["status"] == "filled", taker


async def test_censoring_operator_force_withdraw_freeze_escape_refund(l1: L1, broker, topic, tmp_path,
                                                                    forked_isoroll):
    ok = ok_of(forked_isoroll)  # each command a process of its own (test_l1_cli.ForkServer)
    (ka, _), (kb, _), (kc, _) = l1.users
    a, b, third = l1.fund(ka, 1000 * UNIT), l1.fund(kb, 1000 * UNIT), l1.fund(kc, 0)
    for key in (ka, kb):
        await asyncio.to_thread(l1.client.deposit, key, 300 * UNIT)
    chain = ["--rpc", l1.url, "--deployment", str(l1.deployment_file)]
    censor_from = l1.client.status()["inbox_count"]
    assert censor_from == 2
    config = l1.node_config(broker, topic, tmp_path, censor_inbox_from=censor_from)
    async with Service(config) as service:
        await wait_until(lambda: _eq(l2_collateral(service, b), 300 * UNIT), timeout=30)
        await open_positions(service.url, ka, kb)
        head = service.node.chain.head_number
        await wait_until(lambda: asyncio.to_thread(
            lambda: l1.client.get_output(l1.client.output_count() - 1)["l2_block"] >= head), timeout=30)

        out = await ok("l1", "force-withdraw", "100", *chain, "--key", "0x" + ka.hex())
        assert re.search(rf"inbox index {censor_from}\b", out), out
        out = await ok("l1", "deposit", "7", *chain, "--key", "0x" + kb.hex())
        late = censor_from + 1
        assert re.search(rf"inbox index {late}\b", out), out
        builder = service.node.builder
        await wait_until(lambda: asyncio.sleep(0, bool(builder.held)), timeout=20)
        assert builder.held[0].tx.record.inbox_index == censor_from  # taken from L1, never answered
        outputs = l1.client.output_count()
        async with Client(service.url, ka) as alice:  # blocks and outputs go on
            await alice.transfer(third, 1 * UNIT)
        await wait_until(lambda: asyncio.to_thread(lambda: l1.client.output_count() > outputs), timeout=30)
        assert service.node.chain.state.globals.inbox_count == censor_from  # held, never written
        assert not l1.client.get_forced_request(censor_from)["covered_by_live_output"]

        l1.advance(max(DEVNET.challenge_period, DEVNET.forced_grace) + 1)
        out = await ok("l1", "freeze", *chain, "--key", "0x" + kc.hex())
        assert f"bridge frozen (forced request {censor_from})" in out, out
        positions = {x: service.node.chain.state.positions.get((bytes.fromhex(x[2:]), BTC)) for x in (a, b)}
        assert all(p is not None and p.size != 0 and p.margin > 0 for p in positions.values())
        free = {x.lower(): await l2_collateral(service, x) for x in (a, b)}

    replay = L1Replay(l1.client)
    expected = {x.lower(): replay.escape_amount(bytes.fromhex(x[2:])) for x in (a, b, third)}
    for x in (a.lower(), b.lower()):
        assert expected[x] > free[x]  # the position's margin is paid out too
    before = {x: l1.client.token_balance(x) for x in (a, b, third)}
    out = await ok("l1", "escape", "--all", *chain, "--key", "0x" + kc.hex())
    for x, owed in expected.items():
        assert re.search(rf"^registered {x}: owed ", out, re.M), out
    l1.advance(DEVNET.escape_window + 1)
    out = await ok("l1", "escape", "--all", *chain, "--key", "0x" + kc.hex())
    for x in (a, b, third):
        assert re.search(rf"^escaped {x.lower()}: paid ", out, re.M), out
        assert l1.client.token_balance(x) - before[x] == expected[x.lower()]
    out = await ok("l1", "refund", *chain, "--key", "0x" + kc.hex(), "--account", b)
    assert re.search(rf"^refunded deposit #{late}: 7 to {b.lower()}$", out, re.M), out
    assert l1.client.token_balance(b) - before[b] == expected[b.lower()] + 7 * UNIT


async def _eq(coro, value) -> bool:
    return (await coro) == value
