"""The one-step's three registries agree (docs/fraud-proofs.md, "Family
contracts"): the record tags with a one-step (prover.records.ONESTEP_TAGS),
the witness planners (prover.trace.PLANNERS) and the family contracts that
onestep.vy routes tags to (prover.families.ONESTEP_FAMILIES).  A tag in one
and not the others is either a kind the L1 reverts "pending" on while Python
builds a witness for it (an honest step that cannot be made), or a kind L1
re-executes while Python calls it pending (a position nobody defends)."""
from __future__ import annotations

import msgspec
import pytest

from prover import records
from prover.families import ONESTEP_FAMILIES
from prover.records import KNOWN_TAGS, ONESTEP_TAGS, PENDING_TAGS, RECORD_BY_TAG, RECORD_LAYOUTS
from prover.trace import PLANNERS
from sequencer.core.records import RECORD_TYPES

OWN_TAGS = {1, 2, 48, 49}
"""Transfer, Withdraw, Deposit, ForcedWithdrawal: onestep.vy re-executes them itself."""


def tag_of(cls: type) -> int:
    return cls.__struct_config__.tag


def test_every_routed_tag_has_a_planner_and_a_layout_and_nothing_else_does():
    routed = [tag for _, tags, _ in ONESTEP_FAMILIES for tag in tags]
    assert len(routed) == len(set(routed)), "a tag routed to two families"
    assert set(routed) == set(ONESTEP_TAGS) - OWN_TAGS
    assert {tag_of(cls) for cls in PLANNERS} == set(routed)
    assert set(ONESTEP_TAGS) <= {tag_of(cls) for cls in RECORD_LAYOUTS}


def test_pending_is_exactly_what_has_no_one_step():
    assert KNOWN_TAGS == {tag_of(cls) for cls in RECORD_TYPES} | {22}
    assert PENDING_TAGS == KNOWN_TAGS - ONESTEP_TAGS and not PENDING_TAGS & ONESTEP_TAGS
    assert all(RECORD_BY_TAG[tag] in RECORD_LAYOUTS for tag in ONESTEP_TAGS)


def test_every_record_kind_has_a_packed_item(monkeypatch):
    """The checkpointer posts every record as its packed item: a kind without
    one could not be replayed from L1 data, so posting refuses it by name."""
    assert set(RECORD_TYPES) <= set(RECORD_LAYOUTS)

    class Unposted(msgspec.Struct, frozen=True, array_like=True, tag=99):
        x: int

    monkeypatch.setattr(records, "decode_record", lambda raw: Unposted(1))
    with pytest.raises(ValueError, match="Unposted has no packed item layout"):
        records.compute_record_item(b"\x91\x01")
