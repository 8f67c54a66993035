"""A poison tx (JSON nested 100,000 levels deep) costs only itself: it is
refused with 400 ``too_deep`` before anything decodes it, the honest txs sent
with it and beside it are acknowledged, the tx check workers live on, and the
node still stops at once on SIGTERM (real broker, the node as a process)."""
from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import httpx
import pytest

from nodes import dev_clients, free_port, logged_record_hashes, make_config, start_node_process, wait_ready
from sequencer.core import wire
from sequencer.node.checkers import TxCheckers, check_each
from tx_bodies import DOMAIN, SEPARATOR, RECOVER, body

pytestmark = pytest.mark.kafka

POISON_DEPTH = 100_000


def poison_body() -> bytes:
    nest = b"[" * POISON_DEPTH + b"]" * POISON_DEPTH
    return (b'{"type": "Transfer", "message": {"account": ' + nest
            + b'}, "signature": "0x' + b"00" * 65 + b'"}')


def test_depth_limit_is_exact_and_ignores_brackets_in_strings():
    def nested(depth: int) -> bytes:  # ``depth`` levels including the tx object and its message
        inner = b"[" * (depth - 2) + b"]" * (depth - 2)
        return b'{"type": "Transfer", "message": {"a": ' + (inner or b"1") + b'}, "signature": "0x"}'
    assert wire.is_within_depth(nested(wire.MAX_JSON_DEPTH))
    assert not wire.is_within_depth(nested(wire.MAX_JSON_DEPTH + 1))
    with pytest.raises(wire.WireError) as raised:
        wire.parse_tx(nested(wire.MAX_JSON_DEPTH + 1))
    assert raised.value.code == "too_deep" and str(wire.MAX_JSON_DEPTH) in raised.value.message
    in_string = b'{"type": "X", "message": {"a": "' + b"[{" * 1000 + b'\\"' + b'"}, "signature": "0x"}'
    with pytest.raises(wire.WireError) as raised:
        wire.parse_tx(in_string)
    assert raised.value.code == "unknown_type"  # decoded: the brackets were text
    with pytest.raises(wire.WireError) as raised:
        wire.parse_batch(b'{"txs": [' + poison_body() + b"]}", 100)
    assert raised.value.code == "too_deep"
    unbalanced = b'{"txs": [' + b"[" * POISON_DEPTH + b"]}"
    with pytest.raises(wire.WireError):
        wire.parse_batch(unbalanced, 100)


def test_a_body_the_checks_raise_on_is_refused_alone():
    """A check that raises (a bug nobody foresaw, here a recover that breaks on
    one signature) refuses that body only; the others get their own answers."""
    honest = [body(nonce=n) for n in range(1, 6)]
    breaker = body(nonce=99)

    def recover(digest: bytes, signature: bytes) -> bytes:
        if signature == _signature_of(breaker):
            raise MemoryError("the backend broke on this one")
        return RECOVER(digest, signature)

    results = check_each(honest[:2] + [breaker] + honest[2:], DOMAIN, SEPARATOR, recover)
    assert [r.ok for r in results] == [True, True, False, True, True, True]
    assert results[2].code == "unprocessable_tx" and "MemoryError" in results[2].message


def _signature_of(tx_body: bytes) -> bytes:
    return wire.parse_tx(tx_body).signature


async def test_poison_through_the_workers_costs_only_itself():
    """Workers in their own processes: the poison shares chunks with honest
    bodies, every honest body gets the in-process answer, no worker dies."""
    honest = [body(nonce=n) for n in range(1, 200)]
    async with TxCheckers(1, DOMAIN, max_chunk=32) as checkers:
        pid = checkers._workers[0].process.pid
        mixed = honest[:100] + [poison_body()] + honest[100:]
        singles = asyncio.gather(*(checkers.check(b) for b in mixed))
        many = await checkers.check_many(mixed)
        singles = await singles
        for results in (many, singles):
            assert results[100].code == "too_deep"
            assert all(r.ok for i, r in enumerate(results) if i != 100)
        assert checkers.alive == 1 and checkers._workers[0].process.pid == pid
        assert checkers.replaced == 0


async def test_a_killed_worker_is_really_replaced_and_keeps_checking():
    honest = [body(nonce=n) for n in range(1, 400)]
    async with TxCheckers(1, DOMAIN, max_chunk=16) as checkers:
        victim = checkers._workers[0].process
        pending = asyncio.ensure_future(asyncio.gather(*(checkers.check(b) for b in honest)))
        await asyncio.sleep(0.02)
        os.kill(victim.pid, signal.SIGKILL)
        assert all(r.ok for r in await pending)
        for _ in range(200):
            if checkers.replaced == 1 and checkers.alive == 1:
                break
            await asyncio.sleep(0.05)
        assert checkers.replaced == 1 and checkers._workers[0].process.pid != victim.pid
        assert checkers._workers[0].process.is_alive()
        inline_before = checkers.checked_inline
        assert all(r.ok for r in await checkers.check_many(honest[:50]))
        assert checkers.checked_inline == inline_before  # the new worker did them


async def test_poison_beside_honest_clients_on_the_node_then_sigterm(broker, tmp_path):
    port = free_port()
    config = make_config(broker, "poison-" + uuid.uuid4().hex[:8], tmp_path, port, genesis_dev_accounts=6)
    url = f"http://127.0.0.1:{port}"
    process = start_node_process(config, tmp_path / "node.log", ISOROLL_TX_CHECK_WORKERS="1")
    try:
        await wait_ready(url)
        clients = dev_clients(url, 6)
        senders, receiver = clients[:5], clients[5]
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            async def send_honest(client, n):
                return [await client.transfer(receiver.address, 1) for _ in range(n)]

            async def send_batch(client, n):
                records = [await client.signed_transfer(receiver.address, 1) for _ in range(n)]
                return await client.submit_many(records)

            async def post_poison(path, payload):
                return await http.post(path, content=payload, headers={"content-type": "application/json"})

            batch_with_poison = (b'{"txs": [' + b", ".join(
                [poison_body()] + [wire_json(await senders[4].signed_transfer(receiver.address, 1))
                                   for _ in range(5)]) + b"]}")
            results = await asyncio.wait_for(asyncio.gather(
                *(send_honest(c, 6) for c in senders[:3]),
                send_batch(senders[3], 30),
                post_poison("/v1/tx", poison_body()),
                post_poison("/v1/txs", batch_with_poison),
                post_poison("/v1/tx", poison_body()),
            ), timeout=60)
            *honest_lists, batch_receipts, single, batched, single_again = results
            acked = [r for rs in honest_lists for r in rs] + list(batch_receipts)
            assert len(acked) == 48 and all(r["status"] == "ok" for r in acked), acked
            for answer in (single, batched, single_again):
                assert answer.status_code == 400, answer.text
                assert answer.json()["error"]["code"] == "too_deep"
                assert str(wire.MAX_JSON_DEPTH) in answer.json()["error"]["message"]
            # Later poison: still a 400, and the node still takes txs.
            later = await post_poison("/v1/tx", poison_body())
            assert later.status_code == 400 and later.json()["error"]["code"] == "too_deep"
            acked.append(await senders[0].transfer(receiver.address, 1))
            metrics = (await http.get("/metrics")).text
        for c in clients:
            await c.stop()
        assert "isoroll_txs_acked_total" in metrics

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 20)
        took = time.monotonic() - started
        assert code == 0 and took < 5, (code, took)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    log_text = (tmp_path / "node.log").read_text()
    assert "tx check worker" not in log_text or "stopped (" not in log_text  # no worker died
    hashes = await logged_record_hashes(config)
    for receipt in acked:
        assert hashes.count(bytes.fromhex(receipt["hash"][2:])) == 1


def wire_json(record) -> bytes:
    import msgspec
    from sequencer.sdk import Client
    return msgspec.json.encode(Client.to_request(record))
