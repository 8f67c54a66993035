"""Replay of a long devnet log gives the live run's state root at every block
(issue 4): several hundred blocks of transfers, batches, concurrent txs,
withdrawals and (when the trading SDK is there) oracle prices and trades,
written by a sequencer on the real broker; then a fresh executor
(tests/nodes.replay_fresh, Chain.root_interval = 1) replays the topic."""
from __future__ import annotations

import asyncio
import time

import pytest

from nodes import dev_clients, make_config, replay_fresh
from sequencer.node.service import Service
from sequencer.sdk import ApiError

pytestmark = pytest.mark.kafka

BLOCKS = 400
BTC, USDC = 1, 10**6


async def retrying(make_call, timeout: float = 60.0):
    """Other suites stop and start the shared broker: a 503 (nothing acknowledged)
    is retried with a freshly signed tx.  The roots compared are those of whatever
    reached the log, so retries do not weaken the check."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await make_call()
        except ApiError as exc:
            if exc.status != 503 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def batch(sender, to) -> list[dict]:
    receipts = await sender.submit_many([await sender.signed_transfer(to.address, 1 + j) for j in range(5)])
    unavailable = [r for r in receipts if r.get("code") in ("log_unavailable", "not_the_sequencer")]
    if unavailable:
        raise ApiError(503, unavailable[0]["code"], unavailable[0].get("message", ""))
    return receipts


async def test_fresh_replay_gives_the_live_root_at_every_block(broker, topic, tmp_path, api_port):
    # its own transactional id: other suites share the broker
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id=topic, block_interval_ms=2,
                         catch_up_root_interval_blocks=1)
    started = time.perf_counter()
    async with Service(config) as service:
        clients = dev_clients(service.url)
        a, b, c, d = clients
        async with a, b, c, d:
            trading = hasattr(a, "place_order")
            if trading:
                from sequencer.oracle import Feeder
                feeder = Feeder(c, source=None)
            i = 0
            while service.node.chain.head_number < BLOCKS:
                i += 1
                sender, to = clients[i % 4], clients[(i + 1) % 4]
                if i % 7 == 0:  # a batch in one block
                    receipts = await retrying(lambda: batch(sender, to))
                    assert all(r["status"] == "ok" for r in receipts)
                elif i % 11 == 0:  # concurrent txs from several accounts
                    receipts = await asyncio.gather(*(retrying(lambda cl=cl, k=k: cl.transfer(
                        clients[(k + 2) % 4].address, 3)) for k, cl in enumerate(clients)))
                    assert all(r["status"] == "ok" for r in receipts)
                elif i % 13 == 0:
                    assert (await retrying(lambda: sender.withdraw(1_000 + i)))["status"] == "ok"
                elif trading and i % 17 == 0:
                    price = (60_000 + (i % 50) * 10) * USDC
                    update = await feeder.post(BTC, price)
                    if update.receipt is None:  # the broker was away: skip this trade
                        continue
                    await retrying(lambda: b.place_order(BTC, False, price, 10**5, leverage=5))
                    taker = await retrying(lambda: a.place_order(BTC, True, price, 10**5, leverage=5))
                    assert taker["status"] == "ok", taker
                else:
                    assert (await retrying(lambda: sender.transfer(to.address, 10 + i)))["status"] == "ok"
        live = dict(service.node.chain.block_infos)
        live_root = service.node.chain.state_root
    built = time.perf_counter() - started
    assert len(live) >= BLOCKS and all(info.state_root is not None for info in live.values())

    replay_started = time.perf_counter()
    fresh = await replay_fresh(config)
    replayed = time.perf_counter() - replay_started
    assert fresh.root_interval == 1
    assert sorted(fresh.block_infos) == sorted(live)
    differing = [n for n, info in live.items()
                 if (fresh.block_infos[n].state_root, fresh.block_infos[n].hash) != (info.state_root, info.hash)]
    assert differing == [], f"state roots differ from block {differing[0]} on"
    assert fresh.state_root == live_root
    assert len({info.state_root for info in live.values()}) == len(live)  # every block changed the state

    # The node's catch-up mode (roots every 64 blocks, then the head) lands on the same roots.
    from nodes import read_log
    from sequencer.executor.chain import Chain
    from sequencer.executor.genesis import build_genesis
    from sequencer.node.config import load_allocations
    from sequencer.node.node import make_context
    deferred = Chain(build_genesis(load_allocations(config)), make_context(config))
    deferred.root_interval = 64
    for message in await read_log(config):
        deferred.apply_message(message.offset, message.value, message.schema)
    deferred.finish_catch_up()
    rooted = {n: i.state_root for n, i in deferred.block_infos.items() if i.state_root is not None}
    assert len(rooted) >= len(live) // 64 and max(rooted) == max(live)
    assert all(live[n].state_root == root for n, root in rooted.items())
    print(f"\n{len(live)} blocks, {sum(i.tx_count for i in live.values())} records: live {built:.1f}s, "
          f"fresh replay {replayed:.2f}s, every root equal")
