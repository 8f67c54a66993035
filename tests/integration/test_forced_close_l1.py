"""A forceClose no longer stalls the inbox, through the real node on the real
broker, the real L1 watcher and the real bridge on py-evm.

Before the ForcedClose rule the watcher stopped at inbox kind 3: every entry
after it (a deposit) was never credited and, once the grace ran out, anyone
could freeze the bridge.  Now the watcher copies it as a ForcedClose record,
the L2's inbox chain equals the bridge's after it, the deposit filed after it
is credited, and once a live output covers it nobody can freeze."""
from __future__ import annotations

import pytest

from nodes import make_config
from sequencer.core.records import Deposit, ForcedClose
from sequencer.core.state import is_empty_position

pytestmark = [pytest.mark.kafka, pytest.mark.evm]

BTC = 1


async def test_a_forced_close_is_served_and_the_deposit_after_it_is_credited(broker, topic, tmp_path, api_port):
    pytest.importorskip("eth_tester")
    from evm.bridge_env import TEST_PRESET, UNIT, Reverted, deploy_env
    from l1_bridge.checkpointer import Checkpointer
    from l1_bridge.client import BridgeClient
    from l1_bridge.watcher import InboxWatcher
    from sequencer.node.service import Service

    env = deploy_env()
    client = BridgeClient(env.w3, env.d.bridge, deployment=env.d)
    alice, mallory = env.users[0], env.users[1]
    alice_b, mallory_b = bytes.fromhex(alice[2:]), bytes.fromhex(mallory[2:])
    config = make_config(broker, topic, tmp_path, api_port)
    async with Service(config) as service:
        node = service.node
        watcher = InboxWatcher(client, node, confirmations=0, poll_interval_s=0.1)
        checkpointer = Checkpointer(client, node, env.proposer)
        # pre: nothing of the L1 inbox on the L2
        assert node.chain.state.globals.inbox_count == 0
        first = env.deposit(alice, 5 * UNIT)
        closed = env.force_close(mallory, BTC)            # mallory can only file for herself (msg.sender)
        after = env.deposit(alice, 7 * UNIT)
        assert (first, closed, after) == (0, 1, 2)
        assert client.get_forced_request(closed)["kind"] == 3

        result = await watcher.poll_once()
        # op: the watcher copies all three, the close as a ForcedClose of the sender's account
        assert watcher.last_error is None
        assert [type(r) for r in result.submitted] == [Deposit, ForcedClose, Deposit]
        assert result.submitted[1] == ForcedClose(closed, mallory_b, BTC)
        await node.builder.settled()
        g = node.chain.state.globals
        # post: the deposit after the close is credited, the chains agree
        assert g.inbox_count == 3 == client.inbox_count()
        assert g.inbox_hash == client.inbox_hash_at(3)
        assert node.chain.state.accounts[alice_b].collateral == 12 * UNIT
        # no position and no order ever placed: a served no-op (rules v2 write an epoch of 0: no leaf)
        assert is_empty_position(node.chain.state.positions.get((mallory_b, BTC)))

        # the request is covered by a live output: it can never freeze the bridge
        proposal = await checkpointer.poll_once(force=True)
        assert proposal is not None, checkpointer.last_error
        assert proposal.fields.inbox_count == 3
        request = client.get_forced_request(closed)
        assert request["covered_by_live_output"]
        env.travel(TEST_PRESET.forced_grace + 1)
        assert not client.can_freeze(closed)
        with pytest.raises(Reverted):
            env.send(env.bridge.functions.freeze(closed), env.users[2])
        assert not env.status()["frozen"]
