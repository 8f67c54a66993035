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
import sys
from dataclasses import dataclass
from pathlib import Path

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


TESTS = Path(__file__).resolve().parent

PRECOMPILE = """
from l1_bridge.compile import CONTRACTS_DIR, compile_contract
for path in sorted(CONTRACTS_DIR.glob("*.vy"), key=lambda p: -p.stat().st_size):
    try:
        compile_contract(path.stem)
    except Exception:  # a test compiling it itself reports the error
        pass
"""
"""Compiles every contract of l1_bridge/contracts into the disk cache (largest first)."""

PRECOMPILING: list[subprocess.Popen] = []


def uncompiled_contracts() -> list[str]:
    """The contracts with no entry in l1_bridge.compile's disk cache."""
    try:
        from l1_bridge.compile import CONTRACTS_DIR, _cache_dir, source_hash
    except ImportError:  # no vyper: nothing to compile
        return []
    out = []
    for path in CONTRACTS_DIR.glob("*.vy"):
        if not (_cache_dir() / f"{path.stem}-{source_hash(path.stem)[:32]}.json").is_file():
            out.append(path.stem)
    return out


def launch_precompile(items) -> None:
    """When the run has tests/unit (first, tests/conftest.py) and tests that
    deploy contracts, compile the contracts whose disk cache is cold in a
    process of its own meanwhile: on a fresh machine compiling them took ~60 s
    of CPU inside the first tests that deployed them, while the unit tests
    need none.  A test that needs a contract before it is cached compiles it
    itself, as without this."""
    if os.environ.get("ISOROLL_NO_COMPILE_CACHE") or PRECOMPILING:
        return
    folders = {Path(item.path).parent.relative_to(TESTS).parts[:1] for item in items
               if Path(item.path).is_relative_to(TESTS)}
    if ("unit",) not in folders or not folders - {("unit",), ("cluster",), ()}:
        return
    if not uncompiled_contracts():
        return
    PRECOMPILING.append(subprocess.Popen([sys.executable, "-c", PRECOMPILE], cwd=TESTS.parent,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def finish_unused() -> None:
    """At the end of the session: a start no fixture took (its tests were
    deselected or skipped) is waited for and stopped again; a precompile
    still running is stopped."""
    while PRECOMPILING:
        process = PRECOMPILING.pop()
        if process.poll() is None:
            process.kill()
        process.wait()
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
