"""The false-alarm analysis's figures against small cases worked out by hand
(``command.monitoring.analysis``; no database)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
import shapely

from command.monitoring import analysis as fa

T0 = 1_790_000_000 // 600 * 600  # a period's start
LON0, LAT0 = 121.35, 30.72
#: 100 m north of the site's middle, in degrees of latitude.
NORTH_100M = 100 / 110_540


def sensors(*rows: dict[str, Any]) -> pd.DataFrame:
    base = {
        "kind": "gas",
        "substance": "Cl2",
        "unit": "ppm",
        "warning": 0.5,
        "lon": LON0,
        "lat": LAT0,
        "zone_id": "Z-1",
        "zone_name": "Chlorine store",
    }
    frame = pd.DataFrame([{**base, "name": r["id"], **r} for r in rows])
    return frame[fa.SENSOR_COLUMNS]


def alarms(rows: Sequence[tuple[str, float, float | None]], **columns: Any) -> pd.DataFrame:
    """(sensor, start offset s, duration s or None: still active)."""
    return pd.DataFrame(
        {
            "id": [f"a{i}" for i in range(len(rows))],
            "sensor_id": [r[0] for r in rows],
            "tier": ["warning"] * len(rows),
            "start_s": [T0 + r[1] for r in rows],
            "end_s": [np.nan if r[2] is None else T0 + r[1] + r[2] for r in rows],
            "peak": columns.get("peak", [0.52] * len(rows)),
            "outcome": pd.Series(columns.get("outcome", [None] * len(rows)), dtype=object),
            "test": [False] * len(rows),
            "shelved": [False] * len(rows),
        }
    )


CL2_STORE = {"cl2": [("Z-1", "Chlorine store", LON0, LAT0 - 0.01)]}
NO_PERIODS = pd.DataFrame(
    columns=["sensor_id", "period_s", "n", "low", "mean", "high", "direction_deg"]
)
NO_PERMITS = pd.DataFrame(columns=["id", "kind", "geometry", "radius_m", "from_s", "to_s"])


def inputs(
    s: pd.DataFrame,
    a: pd.DataFrame,
    *,
    hours: float,
    periods: pd.DataFrame = NO_PERIODS,
    permits: pd.DataFrame = NO_PERMITS,
    sources: dict[str, list[tuple[str, str, float, float]]] | None = None,
) -> fa.Inputs:
    return fa.Inputs("site", float(T0), T0 + hours * 3600.0, s, a, periods, permits, sources or {})


def wind(rows: Sequence[tuple[float, float, float]], station: str = "W") -> pd.DataFrame:
    """(offset s, speed m/s, from degrees)."""
    return pd.DataFrame(
        {
            "sensor_id": [station] * len(rows),
            "period_s": [T0 + r[0] for r in rows],
            "n": [600] * len(rows),
            "low": [r[1] for r in rows],
            "mean": [r[1] for r in rows],
            "high": [r[1] for r in rows],
            "direction_deg": [r[2] for r in rows],
        }
    )


def of(result: dict[str, Any], sensor_id: str) -> dict[str, Any]:
    return next(r for r in result["sensors"] if r["sensor_id"] == sensor_id)


def test_chattering_counts_episodes_of_three_alarms_within_a_minute() -> None:
    # 0, 20, 50: three within 50 s (an episode); 20, 50, 200: no; 200, 210, 215 and then
    # 210, 215, 260 (overlapping windows: the same episode); 400 alone.
    starts = [0, 20, 50, 200, 210, 215, 260, 400]
    result = fa.analyse(
        inputs(sensors({"id": "S"}), alarms([("S", s, 5) for s in starts]), hours=1)
    )
    assert of(result, "S")["chattering"] == 2
    assert of(result, "S")["fleeting"] == 8  # all shorter than 60 s
    assert fa._chatter_episodes(np.array([0.0, 61.0, 122.0])) == 0


def test_standing_alarms_are_those_active_over_24_hours_counting_to_the_periods_end() -> None:
    s = sensors({"id": "A"}, {"id": "B"}, {"id": "C"})
    a = alarms([("A", 0, 25 * 3600), ("B", 0, 23 * 3600), ("C", 3600, None)])
    result = fa.analyse(inputs(s, a, hours=26))
    assert [of(result, x)["standing"] for x in "ABC"] == [1, 0, 1]  # C: 25 h and counting
    assert of(result, "B")["total_duration_s"] == 23 * 3600


def test_the_isa_figures_per_console() -> None:
    # One hour: 12 alarms in the first 10 minutes (a flood), 3 in the second, none after.
    rows = [("S", i * 40, 30) for i in range(12)] + [("S", 600 + i * 100, 30) for i in range(3)]
    console = fa.analyse(inputs(sensors({"id": "S"}), alarms(rows), hours=1))["consoles"][0]
    assert console["periods"] == 6
    assert console["alarms"] == 15
    assert console["avg_per_10min"] == pytest.approx(15 / 6)
    assert console["peak_per_10min"] == 12
    assert console["flood_periods"] == 1
    assert console["flood_share"] == pytest.approx(1 / 6)
    assert console["over_2_share"] == pytest.approx(2 / 6)
    assert console["per_10min"] == [12, 3, 0, 0, 0, 0]
    assert console["per_day"] == pytest.approx(15 * 24)
    assert console["rating"] == "overloaded"  # 2.5 a 10 minutes, over ISA-18.2's 2


def test_tests_and_shelved_alarms_are_left_out_of_the_rates() -> None:
    a = alarms([("S", 0, 30), ("S", 100, 30), ("S", 200, 30)], outcome=["test", None, None])
    a.loc[2, "shelved"] = True
    result = fa.analyse(inputs(sensors({"id": "S"}), a, hours=1))
    assert result["totals"]["alarms"] == 3
    assert result["totals"]["counted"] == 1
    assert result["consoles"][0]["alarms"] == 1


def test_top_ten_bad_actors_and_their_share() -> None:
    ids = [f"S{i:02d}" for i in range(12)]
    rows = [(sid, 60.0 * (i * 20 + k), 30.0) for i, sid in enumerate(ids) for k in range(i + 1)]
    result = fa.analyse(inputs(sensors(*({"id": sid} for sid in ids)), alarms(rows), hours=5))
    top = result["bad_actors"]
    assert [b["sensor_id"] for b in top] == ids[::-1][:10]
    assert [b["count"] for b in top] == list(range(12, 2, -1))
    total = sum(range(1, 13))
    assert top[0]["share"] == pytest.approx(12 / total)
    assert result["top10_share"] == pytest.approx(sum(range(3, 13)) / total)


def plume_case(speed: float | None, from_deg: float) -> str:
    detector = {"id": "D", "lat": LAT0 + NORTH_100M}
    station = {"id": "W", "kind": "wind", "substance": None, "warning": np.nan}
    periods = NO_PERIODS if speed is None else wind([(0, speed, from_deg)])
    result = fa.alarm_verdicts(
        inputs(
            sensors(detector, station),
            alarms([("D", 60, 30)]),
            hours=1,
            periods=periods,
            sources={"cl2": [("Z-1", "Chlorine store", LON0, LAT0)]},
        )
    )
    return str(result.loc[0, "plume"])


def test_the_plume_check_needs_the_source_upwind() -> None:
    # The source is 100 m south of the detector: a south wind (from 180) carries it there.
    assert plume_case(3.0, 180.0) == "explained"
    assert plume_case(3.0, 180.0 + 29.0) == "explained"  # within the 30-degree half-width
    assert plume_case(3.0, 180.0 + 31.0) == "suspect"
    assert plume_case(1.5, 180.0 + 40.0) == "explained"  # light wind: 45 degrees
    assert plume_case(3.0, 0.0) == "suspect"  # a north wind blows it away from the detector
    assert plume_case(0.3, 0.0) == "explained"  # calm: 100 m every way
    assert plume_case(None, 0.0) == "no_wind"


def test_no_source_of_the_substance_on_the_site_makes_every_alarm_suspect() -> None:
    station = {"id": "W", "kind": "wind", "substance": None, "warning": np.nan}
    result = fa.analyse(
        inputs(
            sensors({"id": "D"}, station),
            alarms([("D", 60, 30)] * 5),
            hours=1,
            periods=wind([(0, 3.0, 180.0)]),
            sources={"nh3": [("Z-9", "Ammonia", LON0, LAT0)]},
        )
    )
    assert of(result, "D")["plume"] == {"checked": 5, "suspect": 5, "explained": 0}
    assert result["suspect"]["count"] == 5
    [relocate] = [r for r in result["recommendations"] if r["action"] == "relocate"]
    assert relocate["evidence"]["suspect_share"] == 1.0


def test_hot_work_nearby_and_its_lift() -> None:
    # Ten hours; a permit 20 m from S for hours 2-4; 4 alarms in it, 1 outside. S2 is 500 m
    # away: not near.
    east_20m = 20 / (111_320 * np.cos(np.radians(LAT0)))
    permit = pd.DataFrame(
        {
            "id": ["HW-1"],
            "kind": ["welding"],
            "geometry": [shapely.Point(LON0 + east_20m, LAT0)],
            "radius_m": [5.0],
            "from_s": [T0 + 2 * 3600.0],
            "to_s": [T0 + 4 * 3600.0],
        }
    )
    rows = [("S", 2 * 3600 + k * 900, 30) for k in range(4)] + [("S", 8 * 3600, 30)]
    rows += [("S2", 2 * 3600 + 100, 30)]
    s = sensors({"id": "S"}, {"id": "S2", "lat": LAT0 + 500 / 110_540})
    result = fa.analyse(inputs(s, alarms(rows), hours=10, permits=permit))
    hot = of(result, "S")["hot_work"]
    assert hot["alarms"] == 4 and hot["share"] == pytest.approx(0.8)
    assert hot["time_share"] == pytest.approx(0.2)
    assert hot["lift"] == pytest.approx((4 / 2) / (1 / 8))  # 16 times the rate without
    assert of(result, "S2")["hot_work"]["alarms"] == 0
    actions = {r["action"] for r in result["recommendations"] if r["sensor_id"] == "S"}
    assert "relocate" in actions


def periods_of(
    sensor: str, values: Sequence[tuple[float, float, float]], step: int = 600
) -> pd.DataFrame:
    """(low, mean, high) per period from T0."""
    return pd.DataFrame(
        {
            "sensor_id": [sensor] * len(values),
            "period_s": [T0 + i * step for i in range(len(values))],
            "n": [600] * len(values),
            "low": [v[0] for v in values],
            "mean": [v[1] for v in values],
            "high": [v[2] for v in values],
            "direction_deg": [np.nan] * len(values),
        }
    )


def test_drift_is_a_straight_daily_trend_of_a_quarter_of_the_warning_level() -> None:
    # Ten days, one period a day (enough for a daily mean): 0.1 ppm a day against a 0.5 ppm
    # warning: 0.9 over the days seen, 1.8 times the warning level.
    rising = periods_of("R", [(0.1 * d, 0.1 * d + 0.01, 0.1 * d + 0.02) for d in range(10)], 86400)
    steady = periods_of("F", [(0.0, 0.02 + 0.001 * (d % 2), 0.05) for d in range(10)], 86400)
    result = fa.analyse(
        inputs(
            sensors({"id": "R"}, {"id": "F"}),
            alarms([]),
            hours=240,
            periods=pd.concat([rising, steady], ignore_index=True),
        )
    )
    drift = of(result, "R")["drift"]
    assert drift["per_day"] == pytest.approx(0.1)
    assert drift["change"] == pytest.approx(0.9)
    assert drift["r2"] == pytest.approx(1.0)
    assert [r["action"] for r in of(result, "R")["recommendations"]] == ["recalibrate"]
    assert not any(r["sensor_id"] == "F" for r in result["sensors"])


def test_stuck_is_six_hours_flat_off_zero() -> None:
    moving = [(0.0, 0.02, 0.05)] * 6
    stuck = periods_of("S", moving + [(0.62, 0.62, 0.62)] * 42)  # 7 hours flat
    zero = periods_of("Z", [(0.0, 0.0, 0.0)] * 48)  # a zero-suppressed cell in clean air
    short = periods_of("H", moving + [(0.3, 0.3, 0.3)] * 30 + moving)  # 5 hours
    result = fa.analyse(
        inputs(
            sensors({"id": "S"}, {"id": "Z"}, {"id": "H"}),
            alarms([]),
            hours=8,
            periods=pd.concat([stuck, zero, short], ignore_index=True),
        )
    )
    assert of(result, "S")["stuck"]["hours"] == pytest.approx(7.0)
    assert of(result, "S")["stuck"]["value"] == 0.62
    assert {r["sensor_id"] for r in result["sensors"]} == {"S"}


def test_on_delay_and_deadband_for_a_detector_chattering_at_its_threshold() -> None:
    rows = [("S", 30.0 * k, 8.0) for k in range(6)]
    # (No wind reading: the plume check says nothing, so no relocation.)
    result = fa.analyse(
        inputs(sensors({"id": "S"}), alarms(rows, peak=[0.52] * 6), hours=1, sources=CL2_STORE)
    )
    actions = {r["action"]: r for r in result["recommendations"]}
    assert set(actions) == {"on_delay", "deadband"}
    assert actions["on_delay"]["evidence"]["suggested_on_delay_s"] == 10.0  # 8 s, to 5 s steps
    assert actions["deadband"]["evidence"]["median_peak_over_warning"] == pytest.approx(1.04)


def test_outcomes_per_sensor_and_per_area() -> None:
    s = sensors({"id": "A"}, {"id": "B", "zone_id": "Z-2", "zone_name": "Other"})
    a = alarms([("A", 0, 60), ("A", 600, 60), ("B", 900, 60)], outcome=["false", "real", None])
    result = fa.analyse(inputs(s, a, hours=1))
    assert of(result, "A")["outcomes"] == {
        "real": 1,
        "false": 1,
        "test": 0,
        "maintenance": 0,
        "unknown": 0,
    }
    areas = {x["area"]: x for x in result["areas"]}
    assert (areas["Z-1"]["count"], areas["Z-1"]["false"], areas["Z-1"]["real"]) == (2, 1, 1)
    assert areas["Z-2"]["count"] == 1
    assert result["daily"]["real"] == [1] and result["daily"]["unknown"] == [1]


def test_the_period_summaries_match_what_the_database_computes() -> None:
    p = periods_of("S", [(1.0, 2.0, 3.0), (2.0, 2.0, 2.0), (4.0, 5.0, 6.0)], 43200)
    daily, flat = fa.period_summaries(p, T0, T0 + 2 * 86400)
    assert daily.to_dict("records") == [
        {"sensor_id": "S", "day": 0, "mean": 2.0},
        {"sensor_id": "S", "day": 1, "mean": 5.0},
    ]
    assert flat.to_dict("records") == [{"sensor_id": "S", "period_s": T0 + 43200, "mean": 2.0}]


def test_a_site_without_sensors_or_alarms_analyses_to_nothing() -> None:
    empty = pd.DataFrame(columns=fa.SENSOR_COLUMNS)
    result = fa.analyse(inputs(empty, alarms([]), hours=24))
    assert result["totals"]["alarms"] == 0 and result["sensors"] == []
    assert result["consoles"][0]["avg_per_10min"] == 0.0 and result["top10_share"] == 0.0
    assert result["recommendations"] == [] and result["bad_actors"] == []
