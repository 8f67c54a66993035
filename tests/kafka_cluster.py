"""The test cluster: three real Kafka nodes on 127.0.0.1:19292-19297
(ISOROLL_TEST_KAFKA_CLUSTER_PORT, six ports from there) with data under
.devnet/test-kafka-cluster-<port>; fixtures in tests/cluster/conftest.py."""
from __future__ import annotations

import asyncio
import os

from sequencer.log.local_cluster import NODE_IDS, REPO, LocalCluster

CLUSTER_PORT = int(os.environ.get("ISOROLL_TEST_KAFKA_CLUSTER_PORT", "19292"))
TRANSACTION_STATE = "__transaction_state"


def test_cluster() -> LocalCluster:
    return LocalCluster(CLUSTER_PORT, REPO / ".devnet" / f"test-kafka-cluster-{CLUSTER_PORT}")


test_cluster.__test__ = False  # a factory, not a test


async def wait_in_sync(cluster: LocalCluster, *topics: str, timeout: float = 60.0) -> None:
    """Wait until partition 0 of each topic has all three replicas in its ISR
    (a restarted node has caught up), so that killing another node leaves two."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        states = []
        for topic in topics:
            try:
                states.append(await cluster.describe(topic))
            except Exception as exc:  # not created yet, or no leader right now
                states.append({"error": repr(exc)})
        if all(len(s.get("isr", ())) == len(NODE_IDS) and s.get("leader", -1) in NODE_IDS for s in states):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"replicas not in sync after {timeout:g} s: {states}")
        await asyncio.sleep(0.5)
