"""The defender and the challenger (l1_bridge.dispute) against the bridge
and its dispute game contract on py-evm, over outputs proposed on the bridge
with real item data (signed transfers and withdrawals, replayed by
OutputTraces from the calldata): bogus challengers in numbers, a challenger
who stops moving, a defender restarted mid-game, a wrong proposer against the
challenger (and a silent one), a second game on an output already proven
wrong, and the refusals said before anything is sent."""
from __future__ import annotations

import pytest
from eth_account import Account

from l1_bridge.client import BridgeClient, Signer
from l1_bridge.deploy import compute_create_address, deploy_onestep, load_artifact, transact
from l1_bridge.dispute import (ACTIVE, CHALLENGER_WON, MOOT, PROPOSER_WON, Challenger, ChallengeRefused, Defender,
                               GameContract, GamePlayer, LocalTrace, OutputTrace, OutputTraces)
from prover import fraud_vectors as fv
from prover.hashing import keccak
from prover.records import compute_data_hash
from prover.trace import TraceRunner
from sequencer.core.encoding import encode_block, make_block
from sequencer.core.records import Transfer, Withdraw
from sequencer.executor.output import EMPTY, Batch, OutputFields, decode_batch, encode_batch

pytestmark = pytest.mark.evm

PERIOD, CLOCK, EXTENSION = 3600, 600, 60
PROPOSER_BOND, CHALLENGE_BOND, MOVE_BOND = 10**18, 10**17, 10**15
A, B, C, D = fv.ADDRESSES
EXP = fv.BLOCK_TIME + 10**7


def make_messages(first: int, parent: bytes, blocks: int, nonce: int) -> list[bytes]:
    """`blocks` blocks of two transfers and a withdrawal each, from block `first`."""
    out = []
    for k in range(blocks):
        n = nonce + 3 * k
        records = [fv.sign(Transfer(A, C, 1000 + k, n, EXP, b""), fv.KEYS[0]),
                   fv.sign(Transfer(B, D, 7, n + 1, EXP, b""), fv.KEYS[1]),
                   fv.sign(Withdraw(A, 500, n + 2, EXP, b""), fv.KEYS[0])]
        message = encode_block(make_block(first + k, parent, fv.BLOCK_TIME + first + k, records))
        out.append(message)
        parent = keccak(message)
    return out


class Chain:
    """The bridge, its dispute contract and the one-step on py-evm; outputs
    posted by the proposer (accounts[0]) from real blocks."""

    def __init__(self, w3, addresses: tuple[str, str] | None = None) -> None:
        self.w3 = w3
        accounts = w3.eth.accounts
        self.proposer, self.guardian = accounts[0], accounts[9]
        genesis = TraceRunner(fv.make_trace_genesis(), fv.RULES)
        self.genesis_fields = OutputFields(genesis.state_root, EMPTY, EMPTY, 0, EMPTY, EMPTY)
        if addresses is None:
            addresses = self._deploy_all()
        self.client = BridgeClient(w3, *addresses)
        self.games = GameContract.of(self.client)
        self.head, self.parent, self.nonce = 0, b"\x00" * 32, 1
        self.runner = TraceRunner(fv.make_trace_genesis(), fv.RULES)
        """The honest state after the last output."""
        self.traces = OutputTraces(self.client, TraceRunner(fv.make_trace_genesis(), fv.RULES))

    def _deploy_all(self) -> tuple[str, str]:
        onestep, _ = deploy_onestep(self.w3, fv.RULES)
        nonce = self.w3.eth.get_transaction_count(self.proposer)
        token = self._deploy("token", "dUSD", "dUSD")
        dispute_at = compute_create_address(self.proposer, nonce + 2)
        bridge = self._deploy("bridge", token.address, self.proposer, self.guardian, dispute_at, PERIOD, 10, 10**15,
                              60, PROPOSER_BOND, self.genesis_fields.root(), [], [], [])
        dispute = self._deploy("dispute", bridge.address, onestep, CLOCK, EXTENSION, CHALLENGE_BOND, MOVE_BOND)
        assert dispute.address == dispute_at
        BridgeClient(self.w3, bridge.address, token.address).deposit_bond(self.proposer, PROPOSER_BOND)
        return bridge.address, token.address

    def _deploy(self, name: str, *args):
        abi, bytecode = load_artifact(name)
        receipt = transact(self.w3, self.w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args), self.proposer)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=abi)

    def propose(self, blocks: int = 3, wrong: bool = False) -> int:
        """The next output over `blocks` new blocks; `wrong`: its state root is not the data's."""
        messages = make_messages(self.head + 1, self.parent, blocks, self.nonce)
        index = self.client.output_count()
        batch: Batch = encode_batch(messages)
        end = LocalTrace(self.runner.copy(), decode_batch(batch.chunks)).end
        self.runner = end
        state_root = keccak(b"wrong") if wrong else end.state_root
        fields = OutputFields(state_root, end.ctx.withdrawals.root(), keccak(messages[-1]), 0,
                              self.client.inbox_hash_at(0), batch.data_hash)
        total = 500 * blocks
        self.client.send("propose", self.client.bridge.functions.propose(
            index, self.head + blocks, fields.as_arg(), total, batch.chunks[-1]), self.proposer)
        self.head += blocks
        self.parent = keccak(messages[-1])
        self.nonce += 3 * blocks
        return index


@pytest.fixture(scope="module")
def evm():
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider, Web3
    backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000}))
    tester = EthereumTester(backend)
    return Web3(EthereumTesterProvider(tester)), tester


@pytest.fixture(scope="module")
def addresses(evm):
    c = Chain(evm[0])
    return c.client.bridge.address, c.client.token.address


@pytest.fixture
def chain(evm, addresses):
    w3, tester = evm
    snapshot = tester.take_snapshot()
    yield Chain(w3, addresses)
    tester.revert_to_snapshot(snapshot)


def travel(chain: Chain, seconds: int) -> None:
    w3 = chain.w3
    w3.provider.ethereum_tester.time_travel(w3.eth.get_block("latest")["timestamp"] + seconds + 1)


def lying(known: OutputTrace, wrong_from: int) -> OutputTrace:
    trace = LocalTrace.__new__(LocalTrace)
    trace.__dict__.update(known.trace.__dict__)
    trace.claims = known.trace.claims[:wrong_from] + [keccak(b"lie" + c) for c in known.trace.claims[wrong_from:]]
    return OutputTrace(known.chunks, trace)


def open_game(chain: Chain, player: GamePlayer, index: int, known: OutputTrace) -> int:
    events = chain.client.live_outputs()
    game, _ = chain.games.challenge(player.signer, index, chain.traces.fields(index, events),
                                    chain.traces.fields(index - 1, events), known.chunks[0], CHALLENGE_BOND)
    return game


def defender(chain: Chain) -> Defender:
    return Defender(chain.games, chain.proposer, chain.traces)


def test_the_defender_beats_bogus_challengers_and_the_output_finalizes(chain):
    index = chain.propose()
    known = chain.traces.get(index)
    n = len(known.trace)
    bogus = [(GamePlayer(chain.games, chain.w3.eth.accounts[i]), lying(known, p)) for i, p in ((1, 1), (2, n // 2), (3, n))]
    ids = [open_game(chain, player, index, lie) for player, lie in bogus]
    d = defender(chain)
    before = chain.client.eth_balance(chain.proposer)
    for _ in range(60):
        moved = d.poll() + sum(p.play(g, lie) for (p, lie), g in zip(bogus, ids))
        if not moved:
            break
    assert [chain.games.game(g).status for g in ids] == [PROPOSER_WON] * 3
    assert chain.games.owed(chain.proposer) == 0 and d.won >= 3 * CHALLENGE_BOND  # withdrawn
    assert chain.client.eth_balance(chain.proposer) > before  # its gas is covered by what it won
    assert d.first_open == 3
    travel(chain, PERIOD)
    assert chain.client.get_output(index)["is_final"]


def test_a_silent_challenger_is_timed_out_by_a_restarted_defender(chain):
    index = chain.propose()
    known = chain.traces.get(index)
    quitter = GamePlayer(chain.games, chain.w3.eth.accounts[1])
    game = open_game(chain, quitter, index, lying(known, 4))
    first = defender(chain)
    assert first.poll() >= 1  # reveal and the first bisect
    assert quitter.play(game, lying(known, 4))
    first.poll()
    assert chain.games.game(game).status == ACTIVE
    travel(chain, PERIOD)
    assert not chain.client.get_output(index)["is_final"]  # the open game holds it
    travel(chain, CLOCK)
    restarted = Defender(chain.games, chain.proposer, OutputTraces(
        chain.client, TraceRunner(fv.make_trace_genesis(), fv.RULES)))
    assert restarted.poll() == 1  # timeout, from the chain alone
    assert chain.games.game(game).status == PROPOSER_WON
    assert chain.client.get_output(index)["is_final"]


def test_the_challenger_proves_a_wrong_output_wrong_and_takes_the_bond(chain):
    good = chain.propose()
    wrong = chain.propose(wrong=True)
    later = chain.propose()
    events = chain.client.live_outputs()
    verifier = Challenger(chain.games, chain.w3.eth.accounts[1])
    with pytest.raises(ChallengeRefused, match="cannot be won"):
        verifier.challenge(good, chain.traces.fields(good, events), chain.traces.fields(good - 1, events),
                           chain.traces.get(good))
    known = chain.traces.get(wrong)
    who = chain.w3.eth.accounts[1]
    before = chain.client.eth_balance(who)
    game = verifier.challenge(wrong, chain.traces.fields(wrong, events), chain.traces.fields(wrong - 1, events), known)
    d = defender(chain)  # plays its honest trace: it cannot defend the wrong end
    d.poll()
    verifier.play()
    assert chain.games.game(game).status == ACTIVE and chain.games.game(game).depth == 2
    # the verifier restarts: a new one takes the game up from the chain
    verifier = Challenger(chain.games, who)
    assert verifier.resume(OutputTraces(chain.client, TraceRunner(fv.make_trace_genesis(), fv.RULES)),
                           chain.client.live_outputs()) == {game: wrong}
    for _ in range(60):
        if not (d.poll() + verifier.play()):
            break
    g = chain.games.game(game)
    assert g.status == CHALLENGER_WON and g.hi - g.lo == 1 and g.hi == g.count  # the last item decides
    assert chain.client.output_count() == wrong  # it and the one after it are gone
    paid = verifier.collect()
    assert paid >= PROPOSER_BOND + CHALLENGE_BOND
    assert chain.client.eth_balance(who) > before + PROPOSER_BOND - CHALLENGE_BOND
    assert verifier.records[game].moves >= 2 and not verifier.open
    del later


def test_a_second_game_on_a_proven_wrong_output_is_moot(chain):
    chain.propose()
    wrong = chain.propose(wrong=True)
    events = chain.client.live_outputs()
    known = chain.traces.get(wrong)
    first, second = Challenger(chain.games, chain.w3.eth.accounts[1]), Challenger(chain.games, chain.w3.eth.accounts[2])
    args = (wrong, chain.traces.fields(wrong, events), chain.traces.fields(wrong - 1, events), known)
    a, b = first.challenge(*args), second.challenge(*args)
    travel(chain, CLOCK)  # the proposer never answers
    assert first.play() >= 1 and chain.games.game(a).status == CHALLENGER_WON
    assert second.play() == 1  # moot: it gets its bond back
    assert chain.games.game(b).status == MOOT
    assert second.collect() == CHALLENGE_BOND


def test_refusals_are_said_before_anything_is_sent(chain):
    chain.propose()
    wrong = chain.propose(wrong=True)
    events = chain.client.live_outputs()
    args = (wrong, chain.traces.fields(wrong, events), chain.traces.fields(wrong - 1, events), chain.traces.get(wrong))
    count = chain.games.game_count()
    with pytest.raises(ChallengeRefused, match=r"bond too small: 0\.05 ETH offered.*0\.1 ETH"):
        Challenger(chain.games, chain.w3.eth.accounts[1], bond=CHALLENGE_BOND // 2).challenge(*args)
    broke = Account.create()
    with pytest.raises(ChallengeRefused, match=rf"key {broke.address} holds 0 ETH.*fund it"):
        Challenger(chain.games, Signer.of(bytes(broke.key))).challenge(*args)
    travel(chain, PERIOD)
    with pytest.raises(ChallengeRefused, match="challenge period is over"):
        Challenger(chain.games, chain.w3.eth.accounts[1]).challenge(*args)
    assert chain.games.game_count() == count
    assert compute_data_hash(args[3].chunks) == args[1].data_hash
