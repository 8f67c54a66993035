"""Tx checks (JSON parse, tx hash, EIP-712 digest, signature recovery) in worker
processes, so that the node's event loop keeps its core for HTTP and the builder.

The checks are ``sequencer.core.txcheck.check_tx``: pure, stateless.  Each
worker is a spawned process holding one end of a socket pair; the node sends
it a chunk of request bodies and gets the ``CheckedTx`` list back (msgpack,
with ``multiprocessing.Connection`` framing: a 4-byte big-endian length).

Batching is adaptive and adds no wait: a body is sent at once when a worker is
idle; while every worker is busy, bodies queue and the next free worker takes
them all (up to ``max_chunk``) in one message.  So at low load a check costs
one round trip (tens of microseconds), and under load the per-message cost is
spread over many txs.

With ``workers=0`` (or when no worker is alive) the checks run in the event
loop, as they did before workers existed.  A worker that dies is replaced at
once and its chunk is checked in the event loop; nothing is lost or checked
twice into the log (the checks have no side effects).  A body the checks raise
on is refused alone (400 ``unprocessable_tx``), so it cannot take a worker or
the txs sharing its chunk with it.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
import struct
from collections import deque

import msgspec

from sequencer.core import eip712
from sequencer.core.signing import get_recover
from sequencer.core.txcheck import CheckedTx, check_tx, check_txs, refuse

log = logging.getLogger("isoroll.checkers")

_HEADER = struct.Struct("!i")
_encode = msgspec.msgpack.Encoder().encode
_decode_request = msgspec.msgpack.Decoder(list[bytes]).decode
_decode_results = msgspec.msgpack.Decoder(list[CheckedTx]).decode


def get_auto_workers() -> int:
    """One worker per core beyond the event loop's own, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def check_each(bodies: list[bytes], domain: eip712.Domain, separator: bytes, recover) -> list[CheckedTx]:
    """``check_txs``, where a body the checks raise on (not a verdict: a bug they
    did not foresee) is refused alone and the others are still checked."""
    try:
        return check_txs(bodies, domain, separator, recover)
    except Exception:  # noqa: BLE001 - find the body, below
        return [check_one(body, domain, separator, recover) for body in bodies]


def check_one(body: bytes, domain: eip712.Domain, separator: bytes, recover) -> CheckedTx:
    try:
        return check_tx(body, domain, separator, recover)
    except Exception as exc:  # noqa: BLE001 - refused (nothing is written), never a dead worker
        return refuse("unprocessable_tx", f"the tx could not be checked ({type(exc).__name__})")


def worker_main(conn, chain_id: int, verifying_contract: bytes, backend: str) -> None:
    """The worker process: check chunks until the node closes its end."""
    domain = eip712.Domain(chain_id, verifying_contract)
    separator = eip712.compute_domain_separator(domain)
    recover = get_recover(backend)
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        conn.send_bytes(_encode(check_each(_decode_request(request), domain, separator, recover)))


class _Worker:
    def __init__(self, process, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.in_flight: deque[list[tuple[bytes, asyncio.Future]]] = deque()
        self.task: asyncio.Task | None = None


class TxCheckers:
    """``await check(body)`` / ``await check_many(bodies)`` -> CheckedTx, in order."""

    def __init__(self, workers: int, domain: eip712.Domain, backend: str = "coincurve",
                 max_chunk: int = 256) -> None:
        self.size = workers
        self.domain = domain
        self.backend = backend
        self.max_chunk = max_chunk
        self._separator = eip712.compute_domain_separator(domain)
        self._recover = get_recover(backend)
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._pending: deque[tuple[bytes, asyncio.Future]] = deque()
        self._stopping = False
        self._pump_scheduled = False
        self._replacing: set[asyncio.Task] = set()
        self.replaced = 0
        """Workers started in place of one that died."""
        self.checked_inline = 0
        """Txs checked in the event loop (no worker alive, or a worker died)."""
        self.checked_shared = 0
        """Txs of large batches the event loop checked beside the workers (``_share``)."""

    @property
    def alive(self) -> int:
        return len(self._workers)

    # --- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        """Spawn the workers (idempotent)."""
        self._stopping = False
        while len(self._workers) < self.size:
            worker = await self._spawn()
            self._workers.append(worker)
            self._idle.append(worker)

    async def stop(self) -> None:
        """Close every worker (idempotent); queued checks finish in the event loop."""
        self._stopping = True
        for task in list(self._replacing):
            task.cancel()
        workers, self._workers, self._idle = self._workers, [], []
        for worker in workers:
            worker.writer.close()
            if worker.task is not None:
                worker.task.cancel()
            self._check_inline([item for chunk in worker.in_flight for item in chunk])
            worker.in_flight.clear()
        self._flush_inline()
        for worker in workers:
            await asyncio.to_thread(worker.process.join, 2)
            if worker.process.is_alive():
                worker.process.kill()

    async def __aenter__(self) -> "TxCheckers":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _spawn(self) -> _Worker:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        process = ctx.Process(target=worker_main, name="isoroll-txcheck", daemon=True,
                              args=(child, self.domain.chain_id, self.domain.verifying_contract, self.backend))
        await asyncio.to_thread(process.start)
        child.close()
        sock = socket.socket(fileno=os.dup(parent.fileno()))
        parent.close()
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 26)
        worker = _Worker(process, reader, writer)
        worker.task = asyncio.create_task(self._read_results(worker))
        return worker

    # --- checking ---------------------------------------------------------------
    async def check(self, body: bytes) -> CheckedTx:
        if not self._workers:
            self.checked_inline += 1
            return check_one(body, self.domain, self._separator, self._recover)
        future = asyncio.get_running_loop().create_future()
        self._pending.append((body, future))
        self._schedule_pump()
        return await future

    async def check_many(self, bodies: list[bytes]) -> list[CheckedTx]:
        if not self._workers:
            self.checked_inline += len(bodies)
            return check_each(bodies, self.domain, self._separator, self._recover)
        loop = asyncio.get_running_loop()
        futures = []
        for body in bodies:
            future = loop.create_future()
            self._pending.append((body, future))
            futures.append(future)
        self._schedule_pump()
        if len(bodies) >= self.SHARE_MIN_BATCH:
            await self._share(set(map(id, futures)))
        return [await future for future in futures]

    SHARE_MIN_BATCH = 64
    SHARE_SLICE = 8
    """A batch this large is also checked in the event loop, ``SHARE_SLICE`` txs at
    a time (about 1 ms), from the end of the queue while the workers take from its
    head.  Between slices the loop serves everything else.  With one worker on two
    cores this lifted batch ingest from ~0.45x to ~0.6x the single-core recovery
    rate (docs/benchmarks.md)."""

    async def _share(self, mine: set[int]) -> None:
        pending = self._pending
        while True:
            await asyncio.sleep(0)  # the pump and the other requests first
            taken = []
            while pending and len(taken) < self.SHARE_SLICE and id(pending[-1][1]) in mine:
                taken.append(pending.pop())
            if not taken:
                return
            for body, future in taken:
                if not future.done():
                    future.set_result(check_one(body, self.domain, self._separator, self._recover))
            self.checked_shared += len(taken)

    def _schedule_pump(self) -> None:
        """Pump at the end of this event loop iteration, so the requests parsed in
        the same iteration share one message (one socket write: on this VM a write
        to a worker costs tens of microseconds of the event loop's core)."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        """Give queued bodies to idle workers, one message per worker."""
        self._pump_scheduled = False
        while self._pending and self._idle:
            worker = self._idle.pop()
            take = min(len(self._pending), self.max_chunk)
            if len(self._pending) > take and self._idle:
                # Split what is queued over the idle workers instead of one taking it all.
                take = max(1, min(take, -(-len(self._pending) // (len(self._idle) + 1))))
            chunk = [self._pending.popleft() for _ in range(take)]
            worker.in_flight.append(chunk)
            payload = _encode([body for body, _ in chunk])
            worker.writer.write(_HEADER.pack(len(payload)) + payload)

    async def _read_results(self, worker: _Worker) -> None:
        try:
            while True:
                header = await worker.reader.readexactly(_HEADER.size)
                results = _decode_results(await worker.reader.readexactly(_HEADER.unpack(header)[0]))
                chunk = worker.in_flight.popleft()
                for (_, future), result in zip(chunk, results):
                    if not future.done():
                        future.set_result(result)
                if not worker.in_flight:
                    self._idle.append(worker)
                self._pump()
        except asyncio.CancelledError:
            raise
        except (asyncio.IncompleteReadError, ConnectionError, msgspec.DecodeError) as exc:
            if not self._stopping:
                self._on_worker_lost(worker, exc)

    def _on_worker_lost(self, worker: _Worker, exc: Exception) -> None:
        log.error("tx check worker pid %s stopped (%s: %s); its txs are checked in the event loop "
                  "and a new worker is started", worker.process.pid, type(exc).__name__, exc)
        if worker in self._workers:
            self._workers.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        worker.writer.close()
        if worker.process.is_alive():
            worker.process.kill()  # it answered garbage: it must not linger
        # The replacement first: nothing below may keep it from starting.
        task = asyncio.get_running_loop().create_task(self._replace())
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)
        self._check_inline([item for chunk in worker.in_flight for item in chunk])
        worker.in_flight.clear()
        if not self._workers:
            self._flush_inline()

    async def _replace(self) -> None:
        try:
            worker = await self._spawn()
        except Exception as exc:  # noqa: BLE001 - keep serving inline
            log.error("cannot start a tx check worker (%s); checking in the event loop", exc)
            return
        if self._stopping:
            worker.writer.close()
            worker.process.kill()
            return
        self._workers.append(worker)
        self._idle.append(worker)
        self.replaced += 1
        log.info("tx check worker pid %s started in place of the one that stopped", worker.process.pid)
        self._pump()

    def _flush_inline(self) -> None:
        items = list(self._pending)
        self._pending.clear()
        self._check_inline(items)

    def _check_inline(self, items: list[tuple[bytes, asyncio.Future]]) -> None:
        for body, future in items:
            if not future.done():
                future.set_result(check_one(body, self.domain, self._separator, self._recover))
                self.checked_inline += 1
