"""The soak (bench/soak.py) in short: under load on the real cluster, kill -9
one broker and then the sequencer (replaced by a standby with the same
sequencer id and a fresh data dir), each followed by the next acknowledged tx; then every acknowledged tx is in the log exactly once
and the sequencer, a follower and a fresh replay agree on the state root.
``python -m bench soak`` runs the long version (docs/operations.md)."""
from __future__ import annotations

import pytest

from bench.soak import run_soak

pytestmark = [pytest.mark.cluster, pytest.mark.kafka]


async def test_short_soak_loses_and_duplicates_nothing(cluster, tmp_path):
    report = await run_soak(cluster, cycles=2, max_seconds=300, seed=3, clients=3, work=tmp_path,
                            kinds=["broker", "sequencer"])
    print("\n".join(report.lines()))
    assert report.stalls == []
    assert [kind.split()[0] for kind, _ in report.cycles] == ["broker", "sequencer"]
    assert report.acked > 0 and report.in_log >= report.acked
    assert report.lost == 0 and report.duplicates == 0
    assert len(report.roots) == 4 and report.roots_agree, report.roots
