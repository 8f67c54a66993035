"""`python -m bench` runs every benchmark in quick mode and prints a summary;
`python -m bench ingest [--full] [...]`, `python -m bench replay [--full] [...]` and
`python -m bench trading [--full] [...]` run one (``--help`` on each for its options);
`python -m bench log [--cluster]` measures the transactional block writer alone and
`python -m bench soak [--cycles N]` kills brokers and sequencers under load (neither
is part of the quick run: they start a three-node cluster)."""
from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    from bench import bench_ingest, bench_replay, bench_trading
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv and argv[0] == "ingest":
        bench_ingest.main(argv[1:])
        return 0
    if argv and argv[0] == "replay":
        bench_replay.main(argv[1:])
        return 0
    if argv and argv[0] == "log":
        from bench import bench_log
        bench_log.main(argv[1:])
        return 0
    if argv and argv[0] == "soak":
        from bench import soak
        report = soak.main(argv[1:])
        return 0 if report.ok else 1
    if argv and argv[0] == "trading":
        bench_trading.main(argv[1:])
        return 0
    if argv and argv[0] not in ("--full",):
        print(f"unknown benchmark {argv[0]!r}; use ingest, replay, trading, log or soak\n{__doc__}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    extra = ["--full"] if argv[:1] == ["--full"] else []
    ingest = bench_ingest.main(extra)
    replay = bench_replay.main(extra)
    trading = bench_trading.main(extra)
    print("\n== summary (all benchmarks, %s mode, %.0fs) ==" % ("full" if extra else "quick",
                                                               time.perf_counter() - started))
    for line in bench_ingest.summary(ingest) + bench_replay.summary(replay) + bench_trading.summary(trading):
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
