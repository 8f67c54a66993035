"""Standby sequencers (sequencer.node.election): two node processes with the
same sequencer id and ``standby = true`` on the real broker.  Exactly one is
active; the other follows and forwards the txs it gets; kill -9 of the active
one makes the standby take over by itself; a paused (SIGSTOP) active one is
replaced, and once resumed it is fenced, writes nothing and stands by.  Every
acknowledged tx is in the log exactly once and the nodes' state roots agree
with a fresh replay."""
from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from nodes import (free_port, kill_9, logged_record_hashes, make_config, replay_fresh, start_node_process,
                   wait_ready, wait_until)
from sequencer.executor.genesis import get_dev_accounts
from sequencer.sdk import ApiError, Client

pytestmark = pytest.mark.kafka

STANDBY_ENV = {"ISOROLL_STANDBY": "true", "ISOROLL_ELECTION_SESSION_TIMEOUT_MS": "3000",
               "ISOROLL_KAFKA_COMMIT_TIMEOUT_S": "3", "ISOROLL_LOG_LEVEL": "INFO"}


class Pair:
    """Two standby-mode sequencer processes, ``a`` started first."""

    def __init__(self, broker, topic, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.configs = {name: make_config(broker, topic, tmp_path / name, free_port(), sequencer_id="ha")
                        for name in ("a", "b")}
        self.procs = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.configs[name].api_port}"

    async def start(self, name: str) -> None:
        self.procs[name] = start_node_process(self.configs[name], self.tmp_path / f"{name}.log", **STANDBY_ENV)
        await wait_ready(self.url(name), timeout=90)

    async def start_active_and_standby(self) -> None:
        """a first (so it is elected), then b (which stands by)."""
        await self.start("a")
        await self.wait_active("a")
        await self.start("b")

    async def status(self, name: str) -> dict | None:
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                return (await http.get(self.url(name) + "/v1/status")).json()
        except (httpx.HTTPError, ValueError):
            return None

    async def wait_active(self, name: str, timeout: float = 60.0) -> dict:
        async def active():
            status = await self.status(name)
            return status if status and status["active"] else None
        return await wait_until(active, timeout=timeout, interval=0.05)

    def log_text(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                kill_9(proc)


class Load:
    """Clients sending transfers one after another through one URL."""

    def __init__(self, url: str, n: int = 3) -> None:
        accounts = get_dev_accounts(n)
        self.clients = [Client(url, key) for key, _ in accounts]
        self.peers = [accounts[(i + 1) % n][1] for i in range(n)]
        self.acked: list[tuple[dict, float]] = []
        self.refused = 0
        self._stop = asyncio.Event()
        self._tasks = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(c, p)) for c, p in zip(self.clients, self.peers)]

    async def _run(self, client, peer) -> None:
        async with client:
            while not self._stop.is_set():
                try:
                    self.acked.append((await client.transfer(peer, 1), time.monotonic()))
                except (ApiError, httpx.HTTPError):
                    self.refused += 1
                    await asyncio.sleep(0.05)

    async def until(self, count: int, after: float = 0.0, timeout: float = 60.0) -> None:
        async def enough():
            return sum(1 for _, t in self.acked if t > after) >= count
        await wait_until(enough, timeout=timeout)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def hashes(self) -> list[bytes]:
        return [bytes.fromhex(r["hash"][2:]) for r, _ in self.acked]


async def assert_exactly_once_and_same_root(pair: Pair, acked: list[bytes], names=("a", "b")) -> None:
    logged = await logged_record_hashes(pair.configs["a"])
    assert len(logged) == len(set(logged)), "a tx is in the log twice"
    missing = set(acked) - set(logged)
    assert not missing, f"{len(missing)} acknowledged txs missing from the log"
    fresh = await replay_fresh(pair.configs["a"])

    async def caught_up():
        statuses = [await pair.status(n) for n in names]
        return all(s and s["blockNumber"] == fresh.head_number for s in statuses) and statuses
    statuses = await wait_until(caught_up, timeout=60)
    assert {s["stateRoot"] for s in statuses} == {"0x" + fresh.state_root.hex()}


async def test_one_active_a_standby_forwards_and_takes_over_after_kill_9(broker, topic, tmp_path):
    pair = Pair(broker, topic, tmp_path)
    try:
        await pair.start_active_and_standby()
        status_b = await pair.status("b")
        # b joined: a keeps the lead, b stands by and knows who is active.
        assert status_b["mode"] == "standby" and status_b["active"] is False
        assert status_b["activeSequencer"] == pair.url("a") and status_b["electionTerm"] >= 1
        assert (await pair.status("a"))["active"] is True

        load = Load(pair.url("b"))  # every tx goes through the standby: forwarded to a
        load.start()
        await load.until(15)
        head_before = (await pair.status("b"))["blockNumber"]
        kill_9(pair.procs["a"])
        killed_at = time.monotonic()
        status = await pair.wait_active("b", timeout=60)
        async def new_block():
            s = await pair.status("b")
            return s if s and s["blockNumber"] > head_before else None
        await wait_until(new_block, timeout=60, interval=0.05)
        first_block_s = time.monotonic() - killed_at
        assert status["electionTerm"] > status_b["electionTerm"]
        await load.until(15, after=killed_at + first_block_s)
        print(f"kill -9 of the active sequencer -> b active and its first block after {first_block_s:.2f} s")
        await load.stop()
        assert "elected" in pair.log_text("b")

        # The old active comes back as a standby of b.
        await pair.start("a")
        status_a = await pair.status("a")
        assert status_a["active"] is False and status_a["activeSequencer"] == pair.url("b")
        await assert_exactly_once_and_same_root(pair, load.hashes())
    finally:
        pair.stop_all()


async def test_a_paused_active_sequencer_is_fenced_and_stands_by(broker, topic, tmp_path):
    pair = Pair(broker, topic, tmp_path)
    try:
        await pair.start_active_and_standby()
        load = Load(pair.url("b"))
        load.start()
        await load.until(10)

        zombie_key = get_dev_accounts(4)[3][0]
        async with Client(pair.url("b"), zombie_key) as signer:
            zombie_tx = await signer.signed_transfer(get_dev_accounts(1)[0][1], 1)
        os.kill(pair.procs["a"].pid, signal.SIGSTOP)
        paused_at = time.monotonic()
        # A tx sent to a while it is paused (a new connection: it waits in a's backlog).
        zombie_client = Client(pair.url("a"), zombie_key, timeout=90)
        zombie = asyncio.create_task(zombie_client.submit(zombie_tx))
        await pair.wait_active("b", timeout=60)
        active_after = time.monotonic() - paused_at
        await load.until(10, after=time.monotonic())
        print(f"a paused: b active {active_after:.2f} s after the pause")

        os.kill(pair.procs["a"].pid, signal.SIGCONT)
        async def standing_by():
            s = await pair.status("a")
            return s if s and s["mode"] == "standby" and s["activeSequencer"] == pair.url("b") else None
        status_a = await wait_until(standing_by, timeout=60)
        assert status_a["active"] is False
        text = pair.log_text("a")
        assert "FENCED" in text or "stepping down" in text
        try:
            zombie_receipt = await asyncio.wait_for(zombie, 60)
        except ApiError as exc:
            zombie_receipt = None
            assert exc.status == 503
        print(f"the tx sent to the paused sequencer: {zombie_receipt or 'refused (503)'}")
        await load.until(5, after=time.monotonic())
        await load.stop()
        await zombie_client.stop()
        acked = load.hashes()
        zombie_hash = bytes.fromhex(_hash(zombie_tx))
        logged = await logged_record_hashes(pair.configs["a"])
        if zombie_receipt is None:
            assert zombie_hash not in logged  # refused: never written
        else:
            acked.append(zombie_hash)  # a forwarded it to b after standing down
        await assert_exactly_once_and_same_root(pair, acked)
    finally:
        pair.stop_all()


def _hash(record) -> str:
    from sequencer.core.encoding import compute_record_hash, encode_record
    return compute_record_hash(encode_record(record)).hex()
