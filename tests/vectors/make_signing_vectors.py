"""Generate tests/vectors/signing_vectors.json, deterministically.

    .venv/bin/python tests/vectors/make_signing_vectors.py          # rewrite the file
    .venv/bin/python tests/vectors/make_signing_vectors.py --check  # exit 1 if it differs

Keys and digests are keccak256 of fixed labels; signatures are RFC 6979
(deterministic) from libsecp256k1 via coincurve, normalised to low-s with
v in {27, 28}.  The expected addresses come from eth-account (an independent
derivation), so the file is not checked against the code that wrote it alone.
Invalid cases are derived from the first valid vector.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from eth_account import Account

from sequencer.core import eip712, records as R
from sequencer.core.hashing import keccak
from sequencer.core.signing import SECP256K1_N, sign_digest

OUT = Path(__file__).with_name("signing_vectors.json")
N_VALID = 12


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def build() -> dict:
    valid = []
    for i in range(N_VALID):
        key = keccak(b"isoroll signing vector key %d" % i)
        digest = keccak(b"isoroll signing vector digest %d" % i)
        valid.append({"private_key": _hex(key), "address": Account.from_key(key).address.lower(),
                      "digest": _hex(digest), "signature": _hex(sign_digest(digest, key))})
    # One vector whose digest is a real EIP-712 Transfer under the devnet-like domain.
    key = keccak(b"isoroll signing vector key eip712")
    account = Account.from_key(key)
    domain = eip712.Domain(7_471_337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
    transfer = R.Transfer(bytes.fromhex(account.address[2:]), b"\x22" * 20, 1_000_000, 1, 2_000_000_000_000, b"")
    digest = eip712.compute_digest(eip712.compute_domain_separator(domain), "Transfer", transfer)
    valid.append({"private_key": _hex(key), "address": account.address.lower(), "digest": _hex(digest),
                  "signature": _hex(sign_digest(digest, key)),
                  "typed_data": eip712.to_typed_data(domain, "Transfer", transfer)})

    base = valid[0]
    digest = bytes.fromhex(base["digest"][2:])
    sig = bytes.fromhex(base["signature"][2:])
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]

    def with_(r_=r, s_=s, v_=v) -> str:
        return _hex(r_ + s_.to_bytes(32, "big") + bytes([v_]))

    invalid = [
        {"name": "high_s", "signature": with_(s_=SECP256K1_N - s, v_=55 - v), "error": "high-s",
         "note": "the same signature's malleable twin (n - s, v flipped): valid ECDSA, rejected by EIP-2"},
        {"name": "v_0", "signature": with_(v_=0), "error": "v must be 27 or 28"},
        {"name": "v_1", "signature": with_(v_=1), "error": "v must be 27 or 28"},
        {"name": "v_29", "signature": with_(v_=29), "error": "v must be 27 or 28"},
        {"name": "r_zero", "signature": with_(r_=b"\x00" * 32), "error": "r is out of range"},
        {"name": "r_eq_n", "signature": with_(r_=SECP256K1_N.to_bytes(32, "big")), "error": "r is out of range"},
        {"name": "s_zero", "signature": with_(s_=0), "error": "s is out of range"},
        {"name": "s_eq_n", "signature": with_(s_=SECP256K1_N), "error": "s is out of range"},
        {"name": "s_max", "signature": with_(s_=2**256 - 1), "error": "s is out of range"},
        {"name": "short_64", "signature": _hex(sig[:64]), "error": "65 bytes"},
        {"name": "long_66", "signature": _hex(sig + b"\x00"), "error": "65 bytes"},
        {"name": "empty", "signature": "0x", "error": "65 bytes"},
    ]
    for case in invalid:
        case["digest"] = _hex(digest)
    return {
        "description": "secp256k1 recovery vectors for isoroll (tests/vectors/make_signing_vectors.py). "
                       "signature = r || s || v, v in {27, 28}, low-s.  'invalid' cases must be rejected "
                       "with an error containing 'error'.",
        "curve_order": _hex(SECP256K1_N.to_bytes(32, "big")),
        "valid": valid,
        "invalid": invalid,
    }


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if OUT.read_text() == text else 1)
    OUT.write_text(text)
    print(f"wrote {OUT}")
