// What the server said about a planner's edit, shown on the feature (a popup anchored to it)
// and again in the editor's form: a refusal in the server's words (its `detail` and each field
// with its reason), a conflict (who changed what, and when, with "keep mine" and "take theirs"),
// a merge applied for the planner, topology warnings, and a change made underneath an edit.
// Server strings are set as text, never as markup.
import { el } from "./dom.js";
import { fieldLabel, valueText } from "./editor-form.js";
import { t } from "./i18n.js";

// The buttons each kind of notice offers (editor.js runs them by their `data-action`).
const ACTIONS = {
  refused: [["fix", "editor.fix"], ["revert", "editor.revert"]],
  conflict: [["keep-mine", "editor.keep_mine"], ["take-theirs", "editor.take_theirs"]],
  stale: [["keep-editing", "editor.keep_editing"], ["take-theirs", "editor.take_theirs"]],
  merged: [["dismiss", "editor.dismiss"]],
  warnings: [["dismiss", "editor.dismiss"]],
};

// The version now stored, from a 409's `conflict` (a number, or the feature itself).
export function currentVersion(conflict) {
  const current = conflict?.current;
  if (typeof current === "number") return current;
  if (current && typeof current === "object") return current.properties?.version ?? current.version ?? null;
  const versions = (conflict?.changes || []).map((c) => c.version).filter(Number.isInteger);
  return versions.length ? Math.max(...versions) : null;
}

// The fields one logged change touched: `fields` is {name: {before, after}} (or a list of names).
function changedFields(change) {
  const fields = change?.fields;
  if (Array.isArray(fields)) return fields.map((name) => [name, null]);
  return Object.entries(fields || {});
}

// "alice at 10:03 (version 3): name “A” → “B”; the geometry"
export function changeText(wall, change) {
  const parts = changedFields(change).map(([name, diff]) => (diff && typeof diff === "object"
    ? t("editor.field_change", { field: fieldLabel(name), before: valueText(diff.before), after: valueText(diff.after) })
    : fieldLabel(name)));
  if (change.geometry) parts.push(t("editor.geometry_changed"));
  const what = change.action === "delete" ? t("editor.was_deleted") : parts.join("; ") || t("editor.nothing_named");
  return t("editor.change", {
    actor: change.actor ?? "?",
    time: change.at ? wall.at(change.at) : "?",
    version: change.version ?? "?",
    what,
  });
}

// A merge's words (the `merged` member of the answer: {base, theirs: [{version, actor, at}],
// fields_theirs, fields_mine, version}): "merged with alice's change (version 3): name".
export function mergedText(merged, header) {
  const theirs = Array.isArray(merged?.theirs) ? merged.theirs : [];
  if (!theirs.length) return header || t("editor.merged_plain");
  const actors = [...new Set(theirs.map((c) => c.actor).filter(Boolean))].join(", ") || "?";
  const version = Math.max(...theirs.map((c) => c.version).filter(Number.isInteger), 0) || "?";
  return t("editor.merged", { actor: actors, version, fields: fieldNames(merged.fields_theirs) });
}

export function fieldNames(names) {
  const shown = (names || []).map((name) => (name === "geometry" ? t("editor.geometry_changed") : fieldLabel(name)));
  return shown.join(", ") || t("editor.nothing_named");
}

function warningText(warning) {
  if (typeof warning === "string") return warning;
  return warning?.detail || warning?.message || warning?.reason || JSON.stringify(warning);
}

// The notice as a node: a title, the server's words, what changed, and the buttons.
export function noticeNode(wall, draft) {
  const notice = draft.notice;
  const box = el("div", { class: `rp-edit-notice rp-notice-${notice.kind}`, "data-kind": notice.kind, "data-feature": draft.key });
  const list = (items) => el("ul", {}, ...items.map((item) => el("li", {}, item)));
  switch (notice.kind) {
    case "refused":
      box.append(el("strong", {}, notice.status ? t("editor.refused", { status: notice.status }) : t("editor.not_sent")));
      box.append(el("p", { class: "rp-notice-detail" }, notice.detail));
      if (notice.errors?.length) box.append(list(notice.errors.map((e) => `${e.field}: ${e.reason}`)));
      box.append(el("p", { class: "quiet" }, t("editor.still_unsaved")));
      break;
    case "conflict": {
      const conflict = notice.conflict || {};
      box.append(el("strong", {}, t("editor.conflict_title", { status: notice.status })));
      const changes = conflict.changes || [];
      if (changes.length) box.append(list(changes.map((c) => changeText(wall, c))));
      if (conflict.conflicting?.length) box.append(el("p", { class: "rp-notice-both" }, t("editor.both_changed", { fields: fieldNames(conflict.conflicting) })));
      box.append(el("p", { class: "quiet" }, t("editor.choose_side", { yours: conflict.yours ?? draft.version ?? "?", current: currentVersion(conflict) ?? "?" })));
      // The server's own account, in full, under the summary.
      box.append(el("p", { class: "rp-notice-said" }, notice.detail));
      break;
    }
    case "stale":
      box.append(el("strong", {}, t("editor.stale_title")));
      box.append(el("p", {}, changeText(wall, notice.change)));
      box.append(el("p", { class: "quiet" }, t("editor.stale_yours", { version: draft.version ?? "?" })));
      break;
    case "merged":
      box.append(el("strong", {}, mergedText(notice.merged, notice.header)));
      if (notice.merged?.fields_mine) box.append(el("p", {}, t("editor.merged_yours", { fields: fieldNames(notice.merged.fields_mine), version: notice.merged.version ?? "?" })));
      if (notice.warnings?.length) box.append(list(notice.warnings.map(warningText)));
      break;
    case "warnings":
      box.append(el("strong", {}, t("editor.warnings_title")));
      box.append(list(notice.warnings.map(warningText)));
      break;
    default:
      break;
  }
  if (notice.kind !== "merged" && notice.kind !== "warnings" && notice.warnings?.length) {
    box.append(el("p", { class: "rp-notice-warnings" }, notice.warnings.map(warningText).join(" ")));
  }
  const buttons = el("div", { class: "rp-notice-actions" });
  for (const [action, key] of ACTIONS[notice.kind] || []) {
    buttons.append(el("button", { type: "button", "data-action": action }, t(key)));
  }
  box.append(buttons);
  return box;
}
