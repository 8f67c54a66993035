"""Fixtures for the tests against the real three-node Kafka cluster
(tests/kafka_cluster.py).  Tests here kill nodes: ``cluster`` hands each test
all three nodes up and restarts any a test left down."""
from __future__ import annotations

import asyncio
import uuid

import pytest

import early_start
from kafka_cluster import test_cluster
from sequencer.log.local_cluster import NODE_IDS


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: needs the three-node Kafka cluster that tests/cluster starts")


@pytest.fixture(scope="session")
def cluster_session():
    cluster = test_cluster()
    pending = early_start.take("cluster")  # started in the background after collection (tests/early_start.py)
    if pending is not None:
        started_here = True
        pending.wait()
    else:
        started_here = not cluster.running_nodes()
    cluster.start()  # starts whatever is down; a no-op when all three run
    yield cluster
    if started_here:
        # kill -9 rather than a clean stop (11-18 s for the three at the end of the
        # session): these tests crash its nodes all along, and the next start
        # recovers the tests' data as after any of those crashes
        cluster.kill(*NODE_IDS)


async def _start_missing(cluster) -> None:
    down = [n for n in NODE_IDS if n not in cluster.running_nodes()]
    if down:
        await asyncio.to_thread(cluster.start_nodes, *down)


@pytest.fixture
async def cluster(cluster_session):
    await _start_missing(cluster_session)
    yield cluster_session
    await _start_missing(cluster_session)


@pytest.fixture
def cluster_topic() -> str:
    return "cluster-" + uuid.uuid4().hex[:12]
