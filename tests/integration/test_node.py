"""A sequencer node on the real broker: receipts after commit, replay by a fresh
executor, bad input refused with nothing written, garbage in the log, follower."""
from __future__ import annotations

import time

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from nodes import (count_committed, dev_clients, make_config, replay_fresh, signed_transfer_body,
                   wait_until)
from sequencer.core import eip712
from sequencer.core.encoding import compute_message_hash
from sequencer.core.signing import SECP256K1_N
from sequencer.executor.snapshot import NODE_SNAPSHOT_FORMAT, decode_index, encode_snapshot, get_snapshot_format
from sequencer.executor.genesis import get_dev_accounts
from sequencer.node.node import Node
from sequencer.node.service import Service
from sequencer.sdk import ApiError, Client

pytestmark = pytest.mark.kafka


async def test_submit_receipt_then_a_fresh_executor_replays_to_the_same_root(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port)
    async with Service(config) as service:
        a, b, c, _ = dev_clients(service.url)
        async with a, b, c:
            r1 = await a.transfer(b.address, 1_000_000)
            r2 = await b.transfer(c.address, 250_000)
            batch = await c.submit_many([await c.signed_transfer(a.address, 1) for _ in range(20)])
            r3 = await a.withdraw(5_000)
            assert r1["status"] == r2["status"] == r3["status"] == "ok"
            assert [r["status"] for r in batch] == ["ok"] * 20
            assert (await a.receipt(r1["hash"]))["block"] == r1["block"]
            account_a = await a.account()
        live_root, live_tables = service.node.chain.state_root, service.node.chain.state.to_tables()
    assert account_a["collateral"] == 10**12 - 1_000_000 + 20 - 5_000
    fresh = await replay_fresh(config)
    assert fresh.state_root == live_root
    assert fresh.state.to_tables() == live_tables
    assert fresh.receipts[bytes.fromhex(r3["hash"][2:])].ok


async def test_restart_from_snapshot_gives_the_same_state(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port, snapshot_interval_blocks=2)
    async with Service(config) as service:
        (a, b, *_) = dev_clients(service.url)
        async with a:
            for _ in range(5):
                await a.transfer(b.address, 7)
        root = service.node.chain.state_root
    assert list((tmp_path / "node" / "snapshots").glob("snapshot-*.bin"))
    async with Service(config) as service:
        assert service.node.chain.state_root == root
        (a, b, *_) = dev_clients(service.url)
        async with a:
            assert (await a.transfer(b.address, 7))["status"] == "ok"


async def test_snapshots_keep_receipts_in_an_append_only_index(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port, snapshot_interval_blocks=2)
    directory = tmp_path / "node" / "snapshots"
    async with Service(config) as service:
        (a, b, *_) = dev_clients(service.url)
        async with a:
            hashes = [(await a.transfer(b.address, 7))["hash"] for _ in range(6)]

        async def written_by_the_loop() -> bool:  # not only the one written on shutdown
            return any(directory.glob("snapshot-*.bin"))

        await wait_until(written_by_the_loop, 10)
    newest = sorted(directory.glob("snapshot-*.bin"))[-1].read_bytes()
    assert get_snapshot_format(newest) == NODE_SNAPSHOT_FORMAT  # no receipts inside
    index = directory / "index.bin"
    size = index.stat().st_size
    with open(index, "ab") as fh:  # a frame torn by a crash, after the last snapshot
        fh.write(b"\x00\x00\x10\x00partial")

    async def receipts_survive() -> None:
        async with Service(config) as service:
            async with httpx.AsyncClient(base_url=service.url) as http:
                for h in hashes:
                    assert (await http.get(f"/v1/tx/{h}")).json()["status"] == "ok"

    await receipts_survive()
    assert index.stat().st_size >= size  # the torn tail was cut, new frames appended
    assert decode_index(index.read_bytes())[1] == index.stat().st_size

    # A data dir from before the index (the snapshot holds the receipts) still loads,
    # and its receipts move to the index at the next snapshot.
    node = Node(config)
    chain = node.load_chain()
    for path in directory.glob("snapshot-*.bin"):
        path.unlink()
    index.unlink()
    (directory / f"snapshot-{chain.next_offset:016d}.bin").write_bytes(encode_snapshot(chain))
    await receipts_survive()
    assert get_snapshot_format(sorted(directory.glob("snapshot-*.bin"))[-1].read_bytes()) == NODE_SNAPSHOT_FORMAT
    await receipts_survive()


@pytest.mark.parametrize("workers", [0, 1], ids=["checks-in-event-loop", "checks-in-a-worker"])
async def test_bad_input_is_a_clear_4xx_and_writes_nothing(broker, topic, tmp_path, api_port, workers):
    config = make_config(broker, topic, tmp_path, api_port, tx_check_workers=workers)
    (k0, a0), (k1, a1) = get_dev_accounts(2)
    async with Service(config) as service:
        assert service.node.checkers.alive == workers
        status = (await httpx.AsyncClient().get(service.url + "/v1/status")).json()
        d = status["eip712Domain"]
        domain = eip712.Domain(d["chainId"], bytes.fromhex(d["verifyingContract"][2:]))
        now = int(time.time() * 1000)
        good = signed_transfer_body(k0, a0, a1, 5, now, now + 60_000, domain)
        async with httpx.AsyncClient(base_url=service.url) as http:
            assert (await http.post("/v1/tx", json=good)).status_code == 200
            before = await count_committed(config, at_least=1)  # the good transfer's block

            def body(**changes):
                return signed_transfer_body(k0, a0, a1, changes.pop("amount", 5), changes.pop("nonce", now + 1),
                                            changes.pop("expiry", now + 60_000), changes.pop("domain", domain))

            high_s = body()
            sig = bytes.fromhex(high_s["signature"][2:])
            s = int.from_bytes(sig[32:64], "big")
            high_s["signature"] = "0x" + (sig[:32] + (SECP256K1_N - s).to_bytes(32, "big")
                                          + bytes([55 - sig[64]])).hex()
            unknown_top = dict(body(), extra=1)
            unknown_message = body()
            unknown_message["message"]["memo"] = "hi"
            cases = [
                ("malformed JSON", b'{"type": "Transfer", "message": {', 400, "malformed_json", "not valid JSON"),
                ("unknown top-level field", unknown_top, 400, "unknown_field", "extra"),
                ("unknown message field", unknown_message, 400, "unknown_field", "memo"),
                ("wrong chain id", body(domain=eip712.Domain(1, domain.verifying_contract)), 400,
                 "bad_signature", "chainId"),
                ("wrong contract", body(domain=eip712.Domain(domain.chain_id, b"\x42" * 20)), 400,
                 "bad_signature", "verifyingContract"),
                ("high-s signature", high_s, 400, "bad_signature", "high-s"),
                ("replayed tx", good, 409, "nonce_used", "already in block"),
                ("reused nonce", body(nonce=now, amount=6), 409, "nonce_used", "already used"),
                ("expired", body(expiry=now - 120_000), 400, "expired", "expired"),
                ("insufficient collateral", body(amount=10**15), 422, "insufficient_collateral", "less than"),
                ("amount out of range", body(amount=2**70), 400, "invalid_field", "out of range"),
                ("oversized batch", {"txs": [good] * (service.node.ctx.preset.max_batch_txs + 1)}, 413,
                 "batch_too_large", "limit"),
                ("oversized body", b"{" + b" " * (config.api_max_body_bytes + 10) + b"}", 413,
                 "payload_too_large", "limit"),
            ]
            for name, payload, status_code, code, words in cases:
                path = "/v1/txs" if isinstance(payload, dict) and "txs" in payload else "/v1/tx"
                if isinstance(payload, bytes):
                    response = await http.post(path, content=payload, headers={"content-type": "application/json"})
                else:
                    response = await http.post(path, json=payload)
                error = response.json()["error"]
                assert (response.status_code, error["code"]) == (status_code, code), (name, error)
                assert words in error["message"], (name, error["message"])
            # The fast path serves POST only; other methods and paths still get Starlette's answers.
            assert (await http.get("/v1/tx")).json()["error"]["code"] == "method_not_allowed"
            assert (await http.post("/v1/nothing", json={})).status_code == 404
            # A batch with one bad tx: the others go through, the bad one is refused alone.
            mixed = {"txs": [body(nonce=now + 10), body(nonce=now + 11, amount=10**15), body(nonce=now + 12)]}
            receipts = (await http.post("/v1/txs", json=mixed)).json()["receipts"]
            assert [r["status"] for r in receipts] == ["ok", "failed", "ok"]
            assert receipts[1]["block"] is None and receipts[1]["code"] == "insufficient_collateral"
        inline = service.node.checkers.checked_inline
        assert (inline == 0) if workers else (inline >= len(cases)), inline
    assert await count_committed(config, at_least=before + 1) == before + 1  # only the mixed batch's block


async def test_garbage_in_the_log_gets_a_failed_receipt_and_replay_goes_on(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port)
    async with Service(config) as service:
        a, b, *_ = dev_clients(service.url)
        async with a:
            await a.transfer(b.address, 1)
            raw = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
            await raw.start()
            try:
                await raw.send_and_wait(topic, b"\xc1 definitely not a block", partition=0)
            finally:
                await raw.stop()
            await a.transfer(b.address, 2)
        live_root = service.node.chain.state_root
    fresh = await replay_fresh(config)
    garbage = fresh.receipts[compute_message_hash(b"\xc1 definitely not a block")]
    assert not garbage.ok and "undecodable_block" in garbage.error
    assert fresh.head_number == 2 and fresh.state_root == live_root


async def test_a_follower_replays_live_and_refuses_writes(broker, topic, tmp_path, api_port):
    from nodes import free_port
    leader_config = make_config(broker, topic, tmp_path, api_port)
    follower_config = make_config(broker, topic, tmp_path / "f", free_port(), mode="follower")
    async with Service(leader_config) as leader, Service(follower_config) as follower:
        a, b, *_ = dev_clients(leader.url)
        async with a:
            receipt = await a.transfer(b.address, 42)
        async with Client(follower.url) as reader:
            seen = await wait_until(lambda: _receipt_or_none(reader, receipt["hash"]))
            assert seen["status"] == "ok" and seen["block"] == receipt["block"]
            assert (await reader.status())["stateRoot"] == (await Client(leader.url).status())["stateRoot"]
        f = dev_clients(follower.url)[0]
        async with f:
            with pytest.raises(ApiError) as raised:
                await f.transfer(b.address, 1)
        assert raised.value.status == 503 and raised.value.code == "not_the_sequencer"


async def _receipt_or_none(client, tx_hash):
    try:
        return await client.receipt(tx_hash)
    except ApiError:
        return None


async def test_the_stream_carries_blocks_and_receipts_as_they_commit(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port)
    async with Service(config) as service:
        a, b, *_ = dev_clients(service.url)
        async with a, a.stream(("block", "receipt")) as events:
            await wait_until(lambda: _true(len(service.api.streams) >= 1), timeout=5)
            receipt = await a.transfer(b.address, 3)
            seen = [await events.next(timeout=10), await events.next(timeout=10)]
    block = next(e for e in seen if e["type"] == "block")
    tx = next(e for e in seen if e["type"] == "receipt")
    assert block["number"] == receipt["block"] and block["txCount"] == 1
    assert block["stateRoot"] == receipt["stateRoot"]
    assert tx["hash"] == receipt["hash"] and tx["status"] == "ok"


async def _true(value):
    return value
