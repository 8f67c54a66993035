"""keccak256 (defined once, in prover/hashing.py: the lowest pure layer) and
Ethereum addresses of public keys."""
from __future__ import annotations

from prover.hashing import keccak

__all__ = ["keccak", "address_from_public_key"]


def address_from_public_key(uncompressed: bytes) -> bytes:
    """Ethereum address of a 65-byte uncompressed (0x04 || x || y) public key."""
    return keccak(uncompressed[1:])[12:]
