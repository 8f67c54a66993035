"""`isoroll devnet`: everything a developer needs on one machine.

1. a single-node Apache Kafka broker (KRaft) on 127.0.0.1, from Maven jars,
   through infra/kafka/kafka.sh (installed on first use);
2. anvil on 127.0.0.1:8545 (ISOROLL_ANVIL_PORT) through infra/anvil/anvil.sh
   (npm-installed on first use; its state is kept under the data dir), the
   token and the bridge deployed with the devnet preset (deployment.json in
   the data dir), the proposer bonded;
3. the dev accounts funded on L1 (ETH and tokens) and their genesis money
   deposited into the bridge: the L2 genesis allocation is empty and the
   node's L1 watcher credits the deposits (so the EIP-712 verifyingContract is
   the real bridge and every dev dollar is withdrawable on L1);
4. a sequencer node with its L1 watcher and checkpointer, serving the
   dashboard at /app/;
5. a price feed (sequencer.oracle's random walk, or ``--oracle-csv``; none
   with ``--no-oracle``) posting signed oracle prices to the node;
6. a banner with the API, the dashboard, the L1 RPC, the contract addresses
   and the dev keys.

ISOROLL_DEVNET_L1=0 runs the node without L1 (genesis-funded dev accounts).

``--censor`` makes the operator censor the L1 inbox: the entries on L1 when the
devnet starts (the dev accounts' deposits) are taken, every later deposit,
forced withdrawal and forced close is held and never written, while blocks and
outputs go on.  A forced request then passes its grace and anyone may freeze
the bridge (the drill in docs/l1-bridge.md, "Exit drill on the devnet").

``--fault-output N`` makes the proposer post a wrong state root for output N
(once; the batch data stays honest).  Any funded key then proves it wrong:
``isoroll verifier --key <a dev key>`` opens a dispute game, the node's
defender plays its side, the one-step decides, the output and every later one
are deleted and the checkpointer posts them again (docs/fraud-proofs.md,
"Running a verifier").
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO / "infra" / "kafka" / "kafka.sh"
ANVIL_SCRIPT = REPO / "infra" / "anvil" / "anvil.sh"


def anvil(action: str, port: int, data_dir: Path) -> None:
    state = data_dir / f"anvil-{port}" / "state.json"
    env = dict(os.environ, ISOROLL_ANVIL_PORT=str(port), ISOROLL_ANVIL_DIR=str(data_dir / f"anvil-{port}"),
               ISOROLL_ANVIL_ARGS=f"--state {state} --state-interval 5")
    subprocess.run(["bash", str(ANVIL_SCRIPT), action], check=True, env=env)


def setup_l1(rpc: str, data_dir: Path, accounts, amount: int):
    """Deploy (or reuse) the bridge on anvil; fund the dev accounts and deposit their money."""
    from web3 import Web3

    from l1_bridge.client import BridgeClient, Signer
    from l1_bridge.deploy import Deployment, MarketConfig, bond_proposer, deploy
    from sequencer.core.markets import get_market_table
    from sequencer.executor.genesis import compute_genesis_state_root

    path = data_dir / "deployment.json"
    w3 = Web3(Web3.HTTPProvider(rpc))
    if path.is_file():
        d = Deployment.load(path)
        if w3.eth.get_code(d.bridge):
            return d, path
        raise SystemExit(f"error: the bridge of {path} is not on the L1 at {rpc} (anvil lost its state); "
                         "start over with `isoroll devnet --fresh`")
    if (data_dir / "node").exists():
        raise SystemExit(f"error: {data_dir} holds an L2 without an L1 deployment (made before the bridge "
                         "joined the devnet); start over with `isoroll devnet --fresh`")
    markets = [MarketConfig.from_params(p) for p in get_market_table("devnet").values()]
    d = deploy(w3, "devnet", markets=markets, genesis_state_root=compute_genesis_state_root(), out=path)
    bond_proposer(w3, d)
    client = BridgeClient.connect(w3, deployment=d)
    operator = w3.eth.accounts[0]
    for _, address in accounts:
        who = Web3.to_checksum_address("0x" + address.hex())
        w3.provider.make_request("anvil_setBalance", [who, hex(100 * 10**18)])
        client.faucet(operator, amount, to=who)          # L1 money of their own
        client.faucet(operator, amount)
        client.deposit(Signer(operator), amount, who)    # and the L2 genesis money, as a deposit
    return d, path


def get_l1_inbox_count(rpc: str, deployment_path: Path) -> int:
    from l1_bridge.client import BridgeClient
    return BridgeClient.connect(rpc, deployment=deployment_path).status()["inbox_count"]


def kafka(action: str, port: int, data_dir: Path) -> None:
    if not KAFKA_SCRIPT.exists():
        raise SystemExit(f"error: {KAFKA_SCRIPT} not found: `isoroll devnet` runs from a checkout of the repo")
    env = dict(os.environ, ISOROLL_KAFKA_PORT=str(port), ISOROLL_KAFKA_DIR=str(data_dir / f"kafka-{port}"))
    subprocess.run(["bash", str(KAFKA_SCRIPT), action], check=True, env=env)


def describe_feed(args) -> str:
    if args.no_oracle:
        return "none (--no-oracle): post prices with `isoroll oracle`"
    what = f"{args.oracle_csv} in a loop" if args.oracle_csv else \
        f"random walk, {args.oracle_volatility_ppm} ppm a step"
    return f"{what}, every {args.oracle_interval:g} s (2 of 3 devnet oracle signers)"


async def feed_prices(url: str, args) -> None:
    """The devnet's price feed: sequencer.oracle's random walk (or a CSV) posted
    to the node, so that a first order finds a price."""
    from sequencer.oracle import CsvReplay, Feeder, RandomWalk, select_markets
    from sequencer.sdk import Client
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per price
    async with Client(url) as client:
        markets = select_markets(await client.markets(), None)
        source = CsvReplay(args.oracle_csv, markets, loop=True) if args.oracle_csv else \
            RandomWalk(markets, volatility_ppm=args.oracle_volatility_ppm)
        await Feeder(client, source, interval_s=args.oracle_interval).run()


def banner(service, accounts, deployment=None, rpc: str = "", feed: str = "") -> str:
    lines = ["", "isoroll devnet is up", f"  API        {service.url}   (docs: API.md, docs/api.md)",
             f"  dashboard  {service.url}/app/   (open it in a browser)",
             f"  prices     {feed}",
             f"  Kafka      {service.config.kafka_bootstrap_servers}  topic {service.config.kafka_topic}",
             f"  chain id   {service.node.ctx.preset.chain_id}"]
    if deployment is not None:
        p = deployment.parameters
        lines += [f"  L1         {rpc}  (anvil, chain id {deployment.chain_id})",
                  f"  bridge     {deployment.bridge}   (EIP-712 verifyingContract)",
                  f"  token      {deployment.token}   (dUSD, 6 decimals, faucet)",
                  f"  clocks     challenge period {p['challenge_period']} s, forced grace {p['forced_grace']} s",
                  "  dev accounts (1,000,000 USDC deposited on L1 for each, credited after L1 confirmations,",
                  "  plus 1,000,000 dUSD and 100 ETH on L1; keys for local use only):"]
    else:
        lines += ["  dev accounts (1,000,000 USDC each; keys for local use only):"]
    for key, address in accounts:
        lines.append(f"    0x{address.hex()}  key 0x{key.hex()}")
    lines += ["", "  try:  isoroll tx transfer --key 0x<key> --to 0x<address> --amount 10",
              "        isoroll account 0x<address>"]
    if deployment is not None:
        lines += ["        isoroll l1 status --key 0x<key>      isoroll l1 deposit 10 --key 0x<key>"]
    if getattr(service, "fault_output", None) is not None:
        lines += [f"  FAULT      output {service.fault_output} is posted with a wrong state root: prove it wrong with "
                  "isoroll verifier --key 0x<key>,", "             watch with isoroll l1 disputes "
                  "(docs/fraud-proofs.md, Running a verifier)"]
    if service.config.censor_inbox_from >= 0:
        lines += [f"  CENSORING  L1 inbox entries from #{service.config.censor_inbox_from} on are never taken: "
                  "isoroll l1 force-withdraw, then freeze, escape, refund (docs/l1-bridge.md)"]
    lines += ["  Ctrl-C stops the node (and the broker and anvil unless --keep-kafka).", ""]
    return "\n".join(lines)


def run_devnet(args) -> int:
    from isoroll.service import Service
    from sequencer.executor.genesis import get_dev_accounts
    from sequencer.node.config import NodeConfig
    from sequencer.node.service import serve_forever, setup_logging

    data_dir = Path(args.data_dir).resolve()
    with_l1 = os.environ.get("ISOROLL_DEVNET_L1", "1") not in ("0", "false", "no")
    anvil_port = int(os.environ.get("ISOROLL_ANVIL_PORT", "8545"))
    if args.fresh and data_dir.exists():
        kafka("stop", args.kafka_port, data_dir)
        if with_l1:
            anvil("stop", anvil_port, data_dir)
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    kafka("start", args.kafka_port, data_dir)
    accounts = get_dev_accounts(args.accounts)
    deployment, rpc, l1_settings = None, "", {}
    if with_l1:
        anvil("start", anvil_port, data_dir)
        rpc = f"http://127.0.0.1:{anvil_port}"
        deployment, path = setup_l1(rpc, data_dir, accounts, NodeConfig.genesis_dev_balance)
        l1_settings = dict(l1_rpc_url=rpc, l1_deployment_file=str(path), l1_bridge_address=deployment.bridge,
                           genesis_dev_accounts=0, l1_confirmations=1, checkpoint_interval_seconds=3.0)
        if args.censor:
            l1_settings["censor_inbox_from"] = get_l1_inbox_count(rpc, path)
    config = NodeConfig(mode="sequencer", preset="devnet", data_dir=str(data_dir / "node"),
                        api_port=args.api_port, kafka_bootstrap_servers=f"127.0.0.1:{args.kafka_port}",
                        **{"genesis_dev_accounts": args.accounts, **l1_settings}, log_format="text")
    setup_logging(config.log_level, config.log_format)
    fault_output = getattr(args, "fault_output", None)
    if fault_output is not None and (fault_output < 1 or not with_l1):
        raise SystemExit("error: --fault-output N needs the L1 (ISOROLL_DEVNET_L1 not 0) and N >= 1 "
                         "(output 0 is the genesis)")
    if args.oracle_csv and not Path(args.oracle_csv).is_file():
        raise SystemExit(f"error: --oracle-csv {args.oracle_csv}: no such file")
    feeds: list[asyncio.Task] = []

    def on_ready(service) -> None:
        print(banner(service, accounts, deployment, rpc, describe_feed(args)), flush=True)
        if not args.no_oracle:
            feeds.append(asyncio.get_running_loop().create_task(feed_prices(service.url, args), name="devnet-oracle"))

    try:
        code = asyncio.run(serve_forever(config, on_ready=on_ready,
                                         make_service=lambda c: Service(c, fault_output=fault_output)))
    finally:
        if not args.keep_kafka:
            kafka("stop", args.kafka_port, data_dir)
            if with_l1:
                anvil("stop", anvil_port, data_dir)
    return code
