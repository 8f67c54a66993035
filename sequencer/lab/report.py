"""The lab's outputs: one table (text or markdown) over the policies, PNG
plots (price and mark, open interest, fund and vault equity over time) and
one HTML report that shows both.  matplotlib is the optional ``lab`` extra;
without it the table is still printed and the plots are skipped with a note."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from sequencer.core.markets import USDC
from sequencer.lab.run import Result

MONEY_COLUMNS = ("bad debt", "fund P&L", "vault P&L")


def format_cell(column: str, value) -> str:
    if value is None:
        return "n/a"
    if column in MONEY_COLUMNS:
        return f"{value / USDC:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(results: list[Result], markdown: bool = False) -> str:
    """One row per policy; money in whole USDC."""
    rows = [r.table_row() for r in results]
    columns = list(rows[0])
    cells = [[format_cell(c, row[c]) for c in columns] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_plots(results: list[Result], out_dir: Path) -> list[Path]:
    """Three PNGs over time, one line per policy; [] without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    first = results[0].samples
    minutes = [s.seconds / 60 for s in first]
    panels = [
        ("price.png", "price and mark (USDC)", [("true price", [s.price for s in first]),
                                                ("oracle / mark", [s.oracle_price for s in first])]),
        ("open_interest.png", "open interest (base units)",
         [(r.policy, [s.open_interest for s in r.samples]) for r in results]),
        ("fund_vault.png", "insurance fund and vault equity (USDC)",
         [(f"{r.policy} fund", [s.fund_equity for s in r.samples]) for r in results]
         + [(f"{r.policy} vault", [s.vault_equity for s in r.samples]) for r in results
            if any(s.vault_equity for s in r.samples)]),
    ]
    for filename, title, lines in panels:
        figure, axes = plt.subplots(figsize=(8, 3.2))
        scale = 1e8 if filename == "open_interest.png" else USDC
        for label, values in lines:
            axes.plot([m for m in minutes[:len(values)]], [v / scale for v in values], label=label,
                      drawstyle="steps-post" if "oracle" in label else "default")
        axes.set_title(title)
        axes.set_xlabel("minutes")
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        path = out_dir / filename
        figure.savefig(path, dpi=100, metadata={"Software": None})
        plt.close(figure)
        written.append(path)
    return written


def write_html(results: list[Result], plots: list[Path], out_dir: Path, command: str) -> Path:
    """One self-contained HTML page: the command, the table, the plots inline."""
    out_dir.mkdir(parents=True, exist_ok=True)
    r0 = results[0]
    images = "".join(f'<p><img alt="{p.stem}" src="data:image/png;base64,'
                     f'{base64.b64encode(p.read_bytes()).decode()}"></p>' for p in plots)
    if not plots:
        images = "<p>No plots: install the lab extra (pip install 'isoroll[lab]').</p>"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>isoroll lab: {html.escape(r0.scenario)}"
            f"</title></head><body><h1>Liquidation lab: {html.escape(r0.scenario)}, seed {r0.seed}</h1>"
            f"<pre>{html.escape(command)}</pre><pre>{html.escape(format_table(results))}</pre>{images}"
            "</body></html>")
    path = out_dir / "report.html"
    path.write_text(page)
    return path
