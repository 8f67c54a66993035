"""Starting the tests' Kafka JVMs in the background as soon as the collected
tests show they are needed, so that their boot (seconds of JVM start, storage
format and quorum per node) runs on the second core while the first tests run
in this process; the fixtures that hand them out wait for that start instead
of making their own (tests/conftest.py calls ``launch_for`` after collection).

Each start is the same ``infra/kafka/kafka.sh`` command the fixtures run, and
a fixture treats a broker or cluster started here exactly as one it started
itself (it stops it at the end of the session); one already running before the
session is used as it is and left running, as before.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from sequencer.log.local_broker import KAFKA_SCRIPT


@dataclass
class Launch:
    """A ``kafka.sh`` start running in the background."""
    what: str
    process: subprocess.Popen

    def wait(self) -> None:
        """Until the start is over; RuntimeError with kafka.sh's output if it failed."""
        out, _ = self.process.communicate()
        if self.process.returncode != 0:
            raise RuntimeError(f"{self.what} failed in the background (exit {self.process.returncode}):\n{out}")


LAUNCHES: dict[str, Launch] = {}
"""Pending or finished starts by key ("broker", "cluster"), taken by the fixtures."""


def launch(key: str, action: str, env: dict[str, str]) -> Launch:
    process = subprocess.Popen(["bash", str(KAFKA_SCRIPT), action], env=dict(os.environ, **env),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    LAUNCHES[key] = Launch(f"kafka.sh {action} ({env})", process)
    return LAUNCHES[key]


DEFERRED: dict[str, tuple[str, dict[str, str]]] = {}
"""Starts held back until the broker is up (the JVMs boot one set at a time)."""


def launch_deferred() -> None:
    """Launch the held-back starts (the broker fixture calls this once its broker is up)."""
    while DEFERRED:
        key, (action, env) = DEFERRED.popitem()
        launch(key, action, env)


def take(key: str) -> Launch | None:
    """The background start of `key`, if there was one (then the fixture owns it)."""
    if key in DEFERRED:
        launch_deferred()
    return LAUNCHES.pop(key, None)


def launch_for(items) -> None:
    """Start, in the background, the broker if a collected test uses ``broker``
    and the three-node cluster if one uses ``cluster_session``, unless they run."""
    names = set()
    for item in items:
        names.update(getattr(item, "fixturenames", ()))
    if "broker" in names and "broker" not in LAUNCHES:
        from kafka_broker import TEST_PORT, Broker
        broker = Broker(TEST_PORT)
        if not broker.is_running():
            launch("broker", "start", {"ISOROLL_KAFKA_PORT": str(broker.port), "ISOROLL_KAFKA_DIR": str(broker.dir)})
    if "cluster_session" in names and "cluster" not in LAUNCHES:
        from kafka_cluster import test_cluster
        cluster = test_cluster()
        if not cluster.running_nodes():
            start = ("start-cluster", {"ISOROLL_KAFKA_CLUSTER_PORT": str(cluster.port),
                                       "ISOROLL_KAFKA_CLUSTER_DIR": str(cluster.dir)})
            if "broker" in LAUNCHES:
                DEFERRED["cluster"] = start  # after the broker: not four JVMs booting at once
            else:
                launch("cluster", *start)


def finish_unused() -> None:
    """At the end of the session: a start no fixture took (its tests were
    deselected or skipped) is waited for and stopped again."""
    DEFERRED.clear()
    for key in list(LAUNCHES):
        launch_ = LAUNCHES.pop(key)
        try:
            launch_.wait()
        except RuntimeError:
            pass
        if key == "broker":
            from kafka_broker import TEST_PORT, Broker
            Broker(TEST_PORT).stop()
        else:
            from kafka_cluster import test_cluster
            test_cluster().stop()
