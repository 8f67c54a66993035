# pragma version ~=0.4.1
"""
@title isoroll dispute games: permissionless fraud proofs on the bridge's outputs
@notice docs/fraud-proofs.md. Anyone challenges a pending output of bridge.vy
    with a bond: the game loads the output's posted data (one chunk per
    transaction, the records root derived on the way), the proposer reveals
    the end of its trace (ctx_n, checked against the output's state and
    withdrawals roots), then the proposer and the challenger bisect the trace
    (the proposer posts the claim at the midpoint, the challenger agrees or
    disagrees) until one item is left, which onestep.vy re-executes. Chess
    clocks per side, timeouts lose, the winner takes the game's bonds; a
    challenger who wins also takes the proposer's slashed bond on the bridge,
    which deletes the output and every later one. An open game holds the
    finality of its output and of every output after it (bridge.vy).
    A Merkle proof that the output's own state root disagrees with its
    inbox or block fields wins at once (proveInconsistent).
"""
import records
import smt
import trace

MAX_DATA: constant(uint256) = records.MAX_DATA
MAX_ITEM: constant(uint256) = records.MAX_ITEM_SIZE
MAX_GLOBALS: constant(uint256) = 512
GLOBALS_KEY: constant(bytes32) = keccak256(b"\x05globals")

ACTIVE: constant(uint256) = 0
PROPOSER_WON: constant(uint256) = 1
CHALLENGER_WON: constant(uint256) = 2
MOOT: constant(uint256) = 3

PROPOSER_TURN: constant(uint256) = 1
CHALLENGER_TURN: constant(uint256) = 2

LOADING: constant(uint256) = 1    # the challenger loads the output's data chunks
REVEALING: constant(uint256) = 2  # the proposer reveals ctx_n
PLAYING: constant(uint256) = 3    # bisect / choose / step


struct Output:
    # bridge.vy's Output: the fields its output root hashes
    state_root: bytes32
    withdrawals_root: bytes32
    last_block_hash: bytes32
    inbox_count: uint256
    inbox_hash: bytes32
    data_hash: bytes32


struct OutputInfo:
    # bridge.vy's getOutput
    output_root: bytes32
    proposed_at: uint256
    final_at: uint256
    challenge_time_left: uint256
    is_final: bool
    inbox_count: uint256
    l2_block: uint256
    withdrawals_total: uint256


interface Bridge:
    def PROPOSER() -> address: view
    def getOutput(index: uint256) -> OutputInfo: view
    def outputEpoch(index: uint256) -> uint256: view
    def output_count() -> uint256: view
    def held_from() -> uint256: view
    def hold(held_from: uint256): nonpayable
    def slash(index: uint256, epoch: uint256, winner: address) -> uint256: nonpayable


interface OneStep:
    def step(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM],
             openings: DynArray[trace.Opening, trace.MAX_OPENINGS],
             nonces: DynArray[uint256, trace.MAX_NONCES]) -> (bytes32, bytes32): view
    def family_of(ctx: trace.Ctx, item: Bytes[MAX_ITEM]) -> address: view


interface OneStepFamily:
    def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM],
              openings: DynArray[trace.Opening, trace.MAX_OPENINGS],
              nonces: DynArray[uint256, trace.MAX_NONCES]) -> (bytes32, bool): view


struct Game:
    output: uint256            # the bridge's output index
    epoch: uint256             # with the index, names that output for good (indices are reused after a deletion)
    challenger: address
    state_root: bytes32        # the output's fields the game needs
    withdrawals_root: bytes32
    data_hash: bytes32
    data_acc: bytes32          # LOADING: the chain over the chunks loaded so far
    malformed: bool            # LOADING: a loaded chunk did not parse
    records_root: bytes32
    count: uint256
    lo: uint256
    hi: uint256
    claim_lo: bytes32
    claim_hi: bytes32
    mid_claim: bytes32
    phase: uint256
    turn: uint256
    turn_started: uint256
    proposer_clock: uint256
    challenger_clock: uint256
    depth: uint256
    proposer_paid: uint256
    challenger_paid: uint256
    status: uint256


event GameOpened:
    game: indexed(uint256)
    output: indexed(uint256)
    challenger: indexed(address)
    epoch: uint256
    data_hash: bytes32

event DataLoaded:
    game: indexed(uint256)
    chunk_hash: bytes32
    items: uint256
    done: bool

event EndRevealed:
    game: indexed(uint256)
    records_root: bytes32
    count: uint256
    end_claim: bytes32

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
    slashed: uint256

event InconsistencyProven:
    output: indexed(uint256)
    prover: indexed(address)
    slashed: uint256


BRIDGE: public(immutable(address))
ONESTEP: public(immutable(address))
PROPOSER: public(immutable(address))
CLOCK: public(immutable(uint256))
EXTENSION: public(immutable(uint256))
CHALLENGE_BOND: public(immutable(uint256))
MOVE_BOND: public(immutable(uint256))

games: public(HashMap[uint256, Game])
game_count: public(uint256)
loading: HashMap[uint256, records.Frontier]   # game -> the records frontier while its data loads
lost: public(HashMap[uint256, bool])          # output index | epoch << 64 -> a challenger won a game on it
open_games: public(HashMap[uint256, uint256]) # output index | epoch << 64 -> games open on it
owed: public(HashMap[address, uint256])


@deploy
def __init__(bridge: address, onestep: address, clock: uint256, extension: uint256, challenge_bond: uint256,
             move_bond: uint256):
    assert extension <= clock and extension > 0, "extension"
    BRIDGE = bridge
    ONESTEP = onestep
    PROPOSER = staticcall Bridge(bridge).PROPOSER()
    CLOCK = clock
    EXTENSION = extension
    CHALLENGE_BOND = challenge_bond
    MOVE_BOND = move_bond


@internal
@pure
def _output_root(o: Output) -> bytes32:
    return smt.output_root(0, o.state_root, o.withdrawals_root, o.last_block_hash, o.inbox_count, o.inbox_hash,
                           o.data_hash)


@internal
@pure
def _output_key(index: uint256, epoch: uint256) -> uint256:
    return index | (epoch << 64)


@internal
@view
def _check_output(index: uint256, output: Output, prev: Output) -> (uint256, uint256):
    """(epoch, l2 block) of pending output `index` of the bridge, whose fields
    are `output` and whose predecessor's are `prev`; reverts if it is not
    live or its challenge period is over."""
    assert index > 0, "genesis"
    info: OutputInfo = staticcall Bridge(BRIDGE).getOutput(index)
    assert info.output_root == self._output_root(output), "not the output"
    assert (staticcall Bridge(BRIDGE).getOutput(index - 1)).output_root == self._output_root(prev), "not the previous output"
    assert info.challenge_time_left > 0, "challenge period over"
    return staticcall Bridge(BRIDGE).outputEpoch(index), info.l2_block


@internal
@view
def _is_live(index: uint256, epoch: uint256) -> bool:
    return index < staticcall Bridge(BRIDGE).output_count() and staticcall Bridge(BRIDGE).outputEpoch(index) == epoch


@internal
def _hold(index: uint256, epoch: uint256):
    """A game opens on output (index, epoch): it and every later output wait."""
    self.open_games[self._output_key(index, epoch)] += 1
    held: uint256 = staticcall Bridge(BRIDGE).held_from()
    if held == 0 or index < held:
        extcall Bridge(BRIDGE).hold(index)


@internal
def _release(index: uint256, epoch: uint256):
    """A game on output (index, epoch) ends: if it held the lowest output,
    the hold moves to the next live output with an open game, if any."""
    key: uint256 = self._output_key(index, epoch)
    self.open_games[key] -= 1
    if self.open_games[key] > 0 or staticcall Bridge(BRIDGE).held_from() != index or not self._is_live(index, epoch):
        return
    n: uint256 = staticcall Bridge(BRIDGE).output_count()
    for j: uint256 in range(index + 1, n, bound=2**32):
        if self.open_games[self._output_key(j, staticcall Bridge(BRIDGE).outputEpoch(j))] > 0:
            extcall Bridge(BRIDGE).hold(j)
            return
    extcall Bridge(BRIDGE).hold(0)


# --- opening and loading ------------------------------------------------------------

@external
@payable
def challenge(index: uint256, output: Output, prev: Output, chunk: Bytes[MAX_DATA]) -> uint256:
    """
    @notice Open a game against pending output `index` of the bridge (its
        fields `output`, the fields `prev` of the output before it, whose
        state root the trace starts from) with CHALLENGE_BOND and the first
        chunk of its posted data. The bridge refuses an output that is not
        live or past its challenge period.
    """
    assert msg.value >= CHALLENGE_BOND, "bond"
    epoch: uint256 = 0
    l2_block: uint256 = 0
    epoch, l2_block = self._check_output(index, output, prev)
    self._hold(index, epoch)
    game: uint256 = self.game_count
    self.game_count = game + 1
    self.games[game] = Game(
        output=index, epoch=epoch, challenger=msg.sender, state_root=output.state_root,
        withdrawals_root=output.withdrawals_root, data_hash=output.data_hash, data_acc=empty(bytes32),
        malformed=False, records_root=empty(bytes32), count=0, lo=0, hi=0,
        claim_lo=trace.claim(prev.state_root, empty(trace.Ctx)), claim_hi=empty(bytes32), mid_claim=empty(bytes32),
        phase=LOADING, turn=CHALLENGER_TURN, turn_started=block.timestamp, proposer_clock=CLOCK,
        challenger_clock=CLOCK, depth=0, proposer_paid=0, challenger_paid=msg.value, status=ACTIVE)
    log GameOpened(game=game, output=index, challenger=msg.sender, epoch=epoch, data_hash=output.data_hash)
    self._load(game, chunk)
    return game


@external
def load(game: uint256, chunk: Bytes[MAX_DATA]):
    """
    @notice The challenger loads the next chunk of the output's posted data
        (in the order the proposer posted them), under its clock.
    """
    g: Game = self.games[game]
    assert game < self.game_count and g.status == ACTIVE and g.phase == LOADING, "not loading"
    assert msg.sender == g.challenger, "not your turn"
    assert self._elapsed(g) < g.challenger_clock, "out of time"
    self._load(game, chunk)


@internal
def _load(game: uint256, chunk: Bytes[MAX_DATA]):
    """Fold one chunk into the data hash chain and (while every chunk so far
    parsed) its items into the frontier. When the chain reaches the output's
    data_hash the data is complete: data that did not parse loses at once,
    else the proposer reveals its end."""
    g: Game = self.games[game]
    chunk_hash: bytes32 = keccak256(chunk)
    acc: bytes32 = records.chain_data(g.data_acc, chunk_hash)
    items: uint256 = 0
    if not g.malformed:
        ok: bool = False
        f: records.Frontier = self.loading[game]
        before: uint256 = f.count
        ok, f = records.derive_chunk(f, chunk)
        if ok:
            self.loading[game] = f
            items = f.count - before
        else:
            self.games[game].malformed = True
            g.malformed = True
    self.games[game].data_acc = acc
    done: bool = acc == g.data_hash
    log DataLoaded(game=game, chunk_hash=chunk_hash, items=items, done=done)
    if not done:
        return
    if g.malformed:
        self._finish(game, CHALLENGER_WON)
        return
    f: records.Frontier = self.loading[game]
    self.games[game].records_root = records.root(f)
    self.games[game].count = f.count
    self.games[game].hi = f.count
    self.games[game].phase = REVEALING
    g = self.games[game]
    g = self._spend_clock(g)
    self.games[game] = self._begin_turn(g, PROPOSER_TURN)


@external
def reveal(game: uint256, end_ctx: trace.Ctx):
    """
    @notice The proposer reveals ctx_n, the context at the end of its trace:
        outside any block, its withdrawals frontier giving the output's
        withdrawals root. The end claim is keccak256(state_root || hash(ctx_n)).
    """
    g: Game = self.games[game]
    assert game < self.game_count and g.status == ACTIVE and g.phase == REVEALING, "not revealing"
    assert msg.sender == PROPOSER, "not your turn"
    assert end_ctx.block_open == 0, "end inside a block"
    assert records.root(end_ctx.withdrawals) == g.withdrawals_root, "withdrawals root"
    g = self._spend_clock(g)
    g.claim_hi = trace.claim(g.state_root, end_ctx)
    g.phase = PLAYING
    self.games[game] = g
    log EndRevealed(game=game, records_root=g.records_root, count=g.count, end_claim=g.claim_hi)
    if g.count == 0:
        self._finish(game, PROPOSER_WON if g.claim_lo == g.claim_hi else CHALLENGER_WON)
    elif g.count == 1:
        self.games[game] = self._begin_turn(g, CHALLENGER_TURN)
    else:
        self.games[game] = self._begin_turn(g, PROPOSER_TURN)


# --- clocks and bonds ---------------------------------------------------------------

@internal
@view
def _elapsed(g: Game) -> uint256:
    """Seconds since the turn began; 0 when the block's time is before it,
    which a transaction never sees (block times only grow) but a node's
    simulated call can (anvil runs eth_call / eth_estimateGas at a time that
    may trail its latest block's), where the subtraction would revert."""
    return block.timestamp - min(block.timestamp, g.turn_started)


@internal
@view
def _spend_clock(g: Game) -> Game:
    """Charge the mover for the time since its turn began (it must have time left)."""
    out: Game = g
    elapsed: uint256 = self._elapsed(g)
    if g.turn == PROPOSER_TURN:
        assert elapsed < g.proposer_clock, "out of time"
        out.proposer_clock = g.proposer_clock - elapsed
    else:
        assert elapsed < g.challenger_clock, "out of time"
        out.challenger_clock = g.challenger_clock - elapsed
    out.turn_started = block.timestamp
    return out


@internal
@view
def _begin_turn(g: Game, side: uint256) -> Game:
    """Hand the turn to `side`; a clock below EXTENSION is raised to it."""
    out: Game = g
    out.turn = side
    out.turn_started = block.timestamp
    if side == PROPOSER_TURN and out.proposer_clock < EXTENSION:
        out.proposer_clock = EXTENSION
    if side == CHALLENGER_TURN and out.challenger_clock < EXTENSION:
        out.challenger_clock = EXTENSION
    return out


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


@internal
@view
def _pay_move(g: Game, paid: uint256) -> Game:
    out: Game = g
    assert paid >= self._move_bond(g.depth), "move bond"
    if g.turn == PROPOSER_TURN:
        out.proposer_paid += paid
    else:
        out.challenger_paid += paid
    out.depth = g.depth + 1
    return out


# --- bisection ---------------------------------------------------------------------

@external
@payable
def bisect(game: uint256, mid_claim: bytes32):
    """
    @notice The proposer's claim at the midpoint of the disputed range.
    """
    g: Game = self.games[game]
    assert game < self.game_count and g.status == ACTIVE and g.phase == PLAYING, "game over"
    assert msg.sender == PROPOSER and g.turn == PROPOSER_TURN, "not your turn"
    assert g.hi - g.lo > 1, "one item left: step"
    g = self._pay_move(self._spend_clock(g), msg.value)
    g.mid_claim = mid_claim
    self.games[game] = self._begin_turn(g, CHALLENGER_TURN)
    log Bisected(game=game, mid=(g.lo + g.hi) // 2, claim=mid_claim)


@external
@payable
def choose(game: uint256, agree: bool):
    """
    @notice The challenger agrees with the midpoint claim (the fault is after
        it) or not (the fault is before it).
    """
    g: Game = self.games[game]
    assert game < self.game_count and g.status == ACTIVE and g.phase == PLAYING, "game over"
    assert msg.sender == g.challenger and g.turn == CHALLENGER_TURN and g.hi - g.lo > 1, "not your turn"
    g = self._pay_move(self._spend_clock(g), msg.value)
    mid: uint256 = (g.lo + g.hi) // 2
    if agree:
        g.lo = mid
        g.claim_lo = g.mid_claim
    else:
        g.hi = mid
        g.claim_hi = g.mid_claim
    g.mid_claim = empty(bytes32)
    if g.hi - g.lo == 1:
        self.games[game] = self._begin_turn(g, CHALLENGER_TURN)
    else:
        self.games[game] = self._begin_turn(g, PROPOSER_TURN)
    log Chose(game=game, agree=agree, lo=g.lo, hi=g.hi)


@external
def step(game: uint256, state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM],
         siblings: DynArray[bytes32, records.MAX_LIST_DEPTH],
         openings: DynArray[trace.Opening, trace.MAX_OPENINGS], nonces: DynArray[uint256, trace.MAX_NONCES]):
    """
    @notice Re-execute the one disputed item (either side may call, on the
        challenger's clock): the item at `lo` opened against the records root,
        from the position (state_root, ctx) that hashes to claim_lo. The
        proposer wins iff the result hashes to claim_hi.
    """
    g: Game = self.games[game]
    assert game < self.game_count and g.status == ACTIVE and g.phase == PLAYING, "game over"
    assert g.hi - g.lo == 1, "bisect first"
    assert self._elapsed(g) < g.challenger_clock, "out of time"
    assert records.verify_item(g.records_root, g.count, keccak256(item), g.lo, siblings), "not the item"
    pre: bytes32 = trace.claim(state_root, ctx)
    post: bytes32 = empty(bytes32)
    # a record of a family contract goes to it directly (onestep.vy would only
    # pass it on, with one more copy of the witness in memory); the claim after
    # it is the same hash of (root, ctx) as onestep.vy's step gives
    family: address = staticcall OneStep(ONESTEP).family_of(ctx, item)
    if family != empty(address):
        root: bytes32 = empty(bytes32)
        ok: bool = False
        root, ok = staticcall OneStepFamily(family).apply(state_root, ctx, item, openings, nonces)
        post = trace.claim(root, ctx)
    else:
        pre, post = staticcall OneStep(ONESTEP).step(state_root, ctx, item, openings, nonces)
    assert pre == g.claim_lo, "not the agreed position"
    log Stepped(game=game, index=g.lo, post_claim=post)
    self._finish(game, PROPOSER_WON if post == g.claim_hi else CHALLENGER_WON)


# --- ending ------------------------------------------------------------------------

@external
def timeout(game: uint256):
    """
    @notice The side to move is out of time: it loses (anyone may call).
    """
    g: Game = self.games[game]
    assert game < self.game_count and g.status == ACTIVE, "game over"
    elapsed: uint256 = self._elapsed(g)
    if g.turn == PROPOSER_TURN:
        assert elapsed >= g.proposer_clock, "time left"
        self._finish(game, CHALLENGER_WON)
    else:
        assert elapsed >= g.challenger_clock, "time left"
        self._finish(game, PROPOSER_WON)


@external
def moot(game: uint256):
    """
    @notice A game over an output that another game has already proven wrong,
        or that is no longer live (the guardian deleted it, or a won game
        deleted an earlier one), ends at once; each side takes back its bonds
        (anyone may call).
    """
    g: Game = self.games[game]
    assert game < self.game_count and g.status == ACTIVE, "game over"
    assert self._is_moot(g.output, g.epoch), "output not proven wrong nor deleted"
    self._end_moot(game)


@internal
@view
def _is_moot(index: uint256, epoch: uint256) -> bool:
    return self.lost[self._output_key(index, epoch)] or not self._is_live(index, epoch)


@internal
def _end_moot(game: uint256):
    g: Game = self.games[game]
    self.games[game].status = MOOT
    self.owed[g.challenger] += g.challenger_paid
    self.owed[PROPOSER] += g.proposer_paid
    self._release(g.output, g.epoch)
    log GameResolved(game=game, status=MOOT, winner=empty(address), paid=0, slashed=0)


@internal
def _finish(game: uint256, status: uint256):
    g: Game = self.games[game]
    if status == CHALLENGER_WON and self._is_moot(g.output, g.epoch):
        # The output is gone already (proven wrong by another game, or deleted
        # by the guardian while this game ran, when its proposer can no longer
        # rebuild the trace to answer): no second slash, and never a bond paid
        # for an output the guardian removed; both sides take their bonds back.
        self._end_moot(game)
        return
    winner: address = PROPOSER
    if status == CHALLENGER_WON:
        winner = g.challenger
        self.lost[self._output_key(g.output, g.epoch)] = True
    pot: uint256 = g.proposer_paid + g.challenger_paid
    self.games[game].status = status
    self.owed[winner] += pot
    self._release(g.output, g.epoch)
    slashed: uint256 = 0
    if status == CHALLENGER_WON:
        slashed = extcall Bridge(BRIDGE).slash(g.output, g.epoch, winner)
    log GameResolved(game=game, status=status, winner=winner, paid=pot, slashed=slashed)


@external
def proveInconsistent(index: uint256, output: Output, prev: Output, globals_leaf: Bytes[MAX_GLOBALS],
                      proof: smt.SmtProof):
    """
    @notice Win against pending output `index` at once, with no bond and no
        game: a Merkle proof of the globals leaf under the output's own state
        root whose block number, block hash, inbox count or inbox hash is not
        the output's (its L2 block on the bridge, last_block_hash, inbox_count,
        inbox_hash). The bridge deletes the output and every later one and
        pays the slashed proposer bond to the caller.
    """
    epoch: uint256 = 0
    l2_block: uint256 = 0
    epoch, l2_block = self._check_output(index, output, prev)
    assert len(globals_leaf) >= 224, "short globals leaf"
    assert smt.verify(output.state_root, GLOBALS_KEY, keccak256(globals_leaf), proof), "bad globals proof"
    consistent: bool = (convert(extract32(globals_leaf, 0), uint256) == l2_block
                        and extract32(globals_leaf, 32) == output.last_block_hash
                        and convert(extract32(globals_leaf, 160), uint256) == output.inbox_count
                        and extract32(globals_leaf, 192) == output.inbox_hash)
    assert not consistent, "consistent"
    self.lost[self._output_key(index, epoch)] = True
    slashed: uint256 = extcall Bridge(BRIDGE).slash(index, epoch, msg.sender)
    log InconsistencyProven(output=index, prover=msg.sender, slashed=slashed)


# --- views and payments ---------------------------------------------------------------

@external
@view
def clocks(game: uint256) -> (uint256, uint256):
    """(proposer, challenger) seconds left now."""
    g: Game = self.games[game]
    p: uint256 = g.proposer_clock
    c: uint256 = g.challenger_clock
    if g.status == ACTIVE:
        elapsed: uint256 = self._elapsed(g)
        if g.turn == PROPOSER_TURN:
            p = p - min(p, elapsed)
        else:
            c = c - min(c, elapsed)
    return p, c


@external
@view
def loadedItems(game: uint256) -> uint256:
    """Items derived so far while the game's data loads."""
    return self.loading[game].count


@external
def withdraw():
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "nothing owed"
    self.owed[msg.sender] = 0
    raw_call(msg.sender, b"", value=amount)
