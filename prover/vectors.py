"""Shared commitment test vectors: Python writes them, the unit tests check
the prover (prover/tree.py, prover/output.py) against them (drift), the EVM tests check the Vyper verifier
(l1_bridge/contracts/smt.vy) against the same file on py-evm.

    .venv/bin/python -m prover.vectors            # rewrite tests/vectors/smt_vectors.json
    .venv/bin/python -m prover.vectors --check    # exit 1 if the file is stale

Everything is derived from keccak of counters: no randomness, no clock.

Layout (all bytes as 0x-hex):
  trees[]:        {name, entries: [[key, value]], root, proofs: [{proof..., expect}]}
  updates:        {batches: [{changes: [[key, value|null]], root, count}]}
  attacks[]:      {name, kind: "inclusion"|"exclusion", root, key, value_hash?,
                   bitmap, siblings, other_key?, other_value_hash?, expect: false}
  output_roots[]: {fields: {...}, root}
  withdrawals[]:  {withdrawals: [bytes], root, proofs: [{withdrawal_hash, index, siblings, expect}]}
  keys[]:         {kind, parts: [..], key}
A proof entry holds the flat verifier arguments: kind, root, key, value (or
null), value_hash, bitmap, siblings, other_key, other_value_hash, expect.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prover.codec import Proof
from prover.hashing import EMPTY, keccak
from prover.keys import ACCOUNT, GLOBAL, MARKET, ORDER, POSITION, compute_key
from prover.output import compute_output_root, withdrawal_proofs
from prover.tree import SparseMerkleTree

VECTORS_PATH = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "smt_vectors.json"
SEED = b"isoroll/smt-vectors/v1"


def h(b: bytes | None) -> str | None:
    return None if b is None else "0x" + b.hex()


def det(tag: str, i: int, n: int = 32) -> bytes:
    """Deterministic pseudo-random bytes."""
    out = b""
    c = 0
    while len(out) < n:
        out += keccak(SEED + tag.encode() + i.to_bytes(8, "big") + c.to_bytes(4, "big"))
        c += 1
    return out[:n]


def proof_entry(root: bytes, p: Proof, expect: bool = True) -> dict:
    """The proof's JSON form (without ``included``: ``kind`` says it), its root,
    its binary encoding and whether it should verify."""
    fields = p.to_json_obj()
    del fields["included"]
    return {"kind": "inclusion" if p.included else "exclusion", "root": h(root), **fields,
            "encoded": h(p.encode()), "expect": expect}


def flat(root, kind, key, bitmap, siblings, value_hash=None, other_key=None, other_value_hash=None, **extra):
    d = {
        "kind": kind,
        "root": h(root),
        "key": h(key),
        "value_hash": h(value_hash),
        "bitmap": "0x%064x" % bitmap,
        "siblings": [h(s) for s in siblings],
        "other_key": h(other_key),
        "other_value_hash": h(other_value_hash),
        "expect": False,
    }
    d.update(extra)
    return d


def _tree(entries: dict[bytes, bytes]) -> SparseMerkleTree:
    t = SparseMerkleTree()
    t.update(entries)
    return t


def _tree_case(name: str, entries: dict[bytes, bytes], probe: list[bytes]) -> dict:
    t = _tree(entries)
    root = t.root
    proofs = []
    for k in probe:
        p = t.prove(k)
        proofs.append(proof_entry(root, p, expect=root != EMPTY))
    return {
        "name": name,
        "entries": [[h(k), h(v)] for k, v in sorted(entries.items())],
        "root": h(root),
        "count": len(t),
        "proofs": proofs,
    }


def typed_entries(n_accounts: int) -> dict[bytes, bytes]:
    e: dict[bytes, bytes] = {}
    for m in range(1, 4):
        e[compute_key(MARKET, m.to_bytes(4, "big"))] = det("market", m, 384)  # 12 words, the mark at word 6
    e[compute_key(GLOBAL, b"globals")] = det("globals", 0, 352)
    for i in range(n_accounts):
        addr = det("addr", i, 20)
        e[compute_key(ACCOUNT, addr)] = det("account", i, 64)
        e[compute_key(POSITION, addr, (1 + i % 3).to_bytes(4, "big"))] = det("position", i, 128)
        if i % 4 == 0:
            e[compute_key(ORDER, addr, i.to_bytes(8, "big"))] = det("order", i, 384)
    return e


def build() -> dict:
    out: dict = {
        "version": 1,
        "spec": "docs/commitment.md",
        "empty_root": h(EMPTY),
        "trees": [],
        "attacks": [],
    }

    # ---- trees -----------------------------------------------------------
    k1 = det("k", 1)
    out["trees"].append(_tree_case("empty", {}, [k1]))
    out["trees"].append(_tree_case("single", {k1: b"one"}, [k1, det("k", 2)]))
    # two keys sharing their first 200 bits: a deep path of empty siblings
    a = bytes(25) + det("deep", 0, 7)
    b = a[:25] + bytes([a[25] ^ 0x80]) + a[26:]
    c = bytes(25) + bytes([a[25]]) + det("deep", 1, 6)  # shares 208 bits with a (most likely)
    out["trees"].append(
        _tree_case("deep", {a: b"a", b: b"b", c: b""}, [a, b, c, bytes(32), bytes(31) + b"\x01", b"\xff" * 32])
    )
    # empty value bytes are a value (not a delete)
    typed = typed_entries(60)
    probe = list(typed)[:40] + [
        compute_key(ACCOUNT, det("absent", i, 20)) for i in range(20)
    ]
    out["trees"].append(_tree_case("typed", typed, probe))
    big = {det("big", i): det("bigv", i, 1 + i % 40) for i in range(1000)}
    out["trees"].append(
        _tree_case("random1000", big, [det("big", i) for i in range(0, 1000, 41)] + [det("nob", i) for i in range(15)])
    )

    # ---- batched updates ---------------------------------------------------
    t = SparseMerkleTree()
    batches = []
    keys = [det("u", i) for i in range(400)]
    for r in range(8):
        changes: dict[bytes, bytes | None] = {}
        for j in range(60):
            x = int.from_bytes(det("pick", r * 1000 + j, 4), "big")
            k = keys[x % len(keys)]
            op = x % 5
            changes[k] = None if op == 0 else det("uv", r * 1000 + j, 1 + op * 7)
        changes[det("absent", 10_000 + r)] = None  # delete of an absent key: no-op
        t.update(changes)
        batches.append(
            {
                "changes": [[h(k), h(v)] for k, v in changes.items()],
                "root": h(t.root),
                "count": len(t),
            }
        )
    # delete everything: back to the empty root
    t.update({k: None for k, _ in list(t.items())})
    batches.append({"changes": "delete-all", "root": h(t.root), "count": len(t)})
    out["updates"] = {"batches": batches}

    # ---- attacks (all must be rejected) ---------------------------------------
    tt = _tree(typed)
    root = tt.root
    acc = next(k for k in typed if tt.prove(k).depth >= 3)
    p = tt.prove(acc)
    vh = p.value_hash
    atk = out["attacks"]
    atk.append(flat(root, "inclusion", acc, p.bitmap, p.siblings, vh, name="control-valid", expect=True))
    atk.append(flat(root, "inclusion", acc, p.bitmap, p.siblings, keccak(b"other"), name="wrong-value"))
    other = next(k for k in typed if k != acc)
    atk.append(flat(root, "inclusion", other, p.bitmap, p.siblings, vh, name="different-key"))
    # truncated: drop the deepest sibling (and its bitmap bit)
    top = p.bitmap.bit_length() - 1
    atk.append(
        flat(root, "inclusion", acc, p.bitmap ^ (1 << top), p.siblings[1:], vh, name="truncated-deepest")
    )
    # truncated: drop the root-most sibling but keep the bitmap (malformed)
    atk.append(flat(root, "inclusion", acc, p.bitmap, p.siblings[:-1], vh, name="truncated-list"))
    atk.append(flat(root, "inclusion", acc, p.bitmap, p.siblings + (EMPTY,), vh, name="extra-sibling"))
    # deeper than the leaf: an extra empty sibling below it
    atk.append(flat(root, "inclusion", acc, p.bitmap | (1 << (top + 1)), (EMPTY,) + p.siblings, vh, name="extended-path"))
    atk.append(flat(root, "inclusion", acc, p.bitmap | (1 << (top + 1)), (keccak(b"x"),) + p.siblings, vh, name="extended-path-2"))
    # an internal node presented as a leaf: the node at depth 1 on acc's path,
    # given as key = left child, value_hash = right child
    node = tt._root
    bit0 = acc[0] >> 7
    child = node.right if bit0 else node.left
    assert child is not None and hasattr(child, "pre")
    lh, rh = child.lh, child.rh
    sib_top = node.lh if bit0 else node.rh
    fake_key = lh
    # the claimed leaf sits at depth 1 on the path of fake_key; pick the side
    # of the real node: only works if fake_key's first bit matches, else it's
    # also a different-path forgery. Both must fail.
    atk.append(flat(root, "inclusion", fake_key, 1, (sib_top,), rh, name="internal-node-as-leaf"))
    atk.append(flat(root, "exclusion", acc, 1, (sib_top,), None, lh, rh, name="internal-node-as-other-leaf"))
    # empty-root: nothing verifies against zero
    atk.append(flat(EMPTY, "exclusion", acc, 0, (), name="empty-root-exclusion"))
    atk.append(flat(EMPTY, "inclusion", acc, 0, (), vh, name="empty-root-inclusion"))
    # forged exclusion of a present key: its own slot claimed empty
    atk.append(flat(root, "exclusion", acc, p.bitmap, p.siblings, name="forged-exclusion-empty-slot"))
    # forged exclusion: claim the slot holds another (real) leaf
    other_p = tt.prove(other)
    atk.append(
        flat(root, "exclusion", acc, p.bitmap, p.siblings, None, other, other_p.value_hash, name="forged-exclusion-other-leaf")
    )
    # exclusion naming the proven key itself as the "other" leaf
    atk.append(flat(root, "exclusion", acc, p.bitmap, p.siblings, None, acc, vh, name="exclusion-self-leaf"))
    # valid exclusion with an other-leaf terminal, then tampered
    absent = None
    for i in range(10_000):
        cand = compute_key(ACCOUNT, det("absent2", i, 20))
        ep = tt.prove(cand)
        if ep.other_key is not None:
            absent = cand
            break
    assert absent is not None
    atk.append(
        flat(root, "exclusion", absent, ep.bitmap, ep.siblings, None, ep.other_key, ep.other_value_hash, name="control-valid-exclusion", expect=True)
    )
    atk.append(
        flat(root, "exclusion", absent, ep.bitmap, ep.siblings, None, ep.other_key, keccak(b"x"), name="exclusion-wrong-other-value")
    )
    atk.append(flat(root, "exclusion", absent, ep.bitmap, ep.siblings, name="exclusion-drop-other-leaf"))
    # other leaf off the key's path (a real leaf from elsewhere in the tree)
    far = next(k for k in typed if (k[0] >> 7) != (absent[0] >> 7))
    atk.append(
        flat(root, "exclusion", absent, ep.bitmap, ep.siblings, None, far, tt.prove(far).value_hash, name="exclusion-other-leaf-off-path")
    )
    # inclusion proof of one key replayed against a later root
    t2 = tt.copy()
    t2.update({acc: b"changed"})
    atk.append(flat(t2.root, "inclusion", acc, p.bitmap, p.siblings, vh, name="stale-proof-new-root"))

    # ---- output roots --------------------------------------------------------
    outs = []
    for i in range(4):
        f = {
            "version": i % 2,
            "state_root": h(det("sr", i)),
            "withdrawals_root": h(EMPTY if i == 0 else det("wr", i)),
            "last_block_hash": h(det("bh", i)),
            "inbox_count": i * 1000 + (2**255 if i == 3 else 0),
            "inbox_hash": h(det("ih", i)),
            "data_hash": h(det("dh", i)),
        }
        r = compute_output_root(
            f["version"],
            bytes.fromhex(f["state_root"][2:]),
            bytes.fromhex(f["withdrawals_root"][2:]),
            bytes.fromhex(f["last_block_hash"][2:]),
            f["inbox_count"],
            bytes.fromhex(f["inbox_hash"][2:]),
            bytes.fromhex(f["data_hash"][2:]),
        )
        outs.append({"fields": f, "root": h(r)})
    out["output_roots"] = outs

    # ---- withdrawals -----------------------------------------------------------
    wcases = []
    for n in (0, 1, 2, 3, 5, 8, 13):
        ws = [det("w", n * 100 + i, 128) for i in range(n)]
        root_w, proofs = withdrawal_proofs(ws)
        entries = [
            {
                "withdrawal_hash": h(wp.withdrawal_hash),
                "index": wp.index,
                "siblings": [h(s) for s in wp.siblings],
                "expect": True,
            }
            for wp in proofs
        ]
        if n >= 2:
            wp = proofs[1]
            bad = [
                ("wrong-index", wp.withdrawal_hash, 0, wp.siblings),
                ("index-too-large", wp.withdrawal_hash, wp.index + (1 << len(wp.siblings)), wp.siblings),
                ("truncated", wp.withdrawal_hash, wp.index & ((1 << (len(wp.siblings) - 1)) - 1), wp.siblings[:-1]),
                ("wrong-hash", keccak(b"not a withdrawal"), wp.index, wp.siblings),
                ("leaf-as-hash", keccak(b"\x00" + wp.withdrawal_hash), wp.index, wp.siblings),
            ]
            for name, whash, idx, sibs in bad:
                entries.append(
                    {
                        "name": name,
                        "withdrawal_hash": h(whash),
                        "index": idx,
                        "siblings": [h(s) for s in sibs],
                        "expect": False,
                    }
                )
        if n >= 4:
            # an internal node presented as a withdrawal one level up
            levels_node = proofs[0]
            entries.append(
                {
                    "name": "internal-node-as-leaf",
                    "withdrawal_hash": h(levels_node.siblings[0]),
                    "index": 1,
                    "siblings": [h(s) for s in levels_node.siblings[1:]],
                    "expect": False,
                }
            )
        wcases.append(
            {
                "withdrawals": [h(w) for w in ws],
                "root": h(root_w),
                "proofs": entries,
            }
        )
    # proofs against the empty root fail
    wcases[0]["proofs"].append(
        {"name": "empty-root", "withdrawal_hash": h(EMPTY), "index": 0, "siblings": [], "expect": False}
    )
    out["withdrawals"] = wcases

    # ---- typed keys --------------------------------------------------------------
    addr = bytes.fromhex("00112233445566778899aabbccddeeff00112233")
    out["keys"] = [
        {"kind": ACCOUNT, "parts": [h(addr)], "key": h(compute_key(ACCOUNT, addr))},
        {"kind": POSITION, "parts": [h(addr), h((7).to_bytes(4, "big"))], "key": h(compute_key(POSITION, addr, (7).to_bytes(4, "big")))},
        {"kind": ORDER, "parts": [h(addr), h((42).to_bytes(8, "big"))], "key": h(compute_key(ORDER, addr, (42).to_bytes(8, "big")))},
        {"kind": MARKET, "parts": [h((7).to_bytes(4, "big"))], "key": h(compute_key(MARKET, (7).to_bytes(4, "big")))},
        {"kind": GLOBAL, "parts": [h(b"globals")], "key": h(compute_key(GLOBAL, b"globals"))},
    ]
    return out


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        if not VECTORS_PATH.is_file() or VECTORS_PATH.read_text() != text:
            print(f"{VECTORS_PATH} is stale: run python -m prover.vectors", file=sys.stderr)
            return 1
        print("vectors up to date")
        return 0
    VECTORS_PATH.parent.mkdir(parents=True, exist_ok=True)
    VECTORS_PATH.write_text(text)
    print(f"wrote {VECTORS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
