"""The SDK's order defaults follow the rules: a reduce-only order may not rest
(docs/engine.md), so without an explicit time in force it is sent
immediate-or-cancel, and every other order good-till-cancel."""
from __future__ import annotations

from sequencer.core.records import PlaceOrder
from sequencer.core.rules.orders import GOOD_TILL_CANCEL, IMMEDIATE_OR_CANCEL, POST_ONLY
from sequencer.sdk import Client

KEY = "0x" + "11" * 32


def make_client() -> Client:
    client = Client("http://127.0.0.1:1", KEY)
    client._domain_separator = b"\x01" * 32  # no node: the separator is what a status call would give
    return client


async def sign(**kwargs) -> PlaceOrder:
    return await make_client().signed_order(1, False, 60_000_000_000, 10, nonce=7, expiry=10**13, **kwargs)


async def test_reduce_only_order_defaults_to_immediate_or_cancel():
    assert (await sign(reduce_only=True)).time_in_force == IMMEDIATE_OR_CANCEL


async def test_plain_order_defaults_to_good_till_cancel():
    assert (await sign()).time_in_force == GOOD_TILL_CANCEL


async def test_explicit_time_in_force_is_kept():
    assert (await sign(reduce_only=True, time_in_force="post-only")).time_in_force == POST_ONLY
