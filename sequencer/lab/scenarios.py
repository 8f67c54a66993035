"""Price paths for the lab: built-in shapes or a CSV file.

A path is a list of ``Tick(seconds, price, oracle)``: the market's true price
at that second (market makers quote around it) and whether the oracle
publishes it.  Prices are quote units per whole base unit (integers).

Shapes (from ``start``, over ``duration_s`` at ``step_s``):
- crash: -30% over the first fifth, then flat;
- wick: -25% within two steps, back over the next five;
- grind: a slow -20% over the whole run;
- oracle-lag: a -20% crash while the oracle publishes only every 90 s (its
  price goes stale past the 60 s max age: nothing can be liquidated meanwhile);
- gap: one jump of -15% half way.
CSV: a header ``seconds,price`` (price in whole quote currency, e.g. 60000.5),
one row per second stamp, increasing.
"""
from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import msgspec

from sequencer.core.markets import USDC


class Tick(msgspec.Struct, frozen=True):
    seconds: int
    price: int
    oracle: bool = True


ORACLE_LAG_EVERY_S = 90


def _shape_crash(t: float) -> float:
    return 1 - 0.30 * min(1.0, t / 0.2)


def _shape_grind(t: float) -> float:
    return 1 - 0.20 * t


def _shape_gap(t: float) -> float:
    return 0.85 if t >= 0.5 else 1.0


def _shape_oracle_lag(t: float) -> float:
    return 1 - 0.20 * min(1.0, max(0.0, t - 0.1) / 0.1)


SHAPES = {"crash": _shape_crash, "grind": _shape_grind, "gap": _shape_gap, "oracle-lag": _shape_oracle_lag,
          "wick": None}


def _wick_factors(steps: int) -> list[float]:
    factors = [1.0] * (steps + 1)
    bottom = steps // 3
    for i, f in enumerate((0.88, 0.75, 0.80, 0.85, 0.90, 0.95, 1.0)):
        if bottom - 1 + i <= steps:
            factors[bottom - 1 + i] = f
    return factors


def make_path(shape: str, *, start: int = 60_000 * USDC, duration_s: int = 3_600, step_s: int = 10,
              tick_size: int = USDC) -> list[Tick]:
    if shape not in SHAPES:
        raise ValueError(f"unknown scenario {shape!r}; built-in: {', '.join(sorted(SHAPES))}, or a CSV file")
    steps = duration_s // step_s
    if shape == "wick":
        factors = _wick_factors(steps)
    else:
        factors = [SHAPES[shape](i / steps) for i in range(steps + 1)]
    path = []
    for i, factor in enumerate(factors):
        seconds = i * step_s
        price = max(tick_size, int(start * factor) // tick_size * tick_size)
        oracle = shape != "oracle-lag" or seconds % ORACLE_LAG_EVERY_S == 0
        path.append(Tick(seconds, price, oracle))
    return path


def load_csv_path(path: str | Path, *, tick_size: int = USDC) -> list[Tick]:
    """``seconds,price`` rows; the price in whole quote currency, rounded down to the tick."""
    ticks: list[Tick] = []
    with open(path, newline="") as handle:
        for row_number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                seconds, price = int(row["seconds"]), int(Decimal(row["price"]) * USDC) // tick_size * tick_size
            except (KeyError, ValueError, ArithmeticError) as exc:
                raise ValueError(f"{path}:{row_number}: need integer seconds and a decimal price ({exc})") from None
            if price <= 0 or (ticks and seconds <= ticks[-1].seconds):
                raise ValueError(f"{path}:{row_number}: prices must be positive and seconds increasing")
            ticks.append(Tick(seconds, price))
    if len(ticks) < 2:
        raise ValueError(f"{path}: need at least two rows")
    return ticks


def get_path(scenario: str, **kw) -> list[Tick]:
    """A built-in shape by name, or a CSV file by path."""
    if scenario in SHAPES:
        return make_path(scenario, **kw)
    return load_csv_path(scenario, tick_size=kw.get("tick_size", USDC))
