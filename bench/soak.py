"""Soak: random kill -9 of Kafka brokers and of the sequencer under load, then
the exactly-once check and the root agreement.

    .venv/bin/python -m bench soak                          # 20 cycles, at most 15 minutes
    .venv/bin/python -m bench soak --cycles 60 --max-seconds 3600 --seed 7

Runs on the three-node cluster (kafka.sh's cluster mode on
ISOROLL_SOAK_KAFKA_CLUSTER_PORT, 29392..29397; started and stopped here unless
it is running), a fresh topic with replication 3 and min.insync.replicas=2.
Processes: two sequencer nodes with the same sequencer id in standby mode
(one active, elected through Kafka; sequencer.node.election) and one follower
(``isoroll node``, each its own process group), and ``--clients`` SDK clients
sending transfers one after another to the sequencers' URLs (a standby
forwards to the active one; a client whose node died or answers 503 moves to
the next URL).
Each cycle, after a few seconds of load, one of:

- broker: kill -9 a random broker (the partition leader or a follower), start
  it again after 1-4 s, wait until it is back in the ISR;
- sequencer: kill -9 the active sequencer; the standby takes over by itself;
  the killed one is started again in its data dir after 1-4 s (crash recovery
  from its snapshot) and stands by.

The failover time of a cycle is from the kill to the first acknowledgement of
a tx sent after the kill.  At the end: every acknowledged tx is in the log
exactly once (``lost``, ``duplicates`` count the others, of all txs in the
log), and the sequencer, the follower and a fresh follower that replays the
whole log report the same block and state root.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import REPO, free_port, say

CLUSTER_PORT = int(os.environ.get("ISOROLL_SOAK_KAFKA_CLUSTER_PORT", "29392"))
KINDS = ("broker", "sequencer")


# --- node processes ---------------------------------------------------------------------

def node_module() -> str:
    return "isoroll.cli" if importlib.util.find_spec("isoroll.cli") else "sequencer.cli"


class NodeProcess:
    """``isoroll node`` in a process group of its own (its tx-check workers die with it)."""

    def __init__(self, name: str, bootstrap: str, topic: str, data_dir: Path, port: int,
                 mode: str = "sequencer", sequencer_id: str = "soak", standby: bool = False) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self.env = dict(os.environ, ISOROLL_KAFKA_BOOTSTRAP_SERVERS=bootstrap, ISOROLL_KAFKA_TOPIC=topic,
                        ISOROLL_KAFKA_REPLICATION_FACTOR="3", ISOROLL_KAFKA_MIN_INSYNC_REPLICAS="2",
                        ISOROLL_KAFKA_COMMIT_TIMEOUT_S="3", ISOROLL_KAFKA_REQUEST_TIMEOUT_MS="3000",
                        ISOROLL_DATA_DIR=str(data_dir), ISOROLL_API_PORT=str(port), ISOROLL_API_HOST="127.0.0.1",
                        ISOROLL_MODE=mode, ISOROLL_SEQUENCER_ID=sequencer_id, ISOROLL_GENESIS_DEV_ACCOUNTS="8",
                        ISOROLL_SNAPSHOT_INTERVAL_BLOCKS="200", ISOROLL_LOG_FORMAT="text",
                        ISOROLL_LOG_LEVEL="WARNING", ISOROLL_PRESET="devnet",
                        ISOROLL_STANDBY="true" if standby else "false", ISOROLL_ELECTION_SESSION_TIMEOUT_MS="3000")
        self.proc: subprocess.Popen | None = None

    def start(self, log_dir: Path) -> None:
        log = open(log_dir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", node_module(), "node"], cwd=REPO, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def kill_9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill_9()

    async def status(self) -> dict | None:
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                answer = await http.get(self.url + "/v1/status")
            return answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    async def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    if (await http.get(self.url + "/readyz")).status_code == 200:
                        return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout:g} s")


# --- load -------------------------------------------------------------------------------

@dataclass
class Load:
    """SDK clients sending transfers one after another; records (sent, acked, hash).
    A client whose node cannot be reached or answers 503 moves to the next URL."""
    urls: list[str]
    clients: int
    acked: list[tuple[float, float, bytes]] = field(default_factory=list)
    refused: int = 0
    unreachable: int = 0
    unanswered: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self) -> None:
        from sequencer.executor.genesis import get_dev_accounts
        from sequencer.sdk import Client
        accounts = get_dev_accounts(self.clients)
        for i, (key, _) in enumerate(accounts):
            peer = accounts[(i + 1) % len(accounts)][1]
            self._tasks.append(asyncio.create_task(self._run(key, peer, i)))

    async def _run(self, key: bytes, peer: bytes, first: int) -> None:
        from sequencer.sdk import ApiError, Client
        turn = first
        while not self._stop.is_set():
            async with Client(self.urls[turn % len(self.urls)], key) as client:
                while not self._stop.is_set():
                    sent = time.monotonic()
                    try:
                        tx = await client.signed_transfer(peer, 1)
                        receipt = await client.submit(tx)
                    except ApiError as exc:
                        self.refused += 1
                        if exc.status == 503:
                            break  # this node cannot take it now: try the next one
                        await asyncio.sleep(0.05)
                        continue
                    except httpx.ConnectError:
                        self.unreachable += 1  # nothing listening: nothing sent
                        break
                    except (httpx.HTTPError, OSError):
                        self.unanswered += 1  # the node died mid-request: not acknowledged
                        break
                    self.acked.append((sent, time.monotonic(), bytes.fromhex(receipt["hash"][2:])))
            turn += 1
            await asyncio.sleep(0.05)

    async def first_ack_sent_after(self, moment: float, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            acks = [acked for sent, acked, _ in self.acked[-500:] if sent > moment]
            if acks:
                return min(acks)
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no tx acknowledged within {timeout:g} s")

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


# --- the soak ---------------------------------------------------------------------------

@dataclass
class Report:
    cycles: list[tuple[str, float]] = field(default_factory=list)
    acked: int = 0
    refused: int = 0
    unanswered: int = 0
    in_log: int = 0
    lost: int = 0
    duplicates: int = 0
    roots: dict[str, tuple[int, str]] = field(default_factory=dict)
    stalls: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicates == 0 and self.roots_agree and not self.stalls

    @property
    def roots_agree(self) -> bool:
        return len(set(self.roots.values())) == 1

    def lines(self) -> list[str]:
        out = [f"cycles {len(self.cycles)} in {self.seconds:.0f} s: "
               + ", ".join(f"{k} {sum(1 for c, _ in self.cycles if c.startswith(k))}" for k in KINDS),
               f"txs acknowledged {self.acked:,}, refused (503) {self.refused:,}, sent but unanswered "
               f"(node killed mid-request) {self.unanswered:,}; "
               f"txs in the log {self.in_log:,}",
               f"lost {self.lost}, duplicates {self.duplicates}",
               "roots " + ("agree" if self.roots_agree else "DISAGREE") + ": "
               + "; ".join(f"{name} block {n} {root[:18]}" for name, (n, root) in self.roots.items())]
        out += ["STALL " + stall for stall in self.stalls]
        for kind in sorted({c for c, _ in self.cycles}):
            times = [t for c, t in self.cycles if c == kind]
            out.append(f"failover after {kind} kill -9 ({len(times)}): min {min(times):.2f} s, "
                       f"median {statistics.median(times):.2f} s, max {max(times):.2f} s")
        return out


async def count_logged(bootstrap: str, topic: str) -> dict[bytes, int]:
    from sequencer.core.encoding import compute_record_hash, decode_block
    from sequencer.log.kafka import BlockReader, LogConfig
    counts: dict[bytes, int] = {}
    async with BlockReader(LogConfig(bootstrap_servers=bootstrap, topic=topic), 0) as reader:
        end = await reader.end_offset()
        while await reader.position() < end:
            for message in await reader.read(timeout_ms=500):
                try:
                    block = decode_block(message.value)
                except Exception:  # not a block (an L1 inbox message or garbage): no txs of ours
                    continue
                for raw in block.records:
                    h = compute_record_hash(raw)
                    counts[h] = counts.get(h, 0) + 1
    return counts


async def wait_same_head(nodes: list[NodeProcess], timeout: float = 120.0) -> dict[str, tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = {n.name: await n.status() for n in nodes}
        heads = {name: (s["blockNumber"], s["stateRoot"]) for name, s in statuses.items() if s}
        if len(heads) == len(nodes) and len({n for n, _ in heads.values()}) == 1:
            return heads
        if time.monotonic() > deadline:
            return heads
        await asyncio.sleep(0.3)


async def run_soak(cluster, cycles: int, max_seconds: float, seed: int, clients: int, work: Path,
                   kinds: list[str] | None = None) -> Report:
    """Kill and restart for ``cycles`` cycles or until ``max_seconds`` have passed;
    ``kinds`` fixes the cycles' kinds in order (else random)."""
    from sequencer.log.kafka import LogConfig, ensure_topic
    from sequencer.log.local_cluster import TRANSACTION_STATE
    rng = random.Random(seed)
    started = time.monotonic()
    topic = f"isoroll.soak.{uuid.uuid4().hex[:8]}"
    await ensure_topic(LogConfig(bootstrap_servers=cluster.bootstrap, topic=topic, replication_factor=3,
                                 min_insync_replicas=2))
    sequencers = [NodeProcess(f"sequencer-{name}", cluster.bootstrap, topic, work / f"sequencer-{name}",
                              free_port(), standby=True) for name in ("a", "b")]
    follower = NodeProcess("follower", cluster.bootstrap, topic, work / "follower", free_port(), mode="follower")
    report = Report()
    load = Load([s.url for s in sequencers], clients)
    try:
        for node in (*sequencers, follower):
            node.start(work)
            await node.wait_ready()
        load.start()
        await load.first_ack_sent_after(time.monotonic(), 60)
        for cycle in range(cycles):
            if time.monotonic() - started > max_seconds:
                say(f"  time is up after {cycle} cycles")
                break
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            kind = kinds[cycle % len(kinds)] if kinds else rng.choice(KINDS)
            if kind == "broker":
                await cluster.wait_in_sync(topic, TRANSACTION_STATE, timeout=120)
                leader = await cluster.leader(topic)
                victim = rng.choice(cluster.running_nodes())
                label = "broker (leader)" if victim == leader else "broker (follower)"
                await asyncio.to_thread(cluster.kill, victim)
                killed_at = time.monotonic()
                await asyncio.sleep(rng.uniform(1.0, 4.0))
                await asyncio.to_thread(cluster.start_nodes, victim)
            else:
                active = await wait_for_active(sequencers)
                label = "sequencer (active)"
                active.kill_9()
                killed_at = time.monotonic()
                await asyncio.sleep(rng.uniform(1.0, 4.0))
                active.start(work)  # crash recovery in its data dir; it stands by
            try:
                failover = await load.first_ack_sent_after(killed_at, 180) - killed_at
            except TimeoutError:
                statuses = {n.name: await n.status() for n in (*sequencers, follower)}
                report.stalls.append(f"cycle {cycle + 1} ({label}): no tx acknowledged within 180 s; "
                                     + "; ".join(f"{name}: {_brief(s)}" for name, s in statuses.items()))
                say("  STALL " + report.stalls[-1])
                break
            report.cycles.append((label, failover))
            say(f"  cycle {cycle + 1}: kill -9 {label}: next tx acknowledged after {failover:.2f} s "
                f"({len(load.acked):,} acknowledged so far)")
        await load.stop()
        await cluster.wait_in_sync(topic, TRANSACTION_STATE, timeout=120)
        fresh = NodeProcess("fresh-follower", cluster.bootstrap, topic, work / "fresh", free_port(), mode="follower")
        fresh.start(work)
        try:
            for node in sequencers:
                await node.wait_ready()
            await fresh.wait_ready()
            report.roots = await wait_same_head([*sequencers, follower, fresh])
        finally:
            fresh.stop()
    finally:
        await load.stop()
        for node in (*sequencers, follower):
            node.stop()
    logged = await count_logged(cluster.bootstrap, topic)
    acked = [h for _, _, h in load.acked]
    report.acked, report.refused, report.unanswered = len(acked), load.refused, load.unanswered
    report.in_log = sum(logged.values())
    report.lost = sum(1 for h in acked if h not in logged)
    report.duplicates = sum(n - 1 for n in logged.values() if n > 1) + (len(acked) - len(set(acked)))
    report.seconds = time.monotonic() - started
    return report


def _brief(status: dict | None) -> str:
    if not status:
        return "no answer"
    return (f"{status.get('mode')}, status {status.get('status')!r}, block {status.get('blockNumber')}, "
            f"active sequencer {status.get('activeSequencer')}")


async def wait_for_active(sequencers: list[NodeProcess], timeout: float = 60.0) -> NodeProcess:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in sequencers:
            status = await node.status()
            if status and status.get("active"):
                return node
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no active sequencer after {timeout:g} s")


def main(argv: list[str]) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="no new cycle after this")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the node data dirs and logs")
    args = parser.parse_args(argv)
    from sequencer.log.local_cluster import LocalCluster
    cluster = LocalCluster(CLUSTER_PORT, REPO / ".devnet" / f"soak-kafka-cluster-{CLUSTER_PORT}")
    started_here = not cluster.running_nodes()
    work = Path(tempfile.mkdtemp(prefix="isoroll-soak-"))
    say(f"== soak: {args.cycles} cycles, at most {args.max_seconds:g} s, seed {args.seed}, "
        f"cluster {cluster.bootstrap}, logs in {work} ==")
    cluster.start()
    try:
        report = asyncio.run(run_soak(cluster, args.cycles, args.max_seconds, args.seed, args.clients, work))
    finally:
        if started_here:
            cluster.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    say("\n== soak summary ==")
    for line in report.lines():
        say("  " + line)
    return report
