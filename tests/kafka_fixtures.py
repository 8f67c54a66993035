"""Fixtures for tests against the real Kafka broker (started here if needed).
Loaded for every test folder by tests/conftest.py (pytest_plugins)."""
from __future__ import annotations

import socket
import uuid

import pytest

import early_start
from kafka_broker import TEST_PORT, Broker


@pytest.fixture(scope="session")
def broker():
    """The session's broker: started here unless it is running already, then
    stopped again only if started here (or in the background right after
    collection, tests/early_start.py: then this waits for that start)."""
    pending = early_start.take("broker")
    if pending is None:
        with Broker(TEST_PORT) as broker:
            early_start.launch_deferred()
            yield broker
        return
    broker = Broker(TEST_PORT)
    broker.started_here = True
    try:
        pending.wait()
        early_start.launch_deferred()
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic() -> str:
    return "test-" + uuid.uuid4().hex[:12]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def api_port() -> int:
    return free_port()
