// Geofences on the live wall (command/monitoring/fences.py): breaches wait in the alarm bar
// with the wall's alarm tone (alarms.js's Tone, its mute respected) until a commander or a
// responder acknowledges them (fence.acknowledged, naming who); temporary fences (a crane's
// swing radius, a hot-work area) are drawn on every wall as they are created and taken off as
// they expire; a commander or a planner draws one with Leaflet-Geoman (loaded as the editor
// loads it), with a small form for its kind, name and expiry.
import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { api, problemText, send } from "./api.js";
import { $, el } from "./dom.js";
import { loadGeoman } from "./editor.js";
import { t } from "./i18n.js";

const RELOAD_MS = 30_000;
const FENCE_STYLE = {
  crane_swing: { color: "#b30000", weight: 3, dashArray: "8 6", fillOpacity: 0.12 },
  hot_work: { color: "#e66100", weight: 3, dashArray: "4 4", fillOpacity: 0.15 },
};

export class Fences {
  // The fences of a live wall (none in a replay).
  static open(wall) {
    if (wall.isReplay) return null;
    return new Fences(wall);
  }

  constructor(wall) {
    this.wall = wall;
    this.entries = new Map(); // breach seq -> its fence.breach data (with seq, at)
    this.temporary = new Map(); // fence id -> Leaflet layer
    this.layer = L.layerGroup().addTo(wall.map);
    this.drawing = null;
    $("fence-alarms").replaceChildren();
    $("fence-alarms").hidden = true;
    if (this.mayDraw()) this.addDrawControl();
    this.load();
    // The server's word every half minute: what a gap in the connection left out.
    this.timer = setInterval(() => !document.hidden && this.load(), RELOAD_MS);
  }

  close() {
    clearInterval(this.timer);
    this.drawing?.layer?.remove();
    this.control?.remove();
    this.layer.remove();
    $("fence-alarms").replaceChildren();
    $("fence-alarms").hidden = true;
  }

  get site() {
    return encodeURIComponent(this.wall.site.id);
  }

  // What the server holds now: open breaches and fences in force (at start, after a gap).
  async load() {
    try {
      const [breaches, fences] = await Promise.all([
        api(`/api/sites/${this.site}/fences/breaches`),
        api(`/api/sites/${this.site}/fences`),
      ]);
      if (this.wall.closed) return;
      this.entries = new Map(breaches.map((b) => [Number(b.seq), b]));
      const temporary = fences.features.filter((f) => f.properties.temporary);
      const kept = new Set(temporary.map((f) => String(f.id)));
      for (const id of [...this.temporary.keys()]) if (!kept.has(id)) this.hide(id);
      for (const f of temporary) if (!this.temporary.has(String(f.id))) this.show(f);
      this.paint();
    } catch (failure) {
      if (failure.status !== 401) $("wall-error").textContent = problemText(failure);
    }
  }

  get waiting() {
    return this.entries.size;
  }

  event(event) {
    const d = event.data || {};
    if (event.type === "fence.breach") this.entries.set(Number(event.seq), { seq: event.seq, at: event.at, ...d });
    else if (event.type === "fence.acknowledged") this.entries.delete(Number(d.breach));
    else if (event.type === "fence.created") this.show(d.fence);
    else if (event.type === "fence.expired" || event.type === "fence.removed") this.hide(String(d.fence_id));
    else return;
    this.paint();
  }

  show(feature) {
    if (!feature?.geometry) return;
    const id = String(feature.id);
    this.hide(id);
    const p = feature.properties || {};
    const shape = L.geoJSON(feature, { pane: "threat", style: () => FENCE_STYLE[p.kind] || FENCE_STYLE.hot_work });
    shape.eachLayer((layer) => {
      layer.bindTooltip(el("span", {}, t("fence.tooltip", { kind: t(`fence.kind.${p.kind}`), name: p.name || id, until: p.expires_at ? this.wall.at(p.expires_at) : "?" })));
    });
    shape.addTo(this.layer);
    shape.eachLayer((layer) => {
      const path = layer.getElement?.();
      if (path) {
        path.setAttribute("data-fence", id);
        path.classList.add("rp-fence", `rp-fence-${p.kind}`);
      }
    });
    this.temporary.set(id, shape);
  }

  hide(id) {
    this.temporary.get(id)?.remove();
    this.temporary.delete(id);
  }

  mayAcknowledge() {
    const roles = this.wall.me?.roles || [];
    return roles.includes("commander") || roles.includes("responder");
  }

  mayDraw() {
    const roles = this.wall.me?.roles || [];
    return roles.includes("commander") || roles.includes("planner");
  }

  paint() {
    const box = $("fence-alarms");
    box.replaceChildren();
    for (const entry of [...this.entries.values()].sort((a, b) => a.seq - b.seq)) {
      const who = entry.person_name ? `${entry.person_name} (${entry.employer || "?"})` : entry.person_id;
      const why = (entry.reasons || []).map((r) => r.reason).join("; ");
      const item = el("section", { class: "alarm fence-breach", "data-breach": String(entry.seq), "data-rule": entry.rule || "", "aria-label": t("fence.region") },
        el("h2", {}, t("fence.title", { fence: entry.fence_name || entry.fence_id, kind: t(`fence.kind.${entry.fence_kind || "zone"}`) })),
        el("p", { class: "alarm-detail" }, t("fence.detail", { who, why, time: this.wall.at(entry.observed_at || entry.at) })),
      );
      const error = el("p", { class: "error alarm-error", role: "alert" });
      if (this.mayAcknowledge()) {
        const ack = el("button", { type: "button", class: "alarm-ack fence-ack" }, t("alarm.acknowledge"));
        ack.addEventListener("click", () => this.acknowledge(entry.seq, ack, error));
        item.append(ack);
      }
      if (entry.lonlat) {
        const where = el("button", { type: "button", class: "quiet-button fence-where" }, t("fence.show"));
        where.addEventListener("click", () => this.wall.map.setView([entry.lonlat[1], entry.lonlat[0]], Math.max(this.wall.map.getZoom(), 18)));
        item.append(where);
      }
      item.append(error);
      box.append(item);
    }
    box.hidden = !this.entries.size;
    box.setAttribute("aria-label", t("fence.region"));
    // The tone is the alarm list's to set: sensors' alarms (not a test's or a shelved one's),
    // breaches and people's alarms together, as person-alarms.js does.
    this.wall.alarms?.paint();
  }

  async acknowledge(seq, button, error) {
    button.disabled = true;
    error.textContent = "";
    try {
      await send("POST", `/api/sites/${this.site}/fences/breaches/${seq}/acknowledge`, {});
      // The fence.acknowledged event takes it off every wall, this one included.
    } catch (failure) {
      if (failure.status === 401) return;
      error.textContent = t("alarm.ack_refused", { detail: problemText(failure) });
      button.disabled = false;
    }
  }

  // -- drawing a temporary fence (commanders and planners) ------------------------------------

  addDrawControl() {
    const fences = this;
    const Control = L.Control.extend({
      options: { position: "topleft" },
      onAdd() {
        const box = el("div", { class: "leaflet-bar rp-fence-control" });
        const open = el("button", { type: "button", id: "fence-draw-open", class: "bar-button" }, t("fence.draw"));
        const form = fences.form();
        form.hidden = true;
        open.addEventListener("click", () => { form.hidden = !form.hidden; });
        box.append(open, form);
        L.DomEvent.disableClickPropagation(box);
        return box;
      },
    });
    this.control = new Control().addTo(this.wall.map);
  }

  form() {
    const kind = el("select", { id: "fence-kind", name: "kind" },
      el("option", { value: "crane_swing" }, t("fence.kind.crane_swing")),
      el("option", { value: "hot_work" }, t("fence.kind.hot_work")));
    const name = el("input", { id: "fence-name", name: "name", maxLength: 200, required: true });
    const hours = el("input", { id: "fence-hours", name: "hours", type: "number", min: "0.1", max: "336", step: "0.1", value: "8" });
    const status = el("p", { id: "fence-status", class: "quiet", role: "status" });
    const start = el("button", { type: "submit", id: "fence-start" }, t("fence.start"));
    const form = el("form", { id: "fence-form", class: "rp-fence-form" },
      el("label", {}, t("fence.kind"), " ", kind),
      el("label", {}, t("fence.name"), " ", name),
      el("label", {}, t("fence.hours"), " ", hours),
      start, status);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.startDrawing({ kind: kind.value, name: name.value.trim() || t(`fence.kind.${kind.value}`), hours: Number(hours.value) }, status);
    });
    return form;
  }

  async startDrawing(spec, status) {
    const map = this.wall.map;
    status.textContent = t(spec.kind === "crane_swing" ? "fence.hint_circle" : "fence.hint_polygon");
    const PM = await loadGeoman();
    if (!map.pm) {
      map.options.pmIgnore = false; // opt-in: the map itself takes part (as the editor does)
      PM.reInitLayer(map);
    }
    this.drawing = spec;
    map.once("pm:create", (e) => this.drawn(e.layer, spec, status));
    const style = FENCE_STYLE[spec.kind];
    map.pm.enableDraw(spec.kind === "crane_swing" ? "Circle" : "Polygon", {
      continueDrawing: false,
      snappable: false,
      templineStyle: { color: style.color },
      hintlineStyle: { color: style.color, dashArray: [5, 5] },
      pathOptions: { color: style.color },
    });
  }

  async drawn(layer, spec, status) {
    this.drawing = { ...spec, layer };
    const body = { kind: spec.kind, name: spec.name, expires_in_s: Math.round(spec.hours * 3600) };
    if (layer instanceof L.Circle) {
      const c = layer.getLatLng();
      body.centre = [c.lng, c.lat];
      body.radius_m = Math.round(layer.getRadius() * 10) / 10;
    } else {
      body.geometry = layer.toGeoJSON(false).geometry;
    }
    try {
      const made = await send("POST", `/api/sites/${this.site}/fences/temporary`, body);
      status.textContent = t("fence.made", { id: made.id });
    } catch (failure) {
      status.textContent = t("fence.refused", { detail: problemText(failure) });
    } finally {
      layer.remove(); // the fence.created event draws it, on every wall
      this.drawing = null;
    }
  }
}
