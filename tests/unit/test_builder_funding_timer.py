"""The block builder writes due funding ticks on its own, with no txs arriving
(a block of block-start records only), and writes nothing when none is due."""
from __future__ import annotations

import asyncio

import msgspec

from perps_support import BTC_PARAMS, CTX, ETH_PARAMS, sign_oracle
from sequencer.core.encoding import decode_block, decode_record
from sequencer.core.matching import Exchange
from sequencer.core.records import FundingTick, OraclePrice
from sequencer.node.builder import BlockBuilder
from sequencer.executor.chain import Chain
from sequencer.executor.genesis import build_genesis

T0 = 1_700_000_020_000
NEXT = (T0 // 60_000 + 1) * 60_000  # the next one-minute funding boundary


async def test_idle_builder_writes_due_funding_ticks():
    ctx = msgspec.structs.replace(CTX, markets={1: BTC_PARAMS, 2: ETH_PARAMS})
    chain = Chain(build_genesis([]), ctx)
    messages: list[bytes] = []
    clock = [T0]

    async def write(message: bytes) -> int:
        messages.append(message)
        return len(messages) - 1

    exchange = Exchange(ctx.markets)
    builder = BlockBuilder(chain, write, max_records=1024, interval_ms=1, exchange=exchange,
                           now_ms=lambda: clock[0])
    builder.IDLE_WAKE_S = 0.01
    run = asyncio.create_task(builder.run())
    try:
        receipt = await builder.submit(sign_oracle(1, 60_000 * 10**6, T0))
        assert receipt.ok
        # The first price: its market's first tick is due in the next block (no funding time yet).
        await _wait(lambda: len(messages) >= 2)
        kinds = [[type(decode_record(r)) for r in decode_block(m).records] for m in messages]
        assert kinds[0] == [OraclePrice] and kinds[1] == [FundingTick]
        assert chain.state.markets[1].funding_time_ms == T0 // 60_000 * 60_000
        await asyncio.sleep(0.1)
        assert len(messages) == 2  # nothing due: no empty blocks
        clock[0] = NEXT - 1
        await asyncio.sleep(0.1)
        assert len(messages) == 2
        clock[0] = NEXT
        await _wait(lambda: len(messages) >= 3)
        tick = decode_record(decode_block(messages[2]).records[0])
        assert isinstance(tick, FundingTick) and tick.timestamp_ms == NEXT
        assert decode_block(messages[2]).timestamp_ms == NEXT
        assert chain.head_number == 3
    finally:
        builder.stopped = True
        if run.done():
            run.result()  # a failure of the loop itself
        await asyncio.wait_for(run, 1)


async def _wait(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
