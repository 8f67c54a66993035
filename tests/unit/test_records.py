"""The log encoding: round trips, pinned bytes, forward compatibility, bad bytes."""
from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from sequencer.core import encoding as E, records as R
from sequencer.core.hashing import keccak

A = bytes(range(1, 21))
B = bytes(range(101, 121))
SIG = bytes(range(65))
S = SIG.hex()

# One instance of every record kind and its exact msgpack bytes.  If one of these
# fails, the log format changed: old logs no longer replay to the same hashes.
# Change the format only by appending defaulted fields (docs/log-format.md).
PINNED = [
    (R.Transfer(A, B, 1_000_000, 1_700_000_000_000, 1_700_000_060_000, SIG),
     f"9701c4140102030405060708090a0b0c0d0e0f1011121314c41465666768696a6b6c6d6e6f707172737475767778ce000f4240cf0000018bcfe56800cf0000018bcfe65260c441{S}"),
    (R.Withdraw(A, 2_500_000, 7, 1_700_000_060_000, SIG),
     f"9602c4140102030405060708090a0b0c0d0e0f1011121314ce002625a007cf0000018bcfe65260c441{S}"),
    (R.AdjustMargin(A, 3, -1_000_000, 8, 1_700_000_060_000, SIG),
     f"9703c4140102030405060708090a0b0c0d0e0f101112131403d2fff0bdc008cf0000018bcfe65260c441{S}"),
    (R.PlaceOrder(A, 1, True, 65_000_000_000, 25, 10, 0, False, 9, 1_700_000_060_000, SIG),
     f"9c04c4140102030405060708090a0b0c0d0e0f101112131401c3cf0000000f224d4a00190a00c209cf0000018bcfe65260c441{S}"),
    (R.CancelOrder(A, 9, 10, 1_700_000_060_000, SIG),
     f"9605c4140102030405060708090a0b0c0d0e0f1011121314090acf0000018bcfe65260c441{S}"),
    (R.Trade(1, A, 9, B, 4, 65_000_000_000, 25),
     "981001c4140102030405060708090a0b0c0d0e0f101112131409c41465666768696a6b6c6d6e6f70717273747576777804cf0000000f224d4a0019"),
    (R.FundingTick(1, -125, 1_700_000_000_000),
     "941101d083cf0000018bcfe56800"),
    (R.Liquidate(A, 1, ((A, 7),)),
     "9412c4140102030405060708090a0b0c0d0e0f1011121314019192c4140102030405060708090a0b0c0d0e0f101112131407"),
    (R.OraclePrice(1, 65_000_000_000, 1_700_000_000_000, (SIG, SIG)),
     f"952001cf0000000f224d4a00cf0000018bcfe5680092c441{S}c441{S}"),
    (R.Deposit(0, A, 10_000_000),
     "943000c4140102030405060708090a0b0c0d0e0f1011121314ce00989680"),
    (R.ForcedWithdrawal(1, B, 2**64 - 1),
     "943101c41465666768696a6b6c6d6e6f707172737475767778cfffffffffffffffff"),
    (R.ForcedClose(2, A, 1),
     "943202c4140102030405060708090a0b0c0d0e0f101112131401"),
    (R.PlaceTrigger(A, 1, False, 55_000_000_000, 54_000_000_000, 25, 10, 2, True, 11, 1_700_000_060_000, SIG),
     f"9d09c4140102030405060708090a0b0c0d0e0f101112131401c2cf0000000cce416600cf0000000c92a69c00190a02c30bcf0000018bcfe65260c441{S}"),
    (R.ModifyOrder(A, 9, 64_000_000_000, 50, 12, 1_700_000_060_000, SIG),
     f"980ac4140102030405060708090a0b0c0d0e0f101112131409cf0000000ee6b28000320ccf0000018bcfe65260c441{S}"),
    (R.ScheduleCancel(A, 1_700_000_100_000, 13, 1_700_000_060_000, SIG),
     f"960bc4140102030405060708090a0b0c0d0e0f1011121314cf0000018bcfe6eea00dcf0000018bcfe65260c441{S}"),
    (R.TriggerFire(A, 11),
     "9313c4140102030405060708090a0b0c0d0e0f10111213140b"),
    (R.ScheduledCancelAll(B),
     "9214c41465666768696a6b6c6d6e6f707172737475767778"),
    (R.VaultDeposit(A, 100_000_000, 99_000_000, 11, 1_700_000_060_000, SIG),
     f"9706c4140102030405060708090a0b0c0d0e0f1011121314ce05f5e100ce05e69ec00bcf0000018bcfe65260c441{S}"),
    (R.VaultWithdraw(A, 50_000_000, 49_000_000, 12, 1_700_000_060_000, SIG),
     f"9707c4140102030405060708090a0b0c0d0e0f1011121314ce02faf080ce02ebae400ccf0000018bcfe65260c441{S}"),
    (R.VaultUnwind(1, 5_000_000, 53_955_000_000),
     "941501ce004c4b40cf0000000c8ff7f6c0"),
    (R.AuctionBid(A, A, 1, 10_000, 54_000_000_000, 5, 13, 1_700_000_060_000, SIG),
     f"9a08c4140102030405060708090a0b0c0d0e0f1011121314c4140102030405060708090a0b0c0d0e0f101112131401cd2710cf0000000c92a69c00050dcf0000018bcfe65260c441{S}"),
    (R.AuctionEnd(A, 1),
     "9317c4140102030405060708090a0b0c0d0e0f101112131401"),
    # [24, account, market, [counterparty, ...]]: tag 24 (rules v3), two 20-byte counterparties
    (R.Deleverage(A, 1, (B, A[::-1])),
     "9418c4140102030405060708090a0b0c0d0e0f10111213140192c41465666768696a6b6c6d6e6f707172737475767778"
     "c41414131211100f0e0d0c0b0a090807060504030201"),
]
PINNED_BLOCK = (
    "9401c4200000000000000000000000000000000000000000000000000000000000000000cf0000018bcfe5680094"
    f"9701c4140102030405060708090a0b0c0d0e0f1011121314c41465666768696a6b6c6d6e6f707172737475767778ce000f4240cf0000018bcfe56800cf0000018bcfe65260c441{S}"
    f"9602c4140102030405060708090a0b0c0d0e0f1011121314ce002625a007cf0000018bcfe65260c441{S}"
    "943000c4140102030405060708090a0b0c0d0e0f1011121314ce00989680"
    "943101c41465666768696a6b6c6d6e6f707172737475767778cfffffffffffffffff")
PINNED_TRANSFER_HASH = "29d974560eb0c6c58f1b999519cf79ad98841e88e144f0c18a7865126f98b848"
PINNED_BLOCK_HASH = "2e78cce47658048dc409967f4193a149997dd25682ea7bfae4f14db30d708da8"

TAGS = {R.Transfer: 1, R.Withdraw: 2, R.AdjustMargin: 3, R.PlaceOrder: 4, R.CancelOrder: 5,
        R.Trade: 16, R.FundingTick: 17, R.Liquidate: 18, R.OraclePrice: 32,
        R.Deposit: 48, R.ForcedWithdrawal: 49, R.ForcedClose: 50,
        R.PlaceTrigger: 9, R.ModifyOrder: 10, R.ScheduleCancel: 11, R.TriggerFire: 19, R.ScheduledCancelAll: 20,
        R.VaultDeposit: 6, R.VaultWithdraw: 7, R.VaultUnwind: 21, R.AuctionBid: 8, R.AuctionEnd: 23,
        R.Deleverage: 24}


def _pinned_block() -> R.Block:
    by_kind = {type(r): r for r, _ in PINNED}
    return E.make_block(1, E.GENESIS_PARENT_HASH, 1_700_000_000_000,
                        [by_kind[R.Transfer], by_kind[R.Withdraw], by_kind[R.Deposit], by_kind[R.ForcedWithdrawal]])


def test_pinned_covers_every_record_kind():
    assert {type(r) for r, _ in PINNED} == set(R.RECORD_TYPES) == set(TAGS)


def test_tags_are_fixed():
    for cls, tag in TAGS.items():
        assert cls.__struct_config__.tag == tag
        assert cls.__struct_config__.array_like and cls.__struct_config__.frozen


@pytest.mark.parametrize("record,hex_bytes", PINNED, ids=lambda x: type(x).__name__ if not isinstance(x, str) else "")
def test_fixed_bytes(record, hex_bytes):
    data = E.encode_record(record)
    assert data.hex() == hex_bytes
    assert data[1] == TAGS[type(record)]  # fixarray header, then the tag
    assert E.decode_record(bytes.fromhex(hex_bytes)) == record


def test_fixed_block_bytes_and_hashes():
    data = E.encode_block(_pinned_block())
    assert data.hex() == PINNED_BLOCK
    assert E.compute_block_hash(data).hex() == PINNED_BLOCK_HASH == keccak(data).hex()
    block = E.decode_block(data)
    assert block == _pinned_block()
    assert E.compute_record_hash(block.records[0]).hex() == PINNED_TRANSFER_HASH
    assert E.compute_record_hash(E.encode_record(PINNED[0][0])).hex() == PINNED_TRANSFER_HASH
    assert [E.decode_record(raw) for raw in block.records] == [
        PINNED[0][0], PINNED[1][0], PINNED[9][0], PINNED[10][0]]


def test_tx_hash_covers_the_signature():
    t = PINNED[0][0]
    other = msgspec.structs.replace(t, signature=bytes(65))
    assert E.compute_record_hash(E.encode_record(t)) != E.compute_record_hash(E.encode_record(other))


# --- Hypothesis round trips -----------------------------------------------------------

_int = st.integers(-(2**63), 2**64 - 1)  # everything msgpack can carry
_u64 = st.integers(0, 2**64 - 1)
_addr = st.binary(min_size=20, max_size=20)
_sig = st.binary(min_size=65, max_size=65)


def _record_strategy(cls) -> st.SearchStrategy:
    hints = {"int": _int, "bytes": st.binary(max_size=80), "bool": st.booleans(),
             "tuple[bytes, ...]": st.lists(_sig, max_size=4).map(tuple),
             "makers": st.lists(st.tuples(_addr, _u64), max_size=4).map(tuple)}
    import typing
    annotations = typing.get_type_hints(cls)
    args = []
    for name in cls.__struct_fields__:
        ann = annotations[name]
        key = "tuple[bytes, ...]" if typing.get_origin(ann) is tuple else ann.__name__
        key = "makers" if name == "makers" else key
        args.append(hints[key])
    return st.builds(cls, *args)


_records = st.one_of(*[_record_strategy(cls) for cls in R.RECORD_TYPES])


@settings(max_examples=400, deadline=None)
@given(record=_records)
def test_record_round_trip(record):
    data = E.encode_record(record)
    assert E.decode_record(data) == record
    assert E.encode_record(E.decode_record(data)) == data  # canonical: re-encoding gives the same bytes


@settings(max_examples=100, deadline=None)
@given(number=_u64, parent=st.binary(min_size=32, max_size=32), ts=_u64,
       records=st.lists(_records, max_size=8))
def test_block_round_trip(number, parent, ts, records):
    block = E.make_block(number, parent, ts, records)
    data = E.encode_block(block)
    decoded = E.decode_block(data)
    assert decoded == block
    assert [E.decode_record(raw) for raw in decoded.records] == records
    assert E.encode_block(decoded) == data


def test_ints_beyond_msgpack_cannot_be_encoded():
    with pytest.raises(OverflowError):
        E.encode_record(R.Deposit(0, A, 2**64))


# --- forward compatibility (local copies of a record, before and after a new field) ---

class _OldBase(msgspec.Struct, frozen=True, array_like=True, tag_field="kind"):
    pass


class OldTransfer(_OldBase, tag=1):
    account: bytes
    amount: int


class OldDeposit(_OldBase, tag=48):
    account: bytes
    amount: int


class _NewBase(msgspec.Struct, frozen=True, array_like=True, tag_field="kind"):
    pass


class NewTransfer(_NewBase, tag=1):
    account: bytes
    amount: int
    memo: bytes = b""  # appended, with a default


class NewDeposit(_NewBase, tag=48):
    account: bytes
    amount: int


OldRecord = OldTransfer | OldDeposit
NewRecord = NewTransfer | NewDeposit


def test_new_decoder_reads_old_bytes():
    old_bytes = msgspec.msgpack.encode(OldTransfer(A, 5))
    assert msgspec.msgpack.decode(old_bytes, type=NewRecord) == NewTransfer(A, 5, b"")


def test_old_decoder_ignores_new_trailing_field():
    new_bytes = msgspec.msgpack.encode(NewTransfer(A, 5, b"hello"))
    assert msgspec.msgpack.decode(new_bytes, type=OldRecord) == OldTransfer(A, 5)


def test_defaults_are_written_explicitly():
    """Determinism: the new encoder writes the default, so the bytes of an
    unchanged record change with the version -- hashes are of logged bytes,
    never of re-encodings."""
    assert msgspec.msgpack.encode(NewTransfer(A, 5)) != msgspec.msgpack.encode(OldTransfer(A, 5))
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(NewTransfer(A, 5)), type=NewRecord) == NewTransfer(A, 5)


def test_unknown_record_kind_is_a_validation_error():
    with pytest.raises(msgspec.ValidationError):
        E.decode_record(msgspec.msgpack.encode([99, A, 1]))


# --- bytes that are not records / blocks ----------------------------------------------

BAD_RECORDS = [
    b"",
    b"\xc1",                                             # never-used msgpack byte
    b"garbage",
    bytes.fromhex(PINNED[0][1])[:-1],                    # truncated
    bytes.fromhex(PINNED[0][1]) + b"\x00",               # trailing bytes
    msgspec.msgpack.encode({"kind": 1}),                 # map, not array
    msgspec.msgpack.encode([1, A, B, 1, 2]),             # too few fields
    msgspec.msgpack.encode([1, A, B, "1", 2, 3, SIG]),   # wrong type
    msgspec.msgpack.encode([4, A, 1, 1, 1, 1, 1, 0, False, 1, 2, SIG]),  # int where bool
    msgspec.msgpack.encode([48, -1.5, A, 1]),            # float where int
    msgspec.msgpack.encode(["1", A, B, 1, 2, 3, SIG]),   # tag of the wrong type
    msgspec.msgpack.encode(None),
]


@pytest.mark.parametrize("data", BAD_RECORDS, ids=range(len(BAD_RECORDS)))
def test_undecodable_record(data):
    with pytest.raises(msgspec.DecodeError):  # ValidationError is a DecodeError
        E.decode_record(data)


BAD_BLOCKS = [
    b"",
    b"\xc1",
    b"\x00" * 40,
    bytes.fromhex(PINNED_BLOCK)[:-3],
    bytes.fromhex(PINNED_BLOCK) + b"\x90",
    msgspec.msgpack.encode([1, b"\x00" * 32, 0]),            # no records
    msgspec.msgpack.encode([1, b"\x00" * 32, 0, b"\x94"]),   # records not an array
    msgspec.msgpack.encode({"number": 1}),
    E.encode_record(PINNED[0][0]),                           # a record, not a block
]


@pytest.mark.parametrize("data", BAD_BLOCKS, ids=range(len(BAD_BLOCKS)))
def test_undecodable_block(data):
    with pytest.raises(msgspec.DecodeError):
        E.decode_block(data)


def test_block_with_an_undecodable_record_still_decodes():
    """A record that is valid msgpack but not a record fails alone."""
    data = msgspec.msgpack.encode([1, b"\x00" * 32, 0, [msgspec.Raw(E.encode_record(PINNED[0][0])), "junk"]])
    block = E.decode_block(data)
    assert E.decode_record(block.records[0]) == PINNED[0][0]
    with pytest.raises(msgspec.DecodeError):
        E.decode_record(block.records[1])


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_only_raise_msgspec_errors(data):
    for decode in (E.decode_record, E.decode_block):
        try:
            decode(data)
        except msgspec.DecodeError:
            pass
