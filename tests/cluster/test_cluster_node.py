"""A sequencer node on the real three-broker cluster under a steady stream of
transfers: kill -9 the partition leader mid-stream and the node goes on by
itself; with a second broker down (below min.insync.replicas) every tx is
refused with 503 and nothing is acknowledged; with both back it goes on.  At
the end every acknowledged tx is in the log exactly once and a fresh replay of
the log reaches the live node's state root."""
from __future__ import annotations

import asyncio
import time

import pytest

from nodes import dev_clients, logged_record_hashes, make_config, replay_fresh, wait_until
from sequencer.log.local_cluster import TRANSACTION_STATE
from sequencer.node.service import Service
from sequencer.sdk import ApiError

pytestmark = [pytest.mark.cluster, pytest.mark.kafka]


class Load:
    """Clients sending transfers one after another until stopped."""

    def __init__(self, clients) -> None:
        self.clients = clients
        self.acked: list[tuple[dict, float]] = []
        self.refusals: list[ApiError] = []
        self.refused_at: list[tuple[int, float]] = []  # (client, when)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for i, client in enumerate(self.clients):
            peer = self.clients[(i + 1) % len(self.clients)]
            self._tasks.append(asyncio.create_task(self._run(i, client, peer)))

    async def _run(self, i, client, peer) -> None:
        while not self._stop.is_set():
            try:
                receipt = await client.transfer(peer.address, 1)
            except ApiError as exc:
                self.refusals.append(exc)
                self.refused_at.append((i, time.monotonic()))
                await asyncio.sleep(0.05)
                continue
            self.acked.append((receipt, time.monotonic()))

    async def acked_after(self, moment: float, count: int, timeout: float = 60.0) -> None:
        async def enough():
            return sum(1 for _, t in self.acked if t > moment) >= count
        await wait_until(enough, timeout=timeout)

    async def each_refused_after(self, moment: float, timeout: float = 30.0) -> None:
        """Until every client has been refused once after ``moment``: each sends one
        tx at a time, so whatever it had in flight at ``moment`` is answered."""
        async def all_refused():
            return {i for i, t in self.refused_at if t > moment} == set(range(len(self.clients)))
        await wait_until(all_refused, timeout=timeout)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def test_node_rides_out_a_leader_crash_and_refuses_below_min_isr(cluster, cluster_topic, tmp_path, api_port):
    config = make_config(cluster, cluster_topic, tmp_path, api_port, kafka_replication_factor=3,
                         kafka_min_insync_replicas=2, kafka_commit_timeout_s=3.0, kafka_request_timeout_ms=3000)
    async with Service(config) as service:
        clients = dev_clients(service.url, 3)
        for client in clients:
            await client.__aenter__()
        load = Load(clients)
        try:
            load.start()
            await load.acked_after(0, 20)
            await cluster.wait_in_sync(cluster_topic, TRANSACTION_STATE)
            leader = await cluster.leader(cluster_topic)
            await asyncio.to_thread(cluster.kill, leader)
            killed_at = time.monotonic()
            await load.acked_after(killed_at, 20)
            first_after = min(t for _, t in load.acked if t > killed_at)
            print(f"leader {leader} killed; first tx acknowledged {first_after - killed_at:.2f} s later, "
                  f"{len(load.refusals)} refused meanwhile")

            # A second broker down: one replica left, below min.insync.replicas.
            second = next(n for n in cluster.running_nodes())
            await asyncio.to_thread(cluster.kill, second)
            await load.each_refused_after(time.monotonic())  # the txs in flight when it died are answered
            outage_started = time.monotonic()
            refused_before = len(load.refusals)
            await asyncio.sleep(4)
            acked_in_outage = [r for r, t in load.acked if t > outage_started]
            assert acked_in_outage == []
            refused = load.refusals[refused_before:]
            assert refused and all(e.status == 503 and e.code == "log_unavailable" for e in refused)

            back_at = time.monotonic()
            await asyncio.to_thread(cluster.start_nodes, leader, second)
            await load.acked_after(back_at, 10, timeout=90)
        finally:
            await load.stop()
            for client in clients:
                await client.__aexit__(None, None, None)
        live_root = service.node.chain.state_root

    hashes = await logged_record_hashes(config)
    acked = [bytes.fromhex(receipt["hash"][2:]) for receipt, _ in load.acked]
    assert len(set(acked)) == len(acked) >= 50
    counts = {h: 0 for h in acked}
    for h in hashes:
        if h in counts:
            counts[h] += 1
    assert [h.hex() for h, n in counts.items() if n != 1] == []
    assert len(hashes) == len(set(hashes)), "a tx is in the log twice"
    fresh = await replay_fresh(config)
    assert fresh.state_root == live_root
