"""The test cluster: three real Kafka nodes on 127.0.0.1:19292-19297
(ISOROLL_TEST_KAFKA_CLUSTER_PORT, six ports from there) with data under
.devnet/test-kafka-cluster-<port>; fixtures in tests/cluster/conftest.py."""
from __future__ import annotations

import os

from sequencer.log.local_cluster import REPO, LocalCluster

CLUSTER_PORT = int(os.environ.get("ISOROLL_TEST_KAFKA_CLUSTER_PORT", "19292"))


def test_cluster() -> LocalCluster:
    return LocalCluster(CLUSTER_PORT, REPO / ".devnet" / f"test-kafka-cluster-{CLUSTER_PORT}")


test_cluster.__test__ = False  # a factory, not a test
