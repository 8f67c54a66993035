"""Trace items and the records root of an output (docs/fraud-proofs.md).

The items of an output are its blocks written as ``BLOCK_START``, one
``RECORD`` or ``NOOP`` per record, ``BLOCK_END``; each item has a packed,
fixed-offset encoding that the L1 one-step (``l1_bridge/contracts/onestep.vy``)
reads without a msgpack decoder.  The posted data is the stream of items, each
framed by a 2-byte length; the records root is the ordered list tree (the
withdrawals tree of docs/commitment.md) over ``keccak256(item)``, and L1
derives it from the data (``records.vy`` ``derive_root``).

Pure: no I/O, no clock.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import msgspec

from prover.codec import WithdrawalProof
from prover.hashing import EMPTY, keccak
from prover.output import compute_withdrawals_root, prove_withdrawal, verify_withdrawal_proof, withdrawal_leaf
from sequencer.core.encoding import decode_block, decode_record
from sequencer.core.records import (RECORD_TYPES, AdjustMargin, CancelOrder, Deposit, ForcedWithdrawal, FundingTick,
                                    PlaceOrder, Record, Transfer, Withdraw)
from sequencer.core.records import OraclePrice
from sequencer.core.records import AuctionEnd, Deleverage, ForcedClose, Liquidate
from sequencer.core.records import AuctionBid, ModifyOrder
from sequencer.core.records import VaultDeposit, VaultUnwind, VaultWithdraw
from sequencer.core.records import PlaceTrigger, ScheduleCancel, ScheduledCancelAll, TriggerFire
from sequencer.core.records import Trade

ITEM_BLOCK_START = 1
ITEM_RECORD = 2
ITEM_BLOCK_END = 3
ITEM_NOOP = 4

FRONTIER_DEPTH = 33
"""Frontier words: complete subtrees of height 0..32 (2**32 leaves at most)."""
MAX_ITEM_SIZE = 1024
"""Largest item the one-step takes (the perps kinds will need the room)."""
MAX_DATA = 120_000
"""Largest chunk of posted data: one transaction's (the bridge's MAX_BATCH_BYTES)."""


class DataError(ValueError):
    """Posted data that is not a stream of framed items."""


class BlockStart(msgspec.Struct, frozen=True):
    number: int
    parent_hash: bytes
    timestamp_ms: int


class BlockEnd(msgspec.Struct, frozen=True):
    block_hash: bytes


class Noop(msgspec.Struct, frozen=True):
    """A record that fails with no state change, or any malformed item."""
    tx_hash: bytes


Item = BlockStart | BlockEnd | Noop | Record

# --- record fields, packed ------------------------------------------------------
# (attribute, width in bytes, kind): "u" unsigned integer, "i" two's-complement
# signed integer, "?" a bool (any byte but 0 is true), "b" raw bytes; and a
# list (attribute, most elements, "l", element layout): a 1-byte count, then
# that many elements, each the element layout's fields packed (an element of
# one field is its bare value, else a tuple), the item's length then fixed by
# the count.

RECORD_LAYOUTS: dict[type, tuple[int, tuple[tuple[str, int, str], ...]]] = {
    Transfer: (1, (("account", 20, "b"), ("to", 20, "b"), ("amount", 8, "u"), ("nonce", 8, "u"),
                   ("expiry", 8, "u"), ("signature", 65, "b"))),
    Withdraw: (2, (("account", 20, "b"), ("amount", 8, "u"), ("nonce", 8, "u"), ("expiry", 8, "u"),
                   ("signature", 65, "b"))),
    Deposit: (48, (("inbox_index", 8, "u"), ("account", 20, "b"), ("amount", 32, "u"))),
    ForcedWithdrawal: (49, (("inbox_index", 8, "u"), ("account", 20, "b"), ("amount", 32, "u"))),
    AdjustMargin: (3, (("account", 20, "b"), ("market", 4, "u"), ("amount", 8, "i"), ("nonce", 8, "u"),
                       ("expiry", 8, "u"), ("signature", 65, "b"))),
    PlaceOrder: (4, (("account", 20, "b"), ("market", 4, "u"), ("is_buy", 1, "?"), ("price", 8, "u"),
                     ("size", 8, "u"), ("leverage", 4, "u"), ("time_in_force", 1, "u"), ("reduce_only", 1, "?"),
                     ("nonce", 8, "u"), ("expiry", 8, "u"), ("signature", 65, "b"))),
    CancelOrder: (5, (("account", 20, "b"), ("order_nonce", 8, "u"), ("nonce", 8, "u"), ("expiry", 8, "u"),
                      ("signature", 65, "b"))),
    FundingTick: (17, (("market", 4, "u"), ("rate_ppm", 8, "i"), ("timestamp_ms", 8, "u"))),
    OraclePrice: (32, (("market", 4, "u"), ("price", 8, "u"), ("timestamp_ms", 8, "u"), ("signatures", 15, "l", ((None, 65, "b"),)))),
    Liquidate: (18, (("account", 20, "b"), ("market", 4, "u"), ("makers", 8, "l", ((None, 20, "b"), (None, 8, "u"))))),
    AuctionEnd: (23, (("account", 20, "b"), ("market", 4, "u"))),
    Deleverage: (24, (("account", 20, "b"), ("market", 4, "u"), ("counterparties", 6, "l", ((None, 20, "b"),)))),
    ForcedClose: (50, (("inbox_index", 8, "u"), ("account", 20, "b"), ("market", 32, "u"))),
    # the limit price is the EIP-712 uint256: the rule bounds it only below (any limit a keeper signs is one)
    AuctionBid: (8, (("account", 20, "b"), ("owner", 20, "b"), ("market", 4, "u"), ("size", 8, "u"), ("price", 32, "u"),
                     ("leverage", 4, "u"), ("nonce", 8, "u"), ("expiry", 8, "u"), ("signature", 65, "b"))),
    ModifyOrder: (10, (("account", 20, "b"), ("order_nonce", 8, "u"), ("price", 8, "u"), ("size", 8, "u"),
                       ("nonce", 8, "u"), ("expiry", 8, "u"), ("signature", 65, "b"))),
    # the vault: amounts, shares and their bounds the rule keeps within 2**63 - 1
    VaultDeposit: (6, (("account", 20, "b"), ("amount", 8, "u"), ("min_shares", 8, "u"), ("nonce", 8, "u"),
                       ("expiry", 8, "u"), ("signature", 65, "b"))),
    VaultWithdraw: (7, (("account", 20, "b"), ("shares", 8, "u"), ("min_amount", 8, "u"), ("nonce", 8, "u"),
                        ("expiry", 8, "u"), ("signature", 65, "b"))),
    VaultUnwind: (21, (("market", 4, "u"), ("size", 8, "u"), ("price", 8, "u"))),
    # nonces of orders (uint64 when signed), prices and sizes within 1..2**63 - 1 (the rule's bounds)
    Trade: (16, (("market", 4, "u"), ("maker", 20, "b"), ("maker_nonce", 8, "u"), ("taker", 20, "b"),
                 ("taker_nonce", 8, "u"), ("price", 8, "u"), ("size", 8, "u"))),
    # triggers: prices and sizes within 1..2**63 - 1, tpsl and time the EIP-712 uint8 / uint64 (the rule's bounds)
    PlaceTrigger: (9, (("account", 20, "b"), ("market", 4, "u"), ("is_buy", 1, "?"), ("trigger_price", 8, "u"),
                       ("price", 8, "u"), ("size", 8, "u"), ("leverage", 4, "u"), ("tpsl", 1, "u"),
                       ("reduce_only", 1, "?"), ("nonce", 8, "u"), ("expiry", 8, "u"), ("signature", 65, "b"))),
    ScheduleCancel: (11, (("account", 20, "b"), ("cancel_at_ms", 8, "u"), ("nonce", 8, "u"), ("expiry", 8, "u"),
                          ("signature", 65, "b"))),
    TriggerFire: (19, (("account", 20, "b"), ("nonce", 8, "u"))),
    ScheduledCancelAll: (20, (("account", 20, "b"),)),
}
PERPS_TAGS = frozenset({3, 4, 17})
"""Record tags onestep_perps.vy re-executes."""
RECORD_BY_TAG: dict[int, type] = {tag: cls for cls, (tag, _) in RECORD_LAYOUTS.items()}
INBOX_TYPES = (Deposit, ForcedWithdrawal)
KNOWN_TAGS = frozenset(cls.__struct_config__.tag for cls in RECORD_TYPES) | {22}
"""Every record tag (22 is kept for an explicit auction start); onestep.vy's KNOWN_TAGS."""
ONESTEP_TAGS = frozenset().union(
    {1, 2, 48, 49},                     # onestep.vy: accounts and the inbox
    PERPS_TAGS,                         # onestep_perps.vy
    {18, 50},                           # onestep_liquidate.vy: Liquidate, ForcedClose (book+vault's vault step pending)
    {23},                               # onestep_auction_end.vy: AuctionEnd
    {32},                               # onestep_oracle.vy: OraclePrice
    {6, 7, 21},                         # onestep_vault.vy: VaultDeposit, VaultWithdraw, VaultUnwind
    {16},                               # onestep_trade.vy: Trade
    {8},                                # onestep_auction.vy: AuctionBid
    {10},                               # onestep_modify.vy: ModifyOrder
    {5, 9, 11, 19, 20},                 # onestep_triggers.vy: CancelOrder, PlaceTrigger, ScheduleCancel, TriggerFire, ScheduledCancelAll
    {24},                               # onestep_ladder.vy: Deleverage (rules v3)
)
"""Record tags the L1 one-step re-executes: one line per family contract
(prover.families.ONESTEP_FAMILIES)."""
PENDING_TAGS = KNOWN_TAGS - ONESTEP_TAGS
"""Record tags whose one-step is not written yet: onestep.vy reverts "pending"
on them (a known tag no family contract takes)."""


def get_item_size(tag: int, count: int = 0) -> int:
    """The item length of a record tag (with ``count`` elements in its list, if it has one)."""
    return 2 + sum(field[1] if field[2] != "l" else 1 + count * _get_element_size(field[3])
                   for field in RECORD_LAYOUTS[RECORD_BY_TAG[tag]][1])


def _get_element_size(layout) -> int:
    return sum(width for _, width, _ in layout)


def _pack_field(value, width: int, kind: str) -> bytes | None:
    if kind == "b":
        value = bytes(value)
        return value if len(value) == width else None
    if kind == "?":
        return bytes((int(value),)) if isinstance(value, bool) else None
    if kind == "i":
        if isinstance(value, bool) or not isinstance(value, int) or not -2 ** (8 * width - 1) <= value < 2 ** (8 * width - 1):
            return None
        return value.to_bytes(width, "big", signed=True)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** (8 * width):
        return None
    return value.to_bytes(width, "big")


def encode_record_item(record: Record) -> bytes | None:
    """The RECORD item of a record, or None when a field does not fit its width.
    Inbox amounts are written modulo 2**256 as the inbox chain writes them
    (sequencer.core.inbox.encode_inbox_record_lenient): the rule credits
    neither a negative amount nor its residue (both are outside 1..max)."""
    tag, layout = RECORD_LAYOUTS[type(record)]
    out = bytearray((ITEM_RECORD, tag))
    for field in layout:
        attr, width, kind = field[:3]
        value = getattr(record, attr)
        if attr == "amount" and isinstance(record, INBOX_TYPES) and isinstance(value, int):
            value %= 2**256
        packed = _pack_list(value, width, field[3]) if kind == "l" else _pack_field(value, width, kind)
        if packed is None:
            return None
        out += packed
    return bytes(out)


def _pack_list(values, most: int, layout) -> bytes | None:
    if not isinstance(values, (tuple, list)) or len(values) > most:
        return None
    out = bytearray((len(values),))
    for element in values:
        fields = (element,) if len(layout) == 1 else element
        if not isinstance(fields, (tuple, list)) or len(fields) != len(layout):
            return None
        for value, (_, width, kind) in zip(fields, layout):
            packed = _pack_field(value, width, kind)
            if packed is None:
                return None
            out += packed
    return bytes(out)


def encode_item(item: Item) -> bytes:
    if isinstance(item, BlockStart):
        return (bytes((ITEM_BLOCK_START,)) + item.number.to_bytes(8, "big") + bytes(item.parent_hash)
                + item.timestamp_ms.to_bytes(8, "big"))
    if isinstance(item, BlockEnd):
        return bytes((ITEM_BLOCK_END,)) + bytes(item.block_hash)
    if isinstance(item, Noop):
        return bytes((ITEM_NOOP,)) + bytes(item.tx_hash)
    encoded = encode_record_item(item)
    if encoded is None:
        raise ValueError(f"{type(item).__name__} has a field that does not fit its item width")
    return encoded


class PendingKind(ValueError):
    """A record tag whose one-step is not written yet."""


def decode_item(item: bytes) -> Item:
    """The item's meaning on L1.  Any byte string means something: a wrong
    length or an unknown kind is a NOOP (keyed by the item's hash); a pending
    record tag raises PendingKind (the one-step reverts on it too)."""
    item = bytes(item)
    kind = item[0] if item else 0
    if kind == ITEM_BLOCK_START and len(item) == 49:
        return BlockStart(int.from_bytes(item[1:9], "big"), item[9:41], int.from_bytes(item[41:49], "big"))
    if kind == ITEM_BLOCK_END and len(item) == 33:
        return BlockEnd(item[1:33])
    if kind == ITEM_NOOP and len(item) == 33:
        return Noop(item[1:33])
    if kind == ITEM_RECORD and len(item) >= 2:
        tag = item[1]
        if tag in PENDING_TAGS:
            raise PendingKind(f"record tag {tag}: its one-step is pending")
        record = decode_record_item(item)
        if record is not None:
            return record
    return Noop(keccak(item))


def decode_record_item(item: bytes) -> Record | None:
    """The record a RECORD item packs (onestep.vy's parser), or None when its
    tag has no layout or its length does not match the layout."""
    cls = RECORD_BY_TAG.get(item[1])
    if cls is None:
        return None
    values, pos = [], 2
    for field in RECORD_LAYOUTS[cls][1]:
        if field[2] == "l":
            if pos >= len(item) or item[pos] > field[1]:
                return None
            count, pos = item[pos], pos + 1
            elements = []
            for _ in range(count):
                element = []
                for _, width, kind in field[3]:
                    element.append(_decode_field(item[pos:pos + width], kind))
                    pos += width
                elements.append(element[0] if len(element) == 1 else tuple(element))
            values.append(tuple(elements))
        else:
            values.append(_decode_field(item[pos:pos + field[1]], field[2]))
            pos += field[1]
    return cls(*values) if pos == len(item) else None


def _decode_field(raw: bytes, kind: str):
    if kind == "b":
        return raw
    if kind == "?":
        return raw != b"\x00"
    return int.from_bytes(raw, "big", signed=kind == "i")


def compute_record_item(raw: bytes) -> bytes:
    """The item of one logged record: its packed form, or NOOP(tx hash) when
    it does not decode or a field does not fit (the rules fail such a record
    with no state change).  Raises ValueError for an inbox record the bridge
    cannot have written (no item replays it faithfully), and for a record kind
    with no packed layout (a new kind must come with its layout: no item could
    replay it on L1)."""
    raw = bytes(raw)
    try:
        record = decode_record(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return encode_item(Noop(keccak(raw)))
    if type(record) not in RECORD_LAYOUTS:
        raise ValueError(f"{type(record).__name__} has no packed item layout (prover.records.RECORD_LAYOUTS)")
    item = encode_record_item(record)
    if item is not None:
        return item
    if isinstance(record, INBOX_TYPES):
        raise ValueError(f"{type(record).__name__} {record.inbox_index} has a field no inbox entry holds")
    return encode_item(Noop(keccak(raw)))


def decode_replay_item(item: bytes) -> Item:
    """The item as an L1 replay applies it: ``decode_item``, and for a tag
    with no one-step the record it packs (a NOOP if it packs none)."""
    try:
        return decode_item(item)
    except PendingKind:
        record = decode_record_item(bytes(item))
        return record if record is not None else Noop(keccak(bytes(item)))


def compute_block_items(message: bytes) -> list[bytes]:
    """The items of one applied block message (a Kafka message value)."""
    block = decode_block(message)
    return ([encode_item(BlockStart(block.number, block.parent_hash, block.timestamp_ms))]
            + [compute_record_item(raw) for raw in block.records]
            + [encode_item(BlockEnd(keccak(message)))])


# --- the posted data: framed items ----------------------------------------------

def encode_data(items: Iterable[bytes]) -> bytes:
    out = bytearray()
    for item in items:
        if not 0 < len(item) <= MAX_ITEM_SIZE:
            raise ValueError(f"an item is 1..{MAX_ITEM_SIZE} bytes, got {len(item)}")
        out += len(item).to_bytes(2, "big") + item
    return bytes(out)


def decode_data(data: bytes) -> list[bytes]:
    """The items of posted data; DataError when a frame is empty, longer than
    MAX_ITEM_SIZE or runs past the end (such data is a fault on L1)."""
    items, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise DataError(f"a frame header at byte {pos} runs past the end")
        size = int.from_bytes(data[pos:pos + 2], "big")
        if not 0 < size <= MAX_ITEM_SIZE or pos + 2 + size > len(data):
            raise DataError(f"the frame at byte {pos} ({size} bytes) is empty, too long or runs past the end")
        items.append(data[pos + 2:pos + 2 + size])
        pos += 2 + size
    return items


def split_data(items: Iterable[bytes], max_bytes: int = MAX_DATA) -> list[bytes]:
    """The posted data of an output in chunks of at most ``max_bytes``, each a
    whole number of frames (one transaction each; at least one chunk)."""
    chunks, current = [], bytearray()
    for item in items:
        frame = encode_data([item])
        if len(current) + len(frame) > max_bytes:
            chunks.append(bytes(current))
            current = bytearray()
        current += frame
    chunks.append(bytes(current))
    return chunks


def compute_data_hash(chunks: Sequence[bytes]) -> bytes:
    """The output's data_hash over its chunks c_1..c_k: acc_0 = 0,
    acc_i = keccak(acc_(i-1) || keccak(c_i)) (records.vy chain_data)."""
    acc = EMPTY
    for chunk in chunks:
        acc = keccak(acc + keccak(bytes(chunk)))
    return acc


# --- the records root (the ordered list tree) ----------------------------------

def compute_records_root(items: Sequence[bytes]) -> bytes:
    """List root over keccak256(item); EMPTY for no items."""
    return compute_withdrawals_root(items)


def prove_item(items: Sequence[bytes], index: int) -> WithdrawalProof:
    """(item hash, index, siblings bottom first) opening item ``index``."""
    return prove_withdrawal(items, index)


def get_list_depth(count: int) -> int:
    return (count - 1).bit_length() if count > 1 else 0


def verify_item(records_root: bytes, count: int, item: bytes, index: int, siblings: Sequence[bytes]) -> bool:
    """Item ``index`` of the ``count`` items under ``records_root``: the index is
    below the count and the opening has exactly the tree's depth in siblings."""
    if not 0 <= index < count or len(siblings) != get_list_depth(count):
        return False
    return verify_withdrawal_proof(records_root, WithdrawalProof(keccak(item), index, tuple(siblings)))


# --- the frontier: a list tree built one leaf at a time -------------------------

class Frontier(msgspec.Struct, frozen=True):
    """Roots of the complete subtrees of a list tree (the Eth2 deposit contract's
    branch): ``branch[h]`` is the last complete subtree of height h."""
    count: int = 0
    branch: tuple[bytes, ...] = (EMPTY,) * FRONTIER_DEPTH

    def push(self, leaf: bytes) -> "Frontier":
        branch = list(self.branch)
        node, size = leaf, self.count + 1
        for height in range(FRONTIER_DEPTH):
            if size & 1:
                branch[height] = node
                break
            node = keccak(b"\x01" + branch[height] + node)
            size >>= 1
        else:
            raise ValueError("frontier full")
        return Frontier(self.count + 1, tuple(branch))

    def push_hash(self, item_hash: bytes) -> "Frontier":
        """Append the leaf of an item (or withdrawal) hash."""
        return self.push(withdrawal_leaf(item_hash))

    def root(self) -> bytes:
        """The list root of the leaves pushed so far (= compute_records_root)."""
        n = self.count
        if n == 0:
            return EMPTY
        depth = get_list_depth(n)
        if n == 1 << depth:
            return self.branch[depth]
        node, zero = EMPTY, EMPTY
        for height in range(depth):
            if (n >> height) & 1:
                node = keccak(b"\x01" + self.branch[height] + node)
            else:
                node = keccak(b"\x01" + node + zero)
            zero = keccak(b"\x01" + zero + zero)
        return node


def derive_records_root(data: bytes) -> tuple[bytes, int]:
    """(records root, item count) of posted data, as records.vy derives it."""
    frontier = Frontier()
    for item in decode_data(data):
        frontier = frontier.push_hash(keccak(item))
    return frontier.root(), frontier.count
