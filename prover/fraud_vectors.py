"""Shared fraud-proof vectors: Python writes them, the unit tests check
prover.records / prover.trace against them, the EVM tests check records.vy and
onestep.vy against the same files on py-evm (docs/fraud-proofs.md).

    .venv/bin/python -m prover.fraud_vectors            # rewrite the files
    .venv/bin/python -m prover.fraud_vectors --check    # exit 1 if a file is stale

Everything is derived from keccak of counters: no randomness, no clock.

records_vectors.json:
  lists[]:   {count, data, root, openings: [{index, item, siblings, count, expect}]}
  bad_data[]: {name, data}      (derive must fail)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from prover.records import (compute_records_root, derive_records_root, encode_data, prove_item,
                            verify_item)
from prover.smt import keccak

VECTORS_DIR = Path(__file__).resolve().parent.parent / "tests" / "vectors"
RECORDS_PATH = VECTORS_DIR / "records_vectors.json"
SEED = b"isoroll/fraud-vectors/v1"


def hx(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def det(tag: str, i: int, n: int) -> bytes:
    out, c = b"", 0
    while len(out) < n:
        out += keccak(SEED + tag.encode() + i.to_bytes(8, "big") + c.to_bytes(4, "big"))
        c += 1
    return out[:n]


def make_items(count: int, tag: str) -> list[bytes]:
    return [det(tag, i, 1 + det(tag + "/len", i, 1)[0] % 140) for i in range(count)]


def opening(items: list[bytes], root: bytes, index: int, *, item: bytes | None = None,
            siblings: list[bytes] | None = None, count: int | None = None) -> dict:
    n = len(items) if count is None else count
    if siblings is None:
        siblings = list(prove_item(items, index).siblings) if index < len(items) else []
    item = items[index] if item is None else item
    return {"index": index, "item": hx(item), "siblings": [hx(s) for s in siblings], "count": n,
            "expect": verify_item(root, n, item, index, siblings)}


def make_list(count: int) -> dict:
    items = make_items(count, f"list{count}")
    data = encode_data(items)
    root = compute_records_root(items)
    assert derive_records_root(data) == (root, count)
    openings = [opening(items, root, i) for i in sorted({0, count // 2, count - 1}) if count]
    if count >= 2:
        good = list(prove_item(items, 1).siblings)
        openings += [
            opening(items, root, 1, item=items[1] + b"\x00"),                      # tampered item
            opening(items, root, 0, item=items[1], siblings=good),                  # another item's opening
            opening(items, root, 1, siblings=good[:-1]),                            # a sibling dropped
            opening(items, root, 1, siblings=good + [root]),                        # a level added
            opening(items, root, 1, count=count * 4),                               # a count with more levels
            opening(items, root, count, item=items[0], siblings=good),             # index at the count
        ]
    if count == 3:  # the padding slot (index 3 of a 4-leaf tree) cannot be opened
        openings.append(opening(items, root, 3, item=b"\x00" * 32, siblings=list(prove_item(items, 2).siblings),
                                count=4))
    return {"count": count, "data": hx(data), "root": hx(root), "openings": openings}


def bad_data() -> list[dict]:
    item = det("bad", 0, 40)
    good = encode_data([item])
    return [
        {"name": "truncated frame", "data": hx(good[:-1])},
        {"name": "lone length byte", "data": hx(good + b"\x00")},
        {"name": "empty frame", "data": hx(good + b"\x00\x00")},
        {"name": "frame above 1024 bytes", "data": hx(b"\x04\x01" + b"\x01" * 1025)},
        {"name": "length past the end", "data": hx(b"\x00\x05abc")},
    ]


def build_records_vectors() -> dict:
    counts = list(range(0, 18)) + [31, 32, 33, 100, 257]
    return {"lists": [make_list(n) for n in counts], "bad_data": bad_data()}


def render(obj: dict) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def targets() -> dict[Path, str]:
    return {RECORDS_PATH: render(build_records_vectors())}


def main(argv: list[str]) -> int:
    stale = []
    for path, text in targets().items():
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.write_text(text)
    for path in stale:
        print(f"{path} is stale: run python -m prover.fraud_vectors", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
