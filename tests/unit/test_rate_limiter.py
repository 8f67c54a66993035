"""The token buckets of the public node's rate limits (sequencer.node.http_limits):
burst then rate, per client and per route class, Retry-After that is exact,
bounded memory, and which requests each class covers."""
from __future__ import annotations

import pytest

from sequencer.node.http_limits import RateLimiter, classify_request


def test_a_burst_then_the_rate_and_an_exact_retry_after():
    limiter = RateLimiter({"dry_run": (2.0, 3.0)})
    assert [limiter.check("dry_run", "1.2.3.4", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("dry_run", "1.2.3.4", 100.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert limiter.check("dry_run", "1.2.3.4", 100.25) == pytest.approx(0.25)
    assert limiter.check("dry_run", "1.2.3.4", 100.5) == 0.0
    assert limiter.check("dry_run", "1.2.3.4", 100.5) > 0
    assert limiter.check("dry_run", "1.2.3.4", 1000.0) == 0.0  # refilled, but never above the burst
    assert limiter.buckets["dry_run"]["1.2.3.4"].tokens == pytest.approx(2.0)


def test_clients_and_classes_do_not_share_buckets_and_zero_turns_a_class_off():
    limiter = RateLimiter({"dry_run": (1.0, 1.0), "l1": (1.0, 1.0), "events_replay": (0.0, 5.0)})
    assert limiter.check("dry_run", "a", 0.0) == 0.0
    assert limiter.check("dry_run", "a", 0.0) > 0
    assert limiter.check("dry_run", "b", 0.0) == 0.0  # another client
    assert limiter.check("l1", "a", 0.0) == 0.0        # another class
    assert all(limiter.check("events_replay", "a", 0.0) == 0.0 for _ in range(100))  # off
    assert limiter.check("unlisted", "a", 0.0) == 0.0


def test_memory_is_bounded_idle_clients_go_first():
    limiter = RateLimiter({"dry_run": (1.0, 2.0)}, max_clients=100)
    limiter.check("dry_run", "busy", 0.0)
    limiter.check("dry_run", "busy", 0.0)  # the first client, its bucket empty
    for i in range(1000):
        now = i + 1.0
        assert limiter.check("dry_run", "busy", now) == 0.0  # one a second: never idle, never full
        limiter.check("dry_run", f"10.0.{i // 256}.{i % 256}", now)  # each asks once, then is idle
        assert len(limiter.buckets["dry_run"]) <= 100
    assert "busy" in limiter.buckets["dry_run"]  # the oldest, but not idle: kept
    assert limiter.check("dry_run", "busy", 1000.0) > 0  # so it is still limited


@pytest.mark.parametrize("scope,kind", [
    ({"type": "http", "method": "POST", "path": "/v1/tx", "query_string": b"dryRun=1"}, "dry_run"),
    ({"type": "http", "method": "POST", "path": "/v1/tx", "query_string": b"dryRun=true"}, "dry_run"),
    ({"type": "http", "method": "POST", "path": "/v1/tx/dry-run", "query_string": b""}, "dry_run"),
    ({"type": "http", "method": "POST", "path": "/v1/tx", "query_string": b""}, None),
    ({"type": "http", "method": "GET", "path": "/v1/l1", "query_string": b""}, "l1"),
    ({"type": "http", "method": "GET", "path": "/v1/l1/accounts/0xab", "query_string": b""}, "l1"),
    ({"type": "http", "method": "GET", "path": "/v1/l1x", "query_string": b""}, None),
    ({"type": "websocket", "path": "/v1/events", "query_string": b"fromBlock=5&account=0xab"}, "events_replay"),
    ({"type": "websocket", "path": "/v1/events", "query_string": b"account=0xab"}, None),
    ({"type": "http", "method": "GET", "path": "/v1/status", "query_string": b""}, None),
])
def test_which_requests_each_class_covers(scope, kind):
    assert classify_request(scope) == kind
