"""The L1 tasks a node runs when an L1 RPC is configured (``l1_rpc_url``):
the inbox watcher (deposits and forced withdrawals into the log), the
checkpointer (outputs to the bridge) and the defender (answers every dispute
game on the bridge's outputs with the proposer key, l1_bridge.dispute).  They
run only while this node is the sequencer (a follower's tasks idle; after a
failover the new sequencer's defender picks up every open game from the
chain), share one client (its lock orders the proposer key's transactions),
survive an L1 node that goes away (they log which URL failed and retry) and
stop with the node.

``fault_output`` (devnet and tests only: `isoroll devnet --fault-output N`) is
the checkpointer's ``corrupt_output_at``: a wrong state root at output index
N, once; the defender then plays its honest trace and loses to any verifier.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:  # imported where used: a node without L1 never loads web3 (~1 s of start)
    from l1_bridge.client import BridgeClient, Signer
    from l1_bridge.dispute import Defender

log = logging.getLogger("isoroll.l1")


def read_key(key: str, key_file: str) -> str:
    if key:
        return key
    if key_file:
        return Path(key_file).read_text().strip()
    return ""


def make_client(config: Any) -> BridgeClient:
    from l1_bridge.client import BridgeClient
    deployment = config.l1_deployment_file or None
    bridge = None if deployment else config.l1_bridge_address
    return BridgeClient.connect(config.l1_rpc_url, deployment=deployment, bridge=bridge)


def proposer_signer(config: Any, client: BridgeClient) -> Signer:
    from l1_bridge.client import Signer
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


def make_defender(node: Any, client: BridgeClient, proposer: Signer, poll_interval_s: float) -> Defender | None:
    """The proposer's defender over traces from L1 data (None: the bridge has no dispute contract)."""
    from l1_bridge.client import L1Error
    from l1_bridge.dispute import Defender, GameContract, OutputTraces
    from prover.trace import TraceRunner
    from sequencer.executor.genesis import build_genesis
    from sequencer.node.config import load_allocations
    try:
        games = GameContract.of(client)
    except L1Error as exc:
        log.warning("no dispute games on this bridge (%s): outputs are not defended", exc)
        return None
    start = client.deployment.block_number if client.deployment is not None else 0
    # the one-step always checks signatures: so must the trace it is defended by,
    # whatever the node's own replay skips (verify_signatures_on_replay)
    rules = msgspec.structs.replace(node.ctx, verify_signatures=True)
    genesis = TraceRunner(build_genesis(load_allocations(node.config)), rules)
    traces = OutputTraces(client, genesis, from_block=max(0, start - 1))
    def is_active() -> bool:
        builder = getattr(node, "builder", None)
        return builder is not None and not builder.stopped
    return Defender(games, proposer, traces, poll_interval_s=poll_interval_s, active=is_active)


class L1Services:
    def __init__(self, node: Any, client: BridgeClient, *, fault_output: int | None = None) -> None:
        from l1_bridge.checkpointer import Checkpointer
        from l1_bridge.watcher import InboxWatcher
        config = node.config
        self.client = client
        start_block = client.deployment.block_number if client.deployment is not None else 0
        proposer = proposer_signer(config, client)
        poll = min(0.5, config.l1_poll_interval_s)
        self.watcher = InboxWatcher(client, node, confirmations=config.l1_confirmations,
                                    poll_interval_s=config.l1_poll_interval_s, start_block=start_block)
        self.checkpointer = Checkpointer(client, node, proposer,
                                         interval_blocks=config.checkpoint_interval_blocks,
                                         interval_seconds=config.checkpoint_interval_seconds,
                                         poll_interval_s=poll,
                                         corrupt_output_at=fault_output)
        self.defender = make_defender(node, client, proposer, poll)

    def tasks(self) -> list:
        runs = [self.watcher.run(), self.checkpointer.run()]
        if self.defender is not None:
            runs.append(self.defender.run())
        return runs


async def run_l1_services(node: Any, link: L1Link, *, fault_output: int | None = None) -> None:
    """Connect to the L1 the node's config names (retrying while it is away),
    then run the watcher, the checkpointer and the defender until cancelled."""
    from l1_bridge.client import L1Error
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
    services = L1Services(node, client, fault_output=fault_output)
    link.connected(client, services, f"connected to {client.url}, bridge {client.bridge.address}")
    log.info("L1 services on %s: bridge %s, watcher (%d confirmations), checkpointer (every %d blocks or %.1fs)",
             client.url, client.bridge.address, node.config.l1_confirmations, node.config.checkpoint_interval_blocks,
             node.config.checkpoint_interval_seconds)
    await asyncio.gather(*services.tasks())
