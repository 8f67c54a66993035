"""Dispute games on the bridge's own outputs (py-evm): bridge.vy, dispute.vy and
the one-steps deployed together by l1_bridge.deploy, outputs proposed through
the bridge from local replays of real blocks (transfers, withdrawals, deposits
and forced withdrawals the bridge's inbox really holds, refused records: 18
items), games played by l1_bridge.dispute.GamePlayer. Honest and wrong
proposers against honest and wrong challengers, a wrong claim at every
position, timeouts in every phase, several challengers at once, finality held
by open games, bonds and the slashed proposer bond, the consistency proof,
data that does not parse, and the guardian."""
from __future__ import annotations

import pytest

from game_env import (CHALLENGE_BOND, CLOCK, EXTENSION, MOVE_BOND, PERIOD, PROPOSER_BOND, FakeTrace, World,
                      chunks_of, make_items, make_trace, make_world)
from l1_bridge.client import L1Reverted, Signer
from l1_bridge.deploy import transact
from l1_bridge.dispute import ACTIVE, CHALLENGER_WON, MOOT, PROPOSER_WON, LocalTrace, OutputTrace
from prover import fraud_vectors as fv
from prover.hashing import keccak
from prover.keys import GLOBAL_KEY
from prover.records import compute_block_items, encode_data
from prover.records import compute_records_root, decode_data
from prover.trace import TraceContext, compute_claim

pytestmark = pytest.mark.evm

ITEMS = make_items()
CHUNKS = chunks_of(ITEMS)


@pytest.fixture(scope="module")
def world_once() -> World:
    return make_world()


@pytest.fixture
def world(world_once):
    snapshot = world_once.tester.take_snapshot()
    yield world_once
    world_once.tester.revert_to_snapshot(snapshot)


@pytest.fixture(scope="module")
def honest() -> LocalTrace:
    return make_trace(ITEMS)


def known(trace: LocalTrace, chunks=CHUNKS) -> OutputTrace:
    return OutputTrace(list(chunks), trace)


def liar_root(trace: LocalTrace) -> bytes:
    return keccak(b"wrong state root" + trace.end.state_root)


def propose_liar(world: World, honest: LocalTrace, wrong_from: int) -> tuple[int, OutputTrace]:
    """A proposer whose claims are wrong from `wrong_from` on; its end claim is
    its own (a wrong state root when wrong_from = the item count)."""
    fake = FakeTrace(honest, wrong_from)
    root = liar_root(honest)
    index, _ = world.propose(honest, CHUNKS, state_root=root)
    fake.claims[-1] = compute_claim(root, honest.end.ctx)
    return index, known(fake)


def game_view(world: World, game: int):
    return world.games.game(game)


def eth_owed(world: World, who: str) -> int:
    return world.client.eth_owed(who)


# --- the two honest outcomes ------------------------------------------------------------

def test_honest_proposer_beats_a_wrong_challenger_and_is_paid(world, honest):
    output, _ = world.propose(honest, CHUNKS)
    proposer, liar = world.player(world.proposer), world.player(world.others[0])
    game = world.challenge(world.others[0], output, known(honest))
    assert not world.is_final(output) and world.bridge.functions.held_from().call() == output
    status = world.play_to_end(game, (liar, known(FakeTrace(honest, 9))), (proposer, known(honest)))
    assert status == PROPOSER_WON
    g = game_view(world, game)
    assert g.hi - g.lo == 1 and world.bridge.functions.output_count().call() == output + 1
    choices = sum(1 for name, _ in liar.gas if name == "choose")
    assert world.games.owed(world.proposer) >= CHALLENGE_BOND + choices * MOVE_BOND
    assert world.games.owed(world.others[0]) == 0 and eth_owed(world, world.others[0]) == 0
    assert world.bridge.functions.held_from().call() == 0
    world.travel(PERIOD)
    assert world.is_final(output) and world.client.last_final_output() == output
    before = world.w3.eth.get_balance(world.proposer)
    transact(world.w3, world.dispute.functions.withdraw(), world.proposer)
    assert world.w3.eth.get_balance(world.proposer) > before + CHALLENGE_BOND // 2


def test_wrong_proposer_loses_its_output_and_the_later_ones_and_goes_on_honestly(world, honest):
    bad, liar = propose_liar(world, honest, len(ITEMS))
    later_items = [i for m in fv.make_trace_messages(2)[3:] for i in compute_block_items(m)]
    later_trace = LocalTrace(honest.end.copy(), later_items)
    later, _ = world.propose(later_trace, chunks_of(later_items))  # on top of the wrong one
    assert world.client.output_count() == 3
    challenger = world.others[0]
    game = world.challenge(challenger, bad, known(honest))
    status = world.play_to_end(game, (world.player(challenger), known(honest)), (world.player(world.proposer), liar))
    assert status == CHALLENGER_WON
    assert game_view(world, game).lo == len(ITEMS) - 1  # the last item
    assert world.client.output_count() == bad  # the wrong output and the one after it are gone
    assert eth_owed(world, challenger) == PROPOSER_BOND  # the slashed proposer bond, on the bridge
    assert world.games.owed(challenger) >= CHALLENGE_BOND
    assert world.bridge.functions.held_from().call() == 0
    # the proposer goes on: the honest output at the same index, then the later one
    again, _ = world.propose(honest, CHUNKS)
    assert again == bad
    world.propose(later_trace, chunks_of(later_items))
    world.travel(PERIOD)
    assert world.is_final(again) and world.is_final(again + 1)
    before = world.w3.eth.get_balance(challenger)
    transact(world.w3, world.bridge.functions.withdrawEth(), challenger)
    transact(world.w3, world.dispute.functions.withdraw(), challenger)
    assert world.w3.eth.get_balance(challenger) > before + PROPOSER_BOND + CHALLENGE_BOND // 2


@pytest.mark.parametrize("wrong_from", range(1, len(ITEMS) + 1))
def test_a_wrong_claim_at_every_position_is_found(world, honest, wrong_from):
    """The proposer lies from position `wrong_from` on (the first and the last
    item included): the game ends on item wrong_from - 1, the challenger wins."""
    output, liar = propose_liar(world, honest, wrong_from)
    challenger = world.others[1]
    game = world.challenge(challenger, output, known(honest))
    status = world.play_to_end(game, (world.player(challenger), known(honest)), (world.player(world.proposer), liar))
    assert status == CHALLENGER_WON
    g = game_view(world, game)
    assert (g.lo, g.hi) == (wrong_from - 1, wrong_from)


@pytest.mark.parametrize("wrong_from", [1, 2, 9, len(ITEMS)])
def test_a_challenger_lying_at_any_position_loses(world, honest, wrong_from):
    output, _ = world.propose(honest, CHUNKS)
    liar = world.others[0]
    game = world.challenge(liar, output, known(honest))
    status = world.play_to_end(game, (world.player(liar), known(FakeTrace(honest, wrong_from))),
                               (world.player(world.proposer), known(honest)))
    assert status == PROPOSER_WON and world.client.output_count() == output + 1


# --- several parties ---------------------------------------------------------------------

def test_several_challengers_wrong_and_right_against_a_wrong_proposer(world, honest):
    output, liar = propose_liar(world, honest, 5)
    griefer, good, late = world.others[:3]
    games = [world.challenge(who, output, known(honest)) for who in (griefer, good, late)]
    epoch = world.bridge.functions.outputEpoch(output).call()
    assert world.dispute.functions.open_games(output | epoch << 64).call() == 3
    status = world.play_to_end(games[1], (world.player(good), known(honest)), (world.player(world.proposer), liar))
    assert status == CHALLENGER_WON and eth_owed(world, good) == PROPOSER_BOND
    for game, who in ((games[0], griefer), (games[2], late)):  # the output is proven wrong: the others end
        transact(world.w3, world.dispute.functions.moot(game), world.others[4])
        assert game_view(world, game).status == MOOT
        assert world.games.owed(who) == CHALLENGE_BOND and eth_owed(world, who) == 0
    assert world.dispute.functions.open_games(output | epoch << 64).call() == 0


def test_several_wrong_challengers_cannot_stop_an_honest_output(world, honest):
    output, _ = world.propose(honest, CHUNKS)
    proposer = (world.player(world.proposer), known(honest))
    liars = [(who, FakeTrace(honest, k)) for who, k in zip(world.others, (1, 11, 18))]
    games = [world.challenge(who, output, known(honest)) for who, _ in liars]
    with pytest.raises(L1Reverted, match="output not proven wrong"):  # an honest output's games are not moot
        world.games.moot(Signer.of(world.others[5]), games[0])
    for game, (who, trace) in zip(games, liars):
        assert world.play_to_end(game, (world.player(who), known(trace)), proposer) == PROPOSER_WON
    assert world.games.owed(world.proposer) >= 3 * CHALLENGE_BOND
    world.travel(PERIOD)
    assert world.is_final(output)
    with pytest.raises(L1Reverted, match="challenge period over"):  # no games after the period
        world.challenge(world.others[0], output, known(honest))


def test_an_open_game_holds_its_output_and_every_later_one(world, honest):
    first, _ = world.propose(honest, CHUNKS)
    later_items = [i for m in fv.make_trace_messages(1)[3:] for i in compute_block_items(m)]
    later_trace = LocalTrace(honest.end.copy(), later_items)
    second, _ = world.propose(later_trace, chunks_of(later_items))
    griefer = world.others[0]
    game = world.challenge(griefer, first, known(honest))  # then never plays on
    proposer = world.player(world.proposer)
    assert proposer.play(game, known(honest)) and proposer.play(game, known(honest))  # reveal, bisect
    world.travel(PERIOD)
    assert not world.is_final(first) and not world.is_final(second)
    assert world.client.last_final_output() == 0
    with pytest.raises(L1Reverted, match="outputs still in their challenge period"):
        world.client.send("withdrawBond", world.bridge.functions.withdrawBond(1), world.proposer)
    world.travel(CLOCK)
    world.games.timeout(Signer.of(world.others[3]), game)  # the challenger never answered the bisection
    assert game_view(world, game).status == PROPOSER_WON
    assert world.is_final(first) and world.is_final(second) and world.client.last_final_output() == second


# --- timeouts ------------------------------------------------------------------------------

def test_a_proposer_who_does_not_reveal_or_bisect_loses_by_timeout(world, honest):
    output, _ = world.propose(honest, CHUNKS)
    challenger = world.others[0]
    game = world.challenge(challenger, output, known(honest))
    assert game_view(world, game).phase == 2  # REVEALING: one chunk loaded in the challenge itself
    with pytest.raises(L1Reverted, match="time left"):
        world.games.timeout(Signer.of(world.others[2]), game)
    world.travel(CLOCK)
    world.games.timeout(Signer.of(world.others[2]), game)
    assert game_view(world, game).status == CHALLENGER_WON
    assert world.client.output_count() == output and eth_owed(world, challenger) == PROPOSER_BOND


def test_a_challenger_who_stops_loses_by_timeout_and_late_moves_are_refused(world, honest):
    output, _ = world.propose(honest, CHUNKS)
    challenger = world.player(world.others[0])
    game = world.challenge(world.others[0], output, known(honest))
    proposer = world.player(world.proposer)
    assert proposer.play(game, known(honest)) and proposer.play(game, known(honest))  # reveal, bisect
    world.travel(CLOCK)
    with pytest.raises(L1Reverted, match="out of time"):
        challenger.play(game, known(honest))  # its choice comes too late
    world.games.timeout(Signer.of(world.others[2]), game)
    assert game_view(world, game).status == PROPOSER_WON


def test_a_challenger_who_does_not_load_the_data_loses(world, honest):
    """An output in three chunks; the challenger loads one and stops (or loads
    chunks that are not the posted ones: the chain never meets data_hash)."""
    chunks = chunks_of(ITEMS, 700)
    assert len(chunks) == 3
    output, _ = world.propose(honest, chunks)
    who = world.others[0]
    game = world.challenge(who, output, known(honest, chunks))
    world.games.load(Signer.of(who), game, encode_data(ITEMS[:2]))  # not the posted second chunk
    assert game_view(world, game).phase == 1  # still loading: the chain is not the output's
    assert world.dispute.functions.loadedItems(game).call() == len(decode_data(chunks[0])) + 2
    world.travel(CLOCK)
    with pytest.raises(L1Reverted, match="out of time"):
        world.games.load(Signer.of(who), game, chunks[1])
    world.games.timeout(Signer.of(world.others[2]), game)
    assert game_view(world, game).status == PROPOSER_WON and world.client.output_count() == output + 1


def test_clocks_are_charged_per_side_and_extended_near_the_end(world, honest):
    output, _ = world.propose(honest, CHUNKS)
    proposer, challenger = world.player(world.proposer), world.player(world.others[0])
    game = world.challenge(world.others[0], output, known(honest))
    assert proposer.play(game, known(honest))  # reveal
    world.travel(CLOCK - 30)
    proposer.play(game, known(honest))  # bisect: the proposer used ~CLOCK - 29 s, below the extension
    p, c = world.games.clocks(game)
    assert c == CLOCK and p < EXTENSION
    challenger.play(game, known(honest))  # the proposer's turn again: raised to EXTENSION
    assert world.games.clocks(game)[0] == EXTENSION
    world.travel(EXTENSION // 2)
    assert proposer.play(game, known(honest))  # still in time thanks to the extension
    assert game_view(world, game).depth == 3


# --- chunked derivation --------------------------------------------------------------------

def test_an_output_above_one_batch_is_posted_and_derived_in_chunks(world):
    """600 more blocks: ~1,800 items, 131 KB of items, two 120,000-byte chunks.
    The challenger loads them in two transactions (the frontier kept in
    storage between them) and wins against a root that is wrong at the end."""
    items = make_items(600)
    chunks = chunks_of(items)
    assert len(chunks) == 2 and sum(len(c) for c in chunks) > 120_000
    trace = make_trace(items)
    root = keccak(b"wrong" + trace.end.state_root)
    output, _ = world.propose(trace, chunks, state_root=root)
    assert world.client.output_chunks(world.client.live_outputs()[output]) == chunks
    who = world.others[0]
    game = world.challenge(who, output, known(trace, chunks))
    assert game_view(world, game).phase == 1
    assert world.dispute.functions.loadedItems(game).call() == len(decode_data(chunks[0]))
    receipt = world.games.load(Signer.of(who), game, chunks[1])
    assert receipt["gasUsed"] < 30_000_000
    g = game_view(world, game)
    assert g.phase == 2 and g.count == len(items) and g.records_root == compute_records_root(items)
    fake = FakeTrace(trace, len(items))
    fake.claims[-1] = compute_claim(root, trace.end.ctx)
    status = world.play_to_end(game, (world.player(who), known(trace, chunks)),
                               (world.player(world.proposer), known(fake, chunks)))
    assert status == CHALLENGER_WON and game_view(world, game).lo == len(items) - 1


def test_chunks_must_be_posted_in_order_for_the_output_being_proposed(world, honest):
    chunks = chunks_of(ITEMS, 700)
    index = world.client.output_count()
    with pytest.raises(L1Reverted, match="wrong chunk index"):
        world.client.post_data(world.proposer, index, 1, chunks[1])
    with pytest.raises(L1Reverted, match="wrong output index"):
        world.client.post_data(world.proposer, index + 1, 0, chunks[0])
    with pytest.raises(L1Reverted, match="only the proposer"):
        world.client.post_data(world.others[0], index, 0, chunks[0])
    world.client.post_data(world.proposer, index, 0, chunks[0])
    with pytest.raises(L1Reverted, match="chunks not posted"):  # claims 2 prior chunks, 1 was posted
        world.client.propose(world.proposer, index, 3, world.genesis, chunks[2], 0, 2)
    # a crash and a restart: chunk 0 starts over
    index2, fields = world.propose(honest, chunks)
    assert index2 == index and world.client.output_chunks(world.client.live_outputs()[index]) == chunks


# --- data and consistency ----------------------------------------------------------------------

def test_data_that_does_not_parse_loses_at_once(world, honest):
    bad = [CHUNKS[0] + b"\x00"]  # a frame header that runs past the end
    output, _ = world.propose(honest, bad)
    who = world.others[0]
    game = world.challenge(who, output, known(honest, bad))
    assert game_view(world, game).status == CHALLENGER_WON
    assert world.client.output_count() == output and eth_owed(world, who) == PROPOSER_BOND


def test_a_frame_split_across_two_chunks_does_not_parse(world, honest):
    data = encode_data(ITEMS)
    chunks = [data[:101], data[101:]]  # a proposer that cuts inside a frame
    output, _ = world.propose(honest, chunks)
    who = world.others[0]
    game = world.challenge(who, output, known(honest, chunks))
    assert game_view(world, game).status == ACTIVE and game_view(world, game).malformed
    world.games.load(Signer.of(who), game, chunks[1])
    assert game_view(world, game).status == CHALLENGER_WON


def test_a_challenge_needs_the_outputs_fields_a_bond_and_a_pending_output(world, honest):
    output, fields = world.propose(honest, CHUNKS)
    who = Signer.of(world.others[0])
    other = fields._replace(state_root=keccak(b"x"))
    with pytest.raises(L1Reverted, match="not the output"):
        world.games.challenge(who, output, other, world.genesis, CHUNKS[0], CHALLENGE_BOND)
    with pytest.raises(L1Reverted, match="not the previous output"):
        world.games.challenge(who, output, fields, other, CHUNKS[0], CHALLENGE_BOND)
    with pytest.raises(L1Reverted, match="bond"):
        world.games.challenge(who, output, fields, world.genesis, CHUNKS[0], CHALLENGE_BOND - 1)
    with pytest.raises(L1Reverted, match="genesis"):
        world.games.challenge(who, 0, world.genesis, world.genesis, b"", CHALLENGE_BOND)
    with pytest.raises(L1Reverted, match="only the dispute contract"):  # the hooks are the games' alone
        world.client.send("hold", world.bridge.functions.hold(1), world.others[0])
    with pytest.raises(L1Reverted, match="only the dispute contract"):
        world.client.send("slash", world.bridge.functions.slash(1, 0, world.others[0]), world.others[0])


def test_the_end_is_the_proposers_own_and_must_give_the_withdrawals_root(world, honest):
    output, _ = world.propose(honest, CHUNKS)
    who = world.others[0]
    game = world.challenge(who, output, known(honest))
    with pytest.raises(L1Reverted, match="not your turn"):  # a challenger cannot pick the end
        world.games.reveal(Signer.of(who), game, honest.end.ctx.as_arg())
    with pytest.raises(L1Reverted, match="withdrawals root"):
        world.games.reveal(Signer.of(world.proposer), game, TraceContext().as_arg())
    inside = TraceContext(block_open=1, withdrawals=honest.end.ctx.withdrawals)
    with pytest.raises(L1Reverted, match="end inside a block"):
        world.games.reveal(Signer.of(world.proposer), game, inside.as_arg())
    world.games.reveal(Signer.of(world.proposer), game, honest.end.ctx.as_arg())
    assert game_view(world, game).phase == 3


def test_a_step_must_open_the_disputed_item_from_the_agreed_position(world, honest):
    output, liar = propose_liar(world, honest, 7)
    who = world.others[0]
    game = world.challenge(who, output, known(honest))
    challenger, proposer = world.player(who), world.player(world.proposer)
    while game_view(world, game).phase != 3 or game_view(world, game).hi - game_view(world, game).lo > 1:
        assert proposer.play(game, liar) or challenger.play(game, known(honest))
    g = game_view(world, game)
    assert (g.lo, g.hi) == (6, 7)
    with pytest.raises(L1Reverted):  # another item and position
        world.games.step(Signer.of(who), game, honest.step_args(5))
    args = list(honest.step_args(6))
    args[2] = honest.items[5]  # the right position, another item
    with pytest.raises(L1Reverted):  # not the item at lo
        world.games.step(Signer.of(who), game, tuple(args))
    assert challenger.play(game, known(honest)) and game_view(world, game).status == CHALLENGER_WON
    with pytest.raises(L1Reverted):  # a won game cannot be played (or paid) again
        world.games.step(Signer.of(who), game, honest.step_args(6))
    with pytest.raises(L1Reverted, match="game over"):
        world.games.timeout(Signer.of(who), game)


def test_a_consistency_proof_wins_at_once(world, honest):
    """An output whose block hash is not the one its own state root holds."""
    output, fields = world.propose(honest, CHUNKS, last_block_hash=keccak(b"another block"))
    tree = honest.end.tree
    p = tree.prove(GLOBAL_KEY)
    proof = (p.bitmap, list(p.siblings), p.other_key or b"\x00" * 32, p.other_value_hash or b"\x00" * 32)
    prover_ = world.others[2]
    args = (output, fields.as_arg(), world.genesis.as_arg(), tree.get(GLOBAL_KEY), proof)
    with pytest.raises(L1Reverted, match="bad globals proof"):
        world.client.send("prove", world.dispute.functions.proveInconsistent(
            output, fields.as_arg(), world.genesis.as_arg(), tree.get(GLOBAL_KEY)[:-1] + b"\x01", proof), prover_)
    world.client.send("prove", world.dispute.functions.proveInconsistent(*args), prover_)
    assert world.client.output_count() == output and eth_owed(world, prover_) == PROPOSER_BOND


def test_a_consistent_output_cannot_be_proven_inconsistent(world, honest):
    output, fields = world.propose(honest, CHUNKS)
    tree = honest.end.tree
    p = tree.prove(GLOBAL_KEY)
    proof = (p.bitmap, list(p.siblings), p.other_key or b"\x00" * 32, p.other_value_hash or b"\x00" * 32)
    with pytest.raises(L1Reverted, match="consistent"):
        world.client.send("prove", world.dispute.functions.proveInconsistent(
            output, fields.as_arg(), world.genesis.as_arg(), tree.get(GLOBAL_KEY), proof), world.others[2])
    assert world.client.output_count() == output + 1


# --- the guardian ------------------------------------------------------------------------------

def test_the_guardian_may_delete_but_pays_nobody_and_a_game_on_a_deleted_output_is_moot(world, honest):
    output, _ = propose_liar(world, honest, len(ITEMS))
    who = world.others[0]
    game = world.challenge(who, output, known(honest))
    paid = game_view(world, game).challenger_paid
    bond = world.client.bond()
    with pytest.raises(L1Reverted, match="only the guardian"):
        world.client.delete_outputs(world.others[1], output)
    world.client.delete_outputs(world.guardian, output)  # the circuit breaker
    assert world.client.output_count() == output and world.client.bond() == bond
    assert eth_owed(world, world.guardian) == 0 and world.bridge.functions.held_from().call() == 0
    world.games.moot(Signer.of(world.others[1]), game)  # anyone ends it: both bonds go back, nobody is slashed
    assert game_view(world, game).status == MOOT and world.games.owed(who) == paid
    assert world.client.bond() == bond and eth_owed(world, who) == 0
    again, _ = world.propose(honest, CHUNKS)  # the honest output, not touched by the old game
    assert again == output and world.client.output_count() == output + 1
    world.travel(PERIOD)
    assert world.is_final(again)
    with pytest.raises(L1Reverted, match="output already final"):  # and never a final one
        world.client.delete_outputs(world.guardian, again)


def test_an_honest_output_deleted_by_the_guardian_mid_game_never_pays_a_bogus_challenger(world, honest):
    """A guardian that deletes an honest output while a bogus game runs on it
    (its proposer can no longer answer from the live outputs) must not hand
    the proposer's bond to the challenger by the clock."""
    output, _ = world.propose(honest, CHUNKS)
    bogus = world.others[0]
    game = world.challenge(bogus, output, known(honest))
    paid = game_view(world, game).challenger_paid
    bond = world.client.bond()
    world.client.delete_outputs(world.guardian, output)
    world.travel(CLOCK)  # the proposer never answers
    world.games.timeout(Signer.of(bogus), game)
    assert game_view(world, game).status == MOOT
    assert world.client.bond() == bond and eth_owed(world, bogus) == 0  # no slashed bond
    assert world.games.owed(bogus) == paid  # only its own bond back
