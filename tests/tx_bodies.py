"""Signed Transfer request bodies for the tx check tests (unit and worker)."""
from __future__ import annotations

import json

from sequencer.core import eip712
from sequencer.core.records import Transfer
from sequencer.core.signing import address_of, get_recover, sign_digest

DOMAIN = eip712.Domain(31337, b"\x11" * 20)
SEPARATOR = eip712.compute_domain_separator(DOMAIN)
KEY = bytes(range(1, 33))
ACCOUNT = address_of(KEY)
RECOVER = get_recover("coincurve")


def body(amount: int = 7, nonce: int = 1, domain: eip712.Domain = DOMAIN, signature: bytes | None = None,
         **extra) -> bytes:
    record = Transfer(ACCOUNT, b"\x22" * 20, amount, nonce, 10**13, b"")
    digest = eip712.compute_digest(eip712.compute_domain_separator(domain), "Transfer", record)
    sig = signature if signature is not None else sign_digest(digest, KEY)
    message = {"account": "0x" + ACCOUNT.hex(), "to": "0x" + "22" * 20, "amount": amount, "nonce": nonce,
               "expiry": 10**13}
    return json.dumps({"type": "Transfer", "message": message, "signature": "0x" + sig.hex(), **extra}).encode()
