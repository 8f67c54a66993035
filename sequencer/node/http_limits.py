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
"""
from __future__ import annotations

import asyncio

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
