"""prover.records: the records root and its openings against the shared
vectors (tests/vectors/records_vectors.json), the frontier against the list
tree, the data framing, and the item encoding round trip."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from prover import fraud_vectors
from prover.records import (BlockEnd, BlockStart, DataError, Frontier, Noop, PendingKind,
                            compute_records_root, decode_data, decode_item, derive_records_root,
                            encode_data, encode_item, encode_record_item, prove_item, verify_item)
from prover.hashing import keccak
from sequencer.core.records import Deposit, ForcedWithdrawal, Transfer, Withdraw

VECTORS = json.loads(fraud_vectors.RECORDS_PATH.read_text())


def b(s: str) -> bytes:
    return bytes.fromhex(s[2:])


def test_vectors_are_current():
    assert fraud_vectors.targets()[fraud_vectors.RECORDS_PATH] == fraud_vectors.RECORDS_PATH.read_text()


@pytest.mark.parametrize("entry", VECTORS["lists"], ids=lambda e: f"n{e['count']}")
def test_list_vectors(entry):
    root, count = derive_records_root(b(entry["data"]))
    assert (root, count) == (b(entry["root"]), entry["count"])
    assert compute_records_root(decode_data(b(entry["data"]))) == root
    for o in entry["openings"]:
        got = verify_item(root, o["count"], b(o["item"]), o["index"], [b(s) for s in o["siblings"]])
        assert got is o["expect"]


def test_vectors_hold_good_and_bad_openings():
    expects = [o["expect"] for e in VECTORS["lists"] for o in e["openings"]]
    assert expects.count(True) > 20 and expects.count(False) > 50


@pytest.mark.parametrize("entry", VECTORS["bad_data"], ids=lambda e: e["name"])
def test_bad_data_is_refused(entry):
    with pytest.raises(DataError):
        derive_records_root(b(entry["data"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=60), max_size=80))
def test_frontier_gives_the_list_root_and_every_item_opens(items):
    frontier = Frontier()
    for item in items:
        frontier = frontier.push_hash(keccak(item))
    root = compute_records_root(items)
    assert frontier.root() == root and frontier.count == len(items)
    assert derive_records_root(encode_data(items)) == (root, len(items))
    for index in range(len(items)):
        siblings = prove_item(items, index).siblings
        assert verify_item(root, len(items), items[index], index, siblings)
        assert not verify_item(root, len(items), items[index] + b"x", index, siblings)


A = bytes(range(1, 21))
B = bytes(range(21, 41))
SIG = bytes(range(65))


@pytest.mark.parametrize("item", [
    BlockStart(7, b"\x11" * 32, 1_700_000_000_000), BlockEnd(b"\x22" * 32), Noop(b"\x33" * 32),
    Transfer(A, B, 5, 9, 10, SIG), Withdraw(A, 2**63 - 1, 0, 2**64 - 1, SIG),
    Deposit(3, A, 10**6), ForcedWithdrawal(2**64 - 1, B, 2**256 - 1),
])
def test_items_round_trip(item):
    assert decode_item(encode_item(item)) == item


def test_fields_that_do_not_fit_have_no_record_item():
    assert encode_record_item(Transfer(A, B[:3], 5, 9, 10, SIG)) is None
    assert encode_record_item(Transfer(A, B, -5, 9, 10, SIG)) is None
    assert encode_record_item(Withdraw(A, 5, 9, 10, SIG[:64])) is None
    assert encode_record_item(Deposit(0, A + b"\x00", 5)) is None
    # an inbox amount is written modulo 2**256, as the inbox chain writes it
    assert decode_item(encode_record_item(Deposit(0, A, -1))).amount == 2**256 - 1


def test_malformed_items_are_noops_and_pending_tags_raise():
    transfer = encode_item(Transfer(A, B, 5, 9, 10, SIG))
    for bad in (transfer[:-1], transfer + b"\x00", b"\x09" + transfer[1:], b"", b"\x02\x63"):
        assert decode_item(bad) == Noop(keccak(bad))
    with pytest.raises(PendingKind):
        decode_item(b"\x02\x16" + b"\x00" * 10)  # tag 22: kept for an explicit auction start, no one-step
