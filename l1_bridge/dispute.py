"""Play dispute games (l1_bridge/contracts/dispute.vy, docs/fraud-proofs.md)
from a local replay of an output's items.

    trace = LocalTrace(TraceRunner(start_state, rules), items)
    player = GamePlayer(w3, dispute, sender, trace)
    player.challenge(output_index, encode_data(items))   # or, as the proposer,
    player.play(game)                                   # one move when it is our turn
    player.play_to_end(game, opponent=other.play)       # both sides until the game ends

A player only ever posts or agrees with the claims of its own trace, so an
honest trace wins every game (the contract's one-step decides the last item).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from l1_bridge.deploy import transact
from prover.records import prove_item
from prover.trace import TraceRunner

ACTIVE, PROPOSER_WON, CHALLENGER_WON, MOOT = 0, 1, 2, 3
PROPOSER_TURN, CHALLENGER_TURN = 1, 2
CHECKPOINT_EVERY = 64
"""A copy of the replay is kept every this many items; a witness replays from the nearest."""


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

    @property
    def mid(self) -> int:
        return (self.lo + self.hi) // 2


def read_game(dispute: Any, game: int) -> GameView:
    g = dispute.functions.games(game).call()
    return GameView(output=g[0], challenger=g[1], lo=g[4], hi=g[5], claim_lo=g[6], claim_hi=g[7],
                    mid_claim=g[8], turn=g[9], depth=g[13], status=g[16])


class GamePlayer:
    """One side of games, playing the claims of its own trace."""

    def __init__(self, w3: Any, dispute: Any, sender: str, trace: LocalTrace, *,
                 private_key: bytes | str | None = None) -> None:
        self.w3, self.dispute, self.sender, self.trace = w3, dispute, sender, trace
        self.private_key = private_key
        self.gas: list[tuple[str, int]] = []
        """(move, gas used) of every transaction sent, for the bench."""

    def send(self, name: str, call: Any, value: int = 0) -> Any:
        receipt = transact(self.w3, call, self.sender, value=value, private_key=self.private_key)
        self.gas.append((name, receipt["gasUsed"]))
        return receipt

    def propose(self, state_root: bytes, end_ctx: Any, withdrawals_root: bytes, data_hash: bytes) -> int:
        index = self.dispute.functions.output_count().call()
        bond = self.dispute.functions.PROPOSER_BOND().call()
        self.send("propose", self.dispute.functions.propose(state_root, end_ctx, withdrawals_root, data_hash), bond)
        return index

    def challenge(self, output: int, data: bytes) -> int:
        game = self.dispute.functions.game_count().call()
        bond = self.dispute.functions.CHALLENGE_BOND().call()
        self.send("challenge", self.dispute.functions.challenge(output, data), bond)
        return game

    def is_proposer(self, g: GameView) -> bool:
        return self.dispute.functions.outputs(g.output).call()[0].lower() == self.sender.lower()

    def play(self, game: int) -> bool:
        """Make the move that is ours now, if any; True when a move was sent."""
        g = read_game(self.dispute, game)
        if g.status != ACTIVE:
            return False
        proposer = self.is_proposer(g)
        if g.hi - g.lo == 1:
            if proposer and g.claim_hi != self.trace.claims[g.hi]:
                return False  # our own claim is not ours to defend: let the clock decide
            self.send("step", self.dispute.functions.step(game, *self.trace.step_args(g.lo)))
            return True
        bond = self.dispute.functions.move_bond(g.depth).call()
        if proposer and g.turn == PROPOSER_TURN:
            self.send("bisect", self.dispute.functions.bisect(game, self.trace.claims[g.mid]), bond)
            return True
        if not proposer and g.turn == CHALLENGER_TURN and g.challenger.lower() == self.sender.lower():
            agree = g.mid_claim == self.trace.claims[g.mid]
            self.send("choose", self.dispute.functions.choose(game, agree), bond)
            return True
        return False

    def play_to_end(self, game: int, opponent: Callable[[int], bool]) -> int:
        """Alternate our moves and the opponent's until the game ends or nobody
        moves; returns the game's status."""
        for _ in range(4 * 64):
            if read_game(self.dispute, game).status != ACTIVE:
                break
            moved = self.play(game)
            moved = opponent(game) or moved
            if not moved:
                break
        return read_game(self.dispute, game).status
