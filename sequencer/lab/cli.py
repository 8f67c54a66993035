"""``isoroll lab``: run a price scenario under each liquidation policy and
compare (docs/engine.md "Liquidation lab")."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from sequencer.lab.report import format_table, write_html, write_plots
from sequencer.lab.run import POLICIES, Population, get_policy, run_lab
from sequencer.lab.scenarios import SHAPES, get_path


def parse_override(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FIELD=INTEGER, e.g. partial_liquidation_ppm=100000")
    try:
        return name, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the value must be an integer (market units)") from None


def register(sub) -> None:
    p = sub.add_parser("lab", help="the liquidation lab: simulated traders and makers against the real rules, "
                                   "one table per liquidation policy, plots and an HTML report")
    p.add_argument("scenario", help=f"a built-in price path ({', '.join(sorted(SHAPES))}) "
                                    "or a CSV file with columns seconds,price")
    p.add_argument("--policy", action="append", dest="policies",
                   help=f"repeatable; known: {', '.join(POLICIES)} (default: every available one)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=int, default=3_600, help="seconds of a built-in path (default %(default)s)")
    p.add_argument("--step", type=int, default=10, help="seconds between steps (default %(default)s)")
    p.add_argument("--start-price", type=int, default=60_000, help="USDC per BTC (default %(default)s)")
    p.add_argument("--traders", type=int, default=Population().traders)
    p.add_argument("--makers", type=int, default=Population().makers)
    p.add_argument("--fund", type=int, default=Population().fund // 10**6, help="insurance fund at the start, USDC")
    p.add_argument("--maker-notional", type=int, default=Population().maker_level_notional // 10**6,
                   help="USDC per maker level and side: the book's depth (default %(default)s)")
    p.add_argument("--keepers", type=int, default=Population().keepers, help="auction keepers (book+auction)")
    p.add_argument("--param", action="append", type=parse_override, default=[], metavar="FIELD=VALUE",
                   help="override a BTC-USD market parameter, e.g. partial_liquidation_ppm=100000")
    p.add_argument("--out", default="lab-report", help="directory for the PNG plots and report.html")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    p.set_defaults(func=cmd_lab)


def cmd_lab(args) -> int:
    names = args.policies or [name for name, policy in POLICIES.items() if policy.available]
    try:
        for name in names:
            get_policy(name)
        path = get_path(args.scenario, start=args.start_price * 10**6, duration_s=args.duration, step_s=args.step)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    population = Population(traders=args.traders, makers=args.makers, fund=args.fund * 10**6,
                            maker_level_notional=args.maker_notional * 10**6, keepers=args.keepers)
    results = []
    for name in names:
        started = time.perf_counter()
        try:
            result, _ = run_lab(name, args.scenario, path, seed=args.seed, population=population,
                                overrides=dict(args.param))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        wall = time.perf_counter() - started
        hours = result.simulated_seconds / 3_600
        print(f"{name}: {result.steps} steps, {result.records:,} records, {wall:.2f} s wall "
              f"({wall / hours:.2f} s per simulated hour)", file=sys.stderr)
        results.append(result)
    print(format_table(results, markdown=args.markdown))
    if not args.no_plots:
        out = Path(args.out)
        plots = write_plots(results, out)
        command = "isoroll lab " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else "isoroll lab"
        report = write_html(results, plots, out, command)
        note = "" if plots else " (no plots: pip install 'isoroll[lab]')"
        print(f"report: {report}{note}", file=sys.stderr)
    return 0
