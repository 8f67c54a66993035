"""The backstop vault through a real node on the real broker: `isoroll vault
deposit` and `isoroll vault status` as subprocesses, GET /v1/vault, a
withdrawal refused during the lock-up with its error code, and a fresh
executor replaying the log to the node's vault shares and state root."""
from __future__ import annotations

import json
import uuid

import pytest

from nodes import dev_clients, make_config, replay_fresh, run_cli
from sequencer.core.markets import USDC
from sequencer.core.rules.vault import VAULT_ADDRESS
from sequencer.executor.genesis import get_dev_accounts
from sequencer.node.service import Service
from sequencer.oracle import Feeder
from sequencer.sdk import ApiError

pytestmark = pytest.mark.kafka

BTC = 1


async def test_vault_deposit_status_and_a_locked_withdrawal(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id="vault-" + uuid.uuid4().hex[:8])
    async with Service(config) as service:
        a, b, c, _ = dev_clients(service.url)
        key_a = "0x" + get_dev_accounts(1)[0][0].hex()
        url = ["--url", service.url]
        async with a, b, c:
            assert (await Feeder(c, source=None).post(BTC, 60_000 * USDC)).receipt["status"] == "ok"
            before = (await a.account())["collateral"]
            assert (await a.vault())["holder"]["shares"] == 0
            code, out, err = await run_cli("vault", "deposit", *url, "--key", key_a, "1000")
            assert code == 0, err
            assert json.loads(out)["status"] == "ok"
            assert (await a.account())["collateral"] == before - 1_000 * USDC
            code, out, err = await run_cli("vault", "status", *url, "--key", key_a, "--json")
            view = json.loads(out)
            assert view["address"] == "0x" + VAULT_ADDRESS.hex()
            assert view["totalShares"] == view["holder"]["shares"] == 1_000 * USDC
            assert view["equity"] == view["collateral"] == 1_000 * USDC and view["holder"]["value"] == 1_000 * USDC
            code, out, err = await run_cli("vault", "status", *url, "0x" + a.address.hex())
            assert code == 0 and "1000000000 shares worth 1000 USDC" in out, out
            with pytest.raises(ApiError) as info:
                await a.vault_withdraw(100 * USDC)
            assert info.value.code == "vault_locked"
            with pytest.raises(ApiError) as info:
                await b.vault_deposit(USDC)                     # below the 10 USDC minimum
            assert info.value.code == "vault_deposit_too_small"
            code, out, err = await run_cli("vault", "withdraw", *url, "--key", key_a, "all")
            assert code == 2 and "vault_locked" in err, (out, err)
            node_state = service.node.chain.state
            replica = await replay_fresh(config)
            assert replica.state.vault_shares == node_state.vault_shares
            assert replica.compute_state_root() == service.node.chain.state_root
