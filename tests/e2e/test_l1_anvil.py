"""The L1 bridge end to end on a real anvil (issue 5 scenarios): a node on the
real Kafka broker with its L1 watcher and checkpointer, the bridge deployed to
anvil, the verifier and the exit kit working from L1 data alone.

anvil is started here through infra/anvil/anvil.sh on a port of its own
(installed from npm on first use) and mines a block per transaction; time
moves with evm_increaseTime / evm_mine.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from web3 import Web3

from kafka_fixtures import free_port
from nodes import make_config, wait_until
from l1_bridge.client import BridgeClient, L1Error, L1Reverted, Signer
from l1_bridge.deploy import PRESETS, MarketConfig, bond_proposer, deploy
from l1_bridge.exit import L1Replay, compute_genesis_state_root, escape_everyone
from l1_bridge.proofs import OutputFields
from sequencer.core.markets import get_market_table
from sequencer.executor.genesis import get_dev_accounts
from isoroll.service import Service
from sequencer.sdk import Client

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ANVIL = REPO / "infra" / "anvil" / "anvil.sh"
UNIT = 10**6


def anvil_env(port: int) -> dict:
    return dict(os.environ, ISOROLL_ANVIL_PORT=str(port), ISOROLL_ANVIL_BLOCK_TIME="",
                ISOROLL_ANVIL_DIR=str(REPO / ".devnet" / f"test-anvil-{port}"))


@pytest.fixture(scope="session")
def anvil():
    """An anvil of its own (installed by anvil.sh from npm if missing); its RPC URL."""
    port = free_port()
    env = anvil_env(port)
    result = subprocess.run(["bash", str(ANVIL), "start"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"anvil.sh start failed:\n{result.stderr}")
    yield f"http://127.0.0.1:{port}"
    subprocess.run(["bash", str(ANVIL), "wipe"], env=env, capture_output=True)


class L1:
    """A fresh bridge on the session's anvil."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.w3 = Web3(Web3.HTTPProvider(url))
        accounts = self.w3.eth.accounts
        self.operator, self.challenger, self.third = accounts[0], accounts[1], accounts[2]
        markets = [MarketConfig.from_params(p) for p in get_market_table("devnet").values()]
        self.deployment_file = tmp_path / "deployment.json"
        self.d = deploy(self.w3, "devnet", proposer=self.operator, challenger=self.challenger,
                        deployer=self.operator, markets=markets, genesis_state_root=compute_genesis_state_root(),
                        out=self.deployment_file)
        bond_proposer(self.w3, self.d)
        self.client = BridgeClient.connect(url, deployment=self.deployment_file)
        self.users = get_dev_accounts(3)

    def rpc(self, method: str, *params):
        return self.w3.provider.make_request(method, list(params))

    def advance(self, seconds: int) -> None:
        self.rpc("evm_increaseTime", seconds)
        self.rpc("evm_mine")

    def fund(self, key: bytes, amount: int) -> str:
        address = Signer.of(key).address
        self.rpc("anvil_setBalance", address, hex(10**20))
        self.client.faucet(self.operator, amount, to=address)
        return address

    def node_config(self, broker, topic, tmp_path, **overrides):
        values = dict(l1_rpc_url=self.url, l1_deployment_file=str(self.deployment_file), genesis_dev_accounts=0,
                      l1_confirmations=0, l1_poll_interval_s=0.2, checkpoint_interval_seconds=1.0,
                      checkpoint_interval_blocks=1000)
        values.update(overrides)
        return make_config(broker, topic, tmp_path, free_port(), **values)


@pytest.fixture
def l1(anvil, tmp_path) -> L1:
    return L1(anvil, tmp_path)


async def l2_collateral(service: Service, address: str) -> int:
    a = service.node.chain.state.accounts.get(bytes.fromhex(address[2:]))
    return 0 if a is None else a.collateral


async def test_deposit_trade_withdraw_checkpoint_claim(l1: L1, broker, topic, tmp_path):
    """deposit -> the node credits it -> transfer -> withdraw -> checkpoint ->
    challenge period -> claim (from L1 data alone); the L1 balance moves by exactly the amount."""
    (ka, _), (kb, _) = l1.users[0], l1.users[1]
    a = l1.fund(ka, 1000 * UNIT)
    b = l1.fund(kb, 1000 * UNIT)
    await asyncio.to_thread(l1.client.deposit, ka, 300 * UNIT)
    await asyncio.to_thread(l1.client.deposit, kb, 50 * UNIT)
    config = l1.node_config(broker, topic, tmp_path)
    async with Service(config) as service:
        assert service.node.config.l1_bridge_address == l1.d.bridge
        await wait_until(lambda: _eq(l2_collateral(service, a), 300 * UNIT), timeout=30)
        await wait_until(lambda: _eq(l2_collateral(service, b), 50 * UNIT), timeout=30)
        async with Client(service.url, ka) as alice:
            await alice.transfer(b, 20 * UNIT)
            await alice.withdraw(100 * UNIT)
        async with Client(service.url, kb) as bob:
            await bob.withdraw(70 * UNIT)
        head = service.node.chain.head_number

        async def posted():
            return await asyncio.to_thread(lambda: l1.client.get_output(l1.client.output_count() - 1)["l2_block"]
                                           >= head)
        await wait_until(posted, timeout=30)
        assert service.l1.services.checkpointer.last_error is None
    # the node is gone: the claims use L1 data only
    replay = L1Replay(l1.client)
    replay.run()
    assert replay.outputs and all(o.ok for o in replay.outputs)
    rows = replay.withdrawals_of()
    assert sorted((r["withdrawal"].amount for r in rows)) == [70 * UNIT, 100 * UNIT]
    with pytest.raises(L1Reverted, match="not final"):
        l1.client.claim(l1.third, rows[0]["args"])
    l1.advance(PRESETS["devnet"].challenge_period + 1)
    before_a, before_b = l1.client.token_balance(a), l1.client.token_balance(b)
    bridge_before = l1.client.token_balance(l1.d.bridge)
    paid = replay.claim_withdrawals(l1.third)  # anyone relays; the accounts are paid
    assert sorted(w.amount for w in paid) == [70 * UNIT, 100 * UNIT]
    assert l1.client.token_balance(a) - before_a == 100 * UNIT
    assert l1.client.token_balance(b) - before_b == 70 * UNIT
    assert bridge_before - l1.client.token_balance(l1.d.bridge) == 170 * UNIT
    with pytest.raises(L1Reverted, match="already claimed"):
        l1.client.claim(l1.third, rows[0]["args"])


async def _eq(coro, value) -> bool:
    return (await coro) == value


async def test_faulty_proposer_is_challenged_and_the_honest_output_finalizes(l1: L1, broker, topic, tmp_path):
    """A wrong root is posted; the verifier (from L1 data alone, and from Kafka)
    proves it wrong in a dispute game, the output is deleted, the honest one is
    posted again and finalizes."""
    from l1_bridge.verifier import Verifier
    from sequencer.node.node import make_log_config
    (ka, _), (kb, _) = l1.users[0], l1.users[1]
    a = l1.fund(ka, 1000 * UNIT)
    b = l1.fund(kb, 1000 * UNIT)
    await asyncio.to_thread(l1.client.deposit, ka, 200 * UNIT)
    config = l1.node_config(broker, topic, tmp_path)
    verifier = Verifier(l1.client, l1.challenger, source="l1")
    async with Service(config) as service:
        await wait_until(lambda: _eq(l2_collateral(service, a), 200 * UNIT), timeout=30)
        cp = service.l1.services.checkpointer
        await wait_until(lambda: _true(len(cp.posted) >= 1), timeout=30)
        assert [v.ok for v in await verifier.check_once()] == [True] * (l1.client.output_count() - 1)

        faulty = []

        def corrupt(proposal):
            cp.corrupt = None  # one wrong output, then honest again
            faulty.append(proposal)
            return proposal.fields._replace(state_root=b"\x66" * 32)
        cp.corrupt = corrupt
        async with Client(service.url, ka) as alice:
            await alice.transfer(b, 30 * UNIT)
            await alice.withdraw(50 * UNIT)
        await wait_until(lambda: _true(bool(faulty) and l1.client.output_count() > faulty[0].output_index),
                         timeout=30)
        bad_index = faulty[0].output_index
        bad_root = l1.client.get_output(bad_index)["output_root"]
        assert l1.client.live_outputs()[bad_index]["state_root"] == b"\x66" * 32  # the corrupted one went on L1
        verdicts = await verifier.check_once()
        assert verdicts[-1].index == bad_index and not verdicts[-1].ok and verdicts[-1].challenged
        assert "state_root" in verdicts[-1].error
        await verifier.play_to_end()  # its dispute game against the node's defender
        assert [r["status"] for r in verifier.results] == ["challenger won"]
        deleted = l1.client.bridge.events.OutputsDeleted().get_logs(from_block=0)
        assert [e["args"]["from_index"] for e in deleted] == [bad_index]  # deleted, with everything after it

        async def reposted():
            if l1.client.output_count() <= bad_index:
                return False
            return l1.client.get_output(bad_index)["output_root"] != bad_root
        await wait_until(reposted, timeout=30)
        verdicts = await verifier.check_once()
        assert verdicts and all(v.ok for v in verdicts)
        # a verifier that replays the operator's Kafka log agrees
        kafka_verifier = Verifier(l1.client, l1.challenger, source="kafka", log_config=make_log_config(config))
        assert all(v.ok for v in await kafka_verifier.check_once())
    l1.advance(PRESETS["devnet"].challenge_period + 1)
    assert l1.client.get_output(bad_index)["is_final"]
    replay = L1Replay(l1.client)
    replay.run()
    before = l1.client.token_balance(a)
    assert [w.amount for w in replay.claim_withdrawals(l1.third)] == [50 * UNIT]
    assert l1.client.token_balance(a) - before == 50 * UNIT


async def test_operator_stops_force_withdraw_freeze_escape_refund(l1: L1, broker, topic, tmp_path):
    """The operator stops: a user force-withdraws, the grace passes, a third party
    freezes, every account escapes with what the last final state gives it
    (computed from L1 data alone), the sum paid never exceeds the bridge's
    balance, the undelivered deposit is refunded."""
    (ka, _), (kb, _), (kc, _) = l1.users
    a, b, c = l1.fund(ka, 1000 * UNIT), l1.fund(kb, 1000 * UNIT), l1.fund(kc, 1000 * UNIT)
    for key, amount in ((ka, 300 * UNIT), (kb, 100 * UNIT), (kc, 10 * UNIT)):
        await asyncio.to_thread(l1.client.deposit, key, amount)
    config = l1.node_config(broker, topic, tmp_path)
    async with Service(config) as service:
        await wait_until(lambda: _eq(l2_collateral(service, c), 10 * UNIT), timeout=30)
        async with Client(service.url, ka) as alice:
            await alice.transfer(c, 25 * UNIT)
            await alice.withdraw(40 * UNIT)  # in a final output, claimable even after the freeze
        head = service.node.chain.head_number
        await wait_until(lambda: asyncio.to_thread(
            lambda: l1.client.get_output(l1.client.output_count() - 1)["l2_block"] >= head), timeout=30)
    # the operator is gone
    l1.advance(PRESETS["devnet"].challenge_period + 1)
    late = await asyncio.to_thread(l1.client.deposit, kc, 7 * UNIT)   # never reaches the L2
    request = l1.client.force_withdraw(kb, 60 * UNIT)
    info = l1.client.get_forced_request(request)
    assert info["grace_left"] > 0 and not info["covered_by_live_output"]
    with pytest.raises(L1Reverted, match="grace"):
        l1.client.freeze(l1.third, request)
    l1.advance(PRESETS["devnet"].forced_grace + 1)
    assert l1.client.can_freeze(request)
    l1.client.freeze(l1.third, request)
    status = l1.client.status()
    assert status["frozen"] and status["frozen_output"] == status["output_count"] - 1
    with pytest.raises(L1Reverted):  # no proposals after the freeze
        l1.client.propose(l1.operator, status["output_count"], 10**6, OutputFields(*([b"\x00" * 32] * 3), 0,
                                                                                  b"\x00" * 32, b"\x00" * 32), b"", 0)

    # the exit kit: L1 data only
    replay = L1Replay(l1.client)
    expected = {x: replay.escape_amount(bytes.fromhex(x[2:])) for x in (a, b, c)}
    assert expected == {a: 300 * UNIT - 25 * UNIT - 40 * UNIT, b: 100 * UNIT, c: 35 * UNIT}
    balance = l1.client.token_balance(l1.d.bridge)
    assert sum(expected.values()) + 40 * UNIT + 7 * UNIT <= balance
    before = {x: l1.client.token_balance(x) for x in (a, b, c)}
    owed = escape_everyone(replay, l1.third, wait=False)  # the registration window is open
    assert {"0x" + k.hex(): v for k, v in owed.items()} == {x.lower(): v for x, v in expected.items()}
    with pytest.raises(L1Reverted, match="already registered"):
        replay.register_escape(l1.third, bytes.fromhex(a[2:]))
    with pytest.raises(L1Reverted, match="window is still open"):
        l1.client.claim_escape(l1.third, a)
    status = l1.client.status()
    reserves = l1.client.reserves()
    # the pool is the balance minus the reserves: the final withdrawal (40) and the late deposit (7)
    assert (reserves["unclaimed_withdrawals"], reserves["refundable_deposits"]) == (40 * UNIT, 7 * UNIT)
    assert status["escape_pool"] == balance - 47 * UNIT >= status["total_registered"] == sum(expected.values())
    l1.advance(PRESETS["devnet"].escape_window + 1)
    paid = escape_everyone(replay, l1.third)
    assert {"0x" + k.hex(): v for k, v in paid.items()} == {x.lower(): v for x, v in expected.items()}
    for x in (a, b, c):
        assert l1.client.token_balance(x) - before[x] == expected[x]
    with pytest.raises(L1Error, match="already escaped"):
        replay.escape(l1.third, bytes.fromhex(a[2:]))
    # the withdrawal of a final output is still claimable; the late deposit is refunded
    assert [w.amount for w in replay.claim_withdrawals(l1.third)] == [40 * UNIT]
    refunds = replay.refund(l1.third)
    assert [(r["inbox_index"], r["amount"]) for r in refunds] == [(late, 7 * UNIT)]
    assert replay.refundable_deposits() == []
    assert l1.client.token_balance(l1.d.bridge) == balance - sum(expected.values()) - 47 * UNIT


async def _true(value) -> bool:
    return value


class _Builder:
    """The watcher's view of a sequencer: submit(record) applies it (no Kafka)."""

    def __init__(self, state, ctx):
        self.state, self.ctx, self.stopped, self.records = state, ctx, False, []

    async def settled(self):
        return None

    def submit(self, record):
        from sequencer.core.transition import apply_record
        future = asyncio.get_running_loop().create_future()
        error = apply_record(self.state, record, 0, self.ctx)
        if error is None:
            self.records.append(record)
            future.set_result(True)
        else:
            future.set_exception(error)
        return future


async def test_watcher_confirmations_resume_and_reorg(l1: L1):
    """The watcher copies only confirmed inbox entries, in order, once each (also
    after a restart), and an L1 reorg of unconfirmed blocks never reaches the log."""
    from types import SimpleNamespace
    from l1_bridge.exit import make_replay_context
    from l1_bridge.watcher import InboxWatcher
    from sequencer.core.records import Deposit, ForcedWithdrawal
    from sequencer.core.state import State
    (ka, _), (kb, _) = l1.users[0], l1.users[1]
    a, b = l1.fund(ka, 1000 * UNIT), l1.fund(kb, 1000 * UNIT)
    ctx = make_replay_context(l1.d.bridge)
    state = State()
    node = SimpleNamespace(builder=_Builder(state, ctx), chain=SimpleNamespace(state=state))
    watcher = InboxWatcher(l1.client, node, confirmations=2, start_block=l1.d.block_number)
    l1.client.deposit(ka, 10 * UNIT)
    assert (await watcher.poll_once()).submitted == []            # 0 confirmations
    l1.rpc("evm_mine")
    l1.rpc("evm_mine")
    assert [r.amount for r in (await watcher.poll_once()).submitted] == [10 * UNIT]
    # an entry in blocks that a reorg removes before they are confirmed
    snap = l1.rpc("evm_snapshot")["result"]
    l1.client.deposit(ka, 99 * UNIT)
    l1.rpc("evm_mine")
    assert (await watcher.poll_once()).submitted == []
    l1.rpc("evm_revert", snap)
    l1.client.deposit(kb, 5 * UNIT)
    l1.client.force_withdraw(ka, 3 * UNIT)
    l1.rpc("evm_mine")
    l1.rpc("evm_mine")
    await watcher.poll_once()
    assert node.builder.records == [Deposit(0, bytes.fromhex(a[2:]), 10 * UNIT),
                                    Deposit(1, bytes.fromhex(b[2:]), 5 * UNIT),
                                    ForcedWithdrawal(2, bytes.fromhex(a[2:]), 3 * UNIT)]
    assert state.globals.inbox_hash == l1.client.inbox_hash_at(3)
    # a restarted watcher resumes from the state: nothing twice
    again = InboxWatcher(l1.client, node, confirmations=2, start_block=l1.d.block_number)
    assert (await again.poll_once()).submitted == []
    assert len(node.builder.records) == 3


async def test_checkpointer_restart_neither_reposts_nor_skips(l1: L1, broker, topic, tmp_path):
    """Stop the node between outputs and start it again on the same log: the
    outputs continue at the contract's next index and cover every block once."""
    from l1_bridge.verifier import Verifier
    (ka, _), (kb, _) = l1.users[0], l1.users[1]
    a = l1.fund(ka, 1000 * UNIT)
    b = l1.fund(kb, 1000 * UNIT)
    await asyncio.to_thread(l1.client.deposit, ka, 100 * UNIT)
    config = l1.node_config(broker, topic, tmp_path)
    for round_ in range(2):
        async with Service(config) as service:
            await wait_until(lambda: _eq(l2_collateral(service, a), 100 * UNIT - round_ * UNIT), timeout=30)
            async with Client(service.url, ka) as alice:
                await alice.transfer(b, UNIT)
            head = service.node.chain.head_number
            await wait_until(lambda: asyncio.to_thread(
                lambda: l1.client.get_output(l1.client.output_count() - 1)["l2_block"] >= head), timeout=30)
    blocks = [l1.client.get_output(i)["l2_block"] for i in range(l1.client.output_count())]
    assert blocks == sorted(set(blocks)) and blocks[-1] == head
    verdicts = await Verifier(l1.client, None, source="l1").check_once()
    assert verdicts and all(v.ok for v in verdicts)
