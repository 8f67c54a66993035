"""Run a node with its API server until SIGINT/SIGTERM or an executor failure
(what `isoroll node` does; the isoroll package adds the L1 services)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from typing import Any, Callable, Coroutine, Sequence

import uvicorn

from sequencer.core.transition import Context
from sequencer.node.api import Api
from sequencer.node.config import NodeConfig
from sequencer.node.forwarding import forward_writes
from sequencer.node.http_limits import make_protocol
from sequencer.node.lifecycle import NodeFailed
from sequencer.node.node import Node

log = logging.getLogger("isoroll.service")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z", "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # our own warnings say when Kafka is down


class Service:
    """A node plus its HTTP server; ``async with`` starts and stops both.
    ``ctx`` replaces the node's context (tests); ``extensions`` add API routes."""

    def __init__(self, config: NodeConfig, *, ctx: Context | None = None,
                 extensions: Sequence[Callable[[Api], list]] = ()) -> None:
        self.config = config
        self.node = Node(config, ctx=ctx)
        self.api = Api(self.node, extensions)
        self.server: uvicorn.Server | None = None
        self._server_task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.api_host}:{self.config.api_port}"

    async def start(self) -> None:
        try:
            await self.node.start()
        except BaseException:
            await self.node.stop()  # ``async with`` does not exit what did not enter
            raise
        self.node.chain.listeners.append(self.api.publish)
        # A standby sequencer forwards txs to the active one (sequencer.node.forwarding).
        self._app = forward_writes(self.node, self.api.asgi) if self.config.standby else self.api.asgi
        self.server = uvicorn.Server(uvicorn.Config(
            self._app, host=self.config.api_host, port=self.config.api_port, log_config=None,
            access_log=False, lifespan="off", ws_max_size=1 << 20, proxy_headers=False,
            interface="asgi3", http=make_protocol(self.config.api_header_timeout_s, self.config.api_max_connections),
            limit_concurrency=self.config.api_max_connections + 1,  # the protocol refuses the one beyond
            timeout_keep_alive=self.config.api_keep_alive_timeout_s,
            timeout_graceful_shutdown=self.config.api_shutdown_timeout_s))
        # The service (or its embedder) owns SIGINT/SIGTERM; uvicorn must not swallow them.
        self.server.capture_signals = contextlib.nullcontext
        self._server_task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._server_task.done():
                self._server_task.result()
            await asyncio.sleep(0.01)
        log.info("API listening on %s", self.url)

    async def stop(self) -> None:
        if self.server is not None:
            self.api.close_streams()
            self.server.should_exit = True
            if not self.node.log_reachable:
                self.node.abandon_writes("the node is shutting down and Kafka does not answer")
            if self._server_task is not None:
                await asyncio.gather(self._server_task, return_exceptions=True)
            self.server = None
            if hasattr(self._app, "close"):
                await self._app.close()
        await self.node.stop()

    async def __aenter__(self) -> "Service":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


EXIT_TASK_TIMEOUT_S = 0.5


def run(main: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run(main)``, except that the tasks left when ``main`` returns get
    ``EXIT_TASK_TIMEOUT_S`` to finish once cancelled.  ``asyncio.run`` waits for
    them without a bound, and a Kafka client's close abandoned while the brokers
    are away (sequencer.log.kafka.within) may never finish: the process would
    hang after a clean shutdown."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            _, pending = loop.run_until_complete(asyncio.wait(left, timeout=EXIT_TASK_TIMEOUT_S))
            if pending:
                log.warning("exiting with %d task(s) that did not finish: %s", len(pending),
                            ", ".join(sorted({t.get_coro().__qualname__ for t in pending})))
        asyncio.set_event_loop(None)
        loop.close()


async def serve_forever(config: NodeConfig, on_ready=None,
                        make_service: Callable[[NodeConfig], Service] = Service) -> int:
    """Serve until SIGINT/SIGTERM (exit code 0) or until the node stops on an
    executor failure (exit code 1: a supervisor restarts it from its snapshot)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await _serve(make_service(config), stop, on_ready)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve(service: Service, stop: asyncio.Event, on_ready) -> int:
    try:
        await service.start()
    except NodeFailed as exc:
        log.critical("%s; exiting with code 1", exc)
        return 1
    try:
        if on_ready is not None:
            on_ready(service)
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(service.node.failed.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if service.node.failed.is_set():
            log.critical("the node stopped on an executor failure (%r); exiting with code 1", service.node.failure)
            return 1
        log.info("shutting down")
        return 0
    finally:
        await service.stop()
