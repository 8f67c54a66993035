"""The log adapter: blocks in and out of one Kafka topic partition.

- ``BlockWriter`` is the one transactional producer (fixed transactional id,
  acks=all, idempotence).  Each block is written in its own transaction and is
  only reported written once the commit returned.  Starting a writer fences any
  older one with the same transactional id (Kafka's InitProducerId bumps the
  epoch and aborts its open transaction): that is failover.
- ``BlockReader`` consumes with isolation_level=read_committed from an exact
  offset and knows the end of the committed log (the last stable offset).

No I/O happens in ``__init__``; ``start()``/``stop()`` are idempotent and both
classes work as ``async with``.  Failures surface as ``LogError`` subclasses
that say whether retrying can help (``retriable``), as aiokafka's own errors do.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (KafkaError, ProducerFenced, TopicAlreadyExistsError,
                             UnknownTopicOrPartitionError)

from sequencer.core.presets import SCHEMA_VERSION

log = logging.getLogger("isoroll.log")

# aiokafka retries a transactional request that the broker answers with
# CONCURRENT_TRANSACTIONS (the previous commit's markers are still being
# written) after a fixed 20 ms.  Blocks are committed back to back, so every
# commit paid it: ~30 ms per block.  On a warm local broker, back-to-back
# commits ran at 194-211/s (p50 5.4-6.0 ms) with 2 ms and 252-302/s (p50
# 2.9-3.5 ms) with 1 ms, about 0.5 retries per commit either way
# (docs/benchmarks.md).  The Java client uses the same kind of short retry.
import aiokafka.producer.sender as _aiokafka_sender  # noqa: E402

if getattr(_aiokafka_sender, "BACKOFF_OVERRIDE", None) is not None:
    _aiokafka_sender.BACKOFF_OVERRIDE = 0.001

SCHEMA_HEADER = "isoroll-schema"
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


async def within(coro, timeout: float, what: str):
    """Await ``coro`` for at most ``timeout`` seconds, then abandon it.

    Unlike ``asyncio.wait_for`` this does not wait for the cancelled coroutine
    to unwind: aiokafka's transaction exit awaits a shielded abort that never
    finishes while the broker is down, which would hang the caller forever."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        task.add_done_callback(_swallow)
        raise asyncio.TimeoutError(f"{what} did not finish within {timeout:g} s")
    return task.result()


def _swallow(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


class LogError(Exception):
    retriable = True


class LogUnavailable(LogError):
    """The broker did not take the write (down, timed out, not enough replicas).
    Nothing was acknowledged; the writer must be restarted."""
    retriable = True


class Fenced(LogError):
    """A newer writer with the same transactional id took over.  Stop writing."""
    retriable = False


@dataclass(frozen=True)
class LogConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "isoroll.blocks"
    transactional_id: str = "isoroll-sequencer-0"
    replication_factor: int = 1
    min_insync_replicas: int = 1
    request_timeout_ms: int = 5_000
    commit_timeout_s: float = 5.0
    """How long one block's transaction may take before the write counts as failed."""
    transaction_timeout_ms: int = 60_000
    client_id: str = "isoroll"
    extra: dict = field(default_factory=dict)

    @property
    def partition(self) -> TopicPartition:
        return TopicPartition(self.topic, 0)


async def ensure_topic(config: LogConfig) -> None:
    """Create the single-partition topic if it does not exist (idempotent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap_servers,
                                request_timeout_ms=config.request_timeout_ms, client_id=config.client_id)
    await admin.start()
    try:
        topic = NewTopic(config.topic, num_partitions=1, replication_factor=config.replication_factor,
                         topic_configs={"min.insync.replicas": str(config.min_insync_replicas),
                                        "max.message.bytes": str(MAX_MESSAGE_BYTES),
                                        "retention.ms": "-1", "cleanup.policy": "delete"})
        try:
            await admin.create_topics([topic])
            log.info("created topic %s", config.topic)
        except TopicAlreadyExistsError:
            pass
    finally:
        await admin.close()


class BlockWriter:
    def __init__(self, config: LogConfig) -> None:
        self._config = config
        self._producer: AIOKafkaProducer | None = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Connect and claim the transactional id (fencing any older writer)."""
        if self._producer is not None:
            return
        c = self._config
        producer = AIOKafkaProducer(
            bootstrap_servers=c.bootstrap_servers, client_id=c.client_id,
            transactional_id=c.transactional_id, enable_idempotence=True, acks="all",
            request_timeout_ms=c.request_timeout_ms, transaction_timeout_ms=c.transaction_timeout_ms,
            max_request_size=MAX_MESSAGE_BYTES, linger_ms=0, **c.extra)
        try:
            await within(producer.start(), c.commit_timeout_s * 2, "producer start")
        except ProducerFenced as exc:
            await _close_quietly(producer)
            raise Fenced(str(exc)) from exc
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            await _close_quietly(producer)
            raise LogUnavailable(f"cannot start the transactional producer: {exc!r}") from exc
        self._producer = producer

    async def stop(self, timeout: float = 5.0) -> None:
        """Close the producer, which aborts an open transaction when a broker
        answers within ``timeout``; else the next producer of this transactional
        id aborts it."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await _close_quietly(producer, timeout)

    async def write(self, block_bytes: bytes) -> int:
        """Write one block in its own transaction; return its offset once committed."""
        if self._producer is None:
            raise LogUnavailable("the writer is not started")
        try:
            return await within(self._write(block_bytes), self._config.commit_timeout_s, "block commit")
        except ProducerFenced as exc:
            await self.stop()
            raise Fenced("a newer sequencer with transactional id "
                         f"{self._config.transactional_id!r} fenced this one") from exc
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            await self.stop()
            raise LogUnavailable(f"block write failed: {exc!r}") from exc

    async def _write(self, block_bytes: bytes) -> int:
        producer = self._producer
        assert producer is not None
        async with producer.transaction():
            future = await producer.send(self._config.topic, block_bytes, partition=0,
                                         headers=[(SCHEMA_HEADER, str(SCHEMA_VERSION).encode())])
            metadata = await future
        return metadata.offset

    async def __aenter__(self) -> "BlockWriter":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


async def _close_quietly(producer: AIOKafkaProducer, timeout: float = 5.0) -> None:
    try:
        await within(producer.stop(), timeout, "producer stop")
    except Exception as exc:  # closing a broken producer: nothing more to do
        log.debug("producer close: %r", exc)


@dataclass(frozen=True)
class LogMessage:
    offset: int
    value: bytes
    schema: int | None


class BlockReader:
    """Reads committed messages of the topic's partition 0 from a given offset."""

    def __init__(self, config: LogConfig, start_offset: int = 0) -> None:
        self._config = config
        self._start_offset = start_offset
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        if self._consumer is not None:
            return
        c = self._config
        consumer = AIOKafkaConsumer(
            bootstrap_servers=c.bootstrap_servers, client_id=c.client_id + "-reader",
            isolation_level="read_committed", enable_auto_commit=False, group_id=None,
            request_timeout_ms=max(c.request_timeout_ms, 10_000), fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024, auto_offset_reset="none")
        try:
            await consumer.start()
            consumer.assign([c.partition])
            consumer.seek(c.partition, self._start_offset)
        except (KafkaError, OSError) as exc:
            await _stop_consumer(consumer)
            raise LogUnavailable(f"cannot start the log reader: {exc!r}") from exc
        self._consumer = consumer

    async def stop(self, timeout: float = 5.0) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await _stop_consumer(consumer, timeout)

    async def probe(self, timeout: float) -> None:
        """A broker liveness check: one metadata request (to any broker that
        answers) within ``timeout``, naming a live leader for the log's partition.
        Raises LogUnavailable otherwise."""
        if self._consumer is None:
            raise LogUnavailable("the log reader is not started")
        try:
            metadata = await within(self._consumer._client.fetch_all_metadata(), timeout, "metadata request")
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            raise LogUnavailable(f"no broker answers: {exc}") from exc
        leader = metadata.leader_for_partition(self._config.partition)
        if leader is None or leader < 0 or metadata.broker_metadata(leader) is None:
            raise LogUnavailable(f"no live leader for {self._config.topic}-0")

    async def read(self, timeout_ms: int = 200, max_records: int | None = None) -> list[LogMessage]:
        assert self._consumer is not None, "start() the reader first"
        try:
            batches = await self._consumer.getmany(self._config.partition, timeout_ms=timeout_ms,
                                                   max_records=max_records)
        except UnknownTopicOrPartitionError as exc:
            raise LogUnavailable(f"topic {self._config.topic!r} is missing: {exc}") from exc
        except (KafkaError, OSError) as exc:
            raise LogUnavailable(f"cannot read the log: {exc!r}") from exc
        out = []
        for message in batches.get(self._config.partition, ()):
            schema = None
            for key, value in message.headers or ():
                if key == SCHEMA_HEADER:
                    try:
                        schema = int(value)
                    except ValueError:
                        schema = -1
            out.append(LogMessage(message.offset, message.value or b"", schema))
        return out

    def seek(self, offset: int) -> None:
        assert self._consumer is not None, "start() the reader first"
        self._consumer.seek(self._config.partition, offset)

    async def position(self) -> int:
        assert self._consumer is not None
        return await self._consumer.position(self._config.partition)

    async def end_offset(self) -> int:
        """The last stable offset: where the committed log currently ends."""
        assert self._consumer is not None
        try:
            offsets = await within(self._consumer.end_offsets([self._config.partition]),
                                   max(5.0, self._config.request_timeout_ms / 1000), "end offset lookup")
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            raise LogUnavailable(f"cannot read the end of the log: {exc!r}") from exc
        return offsets[self._config.partition]

    async def __aenter__(self) -> "BlockReader":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


async def _stop_consumer(consumer: AIOKafkaConsumer, timeout: float = 5.0) -> None:
    try:
        await within(consumer.stop(), timeout, "consumer stop")
    except Exception as exc:
        log.debug("consumer close: %r", exc)
