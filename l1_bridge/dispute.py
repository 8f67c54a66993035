"""Play dispute games (docs/fraud-proofs.md) from a local replay of an output's items.

    trace = LocalTrace(TraceRunner(start_state, rules), items)
    player = GamePlayer(w3, dispute, sender, trace)
    player.challenge(output_index, encode_data(items))   # or, as the proposer,
    player.play(game)                                   # one move when it is our turn
    player.play_to_end(game, opponent=other.play)       # both sides until the game ends

A player only ever posts or agrees with the claims of its own trace, so an
honest trace wins every game (the contract's one-step decides the last item).

Every call to the game contract goes through ``GameContract`` (one thin
adapter: the stand-alone ``dispute.vy`` or the bridge it is joined to).  On
top of the player:

- ``OutputTraces``: the trace of each live output from L1 data alone (its
  posted items, from the state after the output before it);
- ``Defender``: the proposer's loop, answering every game against its outputs
  (it keeps no state of its own: a restarted defender resumes from the chain);
- ``Challenger``: opens a game against an output its trace disagrees with
  (after checking the period, the bond and the key's balance) and plays it to
  the end; used by ``isoroll verifier --key``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from web3.logs import DISCARD

from l1_bridge.client import L1Error, L1Reverted, Signer, poll_forever
from l1_bridge.deploy import transact
from prover.records import DataError, decode_data, prove_item
from prover.trace import TraceRunner

log = logging.getLogger("isoroll.l1.dispute")

ACTIVE, PROPOSER_WON, CHALLENGER_WON, MOOT = 0, 1, 2, 3
STATUS_NAMES = {ACTIVE: "active", PROPOSER_WON: "proposer won", CHALLENGER_WON: "challenger won", MOOT: "moot"}
PROPOSER_TURN, CHALLENGER_TURN = 1, 2
CHECKPOINT_EVERY = 64
"""A copy of the replay is kept every this many items; a witness replays from the nearest."""
STEP_GAS = 3_000_000
"""Gas limit of a step (the one-step measures 175-402 k; estimation on some nodes is off by the
memory expansion of the witness copies)."""


class LocalTrace:
    """The claims of every position of an output's trace, from a replay."""

    def __init__(self, runner: TraceRunner, items: Sequence[bytes]) -> None:
        self.items = list(items)
        self.checkpoints: dict[int, TraceRunner] = {}
        self.claims = [runner.claim]
        for index, item in enumerate(self.items):
            if index % CHECKPOINT_EVERY == 0:
                self.checkpoints[index] = runner.copy()
            runner.step(item)
            self.claims.append(runner.claim)
        self.end = runner

    def __len__(self) -> int:
        return len(self.items)

    def step_args(self, index: int) -> tuple:
        """The arguments of dispute.step after `index` items (game id excluded)."""
        base = index - index % CHECKPOINT_EVERY
        runner = self.checkpoints[base].copy()
        for item in self.items[base:index]:
            runner.step(item)
        root, ctx = runner.state_root, runner.ctx
        witness = runner.step(self.items[index]).witness
        siblings = list(prove_item(self.items, index).siblings)
        return (root, ctx.as_arg(), self.items[index], siblings, [o.as_arg() for o in witness.openings],
                list(witness.nonces))


@dataclass
class GameView:
    output: int
    challenger: str
    lo: int
    hi: int
    claim_lo: bytes
    claim_hi: bytes
    mid_claim: bytes
    turn: int
    depth: int
    status: int
    count: int = 0
    turn_started: int = 0
    proposer_paid: int = 0
    challenger_paid: int = 0

    @property
    def mid(self) -> int:
        return (self.lo + self.hi) // 2


@dataclass
class OutputView:
    """What a player reads of an output."""
    proposer: str
    start_claim: bytes
    end_claim: bytes
    data_hash: bytes
    bond: int
    proposed_at: int
    open_games: int
    deleted: bool


class GameContract:
    """Every call the players make to the game contract.  Reads and writes go
    through a ``BridgeClient`` when one is given (its lock, its errors:
    ``L1Reverted`` with the contract's reason), else straight to web3."""

    def __init__(self, contract: Any, client: Any = None) -> None:
        self.contract = contract
        self.client = client
        self.w3 = contract.w3
        self.f = contract.functions

    # --- plumbing ------------------------------------------------------------------
    def _call(self, what: str, fn: Any) -> Any:
        return fn.call() if self.client is None else self.client._call(what, fn)

    def _send(self, what: str, fn: Any, who: Signer, value: int = 0, gas: int | None = None) -> Any:
        if self.client is not None:
            return self.client.send(what, fn, who, value=value, gas=gas)
        return transact(self.w3, fn, who.address, value=value, private_key=who.key, gas=gas)

    # --- reads -----------------------------------------------------------------------
    def game_count(self) -> int:
        return self._call("read game_count", self.f.game_count())

    def game(self, game: int) -> GameView:
        g = self._call(f"read game {game}", self.f.games(game))
        return GameView(output=g[0], challenger=g[1], count=g[3], lo=g[4], hi=g[5], claim_lo=g[6], claim_hi=g[7],
                        mid_claim=g[8], turn=g[9], turn_started=g[10], depth=g[13], proposer_paid=g[14],
                        challenger_paid=g[15], status=g[16])

    def clocks(self, game: int) -> tuple[int, int]:
        """(proposer, challenger) seconds left now."""
        return tuple(self._call(f"read the clocks of game {game}", self.f.clocks(game)))

    def output(self, index: int) -> OutputView:
        o = self._call(f"read output {index}", self.f.outputs(index))
        return OutputView(proposer=o[0], start_claim=o[2], end_claim=o[3], data_hash=o[4], bond=o[5],
                          proposed_at=o[6], open_games=o[7], deleted=o[8])

    def output_count(self) -> int:
        return self._call("read output_count", self.f.output_count())

    def challenge_bond(self) -> int:
        return self._call("read CHALLENGE_BOND", self.f.CHALLENGE_BOND())

    def move_bond(self, depth: int) -> int:
        return self._call("read move_bond", self.f.move_bond(depth))

    def challenge_period(self) -> int:
        return self._call("read CHALLENGE_PERIOD", self.f.CHALLENGE_PERIOD())

    def owed(self, who: str) -> int:
        return self._call("read owed", self.f.owed(who))

    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    # --- writes ------------------------------------------------------------------------
    def challenge(self, who: Signer, output: int, data: bytes, bond: int) -> tuple[int, Any]:
        """Open a game; (game index, receipt)."""
        receipt = self._send(f"challenge output {output}", self.f.challenge(output, data), who, bond)
        opened = self.contract.events.GameOpened().process_receipt(receipt, errors=DISCARD)
        return opened[0]["args"]["game"], receipt

    def bisect(self, who: Signer, game: int, claim: bytes, bond: int) -> Any:
        return self._send(f"bisect game {game}", self.f.bisect(game, claim), who, bond)

    def choose(self, who: Signer, game: int, agree: bool, bond: int) -> Any:
        return self._send(f"choose in game {game}", self.f.choose(game, agree), who, bond)

    def step(self, who: Signer, game: int, args: tuple) -> Any:
        return self._send(f"step game {game}", self.f.step(game, *args), who, gas=STEP_GAS)

    def timeout(self, who: Signer, game: int) -> Any:
        return self._send(f"timeout game {game}", self.f.timeout(game), who)

    def moot(self, who: Signer, game: int) -> Any:
        return self._send(f"moot game {game}", self.f.moot(game), who)

    def withdraw(self, who: Signer) -> Any:
        return self._send("withdraw the game winnings", self.f.withdraw(), who)


def read_game(dispute: Any, game: int) -> GameView:
    return GameContract(dispute).game(game)


# --- one side's moves -------------------------------------------------------------------

@dataclass(frozen=True)
class Move:
    kind: str
    """bisect, choose, step, timeout, moot."""
    claim: bytes = b""
    agree: bool = False


def get_move(g: GameView, out: OutputView, me: str, trace: LocalTrace | None, clocks: tuple[int, int]) -> Move | None:
    """The move `me` should make now in game `g` (None: nothing to do).  Pure:
    the proposer posts its own claims and steps only to defend a claim of its
    own; the challenger agrees only with claims of its trace; either side
    takes a win by timeout; a game over a deleted output is made moot."""
    if g.status != ACTIVE:
        return None
    proposer = out.proposer.lower() == me.lower()
    challenger = g.challenger.lower() == me.lower()
    if not (proposer or challenger):
        return None
    if out.deleted:
        return Move("moot")
    if (g.turn == PROPOSER_TURN and clocks[0] == 0 and challenger) or \
            (g.turn == CHALLENGER_TURN and clocks[1] == 0 and proposer):
        return Move("timeout")
    if trace is None:
        return None
    if g.hi - g.lo == 1:
        if proposer and g.claim_hi != trace.claims[g.hi]:
            return None  # not a claim we can defend: the clock decides
        if challenger and g.claim_lo != trace.claims[g.lo]:
            return None
        return Move("step")
    if proposer and g.turn == PROPOSER_TURN:
        return Move("bisect", claim=trace.claims[g.mid])
    if challenger and g.turn == CHALLENGER_TURN:
        return Move("choose", agree=g.mid_claim == trace.claims[g.mid])
    return None


class GamePlayer:
    """One side of games, playing the claims of its own trace."""

    def __init__(self, w3: Any, dispute: Any, sender: str, trace: LocalTrace | None, *,
                 private_key: bytes | str | None = None, games: GameContract | None = None) -> None:
        self.w3, self.dispute, self.trace = w3, dispute, trace
        self.games = games or GameContract(dispute)
        self.signer = Signer(sender, None if private_key is None else Signer.of(private_key).key)
        self.sender = sender
        self.gas: list[tuple[str, int]] = []
        """(move, gas used) of every transaction sent, for the bench."""

    def send(self, name: str, receipt: Any) -> Any:
        self.gas.append((name, receipt["gasUsed"]))
        return receipt

    def propose(self, state_root: bytes, end_ctx: Any, withdrawals_root: bytes, data_hash: bytes) -> int:
        """Stand-alone dispute.vy only (the bridge's proposals come from the checkpointer)."""
        f = self.dispute.functions
        index = f.output_count().call()
        receipt = transact(self.w3, f.propose(state_root, end_ctx, withdrawals_root, data_hash), self.sender,
                           value=f.PROPOSER_BOND().call(), private_key=self.signer.key)
        self.send("propose", receipt)
        return index

    def challenge(self, output: int, data: bytes, bond: int | None = None) -> int:
        bond = self.games.challenge_bond() if bond is None else bond
        game, receipt = self.games.challenge(self.signer, output, data, bond)
        self.send("challenge", receipt)
        return game

    def is_proposer(self, g: GameView) -> bool:
        return self.games.output(g.output).proposer.lower() == self.sender.lower()

    def next_move(self, game: int) -> tuple[GameView, Move | None]:
        g = self.games.game(game)
        if g.status != ACTIVE:
            return g, None
        return g, get_move(g, self.games.output(g.output), self.sender, self.trace, self.games.clocks(game))

    def make(self, game: int, g: GameView, move: Move) -> None:
        s, games = self.signer, self.games
        if move.kind == "bisect":
            self.send("bisect", games.bisect(s, game, move.claim, games.move_bond(g.depth)))
        elif move.kind == "choose":
            self.send("choose", games.choose(s, game, move.agree, games.move_bond(g.depth)))
        elif move.kind == "step":
            self.send("step", games.step(s, game, self.trace.step_args(g.lo)))
        elif move.kind == "timeout":
            self.send("timeout", games.timeout(s, game))
        elif move.kind == "moot":
            self.send("moot", games.moot(s, game))

    def play(self, game: int) -> bool:
        """Make the move that is ours now, if any; True when a move was sent."""
        g, move = self.next_move(game)
        if move is None:
            return False
        self.make(game, g, move)
        return True

    def play_to_end(self, game: int, opponent: Callable[[int], bool]) -> int:
        """Alternate our moves and the opponent's until the game ends or nobody
        moves; returns the game's status."""
        for _ in range(4 * 64):
            if self.games.game(game).status != ACTIVE:
                break
            moved = self.play(game)
            moved = opponent(game) or moved
            if not moved:
                break
        return self.games.game(game).status


# --- traces from L1 data ------------------------------------------------------------------

class OutputTraces:
    """The trace of each live output of the bridge from L1 data alone: the items
    are the output's posted data (its ``propose`` calldata), the start is the
    state after the live output before it, replayed item by item from
    genesis.  A deletion or a re-posted output (another root at an index) is
    followed: the replay restarts at the first changed output."""

    def __init__(self, client: Any, genesis: TraceRunner, *, from_block: int = 0) -> None:
        self.client = client
        self.genesis = genesis
        self.from_block = from_block
        self.roots: list[bytes] = []
        """Output roots replayed so far (index i-1 for output i)."""
        self.runners: list[TraceRunner] = [genesis.copy()]
        """runners[i]: the state after output i (0: genesis)."""
        self.traces: dict[tuple[int, bytes], LocalTrace | None] = {}

    def _sync(self, events: list[dict]) -> None:
        keep = 0
        while keep < len(self.roots) and keep + 1 < len(events) and self.roots[keep] == events[keep + 1]["output_root"]:
            keep += 1
        del self.roots[keep:]
        del self.runners[keep + 1:]

    def get(self, index: int) -> LocalTrace | None:
        """The trace of live output `index` (>= 1); None when its data is not a
        stream of items (a game over it opens already won by the challenger)."""
        events = self.client.live_outputs(self.from_block)
        if not 1 <= index < len(events):
            raise L1Error(f"output {index} is not live (outputs 0..{len(events) - 1})")
        self._sync(events)
        key = (index, events[index]["output_root"])
        if key in self.traces:
            return self.traces[key]
        while len(self.runners) <= index:
            i = len(self.runners)
            trace = self._trace(i, events[i])
            if trace is None:
                self.traces[(i, events[i]["output_root"])] = None
                return None
            self.runners.append(trace.end.copy())
            self.roots.append(events[i]["output_root"])
        return self.traces[key]

    def data(self, index: int) -> bytes:
        event = self.client.live_outputs(self.from_block)[index]
        return self.client.propose_data(event["tx_hash"])[3]

    def _trace(self, index: int, event: dict) -> LocalTrace | None:
        data = self.client.propose_data(event["tx_hash"])[3]
        try:
            items = decode_data(data)
        except DataError as exc:
            log.warning("output %d: the posted data is not a stream of items (%s)", index, exc)
            return None
        trace = LocalTrace(self.runners[index - 1].copy(), items)
        self.traces[(index, event["output_root"])] = trace
        return trace


# --- the two loops ---------------------------------------------------------------------------

@dataclass
class GameRecord:
    game: int
    output: int
    moves: int = 0
    gas: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    status: int = ACTIVE


class _Side:
    """What the defender and the challenger share: make our move in a game, if any."""

    def __init__(self, games: GameContract, signer: Signer | str | bytes) -> None:
        self.games = games
        self.signer = Signer.of(signer)
        self.records: dict[int, GameRecord] = {}

    def advance(self, game: int, trace: LocalTrace | None) -> bool:
        """One move in `game` if one is ours now; True when a move was sent."""
        player = GamePlayer(self.games.w3, self.games.contract, self.signer.address, trace, games=self.games)
        player.signer = self.signer
        g, move = player.next_move(game)
        record = self.records.setdefault(game, GameRecord(game, g.output))
        if move is None:
            self._finish(record, g.status)
            return False
        try:
            player.make(game, g, move)
        except L1Reverted as exc:
            # someone else's move landed first (a timeout, moot or the other side's step): re-read next time
            log.info("game %d: %s not taken (%s)", game, move.kind, exc.reason)
            return False
        record.moves += 1
        record.gas += sum(gas for _, gas in player.gas)
        log.info("game %d (output %d): %s%s", game, g.output, move.kind,
                 f" agree={move.agree}" if move.kind == "choose" else "")
        self._finish(record, self.games.game(game).status)
        return True

    def _finish(self, record: GameRecord, status: int) -> None:
        if status != ACTIVE and record.ended is None:
            record.status, record.ended = status, time.monotonic()
            log.info("game %d over output %d: %s", record.game, record.output, STATUS_NAMES[status])

    def collect(self) -> int:
        """Withdraw what the game contract owes us (bonds won); the amount."""
        owed = self.games.owed(self.signer.address)
        if owed > 0:
            self.games.withdraw(self.signer)
        return owed


class Defender(_Side):
    """The proposer's side: every game against an output it proposed is
    answered from the output's trace (``traces(index)``), a challenger out of
    time is timed out, a game over a deleted output is made moot, and the bonds
    won are withdrawn.  Nothing is kept between rounds but a cache: after a
    restart the first round reads every game from the chain and resumes."""

    def __init__(self, games: GameContract, signer: Signer | str | bytes,
                 traces: Callable[[int], LocalTrace | None], *, poll_interval_s: float = 0.5) -> None:
        super().__init__(games, signer)
        self.traces = traces
        self.poll_interval_s = poll_interval_s
        self.first_open = 0
        """Games below this index are over (they never reopen)."""
        self.last_error: str | None = None

    def poll(self) -> int:
        """One round over the games; the number of moves made."""
        moves = 0
        count = self.games.game_count()
        all_over = True
        for game in range(self.first_open, count):
            g = self.games.game(game)
            if g.status != ACTIVE:
                if all_over:
                    self.first_open = game + 1
                continue
            all_over = False
            out = self.games.output(g.output)
            if out.proposer.lower() != self.signer.address.lower():
                continue
            trace = None if out.deleted else self.traces(g.output)
            while self.advance(game, trace):
                moves += 1
        if self.records:
            self.collect()
        return moves

    async def poll_once(self) -> int:
        return await asyncio.to_thread(self.poll)

    async def run(self) -> None:
        await poll_forever(self, "defender", log)


class ChallengeRefused(L1Error):
    """A challenge that cannot be opened (period over, bond, funds), said before sending."""


class Challenger(_Side):
    """The challenger's side: open a game against an output whose end claim our
    trace disagrees with, then play it (``play``, one round; ``play_to_end``)."""

    def __init__(self, games: GameContract, signer: Signer | str | bytes, *, bond: int | None = None,
                 gas_reserve: int = 0) -> None:
        super().__init__(games, signer)
        self.bond = bond
        self.gas_reserve = gas_reserve
        """Wei kept for the moves' gas on top of the bond (checked before opening)."""
        self.open: dict[int, LocalTrace] = {}
        """Our active games and their traces."""

    def check_can_challenge(self, output: int) -> int:
        """The bond to send; ChallengeRefused with the reason when we cannot."""
        out = self.games.output(output)
        if out.deleted:
            raise ChallengeRefused(f"output {output} was deleted already")
        period, now = self.games.challenge_period(), self.games.now()
        if now >= out.proposed_at + period:
            raise ChallengeRefused(f"output {output}: its challenge period is over (it ended "
                                   f"{now - out.proposed_at - period} s ago): too late to challenge")
        need = self.games.challenge_bond()
        bond = need if self.bond is None else self.bond
        if bond < need:
            raise ChallengeRefused(f"bond too small: {format_eth(bond)} offered, the contract's CHALLENGE_BOND "
                                   f"is {format_eth(need)}")
        balance = self.games.w3.eth.get_balance(self.signer.address)
        if balance < bond + self.gas_reserve:
            raise ChallengeRefused(f"key {self.signer.address} holds {format_eth(balance)}: a challenge needs "
                                   f"the bond {format_eth(bond)} plus about {format_eth(self.gas_reserve)} "
                                   "for the moves' gas; fund it on L1 first")
        return bond

    def challenge(self, output: int, trace: LocalTrace | None, data: bytes) -> int:
        """Open a game over `output` (`trace`: ours of its data; None when the
        data does not parse, a game that opens already won)."""
        out = self.games.output(output)
        if trace is not None and trace.claims[-1] == out.end_claim:
            raise ChallengeRefused(f"output {output}: our replay of its posted data ends at its own claim: "
                                   "a game over it cannot be won")
        if trace is not None and trace.claims[0] != out.start_claim:
            raise ChallengeRefused(f"output {output}: our replay starts elsewhere than the output "
                                   "(replay the earlier outputs first)")
        bond = self.check_can_challenge(output)
        game, receipt = self.games.challenge(self.signer, output, data, bond)
        self.records[game] = GameRecord(game, output, moves=1, gas=receipt["gasUsed"])
        self.open[game] = trace
        log.warning("opened game %d against output %d (bond %s)", game, output, format_eth(bond))
        return game

    def play(self) -> int:
        """Every move that is ours now in our open games; the number made."""
        moves = 0
        for game, trace in list(self.open.items()):
            while self.advance(game, trace):
                moves += 1
            if self.games.game(game).status != ACTIVE:
                del self.open[game]
        return moves

    def play_to_end(self, game: int, *, poll_s: float = 0.2, timeout_s: float | None = None) -> int:
        """Play `game` alone until it is over (the opponent's moves come from
        elsewhere; a silent opponent is timed out once its clock runs out)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.games.game(game).status == ACTIVE:
            if not self.advance(game, self.open.get(game)):
                if deadline is not None and time.monotonic() > deadline:
                    raise L1Error(f"game {game} still open after {timeout_s} s")
                time.sleep(poll_s)
        self.open.pop(game, None)
        return self.games.game(game).status


def format_eth(wei: int) -> str:
    """Wei as ETH for people: 0.1 ETH, 0.00105 ETH."""
    text = f"{wei / 10**18:.6f}".rstrip("0").rstrip(".")
    return f"{text} ETH"
