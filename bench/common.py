"""Shared pieces of the benchmarks: a bench broker, a node subprocess, pre-signed
transfers, a minimal HTTP/1.1 client, CPU accounting and printing.

Everything listens on 127.0.0.1 only.  The bench broker runs on its own port
(ISOROLL_BENCH_KAFKA_PORT, default 29092) with its data under
.devnet/bench-kafka-<port>; it is started only if it is not running already and
stopped again by whoever started it.  Node subprocesses are always stopped.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from sequencer.log.local_broker import LocalBroker

REPO = Path(__file__).resolve().parents[1]
BENCH_PORT = int(os.environ.get("ISOROLL_BENCH_KAFKA_PORT", "29092"))
CLK_TCK = os.sysconf("SC_CLK_TCK")

BRIDGE = "0x" + "00" * 19 + "01"


def say(*args) -> None:
    print(*args, flush=True)


# --- broker -----------------------------------------------------------------------------

class BenchBroker(LocalBroker):
    """The benchmarks' broker: its own port (ISOROLL_BENCH_KAFKA_PORT) and data dir."""

    def __init__(self, port: int = BENCH_PORT) -> None:
        super().__init__(port, REPO / ".devnet" / f"bench-kafka-{port}")

    def start(self) -> None:
        say(f"starting the bench broker on {self.bootstrap} (data {self.dir}) ...")
        super().start()

    def stop(self) -> None:
        super().stop()
        say("bench broker stopped")

    def __enter__(self) -> "BenchBroker":
        super().__enter__()
        if not self.started_here:
            say(f"bench broker already running on {self.bootstrap}; using it")
        return self

    async def warm_up(self, seconds: float = 60.0, block_bytes: int = 4_000) -> None:
        """Commit small transactions back to back for ``seconds`` when this bench
        started the broker.  A fresh JVM spends its first tens of seconds in the C2
        JIT compiler: measured here, the same loop ran 70 commits/s with the broker
        at 1.3 cores in its first seconds and 216 commits/s at 0.6 core after
        warming up.  A broker in service runs warm, so the phases should too."""
        if not self.started_here:
            return
        import uuid
        from sequencer.log.kafka import BlockWriter, LogConfig, ensure_topic
        topic = f"isoroll.bench.warm-up.{uuid.uuid4().hex[:8]}"
        config = LogConfig(bootstrap_servers=self.bootstrap, topic=topic, client_id="isoroll-bench-warm-up",
                           transactional_id=f"isoroll-bench-warm-up-{uuid.uuid4().hex[:8]}")
        await ensure_topic(config)
        payload = os.urandom(block_bytes)
        rates = []
        try:
            async with BlockWriter(config) as writer:
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    t, n = time.perf_counter(), 0
                    while time.perf_counter() - t < 1.0:
                        await writer.write(payload)
                        n += 1
                    rates.append(n / (time.perf_counter() - t))
        finally:
            await delete_topic(self.bootstrap, topic)
        say(f"  broker warm-up (JIT): {seconds:.0f}s of back-to-back transactions, {rates[0]:,.0f} commits/s in "
            f"the first second, {rates[-1]:,.0f} in the last")


async def delete_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="isoroll-bench")
    await admin.start()
    try:
        await admin.delete_topics([topic])
    except Exception as exc:  # already gone: nothing to clean
        say(f"  (could not delete topic {topic}: {exc!r})")
    finally:
        await admin.close()


async def topic_end_offset(bootstrap: str, topic: str) -> int | None:
    """End of the committed log of ``topic``, or None if the topic does not exist."""
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="isoroll-bench")
    await admin.start()
    try:
        topics = await admin.list_topics()
    finally:
        await admin.close()
    if topic not in topics:
        return None
    from sequencer.log.kafka import BlockReader, LogConfig
    async with BlockReader(LogConfig(bootstrap_servers=bootstrap, topic=topic)) as reader:
        return await reader.end_offset()


# --- node subprocess ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeProcess:
    """`isoroll node` in its own process (its own core), stopped with SIGTERM then SIGKILL."""

    def __init__(self, bootstrap: str, topic: str, accounts: int, settings: dict[str, str] | None = None,
                 sequencer_id: str | None = None, aiokafka_backoff_ms: float | None = None,
                 profile: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tempfile.TemporaryDirectory(prefix="isoroll-bench-node-")
        self.log_path = Path(self.tmp.name) / "node.log"
        self.env = dict(os.environ)
        self.env.update({
            "ISOROLL_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ISOROLL_KAFKA_TOPIC": topic,
            "ISOROLL_API_PORT": str(self.port), "ISOROLL_API_HOST": "127.0.0.1",
            "ISOROLL_DATA_DIR": str(Path(self.tmp.name) / "node"),
            "ISOROLL_GENESIS_DEV_ACCOUNTS": str(accounts),
            "ISOROLL_SEQUENCER_ID": sequencer_id or f"bench-{os.getpid()}-{self.port}",
            "ISOROLL_LOG_FORMAT": "text", "ISOROLL_LOG_LEVEL": "WARNING",
            "ISOROLL_L1_BRIDGE_ADDRESS": BRIDGE, "ISOROLL_PRESET": "devnet",
        })
        for name, value in (settings or {}).items():
            self.env["ISOROLL_" + name.upper()] = str(value)
        if aiokafka_backoff_ms is not None:
            # Experiment only (the node's code is untouched): a sitecustomize in the
            # node's own temp dir sets aiokafka's wait after CONCURRENT_TRANSACTIONS.
            site = Path(self.tmp.name) / "site"
            site.mkdir()
            (site / "sitecustomize.py").write_text(
                "import aiokafka.producer.sender as s\n"
                f"s.BACKOFF_OVERRIDE = {aiokafka_backoff_ms / 1000!r}\n")
            self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), self.env.get("PYTHONPATH")]))
        self.proc: subprocess.Popen | None = None
        self.profile_path = Path(self.tmp.name) / "node.prof" if profile else None

    async def start(self, timeout: float = 120.0) -> None:
        code = "import sys; from isoroll.cli import main; sys.exit(main(sys.argv[1:]))"
        if self.profile_path is not None:  # cProfile the node; stats written on SIGTERM's clean exit
            code = ("import cProfile, sys; from isoroll.cli import main; "
                    f"cProfile.run('main(sys.argv[1:])', {str(self.profile_path)!r})")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-c", code, "node"], cwd=REPO, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the node exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                status, _ = await http_get(self.port, "/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the node did not become ready in {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def profile_report(self, top: int = 25) -> str:
        import io
        import pstats
        if self.profile_path is None or not self.profile_path.exists():
            return "(no profile)"
        buf = io.StringIO()
        pstats.Stats(str(self.profile_path), stream=buf).sort_stats("tottime").print_stats(top)
        return buf.getvalue()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.profile_path is not None:
            say(self.profile_report())
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        self.tmp.cleanup()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def metrics(self) -> dict[str, float]:
        _, body = await http_get(self.port, "/metrics")
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out


# --- CPU accounting ---------------------------------------------------------------------------

def cpu_seconds(pid: int | list[int] | None) -> float:
    """utime + stime of a process (its threads included) in seconds; a list of
    pids gives their sum."""
    if pid is None:
        return 0.0
    if isinstance(pid, list):
        return sum(cpu_seconds(p) for p in pid)
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def child_pids(pid: int | None) -> list[int]:
    """The direct children of a process (the node's tx check workers)."""
    if pid is None:
        return []
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return children


def system_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine (all cores) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


class CpuMeter:
    """CPU used by named processes over a phase, as a share of one core, and
    ``other``: what the rest of the machine used meanwhile (the machine is
    shared; a busy neighbour shows up here and the figures should be read with it)."""

    def __init__(self, pids: dict[str, int | list[int] | None]) -> None:
        self.pids = pids

    def __enter__(self) -> "CpuMeter":
        self.t0 = time.perf_counter()
        self.c0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.s0 = system_busy_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self.t0
        self.used = {name: cpu_seconds(pid) - self.c0[name] for name, pid in self.pids.items()}
        self.used["other"] = max(0.0, system_busy_seconds() - self.s0 - sum(self.used.values()))

    def cores(self) -> dict[str, float]:
        return {name: used / self.elapsed for name, used in self.used.items()}

    def describe(self) -> str:
        return ", ".join(f"{name} {share:.2f}" for name, share in self.cores().items())


# --- a minimal HTTP/1.1 keep-alive client ---------------------------------------------------------

class RawConnection:
    """One keep-alive HTTP/1.1 connection speaking just what the bench needs:
    POST/GET with a Content-Length body, responses with Content-Length.
    Much cheaper per request than httpx (see docs/benchmarks.md)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> "RawConnection":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                raise
            # The server closed this keep-alive connection while it sat idle
            # (uvicorn's keep-alive timeout is 5 s): open a new one and send again.
            await self.close()
            await self.open()
            self.writer.write(head + body)
            raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length = 0
        for line in raw.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        data = await self.reader.readexactly(length) if length else b""
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.writer = None


class HttpxConnection:
    """The same interface over one httpx.AsyncClient connection (keep-alive)."""

    def __init__(self, port: int) -> None:
        import httpx
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60.0,
                                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    async def open(self) -> "HttpxConnection":
        return self

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        response = await self.client.request(method, path, content=body,
                                             headers={"content-type": "application/json"})
        return response.status_code, response.content

    async def close(self) -> None:
        await self.client.aclose()


def make_connection(kind: str, port: int):
    return RawConnection(port) if kind == "raw" else HttpxConnection(port)


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    conn = RawConnection(port)
    try:
        return await conn.request("GET", path)
    finally:
        await conn.close()


# --- pre-signed transfers ---------------------------------------------------------------------------

@dataclass
class Signed:
    record_bytes: bytes
    """The msgpack log encoding of the signed Transfer."""
    body: bytes
    """The JSON tx object of API.md ({type, message, signature})."""


def _sign_chunk(args) -> list[tuple[bytes, bytes]]:
    """Worker: sign transfers [(from index, to index, nonce)] -> [(record bytes, JSON tx bytes)]."""
    accounts_n, items, amount, expiry, domain_separator = args
    from sequencer.core import eip712
    from sequencer.core.encoding import encode_record
    from sequencer.core.records import Transfer
    from sequencer.core.signing import sign_digest
    from sequencer.executor.genesis import get_dev_accounts
    accounts = get_dev_accounts(accounts_n)
    enc = msgspec.json.Encoder()
    out = []
    for src, dst, nonce in items:
        key, account = accounts[src]
        to = accounts[dst][1]
        record = Transfer(account, to, amount, nonce, expiry, b"")
        digest = eip712.compute_digest(domain_separator, "Transfer", record)
        sig = sign_digest(digest, key)
        record = msgspec.structs.replace(record, signature=sig)
        body = enc.encode({"type": "Transfer", "message": {
            "account": "0x" + account.hex(), "to": "0x" + to.hex(), "amount": amount,
            "nonce": nonce, "expiry": expiry}, "signature": "0x" + sig.hex()})
        out.append((encode_record(record), body))
    return out


def bench_domain(chain_id: int | None = None):
    from sequencer.core import eip712
    from sequencer.core.presets import get_preset
    chain_id = chain_id if chain_id is not None else get_preset("devnet").chain_id
    return eip712.Domain(chain_id, bytes.fromhex(BRIDGE[2:]))


def domain_separator(chain_id: int | None = None) -> bytes:
    from sequencer.core import eip712
    return eip712.compute_domain_separator(bench_domain(chain_id))


def plan_transfers(count: int, accounts: int, first_nonce: int = 1, offset: int = 0) -> list[tuple[int, int, int]]:
    """``count`` transfers round-robin over the accounts: tx k is sent by account
    (offset + k) % accounts to the next account, with that sender's next nonce
    (nonces unique per account and increasing in submission order)."""
    plan = []
    for k in range(count):
        i = offset + k
        src = i % accounts
        plan.append((src, (src + 1) % accounts, first_nonce + i // accounts))
    return plan


def sign_transfers(plan: list[tuple[int, int, int]], accounts: int, *, expiry: int, amount: int = 1,
                   workers: int | None = None) -> list[Signed]:
    """Sign in parallel over the machine's cores (done before any timing)."""
    from concurrent.futures import ProcessPoolExecutor
    workers = workers or os.cpu_count() or 1
    sep = domain_separator()
    step = max(1, -(-len(plan) // (workers * 4)))
    chunks = [(accounts, plan[i:i + step], amount, expiry, sep) for i in range(0, len(plan), step)]
    out: list[Signed] = []
    if workers == 1 or len(plan) < 2000:
        results = map(_sign_chunk, chunks)
        for part in results:
            out.extend(Signed(r, b) for r, b in part)
        return out
    with ProcessPoolExecutor(workers) as pool:
        for part in pool.map(_sign_chunk, chunks):
            out.extend(Signed(r, b) for r, b in part)
    return out


# --- numbers ----------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[index]


def mean(values) -> float:
    values = list(values)
    return statistics.fmean(values) if values else float("nan")


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}/s"
