"""The verifier (`isoroll verifier`): replays the L2 and recomputes every
output the proposer posts; when a posted root differs from the replay and the
output is still in its challenge period, it calls ``deleteOutputs`` with the
challenger key (OP Stack's legacy L2OutputOracle CHALLENGER).  The honest
checkpointer then posts the deleted range again (it reads the next output
index from the contract).

Two sources:
- ``l1``: the batch data in the ``propose`` calldata alone (no Kafka): the
  posted fields must be what replaying the posted data gives;
- ``kafka``: the operator's log (read_committed): the posted output must be
  the one the log gives at that L2 block, batch data included.

The verifier keeps a snapshot of its replay at the last output it accepted,
so after a deletion it goes back there and checks the re-posted outputs.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from l1_bridge.client import BridgeClient, L1Error, Signer
from l1_bridge.exit import L1Replay, ReplayedOutput
from sequencer.executor.genesis import make_genesis_chain
from sequencer.executor.output import OutputFields, compute_output, encode_batch, get_output_point
from sequencer.executor.snapshot import decode_snapshot, encode_snapshot

log = logging.getLogger("isoroll.verifier")


@dataclass
class Verdict:
    index: int
    ok: bool
    error: str | None = None
    challenged: bool = False


class Verifier:
    def __init__(self, client: BridgeClient, challenger: Signer | str | bytes | None, *, source: str = "l1",
                 preset: str = "devnet", allocations: list[tuple[bytes, int]] = (), log_config: Any = None,
                 verify_signatures: bool = True) -> None:
        if source not in ("l1", "kafka"):
            raise ValueError("source must be 'l1' or 'kafka'")
        if source == "kafka" and log_config is None:
            raise ValueError("the kafka source needs the log config")
        self.client = client
        self.challenger = None if challenger is None else Signer.of(challenger)
        self.source = source
        self.log_config = log_config
        self.replay = L1Replay(client, preset=preset, allocations=allocations, verify_signatures=verify_signatures)
        self.verified = 0
        """The last output index accepted (0: genesis)."""
        self._snapshot = encode_snapshot(self.replay.chain)
        self.verdicts: list[Verdict] = []
        self._reader = None

    # --- replay bookkeeping ------------------------------------------------------------
    def _accept(self, index: int) -> None:
        self.verified = index
        self._snapshot = encode_snapshot(self.replay.chain)

    def _rollback(self) -> None:
        chain = decode_snapshot(self._snapshot, self.replay.ctx)
        self.replay.chain = chain
        self.replay.offset = chain.next_offset
        del self.replay.outputs[self.verified:]

    def _reset(self) -> None:
        self.replay.chain = make_genesis_chain(self.replay.ctx, self.replay.allocations)
        self.replay.offset = 0
        self.replay.outputs.clear()
        self.verified = 0
        self._snapshot = encode_snapshot(self.replay.chain)

    # --- computing an output -----------------------------------------------------------------
    async def _from_kafka(self, event: dict) -> ReplayedOutput:
        """Replay the log up to the output's L2 block and compute the output there."""
        from sequencer.log.kafka import BlockReader
        index, l2_block, fields = event["output_index"], event["l2_block"], event["fields"]
        chain = self.replay.chain
        prev_block = chain.head_number
        out = ReplayedOutput(index, l2_block, fields, event["output_root"], None)
        messages: list[bytes] = []
        async with BlockReader(self.log_config, chain.next_offset) as reader:
            idle = 0
            while chain.head_number < l2_block:
                batch = await reader.read(timeout_ms=500)
                if not batch:
                    idle += 1
                    if idle > 10:
                        out.error = (f"output {index}: the log ends at L2 block {chain.head_number}, "
                                     f"the output names {l2_block}")
                        return out
                    continue
                for m in batch:
                    if m.offset < chain.next_offset or chain.head_number >= l2_block:
                        continue
                    result = chain.apply_message(m.offset, m.value, m.schema)
                    if result.applied:
                        messages.append(m.value)
        self.replay.offset = chain.next_offset
        out.computed, out.withdrawals = compute_output(chain.state, get_output_point(chain), prev_block,
                                                       encode_batch(messages))
        if out.computed.root() != out.posted_root:
            diffs = [n for n, a, b in zip(OutputFields._fields, out.computed, fields) if a != b]
            out.error = f"output {index}: the posted root differs from the log ({', '.join(diffs) or 'root'})"
        return out

    async def _compute(self, event: dict) -> ReplayedOutput:
        if self.source == "kafka":
            return await self._from_kafka(event)
        return await asyncio.to_thread(self.replay.apply_output, event)

    # --- one round ---------------------------------------------------------------------------------
    async def check_once(self) -> list[Verdict]:
        events = await asyncio.to_thread(self.client.live_outputs, self.replay.from_block)
        count = len(events)
        if count - 1 < self.verified:
            log.warning("outputs after %d were deleted by someone else; replaying from genesis", count - 1)
            self._reset()
        elif self.verified > 0 and len(self.replay.outputs) >= self.verified and \
                self.replay.outputs[self.verified - 1].posted_root != events[self.verified]["output_root"]:
            self._reset()
        verdicts = []
        for ev in events[self.verified + 1:]:
            out = await self._compute(ev)
            self.replay.outputs.append(out)
            if out.ok:
                self._accept(ev["output_index"])
                verdicts.append(Verdict(out.index, True))
                log.info("output %d at L2 block %d verified", out.index, out.l2_block)
                continue
            verdict = Verdict(out.index, False, out.error)
            log.error("MISMATCH: %s", out.error)
            info = await asyncio.to_thread(self.client.get_output, out.index)
            if info["is_final"]:
                log.error("output %d is already final: too late to challenge", out.index)
            elif self.challenger is None:
                log.error("no challenger key: cannot delete output %d", out.index)
            else:
                await asyncio.to_thread(self.client.delete_outputs, self.challenger, out.index)
                verdict.challenged = True
                log.warning("deleted output %d and every output after it (challenger %s)", out.index,
                            self.challenger.address)
            self._rollback()
            verdicts.append(verdict)
            break
        self.verdicts += verdicts
        return verdicts

    async def run(self, poll_interval_s: float = 2.0) -> None:
        while True:
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except L1Error as exc:
                log.warning("verifier: %s", exc)
            except Exception:
                log.exception("verifier round failed; retrying")
            await asyncio.sleep(poll_interval_s)
