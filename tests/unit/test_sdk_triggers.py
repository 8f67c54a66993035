"""The SDK's and the CLI's trigger, modify and schedule-cancel helpers: the
signed records recover to the account under the domain (so the node's rule
would accept them), the defaults (a trigger is reduce-only), and the CLI's
parsing of kinds, durations and times (bad input is a clear error)."""
from __future__ import annotations

import pytest

from sequencer.cli_trading import parse_duration_ms, parse_time_ms
from sequencer.core import eip712, signing
from sequencer.core.records import ModifyOrder, PlaceTrigger, ScheduleCancel
from sequencer.sdk import Client, parse_tpsl

KEY = "0x" + "22" * 32
SEPARATOR = b"\x02" * 32


def make_client() -> Client:
    client = Client("http://127.0.0.1:1", KEY)
    client._domain_separator = SEPARATOR  # no node: the separator is what a status call would give
    return client


def recovers_to_account(record) -> bool:
    digest = eip712.compute_digest(SEPARATOR, eip712.get_primary_type(record), record)
    return signing.get_recover("coincurve")(digest, record.signature) == record.account


async def test_a_trigger_is_signed_reduce_only_by_default():
    record = await make_client().signed_trigger(1, False, 58_000_000_000, 57_000_000_000, 10_000, nonce=5,
                                                expiry=10**13)
    assert isinstance(record, PlaceTrigger) and record.reduce_only and record.tpsl == 2
    assert recovers_to_account(record)
    opening = await make_client().signed_trigger(1, True, 62_000_000_000, 63_000_000_000, 10_000, tpsl="tp",
                                                 reduce_only=False, nonce=6, expiry=10**13)
    assert (opening.tpsl, opening.reduce_only) == (1, False) and recovers_to_account(opening)


async def test_modify_and_schedule_cancel_are_signed_by_the_account():
    client = make_client()
    modify = await client.signed_modify(5, 59_000_000_000, 20_000, nonce=8, expiry=10**13)
    schedule = await client.signed_schedule_cancel(0, nonce=9, expiry=10**13)
    assert isinstance(modify, ModifyOrder) and isinstance(schedule, ScheduleCancel)
    assert recovers_to_account(modify) and recovers_to_account(schedule)
    assert client.to_request(schedule)["message"]["cancelAt"] == 0


@pytest.mark.parametrize("text,value", [("tp", 1), ("SL", 2), ("take-profit", 1), ("stop-loss", 2), (1, 1), (2, 2)])
def test_tpsl_names(text, value):
    assert parse_tpsl(text) == value


@pytest.mark.parametrize("bad", ["stop", 0, 3])
def test_a_bad_tpsl_is_refused(bad):
    with pytest.raises(ValueError):
        parse_tpsl(bad)


@pytest.mark.parametrize("text,ms", [("30s", 30_000), ("5m", 300_000), ("2h", 7_200_000), ("1d", 86_400_000),
                                     ("1.5s", 1_500), ("250ms", 250), ("60", 60_000)])
def test_durations(text, ms):
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["soon", "-5s", "0s"])
def test_a_bad_duration_is_a_clear_error(bad):
    with pytest.raises(SystemExit, match="duration|positive"):
        parse_duration_ms(bad)


def test_times():
    assert parse_time_ms("1795611165518") == 1795611165518
    assert parse_time_ms("2026-12-02T08:00:00Z") == 1796198400000
    assert parse_time_ms("2026-12-02T08:00:00") == 1796198400000  # UTC when no zone is named
    assert parse_time_ms("2026-12-02T09:00:00+01:00") == 1796198400000
    with pytest.raises(SystemExit, match="not a time"):
        parse_time_ms("tomorrow")
