"""ForcedClose (record tag 50) is a pending kind of the one-step
(docs/fraud-proofs.md): the Python reference refuses to make an item of it
(PendingKind) and onestep.vy reverts "pending" on a tag-50 record item,
instead of taking it as a NOOP."""
from __future__ import annotations

import msgspec
import pytest

from prover.records import ITEM_RECORD, PENDING_TAGS, PendingKind, compute_block_items, decode_item
from sequencer.core.encoding import encode_block, encode_record
from sequencer.core.records import Block, ForcedClose
from test_onestep_vectors import VECTORS, b, call_apply, onestep  # noqa: F401  (the module's fixture)

pytestmark = pytest.mark.evm

T = 1_700_000_000_000
A = bytes(range(1, 21))
ITEM = bytes((ITEM_RECORD, 50)) + (0).to_bytes(8, "big") + A + (1).to_bytes(32, "big")


def test_python_reference_treats_forced_close_as_pending():
    assert ForcedClose.__struct_config__.tag == 50 and 50 in PENDING_TAGS
    raw = encode_record(ForcedClose(0, A, 1))
    item = compute_block_items(encode_block(Block(1, b"\x00" * 32, T, (msgspec.Raw(raw),))))[1]
    assert item == ITEM  # posted packed (prover.records.RECORD_LAYOUTS)
    for pending in (item, ITEM):
        with pytest.raises(PendingKind):
            decode_item(pending)


def test_onestep_reverts_pending_on_a_forced_close_item(onestep):  # noqa: F811
    case = next(c for c in VECTORS["cases"] if c["name"] == "noop")
    call_apply(onestep, case)                                  # pre: the same case with its own item applies
    with pytest.raises(Exception, match="pending"):
        call_apply(onestep, dict(case, item="0x" + ITEM.hex()))
