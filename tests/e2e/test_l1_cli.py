"""`isoroll l1 ...` as a user runs it: each command a subprocess
(`python -m isoroll.cli l1 ...`) against the anvil and the node (with its
L1 watcher and checkpointer, on the real Kafka broker) of test_l1_anvil.py.

The node's checkpointer is given an interval it never reaches, and the test
posts the one checkpoint it needs itself (checkpointer.poll_once(force=True)),
so "waiting for a checkpoint" is observed without a race.  L1 time moves with
evm_increaseTime / evm_mine only.

Each command of the long walk-through is a process of its own forked from a
process that imported the CLI once (tests/e2e/cli_forkserver.py: it runs
isoroll/cli.py as ``__main__`` as ``python -m`` does), which spares ~1 s of
Python start and imports per command (test_dispute_anvil.py and
test_devnet_censor.py take the same fixture); the unreachable-L1 test starts
the CLI with ``python -m isoroll.cli`` itself.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from kafka_fixtures import free_port
from nodes import wait_until
from test_l1_anvil import L1, REPO, UNIT, anvil, l1, l2_collateral  # noqa: F401  (fixtures)
from l1_bridge.deploy import PRESETS
from isoroll.service import Service

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DEVNET = PRESETS["devnet"]


def cli_env() -> dict[str, str]:
    """No ISOROLL_* from the environment reaches the CLI: every setting is a flag."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ISOROLL_")}


async def isoroll(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    """`python -m isoroll.cli ...` in a process of its own: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "isoroll.cli", *args, cwd=REPO, env=cli_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()


def ok_of(run):
    """``ok(*args)``: run the command with ``run`` (isoroll or forked_isoroll), assert it
    exited 0, return its stdout."""
    async def ok(*args: str) -> str:
        code, out, err = await run(*args)
        assert code == 0, f"isoroll {' '.join(args)} exited {code}\nstdout:\n{out}\nstderr:\n{err}"
        return out
    return ok


ok = ok_of(isoroll)


class ForkServer:
    """tests/e2e/cli_forkserver.py: each command a process of its own, forked
    from one that imported the CLI (the same code as `python -m isoroll.cli`)."""

    def __init__(self, proc: asyncio.subprocess.Process, tmp: Path) -> None:
        self.proc, self.tmp, self.runs = proc, tmp, 0

    @classmethod
    async def start(cls, tmp: Path) -> "ForkServer":
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).with_name("cli_forkserver.py")), cwd=REPO, env=cli_env(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        return cls(proc, tmp)

    async def _reply(self) -> dict:
        line = await self.proc.stdout.readline()
        assert line, f"the CLI fork server ended (exit {await self.proc.wait()})"
        return json.loads(line)

    async def run(self, *args: str, timeout: float = 30) -> tuple[int, str, str]:
        self.runs += 1
        out, err = self.tmp / f"{self.runs}.out", self.tmp / f"{self.runs}.err"
        self.proc.stdin.write(json.dumps({"args": args, "stdout": str(out), "stderr": str(err)}).encode() + b"\n")
        await self.proc.stdin.drain()
        pid = (await self._reply())["pid"]
        try:
            code = (await asyncio.wait_for(self._reply(), timeout))["code"]
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            await self._reply()
            raise
        return code, out.read_text(), err.read_text()

    async def close(self) -> None:
        self.proc.stdin.close()
        await self.proc.wait()


@pytest.fixture
async def forked_isoroll(tmp_path_factory):
    """`isoroll ...` in a process of its own, forked (ForkServer): (exit code, stdout, stderr)."""
    server = await ForkServer.start(tmp_path_factory.mktemp("cli"))
    try:
        yield server.run
    finally:
        await server.close()


def withdrawal_state(status_out: str, amount: str) -> str:
    """The state column of the one withdrawal row of `l1 status` (amount as printed)."""
    rows = re.findall(rf"^  #\d+\s+{re.escape(amount)}\s+L2 block \d+\s+(.*)$", status_out, re.M)
    assert len(rows) == 1, status_out
    return rows[0]


def seconds(text: str) -> int:
    """'1m5s' -> 65."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([dhms])", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * units[u] for n, u in parts)


async def test_cli_deposit_withdraw_status_claim_force_withdraw(l1: L1, broker, topic, tmp_path, forked_isoroll):
    """deposit -> credited on L2 (L1 balance down by exactly the amount) ->
    withdraw -> status: waiting for a checkpoint -> in challenge period (time
    left) -> claim refused -> ready to claim -> claim (L1 balance up by exactly
    the amount) -> claimed; then, the operator gone, force-withdraw -> status
    shows the grace left; `isoroll verifier --once` finds the outputs right;
    a late deposit, freeze (refused inside the grace), status FROZEN, escape
    (paid exactly the final L2 balance; a second escape refused), refund."""
    isoroll, ok = forked_isoroll, ok_of(forked_isoroll)

    key, _ = l1.users[0]
    address = l1.fund(key, 1000 * UNIT)
    account = address.lower()
    chain = ["--rpc", l1.url, "--deployment", str(l1.deployment_file)]
    signer = ["--key", "0x" + key.hex()]
    balance = lambda: l1.client.token_balance(address)  # noqa: E731

    config = l1.node_config(broker, topic, tmp_path, checkpoint_interval_seconds=3600.0)
    async with Service(config) as service:
        node = ["--url", service.url]

        before = balance()
        out = await ok("l1", "deposit", "300", *chain, *signer)
        assert re.search(r"deposited 300 \(inbox index 0\)", out), out
        assert before - balance() == 300 * UNIT
        await wait_until(lambda: _eq(l2_collateral(service, address), 300 * UNIT), timeout=20)

        out = await ok("l1", "withdraw", "40", *node, *signer)
        assert "withdrawal requested on L2" in out
        state = service.node.chain.state
        await wait_until(lambda: _true(any(w.account.hex() == account[2:] for w in state.withdrawals)), timeout=10)
        assert await l2_collateral(service, address) == 260 * UNIT

        status = await ok("l1", "status", *chain, *signer, *node)
        assert f"account    {account}   L1 token balance 700" in status, status
        assert withdrawal_state(status, "40") == "waiting for a checkpoint"

        proposal = await service.l1.services.checkpointer.poll_once(force=True)
        assert proposal is not None and [w.amount for w in proposal.withdrawals] == [40 * UNIT]
        output = proposal.output_index

        status = await ok("l1", "status", *chain, *signer, *node)
        m = re.fullmatch(rf"in challenge period \(output {output}\), (\w+) left", withdrawal_state(status, "40"))
        assert m, status
        assert 0 < seconds(m.group(1)) <= DEVNET.challenge_period
        assert re.search(rf"^  #{output}\s+L2 block {proposal.l2_block}\s+inbox 1\s+in challenge period, \w+ left$",
                         status, re.M), status

        code, out, err = await isoroll("l1", "claim", *chain, *signer)
        assert code == 1, (out, err)
        assert re.search(rf"^error: withdrawal #\d+ \(40\) cannot be claimed yet: output {output} is in its "
                         r"challenge period, \w+ left$", err, re.M), err
        assert "Traceback" not in err
        assert balance() == 700 * UNIT

        l1.advance(DEVNET.challenge_period + 1)
        status = await ok("l1", "status", *chain, *signer, *node)
        assert withdrawal_state(status, "40") == f"ready to claim (output {output}): isoroll l1 claim"

        out = await ok("l1", "claim", *chain, *signer)
        assert re.search(rf"^claimed withdrawal #\d+: 40 to {account}$", out, re.M), out
        assert balance() == 740 * UNIT  # exactly the amount back

        status = await ok("l1", "status", *chain, *signer, *node)
        assert withdrawal_state(status, "40") == "claimed"
        assert "L1 token balance 740" in status

    # the operator is gone: a verifier round from L1 data alone agrees with its outputs
    code, out, err = await isoroll("verifier", "--once", *chain)
    assert code == 0 and re.search(rf"^output {output}: ok$", out, re.M), (out, err)
    assert "no challenger key" in err
    # a forced withdrawal through the L1 inbox
    out = await ok("l1", "force-withdraw", "25", *chain, *signer)
    m = re.search(r"forced withdrawal requested \(inbox index (\d+)\); the operator has (\w+) to cover it", out)
    assert m and m.group(1) == "1", out
    assert 0 < seconds(m.group(2)) <= DEVNET.forced_grace
    status = await ok("l1", "status", *chain, *signer, "--url", f"http://127.0.0.1:{free_port()}")
    assert "inbox      2 entries, 1 open forced requests" in status, status
    # The devnet grace is 10 s of anvil's real-time clock: on a slow machine it may already be over
    # when this status runs, which the CLI must then say instead.
    m = re.search(rf"^  inbox #1\s+{account}\s+25  waiting for the operator, grace (\w+) left$", status, re.M)
    over = re.search(rf"^  inbox #1\s+{account}\s+25  grace over: the bridge can be frozen", status, re.M)
    assert m or over, status
    if m:
        assert 0 < seconds(m.group(1)) <= DEVNET.forced_grace

    # The operator stays gone: a deposit it never takes, the grace passes, a third party
    # freezes, the account escapes with its last final balance, the deposit is refunded.
    out = await ok("l1", "deposit", "7", *chain, *signer)
    assert re.search(r"deposited 7 \(inbox index 2\)", out), out
    other_key, _ = l1.users[1]
    l1.fund(other_key, UNIT)  # gas money: a third party pays for the freeze, the escape and the refund
    third = ["--key", "0x" + other_key.hex()]
    frozen_early = False
    if m:
        code, out, err = await isoroll("l1", "freeze", *chain, *third)
        # refused inside the grace; on a loaded machine the 10 s may have run out since the status
        frozen_early = code == 0 and l1.client.status()["frozen"]
        assert frozen_early or (code == 1 and "no forced request allows a freeze now" in out), (out, err)
    if not frozen_early:
        l1.advance(DEVNET.forced_grace + 1)
        out = await ok("l1", "freeze", *chain, *third)
    assert re.search(rf"^bridge frozen \(forced request 1\); escapes against output {output}$", out, re.M), out
    status = await ok("l1", "status", *chain, *signer)
    assert re.search(rf"^FROZEN\s+since L1 time \d+; escapes against output {output}", status, re.M), status
    before = balance()
    out = await ok("l1", "escape", "--account", account, *chain, *third)  # anyone may pay the gas
    assert re.search(rf"^{account} is owed 260 by the last final state", out, re.M), out
    assert re.search(rf"^registered {account}: owed 260; every registered account is paid the same fraction "
                     r"once the window ends in (\w+)", out, re.M), out
    assert balance() == before  # registered, not paid yet
    code, out, err = await isoroll("l1", "escape", "--account", account, *chain, *third)
    assert code != 0 and "is registered (owed 260000000)" in err and "Traceback" not in err, (out, err)
    status = await ok("l1", "status", *chain, *signer)
    assert re.search(r"^escapes\s+pool [\d.,]+ \S+, registered 260; registration open", status, re.M), status
    l1.advance(DEVNET.escape_window + 1)
    out = await ok("l1", "escape", "--account", account, *chain, *third)
    assert re.search(rf"^escaped {account}: paid 260$", out, re.M), out
    assert balance() - before == 260 * UNIT  # the L2 balance of the final output, exactly
    code, out, err = await isoroll("l1", "escape", "--account", account, *chain, *third)
    assert code != 0 and "already escaped" in err and "Traceback" not in err, (out, err)
    out = await ok("l1", "refund", *chain, *third)
    assert re.search(rf"^refunded deposit #2: 7 to {account}$", out, re.M), out
    assert balance() - before == 267 * UNIT
    out = await ok("l1", "refund", *chain, *third)
    assert out.strip() == "no refundable deposit", out


async def test_cli_unreachable_l1_is_a_clear_error(l1: L1):
    """A dead L1 port: one line naming the URL, exit 1, no traceback (a read and a transaction)."""
    dead = f"http://127.0.0.1:{free_port()}"
    key, _ = l1.users[0]
    chain = ["--rpc", dead, "--deployment", str(l1.deployment_file)]
    results = await asyncio.gather(isoroll("l1", "status", *chain),
                                   isoroll("l1", "deposit", "5", *chain, "--key", "0x" + key.hex()))
    for code, out, err in results:
        assert code == 1, (out, err)
        assert err.startswith(f"error: L1 node at {dead} is not reachable: cannot "), err
        assert "Traceback" not in err


async def _eq(coro, value) -> bool:
    return (await coro) == value


async def _true(value) -> bool:
    return value
