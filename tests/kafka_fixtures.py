"""Fixtures for tests against the real Kafka broker (started here if needed).
Loaded for every test folder by tests/conftest.py (pytest_plugins)."""
from __future__ import annotations

import socket
import uuid

import pytest

from kafka_broker import TEST_PORT, Broker


@pytest.fixture(scope="session")
def broker():
    """The session's broker: started here unless it is running already, then
    stopped again only if started here."""
    with Broker(TEST_PORT) as broker:
        yield broker


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
