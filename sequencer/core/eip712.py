"""EIP-712 typed data for isoroll (API.md "EIP-712"), hashed without eth-account.

The hot path computes digests here (a few keccak calls); tests cross-check every
type against eth-account's ``encode_typed_data``.
"""
from __future__ import annotations

from typing import Any

import msgspec

from sequencer.core.hashing import keccak
from sequencer.core import records as R

DOMAIN_NAME = "isoroll"
DOMAIN_VERSION = "1"

DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"

# Primary types, field order as in API.md.  Each entry: (solidity type, name, record attribute).
TYPES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "Transfer": (("address", "account", "account"), ("address", "to", "to"),
                 ("uint256", "amount", "amount"), ("uint64", "nonce", "nonce"),
                 ("uint64", "expiry", "expiry")),
    "Withdraw": (("address", "account", "account"), ("uint256", "amount", "amount"),
                 ("uint64", "nonce", "nonce"), ("uint64", "expiry", "expiry")),
    "AdjustMargin": (("address", "account", "account"), ("uint32", "market", "market"),
                     ("int256", "amount", "amount"), ("uint64", "nonce", "nonce"),
                     ("uint64", "expiry", "expiry")),
    "PlaceOrder": (("address", "account", "account"), ("uint32", "market", "market"),
                   ("bool", "isBuy", "is_buy"), ("uint256", "price", "price"),
                   ("uint256", "size", "size"), ("uint32", "leverage", "leverage"),
                   ("uint8", "timeInForce", "time_in_force"), ("bool", "reduceOnly", "reduce_only"),
                   ("uint64", "nonce", "nonce"), ("uint64", "expiry", "expiry")),
    "CancelOrder": (("address", "account", "account"), ("uint64", "orderNonce", "order_nonce"),
                    ("uint64", "nonce", "nonce"), ("uint64", "expiry", "expiry")),
    "VaultDeposit": (("address", "account", "account"), ("uint256", "amount", "amount"),
                     ("uint256", "minShares", "min_shares"), ("uint64", "nonce", "nonce"),
                     ("uint64", "expiry", "expiry")),
    "VaultWithdraw": (("address", "account", "account"), ("uint256", "shares", "shares"),
                      ("uint256", "minAmount", "min_amount"), ("uint64", "nonce", "nonce"),
                      ("uint64", "expiry", "expiry")),
    "PlaceTrigger": (("address", "account", "account"), ("uint32", "market", "market"),
                     ("bool", "isBuy", "is_buy"), ("uint256", "triggerPrice", "trigger_price"),
                     ("uint256", "price", "price"), ("uint256", "size", "size"),
                     ("uint32", "leverage", "leverage"), ("uint8", "tpsl", "tpsl"),
                     ("bool", "reduceOnly", "reduce_only"), ("uint64", "nonce", "nonce"),
                     ("uint64", "expiry", "expiry")),
    "ModifyOrder": (("address", "account", "account"), ("uint64", "orderNonce", "order_nonce"),
                    ("uint256", "price", "price"), ("uint256", "size", "size"),
                    ("uint64", "nonce", "nonce"), ("uint64", "expiry", "expiry")),
    "ScheduleCancel": (("address", "account", "account"), ("uint64", "cancelAt", "cancel_at_ms"),
                       ("uint64", "nonce", "nonce"), ("uint64", "expiry", "expiry")),
    "AuctionBid": (("address", "account", "account"), ("address", "owner", "owner"),
                   ("uint32", "market", "market"), ("uint256", "size", "size"), ("uint256", "price", "price"),
                   ("uint32", "leverage", "leverage"), ("uint64", "nonce", "nonce"),
                   ("uint64", "expiry", "expiry")),
    "VaultDeposit": (("address", "account", "account"), ("uint256", "amount", "amount"),
                     ("uint256", "minShares", "min_shares"), ("uint64", "nonce", "nonce"),
                     ("uint64", "expiry", "expiry")),
    "VaultWithdraw": (("address", "account", "account"), ("uint256", "shares", "shares"),
                      ("uint256", "minAmount", "min_amount"), ("uint64", "nonce", "nonce"),
                      ("uint64", "expiry", "expiry")),
    # Signed by the oracle signers, not by traders (see OraclePrice records).
    "OraclePrice": (("uint32", "market", "market"), ("uint256", "price", "price"),
                    ("uint64", "timestamp", "timestamp_ms")),
}

RECORD_CLASS_BY_TYPE: dict[str, type] = {
    "Transfer": R.Transfer, "Withdraw": R.Withdraw, "AdjustMargin": R.AdjustMargin,
    "PlaceOrder": R.PlaceOrder, "CancelOrder": R.CancelOrder, "OraclePrice": R.OraclePrice,
    "VaultDeposit": R.VaultDeposit, "VaultWithdraw": R.VaultWithdraw,
    "AuctionBid": R.AuctionBid,
    "PlaceTrigger": R.PlaceTrigger, "ModifyOrder": R.ModifyOrder, "ScheduleCancel": R.ScheduleCancel,
}
TYPE_BY_RECORD_CLASS: dict[type, str] = {v: k for k, v in RECORD_CLASS_BY_TYPE.items()}


def compute_type_string(primary_type: str) -> str:
    fields = ",".join(f"{sol} {name}" for sol, name, _ in TYPES[primary_type])
    return f"{primary_type}({fields})"


TYPE_HASHES: dict[str, bytes] = {t: keccak(compute_type_string(t).encode()) for t in TYPES}
_DOMAIN_TYPE_HASH = keccak(DOMAIN_TYPE.encode())


class Domain(msgspec.Struct, frozen=True):
    chain_id: int
    verifying_contract: bytes  # 20 bytes

    def to_json(self) -> dict[str, Any]:
        """The form of GET /v1/status `eip712Domain`."""
        return {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": self.chain_id,
                "verifyingContract": "0x" + self.verifying_contract.hex()}


def compute_domain_separator(domain: Domain) -> bytes:
    return keccak(
        _DOMAIN_TYPE_HASH
        + keccak(DOMAIN_NAME.encode())
        + keccak(DOMAIN_VERSION.encode())
        + domain.chain_id.to_bytes(32, "big")
        + domain.verifying_contract.rjust(32, b"\x00")
    )


def _int_range(sol_type: str) -> tuple[int, int]:
    if sol_type.startswith("uint"):
        return 0, 2 ** int(sol_type[4:]) - 1
    bits = int(sol_type[3:])
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


# Inclusive bounds of every integer type used above: a value outside its type's
# range is a message no wallet can sign, so it gets no digest (ValueError).
_INT_RANGES: dict[str, tuple[int, int]] = {
    sol: _int_range(sol) for fields in TYPES.values() for sol, _, _ in fields if "int" in sol}


def _encode_word(sol_type: str, value: Any) -> bytes:
    """One 32-byte word of encodeData.  Raises ValueError on a value that does
    not fit its type (a negative uint, a uint32 above 2**32 - 1, an address
    that is not 20 bytes)."""
    if sol_type == "address":
        value = bytes(value)
        if len(value) != 20:
            raise ValueError(f"an address must be 20 bytes, got {len(value)}")
        return value.rjust(32, b"\x00")
    if sol_type == "bool":
        return (1 if value else 0).to_bytes(32, "big")
    bounds = _INT_RANGES.get(sol_type)
    if bounds is None:
        raise ValueError(f"unsupported EIP-712 field type {sol_type}")
    value = int(value)
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{value} is out of range for {sol_type}")
    return value.to_bytes(32, "big", signed=bounds[0] < 0)


def compute_struct_hash(primary_type: str, record: Any) -> bytes:
    """hashStruct(message) where the message fields come from the record's attributes."""
    words = b"".join(_encode_word(sol, getattr(record, attr)) for sol, _, attr in TYPES[primary_type])
    return keccak(TYPE_HASHES[primary_type] + words)


def compute_digest(domain_separator: bytes, primary_type: str, record: Any) -> bytes:
    """The 32 bytes that are signed: keccak(0x1901 || domainSeparator || hashStruct).
    Raises ValueError when a field does not fit its EIP-712 type."""
    return keccak(b"\x19\x01" + domain_separator + compute_struct_hash(primary_type, record))


def get_primary_type(record: Any) -> str:
    return TYPE_BY_RECORD_CLASS[type(record)]


def to_typed_data(domain: Domain, primary_type: str, record: Any) -> dict[str, Any]:
    """The full EIP-712 JSON (as wallets and eth-account take it) for a record."""
    message = {}
    for sol, name, attr in TYPES[primary_type]:
        value = getattr(record, attr)
        message[name] = "0x" + bytes(value).hex() if sol == "address" else value
    return {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"},
                             {"name": "verifyingContract", "type": "address"}],
            primary_type: [{"name": name, "type": sol} for sol, name, _ in TYPES[primary_type]],
        },
        "primaryType": primary_type,
        "domain": domain.to_json(),
        "message": message,
    }
