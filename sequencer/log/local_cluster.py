"""A three-node Kafka cluster on 127.0.0.1 for tests, benchmarks and the soak,
driven through ``infra/kafka/kafka.sh``'s cluster commands.

Node N (1..3) is a combined broker + controller serving clients on
``port + N - 1``; its data is under ``<dir>/node-N``.  ``kill`` is a kill -9
(a crash), ``stop`` a clean shutdown.  ``leader`` asks the cluster which node
leads a topic's partition 0, so a test can crash exactly that one.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from sequencer.log.local_broker import REPO, run_kafka_script

NODE_IDS = (1, 2, 3)
TRANSACTION_STATE = "__transaction_state"


class ClusterError(RuntimeError):
    pass


class LocalCluster:
    def __init__(self, port: int, dir: Path | None = None) -> None:
        self.port = port
        self.dir = dir or REPO / ".devnet" / f"kafka-cluster-{port}"
        self.bootstrap = ",".join(f"127.0.0.1:{self.client_port(n)}" for n in NODE_IDS)

    def client_port(self, node_id: int) -> int:
        return self.port + node_id - 1

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = run_kafka_script(*args, env={"ISOROLL_KAFKA_CLUSTER_PORT": str(self.port),
                                              "ISOROLL_KAFKA_CLUSTER_DIR": str(self.dir)})
        if check and result.returncode != 0:
            raise ClusterError(f"kafka.sh {' '.join(args)} failed (cluster port {self.port}):\n{result.stderr}")
        return result

    def is_running(self) -> bool:
        return self._run("status-cluster", check=False).returncode == 0

    def start(self) -> None:
        self._run("start-cluster")

    def stop(self) -> None:
        self._run("stop-cluster")

    def wipe(self) -> None:
        self._run("wipe-cluster")

    def kill(self, *node_ids: int) -> None:
        """kill -9 the given nodes."""
        self._run("kill-node", *map(str, node_ids))

    def start_nodes(self, *node_ids: int) -> None:
        """Start the given nodes together and wait until each is ready."""
        self._run("start-node", *map(str, node_ids))

    def pid(self, node_id: int) -> int | None:
        try:
            return int((self.dir / f"node-{node_id}" / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def running_nodes(self) -> list[int]:
        out = []
        for node_id in NODE_IDS:
            pid = self.pid(node_id)
            if pid is not None and _is_alive(pid):
                out.append(node_id)
        return out

    async def describe(self, topic: str) -> dict:
        """Partition 0 of ``topic``: leader, replicas and ISR as the cluster reports them."""
        live = self.running_nodes()
        bootstrap = ",".join(f"127.0.0.1:{self.client_port(n)}" for n in live) or self.bootstrap
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="isoroll-cluster", request_timeout_ms=5000)
        await admin.start()
        try:
            (description,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        if description["error_code"]:
            raise ClusterError(f"cannot describe topic {topic!r}: error {description['error_code']}")
        (partition,) = [p for p in description["partitions"] if p["partition"] == 0]
        return partition

    async def leader(self, topic: str) -> int:
        return (await self.describe(topic))["leader"]

    async def wait_in_sync(self, *topics: str, timeout: float = 60.0) -> None:
        """Wait until partition 0 of each topic has all three replicas in its ISR
        (a restarted node has caught up), so that killing another node leaves two."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            states = []
            for topic in topics:
                try:
                    states.append(await self.describe(topic))
                except Exception as exc:  # not created yet, or no leader right now
                    states.append({"error": repr(exc)})
            if all(len(s.get("isr", ())) == len(NODE_IDS) and s.get("leader", -1) in NODE_IDS for s in states):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"replicas not in sync after {timeout:g} s: {states}")
            await asyncio.sleep(0.5)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
