"""The SDK with several node URLs (Client(..., fallback_urls=...)): a tx goes to
the next node when one cannot be reached, and sending the same signed tx again
never applies it twice: a node that has it in a block answers nonce_used and
the SDK returns that block's receipt."""
from __future__ import annotations

import httpx
import pytest

from nodes import free_port, logged_record_hashes, make_config
from sequencer.executor.genesis import get_dev_accounts
from sequencer.node.service import Service
from sequencer.sdk import ApiError, Client

pytestmark = pytest.mark.kafka


async def test_submit_moves_on_to_the_next_node_and_never_applies_a_tx_twice(broker, topic, tmp_path, api_port):
    config = make_config(broker, topic, tmp_path, api_port)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    (key, _), (_, peer) = get_dev_accounts(2)
    async with Service(config) as service:
        async with Client(service.url, key) as signer:
            already_in = await signer.signed_transfer(peer, 5)
            first = await signer.submit(already_in)
            new_tx = await signer.signed_transfer(peer, 7)
        async with Client(dead, key, fallback_urls=[service.url]) as roaming:
            acked = await roaming.submit(new_tx)
            assert acked["status"] == "ok"
        async with Client(dead, key, fallback_urls=[service.url]) as roaming:
            # As if the attempt at the dead node had got it into a block: the
            # resend is answered with the receipt of that block, not applied again.
            again = await roaming.submit(already_in)
            assert again["hash"] == first["hash"] and again["block"] == first["block"]
            # A tx sent once (no earlier attempt of this call) keeps its error.
            with pytest.raises(ApiError) as raised:
                await roaming.submit(already_in)
            assert raised.value.code == "nonce_used"
        async with Client(dead, key) as alone:
            with pytest.raises(httpx.ConnectError):
                await alone.submit(already_in)
    hashes = await logged_record_hashes(config)
    assert sorted(hashes) == sorted(bytes.fromhex(r["hash"][2:]) for r in (first, acked))
