"""Dispute games end to end on anvil (issue 12): a node on the real Kafka broker
with its watcher, checkpointer and defender; the bridge and its dispute game
contract on anvil.

- A faulty proposer (the node's fault injection, as `isoroll devnet
  --fault-output N` sets it) posts a wrong state root; an unprivileged
  verifier (a fresh funded key, not the guardian) runs as `isoroll verifier
  --once --key ...` in a process of its own, opens a game, plays it against the
  node's defender to the one-step and wins: the wrong output and the one after
  it are deleted, the slashed bond is the verifier's, the checkpointer posts
  the honest outputs again, and a withdrawal of the deleted range is then
  claimed by the honest root.
- An honest proposer: a wrong challenger loses to the node's defender; a
  second one stops moving and is timed out by the defender after a restart of
  the node (it resumes from the chain); the output then finalizes.
"""
from __future__ import annotations

import asyncio
import json
import re

import pytest
from eth_account import Account

from nodes import wait_until
from test_l1_anvil import L1, UNIT, anvil, l1, l2_collateral  # noqa: F401  (fixtures)
from test_l1_cli import forked_isoroll  # noqa: F401  (fixture)
from l1_bridge.client import L1Reverted
from l1_bridge.deploy import PRESETS
from l1_bridge.dispute import (ACTIVE, CHALLENGER_WON, PROPOSER_WON, GameContract, GamePlayer, LocalTrace,
                               OutputTrace, OutputTraces)
from l1_bridge.exit import L1Replay
from isoroll.service import Service
from prover.hashing import keccak
from prover.trace import TraceRunner
from sequencer.executor.genesis import make_genesis_chain
from sequencer.sdk import Client

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DEVNET = PRESETS["devnet"]
TRANSFERS = 30
"""Transfers in the wrong output besides a transfer and a withdrawal (a game of a few rounds)."""


class LyingTrace(LocalTrace):
    """An honest trace whose claims are wrong from position `wrong_from` on (a
    wrong challenger); its witnesses stay the real ones."""

    def __init__(self, honest: LocalTrace, wrong_from: int) -> None:
        self.__dict__.update(honest.__dict__)
        self.claims = honest.claims[:wrong_from] + [keccak(b"lie" + c) for c in honest.claims[wrong_from:]]


def honest_traces(l1: L1) -> OutputTraces:
    replay = L1Replay(l1.client)
    genesis = make_genesis_chain(replay.ctx).state
    return OutputTraces(l1.client, TraceRunner(genesis, replay.ctx), from_block=replay.from_block)


def fresh_key(l1: L1, eth: int = 10) -> tuple[bytes, str]:
    account = Account.create()
    l1.rpc("anvil_setBalance", account.address, hex(eth * 10**18))
    return bytes(account.key), account.address


async def last_output_block(l1: L1) -> int:
    return await asyncio.to_thread(lambda: l1.client.get_output(l1.client.output_count() - 1)["l2_block"])


async def posted_through(l1: L1, head: int) -> bool:
    return await last_output_block(l1) >= head


async def test_an_unprivileged_verifier_proves_a_wrong_output_wrong(l1: L1, broker, topic, tmp_path,
                                                                   forked_isoroll):
    isoroll = forked_isoroll  # each command a process of its own (test_l1_cli.ForkServer)
    (ka, _), (kb, _) = l1.users[0], l1.users[1]
    a, b = l1.fund(ka, 1000 * UNIT), l1.fund(kb, 0)
    await asyncio.to_thread(l1.client.deposit, ka, 200 * UNIT)
    games = GameContract.of(l1.client)
    key, verifier = fresh_key(l1)
    assert verifier.lower() not in (l1.challenger.lower(), l1.operator.lower())
    chain = ["--rpc", l1.url, "--deployment", str(l1.deployment_file)]
    config = l1.node_config(broker, topic, tmp_path, checkpoint_interval_seconds=2.0)
    fault = 2
    async with Service(config, fault_output=fault) as service:
        await wait_until(lambda: _eq(l2_collateral(service, a), 200 * UNIT), timeout=30)
        await wait_until(lambda: posted_through(l1, service.node.chain.head_number), timeout=30)
        assert l1.client.output_count() == fault  # output 1 (the deposit) is honest
        async with Client(service.url, ka) as alice:
            for _ in range(TRANSFERS):  # blocks of their own: the wrong output is a few rounds deep
                await alice.transfer(b, 1 * UNIT)
            await alice.transfer(b, 30 * UNIT)
            await alice.withdraw(50 * UNIT)
            await wait_until(lambda: posted_through(l1, service.node.chain.head_number), timeout=30)
            await alice.transfer(b, 5 * UNIT)
            await wait_until(lambda: posted_through(l1, service.node.chain.head_number), timeout=30)
        outputs = l1.client.output_count()
        assert outputs >= fault + 2  # the wrong output and one after it
        honest = honest_traces(l1).get(fault)
        wrong = l1.client.live_outputs()[fault]["fields"]
        assert wrong.state_root != honest.trace.end.state_root  # the fault went on L1

        broke = Account.create()  # refused at start, with the reason, nothing sent
        code, out, err = await isoroll("verifier", "--once", "--key", "0x" + bytes(broke.key).hex(), *chain)
        assert code == 1 and f"error: key {broke.address} holds 0 ETH on L1: a dispute needs the bond" in err, err
        code, out, err = await isoroll("verifier", "--once", "--key", "0x" + key.hex(), "--bond", "0.001", *chain)
        assert code == 1 and "error: bond too small: --bond 0.001 ETH" in err, err
        assert games.game_count() == 0

        before = l1.client.eth_balance(verifier)
        code, out, err = await isoroll("verifier", "--once", "--key", "0x" + key.hex(), *chain, timeout=120)
        assert code == 2, f"stdout:\n{out}\nstderr:\n{err}"
        assert re.search(rf"^output {fault}: MISMATCH .*state_root.* \(disputed in game 0\)$", out, re.M), out
        won = re.search(rf"^game 0 on output {fault}: challenger won after (\d+) moves of ours \(([\d,]+) gas, "
                        r"([\d.]+) s\); paid ([\d.]+) ETH$", out, re.M)
        assert won, f"stdout:\n{out}\nstderr:\n{err}"
        g = games.game(0)
        assert g.status == CHALLENGER_WON and g.challenger.lower() == verifier.lower()
        assert g.hi - g.lo == 1 and g.count > 2  # decided by the one-step after a bisection
        deleted = l1.client.bridge.events.OutputsDeleted().get_logs(from_block=0)
        assert [(e["args"]["from_index"], e["args"]["previous_count"]) for e in deleted] == [(fault, outputs)]
        assert l1.client.eth_balance(verifier) - before > DEVNET.proposer_bond // 2  # bond back + the slashed one
        # the checkpointer posts the deleted range again, honestly
        await wait_until(lambda: posted_through(l1, service.node.chain.head_number), timeout=30)
        reposted = l1.client.live_outputs()[fault]["fields"]
        assert reposted.state_root != wrong.state_root  # and a verifier agrees with it (below)
        assert service.l1.services.checkpointer.last_error is None
        assert g.count >= 16 and g.depth >= 8  # at least four rounds of bisection before the one-step
        print(f"\nverifier won game 0: {won.group(1)} moves, {won.group(2)} gas, {won.group(3)} s, "
              f"{g.count} items, paid {won.group(4)} ETH")
        code, out, _ = await isoroll("verifier", "--once", *chain)
        assert code == 0 and "MISMATCH" not in out, out
        code, out, _ = await isoroll("l1", "disputes", *chain)
        assert code == 0 and re.search(rf"^game #0  output {fault}  challenger won", out, re.M), out
        code, out, _ = await isoroll("l1", "disputes", "--json", *chain)
        listed = json.loads(out)["games"]
        assert [(x["output"], x["state"], x["challenger"].lower()) for x in listed] == [
            (fault, "challenger won", verifier.lower())]
        code, out, _ = await isoroll("l1", "status", *chain)
        assert code == 0 and re.search(r"^disputes   1 games, 0 active$", out, re.M), out

    l1.advance(DEVNET.challenge_period + 1)
    replay = L1Replay(l1.client)
    replay.run()
    assert all(o.ok for o in replay.outputs)
    balance = l1.client.token_balance(a)
    assert [w.amount for w in replay.claim_withdrawals(l1.third)] == [50 * UNIT]
    assert l1.client.token_balance(a) - balance == 50 * UNIT
    assert replay.chain.state.accounts[bytes.fromhex(b[2:])].collateral == (TRANSFERS + 35) * UNIT


async def test_the_defender_beats_a_wrong_challenger_and_times_out_a_silent_one(l1: L1, broker, topic, tmp_path):
    (ka, _), (kb, _) = l1.users[0], l1.users[1]
    a, b = l1.fund(ka, 1000 * UNIT), l1.fund(kb, 0)
    await asyncio.to_thread(l1.client.deposit, ka, 100 * UNIT)
    games = GameContract.of(l1.client)
    config = l1.node_config(broker, topic, tmp_path)
    async with Service(config) as service:
        await wait_until(lambda: _eq(l2_collateral(service, a), 100 * UNIT), timeout=30)
        async with Client(service.url, ka) as alice:
            await alice.transfer(b, 10 * UNIT)
            await alice.withdraw(20 * UNIT)
        await wait_until(lambda: posted_through(l1, service.node.chain.head_number), timeout=30)
        index = l1.client.output_count() - 1
        traces = honest_traces(l1)
        events = l1.client.live_outputs()
        known = traces.get(index, events)
        lies = [OutputTrace(known.chunks, LyingTrace(known.trace, p)) for p in (len(known.trace), 3)]
        players = [GamePlayer(games, fresh_key(l1)[0]) for _ in lies]
        ids = []
        for player, lie in zip(players, lies):
            game, _ = games.challenge(player.signer, index, traces.fields(index, events),
                                      traces.fields(index - 1, events), lie.chunks[0], games.challenge_bond())
            ids.append(game)
        wrong, silent = ids

        async def played_out() -> bool:
            try:
                await asyncio.to_thread(players[0].play, wrong, lies[0])
            except L1Reverted:  # the defender's step landed first
                pass
            return games.game(wrong).status != ACTIVE
        await wait_until(played_out, timeout=60, interval=0.2)
        assert games.game(wrong).status == PROPOSER_WON  # the node's defender answered every move
        await wait_until(lambda: asyncio.to_thread(lambda: games.game(silent).depth > 0), timeout=30)
        assert games.game(silent).status == ACTIVE  # revealed and bisected; the challenger never answers
    # the node is down while the period ends: the silent game holds the output
    l1.advance(DEVNET.challenge_period + 1)
    assert not l1.client.get_output(index)["is_final"]
    l1.advance(games.clock() + 1)
    async with Service(config) as service:  # restarted: its defender resumes from the chain
        def is_recorded_over() -> bool:  # the defender's record closes after its timeout's receipt
            services = service.l1.services  # (the chain shows the game over a moment before)
            return services is not None and silent in services.defender.records \
                and services.defender.records[silent].ended is not None
        await wait_until(lambda: asyncio.to_thread(is_recorded_over), timeout=30)
        records = service.l1.services.defender.records
        assert games.game(silent).status == PROPOSER_WON == records[silent].status
        assert l1.client.get_output(index)["is_final"]
        assert records[silent].moves == 1  # the timeout


async def _eq(coro, value) -> bool:
    return (await coro) == value
