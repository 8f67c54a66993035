"""The stateless checks of a submitted tx: JSON to record, tx hash, EIP-712 signature.

These need no node state, only the EIP-712 domain, so the node can run them in
its event loop or in worker processes (sequencer.node.checkers) and keep its
own core for HTTP and the builder.  What needs state (a used nonce, an exact
duplicate, the balance) is checked afterwards by the node and the builder.

The result crosses a process boundary, so it carries the record's log bytes
(msgpack, which decode back to the same record) rather than the record.
"""
from __future__ import annotations

import functools
from typing import Callable

import msgspec

from sequencer.core import eip712, wire
from sequencer.core.encoding import compute_record_hash, encode_record
from sequencer.core.rules.base import RuleError, verify_signer


class CheckedTx(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A tx that passed (``record`` and ``tx_hash`` set) or was refused (``code``
    and ``message`` set, the API error of API.md)."""
    record: bytes = b""
    tx_hash: bytes = b""
    code: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return not self.code


def refuse(code: str, message: str) -> CheckedTx:
    return CheckedTx(code=code, message=message)


def describe_domain(domain: eip712.Domain) -> str:
    return (f"{{name: {eip712.DOMAIN_NAME}, version: {eip712.DOMAIN_VERSION}, chainId: {domain.chain_id}, "
            f"verifyingContract: 0x{domain.verifying_contract.hex()}}}")


@functools.lru_cache(maxsize=8)
def get_signer_hint(domain: eip712.Domain) -> str:
    """How to fix a signature that recovers another address (built once per domain)."""
    return (f"sign the EIP-712 message under the domain {describe_domain(domain)} "
            "(GET /v1/status), with the fields exactly as sent")


def check_tx(body: bytes | msgspec.Raw, domain: eip712.Domain, domain_separator: bytes,
             recover: Callable[[bytes, bytes], bytes]) -> CheckedTx:
    """Parse one `{"type", "message", "signature"}` body and check its signature."""
    try:
        record = wire.parse_tx(body)
    except wire.WireError as exc:
        return refuse(exc.code, exc.message)
    record_bytes = encode_record(record)
    try:
        verify_signer(record, domain_separator, recover, get_signer_hint(domain))
    except RuleError as exc:
        return refuse(exc.code, exc.message)
    return CheckedTx(record_bytes, compute_record_hash(record_bytes))


def check_txs(bodies: list[bytes], domain: eip712.Domain, domain_separator: bytes,
              recover: Callable[[bytes, bytes], bytes]) -> list[CheckedTx]:
    return [check_tx(body, domain, domain_separator, recover) for body in bodies]
