"""`isoroll devnet`: everything a developer needs on one machine.

1. a single-node Apache Kafka broker (KRaft) on 127.0.0.1, from Maven jars,
   through infra/kafka/kafka.sh (installed on first use);
2. a sequencer node with the devnet preset and funded dev accounts;
3. a banner with the API address and the dev accounts' keys.

The L1 side (anvil, the bridge contracts) joins here when the bridge lands;
until then the EIP-712 verifyingContract is the configured placeholder.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO / "infra" / "kafka" / "kafka.sh"


def kafka(action: str, port: int, data_dir: Path) -> None:
    if not KAFKA_SCRIPT.exists():
        raise SystemExit(f"error: {KAFKA_SCRIPT} not found: `isoroll devnet` runs from a checkout of the repo")
    env = dict(os.environ, ISOROLL_KAFKA_PORT=str(port), ISOROLL_KAFKA_DIR=str(data_dir / f"kafka-{port}"))
    subprocess.run(["bash", str(KAFKA_SCRIPT), action], check=True, env=env)


def banner(service, accounts) -> str:
    lines = ["", "isoroll devnet is up", f"  API        {service.url}   (docs: API.md, docs/api.md)",
             f"  Kafka      {service.config.kafka_bootstrap_servers}  topic {service.config.kafka_topic}",
             f"  chain id   {service.node.ctx.preset.chain_id}",
             "  dev accounts (1,000,000 USDC each; keys for local use only):"]
    for key, address in accounts:
        lines.append(f"    0x{address.hex()}  key 0x{key.hex()}")
    lines += ["", "  try:  isoroll tx transfer --key 0x<key> --to 0x<address> --amount 10",
              "        isoroll account 0x<address>", "  Ctrl-C stops the node (and the broker unless --keep-kafka).", ""]
    return "\n".join(lines)


def run_devnet(args) -> int:
    from sequencer.node.config import NodeConfig
    from sequencer.node.genesis import get_dev_accounts
    from sequencer.node.service import serve_forever, setup_logging

    data_dir = Path(args.data_dir).resolve()
    if args.fresh and data_dir.exists():
        kafka("stop", args.kafka_port, data_dir)
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    kafka("start", args.kafka_port, data_dir)
    config = NodeConfig(mode="sequencer", preset="devnet", data_dir=str(data_dir / "node"),
                        api_port=args.api_port, kafka_bootstrap_servers=f"127.0.0.1:{args.kafka_port}",
                        genesis_dev_accounts=args.accounts, log_format="text")
    setup_logging(config.log_level, config.log_format)
    accounts = get_dev_accounts(args.accounts)
    try:
        asyncio.run(serve_forever(config, on_ready=lambda s: print(banner(s, accounts), flush=True)))
    finally:
        if not args.keep_kafka:
            kafka("stop", args.kafka_port, data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(run_devnet(None))
