"""Slow and idle connections are bounded (sequencer.node.http_limits) on a node
over the real broker: a request head sent one byte at a time is cut at the
header timeout, a connection that sends nothing is closed, and connections
beyond the limit are answered 503 and closed at once instead of holding file
descriptors; the node keeps serving throughout."""
from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from nodes import dev_clients, make_config
from sequencer.node.service import Service

pytestmark = pytest.mark.kafka


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    data = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(4096):
            data += chunk
    return data


async def test_a_slow_request_head_and_an_idle_connection_are_closed(broker, tmp_path, api_port):
    config = make_config(broker, "slow-" + uuid.uuid4().hex[:8], tmp_path, api_port, api_header_timeout_s=1.5)
    async with Service(config) as service:
        # One header byte per 0.3 s: the head would take ~20 s.
        reader, writer = await asyncio.open_connection("127.0.0.1", api_port)
        head = b"GET /v1/status HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 40 + b"\r\n\r\n"
        started = time.monotonic()
        closed_after = None
        for byte in head:
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            if reader.at_eof() or writer.is_closing():
                break
            try:
                answer = await asyncio.wait_for(reader.read(4096), 0.3)
            except asyncio.TimeoutError:
                continue
            closed_after = time.monotonic() - started
            break
        assert closed_after is not None, "the slow request was never cut"
        assert 1.2 < closed_after < 4.0, closed_after
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
        writer.close()

        # A connection that sends nothing at all.
        reader, writer = await asyncio.open_connection("127.0.0.1", api_port)
        started = time.monotonic()
        answer = await read_until_closed(reader, 10)
        assert 1.2 < time.monotonic() - started < 4.0
        assert b"request_timeout" in answer
        writer.close()

        # An honest client is served as before, keep-alive included.
        async with httpx.AsyncClient(base_url=service.url) as http:
            for _ in range(3):
                assert (await http.get("/v1/status")).status_code == 200
        async with dev_clients(service.url, 2)[0] as client:
            assert (await client.transfer(dev_clients(service.url, 2)[1].address, 1))["status"] == "ok"


async def test_connections_beyond_the_limit_get_503_and_hold_nothing(broker, tmp_path, api_port):
    limit = 20
    config = make_config(broker, "conns-" + uuid.uuid4().hex[:8], tmp_path, api_port,
                         api_max_connections=limit, api_header_timeout_s=60)
    async with Service(config) as service:
        connections = service.server.server_state.connections
        held = [await asyncio.open_connection("127.0.0.1", api_port) for _ in range(limit)]
        await asyncio.sleep(0.2)
        assert len(connections) == limit

        extra = [await asyncio.open_connection("127.0.0.1", api_port) for _ in range(30)]
        answers = await asyncio.gather(*(read_until_closed(reader, 5) for reader, _ in extra))
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"too_many_connections" in answer
        await asyncio.sleep(0.2)
        assert len(connections) == limit  # the refused ones were closed, not kept

        # A held connection may still send its request and be answered.
        reader, writer = held[0]
        writer.write(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")

        for _, writer in held:
            writer.close()
        for _, writer in extra:
            writer.close()
        await asyncio.sleep(0.3)
        assert len(connections) == 0
        async with httpx.AsyncClient(base_url=service.url) as http:
            assert (await http.get("/readyz")).status_code == 200
