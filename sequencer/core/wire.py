"""The JSON forms of API.md: parsing signed txs into log records and rendering
records, receipts and blocks back.  Pure: no I/O.

Integers may be JSON numbers or decimal strings (API.md); addresses are
0x-prefixed 20-byte hex; signatures 0x-prefixed 65-byte hex.  Unknown fields
are errors, each with a message that names the field.
"""
from __future__ import annotations

import operator
import re
from itertools import accumulate
from typing import Any

import msgspec

from sequencer.core import records as R
from sequencer.core.eip712 import RECORD_CLASS_BY_TYPE, TYPES, TYPE_BY_RECORD_CLASS
from sequencer.core.presets import MAX_INT64

USER_TYPES = ("Transfer", "Withdraw", "AdjustMargin", "PlaceOrder", "CancelOrder", "PlaceTrigger", "ModifyOrder",
              "ScheduleCancel", "AuctionBid", "VaultDeposit", "VaultWithdraw")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HEX = re.compile(r"^0x([0-9a-fA-F]{2})*$")
_DECIMAL = re.compile(r"^-?[0-9]{1,80}$")


class WireError(ValueError):
    """Bad input; ``code`` is the API error code (snake_case)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TxRequest(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    message: dict[str, Any]
    signature: str


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    txs: list[msgspec.Raw]


_tx_decoder = msgspec.json.Decoder(TxRequest)
_batch_decoder = msgspec.json.Decoder(BatchRequest)


MAX_JSON_DEPTH = 16
"""How deep a tx's JSON may nest (a valid tx nests 2 levels).  Checked before
decoding: a deeper body (100,000 levels) would exhaust the decoder's stack."""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET_RUN = re.compile(rb"\[+|\]+")
_BRACKETS_ONLY = (bytes.maketrans(b"{}", b"[]"), bytes(b for b in range(256) if b not in b"[]{}"))


def is_within_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``body`` nests arrays and objects at most ``limit`` deep (brackets
    in strings do not count), at C speed: with every bracket as ``[`` or ``]``,
    the deepest point ends a run of openers, at the openers minus the closers
    before it plus that run.  Unbalanced or mixed brackets are left to the
    decoder.  A 4 MiB body of brackets costs the event loop well under a second."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return True
    brackets = _STRING.sub(b"", body).translate(*_BRACKETS_ONLY).lstrip(b"]")
    # Dropping the innermost pairs first takes one level and most runs (lists of empty lists).
    inner = brackets.replace(b"[]", b"")
    runs = list(map(len, _BRACKET_RUN.findall(inner.lstrip(b"]"))))
    opens, closes = runs[0::2], runs[1::2]
    depths = accumulate(map(operator.sub, opens, closes), initial=0)
    return max(map(operator.add, depths, opens), default=0) + (len(inner) < len(brackets)) <= limit


def check_json_depth(body: bytes, what: str, limit: int = MAX_JSON_DEPTH) -> None:
    if not is_within_depth(body, limit):
        raise WireError("too_deep", f"{what} nests JSON deeper than the limit of {limit} levels")


def _decode(decoder: msgspec.json.Decoder, body: bytes | msgspec.Raw, what: str, depth: int = MAX_JSON_DEPTH):
    check_json_depth(bytes(body), what, depth)
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        code = "unknown_field" if "unknown field" in text.lower() else "invalid_field"
        raise WireError(code, f"{what}: {text}") from None
    except msgspec.DecodeError as exc:
        raise WireError("malformed_json", f"{what} is not valid JSON: {exc}") from None
    except RecursionError:  # unbalanced brackets the depth check let through
        raise WireError("too_deep", f"{what} nests JSON deeper than the limit of {depth} levels") from None


BATCH_DEPTH = 2
"""The levels a batch adds around its txs: ``{"txs": [tx, ...]}``.  A batch with
a tx nested deeper than ``MAX_JSON_DEPTH`` is refused whole (400 ``too_deep``):
finding its txs without decoding it would cost the event loop time in
proportion to the attacker's body."""


def parse_batch(body: bytes, max_txs: int) -> list[msgspec.Raw]:
    if not is_within_depth(body, BATCH_DEPTH + MAX_JSON_DEPTH):
        raise WireError("too_deep", f"a tx in the batch nests JSON deeper than the limit of {MAX_JSON_DEPTH} "
                                    f"levels (the whole batch is refused)")
    batch = _decode(_batch_decoder, body, "batch", BATCH_DEPTH + MAX_JSON_DEPTH)
    if not batch.txs:
        raise WireError("empty_batch", "txs must hold at least one tx")
    if len(batch.txs) > max_txs:
        raise WireError("batch_too_large", f"{len(batch.txs)} txs in one batch, the limit is {max_txs}")
    return batch.txs


def parse_int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise WireError("invalid_field", f"{name} must be an integer (a JSON number or a decimal string)")
    if isinstance(value, str):
        if not _DECIMAL.match(value):
            raise WireError("invalid_field", f"{name} must be a decimal integer string, got {value!r}")
        value = int(value)
    if not lo <= value <= hi:
        raise WireError("invalid_field", f"{name} = {value} is out of range [{lo}, {hi}]")
    return value


def parse_address(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise WireError("invalid_field", f"{name} must be a 0x-prefixed 20-byte hex address")
    return bytes.fromhex(value[2:])


def parse_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise WireError("invalid_field", f"{name} must be true or false")
    return value


def parse_hex(value: Any, name: str, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not _HEX.match(value):
        raise WireError("invalid_field", f"{name} must be 0x-prefixed hex")
    raw = bytes.fromhex(value[2:])
    if length is not None and len(raw) != length:
        raise WireError("invalid_signature" if name == "signature" else "invalid_field",
                        f"{name} must be {length} bytes, got {len(raw)}")
    return raw


# The EIP-712 types are uint256/int256 for wallet compatibility, but the log
# carries 64-bit integers (msgpack): amounts, prices and sizes must fit.
_RANGES = {"uint256": (0, MAX_INT64), "int256": (-MAX_INT64, MAX_INT64), "uint64": (0, 2**64 - 1),
           "uint32": (0, 2**32 - 1), "uint8": (0, 255)}


def parse_message(primary_type: str, message: dict[str, Any], signature: bytes) -> R.Record:
    fields = TYPES[primary_type]
    known = {name for _, name, _ in fields}
    unknown = sorted(set(message) - known)
    if unknown:
        raise WireError("unknown_field", f"{primary_type} has no field(s) {', '.join(unknown)}; "
                                         f"its fields are {', '.join(n for _, n, _ in fields)}")
    values: dict[str, Any] = {}
    for sol, name, attr in fields:
        if name not in message:
            raise WireError("missing_field", f"{primary_type}.{name} is required")
        value = message[name]
        label = f"{primary_type}.{name}"
        if sol == "address":
            values[attr] = parse_address(value, label)
        elif sol == "bool":
            values[attr] = parse_bool(value, label)
        else:
            values[attr] = parse_int(value, label, *_RANGES[sol])
    if primary_type == "PlaceOrder" and values["time_in_force"] not in (0, 1, 2):
        raise WireError("invalid_field", "PlaceOrder.timeInForce must be 0 (GTC), 1 (IOC) or 2 (post-only)")
    if primary_type == "PlaceTrigger" and values["tpsl"] not in (1, 2):
        raise WireError("invalid_field", "PlaceTrigger.tpsl must be 1 (take-profit) or 2 (stop-loss)")
    return RECORD_CLASS_BY_TYPE[primary_type](**values, signature=signature)


def parse_tx(body: bytes | msgspec.Raw) -> R.Record:
    """Parse one `{"type", "message", "signature"}` object into a log record."""
    request = _decode(_tx_decoder, body, "tx")
    if request.type not in USER_TYPES:
        raise WireError("unknown_type", f"type must be one of {', '.join(USER_TYPES)}, got {request.type!r}")
    signature = parse_hex(request.signature, "signature", 65)
    return parse_message(request.type, request.message, signature)


# --- rendering ------------------------------------------------------------------

def hex0x(data: bytes) -> str:
    return "0x" + bytes(data).hex()


def record_to_json(record: R.Record) -> dict[str, Any]:
    """A record as JSON: its type, then its fields in camelCase, bytes as 0x-hex."""
    out: dict[str, Any] = {"type": type(record).__name__}
    primary = TYPE_BY_RECORD_CLASS.get(type(record))
    names = {attr: name for _, name, attr in TYPES[primary]} if primary else {}
    for attr in record.__struct_fields__:
        value = getattr(record, attr)
        name = names.get(attr) or _camel(attr)
        if isinstance(value, bytes):
            value = hex0x(value)
        elif isinstance(value, tuple):
            value = [hex0x(v) if isinstance(v, bytes) else v for v in value]
        out[name] = value
    return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def receipt_to_json(receipt: R.Receipt, state_root: bytes | None = None) -> dict[str, Any]:
    out = {"hash": hex0x(receipt.hash), "block": receipt.block, "index": receipt.index,
           "status": "ok" if receipt.ok else "failed", "error": receipt.error}
    if state_root:
        out["stateRoot"] = hex0x(state_root)
    return out


def rejection_to_json(tx_hash: bytes | None, code: str, message: str) -> dict[str, Any]:
    """A batch entry refused before the log: nothing was written (block is null)."""
    return {"hash": hex0x(tx_hash) if tx_hash else None, "block": None, "index": None,
            "status": "failed", "error": f"{code}: {message}", "code": code}
