"""API.md is enough: a script with only eth-account and httpx submits a signed
Transfer and gets its receipt (examples/transfer_with_eth_account.py)."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nodes import make_config
from sequencer.executor.genesis import get_dev_accounts
from sequencer.node.service import Service

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "transfer_with_eth_account.py"


async def test_eth_account_script_transfers(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port)
    (key, sender), (_, receiver) = get_dev_accounts(2)
    async with Service(config) as service:
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(EXAMPLE), "--url", service.url, "--key", "0x" + key.hex(),
             "--to", "0x" + receiver.hex(), "--amount", "1234567"],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        receipt = json.loads(result.stdout)
        assert receipt["status"] == "ok" and receipt["block"] >= 1
        state = service.node.chain.state
        assert state.accounts[receiver].collateral == config.genesis_dev_balance + 1_234_567
        assert state.accounts[sender].collateral == config.genesis_dev_balance - 1_234_567
