"""The proof records and their wire forms: compact binary and JSON (0x-hex).

* :class:`Proof`: an inclusion or exclusion proof of the state tree
  (prover/tree.py makes and checks them).
* :class:`WithdrawalProof`: a leaf of a checkpoint's withdrawals tree
  (prover/output.py).

Decoding checks the shape (sizes, bitmap against the number of siblings) and
raises :class:`ProofError`; whether a proof holds under a root is the
verifiers' business.
"""
from __future__ import annotations

from typing import Mapping

import msgspec

from prover.hashing import keccak

UINT256_MAX = (1 << 256) - 1


class ProofError(ValueError):
    """A malformed proof or snapshot."""


def encode_hex(b: bytes) -> str:
    return "0x" + b.hex()


def decode_hex(s: str, n: int | None = 32) -> bytes:
    """A 0x-hex string of ``n`` bytes (any length when ``n`` is None)."""
    if not isinstance(s, str) or not s.startswith("0x"):
        raise ProofError("expected a 0x-hex string")
    try:
        b = bytes.fromhex(s[2:])
    except ValueError:
        raise ProofError("bad hex") from None
    if n is not None and len(b) != n:
        raise ProofError(f"expected {n} bytes")
    return b


def _optional_hex(b: bytes | None) -> str | None:
    return None if b is None else encode_hex(b)


_INCLUSION = 0
_EXCLUSION_EMPTY = 1
_EXCLUSION_LEAF = 2


class Proof(msgspec.Struct, frozen=True):
    """Inclusion proof (``value`` is not None) or exclusion proof.

    * ``bitmap``: bit ``j-1`` set = the sibling at depth ``j`` is non-empty;
      the depth of the terminal is ``bitmap.bit_length()``.
    * ``siblings``: the non-empty siblings, deepest first.
    * exclusion: either the path ends in an empty slot (``other_key`` None),
      or in the leaf of another key sharing the first ``depth`` bits
      (``other_key``, ``other_value_hash``).
    """

    key: bytes
    value: bytes | None
    bitmap: int
    siblings: tuple[bytes, ...]
    other_key: bytes | None = None
    other_value_hash: bytes | None = None

    @property
    def included(self) -> bool:
        return self.value is not None

    @property
    def depth(self) -> int:
        return self.bitmap.bit_length()

    @property
    def value_hash(self) -> bytes | None:
        return None if self.value is None else keccak(self.value)

    # compact binary form -------------------------------------------------
    #   kind(1) || key(32) || bitmap(32, uint256 BE) || siblings(32 * popcount)
    #   kind 0 (inclusion):        || len(value) (4, BE) || value
    #   kind 1 (excluded, empty):  (nothing)
    #   kind 2 (excluded, leaf):   || other_key(32) || other_value_hash(32)

    def encode(self) -> bytes:
        check_proof_shape(self)
        head = b"".join((bytes((self._kind(),)), self.key, self.bitmap.to_bytes(32, "big"), *self.siblings))
        if self.value is not None:
            return head + len(self.value).to_bytes(4, "big") + self.value
        if self.other_key is not None:
            return head + self.other_key + self.other_value_hash
        return head

    @classmethod
    def decode(cls, data: bytes) -> "Proof":
        data = bytes(data)
        if len(data) < 65:
            raise ProofError("proof too short")
        kind = data[0]
        key = data[1:33]
        bitmap = int.from_bytes(data[33:65], "big")
        end = 65 + 32 * bitmap.bit_count()
        if len(data) < end:
            raise ProofError("truncated proof")
        sibs = tuple(data[i: i + 32] for i in range(65, end, 32))
        rest = data[end:]
        if kind == _INCLUSION:
            if len(rest) < 4 or len(rest) != 4 + int.from_bytes(rest[:4], "big"):
                raise ProofError("bad value length")
            return cls(key, rest[4:], bitmap, sibs)
        if kind == _EXCLUSION_EMPTY:
            if rest:
                raise ProofError("trailing bytes")
            return cls(key, None, bitmap, sibs)
        if kind == _EXCLUSION_LEAF:
            if len(rest) != 64:
                raise ProofError("bad exclusion leaf")
            return cls(key, None, bitmap, sibs, rest[:32], rest[32:])
        raise ProofError("unknown proof kind")

    def _kind(self) -> int:
        if self.value is not None:
            return _INCLUSION
        return _EXCLUSION_EMPTY if self.other_key is None else _EXCLUSION_LEAF

    # JSON form (0x-hex) --------------------------------------------------

    def to_json_obj(self) -> dict:
        """JSON-ready dict.  ``value_hash`` and ``depth`` are derived, for
        callers building L1 calldata by hand."""
        check_proof_shape(self)
        return {
            "key": encode_hex(self.key),
            "included": self.value is not None,
            "value": _optional_hex(self.value),
            "value_hash": _optional_hex(self.value_hash),
            "bitmap": "0x%064x" % self.bitmap,
            "depth": self.depth,
            "siblings": [encode_hex(s) for s in self.siblings],
            "other_key": _optional_hex(self.other_key),
            "other_value_hash": _optional_hex(self.other_value_hash),
        }

    def to_json(self) -> str:
        return msgspec.json.encode(self.to_json_obj()).decode()

    @classmethod
    def from_json_obj(cls, d: Mapping) -> "Proof":
        try:
            value, other_key, other_value_hash = d.get("value"), d.get("other_key"), d.get("other_value_hash")
            bitmap = d["bitmap"]
            p = cls(
                decode_hex(d["key"]),
                None if value is None else decode_hex(value, None),
                int(bitmap, 16) if isinstance(bitmap, str) else int(bitmap),
                tuple(decode_hex(s) for s in d["siblings"]),
                None if other_key is None else decode_hex(other_key),
                None if other_value_hash is None else decode_hex(other_value_hash),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProofError):
                raise
            raise ProofError(f"bad proof JSON: {exc}") from None
        check_proof_shape(p)
        return p

    @classmethod
    def from_json(cls, s: str | bytes) -> "Proof":
        return cls.from_json_obj(msgspec.json.decode(s))


def check_proof_shape(p: Proof) -> None:
    """Sizes and types of every field (not whether the proof holds)."""
    if type(p.key) is not bytes or len(p.key) != 32:
        raise ProofError("key must be 32 bytes")
    if type(p.bitmap) is not int or not 0 <= p.bitmap <= UINT256_MAX:
        raise ProofError("bitmap must be a uint256")
    if p.bitmap.bit_count() != len(p.siblings):
        raise ProofError("bitmap does not match the number of siblings")
    for s in p.siblings:
        if type(s) is not bytes or len(s) != 32:
            raise ProofError("siblings must be 32 bytes")
    if p.value is not None:
        if type(p.value) is not bytes:
            raise ProofError("value must be bytes")
        if p.other_key is not None or p.other_value_hash is not None:
            raise ProofError("an inclusion proof has no other leaf")
    elif (p.other_key is None) != (p.other_value_hash is None):
        raise ProofError("other_key and other_value_hash go together")
    elif p.other_key is not None:
        if type(p.other_key) is not bytes or len(p.other_key) != 32:
            raise ProofError("other_key must be 32 bytes")
        if type(p.other_value_hash) is not bytes or len(p.other_value_hash) != 32:
            raise ProofError("other_value_hash must be 32 bytes")


class WithdrawalProof(msgspec.Struct, frozen=True):
    """Leaf ``index`` of a withdrawals tree: the withdrawal's hash and the
    siblings on its path, bottom first."""

    withdrawal_hash: bytes
    index: int
    siblings: tuple[bytes, ...]

    def to_json_obj(self) -> dict:
        return {
            "withdrawal_hash": encode_hex(self.withdrawal_hash),
            "index": self.index,
            "siblings": [encode_hex(s) for s in self.siblings],
        }

    def to_json(self) -> str:
        return msgspec.json.encode(self.to_json_obj()).decode()

    @classmethod
    def from_json_obj(cls, d: Mapping) -> "WithdrawalProof":
        try:
            return cls(decode_hex(d["withdrawal_hash"]), int(d["index"]),
                       tuple(decode_hex(s) for s in d["siblings"]))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProofError):
                raise
            raise ProofError(f"bad withdrawal proof JSON: {exc}") from None

    @classmethod
    def from_json(cls, s: str | bytes) -> "WithdrawalProof":
        return cls.from_json_obj(msgspec.json.decode(s))
