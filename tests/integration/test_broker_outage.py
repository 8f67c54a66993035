"""The broker goes away and comes back: the sequencer fails closed (503, no
acks, not ready) while it is down and recovers by itself when it is back."""
from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from nodes import dev_clients, logged_record_hashes, make_config, replay_fresh, wait_until
from sequencer.node.service import Service
from sequencer.sdk import ApiError

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def own_broker(disposable_broker):
    """A broker apart from the session's (tests/kafka_fixtures.py, booted once
    for this test and test_readiness_and_shutdown.py), so stopping it disturbs
    no other test; the test writes to a topic of its own."""
    return disposable_broker


async def test_no_acks_while_the_broker_is_down_and_automatic_recovery(own_broker, tmp_path, api_port):
    config = make_config(own_broker, "outage-" + uuid.uuid4().hex[:8], tmp_path, api_port,
                         kafka_commit_timeout_s=2.0, kafka_request_timeout_ms=2000)
    async with Service(config) as service:
        a, b, *_ = dev_clients(service.url)
        async with a, httpx.AsyncClient(base_url=service.url) as http:
            acked = [await a.transfer(b.address, 1)]
            own_broker.stop()

            refused = []
            for _ in range(3):
                tx = await a.signed_transfer(b.address, 5)
                with pytest.raises(ApiError) as raised:
                    await a.submit(tx)
                assert raised.value.status == 503, raised.value
                assert raised.value.code in ("log_unavailable",)
                refused.append(tx)
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["ready"] is False

            await asyncio.to_thread(own_broker.start)
            await wait_until(lambda: _is_ready(http), timeout=90)
            acked.append(await a.transfer(b.address, 7))
            assert acked[-1]["status"] == "ok"
        live_root = service.node.chain.state_root
    hashes = await logged_record_hashes(config)
    for receipt in acked:
        assert hashes.count(bytes.fromhex(receipt["hash"][2:])) == 1
    fresh = await replay_fresh(config)
    assert fresh.state_root == live_root


async def _is_ready(http):
    try:
        return (await http.get("/readyz")).status_code == 200
    except httpx.HTTPError:
        return False
