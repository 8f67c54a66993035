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
from l1_bridge.client import BridgeClient, L1Reverted, Signer
from l1_bridge.deploy import PRESETS, MarketConfig, bond_proposer, deploy
from l1_bridge.exit import L1Replay, compute_genesis_state_root, escape_everyone
from l1_bridge.proofs import OutputFields
from sequencer.core.markets import get_market_table
from sequencer.node.genesis import get_dev_accounts
from sequencer.node.service import Service
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
        assert service.node.l1.checkpointer.last_error is None
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
