"""A single-node Kafka broker on 127.0.0.1 for the tests, the benchmarks and the
devnet, driven through ``infra/kafka/kafka.sh`` (start, stop, status, wipe).

Each user gives its broker its own port and data dir, so the devnet (9092), the
tests (19092, or ISOROLL_TEST_KAFKA_PORT) and the benchmarks (29092) never share
one.  Used as a context manager, a broker already running on that port is used
as it is and left running; one started here is stopped on exit.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = REPO / "infra" / "kafka" / "kafka.sh"


class BrokerError(RuntimeError):
    pass


def run_kafka_script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``bash infra/kafka/kafka.sh ARGS...`` with ``env`` added to ours."""
    return subprocess.run(["bash", str(KAFKA_SCRIPT), *args], env=dict(os.environ, **env),
                          capture_output=True, text=True)


class LocalBroker:
    def __init__(self, port: int, data_dir: Path | None = None) -> None:
        self.port = port
        self.dir = data_dir or REPO / ".devnet" / f"kafka-{port}"
        self.bootstrap = f"127.0.0.1:{port}"
        self.started_here = False

    def _run(self, action: str) -> subprocess.CompletedProcess:
        return run_kafka_script(action, env={"ISOROLL_KAFKA_PORT": str(self.port),
                                             "ISOROLL_KAFKA_DIR": str(self.dir)})

    def is_running(self) -> bool:
        return self._run("status").returncode == 0

    def start(self) -> None:
        """Start the broker (installing Kafka on first use) and wait until it is ready."""
        result = self._run("start")
        if result.returncode != 0:
            raise BrokerError(f"kafka.sh start failed on port {self.port}:\n{result.stderr}")

    def stop(self) -> None:
        self._run("stop")

    def wipe(self) -> None:
        """Stop the broker and delete its data."""
        self._run("wipe")

    @property
    def pid(self) -> int | None:
        try:
            return int((self.dir / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def __enter__(self) -> "LocalBroker":
        self.started_here = not self.is_running()
        if self.started_here:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.started_here:
            self.stop()
            self.started_here = False
