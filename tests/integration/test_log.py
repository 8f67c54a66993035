"""aiokafka against the real Kafka 4.x broker: transactions, fencing and
read_committed, proven on the wire (ANCHORS.md: its transaction requests are v0)."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from sequencer.core.presets import SCHEMA_VERSION
from sequencer.log.kafka import BlockReader, BlockWriter, Fenced, LogConfig, ensure_topic

pytestmark = pytest.mark.kafka


async def read_all(config: LogConfig, start: int = 0) -> list:
    async with BlockReader(config, start) as reader:
        end = await reader.end_offset()
        out = []
        while await reader.position() < end:
            out += await reader.read(timeout_ms=500)
        return out


async def test_committed_blocks_are_read_in_order_with_offsets(broker, topic):
    config = LogConfig(bootstrap_servers=broker.bootstrap, topic=topic, transactional_id=f"t-{topic}")
    await ensure_topic(config)
    async with BlockWriter(config) as writer:
        offsets = [await writer.write(b"block-%d" % i) for i in range(5)]
    assert offsets == sorted(offsets) and len(set(offsets)) == 5
    messages = await read_all(config)
    assert [m.value for m in messages] == [b"block-%d" % i for i in range(5)]
    assert [m.offset for m in messages] == offsets
    assert all(m.schema == SCHEMA_VERSION for m in messages)


async def test_read_committed_hides_aborted_and_open_transactions(broker, topic):
    config = LogConfig(bootstrap_servers=broker.bootstrap, topic=topic, transactional_id=f"t-{topic}")
    await ensure_topic(config)
    raw = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=f"raw-{topic}",
                           enable_idempotence=True, acks="all")
    await raw.start()
    try:
        await raw.begin_transaction()
        await (await raw.send(topic, b"aborted", partition=0))
        await raw.abort_transaction()
        async with raw.transaction():
            await (await raw.send(topic, b"committed", partition=0))
        await raw.begin_transaction()
        await (await raw.send(topic, b"still-open", partition=0))
        # The open transaction pins the last stable offset: nothing after it is visible yet.
        visible = [m.value for m in await read_all(config)]
        assert visible == [b"committed"]
        await raw.commit_transaction()
    finally:
        await raw.stop()
    assert [m.value for m in await read_all(config)] == [b"committed", b"still-open"]


async def test_a_second_writer_with_the_same_id_fences_the_first(broker, topic):
    config = LogConfig(bootstrap_servers=broker.bootstrap, topic=topic, transactional_id=f"t-{topic}")
    await ensure_topic(config)
    old = BlockWriter(config)
    await old.start()
    await old.write(b"from-old")
    async with BlockWriter(config) as new:
        with pytest.raises(Fenced) as raised:
            await old.write(b"zombie")
        assert raised.value.retriable is False
        await new.write(b"from-new")
    await old.stop()
    assert [m.value for m in await read_all(config)] == [b"from-old", b"from-new"]


async def test_fencing_aborts_the_zombies_open_transaction(broker, topic):
    """A sequencer that dies inside a transaction: its successor's start aborts it."""
    config = LogConfig(bootstrap_servers=broker.bootstrap, topic=topic, transactional_id=f"t-{topic}")
    await ensure_topic(config)
    zombie = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=config.transactional_id,
                              enable_idempotence=True, acks="all")
    await zombie.start()
    await zombie.begin_transaction()
    await (await zombie.send(topic, b"half-written", partition=0))
    async with BlockWriter(config) as successor:
        await successor.write(b"successor")
    assert [m.value for m in await read_all(config)] == [b"successor"]
    await asyncio.wait_for(zombie.stop(), 10)
