"""`isoroll l1 ...` (the bridge from a user's side) and `isoroll verifier`.

    isoroll l1 status [--account 0x..]      bridge, outputs (challenge clock), forced requests
                                            (grace clock), the account's withdrawals
    isoroll l1 deposit 100 [--to 0x..]      approve + deposit (credited on L2 after confirmations)
    isoroll l1 withdraw 40                  request a withdrawal on L2 (through the node's API)
    isoroll l1 claim                        claim every final, unclaimed withdrawal of the account
    isoroll l1 force-withdraw 40            forced withdrawal through the L1 inbox (pays FORCED_FEE)
    isoroll l1 force-close 1                forced close of the position in market 1 at the mark
    isoroll l1 freeze [--request N]         freeze the bridge (a forced request past its grace)
    isoroll l1 escape [--account 0x.. | --all] [--wait]
                                            register the escape (window open) or take the payment
                                            (window over), from L1 data alone; a backstop vault
                                            holder also registers its part of the vault's escape
    isoroll l1 refund [--account 0x..]      refund deposits the frozen output never took
    isoroll l1 disputes [--json]            each dispute game: output, claims, whose move, both clocks,
                                            bonds, state
    isoroll verifier [--source l1|kafka] [--key K]
                                            replay, recompute each output; with any funded key, prove a
                                            wrong one wrong in a dispute game (no role needed)

The L1 is named by --rpc (ISOROLL_L1_RPC_URL, default http://127.0.0.1:8545)
and --deployment (ISOROLL_L1_DEPLOYMENT_FILE, default .devnet/deployment.json)
or --bridge (ISOROLL_L1_BRIDGE_ADDRESS).  Keys as for `isoroll tx`: --key,
--key-file, ISOROLL_KEY, ISOROLL_KEY_FILE.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from sequencer.executor.genesis import parse_allocations

DEFAULT_RPC = "http://127.0.0.1:8545"
DEFAULT_DEPLOYMENT = ".devnet/deployment.json"


def _fmt(units: int) -> str:
    from sequencer.cli import format_collateral
    return format_collateral(units)


def _duration(seconds: int) -> str:
    if seconds <= 0:
        return "0s"
    d, rem = divmod(int(seconds), 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s" if s else ""]
    return "".join(parts)


def _client(args):
    from l1_bridge.client import BridgeClient, L1Error
    deployment = args.deployment or os.environ.get("ISOROLL_L1_DEPLOYMENT_FILE") or None
    bridge = args.bridge or os.environ.get("ISOROLL_L1_BRIDGE_ADDRESS") or None
    if deployment is None and bridge is None and Path(DEFAULT_DEPLOYMENT).is_file():
        deployment = DEFAULT_DEPLOYMENT
    try:
        return BridgeClient.connect(args.rpc, deployment=deployment if bridge is None else None, bridge=bridge)
    except L1Error as exc:
        raise SystemExit(f"error: {exc}") from None


def _key(args) -> str:
    from sequencer.cli import load_key
    return load_key(args)


def _account(args, required: bool = True) -> bytes | None:
    from l1_bridge.client import address_of_key
    if getattr(args, "account", None):
        return bytes.fromhex(args.account[2:] if args.account.startswith("0x") else args.account)
    try:
        return bytes.fromhex(address_of_key(_key(args))[2:])
    except SystemExit:
        if required:
            raise
        return None


def _replay(args, client):
    from l1_bridge.exit import L1Replay
    allocations = []
    if getattr(args, "genesis_file", None):
        allocations = parse_allocations(json.loads(Path(args.genesis_file).read_text()))
    return L1Replay(client, preset=args.preset, allocations=allocations,
                    verify_signatures=not getattr(args, "no_verify_signatures", False))


def _run(fn, args) -> int:
    from l1_bridge.client import L1Error
    try:
        return fn(args) or 0
    except L1Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


# --- commands --------------------------------------------------------------------------

def cmd_status(args) -> int:
    c = _client(args)
    s = c.status()
    p = c.params()
    now = s["now"]
    print(f"bridge     {c.bridge.address} on {c.url} (chain id {c.chain_id()})")
    unit = c.token.functions.symbol().call()
    print(f"token      {c.token.address}   bridge balance {_fmt(c.token_balance(c.bridge.address))} {unit}")
    print(f"clocks     challenge period {_duration(p['challenge_period'])}, forced grace {_duration(p['forced_grace'])}")
    if s["frozen"]:
        print(f"FROZEN     since L1 time {s['frozen_at']}; escapes against output {s['frozen_output']}, "
              f"deposits from inbox index {s['frozen_inbox_count']} are refundable")
        window = (f"registration open, {_duration(s['escape_deadline'] - now)} left" if now < s["escape_deadline"]
                  else "registration over: registered accounts are paid (isoroll l1 escape)")
        print(f"escapes    pool {_fmt(s['escape_pool'])} {unit}, registered {_fmt(s['total_registered'])}; {window}")
    else:
        print("frozen     no")
    print(f"inbox      {s['inbox_count']} entries, {s['open_forced_requests']} open forced requests")
    print(f"outputs    {s['output_count']} (last final {s['last_final_output']})")
    print(f"disputes   {_disputes_line(c)}")
    first = max(1, s["output_count"] - args.outputs)
    for i in range(first, s["output_count"]):
        o = c.get_output(i)
        state = "final" if o["is_final"] else (
            "pending forever (frozen)" if s["frozen"] else f"in challenge period, {_duration(o['challenge_time_left'])} left")
        print(f"  #{i:<4} L2 block {o['l2_block']:<8} inbox {o['inbox_count']:<5} {state}")
    forced = [e for e in c.inbox_events() if e["kind"] in ("forced", "close")]
    if forced:
        print("forced requests")
        for e in forced[-args.outputs:]:
            f = c.get_forced_request(e["inbox_index"])
            if f["served"]:
                state = "served (a final output took it)"
            elif f["covered_by_live_output"]:
                state = "covered by a pending output"
            elif f["grace_left"] > 0:
                state = f"waiting for the operator, grace {_duration(f['grace_left'])} left"
            else:
                state = "grace over: the bridge can be frozen (isoroll l1 freeze)" if not s["frozen"] else "grace over"
            print(f"  inbox #{e['inbox_index']:<5} {e['account'].lower()} {_fmt(e['amount'])}  {state}")
    account = _account(args, required=False)
    if account is not None:
        print(f"account    0x{account.hex()}   L1 token balance {_fmt(c.token_balance('0x' + account.hex()))} {unit}")
        rows = _withdrawal_rows(args, c, account, now)
        if rows:
            print("withdrawals")
            for r in rows:
                print(f"  #{r['index']:<5} {_fmt(r['amount']):>14}  L2 block {r['block']:<8} {r['state']}")
    return 0


def _withdrawal_rows(args, c, account: bytes, now: int) -> list[dict]:
    """Each withdrawal: waiting for a checkpoint -> in challenge period -> ready to claim -> claimed."""
    replay = _replay(args, c)
    replay.run()
    rows = []
    seen = set()
    for r in replay.withdrawals_of(account):
        w = r["withdrawal"]
        seen.add(w.index)
        if r["claimed"]:
            state = "claimed"
        elif r["final"]:
            state = f"ready to claim (output {r['output_index']}): isoroll l1 claim"
        else:
            left = c.get_output(r["output_index"])["challenge_time_left"]
            state = f"in challenge period (output {r['output_index']}), {_duration(left)} left"
        rows.append({"index": w.index, "amount": w.amount, "block": w.block, "state": state})
    # withdrawals the L2 made but no output holds yet (from the node's API, when it answers)
    try:
        import httpx
        data = httpx.get(f"{args.url}/v1/accounts/0x{account.hex()}", timeout=3).json()
        for w in data.get("withdrawals", []):
            if w["index"] not in seen:
                rows.append({"index": w["index"], "amount": w["amount"], "block": w["block"],
                             "state": "waiting for a checkpoint"})
    except Exception:
        pass
    return sorted(rows, key=lambda r: r["index"])


def cmd_deposit(args) -> int:
    from sequencer.cli import parse_collateral
    c = _client(args)
    amount = parse_collateral(args.amount, args.raw)
    index = c.deposit(_key(args), amount, args.to)
    print(f"deposited {_fmt(amount)} (inbox index {index}); the node credits it after "
          f"its confirmation depth")
    return 0


def cmd_withdraw(args) -> int:
    from sequencer.cli import parse_collateral, print_json, with_client
    amount = parse_collateral(args.amount, args.raw)

    async def run(client):
        print_json(await client.withdraw(amount))
        print("withdrawal requested on L2: it is claimable once a checkpoint holding it is final "
              "(isoroll l1 status, then isoroll l1 claim)")
        return 0
    return asyncio.run(with_client(args, run, needs_key=True))


def cmd_claim(args) -> int:
    c = _client(args)
    replay = _replay(args, c)
    replay.run()
    account = _account(args)
    pending = [r for r in replay.withdrawals_of(account) if not r["final"] and not r["claimed"]]
    paid = replay.claim_withdrawals(_key(args), account)
    for w in paid:
        print(f"claimed withdrawal #{w.index}: {_fmt(w.amount)} to 0x{w.account.hex()}")
    frozen = bool(pending) and c.status()["frozen"]
    for r in pending:
        w = r["withdrawal"]
        why = ("never final: the bridge is frozen (isoroll l1 escape)" if frozen else "in its challenge period, "
               f"{_duration(c.get_output(r['output_index'])['challenge_time_left'])} left")
        print(f"{'' if paid else 'error: '}withdrawal #{w.index} ({_fmt(w.amount)}) cannot be claimed yet: "
              f"output {r['output_index']} is {why}", file=sys.stderr)
    if not paid:
        if pending:
            return 1
        print("nothing to claim yet (isoroll l1 status shows each withdrawal's state)")
    return 0


def cmd_force_withdraw(args) -> int:
    from sequencer.cli import parse_collateral
    c = _client(args)
    amount = parse_collateral(args.amount, args.raw)
    index = c.force_withdraw(_key(args), amount)
    f = c.get_forced_request(index)
    print(f"forced withdrawal requested (inbox index {index}); the operator has {_duration(f['grace_left'])} "
          "to cover it with an output, after that anyone may freeze the bridge")
    return 0


def cmd_force_close(args) -> int:
    c = _client(args)
    index = c.force_close(_key(args), args.market)
    f = c.get_forced_request(index)
    print(f"forced close of market {args.market} requested (inbox index {index}); the operator has "
          f"{_duration(f['grace_left'])} to close the position at the mark in an output, after that anyone "
          "may freeze the bridge")
    return 0


def cmd_freeze(args) -> int:
    c = _client(args)
    request = args.request
    if request is None:
        for e in c.inbox_events():
            if e["kind"] in ("forced", "close") and c.can_freeze(e["inbox_index"]):
                request = e["inbox_index"]
                break
        else:
            print("no forced request allows a freeze now (isoroll l1 status shows the grace left)")
            return 1
    c.freeze(_key(args), request)
    s = c.status()
    print(f"bridge frozen (forced request {request}); escapes against output {s['frozen_output']}")
    return 0


def cmd_escape(args) -> int:
    from l1_bridge.exit import escape_everyone
    c = _client(args)
    replay = _replay(args, c)
    key = _key(args)
    if args.all:
        s = c.status()
        registering = s["frozen"] and s["now"] < s["escape_deadline"] and not args.wait
        parts: dict[bytes, int] = {}
        done = escape_everyone(replay, key, wait=args.wait, vault_parts=parts)
        for a, amount in done.items():
            print(f"{'registered' if registering else 'escaped'} 0x{a.hex()}: "
                  f"{'owed' if registering else 'paid'} {_fmt(amount)}")
        for a, part in (parts.items() if not args.wait else ()):
            print(f"  of which 0x{a.hex()}'s part of the backstop vault: {_fmt(part)}")
        return 0
    account = _account(args)
    amount = replay.escape_amount(account)
    print(f"0x{account.hex()} is owed {_fmt(amount)} by the last final state (computed from L1 data)")
    if replay.vault_shares_of(account):
        return _escape_vault_holder(args, c, replay, key, account)
    step, value = replay.escape(key, account)
    if step == "registered":
        _print_registered(c, account, value)
        if not args.wait:
            return 0
        replay.wait_escape_window()
        step, value = replay.escape(key, account)
    print(f"escaped 0x{account.hex()}: paid {_fmt(value)}")
    return 0


def _print_registered(c, account: bytes, owed: int) -> None:
    s = c.status()
    print(f"registered 0x{account.hex()}: owed {_fmt(owed)}; every registered account is paid the same "
          f"fraction once the window ends in {_duration(max(0, s['escape_deadline'] - s['now']))} "
          "(run isoroll l1 escape again then)")


def _escape_vault_holder(args, c, replay, key, account: bytes) -> int:
    """A backstop vault shareholder: within the window, register the account's
    own escape, the vault's own escape and the account's part of it (each step
    once; a second run says what is registered already); after it, the payment."""
    from l1_bridge.client import L1Error
    from sequencer.core.rules.vault import VAULT_ADDRESS
    s = c.status()
    if not s["frozen"] or s["now"] >= s["escape_deadline"]:
        step, value = replay.escape(key, account)
        print(f"escaped 0x{account.hex()}: paid {_fmt(value)}")
        return 0
    shares = replay.vault_shares_of(account)
    print(f"0x{account.hex()} holds {shares} backstop vault shares, worth {_fmt(replay.vault_escape_amount(account))} "
          "of the vault's escape")
    new = False
    info = c.escape_info("0x" + account.hex())
    if info["registered"]:
        print(f"0x{account.hex()} is registered already (owed {_fmt(info['owed'])})")
    else:
        _print_registered(c, account, replay.register_escape(key, account))
        new = True
    if replay.is_vault_part_registered(account):
        print(f"0x{account.hex()}'s part of the backstop vault is registered already")
    else:
        vault = c.escape_info("0x" + VAULT_ADDRESS.hex())
        if not vault["registered"]:
            print(f"registered the backstop vault 0x{VAULT_ADDRESS.hex()}: owed "
                  f"{_fmt(replay.register_escape(key, VAULT_ADDRESS))} (shared among its holders)")
        part = replay.register_vault_escape(key, account)
        print(f"registered 0x{account.hex()}'s part of the backstop vault: +{_fmt(part)}, owed "
              f"{_fmt(c.escape_info('0x' + account.hex())['owed'])} in all")
        new = True
    if args.wait:
        replay.wait_escape_window()
        step, value = replay.escape(key, account)
        print(f"escaped 0x{account.hex()}: paid {_fmt(value)}")
    elif not new:
        raise L1Error(f"0x{account.hex()} and its vault part are registered (owed "
                      f"{_fmt(info['owed'])}): nothing to do until the window ends in "
                      f"{_duration(s['escape_deadline'] - s['now'])}")
    return 0


def cmd_refund(args) -> int:
    c = _client(args)
    replay = _replay(args, c)
    account = _account(args, required=False) if args.account else None
    done = replay.refund(_key(args), account)
    for ev in done:
        print(f"refunded deposit #{ev['inbox_index']}: {_fmt(ev['amount'])} to {ev['account'].lower()}")
    if not done:
        print("no refundable deposit")
    return 0


def _games(c):
    from l1_bridge.dispute import GameContract
    return GameContract.of(c)


def _disputes_line(c) -> str:
    from l1_bridge.client import L1Error
    from l1_bridge.dispute import list_games
    try:
        games = list_games(_games(c))
    except L1Error as exc:  # a bridge without a dispute contract (deployed before the games joined it)
        return f"none ({exc})"
    active = [g for g in games if g["state"] == "active"]
    text = f"{len(games)} games, {len(active)} active"
    if active:
        text += " (on outputs " + ", ".join(sorted({str(g["output"]) for g in active})) + "): isoroll l1 disputes"
    return text


def _wei(wei: int) -> str:
    from l1_bridge.dispute import format_eth
    return format_eth(wei)


def cmd_disputes(args) -> int:
    from l1_bridge.dispute import list_games
    c = _client(args)
    games = list_games(_games(c), args.last)
    if args.json:
        print(json.dumps({"games": games}, indent=2))
        return 0
    if not games:
        print("no dispute games")
        return 0
    for g in games:
        print(f"game #{g['game']}  output {g['output']}  {g['state']}  challenger {g['challenger'].lower()}")
        if g["state"] == "active":
            print(f"  phase      {g['phase']}; to move: {g['to_move']}")
        print(f"  claims     {g['items']} items, disputed range [{g['lo']}, {g['hi']}], depth {g['depth']}")
        print(f"             at {g['lo']}: {g['claim_lo']}")
        print(f"             at {g['hi']}: {g['claim_hi']}")
        if g["mid_claim"]:
            print(f"             proposer at {(g['lo'] + g['hi']) // 2}: {g['mid_claim']}")
        print(f"  clocks     proposer {_duration(g['proposer_clock_s'])} left, "
              f"challenger {_duration(g['challenger_clock_s'])} left")
        print(f"  bonds      challenger {_wei(g['challenger_bonds_wei'])}, proposer {_wei(g['proposer_bonds_wei'])}")
    return 0


def _challenger_key(args, c):
    """The verifier's key and bond: (key or None, bond or None); SystemExit with the
    reason when the key cannot pay a challenge (unfunded, bond below the contract's)."""
    from l1_bridge.client import Signer
    from l1_bridge.dispute import format_eth
    try:
        key = _key(args)
    except SystemExit:
        print("warning: no challenger key (--key / ISOROLL_KEY): mismatches are reported, not disputed",
              file=sys.stderr)
        return None, None, 0
    games = _games(c)
    need = games.challenge_bond()
    bond = need if args.bond is None else _parse_eth(args.bond)
    if bond < need:
        raise SystemExit(f"error: bond too small: --bond {format_eth(bond)}, the dispute contract's CHALLENGE_BOND "
                         f"is {format_eth(need)}")
    reserve = c.w3.eth.gas_price * CHALLENGE_GAS
    who = Signer.of(key).address
    balance = c.eth_balance(who)
    if balance < bond + reserve:
        raise SystemExit(f"error: key {who} holds {format_eth(balance)} on L1: a dispute needs the bond "
                         f"{format_eth(bond)} plus about {format_eth(reserve)} of gas; fund the key first")
    return key, bond, reserve


def _parse_eth(text: str) -> int:
    from decimal import Decimal, InvalidOperation
    try:
        wei = Decimal(text) * 10**18
    except InvalidOperation:
        raise SystemExit(f"error: --bond {text!r}: an amount of ETH, e.g. 0.1") from None
    if wei < 0 or wei != wei.to_integral_value():
        raise SystemExit(f"error: --bond {text!r}: an amount of ETH of at most 18 decimals, not negative")
    return int(wei)


CHALLENGE_GAS = 10_000_000
"""Gas a challenger keeps for one game: opening with a 120 KB chunk (~4.7 M), ~15 choices and the step."""


def cmd_verifier(args) -> int:
    from sequencer.node.service import setup_logging
    from l1_bridge.verifier import Verifier
    setup_logging(args.log_level, "text")
    c = _client(args)
    challenger, bond, reserve = _challenger_key(args, c)
    log_config = None
    if args.source == "kafka":
        from sequencer.log.kafka import LogConfig
        log_config = LogConfig(bootstrap_servers=args.kafka, topic=args.topic, transactional_id="isoroll-verifier",
                               client_id="isoroll-verifier")
    allocations = []
    if args.genesis_file:
        allocations = parse_allocations(json.loads(Path(args.genesis_file).read_text()))
    v = Verifier(c, challenger, source=args.source, preset=args.preset, allocations=allocations,
                 log_config=log_config, bond=bond, gas_reserve=reserve)
    if args.once:
        return asyncio.run(_verify_once(v))
    try:
        asyncio.run(v.run(args.interval))
    except KeyboardInterrupt:
        pass
    return 0


async def _verify_once(v) -> int:
    """One round; a game opened in it is played to the end (exit 2 on a mismatch)."""
    verdicts = await v.check_once()
    await v.play_to_end()
    for x in verdicts:
        state = "ok" if x.ok else "MISMATCH " + (x.error or "")
        print(f"output {x.index}: {state}{f' (disputed in game {x.game})' if x.challenged else ''}", flush=True)
    for r in v.results:
        print(f"game {r['game']} on output {r['output']}: {r['status']} after {r['moves']} moves of ours "
              f"({r['gas']:,} gas, {r['seconds']:.1f} s){'; paid ' + _wei(r['paid']) if r['paid'] else ''}")
    return 0 if all(x.ok for x in verdicts) else 2


# --- parser -----------------------------------------------------------------------------

def add_l1_flags(p: argparse.ArgumentParser, key: bool = True) -> None:
    p.add_argument("--rpc", default=os.environ.get("ISOROLL_L1_RPC_URL", DEFAULT_RPC),
                   help=f"L1 JSON-RPC URL (env ISOROLL_L1_RPC_URL, default {DEFAULT_RPC})")
    p.add_argument("--deployment", default=None,
                   help=f"deployment.json of the bridge (env ISOROLL_L1_DEPLOYMENT_FILE, default {DEFAULT_DEPLOYMENT})")
    p.add_argument("--bridge", default=None, help="the bridge address instead of a deployment file")
    p.add_argument("--preset", default=os.environ.get("ISOROLL_PRESET", "devnet"), help="the L2 protocol preset")
    p.add_argument("--genesis-file", default=None, help="the L2 genesis allocation (default: none; "
                                                        "devnet money comes in as deposits)")
    if key:
        p.add_argument("--key", help="private key hex (prefer ISOROLL_KEY or --key-file)")
        p.add_argument("--key-file", help="file holding the private key hex (env ISOROLL_KEY_FILE)")


def register(sub) -> None:
    from sequencer.cli import DEFAULT_URL
    l1 = sub.add_parser("l1", help="the L1 bridge: deposit, withdraw, claim, force-withdraw, freeze, escape, "
                                   "refund, status").add_subparsers(dest="l1", required=True, metavar="ACTION")

    def add(name, func, help_, amount=False, key=True):
        p = l1.add_parser(name, help=help_)
        add_l1_flags(p, key)
        if amount:
            p.add_argument("amount", help="collateral, e.g. 12.5 (USDC); with --raw, integer units")
            p.add_argument("--raw", action="store_true")
        p.set_defaults(func=lambda a: _run(func, a))
        return p

    p = add("status", cmd_status, "bridge status with both clocks; an account's withdrawals")
    p.add_argument("--account", help="0x address (default: the key's, if one is given)")
    p.add_argument("--outputs", type=int, default=10, help="how many recent outputs / forced requests to show")
    p.add_argument("--url", default=os.environ.get("ISOROLL_URL", DEFAULT_URL), help="the node's API (optional)")
    p = add("deposit", cmd_deposit, "deposit collateral into the bridge (credited on L2)", amount=True)
    p.add_argument("--to", help="credit this L2 account instead of the sender")
    p = l1.add_parser("withdraw", help="request a withdrawal on L2 (then claim it on L1)")
    p.add_argument("amount")
    p.add_argument("--raw", action="store_true")
    p.add_argument("--url", default=os.environ.get("ISOROLL_URL", DEFAULT_URL))
    p.add_argument("--key")
    p.add_argument("--key-file")
    p.set_defaults(func=cmd_withdraw)
    p = add("claim", cmd_claim, "claim final withdrawals (proofs rebuilt from L1 data)")
    p.add_argument("--account", help="claim for this account (default: the key's); anyone may relay")
    add("force-withdraw", cmd_force_withdraw, "force a withdrawal through the L1 inbox", amount=True)
    p = add("force-close", cmd_force_close, "force the close of a position at the mark through the L1 inbox")
    p.add_argument("market", type=int, help="the market id (isoroll markets)")
    p = add("freeze", cmd_freeze, "freeze the bridge once a forced request is past its grace")
    p.add_argument("--request", type=int, default=None, help="the forced request's inbox index")
    p = add("escape", cmd_escape, "exit with proofs against the last final root (frozen bridge only): "
                                  "registers within the window, pays after it")
    p.add_argument("--account", help="escape this account (default: the key's); anyone may pay the gas")
    p.add_argument("--all", action="store_true", help="escape every account of the frozen state")
    p.add_argument("--wait", action="store_true", help="register, wait for the window to end, then take the payment")
    p = add("refund", cmd_refund, "refund deposits the frozen output never took")
    p.add_argument("--account", help="only this account's deposits")

    p = add("disputes", cmd_disputes, "dispute games: output, claims, whose move, both clocks, bonds", key=False)
    p.add_argument("--json", action="store_true", help="JSON (bonds in wei, clocks in seconds)")
    p.add_argument("--last", type=int, default=None, help="only the newest N games")

    v = sub.add_parser("verifier", help="replay the L2, recompute each output; with --key, dispute a wrong one",
                       description="Replay the L2 from L1 data (or Kafka) and recompute every output. With --key "
                                   "(any funded L1 key: no role, no allowlist) a wrong output is proven wrong in "
                                   "a dispute game: the verifier posts CHALLENGE_BOND, plays the bisection to "
                                   "the one-step alone and withdraws what it wins. Without a key it only reports.")
    add_l1_flags(v)
    v.add_argument("--bond", default=None, help="ETH to bond per game (default: the contract's CHALLENGE_BOND)")
    v.add_argument("--source", choices=("l1", "kafka"), default="l1",
                   help="replay from the L1 calldata alone (default) or from the Kafka log")
    v.add_argument("--kafka", default=os.environ.get("ISOROLL_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    v.add_argument("--topic", default=os.environ.get("ISOROLL_KAFKA_TOPIC", "isoroll.blocks"))
    v.add_argument("--interval", type=float, default=2.0, help="seconds between rounds")
    v.add_argument("--once", action="store_true",
                   help="one round (a game it opens is played to the end), exit 2 on a mismatch")
    v.add_argument("--log-level", default="INFO")
    v.set_defaults(func=lambda a: _run(cmd_verifier, a))
