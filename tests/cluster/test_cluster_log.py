"""The transactional block writer (sequencer/log/kafka.py) on a real
three-broker cluster, topic with replication 3 and min.insync.replicas=2.

- kill -9 the partition leader mid-stream: after the leader election the writer
  (restarted on its retriable error, as the node does) goes on, and every
  acknowledged block is in the log exactly once, at the offset acknowledged.
- a second broker down: no write is acknowledged (a retriable ``LogUnavailable``
  within the commit timeout); once they are back the writer goes on.

Each payload is written once and never retried, so a payload read twice would
be a duplicate made by the log, and an acknowledged one missing a loss."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from sequencer.log.kafka import BlockReader, BlockWriter, LogConfig, LogUnavailable, ensure_topic
from sequencer.log.local_cluster import NODE_IDS, TRANSACTION_STATE

pytestmark = [pytest.mark.cluster, pytest.mark.kafka]

BLOCKS_BEFORE = 15
BLOCKS_AFTER = 15
DEADLINE_S = 60.0


def log_config(cluster, topic: str) -> LogConfig:
    return LogConfig(bootstrap_servers=cluster.bootstrap, topic=topic,
                     transactional_id=f"cluster-test-{uuid.uuid4().hex[:8]}", replication_factor=3,
                     min_insync_replicas=2, request_timeout_ms=3000, commit_timeout_s=1.5)


class Stream:
    """Writes numbered payloads one by one; remembers which were acknowledged
    (with their offset) and which failed.  A failed write restarts the writer,
    which fences its own previous producer and aborts its open transaction."""

    def __init__(self, config: LogConfig) -> None:
        self.config = config
        self.writer = BlockWriter(config)
        self.acked: dict[bytes, tuple[int, float]] = {}
        self.failed: list[bytes] = []
        self.errors: list[LogUnavailable] = []
        self.next = 0

    def payload(self) -> bytes:
        self.next += 1
        return b"block-%06d-" % self.next + bytes(200)

    async def write_one(self) -> bool:
        if not self.writer.started:
            try:
                await self.writer.start()
            except LogUnavailable as exc:
                self.errors.append(exc)
                await asyncio.sleep(0.2)
                return False
        payload = self.payload()
        try:
            offset = await self.writer.write(payload)
        except LogUnavailable as exc:
            self.failed.append(payload)
            self.errors.append(exc)
            return False
        self.acked[payload] = (offset, time.monotonic())
        return True

    async def write_acked(self, count: int, deadline_s: float = DEADLINE_S) -> None:
        target = len(self.acked) + count
        deadline = time.monotonic() + deadline_s
        while len(self.acked) < target:
            assert time.monotonic() < deadline, (f"only {len(self.acked)} of {target} blocks acknowledged in "
                                                 f"{deadline_s:g} s; last errors {self.errors[-3:]}")
            await self.write_one()


async def read_all(config: LogConfig) -> list:
    async with BlockReader(config, 0) as reader:
        end = await reader.end_offset()
        out = []
        while await reader.position() < end:
            out += await reader.read(timeout_ms=500)
        return out


def assert_exactly_once(stream: Stream, messages) -> dict[bytes, int]:
    counts: dict[bytes, int] = {}
    for message in messages:
        counts[message.value] = counts.get(message.value, 0) + 1
    duplicates = {p[:13]: n for p, n in counts.items() if n > 1}
    assert not duplicates, f"payloads read more than once: {duplicates}"
    offsets = {m.value: m.offset for m in messages}
    lost = [p[:13] for p in stream.acked if p not in offsets]
    assert not lost, f"acknowledged blocks missing from the log: {lost}"
    moved = [(p[:13], at, offsets[p]) for p, (at, _) in stream.acked.items() if offsets[p] != at]
    assert not moved, f"acknowledged blocks at another offset than acknowledged: {moved}"
    order = [m.value for m in messages]
    assert order == sorted(order), "blocks out of write order"
    return counts


async def test_writer_survives_a_leader_crash_and_refuses_below_min_isr(cluster, cluster_topic):
    config = log_config(cluster, cluster_topic)
    await ensure_topic(config)
    stream = Stream(config)
    try:
        await stream.write_acked(BLOCKS_BEFORE)
        await cluster.wait_in_sync(cluster_topic, TRANSACTION_STATE)
        leader = await cluster.leader(cluster_topic)
        # Keep writing while the leader dies: the kill lands mid-stream.
        writing = asyncio.create_task(stream.write_acked(BLOCKS_AFTER))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(cluster.kill, leader)
        killed_at = time.monotonic()
        assert leader not in cluster.running_nodes()
        await writing
        new_leader = await cluster.leader(cluster_topic)
        assert new_leader != leader and new_leader in NODE_IDS
        acked_after_kill = sorted(t for _, t in stream.acked.values() if t > killed_at)
        print(f"leader {leader} killed; new leader {new_leader}; first block acknowledged "
              f"{acked_after_kill[0] - killed_at:.2f} s after the kill; {len(stream.failed)} writes failed")

        # A second broker dies: one replica left, below min.insync.replicas
        # (and, with combined nodes, no controller quorum).
        await asyncio.to_thread(cluster.kill, new_leader)
        acked_before = len(stream.acked)
        failed_before = len(stream.failed)
        refused = []
        for _ in range(3):
            started = time.monotonic()
            assert not await stream.write_one()
            refused.append(time.monotonic() - started)
        assert len(stream.acked) == acked_before
        assert stream.errors and all(e.retriable for e in stream.errors)
        # Each attempt gives up in bounded time: the commit (or producer start, 2x)
        # timeout, plus up to 5 s to close the broken producer.
        assert max(refused) < 2 * config.commit_timeout_s + 5 + 1, refused

        await asyncio.to_thread(cluster.start_nodes, leader, new_leader)
        await stream.write_acked(5)
    finally:
        await stream.writer.stop()

    messages = await read_all(config)
    counts = assert_exactly_once(stream, messages)
    assert len(stream.acked) == BLOCKS_BEFORE + BLOCKS_AFTER + 5
    # The blocks refused with one broker left never reached two replicas, so
    # they were never committed.
    assert not [p[:13] for p in stream.failed[failed_before:] if p in counts]
