"""secp256k1 signature recovery for EIP-712 digests, with two backends.

``coincurve`` (libsecp256k1) is the hot path; ``py-ecc`` is the portable pure
Python backend and the reference the tests cross-check (about 100x slower).
Both apply the same rules: 65-byte r || s || v, v in {27, 28}, 0 < r, s < n,
s in the lower half of the order (EIP-2 / OpenZeppelin ECDSA).
"""
from __future__ import annotations

from typing import Callable

from sequencer.core.hashing import address_from_public_key

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2


class SignatureError(ValueError):
    """A signature that cannot be accepted; the message says why."""


def parse_signature(signature: bytes) -> tuple[int, int, int]:
    """Return (r, s, recovery id 0/1) or raise SignatureError."""
    if len(signature) != 65:
        raise SignatureError(f"signature must be 65 bytes (r || s || v), got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise SignatureError(f"signature v must be 27 or 28, got {v}")
    if not 0 < r < SECP256K1_N:
        raise SignatureError("signature r is out of range")
    if not 0 < s < SECP256K1_N:
        raise SignatureError("signature s is out of range")
    if s > SECP256K1_HALF_N:
        raise SignatureError("signature s is in the upper half of the curve order (high-s); "
                             "normalise it to n - s and flip v")
    return r, s, v - 27


def _recover_coincurve(digest: bytes, signature: bytes) -> bytes:
    from coincurve import PublicKey
    r, s, recid = parse_signature(signature)
    try:
        key = PublicKey.from_signature_and_message(signature[:64] + bytes([recid]), digest, hasher=None)
    except Exception as exc:  # coincurve raises a bare Exception on an invalid signature
        raise SignatureError(f"signature does not recover a public key: {exc}") from None
    return address_from_public_key(key.format(compressed=False))


def _recover_py_ecc(digest: bytes, signature: bytes) -> bytes:
    from py_ecc.secp256k1 import secp256k1
    r, s, recid = parse_signature(signature)
    try:
        x, y = secp256k1.ecdsa_raw_recover(digest, (recid + 27, r, s))
    except Exception as exc:
        raise SignatureError(f"signature does not recover a public key: {exc}") from None
    if x == 0 and y == 0:
        raise SignatureError("signature does not recover a public key")
    return address_from_public_key(b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big"))


BACKENDS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "coincurve": _recover_coincurve,
    "py-ecc": _recover_py_ecc,
}


def get_recover(backend: str) -> Callable[[bytes, bytes], bytes]:
    """The recovery function of a backend: (digest, signature) -> 20-byte address."""
    try:
        return BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown signature backend {backend!r}; known: {', '.join(BACKENDS)}") from None


def sign_digest(digest: bytes, private_key: bytes) -> bytes:
    """Sign with libsecp256k1 (RFC 6979, low-s); returns r || s || v with v in {27, 28}."""
    from coincurve import PrivateKey
    sig = PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes([sig[64] + 27])


def address_of(private_key: bytes) -> bytes:
    from coincurve import PrivateKey
    return address_from_public_key(PrivateKey(private_key).public_key.format(compressed=False))
