# pragma version ~=0.4.1
"""
@title isoroll dispute games: permissionless fraud proofs by bisection
@notice docs/fraud-proofs.md. Anyone challenges a pending output with a bond
    and the output's data; the proposer and the challenger bisect the trace
    (the proposer posts the claim at the midpoint, the challenger agrees or
    disagrees) until one item is left, which onestep.vy re-executes. Chess
    clocks per side, timeouts lose, the winner takes the game's bonds (and,
    for a challenger, the output's bond; the output and every later one are
    deleted). One game per challenger, all in parallel: an output is final
    (settle) once its challenge period is over, none of its games is open and
    the output before it is final.
    This contract keeps its own outputs until it is joined to bridge.vy.
"""
import records
import trace

MAX_DATA: constant(uint256) = records.MAX_DATA
MAX_ITEM: constant(uint256) = records.MAX_ITEM_SIZE

ACTIVE: constant(uint256) = 0
PROPOSER_WON: constant(uint256) = 1
CHALLENGER_WON: constant(uint256) = 2
MOOT: constant(uint256) = 3

PROPOSER_TURN: constant(uint256) = 1
CHALLENGER_TURN: constant(uint256) = 2


interface OneStep:
    def step(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM],
             openings: DynArray[trace.Opening, trace.MAX_OPENINGS],
             nonces: DynArray[uint256, trace.MAX_NONCES]) -> (bytes32, bytes32): view


struct Output:
    proposer: address
    state_root: bytes32
    start_claim: bytes32
    end_claim: bytes32
    data_hash: bytes32
    bond: uint256
    proposed_at: uint256
    open_games: uint256
    deleted: bool
    prev: uint256  # 1 + index of the live output it follows, 0 = genesis


struct Game:
    output: uint256
    challenger: address
    records_root: bytes32
    count: uint256
    lo: uint256
    hi: uint256
    claim_lo: bytes32
    claim_hi: bytes32
    mid_claim: bytes32
    turn: uint256
    turn_started: uint256
    proposer_clock: uint256
    challenger_clock: uint256
    depth: uint256
    proposer_paid: uint256
    challenger_paid: uint256
    status: uint256


event OutputProposed:
    index: indexed(uint256)
    state_root: bytes32
    end_claim: bytes32
    data_hash: bytes32

event GameOpened:
    game: indexed(uint256)
    output: indexed(uint256)
    challenger: indexed(address)
    records_root: bytes32
    count: uint256

event Bisected:
    game: indexed(uint256)
    mid: uint256
    claim: bytes32

event Chose:
    game: indexed(uint256)
    agree: bool
    lo: uint256
    hi: uint256

event Stepped:
    game: indexed(uint256)
    index: uint256
    post_claim: bytes32

event GameResolved:
    game: indexed(uint256)
    status: uint256
    winner: address
    paid: uint256

event OutputsDeleted:
    from_index: indexed(uint256)
    count: uint256


ONESTEP: public(immutable(address))
PROPOSER: public(immutable(address))
GENESIS_STATE_ROOT: public(immutable(bytes32))
CHALLENGE_PERIOD: public(immutable(uint256))
CLOCK: public(immutable(uint256))
EXTENSION: public(immutable(uint256))
PROPOSER_BOND: public(immutable(uint256))
CHALLENGE_BOND: public(immutable(uint256))
MOVE_BOND: public(immutable(uint256))

outputs: public(HashMap[uint256, Output])
output_count: public(uint256)  # indices are never reused: a game names its output for good
last_live: public(uint256)     # 1 + index of the newest live output, 0 = none
settled: public(uint256)       # 1 + index of the newest final output, 0 = none
games: public(HashMap[uint256, Game])
game_count: public(uint256)
owed: public(HashMap[address, uint256])


@deploy
def __init__(onestep: address, proposer: address, genesis_state_root: bytes32, challenge_period: uint256,
             clock: uint256, extension: uint256, proposer_bond: uint256, challenge_bond: uint256,
             move_bond: uint256):
    assert extension <= clock, "extension"
    ONESTEP = onestep
    PROPOSER = proposer
    GENESIS_STATE_ROOT = genesis_state_root
    CHALLENGE_PERIOD = challenge_period
    CLOCK = clock
    EXTENSION = extension
    PROPOSER_BOND = proposer_bond
    CHALLENGE_BOND = challenge_bond
    MOVE_BOND = move_bond


# --- outputs ----------------------------------------------------------------------

@external
@payable
def propose(state_root: bytes32, end_ctx: trace.Ctx, withdrawals_root: bytes32, data_hash: bytes32) -> uint256:
    """
    @notice An output after the last live one; its trace starts at that
        output's state root with an empty ctx and ends at (state_root, end_ctx),
        whose withdrawals frontier must give `withdrawals_root`.
    """
    assert msg.sender == PROPOSER, "only the proposer"
    assert msg.value >= PROPOSER_BOND, "bond"
    assert end_ctx.block_open == 0, "end inside a block"
    assert records.root(end_ctx.withdrawals) == withdrawals_root, "withdrawals root"
    index: uint256 = self.output_count
    prev: uint256 = self.last_live
    prev_root: bytes32 = GENESIS_STATE_ROOT
    if prev > 0:
        prev_root = self.outputs[prev - 1].state_root
    self.outputs[index] = Output(
        proposer=msg.sender, state_root=state_root, start_claim=trace.claim(prev_root, empty(trace.Ctx)),
        end_claim=trace.claim(state_root, end_ctx), data_hash=data_hash, bond=msg.value,
        proposed_at=block.timestamp, open_games=0, deleted=False, prev=prev)
    self.output_count = index + 1
    self.last_live = index + 1
    log OutputProposed(index=index, state_root=state_root, end_claim=self.outputs[index].end_claim, data_hash=data_hash)
    return index


@external
def settle(index: uint256):
    """
    @notice Output `index` becomes final: it is live, its challenge period is
        over, none of its games is open, and the output it follows is final.
        Outputs settle in order, so a game still open on an earlier output
        holds every later one (a won game deletes them all).
    """
    o: Output = self.outputs[index]
    assert index < self.output_count and not o.deleted, "no such output"
    assert block.timestamp >= o.proposed_at + CHALLENGE_PERIOD, "in its challenge period"
    assert o.open_games == 0, "open games"
    assert o.prev == self.settled, "settle the output before it first"
    self.settled = index + 1


@external
@view
def isFinal(index: uint256) -> bool:
    return index < self.settled and not self.outputs[index].deleted


@internal
def delete_outputs(from_index: uint256):
    """Output `from_index` and every live one after it are gone (their traces
    start from it); the next proposal follows the output before it."""
    n: uint256 = self.output_count
    deleted: uint256 = 0
    for i: uint256 in range(from_index, n, bound=2**32):
        if not self.outputs[i].deleted:
            self.outputs[i].deleted = True
            deleted += 1
    self.last_live = self.outputs[from_index].prev
    log OutputsDeleted(from_index=from_index, count=deleted)


# --- games ------------------------------------------------------------------------

@external
@view
def move_bond(depth: uint256) -> uint256:
    return self._move_bond(depth)


@internal
@view
def _move_bond(depth: uint256) -> uint256:
    """MOVE_BOND * 1.09^depth (OP's growth per level)."""
    b: uint256 = MOVE_BOND
    for _: uint256 in range(depth, bound=128):
        b = b * 109 // 100
    return b


@external
@payable
def challenge(output: uint256, data: Bytes[MAX_DATA]) -> uint256:
    """
    @notice Open a game against a pending output: the records root is derived
        from its data. Data that is not a stream of items loses at once.
    """
    o: Output = self.outputs[output]
    assert output < self.output_count and not o.deleted, "no such output"
    assert block.timestamp < o.proposed_at + CHALLENGE_PERIOD, "challenge period over"
    assert msg.value >= CHALLENGE_BOND, "bond"
    assert keccak256(data) == o.data_hash, "not the output's data"
    ok: bool = False
    root: bytes32 = empty(bytes32)
    n: uint256 = 0
    ok, root, n = records.derive_root(data)
    index: uint256 = self.game_count
    self.game_count = index + 1
    self.games[index] = Game(
        output=output, challenger=msg.sender, records_root=root, count=n, lo=0, hi=n,
        claim_lo=o.start_claim, claim_hi=o.end_claim, mid_claim=empty(bytes32), turn=PROPOSER_TURN,
        turn_started=block.timestamp, proposer_clock=CLOCK, challenger_clock=CLOCK, depth=0,
        proposer_paid=0, challenger_paid=msg.value, status=ACTIVE)
    self.outputs[output].open_games += 1
    log GameOpened(game=index, output=output, challenger=msg.sender, records_root=root, count=n)
    if not ok:
        self.finish(index, CHALLENGER_WON)
    elif n == 0:
        self.finish(index, PROPOSER_WON if o.start_claim == o.end_claim else CHALLENGER_WON)
    elif n == 1:
        self.games[index].turn = CHALLENGER_TURN
    return index


@internal
def spend_clock(g: Game) -> Game:
    """Charge the mover for the time since its turn began (it must have time left)."""
    out: Game = g
    elapsed: uint256 = block.timestamp - g.turn_started
    if g.turn == PROPOSER_TURN:
        assert elapsed < g.proposer_clock, "out of time"
        out.proposer_clock = g.proposer_clock - elapsed
    else:
        assert elapsed < g.challenger_clock, "out of time"
        out.challenger_clock = g.challenger_clock - elapsed
    return out


@internal
def begin_turn(g: Game, side: uint256) -> Game:
    """Hand the turn to `side`; a clock below EXTENSION is raised to it."""
    out: Game = g
    out.turn = side
    out.turn_started = block.timestamp
    if side == PROPOSER_TURN and out.proposer_clock < EXTENSION:
        out.proposer_clock = EXTENSION
    if side == CHALLENGER_TURN and out.challenger_clock < EXTENSION:
        out.challenger_clock = EXTENSION
    return out


@internal
def pay_move(g: Game, paid: uint256) -> Game:
    out: Game = g
    assert paid >= self._move_bond(g.depth), "move bond"
    if g.turn == PROPOSER_TURN:
        out.proposer_paid += paid
    else:
        out.challenger_paid += paid
    out.depth = g.depth + 1
    return out


@external
@payable
def bisect(game: uint256, mid_claim: bytes32):
    """
    @notice The proposer's claim at the midpoint of the disputed range.
    """
    g: Game = self.games[game]
    assert game < self.game_count and g.status == ACTIVE, "game over"
    assert msg.sender == self.outputs[g.output].proposer and g.turn == PROPOSER_TURN, "not your turn"
    assert g.hi - g.lo > 1, "one item left: step"
    g = self.pay_move(self.spend_clock(g), msg.value)
    g.mid_claim = mid_claim
    self.games[game] = self.begin_turn(g, CHALLENGER_TURN)
    log Bisected(game=game, mid=(g.lo + g.hi) // 2, claim=mid_claim)


@external
@payable
def choose(game: uint256, agree: bool):
    """
    @notice The challenger agrees with the midpoint claim (the fault is after
        it) or not (the fault is before it).
    """
    g: Game = self.games[game]
    assert game < self.game_count and g.status == ACTIVE, "game over"
    assert msg.sender == g.challenger and g.turn == CHALLENGER_TURN and g.hi - g.lo > 1, "not your turn"
    g = self.pay_move(self.spend_clock(g), msg.value)
    mid: uint256 = (g.lo + g.hi) // 2
    if agree:
        g.lo = mid
        g.claim_lo = g.mid_claim
    else:
        g.hi = mid
        g.claim_hi = g.mid_claim
    g.mid_claim = empty(bytes32)
    if g.hi - g.lo == 1:
        self.games[game] = self.begin_turn(g, CHALLENGER_TURN)
    else:
        self.games[game] = self.begin_turn(g, PROPOSER_TURN)
    log Chose(game=game, agree=agree, lo=g.lo, hi=g.hi)


@external
def step(game: uint256, state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM],
         siblings: DynArray[bytes32, records.MAX_LIST_DEPTH],
         openings: DynArray[trace.Opening, trace.MAX_OPENINGS], nonces: DynArray[uint256, trace.MAX_NONCES]):
    """
    @notice Re-execute the one disputed item (either side may call): the
        item at `lo` opened against the records root, from the position
        (state_root, ctx) that hashes to claim_lo. The proposer wins iff the
        result hashes to claim_hi.
    """
    g: Game = self.games[game]
    assert game < self.game_count and g.status == ACTIVE, "game over"
    assert g.hi - g.lo == 1, "bisect first"
    assert block.timestamp - g.turn_started < g.challenger_clock, "out of time"
    assert records.verify_item(g.records_root, g.count, keccak256(item), g.lo, siblings), "not the item"
    pre: bytes32 = empty(bytes32)
    post: bytes32 = empty(bytes32)
    pre, post = staticcall OneStep(ONESTEP).step(state_root, ctx, item, openings, nonces)
    assert pre == g.claim_lo, "not the agreed position"
    log Stepped(game=game, index=g.lo, post_claim=post)
    self.finish(game, PROPOSER_WON if post == g.claim_hi else CHALLENGER_WON)


@external
def timeout(game: uint256):
    """
    @notice The side to move is out of time: it loses.
    """
    g: Game = self.games[game]
    assert game < self.game_count and g.status == ACTIVE, "game over"
    elapsed: uint256 = block.timestamp - g.turn_started
    if g.turn == PROPOSER_TURN:
        assert elapsed >= g.proposer_clock, "time left"
        self.finish(game, CHALLENGER_WON)
    else:
        assert elapsed >= g.challenger_clock, "time left"
        self.finish(game, PROPOSER_WON)


@external
def moot(game: uint256):
    """
    @notice A game whose output another game deleted ends; bonds go back.
    """
    g: Game = self.games[game]
    assert game < self.game_count and g.status == ACTIVE, "game over"
    assert self.outputs[g.output].deleted, "output live"
    self.games[game].status = MOOT
    self.owed[g.challenger] += g.challenger_paid
    self.owed[self.outputs[g.output].proposer] += g.proposer_paid
    self.outputs[g.output].open_games -= 1
    log GameResolved(game=game, status=MOOT, winner=empty(address), paid=0)


@internal
def finish(game: uint256, status: uint256):
    g: Game = self.games[game]
    o: Output = self.outputs[g.output]
    pot: uint256 = g.proposer_paid + g.challenger_paid
    winner: address = o.proposer
    if status == CHALLENGER_WON:
        winner = g.challenger
        pot += o.bond
        self.outputs[g.output].bond = 0
        if not o.deleted:
            self.delete_outputs(g.output)
    self.games[game].status = status
    self.outputs[g.output].open_games -= 1
    self.owed[winner] += pot
    log GameResolved(game=game, status=status, winner=winner, paid=pot)


@external
@view
def clocks(game: uint256) -> (uint256, uint256):
    """(proposer, challenger) seconds left now."""
    g: Game = self.games[game]
    p: uint256 = g.proposer_clock
    c: uint256 = g.challenger_clock
    if g.status == ACTIVE:
        elapsed: uint256 = block.timestamp - g.turn_started
        if g.turn == PROPOSER_TURN:
            p = p - min(p, elapsed)
        else:
            c = c - min(c, elapsed)
    return p, c


@external
def withdraw():
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "nothing owed"
    self.owed[msg.sender] = 0
    send(msg.sender, amount)


@external
def withdrawBond(index: uint256):
    """
    @notice The proposer takes back the bond of a final output.
    """
    o: Output = self.outputs[index]
    assert msg.sender == o.proposer, "not the proposer"
    assert index < self.settled and not o.deleted, "not final"
    self.outputs[index].bond = 0
    self.owed[msg.sender] += o.bond
