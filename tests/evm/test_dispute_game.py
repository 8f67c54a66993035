"""dispute.vy on py-evm with onestep.vy: the bisection game played by
l1_bridge.dispute.GamePlayer from local replays of a real output (three
blocks of transfers, withdrawals, deposits, forced withdrawals and refused
records: 18 items). Honest and wrong proposers against honest and wrong
challengers, a wrong claim at every position, disputes over the first and
the last item, timeouts on each side, several challengers at once, bonds."""
from __future__ import annotations

import pytest

from l1_bridge.deploy import transact
from l1_bridge.dispute import (ACTIVE, CHALLENGER_WON, MOOT, PROPOSER_WON, GamePlayer, LocalTrace, read_game)
from prover import fraud_vectors as fv
from prover.hashing import keccak
from prover.records import compute_block_items, encode_data
from prover.hashing import EMPTY
from prover.trace import TraceContext, TraceRunner, compute_claim

pytestmark = pytest.mark.evm

PERIOD, CLOCK, EXTENSION = 3600, 600, 60
PROPOSER_BOND, CHALLENGE_BOND, MOVE_BOND = 10**18, 10**17, 10**15
ITEMS = [item for message in fv.make_trace_messages() for item in compute_block_items(message)]
DATA = encode_data(ITEMS)


class FakeTrace(LocalTrace):
    """A replay whose claims are wrong from position `wrong_from` on (a lying
    party): its witnesses are still the real ones, so its steps prove the truth."""

    def __init__(self, honest: LocalTrace, wrong_from: int) -> None:
        self.__dict__.update(honest.__dict__)
        self.claims = honest.claims[:wrong_from] + [keccak(b"lie" + c) for c in honest.claims[wrong_from:]]


@pytest.fixture(scope="module")
def honest():
    return LocalTrace(TraceRunner(fv.make_trace_genesis(), fv.RULES), ITEMS)


@pytest.fixture(scope="module")
def contracts(deploy, w3, honest):
    onestep = deploy("onestep", *fv.ONESTEP_PARAMS, deploy("onestep_perps", *fv.PERPS_PARAMS).address)
    genesis_root = TraceRunner(fv.make_trace_genesis(), fv.RULES).state_root
    dispute = deploy("dispute", onestep.address, w3.eth.accounts[0], genesis_root, PERIOD, CLOCK, EXTENSION,
                     PROPOSER_BOND, CHALLENGE_BOND, MOVE_BOND)
    return onestep, dispute


@pytest.fixture
def env(evm_chain, contracts):
    w3, tester = evm_chain
    snapshot = tester.take_snapshot()
    yield w3, tester, contracts[1]
    tester.revert_to_snapshot(snapshot)


def travel(w3, tester, seconds: int) -> None:
    tester.time_travel(w3.eth.get_block("latest")["timestamp"] + seconds + 1)


def propose(w3, dispute, trace: LocalTrace) -> int:
    end = trace.end
    proposer = GamePlayer(w3, dispute, w3.eth.accounts[0], trace)
    end_claim = trace.claims[-1]
    state_root = end.state_root
    if end_claim != compute_claim(end.state_root, end.ctx):  # a liar proposes a root whose claim is its own
        state_root = keccak(b"wrong state root")
        trace.claims[-1] = compute_claim(state_root, end.ctx)
    return proposer.propose(state_root, end.ctx.as_arg(), end.ctx.withdrawals.root(), keccak(DATA))


def play(w3, dispute, proposer_trace: LocalTrace, challenger_trace: LocalTrace, challenger: int = 1):
    output = propose(w3, dispute, proposer_trace)
    proposer = GamePlayer(w3, dispute, w3.eth.accounts[0], proposer_trace)
    player = GamePlayer(w3, dispute, w3.eth.accounts[challenger], challenger_trace)
    game = player.challenge(output, DATA)
    return output, game, proposer, player, player.play_to_end(game, proposer.play)


def balances(w3, dispute, who: int) -> int:
    return dispute.functions.owed(w3.eth.accounts[who]).call()


def test_honest_proposer_beats_a_wrong_challenger_and_is_paid(env, honest):
    w3, _, dispute = env
    output, game, proposer, challenger, status = play(w3, dispute, honest, FakeTrace(honest, 9))
    assert status == PROPOSER_WON
    g = read_game(dispute, game)
    assert g.hi - g.lo == 1 and dispute.functions.outputs(output).call()[8] is False
    paid = sum(1 for name, _ in challenger.gas if name == "choose")
    assert balances(w3, dispute, 0) >= CHALLENGE_BOND + paid * MOVE_BOND
    assert balances(w3, dispute, 1) == 0
    travel(*env[:2], PERIOD)
    transact(w3, dispute.functions.settle(output), w3.eth.accounts[5])
    assert dispute.functions.isFinal(output).call()


def test_wrong_proposer_loses_to_an_honest_challenger(env, honest):
    w3, _, dispute = env
    output, game, _, challenger, status = play(w3, dispute, FakeTrace(honest, len(ITEMS)), honest)
    assert status == CHALLENGER_WON
    assert read_game(dispute, game).lo == len(ITEMS) - 1  # the last item
    assert dispute.functions.outputs(output).call()[8] is True and dispute.functions.last_live().call() == 0
    assert balances(w3, dispute, 1) >= PROPOSER_BOND + CHALLENGE_BOND
    before = w3.eth.get_balance(w3.eth.accounts[1])
    transact(w3, dispute.functions.withdraw(), w3.eth.accounts[1])
    assert w3.eth.get_balance(w3.eth.accounts[1]) > before + PROPOSER_BOND
    travel(*env[:2], PERIOD)
    with pytest.raises(Exception):
        transact(w3, dispute.functions.settle(output), w3.eth.accounts[5])
    assert not dispute.functions.isFinal(output).call()


@pytest.mark.parametrize("wrong_from", range(1, len(ITEMS) + 1))
def test_a_wrong_claim_at_every_position_is_found(env, honest, wrong_from):
    """The proposer lies from position `wrong_from`: the game ends on item
    wrong_from - 1 (the first and the last item included) and the challenger wins."""
    w3, _, dispute = env
    _, game, _, _, status = play(w3, dispute, FakeTrace(honest, wrong_from), honest)
    assert status == CHALLENGER_WON
    g = read_game(dispute, game)
    assert (g.lo, g.hi) == (wrong_from - 1, wrong_from)


@pytest.mark.parametrize("wrong_from", [1, 2, 9, len(ITEMS)])
def test_a_challenger_lying_at_any_position_loses(env, honest, wrong_from):
    w3, _, dispute = env
    _, _, _, _, status = play(w3, dispute, honest, FakeTrace(honest, wrong_from))
    assert status == PROPOSER_WON


def test_a_proposer_who_stops_answering_loses_by_timeout(env, honest):
    w3, tester, dispute = env
    output = propose(w3, dispute, honest)
    challenger = GamePlayer(w3, dispute, w3.eth.accounts[1], honest)
    game = challenger.challenge(output, DATA)
    with pytest.raises(Exception):
        transact(w3, dispute.functions.timeout(game), w3.eth.accounts[2])  # time left
    travel(w3, tester, CLOCK)
    transact(w3, dispute.functions.timeout(game), w3.eth.accounts[2])
    assert read_game(dispute, game).status == CHALLENGER_WON
    assert dispute.functions.outputs(output).call()[8] is True


def test_a_challenger_who_stops_loses_by_timeout_and_late_moves_are_refused(env, honest):
    w3, tester, dispute = env
    output = propose(w3, dispute, honest)
    proposer = GamePlayer(w3, dispute, w3.eth.accounts[0], honest)
    challenger = GamePlayer(w3, dispute, w3.eth.accounts[1], honest)
    game = challenger.challenge(output, DATA)
    assert proposer.play(game)  # bisect
    travel(w3, tester, CLOCK)
    with pytest.raises(Exception):
        challenger.play(game)  # out of time
    transact(w3, dispute.functions.timeout(game), w3.eth.accounts[2])
    assert read_game(dispute, game).status == PROPOSER_WON


def test_clocks_are_charged_per_side_and_extended_near_the_end(env, honest):
    w3, tester, dispute = env
    output = propose(w3, dispute, honest)
    proposer = GamePlayer(w3, dispute, w3.eth.accounts[0], honest)
    challenger = GamePlayer(w3, dispute, w3.eth.accounts[1], honest)
    game = challenger.challenge(output, DATA)
    travel(w3, tester, CLOCK - 30)
    proposer.play(game)  # the proposer used ~CLOCK - 29 s: below the extension
    p, c = dispute.functions.clocks(game).call()
    assert c == CLOCK and p < EXTENSION
    challenger.play(game)  # the proposer's turn again: raised to EXTENSION
    p, _ = dispute.functions.clocks(game).call()
    assert p == EXTENSION
    travel(w3, tester, EXTENSION // 2)
    proposer.play(game)  # still in time thanks to the extension
    assert read_game(dispute, game).depth == 3


def test_several_challengers_wrong_and_right_against_a_wrong_proposer(env, honest):
    w3, tester, dispute = env
    liar = FakeTrace(honest, 5)
    output = propose(w3, dispute, liar)
    proposer = GamePlayer(w3, dispute, w3.eth.accounts[0], liar)
    griefer = GamePlayer(w3, dispute, w3.eth.accounts[1], FakeTrace(honest, 3))
    good = GamePlayer(w3, dispute, w3.eth.accounts[2], honest)
    late = GamePlayer(w3, dispute, w3.eth.accounts[3], honest)
    games = [griefer.challenge(output, DATA), good.challenge(output, DATA), late.challenge(output, DATA)]
    assert dispute.functions.outputs(output).call()[7] == 3
    assert good.play_to_end(games[1], proposer.play) == CHALLENGER_WON
    assert balances(w3, dispute, 2) >= PROPOSER_BOND + CHALLENGE_BOND
    for game in (games[0], games[2]):  # the output is gone: the other games end, bonds back
        transact(w3, dispute.functions.moot(game), w3.eth.accounts[4])
        assert read_game(dispute, game).status == MOOT
    assert balances(w3, dispute, 1) == CHALLENGE_BOND and balances(w3, dispute, 3) == CHALLENGE_BOND
    assert dispute.functions.outputs(output).call()[7] == 0


def test_several_wrong_challengers_cannot_stop_an_honest_output(env, honest):
    w3, tester, dispute = env
    output = propose(w3, dispute, honest)
    proposer = GamePlayer(w3, dispute, w3.eth.accounts[0], honest)
    liars = [GamePlayer(w3, dispute, w3.eth.accounts[i], FakeTrace(honest, k)) for i, k in ((1, 1), (2, 11), (3, 18))]
    games = [liar.challenge(output, DATA) for liar in liars]
    assert [liar.play_to_end(game, proposer.play) for liar, game in zip(liars, games)] == [PROPOSER_WON] * 3
    assert balances(w3, dispute, 0) >= 3 * CHALLENGE_BOND
    travel(w3, tester, PERIOD)
    transact(w3, dispute.functions.settle(output), w3.eth.accounts[5])
    assert dispute.functions.isFinal(output).call()
    with pytest.raises(Exception):
        liars[0].challenge(output, DATA)  # the challenge period is over


def test_challenges_need_the_data_and_a_bond_and_bad_data_loses(env, honest):
    w3, _, dispute = env
    output = propose(w3, dispute, honest)
    challenger = GamePlayer(w3, dispute, w3.eth.accounts[1], honest)
    with pytest.raises(Exception):
        challenger.challenge(output, DATA[:-1])  # not the posted data
    with pytest.raises(Exception):
        transact(w3, dispute.functions.challenge(output, DATA), w3.eth.accounts[1], value=CHALLENGE_BOND - 1)
    # an output whose posted data is not a stream of items is wrong by itself
    bad = DATA + b"\x00"
    end = honest.end
    index = GamePlayer(w3, dispute, w3.eth.accounts[0], honest).propose(
        end.state_root, end.ctx.as_arg(), end.ctx.withdrawals.root(), keccak(bad))
    game = challenger.challenge(index, bad)
    assert read_game(dispute, game).status == CHALLENGER_WON


def test_a_step_must_open_the_disputed_item_from_the_agreed_position(env, honest):
    w3, _, dispute = env
    liar = FakeTrace(honest, 7)
    output = propose(w3, dispute, liar)
    proposer = GamePlayer(w3, dispute, w3.eth.accounts[0], liar)
    challenger = GamePlayer(w3, dispute, w3.eth.accounts[1], honest)
    game = challenger.challenge(output, DATA)
    while read_game(dispute, game).hi - read_game(dispute, game).lo > 1:
        proposer.play(game) or challenger.play(game)
    g = read_game(dispute, game)
    assert (g.lo, g.hi) == (6, 7)
    other = honest.step_args(5)  # another item and position
    with pytest.raises(Exception):
        transact(w3, dispute.functions.step(game, *other), w3.eth.accounts[1])
    args = list(honest.step_args(6))
    args[2] = honest.items[5]  # the right position, another item
    with pytest.raises(Exception):
        transact(w3, dispute.functions.step(game, *args), w3.eth.accounts[1])
    assert challenger.play(game) and read_game(dispute, game).status == CHALLENGER_WON


def test_after_a_deletion_the_next_output_follows_the_last_live_one_and_old_games_stay_apart(env, honest):
    w3, tester, dispute = env
    liar = FakeTrace(honest, 4)
    bad = propose(w3, dispute, liar)
    proposer = GamePlayer(w3, dispute, w3.eth.accounts[0], liar)
    good = GamePlayer(w3, dispute, w3.eth.accounts[1], honest)
    stale = GamePlayer(w3, dispute, w3.eth.accounts[2], honest)
    won, pending = good.challenge(bad, DATA), stale.challenge(bad, DATA)
    assert good.play_to_end(won, proposer.play) == CHALLENGER_WON
    assert dispute.functions.last_live().call() == 0
    again = propose(w3, dispute, honest)  # the honest root, from genesis again
    assert again == bad + 1 and dispute.functions.outputs(again).call()[9] == 0
    assert dispute.functions.outputs(again).call()[2] == honest.claims[0]
    transact(w3, dispute.functions.moot(pending), w3.eth.accounts[3])  # the old game ends on its own output
    assert balances(w3, dispute, 2) == CHALLENGE_BOND
    out = dispute.functions.outputs(again).call()
    assert out[5] == PROPOSER_BOND and out[7] == 0 and out[8] is False
    travel(w3, tester, PERIOD)
    with pytest.raises(Exception):
        transact(w3, dispute.functions.settle(bad), w3.eth.accounts[5])
    transact(w3, dispute.functions.settle(again), w3.eth.accounts[5])
    assert dispute.functions.isFinal(again).call() and not dispute.functions.isFinal(bad).call()


def test_an_open_game_on_an_earlier_output_holds_the_later_ones(env, honest):
    w3, tester, dispute = env
    first = propose(w3, dispute, honest)
    challenger = GamePlayer(w3, dispute, w3.eth.accounts[1], FakeTrace(honest, 3))
    game = challenger.challenge(first, DATA)
    end = honest.end
    second = GamePlayer(w3, dispute, w3.eth.accounts[0], honest).propose(
        end.state_root, TraceContext().as_arg(), EMPTY, keccak(b""))  # an empty output after it
    assert GamePlayer(w3, dispute, w3.eth.accounts[0], honest).play(game)  # bisect: the challenger's turn
    travel(w3, tester, PERIOD)
    for index in (first, second):
        with pytest.raises(Exception):
            transact(w3, dispute.functions.settle(index), w3.eth.accounts[5])
    transact(w3, dispute.functions.timeout(game), w3.eth.accounts[5])  # the challenger never answered
    assert read_game(dispute, game).status == PROPOSER_WON
    transact(w3, dispute.functions.settle(first), w3.eth.accounts[5])
    transact(w3, dispute.functions.settle(second), w3.eth.accounts[5])
    assert dispute.functions.isFinal(first).call() and dispute.functions.isFinal(second).call()
