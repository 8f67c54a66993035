"""Per-client rate limits of a public node on the real broker: the dry run,
the /v1/events replay and the L1 view answer 429 with Retry-After once a
client's burst is spent, another client address is not affected, the routes
outside the limits (real txs, status) keep working, and the bucket refills."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
import websockets

from nodes import dev_clients, make_config
from sequencer.node.service import Service

pytestmark = pytest.mark.kafka


def client_from(address: str, base_url: str) -> httpx.AsyncClient:
    """An HTTP client whose connections come from ``address`` (127.0.0.0/8 is all loopback)."""
    return httpx.AsyncClient(base_url=base_url, transport=httpx.AsyncHTTPTransport(local_address=address))


async def test_dry_run_events_replay_and_l1_are_limited_per_client(broker, tmp_path, api_port):
    config = make_config(broker, "rate-" + uuid.uuid4().hex[:8], tmp_path, api_port,
                         api_rate_dry_run_per_s=2.0, api_rate_dry_run_burst=3.0,
                         api_rate_events_replay_per_s=0.5, api_rate_events_replay_burst=2.0,
                         api_rate_l1_per_s=1.0, api_rate_l1_burst=2.0)
    async with Service(config) as service:
        a, b, _, _ = dev_clients(service.url)
        async with a, b, client_from("127.0.0.1", service.url) as one, client_from("127.0.0.2", service.url) as two:
            tx = a.to_request(await a.signed_transfer(b.address, 1))

            # the dry run: a burst of 3, then 429 with Retry-After
            answers = [await one.post("/v1/tx?dryRun=1", json=tx) for _ in range(4)]
            assert [r.status_code for r in answers] == [200, 200, 200, 429]
            assert answers[0].json()["ok"] is True and answers[0].json()["written"] is False
            limited = answers[3]
            assert limited.headers["retry-after"] == "1"  # 0.5 s to the next token, rounded up
            assert limited.json()["error"]["code"] == "rate_limited"
            assert (await one.post("/v1/tx/dry-run", json=tx)).status_code == 429  # the same class
            assert (await two.post("/v1/tx?dryRun=1", json=tx)).status_code == 200  # another client
            assert (await one.get("/v1/status")).status_code == 200                 # not limited
            assert (await one.post("/v1/tx", json=tx)).json()["status"] == "ok"    # real txs are not
            await asyncio.sleep(0.6)
            assert (await one.post("/v1/tx?dryRun=1", json=tx)).status_code == 200  # refilled

            # the L1 view (this node has no L1: the route answers 404, the limit comes first)
            codes = [(await one.get("/v1/l1")).status_code for _ in range(3)]
            assert codes[:2] != [429, 429] and codes[2] == 429
            assert (await two.get("/v1/l1/accounts/0x" + "00" * 20)).status_code != 429

            # the /v1/events replay: 2 connections, then the handshake is refused with 429
            ws_url = service.url.replace("http://", "ws://") + "/v1/events"
            for _ in range(2):
                async with websockets.connect(f"{ws_url}?fromBlock=1") as ws:
                    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "snapshot"
            started = time.monotonic()
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with websockets.connect(f"{ws_url}?fromBlock=1"):
                    pass
            response = refused.value.response
            assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
            assert time.monotonic() - started < 2
            async with websockets.connect(ws_url) as ws:  # live events without a replay are not limited
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "snapshot"
