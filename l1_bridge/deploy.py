"""Deploy the bridge, the collateral token, the one-steps and the dispute
games to any web3 (py-evm via eth-tester, anvil, or a JSON-RPC node) with a
parameter preset.

    from l1_bridge.deploy import deploy, PRESETS
    d = deploy(w3, "devnet", proposer=..., challenger=..., out="deployment.json")
    d.bridge, d.token   # checksummed addresses

Presets (docs/l1-bridge.md has the reasoning and the anchors):

=========== ================= ============= =========== ============== =========
preset      CHALLENGE_PERIOD  FORCED_GRACE  FORCED_FEE  ESCAPE_WINDOW  PROPOSER_BOND
=========== ================= ============= =========== ============== =========
production  7 days            7 days        0.01 ETH    14 days        1.5 ETH
devnet      60 s              10 s          0.001 ETH   60 s           0.1 ETH
=========== ================= ============= =========== ============== =========

Dispute games (docs/fraud-proofs.md): production 3.5 days per side, 3 hours of
extension, CHALLENGE_BOND 0.4 ETH, MOVE_BOND 0.021 ETH; devnet 60 s, 15 s,
0.01 ETH, 0.0001 ETH.

Transactions go through the node's unlocked accounts (eth-tester, anvil) or,
with ``private_key=``, are signed locally (any RPC).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from prover.tree import EMPTY_ROOT
from prover.families import ONESTEP_FAMILIES, resolve_family_args
from sequencer.executor.genesis import compute_genesis_output_root

DAY = 24 * 3600


@dataclass(frozen=True)
class BridgePreset:
    name: str
    challenge_period: int
    """Seconds an output stays challengeable (OP L2OutputOracle finalizationPeriodSeconds: 7 days)."""
    forced_grace: int
    """Seconds a forced request may stay uncovered before anyone can freeze
    (StarkEx FREEZE_GRACE_PERIOD: 7 days)."""
    forced_fee: int
    """Wei paid with each forceWithdraw / forceClose (anti-spam; held by the bridge,
    never paid to the proposer; Loopring charges one too).  There is no cap."""
    escape_window: int
    """Seconds after a freeze in which accounts register their escape amounts;
    then every registered account is paid the same fraction."""
    proposer_bond: int
    """Wei the proposer must keep bonded to propose; a challenger who wins a game takes it."""
    game_clock: int = 7 * DAY // 2
    """Seconds each side of a dispute game has for all its moves (OP: 3.5 days)."""
    game_extension: int = 3 * 3600
    """A turn that starts with less time left gets this much (OP: 3 hours)."""
    challenge_bond: int = 3 * 10**17
    """Wei to open a game: the honest proposer's whole defence at 100 gwei, twice."""
    move_bond: int = 21 * 10**15
    """Wei of the first move (one bisect at 100 gwei, twice); x1.09 per move."""


PRESETS: dict[str, BridgePreset] = {
    "production": BridgePreset("production", 7 * DAY, 7 * DAY, 10**16, 14 * DAY, 15 * 10**17, challenge_bond=4 * 10**17),
    "devnet": BridgePreset("devnet", 60, 10, 10**15, 60, 10**17, game_clock=60, game_extension=15,
                           challenge_bond=10**16, move_bond=10**14),
}


@dataclass(frozen=True)
class MarketConfig:
    """A market the escape hatch knows: equity = margin + floor(size*price/size_scale)
    - cost - ceil(size*(F_market - F_snapshot)/funding_scale)."""
    id: int
    size_scale: int
    """Base lots per whole base unit (10**baseDecimals)."""
    funding_scale: int = 1
    """Divisor of size * funding-index delta (the engine's index is in quote
    units * 1e6 per whole base unit: size_scale * 10**6)."""

    @classmethod
    def from_params(cls, params: Any) -> "MarketConfig":
        """From sequencer.core.markets.MarketParams (see sequencer.core.rules.margin.compute_equity)."""
        scale = 10 ** params.base_decimals
        return cls(params.id, scale, scale * 1_000_000)


@dataclass
class Deployment:
    chain_id: int
    preset: str
    token: str
    bridge: str
    proposer: str
    challenger: str
    deployer: str
    block_number: int
    genesis_output_root: str
    markets: list[dict[str, int]] = field(default_factory=list)
    parameters: dict[str, int] = field(default_factory=dict)
    token_deployed: bool = True
    dispute: str = ""
    onestep: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Deployment":
        return cls(**json.loads(Path(path).read_text()))


def compute_create_address(sender: str, nonce: int) -> str:
    """The address of the contract `sender` creates with `nonce` (CREATE)."""
    import rlp
    from eth_utils import keccak, to_canonical_address, to_checksum_address
    return to_checksum_address(keccak(rlp.encode([to_canonical_address(sender), nonce]))[12:])


def get_preset(name: str) -> BridgePreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown bridge preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def load_artifact(name: str) -> tuple[list, str]:
    from l1_bridge.compile import compile_contract
    abi, bytecode = compile_contract(name)
    return abi, bytecode


def transact(w3: Any, call: Any, sender: str, *, value: int = 0, private_key: bytes | str | None = None,
             gas: int | None = None) -> Any:
    """Send a contract call (or constructor) and wait for the receipt; raise on revert."""
    tx: dict[str, Any] = {"from": sender, "value": value}
    if gas is not None:
        tx["gas"] = gas
    if private_key is None:
        tx_hash = call.transact(tx)
    else:
        tx["nonce"] = w3.eth.get_transaction_count(sender, "pending")
        built = call.build_transaction(tx)
        signed = w3.eth.account.sign_transaction(built, private_key)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
    return receipt


def deploy(
    w3: Any,
    preset: str | BridgePreset = "devnet",
    *,
    proposer: str | None = None,
    challenger: str | None = None,
    deployer: str | None = None,
    private_key: bytes | str | None = None,
    token: str | None = None,
    markets: Sequence[MarketConfig] = (),
    genesis_state_root: bytes = EMPTY_ROOT,
    out: str | os.PathLike | None = None,
    l2_preset: str = "devnet",
) -> Deployment:
    """Deploy the bridge, (unless ``token`` is given) the devnet token, the
    one-steps for the L2 rules of ``l2_preset`` on this bridge, and the
    dispute games. Addresses default to the node's first accounts: deployer
    and proposer accounts[0], challenger (the guardian) accounts[1] (or the
    deployer when there is one)."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    check_market_count(len(markets), l2_preset)
    if deployer is None:
        if private_key is not None:
            deployer = w3.eth.account.from_key(private_key).address
        else:
            deployer = w3.eth.accounts[0]
    accounts = [] if private_key is not None else list(w3.eth.accounts)
    proposer = proposer or deployer
    challenger = challenger or (accounts[1] if len(accounts) > 1 else deployer)
    token_deployed = token is None
    genesis = compute_genesis_output_root(genesis_state_root)
    abi, bytecode = load_artifact("bridge")
    factory = w3.eth.contract(abi=abi, bytecode=bytecode)
    # the bridge goes first (on a fresh anvil it lands at the well-known first
    # address, 0x5FbDB2315678afecb367f032d93F642f64180aa3, the EIP-712
    # verifyingContract of the devnet); the token's and the games' addresses are
    # predicted: token, the one-step family contracts, onestep, dispute follow in that order
    nonce = w3.eth.get_transaction_count(deployer, "pending")
    if token is None:
        token = compute_create_address(deployer, nonce + 1)
    dispute = compute_create_address(deployer, nonce + int(token_deployed) + len(ONESTEP_FAMILIES) + 2)
    ctor = factory.constructor(
        token, proposer, challenger, dispute, p.challenge_period, p.forced_grace, p.forced_fee,
        p.escape_window, p.proposer_bond, genesis,
        [m.id for m in markets], [m.size_scale for m in markets], [m.funding_scale for m in markets])
    receipt = transact(w3, ctor, deployer, private_key=private_key)
    if token_deployed:
        tabi, tbytecode = load_artifact("token")
        tfactory = w3.eth.contract(abi=tabi, bytecode=tbytecode)
        treceipt = transact(w3, tfactory.constructor("isoroll devnet USD", "dUSD"), deployer, private_key=private_key)
        if w3.to_checksum_address(treceipt["contractAddress"]) != w3.to_checksum_address(token):
            raise RuntimeError("the token did not land at the predicted address (concurrent transactions "
                               "from the deployer?); redeploy")
    from sequencer.executor.context import make_context
    onestep, _ = deploy_onestep(w3, make_context(l2_preset, receipt["contractAddress"]), deployer=deployer,
                                private_key=private_key)
    dabi, dbytecode = load_artifact("dispute")
    dreceipt = transact(w3, w3.eth.contract(abi=dabi, bytecode=dbytecode).constructor(
        receipt["contractAddress"], onestep, p.game_clock, p.game_extension, p.challenge_bond, p.move_bond),
        deployer, private_key=private_key)
    if w3.to_checksum_address(dreceipt["contractAddress"]) != w3.to_checksum_address(dispute):
        raise RuntimeError("the dispute contract did not land at the predicted address (concurrent transactions "
                           "from the deployer?); redeploy")
    d = Deployment(
        chain_id=w3.eth.chain_id,
        preset=p.name,
        token=w3.to_checksum_address(token),
        bridge=receipt["contractAddress"],
        proposer=w3.to_checksum_address(proposer),
        challenger=w3.to_checksum_address(challenger),
        deployer=w3.to_checksum_address(deployer),
        block_number=receipt["blockNumber"],
        genesis_output_root="0x" + genesis.hex(),
        markets=[asdict(m) for m in markets],
        parameters={"challenge_period": p.challenge_period, "forced_grace": p.forced_grace,
                    "forced_fee": p.forced_fee, "escape_window": p.escape_window,
                    "proposer_bond": p.proposer_bond, "game_clock": p.game_clock,
                    "game_extension": p.game_extension, "challenge_bond": p.challenge_bond,
                    "move_bond": p.move_bond},
        token_deployed=token_deployed,
        dispute=w3.to_checksum_address(dispute),
        onestep=onestep,
    )
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(d.to_json() + "\n")
    return d


BRIDGE_MAX_MARKETS = 8
"""bridge.vy's MAX_MARKETS: the escape hatch proves one position per market,
so a deployment lists at most this many markets.  The one-step's witness
bounds are chosen above it (docs/fraud-proofs.md, "Bounds a deployment
cannot pass"): ScheduledCancelAll fits 9 markets with 20 pending triggers,
the vault step 21 markets and vault positions together, the vault's
records 13 markets."""


def check_market_count(bridge_markets: int, l2_preset: str) -> None:
    """Refuse a deployment whose bridge or L2 market table lists more markets
    than the bridge holds, or whose preset lets an account keep more pending
    triggers than a dead-man's switch can open with them (before anything is
    deployed)."""
    from sequencer.core.markets import get_market_table
    from sequencer.core.presets import get_preset as get_l2_preset
    from prover.plan_triggers import MAX_OPENINGS
    l2 = get_l2_preset(l2_preset)
    l2_markets = len(get_market_table(l2.markets))
    for what, count in (("the bridge's market list", bridge_markets), (f"the {l2_preset} market table", l2_markets)):
        if count > BRIDGE_MAX_MARKETS:
            raise ValueError(f"{what} has {count} markets; a deployment lists at most {BRIDGE_MAX_MARKETS} "
                             "(bridge.vy MAX_MARKETS: the escape hatch proves one position per market)")
    if 3 + BRIDGE_MAX_MARKETS + l2.max_open_triggers > MAX_OPENINGS:
        raise ValueError(f"the {l2_preset} preset allows {l2.max_open_triggers} pending triggers per account; with "
                         f"{BRIDGE_MAX_MARKETS} markets a dead-man's switch would pass the one-step's {MAX_OPENINGS} "
                         f"openings (at most {MAX_OPENINGS - 3 - BRIDGE_MAX_MARKETS})")


def deploy_onestep(w3: Any, rules: Any, *, deployer: str | None = None,
                   private_key: bytes | str | None = None) -> tuple[str, dict[str, str]]:
    """Deploy the one-step for a rule context (sequencer.core.rules.base.Context):
    each family contract of ONESTEP_FAMILIES (with the rules' market table),
    then onestep.vy routing their tags to them.  Returns (onestep, {family
    contract name: address})."""
    from prover.trace import get_onestep_markets
    if deployer is None:
        deployer = w3.eth.account.from_key(private_key).address if private_key is not None else w3.eth.accounts[0]
    p = rules.preset
    params = (rules.domain_separator, p.max_amount, p.max_expiry_ahead_ms, p.nonce_window)
    markets = get_onestep_markets(rules)
    families, routes = {}, []
    for name, tags, extras in ONESTEP_FAMILIES:
        families[name] = _deploy(w3, name, params + (markets,) + resolve_family_args(extras(rules), families),
                                 deployer, private_key)
        routes.append((families[name], list(tags)))
    return _deploy(w3, "onestep", params + (routes,), deployer, private_key), families


def _deploy(w3: Any, name: str, args: tuple, deployer: str, private_key: bytes | str | None) -> str:
    abi, bytecode = load_artifact(name)
    receipt = transact(w3, w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args), deployer,
                       private_key=private_key)
    return w3.to_checksum_address(receipt["contractAddress"])


def bond_proposer(w3: Any, d: Deployment, *, private_key: bytes | str | None = None) -> None:
    """Post the preset's PROPOSER_BOND from the proposer account."""
    bridge = w3.eth.contract(address=d.bridge, abi=load_artifact("bridge")[0])
    transact(w3, bridge.functions.depositBond(), d.proposer, value=d.parameters["proposer_bond"],
             private_key=private_key)


def main(argv: Sequence[str] | None = None) -> int:
    """python -m l1_bridge.deploy --rpc http://127.0.0.1:8545 --preset devnet --out .devnet/deployment.json"""
    import argparse

    from web3 import Web3

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--rpc", default="http://127.0.0.1:8545")
    ap.add_argument("--preset", default="devnet", choices=sorted(PRESETS))
    ap.add_argument("--token", default=None, help="existing ERC-20 (default: deploy the devnet token)")
    ap.add_argument("--proposer", default=None)
    ap.add_argument("--challenger", default=None)
    ap.add_argument("--market", action="append", default=[],
                    help="id:size_scale[:funding_scale], once per market, in order")
    ap.add_argument("--bond", action="store_true", help="post the proposer bond (unlocked proposer account)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    w3 = Web3(Web3.HTTPProvider(args.rpc))
    markets = []
    for spec in args.market:
        parts = [int(x) for x in spec.split(":")]
        markets.append(MarketConfig(*parts))
    key = os.environ.get("ISOROLL_L1_PRIVATE_KEY") or None
    d = deploy(w3, args.preset, proposer=args.proposer, challenger=args.challenger, token=args.token,
               markets=markets, private_key=key, out=args.out)
    if args.bond:
        bond_proposer(w3, d, private_key=key)
    print(d.to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
