"""What changed between two versions of a plan, as a reviewer reads it.

The diff is computed on the parsed plans, never on their text: a comment, a reordered key or
a different YAML style is no change; a step moved to another level is one change, not a removal
and an addition. Each change is one entry:

``{"kind", "change", "level", "id", "fields": [{"field", "from", "to"}], "text"}``

- ``kind``: ``plan`` (title, lead department, command role), ``scenario``, ``role``, ``level``
  (a response pack added or removed), ``step``, ``call_tree`` (whom to call: the contacts),
  ``material`` or ``script`` (external communication);
- ``change``: ``added``, ``removed`` or ``changed``; ``fields`` lists what changed, by path
  (``target.within_s``, ``contacts[Wang Lei].phone``), each with its old and new value.

Entries come in the order of the plan: the plan, its scenario and roles, then level by level
(L1 to L4) its steps (in the new version's order, then those removed), call tree, materials and
scripts. Steps and scripts are matched by id across levels; call-tree entries by role (by role
and order when a level calls one role twice); materials by kind (quantities of a kind listed
twice in a level add up). Order alone within a list is no change, except a call tree's
contacts, where the first is called first: their order is a field.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from plans.model import Level, PlanTemplate

Entry = dict[str, Any]

#: The plan-wide fields, in the order they are reported.
PLAN_FIELDS = ("title", "title_zh", "lead_departments", "command_role")


def plan_diff(old: PlanTemplate, new: PlanTemplate) -> list[Entry]:
    """Every change from ``old`` to ``new`` (empty when they are the same plan)."""
    # Compared as JSON data: each plan dumped once.
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    out: list[Entry] = []
    fields = _changed({k: a[k] for k in PLAN_FIELDS}, {k: b[k] for k in PLAN_FIELDS})
    if fields:
        out.append(_entry("plan", "changed", None, new.id, fields))
    fields = _changed(a["scenario"], b["scenario"])
    if fields:
        out.append(_entry("scenario", "changed", None, new.scenario.key, fields))
    out += _keyed("role", None, {r["id"]: r for r in a["roles"]}, {r["id"]: r for r in b["roles"]})
    old_steps, new_steps = _by_id(a, "steps"), _by_id(b, "steps")
    old_scripts, new_scripts = _by_id(a, "scripts"), _by_id(b, "scripts")
    for level in Level:
        before, after = a["levels"].get(level.value), b["levels"].get(level.value)
        if before is None and after is not None:
            out.append(_entry("level", "added", level, level.value, []))
        elif before is not None and after is None:
            out.append(_entry("level", "removed", level, level.value, []))
        before, after = before or {}, after or {}
        out += _moved("step", level, old_steps, new_steps, before, after)
        out += _keyed(
            "call_tree",
            level,
            _call_tree(before.get("call_tree", [])),
            _call_tree(after.get("call_tree", [])),
        )
        out += _keyed(
            "material",
            level,
            _materials(before.get("materials", [])),
            _materials(after.get("materials", [])),
        )
        out += _moved("script", level, old_scripts, new_scripts, before, after)
    return out


def diff_text(entries: Sequence[Entry]) -> str:
    """The entries as lines of text, one per change."""
    return "".join(f"{e['text']}\n" for e in entries)


# -- matching ----------------------------------------------------------------------------------


def _by_id(plan: Mapping[str, Any], part: str) -> dict[str, tuple[Level, dict[str, Any]]]:
    """A plan's steps or scripts by id, with the level that holds each."""
    return {
        item["id"]: (level, item)
        for level in Level
        for item in plan["levels"].get(level.value, {}).get(part, [])
    }


def _moved(
    kind: str,
    level: Level,
    old: Mapping[str, tuple[Level, dict[str, Any]]],
    new: Mapping[str, tuple[Level, dict[str, Any]]],
    before: Mapping[str, Any],
    after: Mapping[str, Any],
) -> list[Entry]:
    """Items matched by id across levels (steps, scripts): those now at ``level``, in their
    order, then those that were at ``level`` and are gone."""
    part = f"{kind}s"
    out = []
    for item in after.get(part, []):
        item_id = item["id"]
        if item_id not in old:
            out.append(_entry(kind, "added", level, item_id, [], item))
            continue
        was_level, was = old[item_id]
        fields = _changed(was, item)
        if was_level != level:
            fields.insert(0, {"field": "level", "from": was_level.value, "to": level.value})
        if fields:
            out.append(_entry(kind, "changed", level, item_id, fields, item))
    for item in before.get(part, []):
        if item["id"] not in new:
            out.append(_entry(kind, "removed", level, item["id"], [], item))
    return out


def _keyed(
    kind: str,
    level: Level | None,
    old: Mapping[str, dict[str, Any]],
    new: Mapping[str, dict[str, Any]],
) -> list[Entry]:
    """Items matched by key within one place: added and changed in the new order, then the
    removed ones."""
    out = []
    for key, item in new.items():
        if key not in old:
            out.append(_entry(kind, "added", level, key, [], item))
        else:
            fields = _changed(old[key], item)
            if fields:
                out.append(_entry(kind, "changed", level, key, fields, item))
    out += [_entry(kind, "removed", level, key, [], old[key]) for key in old if key not in new]
    return out


def _call_tree(entries: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Call-tree entries by role (role#order when the role is called twice): ``contacts`` is
    who is called in order, ``contacts[NAME]`` each one's phone and channel."""
    roles = Counter(e["role"] for e in entries)
    out = {}
    for e in entries:
        key = f"{e['role']}#{e['order']}" if roles[e["role"]] > 1 else e["role"]
        item: dict[str, Any] = {
            "order": e["order"],
            "acknowledge_within_s": e["acknowledge_within_s"],
            "contacts": [c["name"] for c in e["contacts"]],
        }
        for c in e["contacts"]:
            item[f"contacts[{c['name']}]"] = {"phone": c["phone"], "channel": c["channel"]}
        out[key] = item
    return out


def _materials(materials: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m in materials:
        out.setdefault(m["kind"], {"quantity": 0})["quantity"] += m["quantity"]
    return out


# -- fields ------------------------------------------------------------------------------------


def _changed(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
) -> list[dict[str, Any]]:
    """The fields that differ, by dotted path, each with its old and new value (None: absent).
    Mappings on both sides are compared field by field; lists and values whole."""
    out = []
    for key in [*new, *(k for k in old if k not in new)]:
        was, now, path = old.get(key), new.get(key), f"{prefix}{key}"
        if type(was) is dict and type(now) is dict:  # dumped models: plain dicts (fast check)
            out += _changed(was, now, f"{path}.")
        elif was != now:
            out.append({"field": path, "from": was, "to": now})
    return out


# -- words -------------------------------------------------------------------------------------

_NAMES = {
    "plan": "plan",
    "scenario": "scenario",
    "role": "role",
    "level": "level",
    "step": "step",
    "call_tree": "call tree",
    "material": "materials",
    "script": "script",
}


def _entry(
    kind: str,
    change: str,
    level: Level | None,
    item_id: str,
    fields: list[dict[str, Any]],
    item: Mapping[str, Any] | None = None,
) -> Entry:
    return {
        "kind": kind,
        "change": change,
        "level": level.value if level is not None else None,
        "id": item_id,
        "fields": fields,
        "text": _words(kind, change, level, item_id, fields, item or {}),
    }


def _words(
    kind: str,
    change: str,
    level: Level | None,
    item_id: str,
    fields: Sequence[Mapping[str, Any]],
    item: Mapping[str, Any],
) -> str:
    where = f"{level.value} " if level is not None and kind != "level" else ""
    if kind == "level":
        return f"level {item_id} {change}"
    what = f"{where}{_NAMES[kind]} {item_id}"
    if kind == "step" and item.get("title"):
        what += f" ({item['title']})"
    if change == "added":
        return f"{what} added{_summary(kind, item)}"
    if change == "removed":
        return f"{what} removed"
    parts = [f"{f['field']} {_show(f['from'])} -> {_show(f['to'])}" for f in fields]
    return f"{what} changed: " + "; ".join(parts)


def _summary(kind: str, item: Mapping[str, Any]) -> str:
    """A few words on an added item, so the line stands alone."""
    if kind == "step":
        target = item["target"]
        after = {"activation": "activation", "level": "its level"}.get(target["after"])
        return f": role {item['role']}, due {target['within_s']} s after {after or target['after']}"
    if kind == "material":
        return f": {item['quantity']}"
    if kind == "call_tree":
        return f": contacts {_show(item['contacts'])}"
    if kind == "script":
        return f": {item['audience']}, {item['language']}"
    return ""


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if (" " in value or not value) else value
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
