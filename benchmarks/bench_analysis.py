"""False-alarm analysis benchmark: 30 days of 100 gas detectors (and 3 wind stations).

Run: ``.venv/bin/python -m benchmarks.bench_analysis [--detectors 100] [--days 30]
[--repeat 5]``. Prints the figures recorded in docs/benchmarks.md.

A SQLite file holding the demo site gets a month of history for ``--detectors`` made-up
detectors laid out over the site (ten substances, each held in one zone): 10-minute periods
for every detector and wind station (445,000 rows at 100 detectors), about 5,000 alarms
(ordinary noise, one detector chattering through its welding permits, one drifting), and the
hot-work permits. Timed, ``--repeat`` times (the median counts):

1. **load**: :func:`command.monitoring.analysis.load_inputs`: the journal brought up to date
   with the log, the alarms, the wind stations' periods, the detectors' daily means and flat
   periods (aggregated by the database), the permits;
2. **analyse**: :func:`command.monitoring.analysis.analyse`, everything the page shows.

The target is 2 s for both together ("the 30-day analysis of 100 detectors in under 2 s").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import insert

from command.monitoring import analysis as fa
from command.monitoring.demo_history import _insert_periods
from gis.storage.db import Database, make_engine
from gis.storage.tables import AlarmJournalRow, HotWorkPermitRow
from tests.conftest import DEMO_ID, site_database

TARGET_S = 2.0
END = datetime(2026, 12, 1, tzinfo=UTC)
SUBSTANCES = ("Cl2", "NH3", "H2S", "LEL", "CO", "HCl", "SO2", "NO2", "C2H4O", "C6H6")


def make(db: Database, detectors: int, days: int, seed: int = 1) -> pd.DataFrame:
    """Write the history; the sensors' frame."""
    rng = np.random.default_rng(seed)
    lon0, lat0 = 121.35, 30.72
    ids = [f"B-{i:03d}" for i in range(detectors)] + ["W-1", "W-2", "W-3"]
    lon = lon0 + rng.uniform(-0.005, 0.005, len(ids))
    lat = lat0 + rng.uniform(-0.003, 0.003, len(ids))
    substance = [SUBSTANCES[i % len(SUBSTANCES)] for i in range(detectors)] + [None] * 3
    sensors = pd.DataFrame(
        {
            "id": ids,
            "name": ids,
            "kind": ["gas"] * detectors + ["wind"] * 3,
            "substance": substance,
            "unit": ["ppm"] * detectors + ["m/s"] * 3,
            "warning": [10.0] * detectors + [np.nan] * 3,
            "lon": lon,
            "lat": lat,
            "zone_id": [f"Z-{i % 25:02d}" for i in range(detectors)] + [None] * 3,
            "zone_name": [f"Zone {i % 25}" for i in range(detectors)] + [None] * 3,
        }
    )
    stop = int(END.timestamp())
    start = stop - days * 86400
    t = np.arange(start, stop, 600)
    rows: list[tuple[Any, ...]] = []
    direction = (45 + np.cumsum(rng.normal(0, 8, len(t)))) % 360
    for i, sid in enumerate(ids):
        if i >= detectors:
            speed = np.clip(rng.lognormal(1.0, 0.4, len(t)), 0.1, 30)
            rows += [
                (
                    DEMO_ID,
                    sid,
                    int(a),
                    600,
                    float(v) * 0.6,
                    float(v),
                    float(v) * 1.5,
                    float(d),
                    True,
                )
                for a, v, d in zip(t, speed, direction, strict=True)
            ]
            continue
        mean = 0.5 + rng.normal(0, 0.1, len(t)) + (np.linspace(0, 9, len(t)) if i == 1 else 0)
        rows += [
            (DEMO_ID, sid, int(a), 600, float(m) - 0.2, float(m), float(m) + 0.3, None, True)
            for a, m in zip(t, mean, strict=True)
        ]
    alarms: list[dict[str, Any]] = []
    for i in range(detectors):
        count = 1500 if i == 0 else int(rng.poisson(35))
        starts = np.sort(rng.uniform(start, stop, count))
        for k, s in enumerate(starts):
            alarms.append(
                {
                    "site_id": DEMO_ID,
                    "id": f"b{len(alarms)}",
                    "sensor_id": ids[i],
                    "substance": substance[i],
                    "tier": "warning",
                    "started_at": datetime.fromtimestamp(s, UTC),
                    "ended_at": datetime.fromtimestamp(s + rng.uniform(5, 600), UTC),
                    "peak": 10.5,
                    "outcome": ("false", "test", None)[k % 3],
                    "test": k % 3 == 1,
                    "shelved": False,
                    "generated": True,
                }
            )
    permits = [
        {
            "site_id": DEMO_ID,
            "id": f"HW-B{d:03d}",
            "kind": "welding",
            "location": {"type": "Point", "coordinates": [float(lon[0]), float(lat[0])]},
            "radius_m": 20.0,
            "valid_from": END - timedelta(days=d, hours=10),
            "valid_to": END - timedelta(days=d, hours=2),
            "issued_by": "bench",
            "note": None,
            "recorded_at": END - timedelta(days=d, hours=11),
            "recorded_by": "bench",
            "generated": True,
        }
        for d in range(1, days)
    ]
    with db.write() as session:
        _insert_periods(session, rows)
        session.execute(insert(AlarmJournalRow), alarms)
        session.execute(insert(HotWorkPermitRow), permits)
    print(f"history: {len(rows):,} periods, {len(alarms):,} alarms, {len(permits)} permits")
    return sensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = site_database(Path(folder) / "bench.db")
        engine = make_engine(url)
        db = Database(engine)
        sensors = make(db, args.detectors, args.days)
        # Each detector stands at a source of its substance (its zone holds it).
        sources: dict[str, list[tuple[str, str, float, float]]] = {}
        for row in sensors[sensors["substance"].notna()].to_dict("records"):
            sources.setdefault(str(row["substance"]).lower(), []).append(
                (str(row["zone_id"]), str(row["zone_name"]), float(row["lon"]), float(row["lat"]))
            )
        begin = END - timedelta(days=args.days)
        loads, analyses, cpus = [], [], []
        result: dict[str, Any] = {}
        for _ in range(args.repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            inputs = fa.load_inputs(db, DEMO_ID, sensors, sources, begin, END)
            middle = time.perf_counter()
            result = fa.analyse(inputs)
            done = time.perf_counter()
            loads.append(middle - wall)
            analyses.append(done - middle)
            cpus.append(time.process_time() - cpu)
        engine.dispose()
    load, analyse = statistics.median(loads), statistics.median(analyses)
    total = load + analyse
    print(
        f"{args.detectors} detectors, {args.days} days: {result['totals']['alarms']:,} alarms, "
        f"{len(result['recommendations'])} recommendations"
    )
    print(f"load    median {load:.3f} s  (min {min(loads):.3f})")
    print(f"analyse median {analyse:.3f} s  (min {min(analyses):.3f})")
    print(f"total   median {total:.3f} s, CPU {statistics.median(cpus):.3f} s; target {TARGET_S} s")
    print("OK" if total < TARGET_S else "OVER TARGET")


if __name__ == "__main__":
    main()
