"""Every block can be posted (issue 11, attack 2), through the real node on the
real broker and the real bridge on py-evm: a burst of max-size signed transfers
(9-byte amount, nonce and expiry) ends in blocks that each fit the byte budget,
and the checkpointer posts every one of them.  Before the budget, a block of
thousands of transfers compressed past the bridge's MAX_BATCH_BYTES and the
checkpointer could never post again.

The test sends 4,000 txs (bounded runtime); ``ISOROLL_BURST_TXS=10000`` runs
the 10,000-tx burst and ``-s`` prints the figures (docs/l1-bridge.md)."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from nodes import make_config
from sequencer.core.records import Transfer
from sequencer.executor.genesis import get_dev_accounts
from sequencer.sdk import Client

pytestmark = [pytest.mark.kafka, pytest.mark.evm]

BURST = int(os.environ.get("ISOROLL_BURST_TXS", "4000"))
SENDERS = 10
BIG = 2**33  # above 2**32: msgpack writes 9 bytes, the largest encoding


async def signed_burst(url: str, n: int) -> list[tuple[Client, list[Transfer]]]:
    """``n`` max-size transfers from SENDERS dev accounts (one POST each, in nonce order)."""
    accounts = get_dev_accounts(SENDERS)
    out = []
    for i, (key, _) in enumerate(accounts):
        client = Client(url, key)
        to = accounts[(i + 1) % SENDERS][1]
        expiry = client.default_expiry()
        out.append((client, [await client.signed_transfer(to, BIG + j, nonce=BIG + j, expiry=expiry)
                             for j in range(n // SENDERS)]))
    return out


async def post_burst(burst: list[tuple[Client, list[Transfer]]], max_batch: int) -> list[dict]:
    async def post(client: Client, records: list[Transfer]) -> list[dict]:
        receipts = []
        async with client:
            for at in range(0, len(records), max_batch):
                receipts += await client.submit_many(records[at:at + max_batch])
        return receipts
    results = await asyncio.gather(*(post(client, records) for client, records in burst))
    return [r for receipts in results for r in receipts]


async def run_burst_and_checkpoint(broker, topic, tmp_path, api_port, n: int) -> dict:
    """Send ``n`` max-size txs through a node, then checkpoint every block to a
    py-evm bridge; returns what was measured."""
    from evm.bridge_env import deploy_env
    from l1_bridge.checkpointer import MAX_BATCH_BYTES, Checkpointer
    from l1_bridge.client import BridgeClient
    from sequencer.core.presets import DEVNET
    from sequencer.node.service import Service

    env = deploy_env()
    client = BridgeClient(env.w3, env.d.bridge, deployment=env.d)
    # The clients share the node's event loop here: a connection's request head
    # can wait behind whole blocks, longer than the default header timeout.
    config = make_config(broker, topic, tmp_path, api_port, genesis_dev_accounts=SENDERS,
                         genesis_dev_balance=10**17, api_header_timeout_s=120.0)
    async with Service(config) as service:
        checkpointer = Checkpointer(client, service.node, env.proposer)
        burst = await signed_burst(service.url, n)
        t0 = time.perf_counter()
        receipts = await post_burst(burst, DEVNET.max_batch_txs)
        sent_s = time.perf_counter() - t0
        chain = service.node.chain
        head = chain.head_number
        sizes = [len(chain.recent_messages[b]) for b in range(1, head + 1)]
        t0 = time.perf_counter()
        proposals = []
        while checkpointer.read_l1()["prev_block"] < head:
            proposal = await checkpointer.poll_once(force=True)
            assert proposal is not None, checkpointer.last_error
            proposals.append(proposal)
        post_s = time.perf_counter() - t0
    return {"receipts": receipts, "sizes": sizes, "head": head, "proposals": proposals,
            "max_batch": MAX_BATCH_BYTES, "budget": DEVNET.max_block_bytes, "sent_s": sent_s, "post_s": post_s}


async def test_a_burst_of_max_size_txs_ends_in_blocks_the_checkpointer_posts(broker, topic, tmp_path, api_port):
    pytest.importorskip("eth_tester")
    out = await run_burst_and_checkpoint(broker, topic, tmp_path, api_port, BURST)
    assert len(out["receipts"]) == BURST and all(r["status"] == "ok" for r in out["receipts"])
    assert out["head"] >= 2 and max(out["sizes"]) <= out["budget"]
    assert sum(out["sizes"]) > out["max_batch"]  # the burst alone would not fit one proposal
    assert all(len(p.data) <= out["max_batch"] for p in out["proposals"])
    assert out["proposals"][-1].l2_block == out["head"]
    data = [len(p.data) for p in out["proposals"]]
    print(f"\n{BURST} txs in {out['sent_s']:.1f} s -> {out['head']} blocks of {min(out['sizes'])}.."
          f"{max(out['sizes'])} bytes (budget {out['budget']}); {len(data)} proposals of {min(data)}.."
          f"{max(data)} bytes of batch data (limit {out['max_batch']}) posted in {out['post_s']:.1f} s")
