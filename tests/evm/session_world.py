"""What the dispute games on test_onestep_session's trading session share:
the session's trace items with the position of the record a game ends on,
the honest replay, the chain (dispute.vy, the bridge and the one-steps of
``l1_bridge.deploy``) whose genesis output is the session's genesis state,
and the two games played down to that record: an honest challenger against a
wrong output, a lying challenger against the honest one.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3

from game_env import ANVIL_KEY, BRIDGE_ADDRESS, PRESET, PROPOSER_BOND, FakeTrace, World, chunks_of
from l1_bridge.client import BridgeClient
from l1_bridge.deploy import MarketConfig, deploy, load_artifact
from l1_bridge.dispute import CHALLENGER_WON, PROPOSER_WON, STEP_GAS, GameContract, LocalTrace
from prover.hashing import EMPTY
from prover.records import compute_block_items, decode_replay_item
from prover.trace import TraceRunner, compute_claim
from sequencer.executor.output import OutputFields
from test_dispute_game import known, liar_root
from test_onestep_session import get_blocks, run_session


def get_session_items(is_target: Callable[[object], bool], forced_close: bool = False) -> tuple:
    """The session (``run_session``), its trace items and the position of the
    first item whose decoded record satisfies ``is_target``."""
    sim = run_session(forced_close=forced_close)
    items = [item for message in get_blocks(sim) for item in compute_block_items(message)]
    at = next(i for i, item in enumerate(items) if is_target(decode_replay_item(item)))
    return sim, items, at


def replay_session(session: tuple) -> LocalTrace:
    """The honest replay of the session's items from its genesis."""
    sim, items, _ = session
    return LocalTrace(TraceRunner(sim.make_genesis(), sim.ctx), items)


def make_session_world(honest: LocalTrace, *, markets: Sequence[MarketConfig] = (),
                       l1_keys: Sequence[bytes] = ()) -> World:
    """dispute.vy, the bridge and the one-steps on a chain whose genesis output
    is the session's genesis state; the inbox stays empty. ``l1_keys``: the
    session's users who send to the bridge themselves (a forced close):
    funded, and kept out of the world's other accounts."""
    backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000}))
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    funder = w3.eth.accounts[0]
    deployer = tester.add_account(ANVIL_KEY)
    users = [tester.add_account("0x" + key.hex()) for key in l1_keys]
    for who in [deployer] + users:
        w3.eth.send_transaction({"from": funder, "to": who, "value": 100 * 10**18})
    genesis_root = honest.checkpoints[0].state_root
    accounts = [a for a in w3.eth.accounts if a not in users]
    proposer, guardian = accounts[1], accounts[2]
    d = deploy(w3, PRESET, proposer=proposer, challenger=guardian, deployer=deployer, markets=markets,
               genesis_state_root=genesis_root)
    assert d.bridge == BRIDGE_ADDRESS  # the verifyingContract the session's records are signed for
    client = BridgeClient.connect(w3, deployment=d)
    client.deposit_bond(proposer, 5 * PROPOSER_BOND)
    games = GameContract(w3.eth.contract(address=d.dispute, abi=load_artifact("dispute")[0]), client)
    others = [a for a in accounts if a not in (proposer, guardian, deployer)]
    return World(w3, tester, client, games, games.contract, proposer, guardian, others,
                 OutputFields(genesis_root, EMPTY, EMPTY, 0, EMPTY, EMPTY))


def snapshot_world(world: World) -> Iterator[World]:
    """The world for one test, its chain reverted afterwards (a fixture's body)."""
    snapshot = world.tester.take_snapshot()
    yield world
    world.tester.revert_to_snapshot(snapshot)


def step_gas(*players) -> list[int]:
    """The gas of the step transactions the players sent (each within the step's limit)."""
    gas = [used for player in players for name, used in player.gas if name == "step"]
    assert all(used < STEP_GAS for used in gas)
    return gas


def win_as_honest_challenger(world: World, honest: LocalTrace, items: list[bytes], at: int) -> int:
    """A wrong output whose first wrong claim is item ``at``'s post-state,
    challenged by an honest challenger: the game bisects to that item, one
    step re-executes it, the challenger wins (the output deleted, the
    proposer's bond paid to it). Returns the step's gas."""
    chunks = chunks_of(items)
    root = liar_root(honest)
    liar = FakeTrace(honest, at + 1)
    liar.claims[-1] = compute_claim(root, honest.end.ctx)
    output, _ = world.propose(honest, chunks, state_root=root)
    challenger = world.others[0]
    game = world.challenge(challenger, output, known(honest, chunks))
    good, bad = world.player(challenger), world.player(world.proposer)
    status = world.play_to_end(game, (good, known(honest, chunks)), (bad, known(liar, chunks)))
    assert status == CHALLENGER_WON
    g = world.games.game(game)
    assert (g.lo, g.hi) == (at, at + 1)  # the step re-executed item ``at``
    gas = step_gas(good, bad)
    assert len(gas) == 1  # the liar may step too: its witness is real, its claim is not
    assert world.client.output_count() == output  # the wrong output is deleted
    assert world.client.eth_owed(challenger) == PROPOSER_BOND
    return gas[0]


def lose_as_wrong_challenger(world: World, honest: LocalTrace, items: list[bytes], at: int) -> int:
    """The honest output challenged by a challenger lying from item ``at``'s
    post-state on: the game bisects to that item, one step re-executes it,
    the proposer wins (the output stays, the challenger is owed nothing).
    Returns the step's gas."""
    chunks = chunks_of(items)
    output, _ = world.propose(honest, chunks)
    challenger = world.others[1]
    game = world.challenge(challenger, output, known(honest, chunks))
    liar, proposer = world.player(challenger), world.player(world.proposer)
    status = world.play_to_end(game, (liar, known(FakeTrace(honest, at + 1), chunks)),
                               (proposer, known(honest, chunks)))
    assert status == PROPOSER_WON
    g = world.games.game(game)
    gas = step_gas(liar, proposer)
    assert (g.lo, g.hi) == (at, at + 1) and len(gas) == 1
    assert world.client.output_count() == output + 1 and world.client.eth_owed(challenger) == 0
    return gas[0]
