"""The node: wires the executor (Chain, transition) to the log (Kafka) and
snapshots.  Start-up = latest snapshot + replay of the log from the offset it
stored; then either lead (claim the transactional id, fencing any older
sequencer, and build blocks) or follow (replay as blocks commit).  Its life
cycle is one state machine (sequencer.node.lifecycle).

Two failure channels: a record that breaks a rule is a failed receipt (the
executor handles it); anything else the executor raises is a bug or a broken
machine, and the node stops applying and writing at once (phase FAILED, a
CRITICAL log line, pending txs get 503) instead of carrying on with a state
another replica would not have.  ``failed`` is set; the service exits non-zero.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import msgspec

from sequencer.core.matching import Exchange
from sequencer.core.transition import Context
from sequencer.executor import context as executor_context
from sequencer.executor.chain import Chain
from sequencer.executor.genesis import build_genesis
from sequencer.executor.snapshot import (SNAPSHOT_FORMAT, decode_node_snapshot, decode_snapshot,
                                         encode_index_frame, encode_node_snapshot, encode_node_state,
                                         get_snapshot_format, mark_indexed)
from sequencer.log.kafka import BlockReader, BlockWriter, Fenced, LogConfig, LogUnavailable, ensure_topic
from sequencer.node.builder import BlockBuilder
from sequencer.node.checkers import TxCheckers, get_auto_workers
from sequencer.node.config import NodeConfig, load_allocations, resolve_l1_config
from sequencer.node.election import Election
from sequencer.node.fills import FillIndex
from sequencer.node.lifecycle import IllegalTransition, Lifecycle, NodeFailed, Phase
from sequencer.node.metrics import METRICS

log = logging.getLogger("isoroll.node")


def make_context(config: NodeConfig) -> Context:
    return executor_context.make_context(config.preset, config.l1_bridge_address,
                                         signature_backend=config.signature_backend,
                                         verify_signatures=config.verify_signatures_on_replay)


def make_log_config(config: NodeConfig) -> LogConfig:
    return LogConfig(bootstrap_servers=config.kafka_bootstrap_servers, topic=config.kafka_topic,
                     transactional_id=config.transactional_id,
                     replication_factor=config.kafka_replication_factor,
                     min_insync_replicas=config.kafka_min_insync_replicas,
                     commit_timeout_s=config.kafka_commit_timeout_s,
                     request_timeout_ms=config.kafka_request_timeout_ms,
                     client_id=f"isoroll-{config.sequencer_id}")


class ExecutorFailure(Exception):
    """The executor raised something other than a rule break while applying
    the log (never retried: replaying the same input hits the same bug)."""


ChainObserver = Callable[[Chain], None]


class Node:
    def __init__(self, config: NodeConfig, *, ctx: Context | None = None,
                 chain_observers: Sequence[ChainObserver] = ()) -> None:
        """``ctx`` defaults to the config's (make_context); ``chain_observers`` are
        called with the chain as soon as it is loaded, before the log is replayed
        (indexes that must see every block)."""
        config = resolve_l1_config(config)
        self.config = config
        self.ctx = ctx if ctx is not None else make_context(config)
        self.domain = executor_context.make_domain(config.preset, config.l1_bridge_address)
        self.log_config = make_log_config(config)
        self.lifecycle = Lifecycle()
        self.failed = asyncio.Event()
        """Set when the node stopped on an executor failure (phase FAILED)."""
        self.failure: BaseException | None = None
        self.fills = FillIndex(self.log_config)
        """Recent fills per account (a chain observer, like the ones passed in)."""
        self._chain_observers: list[ChainObserver] = [self.fills.attach, *chain_observers]
        self.chain: Chain | None = None
        self.reader: BlockReader | None = None
        self.writer: BlockWriter | None = None
        self.builder: BlockBuilder | None = None
        self.election: Election | None = None
        """Standby sequencers only (``config.standby``): who leads this sequencer id."""
        self._follow_task: asyncio.Task | None = None
        self._builder_task: asyncio.Task | None = None
        self.lag_messages = 0
        """Committed log messages not applied yet (a follower's or standby's lag)."""
        self.log_reachable = True
        """The last broker liveness check passed (``probe_loop``); ``ready`` needs it."""
        self._log_back = asyncio.Event()
        """Set when the liveness check passes again after failing (``_retry`` stops waiting)."""
        self.log_probe_error = ""
        workers = config.tx_check_workers if config.tx_check_workers >= 0 else get_auto_workers()
        self.checkers = TxCheckers(workers if config.mode == "sequencer" else 0, self.domain,
                                   config.signature_backend)
        """Stateless tx checks for the API, in worker processes when there are cores for them."""
        self._tasks: list[asyncio.Task] = []
        self._blocks_since_snapshot = 0
        self._snapshot_thread: ThreadPoolExecutor | None = None
        self.exchange = None
        """The order books; the sequencer keeps them live, a follower rebuilds them on demand."""
        self._books_at = -1

    # --- life cycle ----------------------------------------------------------
    @property
    def phase(self) -> Phase:
        return self.lifecycle.phase

    @property
    def ready(self) -> bool:
        return self.lifecycle.ready and self.log_reachable

    @property
    def fenced(self) -> bool:
        return self.lifecycle.phase is Phase.FENCED

    @property
    def mode(self) -> str:
        """What the node does now: a fenced sequencer is a follower."""
        if self.phase is Phase.STANDBY:
            return "standby"
        return "follower" if self.config.mode == "follower" or self.fenced else "sequencer"

    @property
    def status_message(self) -> str:
        if self.lifecycle.ready and not self.log_reachable:
            return f"waiting for Kafka: {self.log_probe_error}"
        return self.lifecycle.status

    def observe_chain(self, observe: ChainObserver) -> None:
        """Have ``observe(chain)`` called as soon as the chain is loaded, before the
        replay (an index that must see every block); only before ``start``."""
        if self.phase is not Phase.CREATED:
            raise IllegalTransition("chain observers are added before the node starts")
        self._chain_observers.append(observe)

    def enter(self, phase: Phase, status: str) -> None:
        """Move the life cycle on (refusing a transition it does not allow)."""
        previous = self.lifecycle.phase
        self.lifecycle.enter(phase, status)
        METRICS.gauge("isoroll_ready").set(1 if self.ready else 0)
        if previous is not phase:
            log.info("node %s -> %s: %s", previous.value, phase.value, status)

    def set_status(self, status: str) -> None:
        self.lifecycle.status = status

    async def start(self) -> None:
        if self.phase is not Phase.CREATED:
            return
        self.enter(Phase.LOADING, "loading the snapshot and replaying the log")
        self.chain = self.load_chain()
        for observe in self._chain_observers:
            observe(self.chain)
        self.chain.listeners.append(self._on_block)
        await self._retry("create the topic", lambda: ensure_topic(self.log_config))
        self.reader = BlockReader(self.log_config, self.chain.next_offset)
        await self._retry("start the log reader", self.reader.start)
        try:
            await self.catch_up(show_progress=True)
        except ExecutorFailure as exc:
            self.fail(exc)
            raise NodeFailed(f"the node stopped on an executor failure while replaying the log: {exc}") from exc
        if self.config.mode == "sequencer":
            await self.checkers.start()
            if self.config.standby:
                await self.stand_by()
            else:
                await self.lead()
        else:
            self._follow_task = self._spawn(self.follow())
            self.enter(Phase.FOLLOWING, "following the log")
        self._spawn(self.snapshot_loop())
        self._spawn(self.probe_loop())
        # Everything alive now (modules, the loaded state, the books) lives as long as
        # the node: move it out of the cyclic GC's reach, so that a full collection
        # only walks what was made since.  Measured: gen-2 pauses of 32-56 ms while
        # serving 1,500 tx/s before (docs/benchmarks.md).
        gc.freeze()

    async def stop(self) -> None:
        if self.phase is Phase.CREATED:
            self.enter(Phase.STOPPED, "stopped before it started")
        if self.phase in (Phase.STOPPING, Phase.STOPPED):
            return
        failed = self.phase is Phase.FAILED
        self.enter(Phase.STOPPING, "stopping")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.election is not None:
            await self.election.stop()  # leave the group: a standby takes over at once
        if self.builder is not None and not failed:
            self.builder.fail_pending(LogUnavailable("the node is shutting down"))
        # A clean shutdown stays within a few seconds with the brokers away too.
        if self.writer is not None:
            await self.writer.stop(self.STOP_KAFKA_TIMEOUT_S)
        await self.checkers.stop()
        if self.reader is not None:
            await self.reader.stop(self.STOP_KAFKA_TIMEOUT_S)
        if self._snapshot_thread is not None:
            # Let a snapshot the loop started land first: frames go to the index in order.
            await asyncio.to_thread(self._snapshot_thread.shutdown, True)
            self._snapshot_thread = None
        if failed:
            log.critical("no snapshot written: the state may hold a half-applied block; "
                         "a restart replays the log from the last snapshot")
        elif self.chain is not None and self.chain.state._journal == []:
            self.write_snapshot()
        self.enter(Phase.STOPPED, "stopped after an executor failure" if failed else "stopped")

    def abandon_writes(self, why: str) -> None:
        """At shutdown with the brokers away: refuse every queued and later tx and
        cancel the block write in flight (reverted, its txs told 503), so that
        requests are answered now instead of at the commit timeout."""
        if self.builder is not None:
            self.builder.halt(LogUnavailable(why))
        if self._builder_task is not None:
            self._builder_task.cancel()

    async def __aenter__(self) -> "Node":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.fail(task.exception())

    def fail(self, exc: BaseException) -> None:
        """Stop applying and writing at once: a bug or a broken machine, not a
        verdict on the input (those are failed receipts)."""
        if not self.lifecycle.can_enter(Phase.FAILED):
            return
        cause = exc.__cause__ if isinstance(exc, ExecutorFailure) and exc.__cause__ is not None else exc
        log.critical("EXECUTOR FAILURE, the node stops: %r (no receipt, no ack, nothing more written; "
                     "restart replays from the last snapshot)", cause, exc_info=cause)
        self.failure = cause
        self.enter(Phase.FAILED, f"stopped on an executor failure: {cause!r}")
        if self.election is not None:  # hand the lead to a standby at once
            asyncio.get_running_loop().create_task(self.election.stop())
        if self.builder is not None:
            self.builder.halt(NodeFailed(f"the node stopped on an executor failure: {cause!r}"))
        for task in self._tasks:
            if task is not asyncio.current_task() and not task.done():
                task.cancel()
        self.failed.set()

    STOP_KAFKA_TIMEOUT_S = 1.0
    """How long a shutdown waits for each Kafka client to close (the producer's
    close aborts an open transaction; a broker that does not answer leaves it to
    the next producer of the transactional id)."""
    PROBE_INTERVAL_S = 0.25
    PROBE_TIMEOUT_S = 0.8

    async def probe_loop(self) -> None:
        """Readiness follows the brokers within about a second (``/readyz``): a
        metadata request every ``PROBE_INTERVAL_S``; one that fails or takes
        longer than ``PROBE_TIMEOUT_S`` makes the node unready until one passes.
        Without it ``/readyz`` would stay 200 until a block commit timed out."""
        while True:
            try:
                await self.reader.probe(self.PROBE_TIMEOUT_S)
                error = ""
            except Exception as exc:  # noqa: BLE001 - any failure is a failed check, never a node failure
                error = str(exc) or repr(exc)
            if (not error) != self.log_reachable:
                self.log_reachable, self.log_probe_error = not error, error
                if error:
                    log.warning("Kafka liveness check failed, not ready: %s", error)
                else:
                    log.info("Kafka liveness check passes again")
                    self._log_back.set()
                METRICS.gauge("isoroll_ready").set(1 if self.ready else 0)
            await asyncio.sleep(self.PROBE_INTERVAL_S)

    async def _retry(self, what: str, action, delay: float = 0.5, max_delay: float = 5.0) -> None:
        """``action()`` until it passes, ``delay`` s apart (doubling up to ``max_delay``), or
        sooner: as soon as the liveness check sees the brokers back (then from ``delay`` again)."""
        first_delay = delay
        while True:
            self._log_back.clear()
            try:
                return await action()
            except LogUnavailable as exc:
                self.set_status(f"waiting for Kafka: cannot {what}")
                log.warning("cannot %s (%s); retrying in %.1fs", what, exc, delay)
            except Exception as exc:  # aiokafka raises a few non-Kafka errors while a broker is down
                if isinstance(exc, (Fenced, ExecutorFailure, asyncio.CancelledError)):
                    raise
                self.set_status(f"waiting for Kafka: cannot {what}")
                log.warning("cannot %s (%r); retrying in %.1fs", what, exc, delay)
            try:
                await asyncio.wait_for(self._log_back.wait(), delay)
                delay = first_delay  # the brokers are back: retry now, and soon again if that was early
            except TimeoutError:
                delay = min(max_delay, delay * 2)

    # --- state from snapshot + log ---------------------------------------------------
    INDEX_FILE = "index.bin"
    """Next to the snapshots: the receipt and block index, append-only (sequencer.executor.snapshot)."""

    @property
    def index_path(self) -> Path:
        return self.config.snapshot_dir / self.INDEX_FILE

    def load_chain(self) -> Chain:
        path = self.latest_snapshot_path()
        if path is None:
            chain = Chain(build_genesis(load_allocations(self.config)), self.ctx)
            self._cut_index(0)
            log.info("no snapshot in %s: starting from genesis", self.config.snapshot_dir)
        else:
            started = time.perf_counter()
            chain = self._read_snapshot(path)
            log.info("loaded snapshot %s (block %d, next offset %d, %d receipts) in %.2fs", path.name,
                     chain.head_number, chain.next_offset, len(chain.receipts), time.perf_counter() - started)
        chain.track_index = True
        return chain

    def _read_snapshot(self, path: Path) -> Chain:
        data = path.read_bytes()
        if get_snapshot_format(data) == SNAPSHOT_FORMAT:
            # Written before the index file existed: it holds the receipts itself.
            chain = decode_snapshot(data, self.ctx)
            self._cut_index(0)
            chain.unindexed_receipts = list(chain.receipts.values())
            chain.unindexed_blocks = list(chain.block_infos)
            return chain
        index = self.index_path.read_bytes() if self.index_path.exists() else b""
        chain, length, expected = decode_node_snapshot(data, index, self.ctx)
        if length < expected:
            log.error("the index file %s holds %d valid bytes, the snapshot expects %d: receipts of "
                      "older blocks are missing (GET /v1/tx answers 404 for them); the state is complete",
                      self.index_path, length, expected)
        self._cut_index(length)  # drops frames whose snapshot never landed, and torn writes
        return chain

    def _cut_index(self, length: int) -> None:
        if self.index_path.exists() and self.index_path.stat().st_size > length:
            os.truncate(self.index_path, length)

    def latest_snapshot_path(self) -> Path | None:
        directory = self.config.snapshot_dir
        if not directory.is_dir():
            return None
        snaps = sorted(directory.glob("snapshot-*.bin"))
        return snaps[-1] if snaps else None

    def write_snapshot(self) -> Path:
        """Atomically write a snapshot (state, tree, applied offset) after appending
        the new receipts to the index file."""
        parts, taken = self.encode_snapshot()
        path = self.store_snapshot(*parts)
        mark_indexed(self.chain, *taken)
        return path

    def encode_snapshot(self) -> tuple[tuple, tuple[int, int]]:
        """The snapshot's parts, taken in the event loop so they show one block
        boundary, and how many index entries the frame takes."""
        assert self.chain is not None
        state_bytes, tree_bytes = encode_node_state(self.chain)
        frame, receipts, blocks = encode_index_frame(self.chain)
        return (state_bytes, tree_bytes, frame, self.chain.head_number, self.chain.next_offset), (receipts, blocks)

    def store_snapshot(self, state_bytes: bytes, tree_bytes: bytes, frame: bytes, head: int,
                       next_offset: int) -> Path:
        """Append the index frame and fsync it, then write and fsync the snapshot
        that names the index length, then drop all but the newest two snapshots.
        No state is read here, so it runs in the snapshot thread."""
        started = time.perf_counter()
        directory = self.config.snapshot_dir
        directory.mkdir(parents=True, exist_ok=True)
        with open(self.index_path, "ab") as fh:
            start = fh.tell()
            try:
                fh.write(frame)
                fh.flush()
                os.fsync(fh.fileno())
            except BaseException:
                fh.truncate(start)  # no torn frame before the next one
                raise
            index_bytes = fh.tell()
        data = encode_node_snapshot(state_bytes, tree_bytes, next_offset, index_bytes)
        path = directory / f"snapshot-{next_offset:016d}.bin"
        tmp = path.with_suffix(".tmp")  # one writer at a time: stop() waits for the snapshot thread
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        for old in sorted(directory.glob("snapshot-*.bin"))[:-2]:
            old.unlink(missing_ok=True)
        METRICS.counter("isoroll_snapshots_written_total").inc()
        log.info("snapshot at block %d, next offset %d (%d bytes, index +%d bytes, written in %.3fs)", head,
                 next_offset, len(data), len(frame), time.perf_counter() - started)
        return path

    async def snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._blocks_since_snapshot >= self.config.snapshot_interval_blocks:
                if self.builder is not None:
                    await self.builder.settled()
                self._blocks_since_snapshot = 0
                started = time.perf_counter()
                parts, taken = self.encode_snapshot()
                METRICS.histogram("isoroll_snapshot_encode_seconds").observe(time.perf_counter() - started)
                # The file writes and fsyncs leave the event loop, in one thread that
                # keeps snapshots (and index frames) in order.
                try:
                    await asyncio.wrap_future(self._get_snapshot_thread().submit(self.store_snapshot, *parts))
                except OSError as exc:
                    log.error("snapshot not written (%s); the next one retries", exc)
                    continue
                mark_indexed(self.chain, *taken)

    def _get_snapshot_thread(self) -> ThreadPoolExecutor:
        if self._snapshot_thread is None:
            self._snapshot_thread = ThreadPoolExecutor(1, thread_name_prefix="isoroll-snapshot")
        return self._snapshot_thread

    async def catch_up(self, show_progress: bool = False) -> None:
        """Apply every committed message up to the current end of the log."""
        assert self.reader is not None and self.chain is not None
        self.reader.seek(self.chain.next_offset)
        end = await self.reader.end_offset()
        start = self.chain.next_offset
        total = max(1, end - start)
        last_report = time.monotonic()
        self.chain.root_interval = max(1, self.config.catch_up_root_interval_blocks)
        while await self.reader.position() < end:
            self.apply_messages(await self.reader.read(timeout_ms=500))
            done = self.chain.next_offset - start
            METRICS.gauge("isoroll_replay_progress_ratio").set(min(1.0, done / total))
            if show_progress and time.monotonic() - last_report > 2.0:
                last_report = time.monotonic()
                log.info("replaying the log: offset %d of %d (%.0f%%)", self.chain.next_offset, end,
                         100 * min(1.0, done / total))
        self.chain.finish_catch_up()
        METRICS.gauge("isoroll_replay_progress_ratio").set(1.0)
        if show_progress and end > start:
            log.info("replayed %d messages; head block %d", end - start, self.chain.head_number)

    # --- leading ------------------------------------------------------------------------
    async def lead(self) -> None:
        """Claim the transactional id (fencing older sequencers), replay what they
        committed, then build blocks."""
        assert self.chain is not None
        self.writer = BlockWriter(self.log_config)
        await self._retry("start the transactional producer", self.writer.start)
        await self._retry("catch up with the log", self.catch_up)
        self.exchange = Exchange.for_context(self.ctx)
        self.exchange.rebuild(self.chain.state)
        self.builder = BlockBuilder(
            self.chain, self.writer.write,
            # The API checked every signature already (node.checkers, the oracle quorum).
            ctx=msgspec.structs.replace(self.ctx, verify_signatures=False),
            max_records=min(self.config.block_max_records, self.ctx.preset.max_block_records),
            interval_ms=self.config.block_interval_ms, exchange=self.exchange,
            on_log_failure=self._on_log_failure, on_fenced=self._on_fenced,
            censor_inbox_from=self.config.censor_inbox_from)
        self._builder_task = self._spawn(self.builder.run())
        self.enter(Phase.SEQUENCING, "sequencing")
        log.info("sequencing as %s (transactional id %s) from block %d", self.config.sequencer_id,
                 self.config.transactional_id, self.chain.head_number)

    async def _on_log_failure(self, exc: LogUnavailable) -> None:
        if self.election is not None and self.phase is not Phase.SEQUENCING:
            return  # the write failed because this node stepped down meanwhile
        self.enter(Phase.RECOVERING, f"log unavailable: {exc}")
        assert self.builder is not None and self.writer is not None
        self.builder.fail_pending(LogUnavailable(f"the log cannot take writes: {exc}"))
        if self.election is not None:
            # Restarting the producer would fence whoever the election chose while
            # this node was cut off (or paused): stand by and let the group decide.
            await self.step_down(f"the log failed ({exc}); rejoining the election")
            await self._retry("rejoin the election", self.election.rejoin)
            return
        try:
            await self._retry("restart the transactional producer", self.writer.start)
        except Fenced as fenced:
            self.builder.halt(fenced)
            await self._on_fenced(fenced)
            return
        await self._retry("catch up with the log", self.catch_up)
        self.exchange.rebuild(self.chain.state)
        self.enter(Phase.SEQUENCING, "sequencing")
        log.info("log available again; sequencing from block %d", self.chain.head_number)

    async def _on_fenced(self, exc: Fenced) -> None:
        if self.election is not None and self.phase is Phase.STANDBY:
            return  # stepped down already; the write in flight was refused
        self.enter(Phase.FENCED, "fenced by a newer sequencer: following the log read-only")
        log.error("FENCED: another sequencer started with sequencer id %r (transactional id %s); "
                  "this node stopped writing and now follows the log read-only",
                  self.config.sequencer_id, self.config.transactional_id)
        if self.writer is not None:
            await self.writer.stop()
        self._follow_task = self._spawn(self.follow())
        if self.election is not None:
            self.election.resign()
            self.enter(Phase.STANDBY, "standing by after being fenced: following the log")
            await self._retry("rejoin the election", self.election.rejoin)

    # --- standby sequencers (sequencer.node.election) -------------------------------
    def get_sequencer_status(self) -> dict:
        """Who writes the log as far as this node knows (GET /v1/status): the
        active sequencer's URL, the election term and this node's lag."""
        active = self.phase is Phase.SEQUENCING
        if self.election is not None:
            url, term = self.election.leadership.active_url or None, self.election.leadership.term
        else:
            url, term = (self.config.advertised_url if active else None), None
        return {"active": active, "activeSequencer": url, "electionTerm": term,
                "lagMessages": 0 if active else self.lag_messages}

    async def stand_by(self) -> None:
        """Follow the log and join the election of this sequencer id."""
        self._follow_task = self._spawn(self.follow())
        self.enter(Phase.STANDBY, "standing by: following the log, ready to take over")
        self.election = Election(self.log_config, self.config.advertised_url, lambda: self.chain.next_offset,
                                 session_timeout_ms=self.config.election_session_timeout_ms)
        await self._retry("join the election", self.election.start)
        self._spawn(self.campaign())

    async def campaign(self) -> None:
        """Act on each election verdict: take over when handed the lead, step
        down when it moved elsewhere."""
        election = self.election
        while True:
            await election.changed.wait()
            election.changed.clear()
            if election.holding and self.phase is Phase.STANDBY:
                await self.take_over()
            elif not election.holding and self.phase in (Phase.SEQUENCING, Phase.RECOVERING):
                await self.step_down(f"the election made {election.leadership.active_url} the active sequencer")

    async def take_over(self) -> None:
        started = time.monotonic()
        if self._follow_task is not None:
            self._follow_task.cancel()
            await asyncio.gather(self._follow_task, return_exceptions=True)
            self._follow_task = None
        log.warning("elected (term %d): taking over as the active sequencer", self.election.leadership.term)
        await self.lead()
        log.warning("active sequencer from block %d, %.2f s after the election", self.chain.head_number,
                    time.monotonic() - started)

    async def step_down(self, why: str) -> None:
        if self.election is not None:
            self.election.resign()
        if self.builder is not None:
            self.builder.halt(Fenced(f"this node stepped down: {why}"))
        if self.writer is not None:
            await self.writer.stop()
        log.warning("stepping down: %s", why)
        self.enter(Phase.STANDBY, f"standing by: {why}")
        self._follow_task = self._spawn(self.follow())

    def get_exchange(self):
        """The order books as of the head: live on the sequencer, rebuilt from the
        state's open orders on a follower when the head moved."""
        if self.builder is not None and not self.builder.stopped and self.exchange is not None:
            return self.exchange
        head = self.chain.head_number
        if self.exchange is None or self._books_at != head:
            self.exchange = self.exchange or Exchange.for_context(self.ctx)
            self.exchange.rebuild(self.chain.state)
            self._books_at = head
        return self.exchange

    async def read_message(self, offset: int) -> bytes:
        """Read one committed message back from the log (old blocks for the API)."""
        async with BlockReader(self.log_config, offset) as reader:
            for _ in range(20):
                for message in await reader.read(timeout_ms=500, max_records=1):
                    return message.value
        raise LogUnavailable(f"could not read offset {offset} back from the log")

    def apply_messages(self, messages) -> None:
        """Apply committed log messages not applied yet; an exception from the
        executor becomes ExecutorFailure (never retried)."""
        chain = self.chain
        for message in messages:
            if message.offset >= chain.next_offset:
                try:
                    chain.apply_message(message.offset, message.value, message.schema)
                except Exception as exc:
                    raise ExecutorFailure(f"applying log offset {message.offset}: {exc!r}") from exc

    # --- following ------------------------------------------------------------------------
    async def follow(self) -> None:
        assert self.reader is not None and self.chain is not None
        self.reader.seek(self.chain.next_offset)
        last_lag = 0.0
        while True:
            try:
                messages = await self.reader.read(timeout_ms=500)
            except LogUnavailable as exc:
                log.warning("follower: %s", exc)
                await asyncio.sleep(1.0)
                continue
            self.apply_messages(messages)
            if time.monotonic() - last_lag > 1.0:
                last_lag = time.monotonic()
                try:
                    end = await self.reader.end_offset()
                    self.lag_messages = max(0, end - await self.reader.position())
                    METRICS.gauge("isoroll_log_lag_messages").set(self.lag_messages)
                except LogUnavailable:
                    pass

    def _on_block(self, info, result) -> None:
        if info is not None:
            self._blocks_since_snapshot += 1
            METRICS.counter("isoroll_blocks_applied_total").inc()
            METRICS.gauge("isoroll_block_number").set(info.number)
        failed = sum(1 for r in result.receipts if not r.ok)
        if failed:
            METRICS.counter("isoroll_failed_receipts_total").inc(failed)
