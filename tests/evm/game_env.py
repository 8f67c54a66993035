"""Helpers of the dispute-game tests on py-evm: the bridge, the token, the
one-steps and dispute.vy deployed by ``l1_bridge.deploy.deploy`` (the bridge at
0x5FbDB2315678afecb367f032d93F642f64180aa3, the EIP-712 verifyingContract the
shared fraud-proof vectors are signed for), the bridge's inbox filled with
the deposits and forced withdrawals of the vectors' trace, and outputs
proposed through the bridge (postData chunks, then propose) from local
replays of real blocks. Games are played by ``l1_bridge.dispute.GamePlayer``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3

from bridge_env import travel_to
from l1_bridge.client import BridgeClient, Signer
from l1_bridge.deploy import BridgePreset, deploy, load_artifact
from l1_bridge.dispute import GameContract, GamePlayer, LocalTrace, OutputTrace
from prover import fraud_vectors as fv
from prover.hashing import EMPTY, keccak
from prover.records import compute_block_items, compute_data_hash, split_data
from prover.trace import TraceRunner
from sequencer.executor.output import OutputFields

ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""Anvil's first dev key: its first contract is the devnet bridge address the vectors are signed for."""
BRIDGE_ADDRESS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PERIOD, CLOCK, EXTENSION = 3600, 600, 60
PROPOSER_BOND, CHALLENGE_BOND, MOVE_BOND = 10**18, 10**17, 10**15
PRESET = BridgePreset("game-test", challenge_period=PERIOD, forced_grace=10**7, forced_fee=10**15,
                      escape_window=10**6, proposer_bond=PROPOSER_BOND, game_clock=CLOCK,
                      game_extension=EXTENSION, challenge_bond=CHALLENGE_BOND, move_bond=MOVE_BOND)


def make_items(extra_blocks: int = 0) -> list[bytes]:
    return [item for m in fv.make_trace_messages(extra_blocks) for item in compute_block_items(m)]


def make_trace(items: Sequence[bytes]) -> LocalTrace:
    return LocalTrace(TraceRunner(fv.make_trace_genesis(), fv.RULES), items)


class FakeTrace(LocalTrace):
    """A replay whose claims are wrong from position `wrong_from` on (a lying
    party): its witnesses are still the real ones, so its steps prove the truth."""

    def __init__(self, honest: LocalTrace, wrong_from: int) -> None:
        self.__dict__.update(honest.__dict__)
        self.claims = honest.claims[:wrong_from] + [keccak(b"lie" + c) for c in honest.claims[wrong_from:]]


@dataclass
class World:
    w3: Web3
    tester: EthereumTester
    client: BridgeClient
    games: GameContract
    dispute: Any
    proposer: str
    guardian: str
    others: list[str]
    genesis: OutputFields

    @property
    def bridge(self) -> Any:
        return self.client.bridge

    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    def travel(self, seconds: int) -> None:
        """The latest block is `seconds` later (calls see that time)."""
        travel_to(self.tester, self.now() + seconds)

    def player(self, who: str) -> GamePlayer:
        return GamePlayer(self.games, who)

    def propose(self, trace: LocalTrace, chunks: Sequence[bytes], *, state_root: bytes | None = None,
                last_block_hash: bytes | None = None) -> tuple[int, OutputFields]:
        """Post an output whose trace is `trace` (its end), its data `chunks`;
        `state_root` another root (a faulty proposer). Returns (index, fields)."""
        end = trace.end
        g = end.state.globals
        fields = OutputFields(end.state_root if state_root is None else state_root, end.ctx.withdrawals.root(),
                              g.block_hash if last_block_hash is None else last_block_hash, g.inbox_count,
                              g.inbox_hash, compute_data_hash(chunks))
        index = self.client.output_count()
        for i, chunk in enumerate(chunks[:-1]):
            self.client.post_data(self.proposer, index, i, chunk)
        self.client.propose(self.proposer, index, g.block_number, fields, chunks[-1],
                            sum(w.amount for w in end.state.withdrawals), len(chunks) - 1)
        return index, fields

    def fields_of(self, index: int) -> OutputFields:
        if index == 0:
            return self.genesis
        return next(ev["fields"] for ev in reversed(self.client.output_events()) if ev["output_index"] == index)

    def challenge(self, who: str, index: int, known: OutputTrace, bond: int = CHALLENGE_BOND) -> int:
        game, _ = self.games.challenge(Signer.of(who), index, self.fields_of(index), self.fields_of(index - 1),
                                       known.chunks[0], bond)
        return game

    def play_to_end(self, game: int, *sides: tuple[GamePlayer, OutputTrace], limit: int = 400) -> int:
        """Each side makes its moves in turn until the game ends or nobody moves."""
        for _ in range(limit):
            if self.games.game(game).status != 0:
                break
            moved = False
            for player, known in sides:
                moved = player.play(game, known) or moved
            if not moved:
                break
        return self.games.game(game).status

    def is_final(self, index: int) -> bool:
        return self.bridge.functions.isFinal(index).call()


def make_world(preset: BridgePreset = PRESET) -> World:
    """The contracts deployed with `preset` (a bench raises the game clock: py-evm
    blocks follow the wall clock, and a slow machine must not time a game out)."""
    backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000}))
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    funder = w3.eth.accounts[0]
    deployer = tester.add_account(ANVIL_KEY)
    for key in fv.KEYS:
        tester.add_account("0x" + key.hex())
    for who in [deployer] + fv_accounts(w3):
        w3.eth.send_transaction({"from": funder, "to": who, "value": 100 * 10**18})
    genesis_root = TraceRunner(fv.make_trace_genesis(), fv.RULES).state_root
    accounts = list(w3.eth.accounts)
    proposer, guardian = accounts[1], accounts[2]
    d = deploy(w3, preset, proposer=proposer, challenger=guardian, deployer=deployer,
               genesis_state_root=genesis_root)
    assert d.bridge == BRIDGE_ADDRESS, d.bridge
    client = BridgeClient.connect(w3, deployment=d)
    client.deposit_bond(proposer, 5 * PROPOSER_BOND)
    fill_inbox(client, funder)
    games = GameContract(w3.eth.contract(address=d.dispute, abi=load_artifact("dispute")[0]), client)
    others = [a for a in accounts if a not in (proposer, guardian, deployer) and a not in fv_accounts(w3)]
    return World(w3, tester, client, games, games.contract, proposer, guardian, others,
                 OutputFields(genesis_root, EMPTY, EMPTY, 0, EMPTY, EMPTY))


def fv_accounts(w3: Web3) -> list[str]:
    return [Web3.to_checksum_address("0x" + a.hex()) for a in fv.ADDRESSES]


def fill_inbox(client: BridgeClient, funder: str) -> None:
    """The inbox entries of the vectors' trace: Deposit(0, c, 5e6),
    ForcedWithdrawal(1, c, 1e6), ForcedWithdrawal(2, d, 1e6)."""
    a, b, c, d = fv_accounts(client.w3)
    client.faucet(funder, 10 * 10**6)
    client.deposit(funder, 5 * 10**6, c)
    client.force_withdraw(c, 10**6)
    client.force_withdraw(d, 10**6)
    assert client.inbox_count() == 3


def chunks_of(items: Sequence[bytes], max_bytes: int = 120_000) -> list[bytes]:
    return split_data(items, max_bytes)
