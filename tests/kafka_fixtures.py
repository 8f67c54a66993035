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
    """The session's broker: started here unless it is running already (or in
    the background right after collection, tests/early_start.py: then this
    waits for that start).  One started here is killed and wiped at the end
    rather than stopped cleanly (~10 s at the end of every run); one that was
    running already is left running."""
    broker = Broker(TEST_PORT)
    pending = early_start.take("broker")
    if pending is not None:
        broker.started_here = True
        pending.wait()
    else:
        broker.started_here = not broker.is_running()
        if broker.started_here:
            broker.start()
    try:
        early_start.launch_deferred()
        yield broker
    finally:
        if broker.started_here:
            broker.discard()


DISPOSABLE_PORT = TEST_PORT + 2  # the session broker's controller takes TEST_PORT + 1
"""The broker of the tests that crash or stop their broker (its controller on +1)."""


@pytest.fixture(scope="session")
def disposable_broker_session():
    """A broker apart from the session's, booted (from wiped data) once for every
    test that crashes or stops its broker, so that doing so disturbs no other
    test; each of those tests writes to a topic of its own.  Killed and wiped
    at the end of the session.  Its broker session is 3 s (Kafka's 9 s by
    default): restarted after a kill -9, it registers (is ready) ~6 s sooner."""
    broker = Broker(DISPOSABLE_PORT, session_ms=3000)
    broker.wipe()
    broker.start()
    yield broker
    broker.discard()


@pytest.fixture
def disposable_broker(disposable_broker_session):
    """The disposable broker, up: a test that crashed it and failed before
    bringing it back leaves it down, and the next test starts it again."""
    broker = disposable_broker_session
    if not broker.is_running():
        broker.stop()  # clears a dead broker's pid file
        broker.start()
    return broker


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
