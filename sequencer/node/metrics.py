"""A small Prometheus text-format registry (counters, gauges, histograms).

Kept in-house to stay dependency-free; the exposition format follows
https://prometheus.io/docs/instrumenting/exposition_formats/.
"""
from __future__ import annotations

import bisect
import threading

DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HELP = {
    "isoroll_blocks_written_total": "Blocks this sequencer committed to the log.",
    "isoroll_blocks_applied_total": "Blocks the executor applied from the log.",
    "isoroll_txs_acked_total": "Transactions acknowledged after their block committed.",
    "isoroll_txs_refused_total": "Transactions refused before anything was written (4xx).",
    "isoroll_txs_received_total": "Transactions received by the API.",
    "isoroll_block_write_failures_total": "Block writes that failed (nothing acknowledged).",
    "isoroll_failed_receipts_total": "Records or messages in the log that got a failed receipt.",
    "isoroll_submit_to_receipt_seconds": "Time from a tx reaching the builder to its receipt.",
    "isoroll_block_number": "Head block number.",
    "isoroll_log_lag_messages": "Committed log messages not yet applied by this node.",
    "isoroll_replay_progress_ratio": "Replay progress at start-up (1 when caught up).",
    "isoroll_pending_txs": "Transactions waiting for the next block.",
    "isoroll_ready": "1 when the node accepts writes (sequencer) or is caught up (follower).",
    "isoroll_snapshots_written_total": "Snapshots written.",
}


class Counter:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Gauge:
    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = value


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}
        self._lock = threading.Lock()

    def _get(self, name: str, kind: type):
        metric = self._metrics.get(name)
        if metric is None:
            with self._lock:
                metric = self._metrics.setdefault(name, kind())
        return metric

    def counter(self, name: str) -> Counter:
        return self._get(name, Counter)

    def gauge(self, name: str) -> Gauge:
        return self._get(name, Gauge)

    def histogram(self, name: str) -> Histogram:
        return self._get(name, Histogram)

    def render(self) -> str:
        lines = []
        for name in sorted(self._metrics):
            metric = self._metrics[name]
            if name in HELP:
                lines.append(f"# HELP {name} {HELP[name]}")
            if isinstance(metric, Histogram):
                lines.append(f"# TYPE {name} histogram")
                cumulative = 0
                for bound, count in zip(metric.buckets, metric.counts):
                    cumulative += count
                    lines.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
                lines.append(f'{name}_bucket{{le="+Inf"}} {metric.count}')
                lines.append(f"{name}_sum {metric.sum}")
                lines.append(f"{name}_count {metric.count}")
            else:
                kind = "counter" if isinstance(metric, Counter) else "gauge"
                lines.append(f"# TYPE {name} {kind}")
                lines.append(f"{name} {metric.value:g}")
        return "\n".join(lines) + "\n"


METRICS = Registry()
