"""Helpers for node tests: configs, replay from the log, signed tx bodies."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from kafka_fixtures import free_port  # noqa: F401  (re-exported for tests)

from sequencer.core import eip712
from sequencer.core.encoding import decode_block
from sequencer.core.records import Transfer
from sequencer.core.signing import sign_digest
from sequencer.log.kafka import BlockReader
from sequencer.executor.chain import Chain
from sequencer.executor.genesis import build_genesis, get_dev_accounts
from sequencer.node.config import NodeConfig, load_allocations
from sequencer.node.node import make_context, make_log_config
from sequencer.sdk import Client


def make_config(broker, topic, tmp_path, port, **overrides) -> NodeConfig:
    values = dict(kafka_bootstrap_servers=broker.bootstrap, kafka_topic=topic, data_dir=str(tmp_path / "node"),
                  api_port=port, genesis_dev_accounts=4, kafka_commit_timeout_s=3.0, log_format="text")
    values.update(overrides)
    return NodeConfig(**values)


async def read_log(config: NodeConfig) -> list:
    async with BlockReader(make_log_config(config), 0) as reader:
        end = await reader.end_offset()
        out = []
        while await reader.position() < end:
            out += await reader.read(timeout_ms=500)
        return out


async def count_committed(config, at_least: int, timeout_s: float = 10.0) -> int:
    """Messages a read_committed reader sees, once there are ``at_least``: a
    block acknowledged a moment ago may not be visible yet (the broker writes
    the transaction's commit markers after the commit returns)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        count = len(await read_log(config))
        if count >= at_least or asyncio.get_running_loop().time() > deadline:
            return count
        await asyncio.sleep(0.1)


async def replay_fresh(config: NodeConfig) -> Chain:
    """A fresh executor: genesis + every committed message of the topic."""
    chain = Chain(build_genesis(load_allocations(config)), make_context(config))
    for message in await read_log(config):
        chain.apply_message(message.offset, message.value, message.schema)
    return chain


async def logged_record_hashes(config: NodeConfig) -> list[bytes]:
    from sequencer.core.encoding import compute_record_hash
    hashes = []
    for message in await read_log(config):
        try:
            block = decode_block(message.value)
        except Exception:
            continue
        hashes += [compute_record_hash(raw) for raw in block.records]
    return hashes


async def run_cli(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``isoroll ARGS`` in a subprocess, off the
    event loop, with no ISOROLL_* setting of this process leaking into it."""
    def run():
        env = {k: v for k, v in os.environ.items() if not k.startswith("ISOROLL_")}
        proc = subprocess.run([sys.executable, "-m", "isoroll.cli", *args], capture_output=True, text=True,
                              env=env, timeout=60)
        return proc.returncode, proc.stdout, proc.stderr
    return await asyncio.to_thread(run)


def dev_clients(url: str, n: int = 4) -> list[Client]:
    return [Client(url, key) for key, _ in get_dev_accounts(n)]


def signed_transfer_body(key: bytes, account: bytes, to: bytes, amount: int, nonce: int, expiry: int,
                         domain: eip712.Domain) -> dict:
    record = Transfer(account, to, amount, nonce, expiry, b"")
    digest = eip712.compute_digest(eip712.compute_domain_separator(domain), "Transfer", record)
    sig = sign_digest(digest, key)
    return {"type": "Transfer", "message": {"account": "0x" + account.hex(), "to": "0x" + to.hex(),
                                            "amount": amount, "nonce": nonce, "expiry": expiry},
            "signature": "0x" + sig.hex()}


async def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


def start_node_process(config: NodeConfig, log_path: Path, **env_overrides: str) -> subprocess.Popen:
    """`isoroll node` as a process of its own (so it can be killed with SIGKILL)."""
    env = dict(os.environ, ISOROLL_KAFKA_BOOTSTRAP_SERVERS=config.kafka_bootstrap_servers,
               ISOROLL_KAFKA_TOPIC=config.kafka_topic, ISOROLL_DATA_DIR=config.data_dir,
               ISOROLL_API_PORT=str(config.api_port), ISOROLL_GENESIS_DEV_ACCOUNTS=str(config.genesis_dev_accounts),
               ISOROLL_SEQUENCER_ID=config.sequencer_id, ISOROLL_SNAPSHOT_INTERVAL_BLOCKS="5",
               ISOROLL_LOG_FORMAT="text", **env_overrides)
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "isoroll.cli", "node"], env=env, stdout=log, stderr=log)


def kill_9(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


async def wait_ready(url: str, timeout: float = 60) -> None:
    async def ready():
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(url + "/readyz")).status_code == 200
        except httpx.HTTPError:
            return False
    await wait_until(ready, timeout=timeout, interval=0.1)
