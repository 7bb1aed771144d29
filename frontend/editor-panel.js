// The editor's panel (editor.js's Editor methods, mixed into it): the buttons that draw new
// features, finding a feature by its id or name from the keyboard, and the chosen feature's form
// (its attributes from the layer's schema, editor-form.js; a point's position; a zone's hint),
// with what is unsaved, the server's last word on it, and the save, cancel and delete buttons.
import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { $, el } from "./dom.js";
import { buildField, fieldLabel } from "./editor-form.js";
import { t } from "./i18n.js";

// What each "new" button makes: the layer, the drawing, the attributes it starts with.
export const NEW = {
  zone: { layer: "zones", shape: "Polygon", props: {} },
  muster: { layer: "zones", shape: "Polygon", props: { kind: "muster_point" } },
  resource: { layer: "resources", shape: "Marker", props: {} },
  sensor: { layer: "sensors", shape: "Marker", props: {} },
};
const NEW_KEYS = { zone: "editor.new_zone", muster: "editor.new_muster", resource: "editor.new_resource", sensor: "editor.new_sensor" };
const HINT_KEYS = { zones: "editor.hint_zone", resources: "editor.hint_point", sensors: "editor.hint_point" };

export const panelMethods = {
  paint() {
    this.toggle.textContent = this.on ? t("editor.toggle_off") : t("editor.toggle_on");
    this.toggle.setAttribute("aria-pressed", String(this.on));
    this.element.hidden = !this.on && !this.message;
    this.element.replaceChildren(el("h2", { id: "editor-title" }, t("editor.title")));
    if (this.message) this.element.append(el("p", { class: "ed-message", role: "status" }, this.message));
    if (this.confirmLeave) {
      const stay = el("button", { type: "button" }, t("editor.stay"));
      const leave = el("button", { type: "button", class: "ed-danger" }, t("editor.discard_leave"));
      stay.addEventListener("click", () => {
        this.confirmLeave = 0;
        this.paint();
      });
      leave.addEventListener("click", () => {
        this.confirmLeave = 0;
        this.leaving = true;
        this.setOn(false);
      });
      this.element.append(el("div", { class: "ed-leave", role: "alertdialog", "aria-label": t("editor.unsaved_count", { count: this.confirmLeave }) },
        el("p", {}, t("editor.unsaved_count", { count: this.confirmLeave })), leave, stay));
    }
    if (!this.on || this.busy) return;
    this.element.append(el("p", { class: "hint" }, t("editor.how")));
    this.tools = el("div", { class: "ed-tools", role: "group", "aria-label": t("editor.add") });
    this.element.append(this.tools, this.findForm());
    this.featureBox = el("div", { class: "ed-feature" });
    this.element.append(this.featureBox);
    this.paintTools();
    this.paintForm();
  },

  // The panel's message alone (the rest, a form being typed in, left as it is).
  paintMessage() {
    let line = this.element.querySelector(".ed-message");
    if (!this.message) return line?.remove();
    if (!line) {
      line = el("p", { class: "ed-message", role: "status" });
      this.element.querySelector("#editor-title")?.after(line);
    }
    line.textContent = this.message;
  },

  paintTools() {
    if (!this.tools) return;
    this.tools.replaceChildren();
    for (const kind of Object.keys(NEW)) {
      const button = el("button", { type: "button", "data-new": kind, "aria-pressed": String(this.drawing === kind) }, t(NEW_KEYS[kind]));
      // A click from the keyboard (detail 0) places a point without the mouse.
      button.addEventListener("click", (event) => (this.drawing === kind ? this.stopDrawing() : this.startDrawing(kind, event.detail === 0)));
      this.tools.append(button);
    }
    if (this.drawing) {
      const stop = el("button", { type: "button", class: "ed-stop" }, t("editor.stop_drawing"));
      stop.addEventListener("click", () => this.stopDrawing());
      this.tools.append(el("p", { class: "ed-drawing", role: "status" }, t(NEW[this.drawing].shape === "Marker" ? "editor.drawing_point" : "editor.drawing_zone")), stop);
    }
  },

  // Choosing a feature by its id or name, from the keyboard.
  findForm() {
    const list = el("datalist", { id: "editor-features" });
    for (const draft of this.drafts.values()) if (draft.id) list.append(el("option", { value: draft.id }, this.describe(draft)));
    const input = el("input", { id: "editor-find", type: "text", autocomplete: "off" });
    input.setAttribute("list", list.id); // a read-only property: an attribute only
    const form = el("form", { class: "ed-find" },
      el("label", { htmlFor: "editor-find" }, t("editor.find")), input, list, el("button", { type: "submit" }, t("editor.find_open")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const wanted = input.value.trim().toLowerCase();
      const draft = [...this.drafts.values()].find((d) => d.id?.toLowerCase() === wanted)
        || [...this.drafts.values()].find((d) => String(d.props.name ?? "").toLowerCase().includes(wanted) && wanted);
      if (!draft) {
        input.setCustomValidity(t("editor.not_found"));
        input.reportValidity();
        return;
      }
      input.setCustomValidity("");
      this.map.fitBounds(draft.layer instanceof L.Marker ? L.latLngBounds([draft.layer.getLatLng()]) : draft.layer.getBounds(), { maxZoom: 18, animate: false });
      this.select(draft);
    });
    return form;
  },

  // The chosen feature's form, generated from its layer's schema.
  paintForm() {
    const box = this.featureBox;
    if (!box) return;
    const draft = this.selected;
    box.replaceChildren();
    this.fields = new Map();
    if (!draft) {
      box.append(el("p", { class: "quiet" }, t("editor.none_chosen")));
      return;
    }
    const schema = this.schemas[draft.layerName];
    const form = el("form", { class: "ed-form", noValidate: true, "data-feature": draft.key, "aria-labelledby": "ed-feature-title" });
    const title = draft.id && !draft.isNew
      ? t("editor.feature_title", { layer: t(`editor.layer.${draft.layerName}`), id: draft.id })
      : t("editor.new_title", { layer: t(`editor.layer.${draft.layerName}`) });
    form.append(el("h3", { id: "ed-feature-title" }, title));
    if (draft.base) {
      const p = draft.base.properties;
      form.append(el("p", { class: "ed-meta quiet" }, t("editor.meta", { version: p.version, actor: p.updated_by ?? "?", time: p.updated_at ? this.wall.at(p.updated_at) : "?" })));
    }
    this.stateLine = el("p", { class: "ed-state", role: "status" });
    form.append(this.stateLine);
    if (draft.notice) {
      const mirror = this.noticeFor(draft);
      mirror.setAttribute("role", draft.notice.kind === "refused" || draft.notice.kind === "conflict" ? "alert" : "status");
      form.append(mirror);
    }
    const errors = new Map();
    let geometryError = null;
    for (const e of draft.errors) {
      const name = String(e.field).replace(/^properties\./, "");
      if (name.startsWith("geometry")) geometryError = e.reason;
      else errors.set(name, errors.has(name) ? `${errors.get(name)}; ${e.reason}` : e.reason);
    }
    for (const [name, fieldSchema] of Object.entries(schema.fields)) {
      const field = buildField("ed", name, fieldSchema, schema.required.includes(name));
      field.write(draft.props[name]);
      field.setError(errors.get(name));
      field.input.addEventListener(field.input.type === "checkbox" || field.input.tagName === "SELECT" ? "change" : "input", () => {
        draft.props[name] = field.read();
        field.setError("");
        if (draft.notice?.kind === "merged" || draft.notice?.kind === "warnings") this.setNotice(draft, null);
        this.paintLayer(draft);
        this.paintFormState();
      });
      this.fields.set(name, field);
      form.append(field.row);
    }
    form.append(this.geometryPart(draft, geometryError));
    const save = el("button", { type: "submit", class: "ed-save" }, t("editor.save"));
    const revert = el("button", { type: "button", class: "ed-revert" }, draft.isNew && !draft.id ? t("editor.discard") : t("editor.revert"));
    revert.addEventListener("click", () => this.reload(draft));
    const buttons = el("div", { class: "ed-buttons" }, save, revert);
    if (!draft.isNew) {
      const remove = el("button", { type: "button", class: "ed-delete ed-danger" }, t("editor.delete"));
      remove.addEventListener("click", () => {
        this.confirmDelete = true;
        this.paintForm();
        this.featureBox.querySelector(".ed-confirm button")?.focus();
      });
      buttons.append(remove);
    }
    form.append(buttons);
    if (this.confirmDelete && !draft.isNew) {
      const yes = el("button", { type: "button", class: "ed-danger", "data-confirm": "delete" }, t("editor.delete_yes"));
      const no = el("button", { type: "button" }, t("editor.delete_no"));
      yes.addEventListener("click", () => {
        this.confirmDelete = false;
        this.remove(draft);
      });
      no.addEventListener("click", () => {
        this.confirmDelete = false;
        this.paintForm();
      });
      form.append(el("div", { class: "ed-confirm", role: "alertdialog", "aria-label": t("editor.delete_question", { id: draft.id }) },
        el("p", {}, t("editor.delete_question", { id: draft.id })), yes, no));
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save(draft);
    });
    box.append(form);
    this.paintFormState();
  },

  // A point's position as numbers (typed, it moves the point); a zone's corners are dragged.
  geometryPart(draft, reason) {
    const error = el("span", { class: "field-error", id: "ed-geometry-error" }, reason || "");
    if (!(draft.layer instanceof L.Marker)) {
      return el("div", { class: "ed-geometry" }, el("p", { class: "hint" }, t(HINT_KEYS[draft.layerName])), error);
    }
    const at = draft.layer.getLatLng();
    const coordinate = (name, value) => {
      const input = el("input", { id: `ed-${name}`, type: "number", step: "any", value: value.toFixed(7), "aria-describedby": error.id });
      if (reason) input.setAttribute("aria-invalid", "true");
      input.addEventListener("change", () => {
        const lon = Number($("ed-lon").value);
        const lat = Number($("ed-lat").value);
        if (!Number.isFinite(lon) || !Number.isFinite(lat)) return;
        draft.layer.setLatLng([lat, lon]);
        this.geometryChanged(draft);
      });
      return el("div", { class: "field ed-field" }, el("label", { htmlFor: input.id }, name === "lon" ? t("editor.lon") : t("editor.lat")), input);
    };
    return el("fieldset", { class: "ed-geometry" }, el("legend", {}, t("editor.position")),
      coordinate("lon", at.lng), coordinate("lat", at.lat), error, el("p", { class: "hint" }, t(HINT_KEYS[draft.layerName])));
  },

  // The line saying what is unsaved (without painting the form again: the planner is typing).
  paintFormState() {
    const draft = this.selected;
    if (!draft || !this.stateLine) return;
    const state = this.stateOf(draft);
    const changed = draft.changedFields().map((name) => fieldLabel(name, this.schemas[draft.layerName].fields[name]));
    if (draft.geometryDirty && !draft.isNew) changed.push(t("editor.geometry_changed"));
    let line;
    if (draft.saving) line = t("editor.saving");
    else if (state === "clean") line = draft.savedNote || t("editor.no_changes");
    else if (draft.isNew) line = t(`editor.state.${state}`);
    else line = `${t(`editor.state.${state}`)}: ${changed.join(", ") || "–"}`;
    this.stateLine.textContent = line;
    this.stateLine.dataset.state = draft.saving ? "saving" : state;
    const save = this.featureBox.querySelector(".ed-save");
    if (save) save.disabled = draft.saving;
    if (draft.layer instanceof L.Marker && document.activeElement?.id !== "ed-lon" && document.activeElement?.id !== "ed-lat") {
      const at = draft.layer.getLatLng();
      if ($("ed-lon")) $("ed-lon").value = at.lng.toFixed(7);
      if ($("ed-lat")) $("ed-lat").value = at.lat.toFixed(7);
    }
  },
};
