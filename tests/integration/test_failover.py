"""Failover by fencing: a second sequencer with the same id takes over; the
first says so in its log, stops writing and follows; none of its writes appear
after the new one started."""
from __future__ import annotations

import logging

import pytest

from nodes import free_port
from nodes import dev_clients, logged_record_hashes, make_config, replay_fresh, wait_until
from sequencer.node.service import Service
from sequencer.sdk import ApiError, Client

pytestmark = pytest.mark.kafka


async def test_second_sequencer_with_the_same_id_fences_the_first(broker, topic, tmp_path, api_port, caplog):
    caplog.set_level(logging.ERROR, logger="isoroll")
    first_config = make_config(broker, topic, tmp_path / "first", api_port, sequencer_id="fence-test")
    second_config = make_config(broker, topic, tmp_path / "second", free_port(), sequencer_id="fence-test")
    async with Service(first_config) as first:
        a, b, c, _ = dev_clients(first.url)
        async with a, b:
            before = await a.transfer(b.address, 1)
            async with Service(second_config) as second:
                # The zombie's next block is refused by the broker; nothing of it is acknowledged.
                zombie_tx = await a.signed_transfer(b.address, 2)
                with pytest.raises(ApiError) as raised:
                    await a.submit(zombie_tx)
                assert raised.value.status == 503
                assert first.node.fenced and first.node.mode == "follower"
                assert any("FENCED" in r.getMessage() for r in caplog.records)
                # It refuses further writes outright and keeps serving reads.
                with pytest.raises(ApiError) as again:
                    await a.transfer(b.address, 3)
                assert again.value.code == "not_the_sequencer"

                async with Client(second.url, c.key) as c2:
                    after = await c2.transfer(b.address, 4)
                assert after["block"] > before["block"]
                # The fenced node follows the new sequencer's blocks.
                await wait_until(lambda: _has_block(first, after["block"]))
                assert first.node.chain.state_root == second.node.chain.state_root
    hashes = await logged_record_hashes(first_config)
    zombie_hash = bytes.fromhex(_hash(zombie_tx))
    assert zombie_hash not in hashes
    assert bytes.fromhex(before["hash"][2:]) in hashes and bytes.fromhex(after["hash"][2:]) in hashes
    fresh = await replay_fresh(first_config)
    assert fresh.head_number == after["block"]


def _hash(record) -> str:
    from sequencer.core.encoding import compute_record_hash, encode_record
    return compute_record_hash(encode_record(record)).hex()


async def _has_block(service, number):
    return service.node.chain.head_number >= number
