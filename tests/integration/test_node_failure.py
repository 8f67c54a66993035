"""The node's half of the two failure channels (sequencer.core.transition):
a rule that raises a plain exception (a bug) must stop the node, on the real
broker: no receipt, no ack, nothing written to the log, no snapshot of the
half-applied state, a CRITICAL log line and exit code 1 from serve_forever;
a follower stops the same way, live and while catching up.

The bug is a test-only rule table (schema version 99: the v1 rules with a
Transfer rule that raises on one amount) selected by the Context passed to the
node's constructor."""
from __future__ import annotations

import asyncio
import logging
from types import MappingProxyType

import msgspec
import pytest

from nodes import count_committed, dev_clients, make_config, read_log, wait_until
from sequencer.core.records import Transfer
from sequencer.core import transition
from sequencer.core.rules import table
from sequencer.node.lifecycle import NodeFailed, Phase
from sequencer.node.node import Node, make_context
from sequencer.node.service import Service, serve_forever
from sequencer.sdk import ApiError

pytestmark = pytest.mark.kafka

BUG_AMOUNT = 13
BUGGY_SCHEMA = 99


class RuleBug(Exception):
    """A plain exception, not a RuleError."""


@pytest.fixture
def buggy_rules(monkeypatch):
    process_transfer = table.RULES_V1[Transfer]

    def process_transfer_with_a_bug(state, record, timestamp_ms, ctx):
        if record.amount == BUG_AMOUNT:
            raise RuleBug("a bug in the Transfer rule")
        process_transfer(state, record, timestamp_ms, ctx)

    rules = MappingProxyType({**table.RULES_V1, Transfer: process_transfer_with_a_bug})
    tables = MappingProxyType({**table.RULE_TABLES, BUGGY_SCHEMA: rules})
    for module in (table, transition):  # the transition holds its own reference to the tables
        monkeypatch.setattr(module, "RULE_TABLES", tables)


def buggy_context(config):
    return msgspec.structs.replace(make_context(config), schema_version=BUGGY_SCHEMA)


def snapshots(config) -> list:
    return sorted((config.snapshot_dir).glob("snapshot-*.bin"))


async def test_a_rule_that_raises_stops_the_sequencer(broker, topic, tmp_path, api_port, buggy_rules, caplog):
    caplog.set_level(logging.INFO, logger="isoroll")
    config = make_config(broker, topic, tmp_path, api_port)
    ready: asyncio.Future = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(serve_forever(
        config, on_ready=ready.set_result, make_service=lambda c: Service(c, ctx=buggy_context(c))))
    service = await asyncio.wait_for(ready, 60)
    a, b, *_ = dev_clients(service.url)
    async with a, b:
        ok = await a.transfer(b.address, 7)  # pre: the buggy table applies every other transfer
        assert ok["status"] == "ok"
        logged = await count_committed(config, at_least=1)  # the good transfer's block
        before = (await a.account())["collateral"]
        with pytest.raises(ApiError) as refused:
            await a.transfer(b.address, BUG_AMOUNT)
    assert refused.value.status == 503 and refused.value.code == "not_ready", refused.value
    assert await asyncio.wait_for(serving, 30) == 1  # the service stopped, exit code 1
    node = service.node
    assert node.failed.is_set() and isinstance(node.failure, RuleBug)
    assert Phase.FAILED in node.lifecycle.history and node.phase is Phase.STOPPED
    assert len(await read_log(config)) == logged  # nothing written after the good block
    assert node.chain.state.accounts[a.address].collateral == before  # the bad tx left no trace
    assert all(r.ok for r in node.chain.receipts.values())
    assert snapshots(config) == []  # the half-applied state was not saved
    assert any(r.levelno == logging.CRITICAL and "EXECUTOR FAILURE" in r.getMessage() for r in caplog.records)


async def test_a_rule_that_raises_stops_a_follower(broker, topic, tmp_path, api_port, buggy_rules, caplog):
    caplog.set_level(logging.INFO, logger="isoroll")
    config = make_config(broker, topic, tmp_path, api_port)
    follower_config = make_config(broker, topic, tmp_path / "follower", api_port, mode="follower")
    follower = Node(follower_config, ctx=buggy_context(follower_config))
    async with Service(config) as service:  # the sequencer runs the real rules
        await follower.start()
        assert follower.phase is Phase.FOLLOWING
        a, b, *_ = dev_clients(service.url)
        async with a, b:
            good = await a.transfer(b.address, 7)
            await wait_until(lambda: _true(follower.chain.head_number >= good["block"]), 20)
            bad = await a.transfer(b.address, BUG_AMOUNT)  # fine for the sequencer's rules
        assert bad["status"] == "ok"
        await asyncio.wait_for(follower.failed.wait(), 20)
        assert follower.phase is Phase.FAILED and not follower.ready
        assert isinstance(follower.failure, RuleBug)
        assert follower.chain.head_number == bad["block"] - 1  # the bad block was not applied
        assert bytes.fromhex(bad["hash"][2:]) not in follower.chain.receipts
        await follower.stop()
        assert follower.phase is Phase.STOPPED and snapshots(follower_config) == []

        # a follower that meets the bad block while catching up does not start
        late_config = make_config(broker, topic, tmp_path / "late", api_port, mode="follower")
        late = Node(late_config, ctx=buggy_context(late_config))
        with pytest.raises(NodeFailed):
            await late.start()
        assert late.phase is Phase.FAILED and isinstance(late.failure, RuleBug)
        await late.stop()
        assert late.phase is Phase.STOPPED and snapshots(late_config) == []
        assert service.node.phase is Phase.SEQUENCING  # the sequencer is not affected
    assert sum("EXECUTOR FAILURE" in r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL) == 2


async def _true(value: bool) -> bool:
    return value
