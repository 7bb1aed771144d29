"""A plan as a printable document for the control-room wall: Markdown, or HTML with its own
print styles (nothing loaded from elsewhere: sites have no internet).

The document reads in the order a duty manager needs it: the scenario and lead department, then
level by level (L1 to L4) the call tree, the steps with their due times and roles, the materials
and the communication scripts.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from plans.model import LEVEL_NAMES, Level, PlanTemplate
from plans.validation import due_offsets


def _duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min" + (f" {seconds % 60} s" if seconds % 60 else "")
    return f"{seconds // 3600} h" + (f" {seconds % 3600 // 60} min" if seconds % 3600 else "")


def _both(en: str, zh: str | None) -> str:
    return f"{en} / {zh}" if zh else en


def plan_markdown(template: PlanTemplate, *, version: int | None = None) -> str:
    return _render(template, version, _Markdown())


def plan_html(template: PlanTemplate, *, version: int | None = None) -> str:
    title = html.escape(_both(template.title, template.title_zh))
    body = _render(template, version, _Html())
    return (
        '<!doctype html>\n<html lang="zh-Hans">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


_CSS = (
    "body{font-family:sans-serif;margin:1.5cm;color:#000}"
    "h1{font-size:1.6em;margin:0 0 .3em}h2{page-break-before:auto;border-bottom:2px solid #000;"
    "margin-top:1.2em}table{border-collapse:collapse;width:100%;margin:.4em 0}"
    "th,td{border:1px solid #444;padding:.25em .4em;text-align:left;vertical-align:top}"
    "th{background:#eee}.meta{margin:.2em 0}"
    "@media print{body{margin:1cm}h2{page-break-inside:avoid}tr{page-break-inside:avoid}}"
)

Rows = Sequence[Sequence[object]]


class _Markdown:
    def heading(self, depth: int, text: str) -> str:
        return f"{'#' * depth} {text}\n\n"

    def para(self, text: str) -> str:
        return f"{text}\n\n"

    def table(self, rows: Rows) -> str:
        cells = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + " --- |" * len(cells[0])]
        lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
        return "\n".join(lines) + "\n\n"


class _Html:
    def heading(self, depth: int, text: str) -> str:
        return f"<h{depth}>{html.escape(text)}</h{depth}>\n"

    def para(self, text: str) -> str:
        return f'<p class="meta">{html.escape(text)}</p>\n'

    def table(self, rows: Rows) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
            for r in rows[1:]
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"


def _render(template: PlanTemplate, version: int | None, out_: _Markdown | _Html) -> str:
    t = template
    roles = {r.id: _both(r.name, r.name_zh) for r in t.roles}
    due = due_offsets(t)
    out = [out_.heading(1, _both(t.title, t.title_zh))]
    scenario = t.scenario
    facts = [
        f"Plan {t.id}" + (f", version {version}" if version is not None else ""),
        f"Scenario: {scenario.key} ({scenario.hazard.value})",
        f"Lead department: {', '.join(t.lead_departments)}",
        f"Commanded by: {roles.get(t.command_role, t.command_role)}",
    ]
    if scenario.substances:
        facts.append(f"Substances: {', '.join(scenario.substances)}")
    if scenario.triggers:
        facts.append(
            "Triggers: "
            + "; ".join(
                f"{tr.sensor_kind} {tr.tier}" + (f" ({tr.substance})" if tr.substance else "")
                for tr in scenario.triggers
            )
        )
    out += [out_.para(fact) for fact in facts]
    for level in Level:
        pack = t.levels.get(level)
        if pack is None:
            continue
        en, zh = LEVEL_NAMES[level]
        out.append(out_.heading(2, f"{level.value}: {en} / {zh}"))
        if pack.call_tree:
            out.append(out_.heading(3, "Call tree / 通知顺序"))
            rows: list[list[object]] = [
                ["#", "Role", "Contacts (first, then fallbacks)", "Answer within"]
            ]
            for entry in sorted(pack.call_tree, key=lambda e: e.order):
                contacts = "; ".join(
                    c.name + (f" {c.phone}" if c.phone else "") + f" ({c.channel})"
                    for c in entry.contacts
                )
                rows.append(
                    [
                        entry.order,
                        roles.get(entry.role, entry.role),
                        contacts,
                        _duration(entry.acknowledge_within_s),
                    ]
                )
            out.append(out_.table(rows))
        if pack.steps:
            out.append(out_.heading(3, "Steps / 处置步骤"))
            rows = [["Step", "Role", "Due", "Depends on", "Done when", "Optional"]]
            for step in pack.steps:
                after = {"level": "its level"}.get(step.target.after, step.target.after)
                when = f"{_duration(step.target.within_s)} after {after}"
                done = step.done_when.kind + (
                    f": {step.done_when.name}" if step.done_when.name else ""
                )
                rows.append(
                    [
                        _both(step.title, step.title_zh),
                        roles.get(step.role, step.role),
                        f"{when} (at {_duration(due[step.id])} if all run on time)",
                        ", ".join(step.depends_on) or "-",
                        done,
                        "yes" if step.optional else "",
                    ]
                )
            out.append(out_.table(rows))
        if pack.materials:
            out.append(out_.heading(3, "Materials / 物资"))
            out.append(
                out_.table([["Kind", "Quantity"], *([m.kind, m.quantity] for m in pack.materials)])
            )
        if pack.scripts:
            out.append(out_.heading(3, "Communication scripts / 对外沟通"))
            out.append(
                out_.table(
                    [
                        ["Audience", "Language", "Text"],
                        *([s.audience, s.language, s.text] for s in pack.scripts),
                    ],
                )
            )
    return "".join(out)
