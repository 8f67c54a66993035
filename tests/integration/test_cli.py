"""The CLI against a real node: keys new, tx transfer (key from flag, env and
file), account, status, receipt; and the metrics the node exposes."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx
import pytest

from nodes import make_config
from sequencer.executor.genesis import get_dev_accounts
from sequencer.node.service import Service

pytestmark = pytest.mark.kafka


def isoroll(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isoroll.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


async def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(isoroll, *args, env=env)


async def test_cli_transfer_account_and_metrics(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port)
    (key, sender), (_, receiver) = get_dev_accounts(2)
    key_hex = "0x" + key.hex()
    new_key = await run("keys", "new", "--out", str(tmp_path / "new.key"))
    assert new_key.returncode == 0, new_key.stderr
    new_address = json.loads(new_key.stdout)["address"]
    assert oct((tmp_path / "new.key").stat().st_mode)[-3:] == "600"
    (tmp_path / "dev.key").write_text(key_hex + "\n")

    async with Service(config) as service:
        url = ["--url", service.url]
        by_flag = await run("tx", "transfer", *url, "--key", key_hex, "--to", new_address, "--amount", "10")
        assert by_flag.returncode == 0, by_flag.stderr
        receipt = json.loads(by_flag.stdout)
        assert receipt["status"] == "ok"
        by_env = await run("tx", "transfer", *url, "--to", new_address, "--amount", "0.5",
                           env={"ISOROLL_KEY": key_hex})
        by_file = await run("tx", "transfer", *url, "--key-file", str(tmp_path / "dev.key"),
                            "--to", "0x" + receiver.hex(), "--amount", "7", "--raw")
        assert by_env.returncode == 0 and by_file.returncode == 0, (by_env.stderr, by_file.stderr)

        shown = await run("account", *url, new_address, "--json")
        assert json.loads(shown.stdout)["collateral"] == 10_500_000
        human = await run("account", *url, new_address)
        assert "10.5" in human.stdout
        got = await run("receipt", *url, receipt["hash"])
        assert json.loads(got.stdout)["block"] == receipt["block"]

        no_key = await run("tx", "transfer", *url, "--to", new_address, "--amount", "1",
                           env={"ISOROLL_KEY": "", "ISOROLL_KEY_FILE": ""})
        assert no_key.returncode != 0 and "no private key" in no_key.stderr
        too_much = await run("tx", "transfer", *url, "--key", key_hex, "--to", new_address, "--amount", "10000000")
        assert too_much.returncode == 2 and "insufficient_collateral" in too_much.stderr
        bad_amount = await run("tx", "transfer", *url, "--key", key_hex, "--to", new_address, "--amount", "0.0000001")
        assert bad_amount.returncode != 0 and "6 decimals" in bad_amount.stderr

        async with httpx.AsyncClient(base_url=service.url) as http:
            metrics = (await http.get("/metrics")).text
        values = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
                  if line and not line.startswith("#")}
        assert values["isoroll_txs_acked_total"] >= 3
        assert values["isoroll_txs_refused_total"] >= 1
        assert values["isoroll_ready"] == 1
        assert values["isoroll_submit_to_receipt_seconds_count"] >= 3

    unreachable = await run("status", "--url", "http://127.0.0.1:1")
    assert unreachable.returncode == 3 and "cannot reach the node" in unreachable.stderr
