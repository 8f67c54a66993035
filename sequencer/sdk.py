"""An async Python client for the isoroll API (API.md).  The CLI and the tests
use it; a bot can too::

    async with Client("http://127.0.0.1:8547", private_key=key) as client:
        receipt = await client.transfer(to="0x...", amount=10_000_000)

It signs with the same EIP-712 code as the node (eth-account produces the same
signatures; see docs/signing.md) and fetches the domain from GET /v1/status.
"""
from __future__ import annotations

import itertools
import time
from typing import Any

import httpx

from sequencer.core import eip712, records as R, wire
from sequencer.core.signing import address_of, sign_digest


class ApiError(Exception):
    """An error answer of the API: ``status``, ``code`` and ``message`` as sent."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def retriable(self) -> bool:
        return self.status >= 500


def parse_key(private_key: str | bytes) -> bytes:
    if isinstance(private_key, bytes):
        return private_key
    text = private_key.strip()
    text = text[2:] if text.startswith("0x") else text
    key = bytes.fromhex(text)
    if len(key) != 32:
        raise ValueError("a private key is 32 bytes of hex")
    return key


class NonceSource:
    """Millisecond-timestamp nonces, strictly increasing within this process."""

    def __init__(self) -> None:
        self._last = 0
        self._counter = itertools.count()

    def next(self) -> int:
        self._last = max(self._last + 1, int(time.time() * 1000))
        return self._last


class Client:
    def __init__(self, url: str, private_key: str | bytes | None = None, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.key = parse_key(private_key) if private_key is not None else None
        self.address = address_of(self.key) if self.key is not None else None
        self._http: httpx.AsyncClient | None = None
        self._timeout = timeout
        self._domain_separator: bytes | None = None
        self.nonces = NonceSource()

    async def start(self) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.url, timeout=self._timeout)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> "Client":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # --- raw HTTP -------------------------------------------------------------
    async def request(self, method: str, path: str, **kwargs) -> Any:
        await self.start()
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                err = response.json()["error"]
                raise ApiError(response.status_code, err["code"], err["message"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(response.status_code, "http_error", response.text[:500]) from None
        return response.json()

    async def status(self) -> dict:
        return await self.request("GET", "/v1/status")

    async def account(self, address: str | None = None) -> dict:
        return await self.request("GET", f"/v1/accounts/{address or wire.hex0x(self.address)}")

    async def receipt(self, tx_hash: str) -> dict:
        return await self.request("GET", f"/v1/tx/{tx_hash}")

    async def block(self, number: int) -> dict:
        return await self.request("GET", f"/v1/blocks/{number}")

    async def markets(self) -> list:
        return await self.request("GET", "/v1/markets")

    # --- signing -----------------------------------------------------------------
    async def domain_separator(self) -> bytes:
        if self._domain_separator is None:
            d = (await self.status())["eip712Domain"]
            self._domain_separator = eip712.compute_domain_separator(
                eip712.Domain(int(d["chainId"]), bytes.fromhex(d["verifyingContract"][2:])))
        return self._domain_separator

    def sign(self, record: R.Record, domain_separator: bytes) -> R.Record:
        import msgspec
        if self.key is None:
            raise ValueError("this client has no private key")
        digest = eip712.compute_digest(domain_separator, eip712.get_primary_type(record), record)
        return msgspec.structs.replace(record, signature=sign_digest(digest, self.key))

    @staticmethod
    def to_request(record: R.Record) -> dict:
        body = wire.record_to_json(record)
        signature = body.pop("signature")
        primary = body.pop("type")
        return {"type": primary, "message": body, "signature": signature}

    def default_expiry(self, seconds: float = 3600) -> int:
        return int((time.time() + seconds) * 1000)

    async def signed_transfer(self, to: str | bytes, amount: int, *, nonce: int | None = None,
                              expiry: int | None = None) -> R.Transfer:
        to_bytes = to if isinstance(to, bytes) else wire.parse_address(to, "to")
        record = R.Transfer(self.address, to_bytes, int(amount), nonce or self.nonces.next(),
                            expiry or self.default_expiry(), b"")
        return self.sign(record, await self.domain_separator())

    async def signed_withdraw(self, amount: int, *, nonce: int | None = None,
                              expiry: int | None = None) -> R.Withdraw:
        record = R.Withdraw(self.address, int(amount), nonce or self.nonces.next(),
                            expiry or self.default_expiry(), b"")
        return self.sign(record, await self.domain_separator())

    # --- submitting -----------------------------------------------------------------
    async def submit(self, record: R.Record) -> dict:
        return await self.request("POST", "/v1/tx", json=self.to_request(record))

    async def submit_many(self, records: list[R.Record]) -> list[dict]:
        body = {"txs": [self.to_request(r) for r in records]}
        return (await self.request("POST", "/v1/txs", json=body))["receipts"]

    async def transfer(self, to: str | bytes, amount: int, **kwargs) -> dict:
        return await self.submit(await self.signed_transfer(to, amount, **kwargs))

    async def withdraw(self, amount: int, **kwargs) -> dict:
        return await self.submit(await self.signed_withdraw(amount, **kwargs))
