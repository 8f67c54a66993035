"""A standby sequencer forwards every POST (txs, orders, oracle prices) to the
active sequencer the election named, and answers with the active one's answer:
clients keep one list of node URLs, not a leader address.

A request is forwarded once at most (``x-isoroll-forwarded``): if it reaches
another standby because the lead moved meanwhile, that one answers 503
``not_the_sequencer`` itself.  When the active sequencer does not answer, the
standby answers 503 ``log_unavailable``; the tx may or may not have been
written, and sending the same signed tx again is safe: a tx already in a block
is refused as ``nonce_used`` (its hash dedups), never applied twice.
"""
from __future__ import annotations

import json
import logging

import httpx

from sequencer.node.lifecycle import Phase

log = logging.getLogger("isoroll.forwarding")

FORWARDED = b"x-isoroll-forwarded"


def forward_writes(node, app):
    """``app`` wrapped so that POSTs to a standby go to the active sequencer."""
    # Long enough for the active sequencer's block commit to time out and say so.
    client = httpx.AsyncClient(timeout=2 * node.config.kafka_commit_timeout_s + 5)

    async def asgi(scope, receive, send) -> None:
        target = _get_target(node, scope)
        if target is None:
            await app(scope, receive, send)
            return
        body = await _read_body(receive, node.config.api_max_body_bytes)
        if body is None:
            await _answer(send, 413, {"error": {"code": "body_too_large", "message": "request body too large"}})
            return
        url = target + scope["path"] + (("?" + scope["query_string"].decode()) if scope.get("query_string") else "")
        headers = {"content-type": _header(scope, b"content-type") or "application/json",
                   FORWARDED.decode(): node.config.advertised_url}
        try:
            answer = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("forwarding to the active sequencer %s failed: %r", target, exc)
            await _answer(send, 503, {"error": {"code": "log_unavailable", "message": (
                f"the active sequencer {target} did not answer ({type(exc).__name__}); the tx may or may not "
                "be in the log: sending the same signed tx again is safe (nonce_used if it is)")}})
            return
        await send({"type": "http.response.start", "status": answer.status_code,
                    "headers": [(b"content-type", answer.headers.get("content-type", "application/json").encode()),
                                (b"content-length", str(len(answer.content)).encode()),
                                (b"x-isoroll-sequencer", target.encode())]})
        await send({"type": "http.response.body", "body": answer.content})

    asgi.close = client.aclose
    return asgi


def _get_target(node, scope) -> str | None:
    """The active sequencer's URL when this request is to be forwarded there."""
    if scope["type"] != "http" or scope["method"] != "POST" or node.phase is not Phase.STANDBY:
        return None
    if node.election is None or _header(scope, FORWARDED) is not None:
        return None
    url = node.election.leadership.active_url
    if not url or url == node.config.advertised_url:
        return None
    return url.rstrip("/")


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _read_body(receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send, status: int, payload: dict) -> None:
    data = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
