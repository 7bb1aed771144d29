"""The after-action review as one printable HTML document: nothing loaded from elsewhere.

Sites have no internet, so everything is inside the file: the styles, each situation map as a
PNG (``data:`` URI, for print) and as the interactive folium page (an ``<iframe srcdoc>``, on
screen only, Leaflet inlined). It reads in the order of an after-action report: what happened,
the improvement plan (largest deviations first), then the detail: steps, expected actions,
muster, call-out, injects, notes, holds, maps and the whole timeline.

Times are shown in the site's time zone. Chinese text (plan and role names) needs a CJK font on
the machine that shows or prints the document: the styles ask for Noto Sans CJK SC, Source Han
Sans SC, WenQuanYi Micro Hei, Microsoft YaHei or PingFang SC, whichever is installed.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from command.review_maps import MapFrame, map_html, map_png

FONT_NOTE = (
    "Chinese text needs a CJK font on the machine that shows or prints this document: Noto Sans "
    "CJK SC (Debian and Ubuntu: fonts-noto-cjk), Source Han Sans SC, WenQuanYi Micro Hei "
    "(fonts-wqy-microhei), Microsoft YaHei or PingFang SC."
)

_CSS = (
    "body{font-family:'Noto Sans','DejaVu Sans','Noto Sans CJK SC','Source Han Sans SC',"
    "'WenQuanYi Micro Hei','Microsoft YaHei','PingFang SC',sans-serif;margin:1.5cm;color:#000;"
    "font-size:10.5pt}h1{font-size:1.6em;margin:0 0 .3em}h2{border-bottom:2px solid #000;"
    "margin-top:1.4em}table{border-collapse:collapse;width:100%;margin:.4em 0}"
    "th,td{border:1px solid #444;padding:.2em .35em;text-align:left;vertical-align:top}"
    "th{background:#eee}td.n{text-align:right;white-space:nowrap}.late{color:#b71c1c;"
    "font-weight:bold}.meta{margin:.2em 0}.state{display:inline-block;padding:.1em .5em;"
    "border:2px solid #000;font-weight:bold}.overdue{border-color:#b71c1c;color:#b71c1c}"
    "figure{margin:1em 0;page-break-inside:avoid}figure img{max-width:100%}"
    "iframe{width:100%;height:32em;border:1px solid #444}.print-only{display:none}"
    ".small{font-size:.85em;color:#333}"
    "@media print{body{margin:1cm}.screen-only{display:none}.print-only{display:block}"
    "h2{page-break-after:avoid}tr{page-break-inside:avoid}}"
)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _seconds(value: Any, *, signed: bool = False) -> str:
    """A duration as people read it: "+2 min 05 s", "45 s"."""
    if not isinstance(value, int | float):
        return ""
    sign = ("+" if value > 0 else "-" if value < 0 else "±") if signed else ""
    rest = abs(value)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        text = f"{int(hours)} h {int(minutes):02d} min"
    elif minutes:
        text = f"{int(minutes)} min {int(seconds):02d} s"
    else:
        text = f"{seconds:.0f} s" if seconds == int(seconds) else f"{seconds:.1f} s"
    return sign + text


class _Times:
    """ISO times (UTC) shown in the site's time zone."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            return ""
        local = datetime.fromisoformat(value).astimezone(self.zone)
        return local.isoformat(sep=" ", timespec="seconds")[:19]


def _table(
    head: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[int] = ()
) -> str:
    if not rows:
        return '<p class="meta">None.</p>\n'
    top = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = cell.text if isinstance(cell, _Raw) else _e(cell)
            cls = ' class="n"' if i in numeric else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{top}</tr></thead><tbody>{''.join(body)}</tbody></table>\n"


class _Raw:
    """Cell content already HTML."""

    def __init__(self, text: str) -> None:
        self.text = text


def _deviation(value: Any) -> _Raw:
    text = _e(_seconds(value, signed=True))
    late = isinstance(value, int | float) and value > 0
    return _Raw(f'<span class="late">{text}</span>' if late else text)


def _both(en: Any, zh: Any) -> str:
    return f"{en} / {zh}" if zh else str(en or "")


def review_html(
    review: Mapping[str, Any],
    frame: MapFrame | None,
    *,
    timezone: str = "UTC",
    interactive: bool = True,
    png: Callable[[Mapping[str, Any], MapFrame], bytes] = map_png,
) -> str:
    """The review (as :func:`command.reviews.served` gives it) as a self-contained document.
    Without ``frame`` the maps are left out; ``interactive`` adds each map's folium page for
    the screen beside its PNG for print."""
    at = _Times(timezone)
    incident, drill, meta = review["incident"], review.get("drill"), review["review"]
    if drill:
        named = _both(drill.get("title") or drill["drill_id"], drill.get("title_zh"))
        title = f"After-action review: drill {named}"
    else:
        plan = _both(
            incident.get("plan_title") or incident["plan_id"], incident.get("plan_title_zh")
        )
        title = f"After-action review: {plan}"
    state = "Signed off" if meta["state"] == "signed_off" else "Draft"
    if meta["overdue"]:
        state = '<span class="state overdue">Draft, overdue</span>'
    else:
        state = f'<span class="state">{state}</span>'
    parts = [
        f"<h1>{_e(title)}</h1>\n",
        f'<p class="meta">{state}</p>\n',
        _summary(review, at),
        "<h2>Improvement plan (largest deviations first)</h2>\n",
        _improvement(review["improvement_plan"], at),
        "<h2>Plan steps</h2>\n",
        _steps(review["steps"], at, bool(drill)),
    ]
    if drill:
        parts += ["<h2>Expected actions</h2>\n", _actions(review["actions"], at)]
    parts += [
        "<h2>Muster</h2>\n",
        _muster(review["muster"], at),
        "<h2>Call-out</h2>\n",
        _callout(review["callout"], at),
    ]
    if drill:
        parts += [
            "<h2>Injects</h2>\n",
            _injects(review["injects"], at),
            "<h2>Holds and suspensions</h2>\n",
            _interruptions(review["interruptions"], at),
        ]
    parts += ["<h2>Notes</h2>\n", _notes(review["notes"], at)]
    if frame is not None:
        parts += ["<h2>Situation maps</h2>\n", _maps(review["maps"], frame, at, interactive, png)]
    parts += ["<h2>Timeline</h2>\n", _timeline(review["timeline"], at, bool(drill))]
    source = review["source"]
    parts.append(
        f'<p class="small">Generated {_e(at(meta["generated_at"]))} from events '
        f"{source['first_seq']} to {source['last_seq']} ({source['events']} events) of the site "
        f"log, whose hash at event {source['last_seq']} is {_e(source['last_hash'])}. Times "
        f"are {_e(timezone)}. {_e(FONT_NOTE)}</p>\n"
    )
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "".join(parts)
        + "</body>\n</html>\n"
    )


def _summary(review: Mapping[str, Any], at: _Times) -> str:
    incident, drill, meta = review["incident"], review.get("drill"), review["review"]
    rows: list[tuple[str, object]] = [
        ("Site / incident", f"{review['site_id']} / {review['incident_id']}"),
        ("Plan", f"{incident['plan_id']} (version {incident.get('plan_version')})"),
        ("Activated", f"{at(incident['activated_at'])} by {incident['activated_by']}"),
        ("Level", f"{incident['level']} (highest {incident['highest_level']})"),
        ("Ended", at(review["ended_at"])),
        ("Duration", _seconds(review["duration_s"])),
    ]
    if incident.get("stood_down_at"):
        forced = " (forced)" if incident.get("forced") else ""
        rows.append(
            (
                "Stood down",
                f"{at(incident['stood_down_at'])} by {incident['stood_down_by']}{forced}: "
                f"{incident.get('reason') or ''}",
            )
        )
    if drill:
        rows += [
            (
                "Drill",
                f"{drill['drill_id']}: scenario {drill.get('scenario_id')} "
                f"v{drill.get('scenario_version')}, {drill.get('mode')}",
            ),
            (
                "Drill started / ended",
                f"{at(drill.get('started_at'))} / {at(drill.get('ended_at'))}"
                + (" (aborted)" if drill.get("aborted") else ""),
            ),
            (
                "Drill time / held or suspended",
                f"{_seconds(drill.get('drill_s'))} / {_seconds(drill.get('paused_s'))}",
            ),
        ]
    rows += [
        ("Review", f"version {meta['version']}, due {at(meta['due_at'])}"),
    ]
    if meta["signed_off_at"]:
        rows.append(
            (
                "Signed off",
                f"{at(meta['signed_off_at'])} by {meta['signed_off_by']}; SHA-256 {meta['hash']}",
            )
        )
    return _table(["", ""], rows)


def _improvement(plan: Sequence[Mapping[str, Any]], at: _Times) -> str:
    rows = []
    for item in plan:
        action = item["corrective_action"]
        if item["kind"] == "action":  # expected actions are timed in drill time
            target = f"drill time {_seconds(item.get('target_s'))}"
            actual = f"drill time {_seconds(item['actual_s'])}" if item.get("actual_s") else ""
        else:
            target, actual = at(item.get("target_at")), at(item.get("actual_at"))
        late = item.get("deviation_s")
        if late is None and item.get("lateness_s") is not None:
            past = _e(_seconds(item["lateness_s"], signed=True))
            late_cell = _Raw(f'<span class="late">not done ({past} past due)</span>')
        else:
            late_cell = _deviation(late)
        rows.append(
            [
                item.get("rank") or "",
                f"{item['kind']}: {item.get('title') or item['id']}",
                item["status"],
                target,
                actual or "—",
                late_cell,
                item.get("by") or "",
                item.get("cause") or "",
                action.get("action") or "",
                action.get("owner") or "",
                action.get("due") or "",
            ]
        )
    head = [
        "#",
        "Item",
        "Status",
        "Target",
        "Actual",
        "Deviation",
        "By",
        "Cause",
        "Corrective action",
        "Owner",
        "Due",
    ]
    return _table(head, rows, numeric=(0,))


def _steps(steps: Sequence[Mapping[str, Any]], at: _Times, drill: bool) -> str:
    rows = [
        [
            s["level"],
            _both(f"{s['step_id']}: {s['title']}", s.get("title_zh")),
            s["role"],
            s["status"] + (" (overdue)" if s["overdue"] else ""),
            at(s["target_at"])
            + (
                f" [{_seconds(s['target_drill_s'])}]"
                if drill and s.get("target_drill_s") is not None
                else ""
            ),
            at(s["actual_at"])
            + (
                f" [{_seconds(s['actual_drill_s'])}]"
                if drill and s.get("actual_drill_s") is not None
                else ""
            )
            + _offline(
                s.get("actual_at"),
                s.get("actual_received_at"),
                s.get("actual_offline_s"),
                at,
                s.get("acted_at_clamped"),
            ),
            _deviation(s["deviation_s"]),
            s.get("by") or "",
        ]
        for s in steps
    ]
    head = ["Level", "Step", "Role", "Status", "Target", "Actual", "Deviation", "By"]
    note = '<p class="small">[drill time] in brackets.</p>\n' if drill else ""
    return _table(head, rows) + note


def _actions(actions: Sequence[Mapping[str, Any]], at: _Times) -> str:
    rows = [
        [
            a.get("title") or a["expected_id"],
            _seconds(a.get("target_s")),
            _seconds(a.get("deadline_s")),
            _seconds(a.get("actual_s")) or "—",
            _deviation(a.get("deviation_s")),
            a["status"],
            a.get("by") or "",
            ", ".join(map(str, a.get("contingencies", []))),
        ]
        for a in actions
    ]
    head = [
        "Expected action",
        "Target",
        "Deadline",
        "Actual",
        "Deviation",
        "Status",
        "By",
        "Contingencies fired",
    ]
    return _table(head, rows) + '<p class="small">Drill time.</p>\n'


def _muster(muster: Mapping[str, Any], at: _Times) -> str:
    rows: list[tuple[str, object]] = [
        (
            "Had to move",
            muster.get("to_move") if muster.get("to_move") is not None else "not known",
        ),
        (
            "Full muster",
            (
                f"{at(muster['complete_at'])} ({_seconds(muster['complete_s'])} after "
                f"activation), reported by {muster.get('complete_by')}"
            )
            if muster.get("complete_at")
            else muster["verdict"],
        ),
        (
            "Threat zones clear of people",
            (f"{at(muster['zones_clear_at'])} ({_seconds(muster['zones_clear_s'])})")
            if muster.get("zones_clear_at")
            else "not by the end",
        ),
        ("Missing at the stand-down", ", ".join(muster.get("missing_at_close") or []) or "none"),
    ]
    reports = _table(
        ["Headcount reported", "Step", "Value", "By"],
        [[at(r["at"]), r["step_id"], r["value"], r.get("by") or ""] for r in muster["reports"]],
    )
    return _table(["", ""], rows) + reports


def _callout(callout: Mapping[str, Any], at: _Times) -> str:
    rows = [
        [
            r.get("level") or "",
            _both(r.get("role_name") or r["role"], r.get("role_name_zh")),
            at(r["requested_at"]),
            _seconds(r.get("first_delivery_s")) or "—",
            at(r.get("acknowledged_at")) or "—",
            _seconds(r.get("acknowledged_s")),
            _deviation(r.get("deviation_s")),
            r["status"],
            r["contacts_called"],
            r.get("acknowledged_by") or "",
        ]
        for r in callout["roles"]
    ]
    head = [
        "Level",
        "Role",
        "Called",
        "Delivered after",
        "Acknowledged",
        "After",
        "Deviation",
        "Status",
        "Contacts called",
        "Answered by",
    ]
    return _table(head, rows)


def _injects(injects: Sequence[Mapping[str, Any]], at: _Times) -> str:
    rows = [
        [
            _seconds(i.get("at_s")),
            _seconds(i.get("planned_s")) if i.get("planned_s") is not None else "contingency",
            i.get("inject_id"),
            i.get("kind"),
            i.get("title"),
            (f"contingency for {i['contingency_for']}" if i.get("contingency_for") else "")
            + (" fired early" if i.get("early") else ""),
        ]
        for i in injects
    ]
    return _table(["Fired", "Planned", "Inject", "Kind", "Title", ""], rows)


def _interruptions(found: Sequence[Mapping[str, Any]], at: _Times) -> str:
    rows = [
        [
            i["kind"],
            at(i["from_at"]),
            at(i.get("to_at")) or "not resumed",
            _seconds(i.get("duration_s")),
            i.get("reason") or "",
            i.get("by_incident") or i.get("by_sensor") or "",
        ]
        for i in found
    ]
    return _table(["", "From", "To", "For", "Reason", "By incident / sensor"], rows)


def _offline(acted: Any, received: Any, gap: Any, at: _Times, clamped: Any = False) -> str:
    """ " (acted 10:02:11, received 10:09:40, 7 min 29 s offline)" for an action a phone sent
    later; nothing otherwise. ``clamped``: the phone's own time was impossible (its clock was
    wrong), and the time shown is the bound the review used instead."""
    if not isinstance(gap, int | float) or not acted or not received:
        return ""
    wrong = "; the phone's clock was wrong: bounded" if clamped else ""
    return (
        f" (acted {at(acted)[11:]}, received {at(received)[11:]}, {_seconds(gap)} offline{wrong})"
    )


def _notes(notes: Sequence[Mapping[str, Any]], at: _Times) -> str:
    rows = [
        [
            (at(n["acted_at"]) if n.get("acted_at") else at(n["at"]))
            + _offline(
                n.get("acted_at"), n["at"], n.get("offline_s"), at, n.get("acted_at_clamped")
            ),
            n["kind"],
            n.get("by") or "",
            n.get("step_id") or "",
            (n.get("text") or "")
            + (f" [photo {n['photo']['sha256'][:12]}]" if n.get("photo") else ""),
        ]
        for n in notes
    ]
    return _table(["At", "Kind", "By", "Step", "Text"], rows)


def _maps(
    maps: Sequence[Mapping[str, Any]],
    frame: MapFrame,
    at: _Times,
    interactive: bool,
    png: Callable[[Mapping[str, Any], MapFrame], bytes],
) -> str:
    out = []
    for entry in maps:
        caption = f"{entry['title']}, {at(entry['at'])} (event {entry['seq']})"
        if entry.get("threat") is None:
            out.append(
                f"<figure><figcaption>{_e(caption)}: not drawn ({_e(entry.get('error'))})"
                "</figcaption></figure>\n"
            )
            continue
        image = base64.b64encode(png(entry, frame)).decode()
        page = ""
        if interactive:
            page = (
                '<iframe class="screen-only" sandbox="allow-scripts" title="'
                f'{_e(caption)}" srcdoc="{html.escape(map_html(entry, frame), quote=True)}">'
                "</iframe>\n"
            )
        img_class = ' class="print-only"' if interactive else ""
        out.append(
            f'<figure>\n{page}<img{img_class} alt="{_e(caption)}" '
            f'src="data:image/png;base64,{image}">\n<figcaption>{_e(caption)}</figcaption>\n'
            "</figure>\n"
        )
    return "".join(out)


def _timeline(timeline: Sequence[Mapping[str, Any]], at: _Times, drill: bool) -> str:
    rows = [
        [
            e["seq"],
            at(e["at"])
            + _offline(
                e.get("acted_at"), e["at"], e.get("offline_s"), at, e.get("acted_at_clamped")
            ),
            *([_seconds(e.get("drill_s"))] if drill else []),
            e["actor"],
            e["type"],
            e["what"],
        ]
        for e in timeline
    ]
    head = ["Event", "At", *(["Drill time"] if drill else []), "Actor", "Type", "What"]
    return _table(head, rows, numeric=(0,))
