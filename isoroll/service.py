"""A node with its L1 services: the inbox watcher, the checkpointer and the
dispute defender when ``l1_rpc_url`` is set, and the L1 API routes (proofs, the dashboard's L1 view)
reading the same ``L1Link``.  This is what `isoroll node` and the devnet run."""
from __future__ import annotations

import asyncio
import importlib
import logging

from l1_bridge.services import L1Link, run_l1_services
from sequencer.core.transition import Context
from sequencer.node.api import Api
from sequencer.node.config import NodeConfig
from sequencer.node.service import Service as NodeService, run, serve_forever

log = logging.getLogger("isoroll.service")

L1_API_EXTENSIONS = ("l1_bridge.api", "l1_bridge.dashboard")
"""Modules with ``routes(api, l1) -> list[Route]`` served with the node's API."""


def get_l1_routes(api: Api, l1: L1Link) -> list:
    routes = []
    for name in L1_API_EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that part is not in this checkout
                continue
            raise
        routes += module.routes(api, l1)
    return routes


class Service(NodeService):
    """``sequencer.node.service.Service`` plus the L1: its routes from the start,
    its services (when configured) once the node is up, stopped before it."""

    def __init__(self, config: NodeConfig, *, ctx: Context | None = None, fault_output: int | None = None) -> None:
        self.l1 = L1Link()
        self.fault_output = fault_output
        """Devnet and tests: the checkpointer posts a wrong state root at this output index, once."""
        super().__init__(config, ctx=ctx, extensions=(lambda api: get_l1_routes(api, self.l1),))
        self._l1_task: asyncio.Task | None = None

    async def start(self) -> None:
        await super().start()
        if self.node.config.l1_rpc_url:
            self._l1_task = asyncio.create_task(run_l1_services(self.node, self.l1, fault_output=self.fault_output), name="isoroll-l1")
            self._l1_task.add_done_callback(self._l1_done)

    def _l1_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the L1 services stopped: %r", task.exception(), exc_info=task.exception())
            self.l1.status = f"stopped: {task.exception()!r}"

    async def stop(self) -> None:
        if self._l1_task is not None:
            self._l1_task.cancel()
            await asyncio.gather(self._l1_task, return_exceptions=True)
            self._l1_task = None
        await super().stop()


def run_node(config: NodeConfig) -> int:
    """`isoroll node`: serve until a signal (0) or an executor failure (1)."""
    return run(serve_forever(config, make_service=Service))
