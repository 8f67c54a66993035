"""The sequencer's block builder, the async driver of the block assembler:
collect checked txs, cut a block by size or time, have the assembler
(sequencer.node.assembler) admit them and build the block, write it to the log
in one Kafka transaction, acknowledge after commit.

A tx that breaks a rule is refused before anything is written; when the log
write fails the whole block is reverted and every tx in it gets
``LogUnavailable`` (HTTP 503): nothing unacknowledged is reported done.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from sequencer.core.records import Record
from sequencer.core.transition import Context
from sequencer.executor.chain import Chain
from sequencer.log.kafka import Fenced, LogUnavailable
from sequencer.node.assembler import Admit, Assembly, BlockAssembler, CheckedRecord, Outcome, admit_single
from sequencer.node.lifecycle import NodeFailed
from sequencer.node.metrics import METRICS

log = logging.getLogger("isoroll.builder")


@dataclass(slots=True)
class Submission:
    tx: CheckedRecord
    future: asyncio.Future
    received: float = field(default_factory=time.perf_counter)


class BlockBuilder:
    def __init__(self, chain: Chain, write: Callable[[bytes], Awaitable[int]], *,
                 max_records: int, interval_ms: float, ctx: Context | None = None, admit: Admit = admit_single,
                 exchange=None, now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 on_log_failure: Callable[[LogUnavailable], Awaitable[None]] | None = None,
                 on_fenced: Callable[[Fenced], Awaitable[None]] | None = None,
                 censor_inbox_from: int = -1) -> None:
        """``ctx`` defaults to the chain's; ``on_log_failure`` is awaited after a
        write failed (the block reverted, its txs told), ``on_fenced`` once a
        newer sequencer fenced this one."""
        self.chain = chain
        self._write = write
        self.max_records = max_records
        self.interval_s = interval_ms / 1000
        self.exchange = exchange
        """The order books (sequencer.core.matching.Exchange), or None for the account model only."""
        self.now_ms = now_ms
        self.ctx = ctx if ctx is not None else chain.ctx
        self.assembler = BlockAssembler(chain.state, self.ctx, max_records=max_records, exchange=exchange,
                                        admit=admit)
        self._queue: asyncio.Queue[Submission] = asyncio.Queue()
        self._carried: list[Submission] = []
        """Txs the last block had no room for (records or bytes): the next
        block takes them first, in their order."""
        self._settled = asyncio.Event()
        self._settled.set()
        self.on_log_failure = on_log_failure
        self.on_fenced = on_fenced
        self.censor_inbox_from = censor_inbox_from
        """Devnet drills: inbox records from this index on are held, never
        written (NodeConfig.censor_inbox_from); -1 takes them all."""
        self.held: list[Submission] = []
        self.stopped = False
        """Set once fenced or halted: this builder never writes again."""
        self._halted: Exception | None = None

    # --- the API side -----------------------------------------------------
    def submit(self, tx: CheckedRecord | Record) -> asyncio.Future:
        """Queue a checked tx (a bare record is encoded and hashed here); the
        future resolves to its ``Outcome`` after the commit, or raises RuleError
        (refused, nothing written), LogError or NodeFailed."""
        if self.stopped:
            raise self._halted or Fenced("this sequencer was fenced by a newer one and no longer writes")
        future = asyncio.get_running_loop().create_future()
        if not isinstance(tx, CheckedRecord):
            tx = CheckedRecord.of(tx)
        if self.is_censored(tx.record):
            self.held.append(Submission(tx, future))  # answered never, as a censoring operator
            return future
        self._queue.put_nowait(Submission(tx, future))
        METRICS.gauge("isoroll_pending_txs").set(self._queue.qsize())
        return future

    def is_censored(self, record: Record) -> bool:
        index = getattr(record, "inbox_index", None)  # only L1 inbox records carry one
        return index is not None and 0 <= self.censor_inbox_from <= index

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
        carried, self._carried = self._carried, []
        for sub in carried:
            if not sub.future.done():
                sub.future.set_exception(error)
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
            if batch or self.assembler.is_block_start_due(self.now_ms()):
                await self._build_and_write(batch)

    async def _collect(self) -> list[Submission]:
        if self._carried:
            batch, self._carried = self._carried, []
            return batch + self._take_queued(self.max_records - len(batch))
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

    def _take_queued(self, n: int) -> list[Submission]:
        """Up to ``n`` txs already queued, without waiting."""
        taken = []
        while len(taken) < n and not self._queue.empty():
            taken.append(self._queue.get_nowait())
        return taken

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
        batch = [sub for sub in batch if not sub.future.done()]  # a client that went away
        assembly = self.assembler.assemble([sub.tx for sub in batch], self.now_ms())
        admitted = self._settle_refusals(batch, assembly)
        if assembly.result is None:
            return
        self._settled.clear()
        try:
            offset = await self._write(assembly.message)
        except (LogUnavailable, Fenced) as exc:
            self.assembler.revert(assembly)
            self._settled.set()
            self._fail(admitted, exc)
            await self._handle_log_error(exc)
            return
        except asyncio.CancelledError:
            # The node stops with this block in flight (the broker may be away).
            # Whether it is in the log is for the log to say (a restart replays
            # it); the state goes back to the last committed block, so the
            # shutdown can write its snapshot, and nobody is told it is done.
            self.assembler.revert(assembly)
            self._settled.set()
            self._fail(admitted, LogUnavailable("the node stopped while the block was being written"))
            raise
        self.assembler.commit(assembly)
        info = self.chain.commit_built_block(offset, assembly.message, assembly.result)
        self._settled.set()
        now = time.perf_counter()
        for sub, outcome in admitted:
            if not sub.future.done():
                sub.future.set_result(outcome)
            METRICS.histogram("isoroll_submit_to_receipt_seconds").observe(now - sub.received)
        METRICS.counter("isoroll_blocks_written_total").inc()
        METRICS.counter("isoroll_txs_acked_total").inc(len(admitted))
        METRICS.gauge("isoroll_block_number").set(info.number)
        METRICS.gauge("isoroll_pending_txs").set(self._queue.qsize())

    def _settle_refusals(self, batch: list[Submission], assembly: Assembly) -> list[tuple[Submission, Outcome]]:
        """Refused txs get their RuleError now, those without room are carried to
        the next block (ahead of the queue); returns the admitted ones with their
        outcomes."""
        admitted = []
        for sub, outcome in zip(batch, assembly.outcomes):
            if isinstance(outcome, Outcome):
                admitted.append((sub, outcome))
            elif outcome is None:
                self._carried.append(sub)
            else:
                sub.future.set_exception(outcome)
                METRICS.counter("isoroll_txs_refused_total").inc()
        return admitted

    def _fail(self, admitted: list[tuple[Submission, Outcome]], exc: Exception) -> None:
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
