"""Operators' signals on a broker of the test's own: /readyz follows a broker
outage within about a second (not after the commit timeout), and a clean
shutdown (SIGTERM) finishes within a few seconds under load and with the
broker down, writing its snapshot and losing no acknowledged tx."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest

from kafka_broker import Broker
from nodes import (dev_clients, free_port, logged_record_hashes, make_config, start_node_process, wait_ready,
                   wait_until)
from sequencer.node.service import Service
from sequencer.sdk import ApiError

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SHUTDOWN_BOUND_S = 5.0


@pytest.fixture
def own_broker(disposable_broker):
    """A broker apart from the session's (tests/kafka_fixtures.py, booted once
    for this module and test_broker_outage.py), so crashing it disturbs no
    other test; each test writes to a topic of its own."""
    return disposable_broker


def crash(broker: Broker) -> float:
    """kill -9 the broker, as a crashed machine; returns when its port stopped
    taking connections (the kernel closes a killed JVM's sockets only once the
    process is torn down, which takes a moment on a busy machine)."""
    pid = broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    while True:
        try:
            socket.create_connection(("127.0.0.1", broker.port), timeout=0.5).close()
        except OSError:
            gone = time.monotonic()
            break
        time.sleep(0.01)
    return gone


async def get_ready(http: httpx.AsyncClient) -> int:
    try:
        return (await http.get("/readyz", timeout=2)).status_code
    except httpx.HTTPError:
        return 0


async def test_readyz_follows_a_broker_outage_within_a_second(own_broker, tmp_path, api_port):
    config = make_config(own_broker, "ready-" + uuid.uuid4().hex[:8], tmp_path, api_port,
                         kafka_commit_timeout_s=5.0)
    async with Service(config) as service, httpx.AsyncClient(base_url=service.url) as http:
        a, b, *_ = dev_clients(service.url)
        async with a:
            assert (await a.transfer(b.address, 1))["status"] == "ok"
        assert await get_ready(http) == 200
        for _ in range(2):  # two outages: the signal comes back and goes again
            gone = await asyncio.to_thread(crash, own_broker)
            while await get_ready(http) == 200:
                assert time.monotonic() - gone < 3.0, "/readyz still 200 three seconds into the outage"
                await asyncio.sleep(0.05)
            lag = time.monotonic() - gone
            body = (await http.get("/readyz")).json()
            assert body["ready"] is False and "Kafka" in body["status"], body
            print(f"/readyz 503 {lag:.2f} s after the broker was killed")
            assert lag < 1.5, lag
            await asyncio.to_thread(own_broker.stop)  # only clears the pid file now
            await asyncio.to_thread(own_broker.start)
            await wait_until(lambda: _ready_now(http), timeout=90)
            async with dev_clients(service.url)[0] as a:
                assert (await a.transfer(b.address, 1))["status"] == "ok"


async def _ready_now(http) -> bool:
    return await get_ready(http) == 200


async def send_until(client, to, acked: list, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            acked.append(await client.transfer(to, 1))
        except (ApiError, httpx.HTTPError, OSError):
            await asyncio.sleep(0.05)  # refused (503) or the node went away: not acknowledged


def snapshots(data_dir: str) -> list[Path]:
    return sorted((Path(data_dir) / "snapshots").glob("snapshot-*.bin"), key=lambda p: p.stat().st_mtime)


async def sigterm_and_time(process) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(process.wait, 30)
    took = time.monotonic() - started
    assert code == 0, code
    return took


@pytest.mark.parametrize("broker_down", [False, True], ids=["under-load", "broker-down"])
async def test_sigterm_finishes_within_seconds(own_broker, tmp_path, broker_down):
    port = free_port()
    config = make_config(own_broker, "stop-" + uuid.uuid4().hex[:8], tmp_path, port, genesis_dev_accounts=8,
                         kafka_commit_timeout_s=5.0)
    url = f"http://127.0.0.1:{port}"
    process = start_node_process(config, tmp_path / "node.log")
    clients = dev_clients(url, 8)
    acked: list[dict] = []
    stop = asyncio.Event()
    senders = []
    try:
        await wait_ready(url)
        senders = [asyncio.create_task(send_until(c, clients[(i + 1) % 8].address, acked, stop))
                   for i, c in enumerate(clients)]
        await wait_until(lambda: _at_least(acked, 100), timeout=60)
        if broker_down:
            await asyncio.to_thread(crash, own_broker)
            await asyncio.sleep(1.0)  # blocks in flight hang on the dead broker
        signalled = time.time()
        took = await sigterm_and_time(process)
        assert took < SHUTDOWN_BOUND_S, took
        print(f"SIGTERM to exit: {took:.2f} s (broker down: {broker_down})")
    finally:
        stop.set()
        await asyncio.gather(*senders)
        for c in clients:
            await c.stop()
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert snapshots(config.data_dir)[-1].stat().st_mtime >= signalled  # the clean shutdown wrote one
    if broker_down:
        await asyncio.to_thread(own_broker.stop)  # only clears the pid file now
        await asyncio.to_thread(own_broker.start)
    hashes = await logged_record_hashes(config)
    for receipt in acked:
        assert hashes.count(bytes.fromhex(receipt["hash"][2:])) == 1


async def _at_least(items: list, n: int) -> bool:
    return len(items) >= n
