"""Start and stop real Kafka brokers for the tests through infra/kafka/kafka.sh.

The test broker listens on 127.0.0.1:19092 (ISOROLL_TEST_KAFKA_PORT) with its
data under .devnet/test-kafka-<port>, apart from the devnet's broker on 9092.
Tests that stop the broker get a broker of their own on another port.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "infra" / "kafka" / "kafka.sh"
TEST_PORT = int(os.environ.get("ISOROLL_TEST_KAFKA_PORT", "19092"))


class Broker:
    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = REPO / ".devnet" / f"test-kafka-{port}"
        self.bootstrap = f"127.0.0.1:{port}"

    def _run(self, action: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, ISOROLL_KAFKA_PORT=str(self.port), ISOROLL_KAFKA_DIR=str(self.dir))
        return subprocess.run(["bash", str(SCRIPT), action], env=env, capture_output=True, text=True)

    def is_running(self) -> bool:
        return self._run("status").returncode == 0

    def start(self) -> None:
        result = self._run("start")
        if result.returncode != 0:
            raise RuntimeError(f"kafka.sh start failed on port {self.port}:\n{result.stderr}")

    def stop(self) -> None:
        self._run("stop")

    def wipe(self) -> None:
        self._run("wipe")
