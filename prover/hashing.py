"""keccak256 and the two hashes of the state tree (docs/commitment.md).

The one definition of keccak in isoroll: the pure core (sequencer.core) and the
L1 tooling import it from here.  The tree's hashes are domain-separated by a
one-byte prefix, so a leaf can never be read as a node:

* ``leaf = keccak(0x00 || key || value_hash)``   (65-byte preimage)
* ``node = keccak(0x01 || left || right)``       (65-byte preimage)

``EMPTY`` (bytes32 zero) is the hash of an empty subtree at every height, the
root of the empty tree and the root of no withdrawals.
"""
from __future__ import annotations

from sha3 import keccak_256

EMPTY = bytes(32)
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def keccak(data: bytes) -> bytes:
    """keccak256 (Ethereum's, not NIST SHA3-256), from safe-pysha3 (about 4x
    faster here than pycryptodome)."""
    return keccak_256(data).digest()


def leaf_hash(key: bytes, value_hash: bytes) -> bytes:
    """keccak(0x00 || key || value_hash)."""
    return keccak_256(LEAF_PREFIX + key + value_hash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """keccak(0x01 || left || right)."""
    return keccak_256(NODE_PREFIX + left + right).digest()
