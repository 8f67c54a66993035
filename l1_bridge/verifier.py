"""The verifier (`isoroll verifier`): replays the L2 and recomputes every
output the proposer posts; when a posted root differs from the replay and the
output is still in its challenge period, it proves it wrong with any funded
key (no role): it opens a dispute game with a bond (l1_bridge.dispute,
docs/fraud-proofs.md) and plays the bisection alone until the one-step
decides.  A won game deletes the output and every later one and pays the
slashed proposer bond; the honest checkpointer then posts the range again
(it reads the next output index from the contract).  Without a key it only
reports.

Two sources:
- ``l1``: the batch data in the ``propose`` calldata alone (no Kafka): the
  posted fields must be what replaying the posted data gives;
- ``kafka``: the operator's log (read_committed): the posted output must be
  the one the log gives at that L2 block, batch data included.

The verifier keeps a snapshot of its replay at the last output it accepted,
so after a deletion it goes back there and checks the re-posted outputs.

A game is over the output's posted data: it proves that the data does not
lead to the posted state or withdrawals root.  An output whose data leads to
its root but differs from the operator's log (the Kafka source) cannot be
proven wrong by a game; the verifier says so and does not open one.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from l1_bridge.client import BridgeClient, L1Error, Signer
from l1_bridge.dispute import (CHALLENGER_WON, STATUS_NAMES, ChallengeRefused, Challenger, GameContract,
                               OutputTraces, format_eth)
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
    game: int | None = None


class Verifier:
    def __init__(self, client: BridgeClient, challenger: Signer | str | bytes | None, *, source: str = "l1",
                 preset: str = "devnet", allocations: list[tuple[bytes, int]] = (), log_config: Any = None,
                 verify_signatures: bool = True, bond: int | None = None, gas_reserve: int = 0) -> None:
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
        self.bond = bond
        self.gas_reserve = gas_reserve
        self._player: Challenger | None = None
        self._traces: OutputTraces | None = None
        self.disputed: dict[tuple[int, bytes], int] = {}
        """(output index, output root) -> our game on it."""
        self.results: list[dict] = []
        """Each of our games once over: game, output, status, moves, gas, seconds, paid."""

    # --- games ------------------------------------------------------------------------------
    @property
    def player(self) -> Challenger:
        if self._player is None:
            self._player = Challenger(GameContract.of(self.client), self.challenger, bond=self.bond,
                                      gas_reserve=self.gas_reserve)
        return self._player

    @property
    def traces(self) -> OutputTraces:
        """Output traces from L1 data, from the same genesis as the replay."""
        if self._traces is None:
            from prover.trace import TraceRunner
            genesis = make_genesis_chain(self.replay.ctx, self.replay.allocations).state
            self._traces = OutputTraces(self.client, TraceRunner(genesis, self.replay.ctx),
                                        from_block=self.replay.from_block)
        return self._traces

    def resume_games(self, events: list[dict]) -> None:
        """Our games left open by an earlier run: played on, not opened again."""
        for game, output in self.player.resume(self.traces, events).items():
            if output < len(events) and self.player.open.get(game) is not None:
                self.disputed[(output, events[output]["output_root"])] = game

    @property
    def playing(self) -> bool:
        return self._player is not None and bool(self._player.open)

    def dispute(self, index: int, events: list[dict]) -> int:
        """Open our game on live output `index` (ChallengeRefused says why not)."""
        root = events[index]["output_root"]
        if (index, root) in self.disputed:
            return self.disputed[(index, root)]
        known = self.traces.get(index, events)
        if known is None:
            raise ChallengeRefused(f"output {index}: an output before it does not parse; dispute that one")
        traces = self.traces
        game = self.player.challenge(index, traces.fields(index, events), traces.fields(index - 1, events), known)
        self.disputed[(index, root)] = game
        return game

    def play_games(self) -> int:
        """Our moves in our open games; a game over is recorded and its winnings withdrawn."""
        if not self.playing:
            return 0
        moves = self.player.play()
        for game, record in self.player.records.items():
            if record.ended is None or any(r["game"] == game for r in self.results):
                continue
            paid = self.player.collect() if record.status == CHALLENGER_WON else 0
            if record.status != CHALLENGER_WON:  # lost or moot: the output may be disputed again while it can
                self.disputed = {k: v for k, v in self.disputed.items() if v != game}
            self.results.append({"game": game, "output": record.output, "status": STATUS_NAMES[record.status],
                                 "moves": record.moves, "gas": record.gas,
                                 "seconds": round(record.ended - record.started, 2), "paid": paid})
            log.warning("game %d on output %d: %s after %d moves (%d gas, %.1f s)%s", game, record.output,
                        STATUS_NAMES[record.status], record.moves, record.gas, record.ended - record.started,
                        f"; {format_eth(paid)} withdrawn" if paid else "")
        return moves

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
        await asyncio.to_thread(self.play_games)
        events = await asyncio.to_thread(self.client.live_outputs, self.replay.from_block)
        if self.challenger is not None and self._player is None:
            await asyncio.to_thread(self.resume_games, events)
        count = len(events)
        if count - 1 < self.verified:
            log.warning("outputs after %d were deleted by someone else; replaying from genesis", count - 1)
            self._reset()
        elif self.verified > 0 and len(self.replay.outputs) >= self.verified and \
                self.replay.outputs[self.verified - 1].posted_root != events[self.verified]["output_root"]:
            self._reset()
        verdicts = []
        for ev in events[self.verified + 1:]:
            if (ev["output_index"], ev["output_root"]) in self.disputed:
                break  # our game on it decides; nothing after it can be accepted before
            out = await self._compute(ev)
            self.replay.outputs.append(out)
            if out.ok:
                self._accept(ev["output_index"])
                verdicts.append(Verdict(out.index, True))
                log.info("output %d at L2 block %d verified", out.index, out.l2_block)
                continue
            verdict = Verdict(out.index, False, out.error)
            log.error("MISMATCH: %s", out.error)
            if self.challenger is None:
                log.error("no key: cannot dispute output %d (isoroll verifier --key <any funded L1 key>)", out.index)
            else:
                try:
                    verdict.game = await asyncio.to_thread(self.dispute, out.index, events)
                    verdict.challenged = True
                    log.warning("disputing output %d in game %d (key %s)", out.index, verdict.game,
                                self.player.signer.address)
                except ChallengeRefused as exc:
                    verdict.error = f"{verdict.error}; not disputed: {exc}"
                    log.error("output %d not disputed: %s", out.index, exc)
            self._rollback()
            verdicts.append(verdict)
            break
        await asyncio.to_thread(self.play_games)
        self.verdicts += verdicts
        return verdicts

    async def play_to_end(self, poll_s: float = 0.2) -> None:
        """Play our open games until every one is over."""
        while self.playing:
            if not await asyncio.to_thread(self.play_games):
                await asyncio.sleep(poll_s)

    async def run(self, poll_interval_s: float = 2.0) -> None:
        while True:
            try:
                await self.check_once()
                while self.playing:  # a game in play: answer at once, check outputs when it is over
                    await self.play_to_end()
            except asyncio.CancelledError:
                raise
            except L1Error as exc:
                log.warning("verifier: %s", exc)
            except Exception:
                log.exception("verifier round failed; retrying")
            await asyncio.sleep(poll_interval_s)
