"""kill -9 of the node process mid-stream: after a restart the state is the
same (snapshot + replay) and every acknowledged tx is in the log exactly once."""
from __future__ import annotations

import asyncio
import signal
import uuid

import httpx
import pytest

from nodes import free_port
from nodes import (dev_clients, logged_record_hashes, make_config, replay_fresh, start_node_process,
                   wait_ready, wait_until)
from sequencer.sdk import ApiError

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def submit_until_stopped(client, to, acked: list, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            acked.append(await client.transfer(to, 1))
        except (ApiError, httpx.HTTPError, OSError):
            return  # the node died under us: this tx was not acknowledged


async def test_kill_9_mid_stream_then_restart(broker, tmp_path):
    port = free_port()
    config = make_config(broker, "crash-" + uuid.uuid4().hex[:8], tmp_path, port, genesis_dev_accounts=8)
    url = f"http://127.0.0.1:{port}"
    process = start_node_process(config, tmp_path / "node.log")
    try:
        await wait_ready(url)
        clients = dev_clients(url, 8)
        acked: list[dict] = []
        stop = asyncio.Event()
        workers = [asyncio.create_task(submit_until_stopped(c, clients[(i + 1) % 8].address, acked, stop))
                   for i, c in enumerate(clients)]
        await wait_until(lambda: _at_least(acked, 150), timeout=60)
        process.send_signal(signal.SIGKILL)  # mid-stream: workers have txs in flight
        process.wait(10)
        stop.set()
        await asyncio.gather(*workers)
        for c in clients:
            await c.stop()
        assert len(acked) >= 150

        process = start_node_process(config, tmp_path / "node.log")
        await wait_ready(url)
        async with httpx.AsyncClient(base_url=url) as http:
            for receipt in acked:
                got = (await http.get(f"/v1/tx/{receipt['hash']}")).json()
                assert got["status"] == "ok" and got["block"] == receipt["block"], got
            status = (await http.get("/v1/status")).json()
            # The restarted node keeps sequencing on top of what it recovered.
            async with dev_clients(url, 1)[0] as c:
                after = await c.transfer(clients[1].address, 1)
            assert after["block"] > max(r["block"] for r in acked)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    hashes = await logged_record_hashes(config)
    for receipt in acked:
        assert hashes.count(bytes.fromhex(receipt["hash"][2:])) == 1
    fresh = await replay_fresh(config)
    assert fresh.head_number >= status["blockNumber"]
    assert "0x" + fresh.state_root.hex() == (await _final_root(config))


async def _final_root(config):
    """The state root the restarted node wrote into its last snapshot on SIGTERM."""
    from sequencer.executor.snapshot import decode_node_snapshot
    from sequencer.node.node import make_context
    from pathlib import Path
    directory = Path(config.data_dir) / "snapshots"
    snaps = sorted(directory.glob("snapshot-*.bin"))
    chain, _, _ = decode_node_snapshot(snaps[-1].read_bytes(), (directory / "index.bin").read_bytes(),
                                       make_context(config))
    return "0x" + chain.state_root.hex()


async def _at_least(items, n):
    return len(items) >= n
