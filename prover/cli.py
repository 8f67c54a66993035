"""`isoroll prove ...`: fetch proofs from a node's API, check them, write the
JSON the L1 calls take (docs/commitment.md, "Proofs over HTTP and the CLI").

    isoroll prove account 0xADDRESS [--out FILE] [--url URL] [--block N]
    isoroll prove withdrawal 0xHASH [--out FILE] [--url URL]

Every SMT proof in the answer is verified locally against the answer's state
root (and a withdrawal proof against its withdrawals root) before anything is
written; a proof that does not verify is an error (exit 1), not a file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from prover.codec import Proof, WithdrawalProof
from prover.output import compute_withdrawals_root_from_proof
from prover.tree import verify_proof

DEFAULT_URL = "http://127.0.0.1:8547"


class ProveError(Exception):
    pass


def _unhex(s: str) -> bytes:
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


def fetch(url: str, path: str, params: dict | None = None) -> dict:
    import httpx
    try:
        r = httpx.get(url.rstrip("/") + path, params=params, timeout=30.0)
    except httpx.HTTPError as exc:
        raise ProveError(f"cannot reach the node at {url}: {exc}") from None
    try:
        body = r.json()
    except ValueError:
        raise ProveError(f"{r.status_code} from {url}{path}: not JSON") from None
    if r.status_code != 200:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        raise ProveError(f"{r.status_code} {err.get('code', '')}: {err.get('message', body)}")
    return body


def check_account_answer(answer: dict) -> int:
    """Verify every proof of a /v1/proofs/account answer against its stateRoot;
    returns how many were checked."""
    root = _unhex(answer["stateRoot"])
    proofs = [answer["account"]["proof"]] + [p["proof"] for p in answer["positions"]] \
        + [m["proof"] for m in answer["markets"]]
    for obj in proofs:
        proof = Proof.from_json_obj(obj)
        if not proof.included or not verify_proof(root, proof):
            raise ProveError(f"the proof of key {obj['key']} does not verify against {answer['stateRoot']}")
    return len(proofs)


def check_withdrawal_answer(answer: dict) -> bool:
    """Verify a /v1/proofs/withdrawal answer's proof against the output's withdrawals
    root; False when there is no proof yet (waiting for a checkpoint)."""
    if answer.get("proof") is None:
        return False
    proof = WithdrawalProof.from_json_obj(answer["proof"])
    if proof.withdrawal_hash != _unhex(answer["hash"]):
        raise ProveError("the proof is for another withdrawal")
    root = _unhex(answer["output"]["postedWithdrawalsRoot"])
    if compute_withdrawals_root_from_proof(proof) != root:
        raise ProveError(f"the withdrawal proof does not give the posted withdrawals root {hex(int.from_bytes(root, 'big'))}")
    return True


def write(answer: dict, out: str | None) -> None:
    text = json.dumps(answer, indent=2) + "\n"
    if out:
        tmp = out + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, out)
    else:
        sys.stdout.write(text)


def cmd_prove_account(args) -> int:
    try:
        params = {"block": str(args.block)} if args.block is not None else None
        answer = fetch(args.url, f"/v1/proofs/account/{args.address}", params)
        n = check_account_answer(answer)
    except ProveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write(answer, args.out)
    if args.out:
        print(f"wrote {args.out}: account {answer['address']} at block {answer['blockNumber']} "
              f"(state root {answer['stateRoot']}), {len(answer['positions'])} position(s), "
              f"{n} proof(s) verified", file=sys.stderr)
    return 0


def cmd_prove_withdrawal(args) -> int:
    try:
        answer = fetch(args.url, f"/v1/proofs/withdrawal/{args.hash}")
        proven = check_withdrawal_answer(answer)
    except ProveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write(answer, args.out)
    w = answer["withdrawal"]
    if proven:
        o = answer["output"]
        note = f"in output {o['index']} ({answer['status']}), proof verified"
    else:
        note = f"{answer['status']}: {answer.get('message', '')}"
    print(f"withdrawal #{w['index']} of {w['account']} ({w['amount']} units, L2 block {w['block']}): {note}",
          file=sys.stderr)
    return 0 if answer["status"] != "mismatch" else 1


def register(sub) -> None:
    prove = sub.add_parser("prove", help="fetch and check state / withdrawal proofs, write them as JSON for L1")
    actions = prove.add_subparsers(dest="prove", required=True, metavar="WHAT")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=os.environ.get("ISOROLL_URL", DEFAULT_URL),
                       help="the node's API (default $ISOROLL_URL or %(default)s)")
        p.add_argument("--out", help="write the JSON here (default: stdout)")

    p = actions.add_parser("account", help="the account, its positions and their markets, proven against the "
                                           "head's state root; with the escape() arguments")
    p.add_argument("address")
    p.add_argument("--block", type=int, help="must be the head block (the node keeps only the live tree)")
    common(p)
    p.set_defaults(func=cmd_prove_account)

    p = actions.add_parser("withdrawal", help="a withdrawal's output and withdrawals-tree proof, with the "
                                              "claimWithdrawal() arguments")
    p.add_argument("hash", help="keccak256(abi.encode(index, account, amount, l2_block))")
    common(p)
    p.set_defaults(func=cmd_prove_withdrawal)
