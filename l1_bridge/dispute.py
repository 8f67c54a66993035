"""Play dispute games (docs/fraud-proofs.md, dispute.vy joined to bridge.vy)
from local replays of the outputs' posted items.

    games = GameContract.of(client)                     # the bridge's DISPUTE
    traces = OutputTraces(client, TraceRunner(genesis_state, rules))
    known = traces.get(index)                           # the output's chunks and trace
    GamePlayer(games, key).play(game, known)            # one move when one is ours

A player only ever posts or agrees with the claims of its own trace, so an
honest trace wins every game (the contract's one-step decides the last item).
``get_move`` is the decision (pure); every call to the contracts goes
through ``GameContract`` (one thin adapter).  On top of the player:

- ``OutputTraces``: each live output's chunks and trace from L1 data alone
  (its posted items, from the state after the output before it);
- ``Defender``: the proposer's loop, answering every game on its outputs
  (no state of its own: a restarted defender resumes from the chain);
- ``Challenger``: opens a game on an output its trace disagrees with (after
  checking the period, the bond and the key's balance) and plays it to the
  end, or takes up its open games after a restart; ``isoroll verifier --key``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from web3.logs import DISCARD

from l1_bridge.client import L1Error, L1Reverted, Signer, poll_forever
from prover.records import DataError, PendingKind, compute_data_hash, decode_data, decode_replay_item, prove_item
from prover.trace import TraceRunner

log = logging.getLogger("isoroll.l1.dispute")

ACTIVE, PROPOSER_WON, CHALLENGER_WON, MOOT = 0, 1, 2, 3
STATUS_NAMES = {ACTIVE: "active", PROPOSER_WON: "proposer won", CHALLENGER_WON: "challenger won", MOOT: "moot"}
PROPOSER_TURN, CHALLENGER_TURN = 1, 2
CHECKPOINT_EVERY = 64
"""A copy of the replay is kept every this many items; a witness replays from the nearest."""
GAS_MARGIN = 20_000
"""Gas added to a move's estimate (plus a fifth of it)."""
STEP_GAS = 6_000_000
"""Gas limit of a step: the one-step of the heaviest kinds measures ~1.9 M as a call of onestep.step
(a Trade, a vault deposit; docs/fraud-proofs.md), and the game's own copy of the witness adds to it;
mostly memory, which estimation on some nodes gets wrong. Unused gas is not paid."""


def advance(runner: TraceRunner, item: bytes) -> bool:
    """Apply one item to `runner` (True); an item whose one-step is pending
    is applied as the L1 replay applies it, with no witness (False: it cannot
    be stepped on L1)."""
    try:
        runner.step(item)
        return True
    except PendingKind:
        runner._apply(decode_replay_item(item))
        return False


class LocalTrace:
    """The claims of every position of an output's trace, from a replay."""

    def __init__(self, runner: TraceRunner, items: Sequence[bytes]) -> None:
        self.items = list(items)
        self.checkpoints: dict[int, TraceRunner] = {}
        self.claims = [runner.claim]
        self.pending: set[int] = set()
        """Positions whose item has no one-step yet (a game that ends there is decided by a clock)."""
        for index, item in enumerate(self.items):
            if index % CHECKPOINT_EVERY == 0:
                self.checkpoints[index] = runner.copy()
            if not advance(runner, item):
                self.pending.add(index)
            self.claims.append(runner.claim)
        self.end = runner

    def __len__(self) -> int:
        return len(self.items)

    def step_args(self, index: int) -> tuple:
        """The arguments of dispute.step after `index` items (game id excluded)."""
        base = index - index % CHECKPOINT_EVERY
        runner = self.checkpoints[base].copy()
        for item in self.items[base:index]:
            advance(runner, item)
        root, ctx = runner.state_root, runner.ctx
        witness = runner.step(self.items[index]).witness
        siblings = list(prove_item(self.items, index).siblings)
        return (root, ctx.as_arg(), self.items[index], siblings, [o.as_arg() for o in witness.openings],
                list(witness.nonces))


PHASE_NAMES = {1: "loading data", 2: "proposer reveals its end", 3: "bisecting"}
LOADING, REVEALING, PLAYING = 1, 2, 3


@dataclass
class GameView:
    """One game as dispute.vy stores it (fields by name from the ABI, so a
    field added to the struct breaks nothing here)."""
    output: int
    challenger: str
    lo: int = 0
    hi: int = 0
    claim_lo: bytes = b""
    claim_hi: bytes = b""
    mid_claim: bytes = b""
    turn: int = 0
    depth: int = 0
    status: int = ACTIVE
    count: int = 0
    turn_started: int = 0
    proposer_paid: int = 0
    challenger_paid: int = 0
    proposer_clock: int = 0
    challenger_clock: int = 0
    epoch: int = 0
    phase: int = PLAYING
    data_acc: bytes = b""
    data_hash: bytes = b""
    state_root: bytes = b""
    withdrawals_root: bytes = b""
    malformed: bool = False
    records_root: bytes = b""

    @property
    def mid(self) -> int:
        return (self.lo + self.hi) // 2


def _abi_names(contract: Any, fn: str) -> list[str]:
    for entry in contract.abi:
        if entry.get("type") == "function" and entry.get("name") == fn:
            outputs = entry["outputs"]
            if len(outputs) == 1 and outputs[0].get("components"):
                outputs = outputs[0]["components"]
            return [o["name"] for o in outputs]
    raise L1Error(f"the contract has no {fn}()")


def get_loaded_chunks(data_acc: bytes, chunks: Sequence[bytes]) -> int | None:
    """How many of `chunks` a game's data chain `data_acc` holds (None: not a prefix of them)."""
    for k in range(len(chunks) + 1):
        if compute_data_hash(chunks[:k]) == data_acc:
            return k
    return None


class GameContract:
    """Every call the players make to the games: dispute.vy (DISPUTE of the
    bridge) for the games, the bridge for the outputs they name.  Reads and
    writes go through a ``BridgeClient`` (its lock, its errors: ``L1Reverted``
    with the contract's reason)."""

    def __init__(self, contract: Any, client: Any) -> None:
        self.contract = contract
        self.client = client
        self.w3 = contract.w3
        self.f = contract.functions
        self._fields = _abi_names(contract, "games")
        self._proposer: str | None = None

    @classmethod
    def of(cls, client: Any) -> "GameContract":
        """The games of the bridge `client` names (its DISPUTE)."""
        from l1_bridge.deploy import load_artifact
        try:
            fn = client.bridge.functions.DISPUTE()
        except AttributeError:
            raise L1Error(f"the bridge at {client.bridge.address} has no dispute games (deployed before they "
                          "joined it)") from None
        address = client._call("read the bridge's DISPUTE", fn)
        return cls(client.w3.eth.contract(address=address, abi=load_artifact("dispute")[0]), client)

    # --- plumbing ------------------------------------------------------------------
    def _call(self, what: str, fn: Any) -> Any:
        return self.client._call(what, fn)

    def _send(self, what: str, fn: Any, who: Signer, value: int = 0, gas: int | None = None) -> Any:
        if gas is None:
            # an estimate made in the block of the opponent's move charges a clock by 0 s (a no-op
            # store); in the next block the clock changes and the move costs ~600 gas more
            estimate = self.client._guard(what, lambda: fn.estimate_gas({"from": who.address, "value": value}))
            gas = estimate + estimate // 5 + GAS_MARGIN
        return self.client.send(what, fn, who, value=value, gas=gas)

    # --- reads -----------------------------------------------------------------------
    @property
    def proposer(self) -> str:
        if self._proposer is None:
            self._proposer = self._call("read PROPOSER", self.f.PROPOSER())
        return self._proposer

    def game_count(self) -> int:
        return self._call("read game_count", self.f.game_count())

    def game(self, game: int) -> GameView:
        values = dict(zip(self._fields, self._call(f"read game {game}", self.f.games(game))))
        known = GameView.__dataclass_fields__
        return GameView(**{k: (bytes(v) if isinstance(v, (bytes, bytearray)) else v)
                           for k, v in values.items() if k in known})

    def clocks(self, game: int) -> tuple[int, int]:
        """(proposer, challenger) seconds left now."""
        return tuple(self._call(f"read the clocks of game {game}", self.f.clocks(game)))

    def is_lost(self, index: int, epoch: int) -> bool:
        """A challenger won a game on output (index, epoch): other games on it are moot."""
        return self._call("read lost", self.f.lost(index | (epoch << 64)))

    def output_epoch_of(self, index: int) -> int | None:
        """The epoch of output `index` while it is live, else None (deleted)."""
        if index >= self.client.output_count():
            return None
        return self.output_epoch(index)

    def output_epoch(self, index: int) -> int:
        """The bridge's epoch of output `index` (deletions before it was proposed)."""
        return self.client._call("read outputEpoch", self.client.bridge.functions.outputEpoch(index))

    def challenge_bond(self) -> int:
        return self._call("read CHALLENGE_BOND", self.f.CHALLENGE_BOND())

    def move_bond(self, depth: int) -> int:
        return self._call("read move_bond", self.f.move_bond(depth))

    def clock(self) -> int:
        return self._call("read CLOCK", self.f.CLOCK())

    def owed(self, who: str) -> int:
        return self._call("read owed", self.f.owed(who))

    def now(self) -> int:
        return self.client.now()

    # --- writes ------------------------------------------------------------------------
    def challenge(self, who: Signer, index: int, output: Any, prev: Any, chunk: bytes, bond: int) -> tuple[int, Any]:
        """Open a game on bridge output `index` (its fields and the previous
        output's) with the first chunk of its data; (game index, receipt)."""
        receipt = self._send(f"challenge output {index}",
                             self.f.challenge(index, output.as_arg(), prev.as_arg(), chunk), who, bond)
        opened = self.contract.events.GameOpened().process_receipt(receipt, errors=DISCARD)
        return opened[0]["args"]["game"], receipt

    def load(self, who: Signer, game: int, chunk: bytes) -> Any:
        return self._send(f"load data into game {game}", self.f.load(game, chunk), who)

    def reveal(self, who: Signer, game: int, end_ctx: Any) -> Any:
        return self._send(f"reveal the end of game {game}", self.f.reveal(game, end_ctx), who)

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


# --- one side's moves -------------------------------------------------------------------

@dataclass(frozen=True)
class Move:
    kind: str
    """load, reveal, bisect, choose, step, timeout, moot."""
    claim: bytes = b""
    agree: bool = False
    chunk: int = 0


@dataclass
class OutputTrace:
    """What a player knows of one output: its data chunks as posted and the
    trace of their items (None when the data does not parse)."""
    chunks: list[bytes]
    trace: LocalTrace | None


def get_move(g: GameView, proposer: str, me: str, known: OutputTrace | None, clocks: tuple[int, int],
             moot: bool = False) -> Move | None:
    """The move `me` should make now in game `g` (None: nothing to do).  Pure:
    the challenger loads the output's chunks, the proposer reveals the end of
    its own trace (when its withdrawals root is the output's) and posts its own
    claims, the challenger agrees only with claims of its trace, either side
    steps only from a position it agrees with, takes a win by timeout, and
    ends a game over an output another game proved wrong or that is no longer
    live (``moot``: both bonds go back)."""
    if g.status != ACTIVE:
        return None
    is_proposer = proposer.lower() == me.lower()
    is_challenger = g.challenger.lower() == me.lower()
    if not (is_proposer or is_challenger):
        return None
    if moot:
        return Move("moot")
    if (g.turn == PROPOSER_TURN and clocks[0] == 0 and is_challenger) or \
            (g.turn == CHALLENGER_TURN and clocks[1] == 0 and is_proposer):
        return Move("timeout")
    if known is None:
        return None
    trace = known.trace
    if g.phase == LOADING:
        loaded = get_loaded_chunks(g.data_acc, known.chunks)
        if not is_challenger or loaded is None or loaded >= len(known.chunks):
            return None
        return Move("load", chunk=loaded)
    if trace is None:
        return None
    if g.phase == REVEALING:
        if is_proposer and g.turn == PROPOSER_TURN and trace.end.ctx.withdrawals.root() == g.withdrawals_root:
            return Move("reveal")
        return None
    if g.hi - g.lo == 1:
        if g.claim_lo != trace.claims[g.lo] or g.lo in trace.pending:
            return None  # not a position we agree with, or an item L1 cannot re-execute yet
        if is_proposer and g.claim_hi != trace.claims[g.hi]:
            return None  # not a claim we can defend: the clock decides
        return Move("step")
    if is_proposer and g.turn == PROPOSER_TURN:
        return Move("bisect", claim=trace.claims[g.mid])
    if is_challenger and g.turn == CHALLENGER_TURN:
        return Move("choose", agree=g.mid_claim == trace.claims[g.mid])
    return None


class GamePlayer:
    """One side of games, playing the claims of its own trace."""

    def __init__(self, games: GameContract, signer: Signer | str | bytes) -> None:
        self.games = games
        self.signer = Signer.of(signer)
        self.gas: list[tuple[str, int]] = []
        """(move, gas used) of every transaction sent, for the bench."""

    def _sent(self, name: str, receipt: Any) -> Any:
        self.gas.append((name, receipt["gasUsed"]))
        return receipt

    def next_move(self, game: int, known: OutputTrace | None) -> tuple[GameView, Move | None]:
        g = self.games.game(game)
        if g.status != ACTIVE:
            return g, None
        moot = self.games.is_lost(g.output, g.epoch) or self.games.output_epoch_of(g.output) != g.epoch
        return g, get_move(g, self.games.proposer, self.signer.address, known, self.games.clocks(game), moot)

    def make(self, game: int, g: GameView, move: Move, known: OutputTrace | None) -> None:
        s, games = self.signer, self.games
        if move.kind == "load":
            self._sent("load", games.load(s, game, known.chunks[move.chunk]))
        elif move.kind == "reveal":
            self._sent("reveal", games.reveal(s, game, known.trace.end.ctx.as_arg()))
        elif move.kind == "bisect":
            self._sent("bisect", games.bisect(s, game, move.claim, games.move_bond(g.depth)))
        elif move.kind == "choose":
            self._sent("choose", games.choose(s, game, move.agree, games.move_bond(g.depth)))
        elif move.kind == "step":
            self._sent("step", games.step(s, game, known.trace.step_args(g.lo)))
        elif move.kind == "timeout":
            self._sent("timeout", games.timeout(s, game))
        elif move.kind == "moot":
            self._sent("moot", games.moot(s, game))

    def play(self, game: int, known: OutputTrace | None) -> bool:
        """Make the move that is ours now, if any; True when a move was sent."""
        g, move = self.next_move(game, known)
        if move is None:
            return False
        self.make(game, g, move, known)
        return True


# --- traces from L1 data ------------------------------------------------------------------

def split_frames(data: bytes) -> list[bytes]:
    """The items of posted data (a chunk or a whole output's data)."""
    return decode_data(data)


class OutputTraces:
    """Each live output's data and trace from L1 data alone: the chunks are
    what the proposer posted (postData, then propose), the trace runs their
    items from the state after the live output before it, replayed item by
    item from genesis.  A deletion or a re-posted output (another root at an
    index) is followed: the replay restarts at the first changed output."""

    def __init__(self, client: Any, genesis: TraceRunner, *, from_block: int = 0) -> None:
        self.client = client
        self.genesis = genesis
        self.from_block = from_block
        self.roots: list[bytes] = []
        """Output roots replayed so far (index i-1 for output i)."""
        self.runners: list[TraceRunner] = [genesis.copy()]
        """runners[i]: the state after output i (0: genesis)."""
        self.known: dict[tuple[int, bytes], OutputTrace] = {}

    def _sync(self, events: list[dict]) -> None:
        keep = 0
        while keep < len(self.roots) and keep + 1 < len(events) and self.roots[keep] == events[keep + 1]["output_root"]:
            keep += 1
        del self.roots[keep:]
        del self.runners[keep + 1:]

    def fields(self, index: int, events: list[dict]) -> Any:
        """The OutputFields of live output `index` (output 0's event names no
        state root: the genesis output holds the genesis state root alone)."""
        if index == 0:
            from sequencer.executor.output import EMPTY, OutputFields
            return OutputFields(self.genesis.state_root, EMPTY, EMPTY, 0, EMPTY, EMPTY)
        return events[index]["fields"]

    def get(self, index: int, events: list[dict] | None = None) -> OutputTrace | None:
        """Live output `index` (>= 1): its chunks and trace (trace None when
        its data is not a stream of items: a game over it opens already won by
        the challenger).  None when an output before it does not parse (no
        state to start from)."""
        events = self.client.live_outputs(self.from_block) if events is None else events
        if not 1 <= index < len(events):
            raise L1Error(f"output {index} is not live (outputs 0..{len(events) - 1})")
        self._sync(events)
        key = (index, events[index]["output_root"])
        if key in self.known:
            return self.known[key]
        while len(self.runners) <= index:
            i = len(self.runners)
            known = self._replay(i, events[i])
            if known.trace is None:
                return known if i == index else None
            self.runners.append(known.trace.end.copy())
            self.roots.append(events[i]["output_root"])
        return self.known.get(key) or self._replay(index, events[index])

    def _replay(self, index: int, event: dict) -> OutputTrace:
        chunks = self.client.output_chunks(event)
        trace = None
        try:
            items = [item for chunk in chunks for item in split_frames(chunk)]
            trace = LocalTrace(self.runners[index - 1].copy(), items)
        except DataError as exc:
            log.warning("output %d: the posted data is not a stream of items (%s)", index, exc)
        known = OutputTrace(chunks, trace)
        self.known[(index, event["output_root"])] = known
        return known


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
        self.player = GamePlayer(games, signer)
        self.signer = self.player.signer
        self.records: dict[int, GameRecord] = {}

    def advance(self, game: int, known: OutputTrace | None) -> bool:
        """One move in `game` if one is ours now; True when a move was sent."""
        g, move = self.player.next_move(game, known)
        record = self.records.setdefault(game, GameRecord(game, g.output))
        if move is None:
            self._finish(record, g.status)
            return False
        if not self.may_move():
            return False
        sent = len(self.player.gas)
        try:
            self.player.make(game, g, move, known)
        except L1Reverted as exc:
            # someone else's move landed first (a timeout, moot or the other side's step): re-read next time
            log.info("game %d: %s not taken (%s)", game, move.kind, exc.reason)
            return False
        record.moves += 1
        record.gas += sum(gas for _, gas in self.player.gas[sent:])
        log.info("game %d (output %d): %s%s", game, g.output, move.kind,
                 f" agree={move.agree}" if move.kind == "choose" else "")
        self._finish(record, self.games.game(game).status)
        return True

    def may_move(self) -> bool:
        """Checked after the game was read and before a move is sent."""
        return True

    def _finish(self, record: GameRecord, status: int) -> None:
        if status != ACTIVE and record.ended is None:
            record.status, record.ended = status, time.monotonic()
            log.info("game %d over output %d: %s (%d moves of ours, %d gas)", record.game, record.output,
                     STATUS_NAMES[status], record.moves, record.gas)

    def collect(self) -> int:
        """Withdraw what the games and the bridge owe us (bonds won, a slashed
        proposer bond); the amount."""
        owed = self.games.owed(self.signer.address)
        if owed > 0:
            self.games.withdraw(self.signer)
        client = self.games.client
        slashed = client.eth_owed(self.signer.address)
        if slashed > 0:
            client.send("withdrawEth", client.bridge.functions.withdrawEth(), self.signer)
        return owed + slashed


class Defender(_Side):
    """The proposer's side: every game on the bridge's outputs is answered
    from the output's trace (``traces``: an OutputTraces), a challenger out of time is
    timed out, a game over an output already proven wrong is made moot, and the
    bonds won are withdrawn.  Nothing is kept between rounds but caches: after
    a restart the first round reads every game from the chain and resumes."""

    def __init__(self, games: GameContract, signer: Signer | str | bytes, traces: "OutputTraces", *,
                 poll_interval_s: float = 0.5,
                 active: Callable[[], bool] = lambda: True) -> None:
        super().__init__(games, signer)
        self.traces = traces
        self.active = active
        """Whether this node plays now (only the active sequencer sends with the proposer key)."""
        self.poll_interval_s = poll_interval_s
        self.first_open = 0
        """Games below this index are over (they never reopen)."""
        self.last_error: str | None = None
        self.won = 0
        self.stopped = False

    def poll(self) -> int:
        """One round over the games; the number of moves made."""
        if not self.active() or self.games.proposer.lower() != self.signer.address.lower():
            return 0  # a standby, or not the proposer: nothing to defend
        moves = 0
        all_over = True
        events = None
        for game in range(self.first_open, self.games.game_count()):
            g = self.games.game(game)
            if g.status != ACTIVE:
                if all_over:
                    self.first_open = game + 1
                continue
            all_over = False
            if events is None:  # once a round: the live outputs the traces come from
                events = self.traces.client.live_outputs(self.traces.from_block)
            known = self._known(g, events)
            while self.advance(game, known):
                moves += 1
        if moves:
            self.won += self.collect()
        return moves

    def _known(self, g: GameView, events: list[dict]) -> OutputTrace | None:
        """The trace of the game's output, if it is still the live output at its
        index (an index is reused after a deletion: the epoch tells them apart)."""
        if g.output >= len(events) or self.games.output_epoch(g.output) != g.epoch:
            return None  # deleted: only moot or timeout are left
        return self.traces.get(g.output, events)

    async def poll_once(self) -> int:
        return await asyncio.to_thread(self.poll)

    def may_move(self) -> bool:
        """Not once the node stops or stands by: a round still running in its
        thread after the task was cancelled sends nothing more."""
        return not self.stopped and self.active()

    async def run(self) -> None:
        self.stopped = False
        try:
            await poll_forever(self, "defender", log)
        finally:
            self.stopped = True


class ChallengeRefused(L1Error):
    """A challenge that cannot be opened (period over, bond, funds), said before sending."""


class Challenger(_Side):
    """The challenger's side: open a game on an output whose trace disagrees
    with it, then play it alone (``play``: every move ours now; ``play_to_end``)."""

    def __init__(self, games: GameContract, signer: Signer | str | bytes, *, bond: int | None = None,
                 gas_reserve: int = 0) -> None:
        super().__init__(games, signer)
        self.bond = bond
        self.gas_reserve = gas_reserve
        """Wei kept for the moves' gas on top of the bond (checked before opening)."""
        self.open: dict[int, OutputTrace] = {}
        """Our active games and what we know of their outputs."""

    def check_can_challenge(self, index: int) -> int:
        """The bond to send; ChallengeRefused with the reason when we cannot."""
        client = self.games.client
        out = client.get_output(index)
        if out["is_final"] or out["challenge_time_left"] <= 0:
            raise ChallengeRefused(f"output {index}: its challenge period is over: too late to challenge")
        need = self.games.challenge_bond()
        bond = need if self.bond is None else self.bond
        if bond < need:
            raise ChallengeRefused(f"bond too small: {format_eth(bond)} offered, the dispute contract's "
                                   f"CHALLENGE_BOND is {format_eth(need)}")
        balance = client.eth_balance(self.signer.address)
        if balance < bond + self.gas_reserve:
            raise ChallengeRefused(f"key {self.signer.address} holds {format_eth(balance)}: a challenge needs "
                                   f"the bond {format_eth(bond)} plus about {format_eth(self.gas_reserve)} "
                                   "for the moves' gas; fund it on L1 first")
        return bond

    def challenge(self, index: int, fields: Any, prev: Any, known: OutputTrace) -> int:
        """Open a game on live output `index` (`fields`, `prev`: its OutputFields
        and the previous output's; `known`: its chunks and our trace of them)."""
        if known.trace is not None:
            end = known.trace.end
            if end.state_root == fields.state_root and end.ctx.withdrawals.root() == fields.withdrawals_root:
                raise ChallengeRefused(f"output {index}: our replay of its posted data ends at its own state and "
                                       "withdrawals roots: a game over it cannot be won")
        bond = self.check_can_challenge(index)
        game, receipt = self.games.challenge(self.signer, index, fields, prev,
                                             known.chunks[0] if known.chunks else b"", bond)
        self.records[game] = GameRecord(game, index, moves=1, gas=receipt["gasUsed"])
        self.open[game] = known
        log.warning("opened game %d on output %d (bond %s)", game, index, format_eth(bond))
        return game

    def resume(self, traces: "OutputTraces", events: list[dict]) -> dict[int, int]:
        """Take up our games still open on the chain (after a restart): {game: output}.
        A game whose output is no longer live gets no trace (moot or a clock ends it)."""
        me = self.signer.address.lower()
        found = {}
        for game in range(self.games.game_count()):
            if game in self.open:
                continue
            g = self.games.game(game)
            if g.status != ACTIVE or g.challenger.lower() != me:
                continue
            live = g.output < len(events) and self.games.output_epoch(g.output) == g.epoch
            self.open[game] = traces.get(g.output, events) if live else None
            self.records[game] = GameRecord(game, g.output)
            found[game] = g.output
            log.warning("resuming our game %d on output %d", game, g.output)
        return found

    def play(self) -> int:
        """Every move that is ours now in our open games; the number made."""
        moves = 0
        for game, known in list(self.open.items()):
            while self.advance(game, known):
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


def describe_game(g: GameView, clocks: tuple[int, int], game: int, proposer: str) -> dict:
    """One game for people and for JSON: output, claims, whose move, both clocks, bonds, state."""
    if g.status != ACTIVE:
        move = None
    elif g.phase == LOADING:
        move = "challenger: load the output's data"
    elif g.phase == REVEALING:
        move = "proposer: reveal the end of its trace"
    elif g.hi - g.lo == 1:
        move = "challenger: step (either side may)"
    else:
        move = "proposer: bisect" if g.turn == PROPOSER_TURN else "challenger: choose"
    return {"game": game, "output": g.output, "epoch": g.epoch, "challenger": g.challenger, "proposer": proposer,
            "state": STATUS_NAMES[g.status], "phase": PHASE_NAMES.get(g.phase, str(g.phase)),
            "items": g.count, "lo": g.lo, "hi": g.hi, "depth": g.depth,
            "claim_lo": "0x" + g.claim_lo.hex(), "claim_hi": "0x" + g.claim_hi.hex(),
            "mid_claim": "0x" + g.mid_claim.hex() if g.mid_claim.strip(b"\x00") else None,
            "to_move": move, "proposer_clock_s": clocks[0], "challenger_clock_s": clocks[1],
            "proposer_bonds_wei": g.proposer_paid, "challenger_bonds_wei": g.challenger_paid}


def list_games(games: GameContract, last: int | None = None) -> list[dict]:
    """The games (the `last` newest, default all), oldest first, as describe_game."""
    count = games.game_count()
    first = 0 if last is None else max(0, count - last)
    return [describe_game(games.game(i), games.clocks(i), i, games.proposer) for i in range(first, count)]


def format_eth(wei: int) -> str:
    """Wei as ETH for people: 0.1 ETH, 0.00105 ETH."""
    text = f"{wei / 10**18:.6f}".rstrip("0").rstrip(".")
    return f"{text} ETH"
