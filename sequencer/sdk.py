"""An async Python client for the isoroll API (API.md).  The CLI and the tests
use it; a bot can too::

    async with Client("http://127.0.0.1:8547", private_key=key) as client:
        receipt = await client.transfer(to="0x...", amount=10_000_000)

It signs with the same EIP-712 code as the node (eth-account produces the same
signatures; see docs/signing.md) and fetches the domain from GET /v1/status.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Sequence

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
    def __init__(self, url: str, private_key: str | bytes | None = None, *, timeout: float = 30.0,
                 fallback_urls: Sequence[str] = ()) -> None:
        """``fallback_urls``: other nodes of the same chain (standby sequencers,
        which forward txs to the active one): ``submit`` moves on to them when a
        node cannot be reached or does not answer (docs/operations.md, Failover)."""
        self.url = url.rstrip("/")
        self.urls = [self.url, *(u.rstrip("/") for u in fallback_urls)]
        self._turn = 0
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
        if len(self.urls) > 1:
            return await self.submit_anywhere(record)
        return await self.request("POST", "/v1/tx", json=self.to_request(record))

    async def submit_anywhere(self, record: R.Record, rounds: int = 2) -> dict:
        """POST /v1/tx to the first node that answers, going round ``self.urls``
        at most ``rounds`` times.  A node that cannot be reached, gives no answer
        or answers 503 is left for the next.  The same signed tx is sent each
        time, so it is applied at most once: if an unanswered attempt did get it
        into a block, the next node answers ``nonce_used`` and its receipt is
        returned instead."""
        from sequencer.core.encoding import compute_record_hash, encode_record
        body = self.to_request(record)
        tx_hash = "0x" + compute_record_hash(encode_record(record)).hex()
        failure: Exception | None = None
        for attempt in range(rounds * len(self.urls)):
            url = self.urls[self._turn % len(self.urls)]
            try:
                return await self.request("POST", url + "/v1/tx", json=body)
            except ApiError as exc:
                if exc.code == "nonce_used" and attempt > 0:
                    return await self.request("GET", f"{url}/v1/tx/{tx_hash}")
                if exc.status != 503:
                    raise
                failure = exc
            except httpx.TransportError as exc:
                failure = exc
            self._turn += 1
            await asyncio.sleep(0.2)
        assert failure is not None
        raise failure

    async def submit_many(self, records: list[R.Record]) -> list[dict]:
        body = {"txs": [self.to_request(r) for r in records]}
        return (await self.request("POST", "/v1/txs", json=body))["receipts"]

    async def transfer(self, to: str | bytes, amount: int, **kwargs) -> dict:
        return await self.submit(await self.signed_transfer(to, amount, **kwargs))

    async def withdraw(self, amount: int, **kwargs) -> dict:
        return await self.submit(await self.signed_withdraw(amount, **kwargs))

    # --- trading (docs/api.md) ------------------------------------------------------
    async def market(self, market: int) -> dict:
        return await self.request("GET", f"/v1/markets/{int(market)}")

    async def book(self, market: int, depth: int = 20) -> dict:
        """{"market", "bids": [[price, size, orders], ...], "asks": [...], ...}, best first."""
        return await self.request("GET", f"/v1/markets/{int(market)}/book", params={"depth": depth})

    async def open_orders(self, address: str | None = None, market: int | None = None) -> list[dict]:
        params = {"market": market} if market else None
        return await self.request("GET", f"/v1/accounts/{address or wire.hex0x(self.address)}/orders",
                                  params=params)

    async def fills(self, address: str | None = None, limit: int = 100) -> list[dict]:
        """Recent fills of an account, newest first."""
        return await self.request("GET", f"/v1/accounts/{address or wire.hex0x(self.address)}/fills",
                                  params={"limit": limit})

    async def fill_history(self, address: str | None = None, limit: int = 100,
                           before: str | None = None) -> dict:
        """One page of an account's fills from genesis, newest first:
        ``{"items", "next"}``; pass ``next`` as ``before`` for the next page."""
        return await self.request("GET", f"/v1/accounts/{address or wire.hex0x(self.address)}/history/fills",
                                  params=page_params(limit, before))

    async def insurance_history(self, limit: int = 100, before: str | None = None) -> dict:
        """The insurance fund: ``{"balance", "historyFromBlock", "items", "next"}``,
        every change newest first (``kind``: fee_share, liquidation, funding_dust;
        ``amount`` and ``balance`` in quote units); ``next`` is the cursor for ``before``."""
        return await self.request("GET", "/v1/insurance/history", params=page_params(limit, before))

    async def positions(self, address: str | None = None) -> list[dict]:
        return (await self.account(address))["positions"]

    async def signed_order(self, market: int, is_buy: bool, price: int, size: int, *, leverage: int = 1,
                           time_in_force: int | str | None = None, reduce_only: bool = False,
                           nonce: int | None = None, expiry: int | None = None) -> R.PlaceOrder:
        """``time_in_force`` defaults to good-till-cancel, and to
        immediate-or-cancel for a reduce-only order (the rules refuse a resting
        reduce-only order: docs/engine.md)."""
        if time_in_force is None:
            time_in_force = "ioc" if reduce_only else "gtc"
        record = R.PlaceOrder(self.address, int(market), bool(is_buy), int(price), int(size), int(leverage),
                              parse_time_in_force(time_in_force), bool(reduce_only), nonce or self.nonces.next(),
                              expiry or self.default_expiry(), b"")
        return self.sign(record, await self.domain_separator())

    async def place_order(self, market: int, is_buy: bool, price: int, size: int, **kwargs) -> dict:
        """Sign and submit a PlaceOrder.  Integers in market units (GET /v1/markets):
        price in quote units per whole base unit, size in base lots.  The receipt
        adds "order" (its status as of the block: resting, partially_filled,
        filled, expired for an IOC remainder) and "fills" (what it took as taker).
        The order's id is (account, nonce): ``receipt["order"]["nonce"]``."""
        return await self.submit(await self.signed_order(market, is_buy, price, size, **kwargs))

    async def signed_cancel(self, order_nonce: int, *, nonce: int | None = None,
                            expiry: int | None = None) -> R.CancelOrder:
        record = R.CancelOrder(self.address, int(order_nonce), nonce or self.nonces.next(),
                               expiry or self.default_expiry(), b"")
        return self.sign(record, await self.domain_separator())

    async def cancel_order(self, order_nonce: int, **kwargs) -> dict:
        return await self.submit(await self.signed_cancel(order_nonce, **kwargs))

    async def cancel_all(self, market: int | None = None) -> list[dict]:
        """Cancel every open order of this account (in one market, or all).

        The node holds no user keys, so cancel-all is done here: read the open
        orders, sign one CancelOrder each, send them as one POST /v1/txs batch
        (one receipt per cancel; an order filled meanwhile gets a failed one)."""
        orders = await self.open_orders(market=market)
        if not orders:
            return []
        cancels = [await self.signed_cancel(o["nonce"]) for o in orders]
        receipts = []
        batch = 256
        for i in range(0, len(cancels), batch):
            receipts += await self.submit_many(cancels[i:i + batch])
        return receipts

    async def signed_adjust_margin(self, market: int, amount: int, *, nonce: int | None = None,
                                   expiry: int | None = None) -> R.AdjustMargin:
        record = R.AdjustMargin(self.address, int(market), int(amount), nonce or self.nonces.next(),
                                expiry or self.default_expiry(), b"")
        return self.sign(record, await self.domain_separator())

    async def adjust_margin(self, market: int, amount: int, **kwargs) -> dict:
        """Move collateral into (amount > 0) or out of (amount < 0) one isolated position."""
        return await self.submit(await self.signed_adjust_margin(market, amount, **kwargs))

    # --- trigger orders, modify, dead-man's switch (docs/api.md "POST /v1/tx") ----------
    async def signed_trigger(self, market: int, is_buy: bool, trigger_price: int, price: int, size: int, *,
                             tpsl: int | str = "sl", leverage: int = 1, reduce_only: bool = True,
                             nonce: int | None = None, expiry: int | None = None) -> R.PlaceTrigger:
        """A stop-loss (``tpsl="sl"``) or take-profit (``"tp"``) on the mark:
        when the mark crosses ``trigger_price`` it becomes an immediate-or-cancel
        order with limit ``price`` (a sell's limit at or below the trigger, a
        buy's at or above).  Reduce-only unless told otherwise."""
        record = R.PlaceTrigger(self.address, int(market), bool(is_buy), int(trigger_price), int(price), int(size),
                                int(leverage), parse_tpsl(tpsl), bool(reduce_only), nonce or self.nonces.next(),
                                expiry or self.default_expiry(), b"")
        return self.sign(record, await self.domain_separator())

    async def place_trigger(self, market: int, is_buy: bool, trigger_price: int, price: int, size: int,
                            **kwargs) -> dict:
        """Sign and submit a PlaceTrigger; its id is (account, nonce), cancelled by cancel_order(nonce)."""
        return await self.submit(await self.signed_trigger(market, is_buy, trigger_price, price, size, **kwargs))

    async def signed_modify(self, order_nonce: int, price: int, size: int, *, nonce: int | None = None,
                            expiry: int | None = None) -> R.ModifyOrder:
        record = R.ModifyOrder(self.address, int(order_nonce), int(price), int(size), nonce or self.nonces.next(),
                               expiry or self.default_expiry(), b"")
        return self.sign(record, await self.domain_separator())

    async def modify_order(self, order_nonce: int, price: int, size: int, **kwargs) -> dict:
        """Cancel the resting order ``order_nonce`` and place its replacement at
        ``price`` / ``size`` (full size, not the remainder) in one signed tx, both
        or neither.  The replacement is the order ``receipt["order"]["nonce"]``;
        it goes to the back of its price level."""
        return await self.submit(await self.signed_modify(order_nonce, price, size, **kwargs))

    async def signed_schedule_cancel(self, cancel_at_ms: int, *, nonce: int | None = None,
                                     expiry: int | None = None) -> R.ScheduleCancel:
        record = R.ScheduleCancel(self.address, int(cancel_at_ms), nonce or self.nonces.next(),
                                  expiry or self.default_expiry(), b"")
        return self.sign(record, await self.domain_separator())

    async def schedule_cancel(self, cancel_at_ms: int, **kwargs) -> dict:
        """The dead-man's switch: cancel all this account's orders and triggers at
        ``cancel_at_ms`` (block time, ms since the epoch; at least 5 s ahead); 0 clears it."""
        return await self.submit(await self.signed_schedule_cancel(cancel_at_ms, **kwargs))

    async def triggers(self, address: str | None = None) -> list[dict]:
        return (await self.account(address))["triggers"]

    # --- the backstop vault (docs/engine.md "Backstop vault") ---------------------
    async def vault(self, address: str | None = None) -> dict:
        """GET /v1/vault: equity, shares, share price (ppm), positions, limits; with
        ``address`` (default: this client's) the holder's shares, lock-up end and value."""
        holder = address or (wire.hex0x(self.address) if self.address is not None else None)
        return await self.request("GET", "/v1/vault", params={"address": holder} if holder else None)

    async def signed_vault_deposit(self, amount: int, *, min_shares: int = 0, nonce: int | None = None,
                                   expiry: int | None = None) -> R.VaultDeposit:
        record = R.VaultDeposit(self.address, int(amount), int(min_shares), nonce or self.nonces.next(),
                                expiry or self.default_expiry(), b"")
        return self.sign(record, await self.domain_separator())

    async def vault_deposit(self, amount: int, **kwargs) -> dict:
        """Move ``amount`` of free collateral into the vault for shares (all the
        holder's shares are then locked for the preset's lock-up)."""
        return await self.submit(await self.signed_vault_deposit(amount, **kwargs))

    async def signed_vault_withdraw(self, shares: int, *, min_amount: int = 0, nonce: int | None = None,
                                    expiry: int | None = None) -> R.VaultWithdraw:
        record = R.VaultWithdraw(self.address, int(shares), int(min_amount), nonce or self.nonces.next(),
                                 expiry or self.default_expiry(), b"")
        return self.sign(record, await self.domain_separator())

    async def vault_withdraw(self, shares: int, **kwargs) -> dict:
        """Redeem ``shares`` for free collateral at the vault's equity per share."""
        return await self.submit(await self.signed_vault_withdraw(shares, **kwargs))

    async def auctions(self, market: int | None = None) -> list[dict]:
        """GET /v1/auctions: the running liquidation auctions and each one's price now."""
        return await self.request("GET", "/v1/auctions", params=None if market is None else {"market": int(market)})

    async def signed_auction_bid(self, owner: str | bytes, market: int, size: int, price: int, *, leverage: int = 1,
                                 nonce: int | None = None, expiry: int | None = None) -> R.AuctionBid:
        owner = wire.parse_address(owner, "owner") if isinstance(owner, str) else bytes(owner)
        record = R.AuctionBid(self.address, owner, int(market), int(size), int(price), int(leverage),
                              nonce or self.nonces.next(), expiry or self.default_expiry(), b"")
        return self.sign(record, await self.domain_separator())

    async def auction_bid(self, owner: str | bytes, market: int, size: int, price: int, **kwargs) -> dict:
        """Take ``size`` lots of ``owner``'s liquidation auction at its current
        price, if no worse than ``price`` (a limit; market units)."""
        return await self.submit(await self.signed_auction_bid(owner, market, size, price, **kwargs))

    async def submit_oracle_price(self, record: R.OraclePrice) -> dict:
        """POST /v1/oracle: a price signed by the oracle signers (sequencer.oracle
        makes them).  The receipt adds "liquidations" done in the same block."""
        body = {"market": record.market, "price": record.price, "timestamp": record.timestamp_ms,
                "signatures": [wire.hex0x(s) for s in record.signatures]}
        return await self.request("POST", "/v1/oracle", json=body)

    def stream(self, types: tuple[str, ...] | None = None) -> "Stream":
        """The WebSocket /v1/stream events (dicts with a "type": block, receipt,
        fill, book) from the moment of connecting, as an async iterator::

            async for event in client.stream(types=("fill",)):
                ...

        or, to be sure of the subscription before sending txs::

            async with client.stream(("fill",)) as events:
                await client.place_order(...)
                event = await events.next(timeout=5)

        Iteration ends when the server closes the connection (close code 1013:
        this client fell behind; reconnect and read what was missed over HTTP)."""
        return Stream("ws" + self.url[len("http"):] + "/v1/stream", types)


class Stream:
    """An open WebSocket subscription (Client.stream)."""

    def __init__(self, url: str, types: tuple[str, ...] | None) -> None:
        self.url = url
        self.types = set(types) if types else None
        self._ws = None

    async def connect(self) -> "Stream":
        import websockets
        if self._ws is None:
            self._ws = await websockets.connect(self.url, max_size=1 << 22)
        return self

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def __aenter__(self) -> "Stream":
        return await self.connect()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __aiter__(self) -> "Stream":
        return self

    async def __anext__(self) -> dict:
        import json

        import websockets
        await self.connect()
        while True:
            try:
                message = await self._ws.recv()
            except websockets.ConnectionClosed:
                await self.close()
                raise StopAsyncIteration from None
            event = json.loads(message)
            if self.types is None or event.get("type") in self.types:
                return event

    async def next(self, timeout: float | None = None) -> dict:
        """The next event, or TimeoutError after ``timeout`` seconds."""
        import asyncio
        return await asyncio.wait_for(self.__anext__(), timeout)


TIME_IN_FORCE = {"gtc": 0, "good-till-cancel": 0, "ioc": 1, "immediate-or-cancel": 1, "post-only": 2,
                 "post_only": 2, "alo": 2}


def page_params(limit: int, before: str | None) -> dict:
    return {"limit": limit} if before is None else {"limit": limit, "before": before}


TPSL_NAMES = {"tp": 1, "take-profit": 1, "sl": 2, "stop-loss": 2}


def parse_tpsl(value: int | str) -> int:
    """1 take-profit, 2 stop-loss, from the number or a name (tp, sl, take-profit, stop-loss)."""
    if isinstance(value, str):
        if value.lower() not in TPSL_NAMES:
            raise ValueError(f"tpsl must be tp or sl, got {value!r}")
        return TPSL_NAMES[value.lower()]
    if value not in (1, 2):
        raise ValueError(f"tpsl must be 1 (take-profit) or 2 (stop-loss), got {value}")
    return int(value)


def parse_time_in_force(value: int | str) -> int:
    """0/"gtc" good-till-cancel, 1/"ioc" immediate-or-cancel, 2/"post-only"."""
    if isinstance(value, int):
        return value
    try:
        return TIME_IN_FORCE[value.lower()]
    except KeyError:
        raise ValueError(f"time in force {value!r}: one of gtc, ioc, post-only (or 0, 1, 2)") from None
