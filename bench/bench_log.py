"""What one partition takes: the transactional block writer (sequencer/log/kafka.py)
writing blocks back to back, one transaction each, as the sequencer does.

    .venv/bin/python -m bench log                 # the single bench broker
    .venv/bin/python -m bench log --cluster       # and the three-node cluster, with ratios
    .venv/bin/python -m bench log --cluster --sizes 1000,65536 --seconds 5

For each block size: blocks/s, MB/s and the commit latency (p50, p99) over
``--seconds`` of back-to-back writes to a fresh topic.  The single broker is
infra/kafka/kafka.sh on ISOROLL_BENCH_KAFKA_PORT (29092), replication 1; the
cluster is kafka.sh's cluster mode on ISOROLL_BENCH_KAFKA_CLUSTER_PORT (29292..29297),
replication 3 and min.insync.replicas=2, then a topic of replication 1 on the same
cluster (what three JVMs on one machine cost apart from replicating the block).  Either is started (and stopped again)
only if it is not running.  Each is warmed up first (``--warm-up`` seconds of
small commits): a fresh JVM spends its first tens of seconds compiling.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from dataclasses import dataclass

from bench.common import REPO, BenchBroker, delete_topic, say, system_busy_seconds

CLUSTER_PORT = int(os.environ.get("ISOROLL_BENCH_KAFKA_CLUSTER_PORT", "29292"))
DEFAULT_SIZES = (1_000, 16_384, 262_144, 1_048_576)


@dataclass(frozen=True)
class Run:
    target: str
    block_bytes: int
    blocks: int
    seconds: float
    latencies_ms: list[float]
    machine_busy: float
    """Share of all cores busy during the run (brokers, this process and anything else)."""

    @property
    def blocks_per_s(self) -> float:
        return self.blocks / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.blocks * self.block_bytes / self.seconds / 1e6

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        return (f"{self.target:8} {self.block_bytes:>9,} B  {self.blocks_per_s:8.1f} blocks/s  "
                f"{self.mb_per_s:7.2f} MB/s  commit p50 {self.percentile(0.5):6.1f} ms  "
                f"p99 {self.percentile(0.99):6.1f} ms  ({self.blocks} blocks, machine {self.machine_busy:.0%} busy)")


async def write_back_to_back(bootstrap: str, replication: int, block_bytes: int, seconds: float,
                             target: str) -> Run:
    from sequencer.log.kafka import BlockWriter, LogConfig, ensure_topic
    topic = f"isoroll.bench.log.{uuid.uuid4().hex[:8]}"
    config = LogConfig(bootstrap_servers=bootstrap, topic=topic, client_id="isoroll-bench-log",
                       transactional_id=f"isoroll-bench-log-{uuid.uuid4().hex[:8]}",
                       replication_factor=replication, min_insync_replicas=min(2, replication),
                       commit_timeout_s=30.0, request_timeout_ms=30_000)
    await ensure_topic(config)
    payload = os.urandom(block_bytes)
    latencies = []
    try:
        async with BlockWriter(config) as writer:
            busy = system_busy_seconds()
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                t = time.perf_counter()
                await writer.write(payload)
                latencies.append((time.perf_counter() - t) * 1000)
            elapsed = time.perf_counter() - started
            busy = (system_busy_seconds() - busy) / elapsed / (os.cpu_count() or 1)
    finally:
        await delete_topic(bootstrap.split(",")[0], topic)
    return Run(target, block_bytes, len(latencies), elapsed, latencies, busy)


async def measure(bootstrap: str, replication: int, target: str, sizes, seconds: float,
                  warm_up: float) -> list[Run]:
    if warm_up > 0:
        warm = await write_back_to_back(bootstrap, replication, 4_000, warm_up, target)
        say(f"  {target}: warm-up {warm.blocks} commits in {warm.seconds:.0f} s "
            f"(p50 {warm.percentile(0.5):.1f} ms)")
    runs = []
    for size in sizes:
        run = await write_back_to_back(bootstrap, replication, size, seconds, target)
        say("  " + run.line())
        runs.append(run)
    return runs


def summary(single: list[Run], cluster: list[Run]) -> list[str]:
    lines = [run.line() for run in single + cluster]
    for a, b in zip(single, cluster):
        lines.append(f"cluster/single at {a.block_bytes:>9,} B: blocks/s x{b.blocks_per_s / a.blocks_per_s:.2f}, "
                     f"commit p50 x{b.percentile(0.5) / a.percentile(0.5):.2f}")
    return lines


def main(argv: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(prog="python -m bench log", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster", action="store_true", help="also measure the three-node cluster")
    parser.add_argument("--cluster-only", action="store_true", help="measure the cluster only")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="block sizes in bytes")
    parser.add_argument("--seconds", type=float, default=10.0, help="back-to-back writes per size")
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds of small commits first")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    single: list[Run] = []
    cluster_runs: list[Run] = []
    cluster_rf1: list[Run] = []
    if not args.cluster_only:
        say(f"== single broker, replication 1 ({args.seconds:g} s per size) ==")
        with BenchBroker() as broker:
            single = asyncio.run(measure(broker.bootstrap, 1, "single", sizes, args.seconds, args.warm_up))
    if args.cluster or args.cluster_only:
        from sequencer.log.local_cluster import LocalCluster
        cluster = LocalCluster(CLUSTER_PORT, REPO / ".devnet" / f"bench-kafka-cluster-{CLUSTER_PORT}")
        started_here = not cluster.running_nodes()
        say(f"== three-node cluster, replication 3, min.insync.replicas 2 ({cluster.bootstrap}) ==")
        cluster.start()
        try:
            cluster_runs = asyncio.run(measure(cluster.bootstrap, 3, "cluster", sizes, args.seconds, args.warm_up))
            # The same cluster, a topic of one replica: what the three JVMs cost
            # apart from replicating the block (the transaction log stays replicated).
            say("== the same cluster, a topic with replication 1 ==")
            cluster_rf1 = asyncio.run(measure(cluster.bootstrap, 1, "clus-rf1", sizes, args.seconds, 0))
        finally:
            if started_here:
                cluster.stop()
    lines = summary(single, cluster_runs) if single and cluster_runs else [r.line() for r in single + cluster_runs]
    if cluster_runs:
        lines += [run.line() for run in cluster_rf1]
        lines += [f"cluster rf3/rf1 at {a.block_bytes:>9,} B: blocks/s x{b.blocks_per_s / a.blocks_per_s:.2f}"
                  for a, b in zip(cluster_rf1, cluster_runs)]
    say("\n== summary ==")
    for line in lines:
        say("  " + line)
    return lines
