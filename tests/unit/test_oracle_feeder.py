"""The oracle feeder: its signatures reach the devnet quorum, the random walk
is reproducible and on the tick, a CSV replay takes the median of its price
columns, and the loop is bounded and keeps oracle times increasing."""
from __future__ import annotations

import pytest

from perps_support import CTX, SEPARATOR
from sequencer.core.markets import DEVNET_ORACLE_KEYS, USDC
from sequencer.core.rules.funding import verify_oracle_quorum
from sequencer.core.transition import RuleError
from sequencer.oracle import CsvReplay, Feeder, MarketInfo, RandomWalk, select_markets, sign_oracle_price

BTC = MarketInfo(1, "BTC-USD", USDC, 60_000 * USDC)
ETH = MarketInfo(2, "ETH-USD", USDC // 10, 0)


def test_signatures_reach_the_quorum_and_one_is_not_enough():
    verify_oracle_quorum(sign_oracle_price(SEPARATOR, 1, 60_000 * USDC, 1_000, DEVNET_ORACLE_KEYS[:2]), CTX)
    verify_oracle_quorum(sign_oracle_price(SEPARATOR, 1, 60_000 * USDC, 1_000, DEVNET_ORACLE_KEYS), CTX)
    with pytest.raises(RuleError) as raised:
        verify_oracle_quorum(sign_oracle_price(SEPARATOR, 1, 60_000 * USDC, 1_000, DEVNET_ORACLE_KEYS[:1]), CTX)
    assert raised.value.code == "no_quorum"


def test_random_walk_is_seeded_and_on_the_tick():
    walks = [RandomWalk([BTC, ETH], volatility_ppm=5_000, seed=3) for _ in range(2)]
    series = [[w.step() for _ in range(50)] for w in walks]
    assert series[0] == series[1]
    assert series[0][0] == [(1, [60_000 * USDC]), (2, [3_000 * USDC])]  # current price, else the preset start
    prices = [p for step in series[0] for _, (p,) in step]
    assert len(set(prices)) > 10
    assert all(p % USDC == 0 for step in series[0] for m, (p,) in step if m == 1)
    assert all(p % (USDC // 10) == 0 for step in series[0] for m, (p,) in step if m == 2)


def test_csv_replay_takes_the_median_of_its_columns(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("time,market,price_a,price_b,price_c\n"
                    "1,BTC-USD,60000,60010.4,59990\n"
                    "2,2,3000.05,,\n"
                    "3,DOGE-USD,0.1,0.1,0.1\n"
                    "4,btc-usd,61000,61000,62000\n")
    source = CsvReplay(str(path), [BTC, ETH])
    assert source.step() == [(1, [60_000 * USDC, 60_010 * USDC, 59_990 * USDC])]
    assert source.step() == [(2, [3_000_100_000])]  # rounded to the 0.1 tick
    assert source.step() == [(1, [61_000 * USDC, 61_000 * USDC, 62_000 * USDC])]
    assert source.step() is None


class FakeClient:
    def __init__(self) -> None:
        self.posted = []

    async def domain_separator(self) -> bytes:
        return SEPARATOR

    async def submit_oracle_price(self, record) -> dict:
        verify_oracle_quorum(record, CTX)
        self.posted.append(record)
        return {"status": "ok", "block": len(self.posted), "liquidations": []}


async def test_feeder_posts_medians_with_increasing_times_and_stops():
    client = FakeClient()
    clock = iter([5, 5, 5, 6, 6, 7, 8, 9, 10, 11, 12])
    rows = RandomWalk([BTC], seed=1)
    updates = await Feeder(client, rows, interval_s=0, clock=lambda: next(clock)).run(max_steps=3)
    assert len(updates) == len(client.posted) == 3
    times = [r.timestamp_ms for r in client.posted]
    assert times == sorted(set(times))
    assert client.posted[0].price == 60_000 * USDC


def test_select_markets_by_id_or_symbol():
    entries = [{"id": 1, "symbol": "BTC-USD", "tickSize": USDC, "oraclePrice": 0},
               {"id": 2, "symbol": "ETH-USD", "tickSize": USDC // 10, "oraclePrice": 0}]
    assert [m.id for m in select_markets(entries, ["eth-usd", "1"])] == [2, 1]
    assert len(select_markets(entries, None)) == 2
    with pytest.raises(ValueError):
        select_markets(entries, ["SOL-USD"])
