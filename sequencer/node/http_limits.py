"""Bounds on slow and idle HTTP connections, which uvicorn leaves open.

uvicorn closes a connection idle *after* a response (``timeout_keep_alive``),
but never one that sends its request head slowly or not at all: one header
byte per second kept a connection for minutes, and 500 such connections took
500 file descriptors.  ``BoundedHttpProtocol`` (uvicorn's httptools protocol)
adds two bounds:

- a header timeout: a request head (request line and headers) must arrive
  within ``header_timeout_s`` of the connection's opening or of its first
  byte, else the connection is closed (408 when nothing was answered yet);
- a connection limit: a connection beyond ``max_connections`` is answered 503
  and closed as soon as it opens, before it can hold anything.

``make_protocol(...)`` binds the settings (NodeConfig ``api_*``) into a class
for ``uvicorn.Config(http=...)``.

``RateLimiter`` bounds what one client may ask of the costly public routes
(the dry run, the /v1/events replay, the L1 view): token buckets per client
address, 429 with Retry-After past them.
"""
from __future__ import annotations

import asyncio
import json
import math

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s")
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
              b"content-length: %d\r\n\r\n%s")


def _error(template: bytes, code: str, message: str) -> bytes:
    body = b'{"error":{"code":"%s","message":"%s"}}' % (code.encode(), message.encode())
    return template % (len(body), body)


class BoundedHttpProtocol(HttpToolsProtocol):
    header_timeout_s: float = 10.0
    max_connections: int = 512

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_error(_REFUSED, "too_many_connections",
                                   f"the node holds its limit of {self.max_connections} connections"))
            transport.close()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # nothing of ours half-written
            self.transport.write(_error(_TIMED_OUT, "request_timeout",
                                        f"no complete request head within {self.header_timeout_s:g} s"))
        self.transport.close()


def make_protocol(header_timeout_s: float, max_connections: int) -> type[BoundedHttpProtocol]:
    return type("BoundedHttpProtocol", (BoundedHttpProtocol,),
                {"header_timeout_s": header_timeout_s, "max_connections": max_connections})


# --- per-client rate limits of the costly public routes --------------------------------

class TokenBucket:
    """``rate`` tokens a second up to ``burst``; one request takes one."""
    __slots__ = ("tokens", "stamp")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = burst
        self.stamp = now

    def take(self, rate: float, burst: float, now: float) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


class RateLimiter:
    """Token buckets per (route class, client address): the dry run, the
    WebSocket replay of /v1/events and the L1 view cost the node real work per
    request, so a public node bounds each client (docs/api.md "Rate limits").
    ``limits`` maps a class to (requests per second, burst); a rate of 0 turns
    the class off.  At most ``max_clients`` buckets are kept per class; past
    that the full ones (idle clients) are dropped, then the oldest."""

    def __init__(self, limits: dict[str, tuple[float, float]], max_clients: int = 65_536) -> None:
        self.limits = {kind: limit for kind, limit in limits.items() if limit[0] > 0}
        self.max_clients = max_clients
        self.buckets: dict[str, dict[str, TokenBucket]] = {kind: {} for kind in self.limits}

    def check(self, kind: str, client: str, now: float) -> float:
        """0 if the request may go on, else its Retry-After in seconds."""
        limit = self.limits.get(kind)
        if limit is None:
            return 0.0
        rate, burst = limit
        buckets = self.buckets[kind]
        bucket = buckets.get(client)
        if bucket is None:
            if len(buckets) >= self.max_clients:
                self._prune(buckets, rate, burst, now)
            bucket = buckets[client] = TokenBucket(burst, now)
        return bucket.take(rate, burst, now)

    def _prune(self, buckets: dict[str, TokenBucket], rate: float, burst: float, now: float) -> None:
        for client in [c for c, b in buckets.items() if b.tokens + (now - b.stamp) * rate >= burst]:
            del buckets[client]
        while len(buckets) >= self.max_clients:
            del buckets[next(iter(buckets))]


def classify_request(scope) -> str | None:
    """Which rate-limited class an ASGI request belongs to, if any."""
    path, query = scope["path"], scope.get("query_string", b"")
    if scope["type"] == "http":
        if scope["method"] == "POST" and (path == "/v1/tx/dry-run" or (
                path == "/v1/tx" and query in (b"dryRun=1", b"dryRun=true"))):
            return "dry_run"
        if scope["method"] == "GET" and (path == "/v1/l1" or path.startswith("/v1/l1/")):
            return "l1"
    elif scope["type"] == "websocket" and path == "/v1/events" and b"fromBlock=" in query:
        return "events_replay"
    return None


def client_address(scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


async def send_rate_limited(scope, send, kind: str, retry_after: float) -> None:
    """429 with Retry-After (whole seconds, at least 1); a WebSocket is refused
    with the same HTTP answer where the server offers denial responses."""
    seconds = max(1, math.ceil(retry_after))
    body = json.dumps({"error": {"code": "rate_limited", "message": f"too many {kind.replace('_', ' ')} "
                                 f"requests from this client; retry after {seconds} s"}}).encode()
    headers = [(b"content-type", b"application/json"), (b"retry-after", str(seconds).encode()),
               (b"content-length", str(len(body)).encode())]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": 429, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1013, "reason": "rate limited"})
