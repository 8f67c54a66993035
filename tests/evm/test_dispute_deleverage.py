"""A dispute game that ends on a Deleverage record (rules v3, py-evm).

The trading session of test_onestep_session (a real exchange: signed orders
matched by the block builder, oracle prices; an ETH long gone bankrupt with
no bid in the book, so the engine writes a Deleverage naming the profitable
short, the insurance fund paying the bad debt) becomes blocks, the blocks one
output proposed through the bridge (genesis: the session's own state), and
games are played on it by l1_bridge.dispute.GamePlayer. The wrong claim comes
first right after the Deleverage, so the bisection ends on that item and
dispute.vy's step re-executes it for real: dispute -> onestep -> onestep_ladder.
An honest challenger wins against the wrong output (deleted, the proposer
bond slashed); a challenger lying from the same position loses against the
honest output. The same session with the L1 inbox's forced close of bob's BTC
short (requested on the bridge) leaves the fund holding it; the games there end
on the Deleverage that names the fund's own short (its position read and
written, no account). The gas of the step transaction is printed
(docs/fraud-proofs.md).
"""
from __future__ import annotations

import pytest
from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3

from bridge_env import MARKETS
from game_env import ANVIL_KEY, BRIDGE_ADDRESS, PRESET, PROPOSER_BOND, FakeTrace, World, chunks_of
from l1_bridge.client import BridgeClient
from l1_bridge.deploy import deploy, load_artifact
from l1_bridge.dispute import CHALLENGER_WON, PROPOSER_WON, STEP_GAS, GameContract, LocalTrace
from prover.hashing import EMPTY
from prover.records import compute_block_items, decode_replay_item
from prover.trace import TraceRunner, compute_claim
from sequencer.core.records import Deleverage
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.executor.output import OutputFields
from test_dispute_game import known, liar_root
from test_onestep_session import get_blocks, run_session
from unit.perps_support import ADDR, BTC, ETH, KEYS

pytestmark = pytest.mark.evm


def get_session(forced_close: bool, named) -> tuple:
    """The session's items, its genesis and rules, and the position of its
    first Deleverage whose counterparties satisfy ``named``."""
    sim = run_session(forced_close=forced_close)
    items = [item for message in get_blocks(sim) for item in compute_block_items(message)]
    at = next(i for i, item in enumerate(items)
              if isinstance(record := decode_replay_item(item), Deleverage) and named(record.counterparties))
    return sim, items, at


@pytest.fixture(scope="module")
def session():
    return get_session(False, lambda named: True)


@pytest.fixture(scope="module")
def honest(session) -> LocalTrace:
    sim, items, _ = session
    return LocalTrace(TraceRunner(sim.make_genesis(), sim.ctx), items)


@pytest.fixture(scope="module")
def forced_session():
    """With bob's forced close: the first Deleverage naming the fund."""
    return get_session(True, lambda named: INSURANCE_ADDRESS in named)


@pytest.fixture(scope="module")
def forced_honest(forced_session) -> LocalTrace:
    sim, items, _ = forced_session
    return LocalTrace(TraceRunner(sim.make_genesis(), sim.ctx), items)


@pytest.fixture(scope="module")
def world_once(honest) -> World:
    """dispute.vy, the bridge and the one-steps (l1_bridge.deploy) on a chain
    whose genesis output is the session's genesis state; the inbox stays empty."""
    backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000}))
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    funder = w3.eth.accounts[0]
    deployer = tester.add_account(ANVIL_KEY)
    bob = tester.add_account("0x" + KEYS["bob"].hex())     # his forced close goes through the bridge
    for who in (deployer, bob):
        w3.eth.send_transaction({"from": funder, "to": who, "value": 100 * 10**18})
    genesis_root = honest.checkpoints[0].state_root
    accounts = [a for a in w3.eth.accounts if a != bob]
    proposer, guardian = accounts[1], accounts[2]
    d = deploy(w3, PRESET, proposer=proposer, challenger=guardian, deployer=deployer, markets=MARKETS,
               genesis_state_root=genesis_root)
    assert d.bridge == BRIDGE_ADDRESS  # the verifyingContract the session's records are signed for
    client = BridgeClient.connect(w3, deployment=d)
    client.deposit_bond(proposer, 5 * PROPOSER_BOND)
    games = GameContract(w3.eth.contract(address=d.dispute, abi=load_artifact("dispute")[0]), client)
    others = [a for a in accounts if a not in (proposer, guardian, deployer)]
    return World(w3, tester, client, games, games.contract, proposer, guardian, others,
                 OutputFields(genesis_root, EMPTY, EMPTY, 0, EMPTY, EMPTY))


@pytest.fixture
def world(world_once):
    snapshot = world_once.tester.take_snapshot()
    yield world_once
    world_once.tester.revert_to_snapshot(snapshot)


def test_the_deleverage_closes_against_the_named_short(session, honest):
    """The item the games end on: carol's bankrupt ETH long closed at the mark
    against erin's short, the one it names; the fund pays the bad debt."""
    _, items, at = session
    record = decode_replay_item(items[at])
    assert record == Deleverage(ADDR["carol"], ETH, (ADDR["erin"],))
    before = honest.checkpoints[0].copy()
    for item in items[:at]:
        before.step(item)
    after = before.copy()
    result = after.step(items[at])
    assert result.ok and not honest.pending
    for name in ("carol", "erin"):
        assert before.state.positions[(ADDR[name], ETH)].size and not after.state.positions[(ADDR[name], ETH)].size
    assert after.state.positions[(ADDR["carol"], ETH)].order_epoch == before.state.globals.order_count
    assert after.state.globals.insurance_fund < before.state.globals.insurance_fund      # the bad debt
    assert (INSURANCE_ADDRESS, ETH) not in after.state.positions                          # paid, not taken over


def step_gas(*players) -> list[int]:
    """The gas of the step transactions the players sent (each within the step's limit)."""
    gas = [used for player in players for name, used in player.gas if name == "step"]
    assert all(used < STEP_GAS for used in gas)
    return gas


def test_an_honest_challenger_wins_on_the_deleverage_step(world, session, honest):
    _, items, at = session
    chunks = chunks_of(items)
    root = liar_root(honest)
    liar = FakeTrace(honest, at + 1)  # the first wrong claim: the Deleverage's post-state
    liar.claims[-1] = compute_claim(root, honest.end.ctx)
    output, _ = world.propose(honest, chunks, state_root=root)
    challenger = world.others[0]
    game = world.challenge(challenger, output, known(honest, chunks))
    good, bad = world.player(challenger), world.player(world.proposer)
    status = world.play_to_end(game, (good, known(honest, chunks)), (bad, known(liar, chunks)))
    assert status == CHALLENGER_WON
    g = world.games.game(game)
    assert (g.lo, g.hi) == (at, at + 1)  # the step re-executed the Deleverage
    assert len(step_gas(good, bad)) == 1  # the liar may step too: its witness is real, its claim is not
    assert world.client.output_count() == output  # the wrong output is deleted
    assert world.client.eth_owed(challenger) == PROPOSER_BOND
    print(f"step on the Deleverage (item {at}): {step_gas(good, bad)[0]} gas")


def test_a_wrong_challenger_loses_on_the_deleverage_step(world, session, honest):
    _, items, at = session
    chunks = chunks_of(items)
    output, _ = world.propose(honest, chunks)
    challenger = world.others[1]
    game = world.challenge(challenger, output, known(honest, chunks))
    liar, proposer = world.player(challenger), world.player(world.proposer)
    status = world.play_to_end(game, (liar, known(FakeTrace(honest, at + 1), chunks)),
                               (proposer, known(honest, chunks)))
    assert status == PROPOSER_WON
    g = world.games.game(game)
    assert (g.lo, g.hi) == (at, at + 1) and len(step_gas(liar, proposer)) == 1
    assert world.client.output_count() == output + 1 and world.client.eth_owed(challenger) == 0
    print(f"step on the Deleverage (item {at}): {step_gas(liar, proposer)[0]} gas")


def test_an_honest_challenger_wins_on_the_deleverage_naming_the_fund(world, forced_session, forced_honest, honest):
    """Bob's forced close requested on the bridge (the output's inbox entry):
    the fund took his short over; dave's long closes against it."""
    _, items, at = forced_session
    record = decode_replay_item(items[at])
    assert record == Deleverage(ADDR["dave"], BTC, (INSURANCE_ADDRESS,)) and not forced_honest.pending
    assert forced_honest.checkpoints[0].state_root == honest.checkpoints[0].state_root  # the same genesis
    assert world.client.force_close(Web3.to_checksum_address("0x" + ADDR["bob"].hex()), BTC) == 0
    chunks = chunks_of(items)
    root = liar_root(forced_honest)
    liar = FakeTrace(forced_honest, at + 1)
    liar.claims[-1] = compute_claim(root, forced_honest.end.ctx)
    output, _ = world.propose(forced_honest, chunks, state_root=root)
    challenger = world.others[0]
    game = world.challenge(challenger, output, known(forced_honest, chunks))
    good, bad = world.player(challenger), world.player(world.proposer)
    status = world.play_to_end(game, (good, known(forced_honest, chunks)), (bad, known(liar, chunks)))
    assert status == CHALLENGER_WON
    g = world.games.game(game)
    assert (g.lo, g.hi) == (at, at + 1) and len(step_gas(good, bad)) == 1
    assert world.client.output_count() == output and world.client.eth_owed(challenger) == PROPOSER_BOND
    print(f"step on the Deleverage naming the fund (item {at}): {step_gas(good, bad)[0]} gas")
