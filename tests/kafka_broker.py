"""The tests' Kafka brokers (sequencer.log.local_broker, through infra/kafka/kafka.sh).

The test broker listens on 127.0.0.1:19092 (ISOROLL_TEST_KAFKA_PORT) with its
data under .devnet/test-kafka-<port>, apart from the devnet's broker on 9092.
Tests that stop the broker get a broker of their own on another port.
"""
from __future__ import annotations

import os
import signal

from sequencer.log.local_broker import REPO, LocalBroker, run_kafka_script

TEST_PORT = int(os.environ.get("ISOROLL_TEST_KAFKA_PORT", "19092"))

os.environ.setdefault("ISOROLL_KAFKA_JVM_OPTS", "-XX:TieredStopAtLevel=1")
"""Every broker and cluster node the tests start (kafka.sh reads it) compiles with C1 only:
it boots ~30 % sooner, and no C2 compiler threads take CPU from the tests; their loads are light."""


class Broker(LocalBroker):
    def __init__(self, port: int, session_ms: int | None = None) -> None:
        """``session_ms``: the broker's broker.session.timeout.ms (kafka.sh's
        ISOROLL_KAFKA_SESSION_MS), for a broker the tests kill -9: restarted, it
        registers only once the session of the killed one has expired (Kafka's
        9 s by default)."""
        super().__init__(port, REPO / ".devnet" / f"test-kafka-{port}")
        self.env = {"ISOROLL_KAFKA_PORT": str(port), "ISOROLL_KAFKA_DIR": str(self.dir)}
        if session_ms is not None:
            self.env["ISOROLL_KAFKA_SESSION_MS"] = str(session_ms)

    def _run(self, action: str):
        return run_kafka_script(action, env=self.env)

    def discard(self) -> None:
        """kill -9 and delete the data: a broker whose data goes needs no clean
        shutdown (kafka.sh stop waits up to 30 s for one)."""
        pid = self.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.wipe()  # waits until the process is gone, then deletes the data dir
