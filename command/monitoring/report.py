"""The false-alarm analysis as one printable HTML document: no script, no outside file, the
charts drawn as inline SVG, A4 print styles (``GET .../alarm-analysis/report.html``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

STYLE = """
body { font: 11pt/1.4 system-ui, sans-serif; color: #111; margin: 2em auto; max-width: 60em; }
h1 { font-size: 18pt; margin: 0 0 .2em; } h2 { font-size: 13pt; margin: 1.4em 0 .4em; }
table { border-collapse: collapse; width: 100%; margin: .4em 0; }
th, td { border-bottom: 1px solid #ccc; padding: .2em .4em; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1b5e20; } .bad { color: #b71c1c; font-weight: 600; }
.muted { color: #555; } .evidence { font-size: 9.5pt; color: #333; }
svg { display: block; margin: .4em 0; }
@page { size: A4; margin: 15mm; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; }
  tr { break-inside: avoid; } }
"""

ACTIONS = {
    "relocate": "Relocate",
    "recalibrate": "Recalibrate",
    "on_delay": "Add on-delay",
    "deadband": "Add deadband",
}


#: A recommendation's evidence in words (as the analysis page writes it): each figure's name
#: and how it is written: a count, a share as a percentage, seconds, a ratio, a time, a value.
EVIDENCE: dict[str, tuple[str, str]] = {
    "alarms": ("alarms", "n"),
    "during_hot_work": ("during hot work nearby", "n"),
    "share": ("share during hot work", "pct"),
    "hot_work_time_share": ("share of the time with hot work", "pct"),
    "rate_lift": ("alarm rate during hot work vs. without", "x"),
    "suspect_share": ("plume check: no source upwind", "pct"),
    "checked": ("alarms checked against the plume", "n"),
    "suspect": ("with no source upwind", "n"),
    "per_day": ("baseline change a day", "v"),
    "change": ("baseline change over the period", "v"),
    "share_of_warning": ("change as a share of the first tier", "pct"),
    "r2": ("fit of the trend (R²)", "v"),
    "baseline_first_day": ("baseline, first day", "v"),
    "baseline_last_day": ("baseline, last day", "v"),
    "hours": ("hours flat", "v"),
    "value": ("at", "v"),
    "from": ("from", "t"),
    "to": ("to", "t"),
    "standing_alarms": ("standing alarms", "n"),
    "chattering_episodes": ("chattering episodes (≥ 3 a minute)", "n"),
    "fleeting": ("alarms shorter than a minute", "n"),
    "median_duration_s": ("median duration", "s"),
    "suggested_on_delay_s": ("suggested on-delay", "s"),
    "median_peak_over_warning": ("median peak, times the first tier", "x"),
}


def _evidence(evidence: Mapping[str, Any]) -> str:
    parts = []
    for key, value in evidence.items():
        label, kind = EVIDENCE.get(key, (key, "v"))
        if value is None:
            shown = "—"
        elif kind == "n":
            shown = _n(int(value))
        elif kind == "pct":
            shown = f"{100 * float(value):.0f} %"
        elif kind == "s":
            shown = f"{float(value):,.0f} s"
        elif kind == "x":
            shown = f"\N{MULTIPLICATION SIGN} {float(value):.2f}"
        elif kind == "t":
            shown = escape(str(value)[:16].replace("T", " "))
        else:
            shown = _n(value, 3)
        parts.append(f"{escape(label)}: {shown}")
    return "; ".join(parts)


def _n(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return escape(str(value))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _bars(days: Sequence[str], series: Mapping[str, Sequence[int]]) -> str:
    """Alarms a day, stacked by outcome, as SVG."""
    colours = {
        "real": "#c62828",
        "false": "#546e7a",
        "test": "#8e24aa",
        "maintenance": "#f9a825",
        "unknown": "#90a4ae",
    }
    totals = [sum(series[k][i] for k in colours) for i in range(len(days))]
    top = max([*totals, 1])
    width, height, pad = 720, 160, 20
    step = (width - pad) / max(len(days), 1)
    parts = []
    for i in range(len(days)):
        y = float(height - pad)
        for key, colour in colours.items():
            h = (height - 2 * pad) * series[key][i] / top
            if h > 0:
                y -= h
                parts.append(
                    f'<rect x="{pad + i * step:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" '
                    f'height="{h:.1f}" fill="{colour}"><title>{escape(days[i])} {key}: '
                    f"{series[key][i]}</title></rect>"
                )
    legend = " ".join(f'<tspan fill="{c}">■</tspan> {k}' for k, c in colours.items())
    return (
        f'<svg width="{width}" height="{height + 20}" role="img" aria-label="Alarms a day">'
        f'<text x="{pad}" y="12" font-size="10">max {top} a day</text>{"".join(parts)}'
        f'<text x="{pad}" y="{height + 12}" font-size="10">{escape(days[0]) if days else ""} … '
        f"{escape(days[-1]) if days else ''}   {legend}</text></svg>"
    )


def report_html(result: Mapping[str, Any], *, site_name: str) -> str:
    console = result["consoles"][0]
    targets = result["targets"]
    totals = result["totals"]
    figures = [
        (
            "Alarms per 10 minutes (average)",
            _n(console["avg_per_10min"]),
            f"≤ {targets['avg_per_10min_acceptable']:g} very likely acceptable, "
            f"≤ {targets['avg_per_10min_manageable']:g} manageable",
            console["avg_per_10min"] <= targets["avg_per_10min_manageable"],
        ),
        (
            "Most alarms in any 10 minutes",
            _n(console["peak_per_10min"]),
            f"≤ {targets['peak_per_10min']}",
            console["peak_per_10min"] <= targets["peak_per_10min"],
        ),
        (
            "10-minute periods in flood (> 10 alarms)",
            f"{_pct(console['flood_share'])} ({console['flood_periods']})",
            f"< {_pct(targets['flood_share'])}",
            console["flood_share"] < targets["flood_share"],
        ),
        (
            "Share of the ten most frequent alarms",
            _pct(result["top10_share"]),
            f"≤ {_pct(targets['top10_share'])}",
            result["top10_share"] <= targets["top10_share"],
        ),
        (
            "Chattering episodes (≥ 3 alarms a minute)",
            _n(sum(s["chattering"] for s in result["sensors"])),
            "0",
            not any(s["chattering"] for s in result["sensors"]),
        ),
        (
            "Standing alarms (active > 24 h)",
            _n(sum(s["standing"] for s in result["sensors"])),
            f"< {targets['standing_per_day']} on any day",
            sum(s["standing"] for s in result["sensors"]) < targets["standing_per_day"],
        ),
    ]
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td class='n {'ok' if good else 'bad'}'>{value}</td>"
        f"<td class='muted'>{escape(target)}</td></tr>"
        for name, value, target, good in figures
    )
    bad = "".join(
        f"<tr><td>{i}</td><td>{escape(r['sensor_id'])}</td><td>{escape(r['name'])}</td>"
        f"<td>{escape(r['area'] or '—')}</td><td class='n'>{r['count']}</td>"
        f"<td class='n'>{_pct(r['share'])}</td></tr>"
        for i, r in enumerate(result["bad_actors"], 1)
    )
    areas = "".join(
        f"<tr><td>{escape(a['area'] or '—')}</td><td>{escape(a['name'] or '')}</td>"
        f"<td class='n'>{a['count']}</td><td class='n'>{_n(a['total_duration_s'] / 3600, 1)}</td>"
        f"<td class='n'>{a['chattering']}</td><td class='n'>{a['standing']}</td>"
        f"<td class='n'>{a['false']}</td><td class='n'>{a['real']}</td></tr>"
        for a in result["areas"]
        if a["count"] or a["standing"]
    )
    recs = "".join(
        f"<tr><td><b>{escape(ACTIONS.get(r['action'], r['action']))}</b></td>"
        f"<td>{escape(r['sensor_id'])}<br><span class='muted'>{escape(r['name'])}</span></td>"
        f"<td>{escape(r['why'])}<div class='evidence'>"
        + _evidence(r["evidence"])
        + "</div></td></tr>"
        for r in result["recommendations"]
    )
    suspects = result["suspect"]
    suspect_rows = "".join(
        f"<tr><td>{escape(s['at'][:19].replace('T', ' '))}</td><td>{escape(s['sensor_id'])}</td>"
        f"<td>{escape(str(s['substance']))}</td><td class='n'>{_n(s['wind_m_s'], 1)}</td>"
        f"<td class='n'>{_n(s['wind_from_deg'], 0)}</td><td>{escape(s['outcome'])}</td></tr>"
        for s in suspects["latest"][:20]
    )
    outcomes = ", ".join(f"{k} {v}" for k, v in totals["outcomes"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Alarm analysis: {escape(site_name)}</title><style>{STYLE}</style></head>
<body>
<h1>False-alarm analysis</h1>
<p>{escape(site_name)} ({escape(result["site_id"])}), {escape(result["from"][:16])} to
{escape(result["to"][:16])} UTC ({_n(result["hours"] / 24, 1)} days).
{totals["alarms"]} alarms ({totals["counted"]} counted; {totals["test_or_maintenance"]} test or
maintenance and {totals["shelved"]} shelved left out of the rates). Outcomes: {outcomes}.</p>

<h2>Alarm load per console (ISA-18.2, EEMUA 191)</h2>
<p class="muted">Console: {escape(console["console"])}; {_n(console["per_day"], 1)} alarms a
day, {_n(console["per_hour"], 2)} an hour. Rating: {escape(console["rating"])}.</p>
<table><tr><th>figure</th><th class="n">value</th><th>target</th></tr>{rows}</table>

<h2>Alarms a day, by outcome</h2>
{_bars(result["daily"]["days"], result["daily"])}

<h2>Recommendations</h2>
<table><tr><th>action</th><th>sensor</th><th>why, and the evidence</th></tr>
{recs or "<tr><td colspan=3>None.</td></tr>"}</table>

<h2>Top-10 bad actors</h2>
<table><tr><th>#</th><th>sensor</th><th>name</th><th>area</th><th class="n">alarms</th>
<th class="n">share</th></tr>{bad}</table>

<h2>Per area</h2>
<table><tr><th>area</th><th>name</th><th class="n">alarms</th><th class="n">hours in alarm</th>
<th class="n">chattering</th><th class="n">standing</th><th class="n">false</th>
<th class="n">real</th></tr>{areas}</table>

<h2>The plume check: suspect alarms</h2>
<p>{suspects["count"]} alarms had no possible source of their substance upwind given the wind
when they rose ({suspects["false_confirmed"]} of them were found false by whoever checked).
The latest:</p>
<table><tr><th>time (UTC)</th><th>sensor</th><th>substance</th><th class="n">wind m/s</th>
<th class="n">from °</th><th>outcome</th></tr>{suspect_rows}</table>
</body></html>
"""
