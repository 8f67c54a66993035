"""Typed keys of the state tree: ``keccak(kind byte || parts...)``.

The parts of each kind have fixed sizes, so plain concatenation is unambiguous;
keys are keccak outputs, so the tree is balanced in expectation.  The L1 bridge
computes the same keys (l1_bridge/contracts/bridge.vy) to read accounts,
positions and markets in the escape hatch.

=========  ====  =====================================================
kind       byte  parts
=========  ====  =====================================================
ACCOUNT    1     address (20)
POSITION   2     address (20) || market id (4, big-endian)
ORDER      3     address (20) || nonce (8, big-endian)
MARKET     4     market id (4, big-endian)
GLOBAL     5     b"globals"
TRIGGER    8     address (20) || nonce (8, big-endian): a pending, fired or cancelled trigger order
SCHEDULE   9     address (20): the dead-man's switch and the pending-trigger count
VAULT      6     address (20): a backstop vault share entry (the vault's
                 own address holds the total shares)
AUCTION    10    address (20) || market id (4, big-endian): a liquidation auction
=========  ====  =====================================================
"""
from __future__ import annotations

from prover.hashing import keccak

ACCOUNT = 1
POSITION = 2
ORDER = 3
MARKET = 4
GLOBAL = 5
TRIGGER = 8
ORDER_SCHEDULE = 9
VAULT_SHARE = 6
AUCTION = 10


def compute_key(kind: int, *parts: bytes) -> bytes:
    """keccak(kind byte || parts...)."""
    if not 0 <= kind <= 255:
        raise ValueError("kind must fit in one byte")
    return keccak(bytes((kind,)) + b"".join(parts))


def check_address(address: bytes) -> bytes:
    """``address`` as 20 bytes, or ValueError."""
    if type(address) is bytes and len(address) == 20:
        return address
    if isinstance(address, bytearray) and len(address) == 20:
        return bytes(address)
    raise ValueError("address must be 20 bytes")


# The kind bytes, built once: these run for every dirty leaf of every block.
_ACCOUNT_TAG = bytes((ACCOUNT,))
_POSITION_TAG = bytes((POSITION,))
_ORDER_TAG = bytes((ORDER,))
_MARKET_TAG = bytes((MARKET,))
_TRIGGER_TAG = bytes((TRIGGER,))
_ORDER_SCHEDULE_TAG = bytes((ORDER_SCHEDULE,))
_VAULT_SHARE_TAG = bytes((VAULT_SHARE,))
_AUCTION_TAG = bytes((AUCTION,))


def get_account_key(address: bytes) -> bytes:
    """compute_key(ACCOUNT, address20)"""
    return keccak(_ACCOUNT_TAG + check_address(address))


def get_position_key(address: bytes, market_id: int) -> bytes:
    """compute_key(POSITION, address20, market_id as 4 bytes big-endian)"""
    return keccak(_POSITION_TAG + check_address(address) + market_id.to_bytes(4, "big"))


def get_order_key(address: bytes, nonce: int) -> bytes:
    """compute_key(ORDER, address20, nonce as 8 bytes big-endian)"""
    return keccak(_ORDER_TAG + check_address(address) + nonce.to_bytes(8, "big"))


def get_market_key(market_id: int) -> bytes:
    """compute_key(MARKET, market_id as 4 bytes big-endian)"""
    return keccak(_MARKET_TAG + market_id.to_bytes(4, "big"))


def get_vault_share_key(address: bytes) -> bytes:
    """compute_key(VAULT_SHARE, address20)"""
    return keccak(_VAULT_SHARE_TAG + check_address(address))


def get_trigger_key(address: bytes, nonce: int) -> bytes:
    """compute_key(TRIGGER, address20, nonce as 8 bytes big-endian)"""
    return keccak(_TRIGGER_TAG + check_address(address) + nonce.to_bytes(8, "big"))


def get_order_schedule_key(address: bytes) -> bytes:
    """compute_key(ORDER_SCHEDULE, address20)"""
    return keccak(_ORDER_SCHEDULE_TAG + check_address(address))


def get_auction_key(address: bytes, market_id: int) -> bytes:
    """compute_key(AUCTION, address20, market_id as 4 bytes big-endian)"""
    return keccak(_AUCTION_TAG + check_address(address) + market_id.to_bytes(4, "big"))


GLOBAL_KEY = compute_key(GLOBAL, b"globals")
