"""sequencer.node.checkers: tx checks in worker processes give exactly the
answers of the in-process check, in order, and survive a worker being killed."""
from __future__ import annotations

import asyncio
import os
import signal

from sequencer.core.txcheck import check_txs
from sequencer.node.checkers import TxCheckers
from tx_bodies import DOMAIN, RECOVER, SEPARATOR, body


def mixed_bodies(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        out.append(body(nonce=i + 1) if i % 5 else b'{"type": "Transfer", "message": {}, "signature": "0x"}')
    return out


async def test_workers_answer_like_the_event_loop_in_order():
    bodies = mixed_bodies(300)
    expected = check_txs(bodies, DOMAIN, SEPARATOR, RECOVER)
    async with TxCheckers(2, DOMAIN, max_chunk=32) as checkers:
        assert checkers.alive == 2
        many = await checkers.check_many(bodies)
        singles = await asyncio.gather(*(checkers.check(b) for b in bodies[:50]))
        assert checkers.checked_inline == 0
        assert checkers.checked_shared > 0  # the event loop took part of the 300-tx batch
    assert many == expected
    assert list(singles) == expected[:50]
    assert sum(1 for r in many if not r.ok) == 60


async def test_a_killed_worker_loses_nothing_and_is_replaced():
    bodies = mixed_bodies(2_000)
    expected = check_txs(bodies, DOMAIN, SEPARATOR, RECOVER)
    checkers = TxCheckers(1, DOMAIN, max_chunk=64)
    await checkers.start()
    try:
        victim = checkers._workers[0].process
        pending = asyncio.ensure_future(checkers.check_many(bodies))
        await asyncio.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        assert await pending == expected
        assert checkers.checked_inline > 0
        for _ in range(100):  # the replacement starts in the background
            if checkers.alive == 1:
                break
            await asyncio.sleep(0.1)
        assert checkers.alive == 1 and checkers._workers[0].process.pid != victim.pid
        assert await checkers.check(bodies[1]) == expected[1]
    finally:
        await checkers.stop()
        await checkers.stop()  # idempotent
    assert checkers.alive == 0


async def test_no_workers_checks_in_the_event_loop():
    async with TxCheckers(0, DOMAIN) as checkers:
        assert checkers.alive == 0
        assert await checkers.check_many(mixed_bodies(6)) == check_txs(mixed_bodies(6), DOMAIN, SEPARATOR, RECOVER)
        assert checkers.checked_inline == 6
