"""The sequencer's block builder: collect admitted txs, cut a block by size or
time, write it to the log in one Kafka transaction, acknowledge after commit.

The builder applies each tx to the live state as it admits it (so a tx that
breaks a rule is refused before anything is written) under a block-level
snapshot; when the log write fails the whole block is reverted and every tx in
it gets ``LogUnavailable`` (HTTP 503): nothing unacknowledged is reported done.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from sequencer.core.encoding import compute_block_hash, encode_block, make_block
from sequencer.core.records import Receipt, Record
from sequencer.core.rules.funding import get_due_funding_time
from sequencer.core.state import State
from sequencer.core.transition import (BlockResult, Context, RuleError, apply_record,
                                       process_block_end)
from sequencer.log.kafka import Fenced, LogUnavailable
from sequencer.executor.chain import Chain
from sequencer.node.lifecycle import NodeFailed
from sequencer.node.metrics import METRICS

log = logging.getLogger("isoroll.builder")

Admit = Callable[[State, Record, int, Context], list[Record]]


def admit_single(state: State, record: Record, timestamp_ms: int, ctx: Context) -> list[Record]:
    """Default admission: apply the record alone; raise its RuleError if it fails."""
    error = apply_record(state, record, timestamp_ms, ctx)
    if error is not None:
        raise error
    return [record]


@dataclass
class Submission:
    record: Record
    future: asyncio.Future
    received: float = field(default_factory=time.perf_counter)


class BlockBuilder:
    def __init__(self, chain: Chain, write: Callable[[bytes], Awaitable[int]], *,
                 max_records: int, interval_ms: float, ctx: Context | None = None, admit: Admit = admit_single,
                 exchange=None, now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 on_log_failure: Callable[[LogUnavailable], Awaitable[None]] | None = None,
                 on_fenced: Callable[[Fenced], Awaitable[None]] | None = None) -> None:
        """``ctx`` defaults to the chain's; ``on_log_failure`` is awaited after a
        write failed (the block reverted, its txs told), ``on_fenced`` once a
        newer sequencer fenced this one."""
        self.chain = chain
        self._write = write
        self.max_records = max_records
        self.interval_s = interval_ms / 1000
        self.admit = admit if exchange is None else exchange.admit
        self.exchange = exchange
        """The order books (sequencer.core.matching.Exchange), or None for the account model only."""
        self.now_ms = now_ms
        self.ctx = ctx if ctx is not None else chain.ctx
        self._queue: asyncio.Queue[Submission] = asyncio.Queue()
        self._settled = asyncio.Event()
        self._settled.set()
        self.on_log_failure = on_log_failure
        self.on_fenced = on_fenced
        self.stopped = False
        """Set once fenced or halted: this builder never writes again."""
        self._halted: Exception | None = None

    # --- the API side -----------------------------------------------------
    def submit(self, record: Record) -> asyncio.Future:
        """Queue a verified record; the future resolves to its Receipt after the
        commit, or raises RuleError (refused, nothing written) or LogError."""
        if self.stopped:
            raise self._halted or Fenced("this sequencer was fenced by a newer one and no longer writes")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Submission(record, future))
        METRICS.gauge("isoroll_pending_txs").set(self._queue.qsize())
        return future

    async def settled(self) -> None:
        """Wait until no block is being written, so reads see committed state only."""
        await self._settled.wait()

    def halt(self, error: Exception) -> None:
        """Never write again; every queued tx and every later submit gets ``error``."""
        self.stopped = True
        self._halted = error
        self.fail_pending(error)
        self._settled.set()

    def fail_pending(self, error: Exception) -> None:
        while not self._queue.empty():
            sub = self._queue.get_nowait()
            if not sub.future.done():
                sub.future.set_exception(error)

    # --- the loop ----------------------------------------------------------------
    IDLE_WAKE_S = 0.25
    """With an exchange, how often an idle builder wakes to write the funding
    ticks that fell due (a block of block-start records only)."""

    async def run(self) -> None:
        while not self.stopped:
            batch = await self._collect()
            if batch or self._funding_due():
                await self._build_and_write(batch)

    def _funding_due(self) -> bool:
        """Whether ``exchange.due_funding`` would emit a tick now (nothing applied)."""
        if self.exchange is None:
            return False
        state = self.chain.state
        timestamp_ms = max(self.now_ms(), state.globals.timestamp_ms)
        return any(get_due_funding_time(state.markets.get(market_id), params, timestamp_ms) is not None
                   for market_id, params in self.exchange.markets.items())

    async def _collect(self) -> list[Submission]:
        if self.exchange is None:
            batch = [await self._queue.get()]
        else:
            try:
                batch = [await asyncio.wait_for(self._queue.get(), self.IDLE_WAKE_S)]
            except asyncio.TimeoutError:
                return []
        # The block collects for interval_s from its first tx's arrival, not from
        # now: txs that queued while the previous block was committing have waited
        # already, and are cut into a block at once.
        deadline = batch[0].received + self.interval_s
        while len(batch) < self.max_records:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _build_and_write(self, batch: list[Submission]) -> None:
        try:
            await self._build_and_write_checked(batch)
        except Exception as exc:
            # Not a rule break (those are refusals) nor a log error (handled
            # inside): a bug or a broken machine.  Nobody gets a receipt or an
            # ack for this batch; the exception stops the builder's task and
            # with it the node (Node.fail).
            failure = NodeFailed(f"the executor failed building a block: {exc!r}")
            for sub in batch:
                if not sub.future.done():
                    sub.future.set_exception(failure)
            self.halt(failure)
            raise

    async def _build_and_write_checked(self, batch: list[Submission]) -> None:
        state = self.chain.state
        g = state.globals
        timestamp_ms = max(self.now_ms(), g.timestamp_ms)
        block_snapshot = state.snapshot()
        admitted: list[tuple[Submission, int]] = []
        records: list[Record] = self._block_start_records(state, timestamp_ms)
        for sub in batch:
            if sub.future.done():  # the client went away
                continue
            if len(records) >= self.max_records - self.RESERVED_RECORDS:
                self._queue.put_nowait(sub)  # next block
                continue
            try:
                derived = self.admit(state, sub.record, timestamp_ms, self.ctx)
            except RuleError as exc:
                sub.future.set_exception(exc)
                METRICS.counter("isoroll_txs_refused_total").inc()
                continue
            admitted.append((sub, len(records)))
            records.extend(derived)
        if not records:
            # Nothing was applied (admission is atomic): no need to rebuild the books.
            state.revert(block_snapshot)
            return
        block = make_block(g.block_number + 1, g.block_hash, timestamp_ms, records)
        message = encode_block(block)
        block_hash = compute_block_hash(message)
        process_block_end(state, block, block_hash)
        self._settled.clear()
        try:
            offset = await self._write(message)
        except (LogUnavailable, Fenced) as exc:
            self._revert(block_snapshot)
            self._settled.set()
            self._fail(admitted, exc)
            await self._handle_log_error(exc)
            return
        state.commit(0)
        receipts = self._receipts(block, block_hash, records)
        info = self.chain.commit_built_block(offset, message, BlockResult(block, block_hash, receipts, True))
        self._settled.set()
        now = time.perf_counter()
        for sub, index in admitted:
            if not sub.future.done():
                sub.future.set_result(receipts[index])
            METRICS.histogram("isoroll_submit_to_receipt_seconds").observe(now - sub.received)
        METRICS.counter("isoroll_blocks_written_total").inc()
        METRICS.counter("isoroll_txs_acked_total").inc(len(admitted))
        METRICS.gauge("isoroll_block_number").set(info.number)
        METRICS.gauge("isoroll_pending_txs").set(self._queue.qsize())

    RESERVED_RECORDS = 256
    """Room kept in every block for the records one admission derives (trades,
    liquidations, funding ticks), so a block never exceeds max_records."""

    def _block_start_records(self, state: State, timestamp_ms: int) -> list[Record]:
        """Funding ticks due at this block time (and the liquidations they cause)."""
        if self.exchange is None:
            return []
        self.exchange.prune_expired(timestamp_ms)
        return self.exchange.due_funding(state, timestamp_ms, self.ctx)

    def _revert(self, snapshot: int) -> None:
        self.chain.state.revert(snapshot)
        if self.exchange is not None:
            self.exchange.rebuild(self.chain.state)

    def _receipts(self, block, block_hash: bytes, records: list[Record]) -> list[Receipt]:
        from sequencer.core.encoding import compute_record_hash
        return [Receipt(compute_record_hash(raw), block.number, i, True, None)
                for i, raw in enumerate(block.records)]

    def _fail(self, admitted: list[tuple[Submission, int]], exc: Exception) -> None:
        METRICS.counter("isoroll_block_write_failures_total").inc()
        for sub, _ in admitted:
            if not sub.future.done():
                sub.future.set_exception(exc)

    async def _handle_log_error(self, exc: Exception) -> None:
        if isinstance(exc, Fenced):
            log.error("fenced: %s; this sequencer stops writing", exc)
            self.stopped = True
            self.fail_pending(exc)
            if self.on_fenced is not None:
                await self.on_fenced(exc)
            return
        log.warning("log write failed, recovering: %s", exc)
        if self.on_log_failure is not None:
            await self.on_log_failure(exc)
