"""Benchmark of the state tree (prover/tree.py) at scale.

    .venv/bin/python -m bench.bench_smt            # 1,000,000 leaves
    .venv/bin/python -m bench.bench_smt --quick    # 100,000 leaves, a few batches
    .venv/bin/python bench/bench_smt.py --leaves 2000000 --json

Leaves are what the state holds: pairs of an account (64-byte value) and its
position in one market (128-byte value), under the typed keys of
prover.keys.compute_key.  After the build, blocks of 5,000 changes are applied
as one batch each: 75% rewrite existing leaves, 20% insert new ones, 5%
delete.  Times are CPU time of this process (time.process_time; wall time in
brackets): on a shared machine, wall time also counts the other tenants.

Reports: build time, batched updates/s and root time per 5,000-change block
(median, p90), proof generation, resident memory of the tree, snapshot
dump/load against a rebuild, the raw keccak rate of this run as a reference,
and (with web3 + vyper installed) the gas of verifying an account plus one
position proof on py-evm at this tree size.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import statistics
import sys
import time

if __package__ in (None, ""):  # python bench/bench_smt.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sha3 import keccak_256  # noqa: E402

from prover.hashing import keccak  # noqa: E402
from prover.keys import ACCOUNT, POSITION, compute_key  # noqa: E402
from prover.tree import SparseMerkleTree  # noqa: E402


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def addr(i: int) -> bytes:
    return keccak(b"bench-account" + i.to_bytes(8, "big"))[:20]


def leaf_key(i: int) -> bytes:
    """Leaf i: even = account i//2, odd = its position in market 1."""
    a = addr(i >> 1)
    if i & 1:
        return compute_key(POSITION, a, (1).to_bytes(4, "big"))
    return compute_key(ACCOUNT, a)


def leaf_value(i: int, version: int) -> bytes:
    size = 128 if i & 1 else 64
    return (version.to_bytes(4, "big") + i.to_bytes(8, "big")) * (size // 12) + bytes(size % 12)


def keccak_rate(seconds: float = 0.5) -> float:
    data = bytes(range(65))
    k = keccak_256
    n = 0
    c0 = time.process_time()
    while True:
        for _ in range(10_000):
            k(data).digest()
        n += 10_000
        dt = time.process_time() - c0
        if dt >= seconds:
            return n / dt


class Clock:
    def __enter__(self):
        self.c0 = time.process_time()
        self.w0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu = time.process_time() - self.c0
        self.wall = time.perf_counter() - self.w0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run(leaves: int, batches: int, batch_size: int, proofs: int, gas: bool, seed: int) -> dict:
    rnd = random.Random(seed)
    out: dict = {"leaves": leaves, "batch_size": batch_size, "batches": batches}
    out["keccak_per_s"] = keccak_rate()

    # keys are recomputed from indices, so the benchmark holds no key list
    gc.collect()
    rss0 = rss_bytes()
    t = SparseMerkleTree()
    chunk = 50_000
    with Clock() as c:
        for lo in range(0, leaves, chunk):
            t.update({leaf_key(i): leaf_value(i, 0) for i in range(lo, min(leaves, lo + chunk))})
    with Clock() as kc:  # the key/value generation inside the build, to subtract
        for lo in range(0, leaves, chunk):
            {leaf_key(i): leaf_value(i, 0) for i in range(lo, min(leaves, lo + chunk))}
    gc.collect()
    out["build_s"] = c.cpu - kc.cpu
    out["build_wall_s"] = c.wall - kc.wall
    out["tree_rss_bytes"] = rss_bytes() - rss0
    assert len(t) == leaves

    # ---- batched updates ---------------------------------------------------
    next_new = leaves
    alive_deleted: set[int] = set()

    def blocks(first: int, count: int) -> dict:
        nonlocal next_new
        cpu, wall, keq, rates = [], [], [], []
        for b in range(first, first + count):
            changes: dict[bytes, bytes | None] = {}
            while len(changes) < batch_size:
                r = rnd.random()
                if r < 0.75:
                    i = rnd.randrange(next_new)
                    if i in alive_deleted:
                        continue
                    changes[leaf_key(i)] = leaf_value(i, b + 1)
                elif r < 0.95:
                    changes[leaf_key(next_new)] = leaf_value(next_new, b + 1)
                    next_new += 1
                else:
                    i = rnd.randrange(next_new)
                    k = leaf_key(i)
                    if i in alive_deleted or k in changes:
                        continue
                    alive_deleted.add(i)
                    changes[k] = None
            rate = keccak_rate(0.05)  # the machine's speed right now
            with Clock() as c:
                t.update(changes)
            cpu.append(c.cpu)
            wall.append(c.wall)
            keq.append(c.cpu * rate / batch_size)
            rates.append(rate)
        med = statistics.median(cpu)
        return {
            "block_root_s_median": med,
            "block_root_s_p90": pct(cpu, 0.9),
            "block_root_wall_s_median": statistics.median(wall),
            "updates_per_s": batch_size / med,
            "updates_per_s_wall": batch_size / statistics.median(wall),
            # cost of one change in units of one raw keccak measured just
            # before its block: steadier than raw times on a shared machine
            "keccak_equivalents_per_update": statistics.median(keq),
            "keccak_per_s_during_blocks": statistics.median(rates),
        }

    out.update(blocks(0, batches))
    # the layout after a snapshot load (or compact()): depth-first
    with Clock() as c:
        t.compact()
    out["compact_s"] = c.cpu
    gc.collect()
    out["tree_rss_bytes_compacted"] = rss_bytes() - rss0
    after = blocks(batches, batches)
    out["updates_per_s_compacted"] = after["updates_per_s"]
    out["block_root_s_median_compacted"] = after["block_root_s_median"]
    out["keccak_equivalents_per_update_compacted"] = after["keccak_equivalents_per_update"]
    out["leaves_after"] = len(t)

    # ---- proofs ---------------------------------------------------------------
    sample = [leaf_key(rnd.randrange(leaves)) for _ in range(proofs)]
    with Clock() as c:
        ps = [t.prove(k) for k in sample]
    out["prove_us"] = c.cpu / proofs * 1e6
    with Clock() as c:
        for p in ps:
            p.encode()
    out["proof_encode_us"] = c.cpu / proofs * 1e6
    depths = [p.depth for p in ps]
    out["proof_depth_mean"] = statistics.mean(depths)
    out["proof_depth_max"] = max(depths)
    out["proof_siblings_mean"] = statistics.mean(len(p.siblings) for p in ps)
    out["proof_bytes_mean"] = statistics.mean(len(p.encode()) for p in ps)

    # ---- snapshot -------------------------------------------------------------
    with Clock() as c:
        blob = t.to_bytes()
    out["snapshot_bytes"] = len(blob)
    out["snapshot_dump_s"] = c.cpu
    with Clock() as c:
        t2 = SparseMerkleTree.from_bytes(blob)
    out["snapshot_load_s"] = c.cpu
    assert t2.root == t.root
    del t2, blob
    gc.collect()
    out["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # ---- gas ----------------------------------------------------------------
    if gas:
        try:
            out["gas"] = measure_gas(t, leaves)
        except ImportError as exc:  # web3 / vyper missing
            out["gas"] = f"skipped: {exc}"
    return out


def measure_gas(t: SparseMerkleTree, leaves: int) -> dict:
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider, Web3

    from l1_bridge.compile import compile_contract

    backend = PyEVMBackend(
        genesis_parameters=PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000})
    )
    w3 = Web3(EthereumTesterProvider(EthereumTester(backend)))
    abi, bytecode = compile_contract("smt_harness")
    rc = w3.eth.wait_for_transaction_receipt(
        w3.eth.contract(abi=abi, bytecode=bytecode).constructor().transact({"from": w3.eth.accounts[0]})
    )
    h = w3.eth.contract(address=rc["contractAddress"], abi=abi)
    z = bytes(32)
    rows = []
    for j in range(0, min(leaves // 2, 20) * 2, 2):
        pa, pp = t.prove(leaf_key(j)), t.prove(leaf_key(j + 1))
        if pa.value is None or pp.value is None:
            continue
        args = (
            t.root,
            pa.key, pa.value, (pa.bitmap, list(pa.siblings), z, z),
            pp.key, pp.value, (pp.bitmap, list(pp.siblings), z, z),
        )
        ok, inner = h.functions.gas_account_and_position(*args).call()
        assert ok
        fn = h.functions.verify_account_and_position(*args)
        data = bytes.fromhex(fn._encode_transaction_data()[2:])
        zeros = data.count(0)
        tx = fn.estimate_gas()
        rows.append(
            {
                "depths": (pa.depth, pp.depth),
                "siblings": len(pa.siblings) + len(pp.siblings),
                "verify_gas": inner,
                "tx_gas": tx,
                "calldata_bytes": len(data),
                "calldata_gas_eip2028": 4 * zeros + 16 * (len(data) - zeros),
            }
        )
    return {
        "samples": len(rows),
        "verify_gas_median": statistics.median(r["verify_gas"] for r in rows),
        "verify_gas_max": max(r["verify_gas"] for r in rows),
        "tx_gas_median": statistics.median(r["tx_gas"] for r in rows),
        "calldata_bytes_median": statistics.median(r["calldata_bytes"] for r in rows),
        "siblings_median": statistics.median(r["siblings"] for r in rows),
        "depth_sum_median": statistics.median(sum(r["depths"]) for r in rows),
    }


def report(r: dict) -> str:
    mib = 1024 * 1024
    lines = [
        f"leaves                     {r['leaves']:,} (accounts + positions), then {r['batches']} blocks of {r['batch_size']:,} changes",
        f"raw keccak (65 B)          {r['keccak_per_s']:,.0f} /s",
        f"build                      {r['build_s']:.1f} s cpu ({r['build_wall_s']:.1f} s wall)",
        f"tree resident memory       {r['tree_rss_bytes'] / mib:,.0f} MiB (process max RSS {r['max_rss_bytes'] / mib:,.0f} MiB)",
        f"batched updates            {r['updates_per_s']:,.0f} /s cpu ({r['updates_per_s_wall']:,.0f} /s wall)",
        f"root per block             median {r['block_root_s_median'] * 1e3:.1f} ms, p90 {r['block_root_s_p90'] * 1e3:.1f} ms cpu"
        f" ({r['block_root_wall_s_median'] * 1e3:.1f} ms wall)",
        f"cost per update            {r['keccak_equivalents_per_update']:.1f} keccak-equivalents"
        f" (keccak ran at {r['keccak_per_s_during_blocks']:,.0f} /s around the blocks)",
        f"after compact()            {r['updates_per_s_compacted']:,.0f} /s cpu,"
        f" {r['block_root_s_median_compacted'] * 1e3:.1f} ms per block,"
        f" {r['keccak_equivalents_per_update_compacted']:.1f} keccak-equivalents;"
        f" compact {r['compact_s']:.1f} s, tree RSS then {r['tree_rss_bytes_compacted'] / mib:,.0f} MiB",
        f"prove                      {r['prove_us']:.1f} us/proof, encode {r['proof_encode_us']:.1f} us;"
        f" depth mean {r['proof_depth_mean']:.1f} max {r['proof_depth_max']},"
        f" {r['proof_siblings_mean']:.1f} siblings, {r['proof_bytes_mean']:.0f} bytes",
        f"snapshot                   {r['snapshot_bytes'] / mib:,.0f} MiB, dump {r['snapshot_dump_s']:.2f} s,"
        f" load {r['snapshot_load_s']:.2f} s (rebuild {r['build_s']:.1f} s)",
    ]
    g = r.get("gas")
    if isinstance(g, dict):
        lines.append(
            f"gas account+position       verify {g['verify_gas_median']:,.0f} (max {g['verify_gas_max']:,}),"
            f" whole tx {g['tx_gas_median']:,.0f} with {g['calldata_bytes_median']:,.0f} B calldata,"
            f" {g['siblings_median']:.0f} siblings, depths summing to {g['depth_sum_median']:.0f}"
        )
    elif g:
        lines.append(f"gas                        {g}")
    return "\n".join(lines)


def summary(r: dict) -> list[str]:
    """One-line figures for a combined bench summary."""
    line = (
        f"smt: {r['updates_per_s']:,.0f} updates/s cpu at {r['leaves']:,} leaves,"
        f" {r['block_root_s_median'] * 1e3:.0f} ms per {r['batch_size']:,}-change block,"
        f" {r['tree_rss_bytes'] / 2**20:,.0f} MiB, prove {r['prove_us']:.0f} us"
    )
    g = r.get("gas")
    if isinstance(g, dict):
        line += f", account+position verify {g['verify_gas_median']:,.0f} gas"
    return [line]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100,000 leaves, 5 blocks")
    ap.add_argument("--full", action="store_true", help="the default: 1,000,000 leaves")
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=5_000)
    ap.add_argument("--proofs", type=int, default=10_000)
    ap.add_argument("--no-gas", action="store_true", help="skip the py-evm gas measurement")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    a = ap.parse_args(argv)
    if a.quick:
        a.leaves, a.batches, a.proofs = 100_000, 5, 2_000
    r = run(a.leaves, a.batches, a.batch_size, a.proofs, not a.no_gas, a.seed)
    print(json.dumps(r, indent=1, default=str) if a.json else report(r), flush=True)
    return r


if __name__ == "__main__":
    main()
    raise SystemExit(0)
