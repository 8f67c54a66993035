"""Node configuration: defaults < TOML file < ISOROLL_* environment < flags.

Every setting has one flat name (``api_port``, ``kafka_bootstrap_servers``);
in the TOML file the part before the first underscore group may be a table:
``[kafka] bootstrap_servers = ...`` is ``kafka_bootstrap_servers``.  The
environment variable is ``ISOROLL_`` + the upper-cased name.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

TABLES = ("node", "api", "kafka", "snapshot", "genesis", "l1")


@dataclass(frozen=True)
class NodeConfig:
    mode: str = "sequencer"
    """sequencer: admit txs and write blocks; follower: replay the log and serve reads only."""
    sequencer_id: str = "0"
    """Sequencers with the same id share a Kafka transactional id: the newest fences the others."""
    standby: bool = False
    """Run several sequencers with this sequencer id: a Kafka consumer group elects
    the one that writes, the others follow and take over when it goes
    (sequencer.node.election); txs sent to a standby are forwarded to the active one."""
    election_session_timeout_ms: int = 3000
    """A standby takes over this long after the active sequencer stopped
    heartbeating (the brokers' group.min.session.timeout.ms must allow it)."""
    api_advertised_url: str = ""
    """The URL other nodes forward txs to (default http://api_host:api_port)."""
    preset: str = "devnet"
    data_dir: str = ".devnet/node"
    api_host: str = "127.0.0.1"
    api_port: int = 8547
    api_max_body_bytes: int = 4 * 1024 * 1024
    api_max_connections: int = 512
    """Open HTTP connections (WebSockets included); one beyond is answered 503
    and closed at once (sequencer.node.http_limits).  Keep it under ``ulimit -n``."""
    api_header_timeout_s: float = 10.0
    """A request head (request line and headers) must arrive within this long of
    the connection's opening or of its first byte, else the connection is closed."""
    api_keep_alive_timeout_s: float = 5.0
    """An idle connection is closed this long after its last response."""
    api_shutdown_timeout_s: float = 3.0
    """On shutdown, requests still running this long after the signal are cancelled."""
    api_rate_dry_run_per_s: float = 5.0
    api_rate_dry_run_burst: float = 20.0
    """POST /v1/tx?dryRun=1 per client address: requests a second and the burst (token
    bucket; 429 with Retry-After past it; a rate of 0 turns the limit off)."""
    api_rate_events_replay_per_s: float = 0.5
    api_rate_events_replay_burst: float = 5.0
    """/v1/events WebSocket connections that ask for a replay (?fromBlock=) per client."""
    api_rate_l1_per_s: float = 5.0
    api_rate_l1_burst: float = 20.0
    """GET /v1/l1 and /v1/l1/accounts/{address} per client (each reads the bridge on L1)."""
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic: str = "isoroll.blocks"
    kafka_replication_factor: int = 1
    kafka_min_insync_replicas: int = 1
    kafka_commit_timeout_s: float = 5.0
    kafka_request_timeout_ms: int = 5000
    block_interval_ms: float = 3.0
    block_max_records: int = 4096
    censor_inbox_from: int = -1
    """Devnet drills only (``isoroll devnet --censor``): L1 inbox entries from
    this index on are held and never written, as a censoring operator would, so
    forced requests pass their grace.  -1: take every entry."""
    signature_backend: str = "coincurve"
    tx_check_workers: int = -1
    """Processes that parse and signature-check submitted txs (sequencer.node.checkers)
    so the event loop's core is left for HTTP and the builder.  -1: one per core
    beyond the first, at most 4; 0: check in the event loop."""
    verify_signatures_on_replay: bool = True
    snapshot_interval_blocks: int = 1000
    catch_up_root_interval_blocks: int = 64
    """While replaying a backlog at start-up, compute the state root once per this
    many blocks (the head always gets one); live blocks always get their own."""
    genesis_dev_accounts: int = 10
    """Devnet genesis: this many deterministic dev accounts (see sequencer.executor.genesis)."""
    genesis_dev_balance: int = 1_000_000 * 10**6
    genesis_file: str = ""
    """A JSON genesis ({"allocations": [{"address", "amount"}]}) instead of the dev accounts."""
    l1_bridge_address: str = "0x" + "00" * 19 + "01"
    """The bridge contract: the EIP-712 verifyingContract."""
    l1_rpc_url: str = ""
    """An L1 JSON-RPC URL (anvil, a node): when set the sequencer runs the L1
    watcher (deposits, forced withdrawals) and the checkpointer (l1_bridge.services)."""
    l1_deployment_file: str = ""
    """deployment.json written by l1_bridge.deploy; gives the bridge address (and
    the token, markets, parameters) unless l1_bridge_address is set explicitly."""
    l1_confirmations: int = 2
    """L1 blocks on top of an inbox event before the watcher copies it into the log."""
    l1_poll_interval_s: float = 1.0
    checkpoint_interval_blocks: int = 100
    """Post an output once this many L2 blocks are unposted ..."""
    checkpoint_interval_seconds: float = 5.0
    """... or this long after the last output when any block is unposted (keep it
    well under the bridge's FORCED_GRACE)."""
    l1_proposer_key: str = ""
    """0x-hex private key of the bridge PROPOSER (empty: the node's unlocked account)."""
    l1_proposer_key_file: str = ""
    l1_challenger_key: str = ""
    """0x-hex private key of the bridge CHALLENGER, for `isoroll verifier`."""
    l1_challenger_key_file: str = ""
    log_level: str = "INFO"
    log_format: str = "json"

    @property
    def transactional_id(self) -> str:
        """Sequencers of one log (topic) with the same id fence each other; the
        topic is part of it so chains sharing a Kafka cluster never do."""
        return f"isoroll-{self.kafka_topic}-sequencer-{self.sequencer_id}"

    @property
    def advertised_url(self) -> str:
        return self.api_advertised_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def snapshot_dir(self) -> Path:
        return Path(self.data_dir) / "snapshots"


FIELD_TYPES = {f.name: f.type for f in fields(NodeConfig)}


def coerce(name: str, value: Any) -> Any:
    kind = FIELD_TYPES[name]
    if isinstance(value, str):
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def flatten_toml(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in TABLES:
            for inner, v in value.items():
                name = inner if key == "node" else f"{key}_{inner}"
                out[name] = v
        else:
            out[key] = value
    return out


def load_config(path: str | None = None, env: Mapping[str, str] | None = None,
                flags: Mapping[str, Any] | None = None) -> NodeConfig:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            values.update(flatten_toml(tomllib.load(fh)))
    for name in FIELD_TYPES:
        key = "ISOROLL_" + name.upper()
        if key in env:
            values[name] = env[key]
    for name, value in (flags or {}).items():
        if value is not None:
            values[name] = value
    unknown = sorted(set(values) - set(FIELD_TYPES))
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    return NodeConfig(**{k: coerce(k, v) for k, v in values.items()})


def describe() -> str:
    """One line per setting with its default, for --help texts and docs."""
    return "\n".join(f"  {f.name} (ISOROLL_{f.name.upper()}) = {f.default!r}"
                     for f in fields(NodeConfig))


def replace(config: NodeConfig, **changes: Any) -> NodeConfig:
    return dataclasses.replace(config, **changes)


DEFAULT_BRIDGE_ADDRESS = NodeConfig.l1_bridge_address


def resolve_l1_config(config: NodeConfig) -> NodeConfig:
    """Take the bridge address from ``l1_deployment_file`` when none is set
    explicitly, so the EIP-712 verifyingContract is the deployed bridge."""
    if config.l1_deployment_file and config.l1_bridge_address == DEFAULT_BRIDGE_ADDRESS:
        import json
        with open(config.l1_deployment_file) as fh:
            bridge = json.load(fh)["bridge"]
        return dataclasses.replace(config, l1_bridge_address=bridge)
    return config


def load_allocations(config: NodeConfig) -> list[tuple[bytes, int]]:
    """The genesis allocation: the genesis file's, else the dev accounts' (``genesis_dev_*``)."""
    from sequencer.executor.genesis import get_dev_accounts, parse_allocations
    if config.genesis_file:
        import json
        with open(config.genesis_file) as fh:
            return parse_allocations(json.load(fh))
    return [(address, config.genesis_dev_balance) for _, address in get_dev_accounts(config.genesis_dev_accounts)]
