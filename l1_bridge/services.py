"""The L1 tasks a node runs when an L1 RPC is configured (``l1_rpc_url``):
the inbox watcher (deposits and forced withdrawals into the log) and the
checkpointer (outputs to the bridge).  Both run only while this node is the
sequencer (a follower's tasks idle), survive an L1 node that goes away (they
log which URL failed and retry) and stop with the node.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from l1_bridge.checkpointer import Checkpointer
from l1_bridge.client import BridgeClient, L1Error, Signer
from l1_bridge.watcher import InboxWatcher

log = logging.getLogger("isoroll.l1")


def read_key(key: str, key_file: str) -> str:
    if key:
        return key
    if key_file:
        return Path(key_file).read_text().strip()
    return ""


def make_client(config: Any) -> BridgeClient:
    deployment = config.l1_deployment_file or None
    bridge = None if deployment else config.l1_bridge_address
    return BridgeClient.connect(config.l1_rpc_url, deployment=deployment, bridge=bridge)


def proposer_signer(config: Any, client: BridgeClient) -> Signer:
    key = read_key(config.l1_proposer_key, config.l1_proposer_key_file)
    if key:
        return Signer.of(key)
    return Signer(client.params()["proposer"])  # an account the L1 node unlocks (anvil, eth-tester)


class L1Link:
    """A node's L1 connection as its API reads it: ``client`` is None until the
    services connected (the proofs and dashboard routes answer "no L1" till then)."""

    def __init__(self) -> None:
        self.client: BridgeClient | None = None
        self.services: L1Services | None = None
        self.status = "not configured"

    def connected(self, client: BridgeClient, services: "L1Services | None" = None,
                  status: str = "connected") -> None:
        self.client = client
        self.services = services
        self.status = status


class L1Services:
    def __init__(self, node: Any, client: BridgeClient) -> None:
        config = node.config
        self.client = client
        start_block = client.deployment.block_number if client.deployment is not None else 0
        self.watcher = InboxWatcher(client, node, confirmations=config.l1_confirmations,
                                    poll_interval_s=config.l1_poll_interval_s, start_block=start_block)
        self.checkpointer = Checkpointer(client, node, proposer_signer(config, client),
                                         interval_blocks=config.checkpoint_interval_blocks,
                                         interval_seconds=config.checkpoint_interval_seconds,
                                         poll_interval_s=min(0.5, config.l1_poll_interval_s))


async def run_l1_services(node: Any, link: L1Link) -> None:
    """Connect to the L1 the node's config names (retrying while it is away),
    then run the watcher and the checkpointer until cancelled."""
    link.status = "connecting"
    delay = 0.5
    while True:
        try:
            client = await asyncio.to_thread(make_client, node.config)
            break
        except L1Error as exc:
            link.status = str(exc)
            log.warning("L1: %s; retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)
    services = L1Services(node, client)
    link.connected(client, services, f"connected to {client.url}, bridge {client.bridge.address}")
    log.info("L1 services on %s: bridge %s, watcher (%d confirmations), checkpointer (every %d blocks or %.1fs)",
             client.url, client.bridge.address, node.config.l1_confirmations, node.config.checkpoint_interval_blocks,
             node.config.checkpoint_interval_seconds)
    await asyncio.gather(services.watcher.run(), services.checkpointer.run())
