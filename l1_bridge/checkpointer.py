"""The checkpointer: posts outputs to the bridge (DESIGN "Commitment").

Every ``interval_blocks`` L2 blocks or ``interval_seconds`` (sooner when an
inbox entry is waiting while a forced request is open, so the FORCED_GRACE
clock never runs out on an honest operator) it proposes

    output_root = compute_output_root(0, state_root, withdrawals_root,
                                      last_block_hash, inbox_count, inbox_hash, data_hash)

at an L2 block B, where
- state_root, last_block_hash, inbox_count, inbox_hash are those after block B;
- withdrawals_root is the withdrawals tree (prover/output.py) of the withdrawals made
  in blocks (previous output's block, B], leaves
  ``sequencer.core.commitment.encode_withdrawal`` (= l1_bridge.proofs.encode_withdrawal);
- the batch data (the calldata) is ``encode_batch`` of the raw Kafka messages
  of those blocks: their trace items (docs/fraud-proofs.md), framed, in chunks
  of at most 120,000 bytes (one transaction each: ``postData`` for all but the
  last, ``propose`` for the last); data_hash chains the chunks.  An output takes
  the most blocks whose data fits ``max_chunks`` chunks (at least one block).

The output itself is ``sequencer.executor.output.compute_output``, the one the
verifier and the exit kit recompute.

Fault injection (devnet drills, docs/fraud-proofs.md): ``corrupt_output_at=N``
(or the environment variable ISOROLL_FAULT_OUTPUT=N) posts output index N once
with a wrong state root (its data stays honest, so any verifier can prove it
wrong in a dispute game); once a game deletes it, the honest output N follows.

Crash safety: the next output index and the previous output's L2 block are
read from the contract before every proposal (the bridge insists on
``output_index == output_count``), so a restarted checkpointer neither posts
twice nor skips, and after a challenger deletion it posts the deleted range
again.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from l1_bridge.client import BridgeClient, L1Error, poll_forever, L1Reverted, Signer
from prover.hashing import keccak
from sequencer.core.state import Withdrawal
from sequencer.executor.output import Batch, OutputFields, OutputPoint, compute_output, encode_batch

log = logging.getLogger("isoroll.l1.checkpointer")

MAX_BATCH_BYTES = 120_000
"""The bridge's MAX_BATCH_BYTES: the largest chunk."""
FAULT_ENV = "ISOROLL_FAULT_OUTPUT"


def get_fault_output(value: int | None = None) -> int | None:
    """The output index to corrupt: ``value``, else $ISOROLL_FAULT_OUTPUT, else None."""
    if value is not None:
        return value
    raw = os.environ.get(FAULT_ENV, "").strip()
    if not raw:
        return None
    try:
        index = int(raw)
    except ValueError:
        raise ValueError(f"{FAULT_ENV}={raw!r}: give an output index (an integer >= 1)") from None
    if index < 1:
        raise ValueError(f"{FAULT_ENV}={index}: output 0 is the genesis; give an index >= 1")
    return index


def corrupt_state_root(fields: OutputFields) -> OutputFields:
    """The fault injection's wrong output: another state root, every other field honest."""
    return fields._replace(state_root=keccak(b"isoroll fault" + fields.state_root))


@dataclass
class Proposal:
    output_index: int
    l2_block: int
    fields: OutputFields
    batch: Batch
    withdrawals: list[Withdrawal]

    @property
    def root(self) -> bytes:
        return self.fields.root()

    @property
    def data(self) -> bytes:
        """The last chunk (the propose calldata)."""
        return self.batch.chunks[-1]


class Checkpointer:
    def __init__(self, client: BridgeClient, node: Any, proposer: Signer | str | bytes, *,
                 interval_blocks: int = 100, interval_seconds: float = 5.0, poll_interval_s: float = 0.5,
                 corrupt: Any = None, corrupt_output_at: int | None = None, max_chunks: int = 1) -> None:
        self.client = client
        self.node = node
        self.proposer = Signer.of(proposer)
        self.interval_blocks = interval_blocks
        self.interval_seconds = interval_seconds
        self.poll_interval_s = poll_interval_s
        self.points: dict[int, OutputPoint] = {}
        self.last_post = time.monotonic()
        self.posted: list[Proposal] = []
        self.last_error: str | None = None
        self.corrupt = corrupt
        """Tests only: a function Proposal -> OutputFields, to act as a faulty proposer."""
        self.corrupt_output_at = get_fault_output(corrupt_output_at)
        """Fault injection: post this output index once with a wrong state root."""
        self.max_chunks = max_chunks
        """An output takes the most blocks whose data fits this many chunks (at least one block).
        One by default: a challenger's cost grows with the chunks it must load (~4.4 M gas each),
        and PROPOSER_BOND, which pays it, is sized for one."""
        if self.corrupt_output_at is not None:
            log.warning("FAULT INJECTION: output %d will be posted once with a wrong state root",
                        self.corrupt_output_at)
        chain = node.chain
        chain.listeners.append(self._on_block)
        self._record_point()

    # --- per-block points -----------------------------------------------------------
    def _record_point(self) -> None:
        chain = self.node.chain
        g = chain.state.globals
        self.points[g.block_number] = OutputPoint(g.block_number, chain.state_root, g.block_hash, g.inbox_count,
                                            g.inbox_hash)

    def _on_block(self, info, result) -> None:
        if info is not None:
            g = self.node.chain.state.globals
            self.points[info.number] = OutputPoint(info.number, info.state_root, info.hash, g.inbox_count, g.inbox_hash)

    def prune(self, below: int) -> None:
        for n in [n for n in self.points if n < below]:
            del self.points[n]

    # --- messages -----------------------------------------------------------------------
    async def block_messages(self, first: int, last: int) -> list[bytes]:
        """The raw log messages of L2 blocks first..last (memory, else read back from Kafka)."""
        chain = self.node.chain
        out: dict[int, bytes] = {}
        missing = []
        for n in range(first, last + 1):
            m = chain.recent_messages.get(n)
            if m is None:
                missing.append(n)
            else:
                out[n] = m
        if missing:
            out.update(await read_blocks_from_log(self.node, missing))
        return [out[n] for n in range(first, last + 1)]

    # --- one round ---------------------------------------------------------------------------
    def read_l1(self) -> dict:
        s = self.client.status()
        count = s["output_count"]
        prev = self.client.get_output(count - 1)
        return {"status": s, "output_index": count, "prev_block": prev["l2_block"],
                "prev_inbox_count": prev["inbox_count"]}

    def top_up_bond(self) -> None:
        """Keep PROPOSER_BOND bonded (a challenger deletion takes it)."""
        need = self.client.params()["proposer_bond"] - self.client.bond()
        if need > 0:
            log.warning("the proposer bond is %d wei short (slashed by a deletion?); bonding it again", need)
            self.client.deposit_bond(self.proposer, need)

    async def build(self, l1: dict, force: bool = False) -> Proposal | None:
        builder = getattr(self.node, "builder", None)
        if builder is not None:
            await builder.settled()
        chain = self.node.chain
        head = chain.head_number
        prev_block = l1["prev_block"]
        if head <= prev_block:
            return None
        due = force or (head - prev_block >= self.interval_blocks
                        or time.monotonic() - self.last_post >= self.interval_seconds
                        or (l1["status"]["open_forced_requests"] > 0
                            and chain.state.globals.inbox_count > l1["prev_inbox_count"]))
        if not due:
            return None
        candidates = sorted((n for n in self.points if prev_block < n <= head), reverse=True)
        if not candidates:
            log.warning("no recorded L2 state after block %d: cannot checkpoint before a new block", prev_block)
            return None
        messages = await self.block_messages(prev_block + 1, candidates[0])
        for n in candidates:
            batch = encode_batch(messages[:n - prev_block], MAX_BATCH_BYTES)
            if len(batch.chunks) <= self.max_chunks:
                break
        point = self.points[n]
        output = compute_output(chain.state, point, prev_block, batch)
        proposal = Proposal(l1["output_index"], n, output.fields, batch, output.withdrawals)
        if self.corrupt is not None:
            proposal.fields = self.corrupt(proposal)
        if proposal.output_index == self.corrupt_output_at:
            proposal.fields = corrupt_state_root(proposal.fields)
            self.corrupt_output_at = None  # once: after a game deletes it, the honest output follows
            log.warning("FAULT INJECTION: posting output %d with a wrong state root", proposal.output_index)
        return proposal

    async def poll_once(self, force: bool = False) -> Proposal | None:
        builder = getattr(self.node, "builder", None)
        if builder is None or builder.stopped:
            return None  # only the sequencer posts
        l1 = await asyncio.to_thread(self.read_l1)
        if l1["status"]["frozen"]:
            self.last_error = "the bridge is frozen: no more proposals"
            return None
        proposal = await self.build(l1, force)
        if proposal is None:
            return None
        await asyncio.to_thread(self.top_up_bond)
        try:
            await asyncio.to_thread(self.send, proposal)
        except L1Reverted as exc:
            if "wrong output index" in exc.reason:
                log.info("output %d was posted meanwhile; re-reading the bridge", proposal.output_index)
                return None
            raise
        self.last_post = time.monotonic()
        self.posted.append(proposal)
        self.prune(l1["prev_block"])
        log.info("proposed output %d at L2 block %d (root %s, %d bytes of batch data in %d chunks, "
                 "%d withdrawals)", proposal.output_index, proposal.l2_block, proposal.root.hex(),
                 proposal.batch.size, len(proposal.batch.chunks), len(proposal.withdrawals))
        return proposal

    def send(self, proposal: Proposal) -> None:
        """postData for every chunk but the last (chunk 0 starts over after a
        crash), then propose with the last."""
        chunks = proposal.batch.chunks
        for i, chunk in enumerate(chunks[:-1]):
            self.client.post_data(self.proposer, proposal.output_index, i, chunk)
        self.client.propose(self.proposer, proposal.output_index, proposal.l2_block, proposal.fields, chunks[-1],
                            sum(w.amount for w in proposal.withdrawals), len(chunks) - 1)

    async def run(self) -> None:
        await poll_forever(self, "checkpointer", log)


async def read_blocks_from_log(node: Any, numbers: list[int]) -> dict[int, bytes]:
    """Read the messages of the given L2 blocks back from Kafka (by their offsets)."""
    from sequencer.log.kafka import BlockReader
    infos = node.chain.block_infos
    wanted = {infos[n].offset: n for n in numbers}
    out: dict[int, bytes] = {}
    first, last = min(wanted), max(wanted)
    async with BlockReader(node.log_config, first) as reader:
        deadline = time.monotonic() + 30
        while len(out) < len(wanted):
            if time.monotonic() > deadline:
                raise L1Error(f"could not read L2 blocks {numbers[0]}..{numbers[-1]} back from the log")
            for m in await reader.read(timeout_ms=500):
                if m.offset in wanted:
                    out[wanted[m.offset]] = m.value
                if m.offset >= last:
                    break
    return out
