// The planner's editor on the wall, only for a user who holds the planner role at the site
// (nothing of it is in the page otherwise, and the server refuses everyone else anyway). An
// "Edit layers" toggle in the header; outside edit mode the wall is as it always is, and nobody
// gets a handle on anything. In edit mode the site's zones (muster points among them),
// resources and sensors are drawn as editable features: a click chooses one and opens its
// attribute form (editor-form.js, from the layer's schema), a zone's corners can be dragged
// (Leaflet-Geoman, served from this server's npm install), points are dragged, new zones, muster
// points, resources and sensors are drawn or placed, and a feature can be deleted.
//
// Every save goes through the layers API with the version the planner started from: POST
// .../layers/{layer}, PATCH .../features/{id} (the changed attributes, the geometry if moved,
// `properties.version`), DELETE .../features/{id}?version=. What the server says is shown on the
// feature (editor-notices.js): a refusal in its words, the feature staying as edited, marked,
// until fixed or cancelled; a conflict with who changed what and "keep mine" / "take theirs";
// a merge it applied; topology warnings. A `layer.changed` event (site-layers.js) updates the
// features not being edited and tells the planner when one being edited changed underneath.
import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { api, apiResponse, HttpError, problemText } from "./api.js";
import { $, el, text } from "./dom.js";
import { currentVersion, noticeNode } from "./editor-notices.js";
import { NEW, panelMethods } from "./editor-panel.js";
import { isChinese, t } from "./i18n.js";

const GEOMAN = "/vendor/geoman/dist/leaflet-geoman.js";
const GEOMAN_CSS = "/vendor/geoman/dist/leaflet-geoman.css";
const EDITABLE = ["zones", "resources", "sensors"];
const RISK_COLOURS = { red: "#d73027", orange: "#fc8d59", yellow: "#fee08b", blue: "#4575b4" };
const SAVED_NOTE_MS = 6000;

// Leaflet-Geoman is a classic script that extends the global `L`; the wall imports Leaflet as a
// module. It gets a plain object of the same classes, so what it adds to them (the `pm` of a
// layer) the wall's layers have. Opt-in: only the editor's own layers get editing handles.
let geoman = null;
export function loadGeoman() {
  geoman ||= (async () => {
    document.head.append(el("link", { rel: "stylesheet", href: GEOMAN_CSS }));
    window.L = { ...L };
    await import(GEOMAN);
    window.L.PM.setOptIn(true);
    return window.L.PM;
  })();
  return geoman;
}

const same = (a, b) => (a ?? null) === (b ?? null);

// What a write's answer warns of: the topology rules' warnings in words (the body's `warnings`),
// and from the `Rallypoint-Warning` header what the body does not say (the active incidents
// planned again on the changed site; the header's topology part names the same by id only).
function warningsOf(answer) {
  const body = answer.body && typeof answer.body === "object" ? answer.body : {};
  const warnings = Array.isArray(body.warnings) ? [...body.warnings] : [];
  const header = answer.headers.get("Rallypoint-Warning") || "";
  for (const part of header.split("; ")) if (part && !part.startsWith("topology ")) warnings.push(part);
  return warnings;
}

// A notice's popup taken away by the editor (not closed by the planner: nothing to repaint).
function dropPopup(draft) {
  const popup = draft.popup;
  draft.popup = null;
  popup?.remove();
}
const site = (wall) => encodeURIComponent(wall.site.id);

// One feature on the editor's map: the server's version of it (`base`, null for a new one), the
// attributes as edited, whether its geometry moved, and what the server last said (`notice`).
class Draft {
  constructor(editor, layerName, feature, props = null) {
    this.editor = editor;
    this.layerName = layerName;
    this.id = feature ? String(feature.id) : null;
    this.key = feature ? `${layerName}/${feature.id}` : `${layerName}/new-${(editor.newCount += 1)}`;
    this.base = feature || null;
    this.props = props || editor.attributes(layerName, feature?.properties);
    this.geometryDirty = !feature;
    this.notice = null;
    this.errors = [];
    this.saving = false;
  }

  get isNew() {
    return this.base === null;
  }

  get version() {
    return this.base?.properties?.version ?? null;
  }

  get fields() {
    return Object.keys(this.editor.schemas[this.layerName]?.fields || {});
  }

  changedFields() {
    if (!this.base) return this.fields.filter((name) => this.props[name] !== null && this.props[name] !== undefined);
    return this.fields.filter((name) => !same(this.props[name], this.base.properties[name]));
  }

  get dirty() {
    return this.isNew || this.geometryDirty || this.changedFields().length > 0;
  }

  geometry() {
    if (this.layer instanceof L.Marker) {
      const at = this.layer.getLatLng();
      return { type: "Point", coordinates: [at.lng, at.lat] };
    }
    return this.layer.toGeoJSON(false).geometry;
  }
}

export class Editor {
  // The editor, for a planner at the wall's site; null for anyone else (and in a replay).
  static open(wall) {
    if (wall.isReplay || !wall.me?.roles?.includes("planner")) return null;
    return new Editor(wall);
  }

  constructor(wall) {
    this.wall = wall;
    this.map = wall.map;
    this.on = false;
    this.busy = false;
    this.schemas = {};
    this.drafts = new Map(); // key -> Draft: every feature drawn in edit mode
    this.selected = null;
    this.newCount = 0;
    this.drawing = null;
    this.groups = null;
    this.toggle = el("button", { id: "edit-toggle", type: "button", class: "bar-button", "aria-pressed": "false", "aria-controls": "editor" });
    this.toggle.addEventListener("click", () => this.setOn(!this.on));
    $("replay-open").before(this.toggle);
    this.element = el("section", { id: "editor", "aria-labelledby": "editor-title", hidden: true });
    $("panel").prepend(this.element);
    this.onKey = (event) => {
      if (event.key === "Escape" && this.drawing) this.stopDrawing();
    };
    document.addEventListener("keydown", this.onKey);
    this.paint();
  }

  close() {
    this.teardown();
    document.removeEventListener("keydown", this.onKey);
    this.toggle.remove();
    this.element.remove();
  }

  // The attributes of the layer's form, from a feature's properties (its meta left out).
  attributes(layerName, properties = {}) {
    const out = {};
    for (const name of Object.keys(this.schemas[layerName]?.fields || {})) out[name] = properties?.[name] ?? null;
    return out;
  }

  // -- edit mode on and off ------------------------------------------------------------------

  async setOn(on) {
    if (this.busy || on === this.on) return;
    if (!on) {
      const unsaved = [...this.drafts.values()].filter((d) => d.dirty);
      if (unsaved.length && !this.leaving) return this.askToLeave(unsaved.length);
      this.leaving = false;
      this.teardown();
      this.on = false;
      this.message = "";
      this.wall.drawZones();
      this.wall.drawSensors();
      this.paint();
      return;
    }
    this.busy = true;
    this.on = true;
    this.message = t("editor.loading");
    this.paint();
    try {
      const PM = await loadGeoman();
      const [described, ...collections] = await Promise.all([
        api(`/api/sites/${site(this.wall)}/layers`),
        ...EDITABLE.map((name) => this.wall.layer(name)),
      ]);
      if (this.wall.closed || !this.on) return;
      for (const layer of described.layers) this.schemas[layer.name] = { fields: layer.fields || {}, required: layer.required || [] };
      this.setUp(PM);
      EDITABLE.forEach((name, i) => {
        for (const feature of collections[i].features) {
          this.wall.featureChanged(name, feature.id, feature); // the wall's own copy, brought up to date
          this.addDraft(new Draft(this, name, feature));
        }
      });
      this.message = "";
    } catch (error) {
      if (error.status === 401) return;
      this.on = false;
      this.teardown();
      this.message = t("editor.cannot_load", { detail: problemText(error) });
    } finally {
      this.busy = false;
      this.paint();
    }
  }

  setUp(PM) {
    const map = this.map;
    if (!map.pm) {
      map.options.pmIgnore = false; // opt-in: the map itself takes part
      PM.reInitLayer(map);
    }
    map.pm.setGlobalOptions({ snappable: true, snapDistance: 12, allowSelfIntersection: false, exitModeOnEscape: true });
    map.pm.setLang(isChinese() ? "zh" : "en");
    if (!map.getPane("editing")) map.createPane("editing").style.zIndex = 470;
    this.groups = Object.fromEntries(EDITABLE.map((name) => [name, L.featureGroup().addTo(map)]));
    this.onCreate = (event) => this.created(event);
    this.onDrawEnd = () => {
      this.drawing = null;
      this.paintTools();
    };
    map.on("pm:create", this.onCreate);
    map.on("pm:drawend", this.onDrawEnd);
    map.getContainer().classList.add("rp-editing");
  }

  teardown() {
    const map = this.map;
    if (map.pm) map.pm.disableDraw();
    this.drawing = null;
    if (this.onCreate) map.off("pm:create", this.onCreate);
    if (this.onDrawEnd) map.off("pm:drawend", this.onDrawEnd);
    for (const draft of this.drafts.values()) {
      dropPopup(draft);
      clearTimeout(draft.savedTimer);
    }
    this.selected?.layer.pm?.disable(); // its corner handles go with it
    for (const group of Object.values(this.groups || {})) group.remove();
    this.groups = null;
    this.drafts.clear();
    this.selected = null;
    map.getContainer().classList.remove("rp-editing");
  }

  askToLeave(count) {
    this.confirmLeave = count;
    this.paint();
    this.element.querySelector(".ed-leave button")?.focus();
  }

  // -- features on the map ---------------------------------------------------------------------

  addDraft(draft, geometry = draft.base?.geometry) {
    if (!geometry) return;
    this.drafts.set(draft.key, draft);
    draft.layer = this.makeLayer(draft, geometry);
    draft.layer.addTo(this.groups[draft.layerName]);
    this.paintLayer(draft);
  }

  makeLayer(draft, geometry) {
    if (geometry.type === "Point") {
      const [lon, lat] = geometry.coordinates;
      const marker = L.marker([lat, lon], {
        pane: "editing",
        draggable: true,
        autoPan: true,
        keyboard: true,
        icon: L.divIcon({ className: `rp-edit-point rp-edit-${draft.layerName}`, html: "<i></i>", iconSize: [18, 18] }),
      });
      marker.on("click", (event) => {
        L.DomEvent.stopPropagation(event);
        this.select(draft);
      });
      marker.on("dragstart", () => this.select(draft));
      marker.on("drag", () => this.placePopup(draft));
      marker.on("dragend", () => this.geometryChanged(draft));
      marker.on("add", () => this.paintLayer(draft));
      return marker;
    }
    const polygon = L.polygon(L.GeoJSON.coordsToLatLngs(geometry.coordinates, 1), { pane: "editing", pmIgnore: false });
    polygon.on("click", (event) => {
      if (this.drawing) return; // a corner of the zone being drawn, not a choice
      L.DomEvent.stopPropagation(event);
      this.select(draft);
    });
    for (const name of ["pm:edit", "pm:vertexremoved", "pm:markerdragend"]) polygon.on(name, () => this.geometryChanged(draft));
    polygon.on("add", () => this.paintLayer(draft));
    return polygon;
  }

  setGeometry(draft, geometry) {
    if (draft.layer instanceof L.Marker) {
      const [lon, lat] = geometry.coordinates;
      draft.layer.setLatLng([lat, lon]);
      return;
    }
    const editing = draft.layer.pm?.enabled();
    if (editing) draft.layer.pm.disable();
    draft.layer.setLatLngs(L.GeoJSON.coordsToLatLngs(geometry.coordinates, 1));
    if (editing) this.enableHandles(draft);
  }

  enableHandles(draft) {
    if (draft.layer instanceof L.Polygon && draft.layer.pm) {
      draft.layer.pm.enable({ allowSelfIntersection: false, snappable: true, draggable: false });
      this.nameHandles(draft);
    }
  }

  // Geoman's corner handles are buttons without words: each is named (they are made again
  // whenever a corner is added or removed).
  nameHandles(draft) {
    const corners = this.map.getContainer().querySelectorAll(".marker-icon:not(.marker-icon-middle)");
    corners.forEach((handle, i) => handle.setAttribute("aria-label", t("editor.corner", { n: i + 1, id: this.describe(draft) })));
    for (const handle of this.map.getContainer().querySelectorAll(".marker-icon-middle")) {
      handle.setAttribute("aria-label", t("editor.add_corner", { id: this.describe(draft) }));
    }
  }

  describe(draft) {
    const name = draft.props.name ?? draft.base?.properties?.name;
    const what = draft.isNew && !draft.id ? t(`editor.layer.${draft.layerName}`) : draft.id;
    return name ? `${what} · ${name}` : what;
  }

  // The feature's look: its layer's, and unsaved, refused or in conflict when it is.
  paintLayer(draft) {
    const state = this.stateOf(draft);
    const selected = this.selected === draft;
    if (draft.layer instanceof L.Polygon) {
      const muster = draft.props.kind === "muster_point";
      const marked = { unsaved: "#e66101", refused: "#b00020", conflict: "#7a0177" }[state];
      draft.layer.setStyle({
        color: marked || (selected ? "#1a56db" : muster ? "#1a7f37" : "#52606d"),
        weight: marked || selected ? 4 : muster ? 3 : 1.2,
        dashArray: state === "clean" ? (muster ? "6 4" : null) : "10 6",
        fillColor: muster ? "#1a9850" : RISK_COLOURS[draft.props.risk_grade] || "#9aa5b1",
        fillOpacity: selected ? 0.4 : 0.25,
      });
    }
    const element = draft.layer.getElement?.();
    if (element) {
      element.classList.add("rp-edit-feature");
      element.dataset.feature = draft.key;
      element.dataset.state = state;
      element.classList.toggle("rp-edit-selected", selected);
      if (draft.layer instanceof L.Marker) {
        element.setAttribute("role", "button");
        element.setAttribute("aria-label", `${t(`editor.layer.${draft.layerName}`)} ${this.describe(draft)}`);
        element.setAttribute("aria-pressed", String(selected));
      }
    }
    // Unsaved work carries its word on the map, where it is (a notice open on it says more).
    const flag = state === "clean" || draft.popup ? null : t(`editor.state.${state}`);
    const tooltip = draft.layer.getTooltip();
    if (flag) {
      if (!tooltip?.options.permanent) {
        draft.layer.unbindTooltip();
        draft.layer.bindTooltip("", { permanent: true, direction: "top", className: "rp-edit-flag", interactive: false });
      }
      draft.layer.setTooltipContent(text(`${flag} · ${this.describe(draft)}`));
    } else if (!tooltip || tooltip.options.permanent) {
      draft.layer.unbindTooltip();
      draft.layer.bindTooltip(() => text(this.describe(draft)), { sticky: !(draft.layer instanceof L.Marker) });
    }
  }

  stateOf(draft) {
    const kind = draft.notice?.kind;
    if (kind === "refused") return "refused";
    if (kind === "conflict" || kind === "stale") return "conflict";
    return draft.dirty ? "unsaved" : "clean";
  }

  select(draft) {
    if (this.drawing) return;
    const before = this.selected;
    if (before === draft) return;
    this.selected = draft;
    if (before) {
      before.layer.pm?.disable();
      this.paintLayer(before);
    }
    this.enableHandles(draft);
    this.paintLayer(draft);
    this.confirmDelete = false;
    this.paintForm();
  }

  geometryChanged(draft) {
    draft.geometryDirty = true;
    if (draft.layer.pm?.enabled()) this.nameHandles(draft);
    if (draft.notice?.kind === "merged" || draft.notice?.kind === "warnings") this.setNotice(draft, null);
    this.placePopup(draft);
    this.paintLayer(draft);
    if (this.selected === draft) this.paintFormState();
    else this.select(draft);
  }

  // -- drawing new features ----------------------------------------------------------------------

  startDrawing(kind, byKeyboard) {
    const what = NEW[kind];
    this.stopDrawing();
    if (what.shape === "Marker" && byKeyboard) {
      // Without a mouse: the point goes in the middle of the map; its position is in the form.
      const at = this.map.getCenter();
      this.addNew(kind, { type: "Point", coordinates: [at.lng, at.lat] });
      return;
    }
    this.drawing = kind;
    const colour = "#e66101";
    if (what.shape === "Marker") {
      this.map.pm.enableDraw("Marker", {
        markerStyle: { icon: L.divIcon({ className: `rp-edit-point rp-edit-${what.layer}`, html: "<i></i>", iconSize: [18, 18] }) },
        continueDrawing: false,
        snappable: false,
      });
    } else {
      this.map.pm.enableDraw("Polygon", {
        continueDrawing: false,
        templineStyle: { color: colour },
        hintlineStyle: { color: colour, dashArray: [5, 5] },
        pathOptions: { color: colour },
      });
    }
    this.paintTools();
  }

  stopDrawing() {
    if (this.drawing) this.map.pm.disableDraw();
    this.drawing = null;
    this.paintTools();
  }

  // Geoman drew a shape: it becomes a new feature of the editor's, its form open.
  created(event) {
    const kind = this.drawing;
    const geometry = event.shape === "Marker"
      ? { type: "Point", coordinates: [event.layer.getLatLng().lng, event.layer.getLatLng().lat] }
      : event.layer.toGeoJSON(false).geometry;
    event.layer.remove();
    this.drawing = null;
    if (kind) this.addNew(kind, geometry);
    this.paintTools();
  }

  addNew(kind, geometry) {
    const what = NEW[kind];
    const draft = new Draft(this, what.layer, null, { ...this.attributes(what.layer), ...what.props });
    this.addDraft(draft, geometry);
    this.select(draft);
    this.element.querySelector(".ed-form input, .ed-form select")?.focus();
  }

  // -- saving --------------------------------------------------------------------------------------

  path(draft) {
    return draft.isNew ? `/api/sites/${site(this.wall)}/layers/${draft.layerName}` : this.featurePath(draft.layerName, draft.id);
  }

  featurePath(layerName, id) {
    return `/api/sites/${site(this.wall)}/layers/${layerName}/features/${encodeURIComponent(id)}`;
  }

  // POST a new feature; PATCH an existing one with what changed and the version it started
  // from (`version`: the current one, when the planner chose to keep theirs over a conflict).
  async save(draft, { version } = {}) {
    if (draft.saving) return;
    let body;
    if (draft.isNew) {
      const properties = Object.fromEntries(Object.entries(draft.props).filter(([, v]) => v !== null && v !== undefined));
      body = { type: "Feature", geometry: draft.geometry(), properties };
      if (draft.id) body.id = draft.id; // kept over a deletion: made again under its id
    } else {
      const properties = Object.fromEntries(draft.changedFields().map((name) => [name, draft.props[name]]));
      properties.version = version ?? draft.version;
      body = { type: "Feature", properties };
      if (draft.geometryDirty) body.geometry = draft.geometry();
    }
    await this.send(draft, "save", draft.isNew ? "POST" : "PATCH", this.path(draft), body);
  }

  async remove(draft, { version } = {}) {
    if (draft.isNew) return this.forget(draft);
    await this.send(draft, "delete", "DELETE", `${this.path(draft)}?version=${version ?? draft.version}`);
  }

  async send(draft, action, method, path, body) {
    draft.saving = true;
    this.paintFormState();
    let answer;
    try {
      const options = { method };
      if (body) {
        options.headers = { "Content-Type": "application/json" };
        options.body = JSON.stringify(body);
      }
      answer = await apiResponse(path, options);
    } catch (error) {
      draft.saving = false;
      if (error.status === 401 || !this.drafts.has(draft.key)) return;
      this.refused(draft, error, action);
      return;
    }
    draft.saving = false;
    if (!this.drafts.has(draft.key)) return;
    if (action === "delete") {
      this.wall.featureChanged(draft.layerName, draft.id, null);
      // Nothing left to anchor a warning to: the panel says it.
      const warnings = warningsOf(answer);
      const deleted = t("editor.deleted", { id: draft.id });
      this.forget(draft, warnings.length ? `${deleted} ${t("editor.warnings_title")}: ${warnings.join(" ")}` : deleted);
      return;
    }
    this.saved(draft, answer);
  }

  saved(draft, answer) {
    const feature = answer.body;
    const warnings = warningsOf(answer);
    const merged = feature.merged || null;
    const header = answer.headers.get("Rallypoint-Merged");
    if (draft.isNew) {
      // The layer.changed event of this very save may have come first and drawn it already.
      const twin = this.drafts.get(`${draft.layerName}/${feature.id}`);
      if (twin && twin !== draft) {
        dropPopup(twin);
        twin.layer?.remove();
      }
      this.drafts.delete(draft.key);
      draft.key = `${draft.layerName}/${feature.id}`;
      draft.id = String(feature.id);
      this.drafts.set(draft.key, draft);
    }
    this.reset(draft, feature);
    this.wall.featureChanged(draft.layerName, draft.id, feature);
    if (merged || header) this.setNotice(draft, { kind: "merged", merged, header, warnings });
    else if (warnings.length) this.setNotice(draft, { kind: "warnings", warnings });
    else this.setNotice(draft, null);
    draft.savedNote = t("editor.saved", { id: draft.id, version: draft.version });
    clearTimeout(draft.savedTimer);
    draft.savedTimer = setTimeout(() => {
      draft.savedNote = "";
      if (this.selected === draft) this.paintFormState();
    }, SAVED_NOTE_MS);
    this.paintLayer(draft);
    if (this.selected === draft) this.paintForm();
  }

  refused(draft, error, action) {
    if (!(error instanceof HttpError)) {
      return this.setNotice(draft, { kind: "refused", detail: problemText(error), errors: [], action });
    }
    const conflict = error.problem?.conflict;
    if (error.status === 409 && conflict) {
      return this.setNotice(draft, { kind: "conflict", status: error.status, detail: error.message, conflict, action, warnings: error.problem.warnings });
    }
    this.setNotice(draft, { kind: "refused", status: error.status, detail: error.message, errors: error.fieldErrors, action, warnings: error.problem?.warnings });
  }

  // The server's version of the feature, as the draft's base and its shown state.
  reset(draft, feature) {
    draft.base = feature;
    draft.props = this.attributes(draft.layerName, feature.properties);
    draft.geometryDirty = false;
    if (feature.geometry) this.setGeometry(draft, feature.geometry);
    this.paintLayer(draft);
  }

  // Back to the server's version of the feature: read again (gone: taken off the map).
  async reload(draft, note = "") {
    if (draft.isNew && !draft.id) return this.forget(draft);
    let feature;
    try {
      feature = await api(this.featurePath(draft.layerName, draft.id));
    } catch (error) {
      if (error.status === 404) {
        this.wall.featureChanged(draft.layerName, draft.id, null);
        return this.forget(draft, t("editor.gone", { id: draft.id }));
      }
      if (error.status !== 401) this.refused(draft, error, "reload");
      return;
    }
    if (!this.drafts.has(draft.key)) return;
    this.reset(draft, feature);
    this.wall.featureChanged(draft.layerName, draft.id, feature);
    this.setNotice(draft, null);
    draft.savedNote = note;
    if (this.selected === draft) this.paintForm();
  }

  // A feature off the editor's map; `message` for the panel. The form of another feature being
  // edited is left as it is (the planner may be typing in it).
  forget(draft, message = this.message) {
    dropPopup(draft);
    draft.layer?.pm?.disable();
    draft.layer?.remove();
    this.drafts.delete(draft.key);
    this.message = message;
    if (this.selected === draft) {
      this.selected = null;
      this.paint();
    } else this.paintMessage();
  }

  // A notice's button.
  act(draft, action) {
    const notice = draft.notice;
    if (action === "fix") {
      const first = this.element.querySelector(".ed-form [aria-invalid='true'], .ed-form input, .ed-form select");
      first?.focus();
    } else if (action === "revert") {
      this.reload(draft);
    } else if (action === "take-theirs") {
      if (notice?.kind === "stale" && notice.feature) {
        this.reset(draft, notice.feature);
        this.setNotice(draft, null);
        if (this.selected === draft) this.paintForm();
      } else if (notice?.kind === "stale" && notice.change?.action === "delete") {
        this.forget(draft, t("editor.gone", { id: draft.id }));
      } else this.reload(draft, t("editor.took_theirs"));
    } else if (action === "keep-mine") {
      const version = currentVersion(notice?.conflict);
      this.setNotice(draft, null);
      if (notice?.action === "delete") this.remove(draft, { version });
      else this.save(draft, { version });
    } else if (action === "keep-editing" || action === "dismiss") {
      // Kept over someone's deletion: saving makes it again, under its id, as it is here.
      if (notice?.kind === "stale" && notice.change?.action === "delete") draft.base = null;
      this.setNotice(draft, null);
    }
  }

  // -- notices on the feature ---------------------------------------------------------------------

  setNotice(draft, notice) {
    draft.notice = notice;
    draft.errors = notice?.errors || [];
    dropPopup(draft);
    if (notice) {
      draft.popup = L.popup({
        autoClose: false,
        closeOnClick: false,
        closeButton: notice.kind === "merged" || notice.kind === "warnings",
        className: `rp-edit-popup rp-edit-popup-${notice.kind}`,
        maxWidth: 460,
        minWidth: 260,
        autoPanPadding: [30, 30],
      });
      draft.popup.setContent(this.noticeFor(draft));
      const popup = draft.popup;
      popup.on("remove", () => {
        if (draft.popup !== popup) return;
        draft.popup = null; // closed by its button: a merge or warnings, read
        if (draft.notice === notice) draft.notice = null;
        if (this.drafts.has(draft.key)) this.paintLayer(draft);
        if (this.selected === draft) this.paintForm();
      });
      this.placePopup(draft);
      draft.popup.openOn(this.map);
    }
    this.paintLayer(draft);
    if (this.selected === draft) this.paintForm();
    else if (notice) this.select(draft);
  }

  noticeFor(draft) {
    const node = noticeNode(this.wall, draft);
    for (const button of node.querySelectorAll("button[data-action]")) {
      button.addEventListener("click", () => this.act(draft, button.dataset.action));
    }
    return node;
  }

  placePopup(draft) {
    if (!draft.popup) return;
    const at = draft.layer instanceof L.Marker ? draft.layer.getLatLng() : draft.layer.getCenter();
    draft.popup.options.offset = draft.layer instanceof L.Marker ? [0, -8] : [0, 7];
    draft.popup.setLatLng(at);
  }

  // -- live: a layer changed on the server -----------------------------------------------------

  layerChanged(data) {
    if (!this.on || !this.groups || !EDITABLE.includes(data.layer)) return;
    if (data.reload) return this.reloadLayer(data.layer);
    for (const change of data.changes || []) this.changed(data.layer, change);
  }

  async changed(layerName, change) {
    const draft = this.drafts.get(`${layerName}/${change.id}`);
    if (draft?.saving) return; // the answer to the save in flight says what is stored
    const known = draft?.version ?? 0;
    if (draft && change.action !== "delete" && Number.isInteger(change.version) && change.version <= known) return;
    let feature = change.feature ?? null;
    if (change.action !== "delete" && !feature) {
      try {
        feature = await api(this.featurePath(layerName, change.id));
      } catch {
        return;
      }
    }
    if (!this.on || !this.groups) return;
    if (!draft) {
      if (feature) this.addDraft(new Draft(this, layerName, feature));
      return;
    }
    if (draft.dirty || draft.notice?.kind === "refused" || draft.notice?.kind === "conflict") {
      // Being edited here: the planner is told, and their edit is left as it is.
      this.setNotice(draft, { kind: "stale", change, feature });
      return;
    }
    if (change.action === "delete") return this.forget(draft, this.selected === draft ? t("editor.gone", { id: draft.id }) : this.message);
    this.reset(draft, feature);
    if (this.selected === draft) {
      draft.savedNote = t("editor.updated", { actor: change.actor ?? "?", version: draft.version });
      this.paintForm();
    }
  }

  async reloadLayer(layerName) {
    let collection;
    try {
      collection = await this.wall.layer(layerName);
    } catch {
      return;
    }
    if (!this.on || !this.groups) return;
    const seen = new Set();
    for (const feature of collection.features) {
      const key = `${layerName}/${feature.id}`;
      seen.add(key);
      const draft = this.drafts.get(key);
      if (!draft) this.addDraft(new Draft(this, layerName, feature));
      else if (!draft.dirty && !draft.notice && draft.version !== feature.properties.version) this.reset(draft, feature);
      else if (draft.dirty && draft.version !== feature.properties.version) {
        this.setNotice(draft, { kind: "stale", change: { id: feature.id, action: "update", version: feature.properties.version, actor: feature.properties.updated_by, at: feature.properties.updated_at }, feature });
      }
    }
    for (const draft of [...this.drafts.values()]) {
      if (draft.layerName === layerName && draft.id && !draft.isNew && !seen.has(draft.key) && !draft.dirty) this.forget(draft);
    }
  }

  // The language changed: everything the editor wrote, in it.
  repaint() {
    if (this.map.pm) this.map.pm.setLang(isChinese() ? "zh" : "en");
    for (const draft of this.drafts.values()) {
      this.paintLayer(draft);
      if (draft.popup) draft.popup.setContent(this.noticeFor(draft));
    }
    this.paint();
  }
}

// The panel's methods (its form and buttons) live in editor-panel.js.
Object.assign(Editor.prototype, panelMethods);
