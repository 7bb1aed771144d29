// The map: the surroundings (an offline basemap and the sensitive receptors), the site's layers
// (zones by risk grade, labelled at readable zooms; muster points; the network; detectors in
// their tier's colour), each incident's threat zones, routes, people and resources, the wind
// arrow and the legend; it frames the incident unless someone panned it in the last minute
// (Wall methods, mixed into it by state.js). Leaflet comes from this server (/vendor/leaflet).
import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { Activation } from "./actions.js";
import { api, HttpError, problemText } from "./api.js";
import { duration, el, text } from "./dom.js";
import { Editor } from "./editor.js";
import { Fences } from "./fences.js";
import { PersonAlarms } from "./person-alarms.js";
import { t } from "./i18n.js";
import { compass, threatName } from "./panels.js";
import { PeopleLayer } from "./people.js";

// Risk grades keep the red/orange/yellow/blue of the site's risk map (a planner's convention),
// as light fills with a thin outline; threat levels are a separate purple ramp (ColorBrewer
// RdPu, readable with the common colour-vision deficiencies) with strong outlines, so the two
// never read as one another. Detectors' tiers use the same ramp as their meaning rises.
const RISK_COLOURS = { red: "#d73027", orange: "#fc8d59", yellow: "#fee08b", blue: "#4575b4" };
export const THREAT_COLOURS = { 3: "#7a0177", 2: "#c51b8a", 1: "#f768a1" };
const TIER_COLOURS = { warning: "#fdd49e", alarm: "#c51b8a", high_alarm: "#7a0177" };
const BASEMAP_STYLE = {
  road: { color: "#b0b8c1", weight: 4 },
  railway: { color: "#8d96a0", weight: 2, dashArray: "6 4" },
  building: { color: "#c3c9d0", weight: 0.5, fillColor: "#dde1e6", fillOpacity: 0.9 },
  water: { color: "#8fb8de", weight: 1, fillColor: "#c6dbef", fillOpacity: 0.9 },
  landuse: { color: "#c7e0c0", weight: 0.5, fillColor: "#e5f0e0", fillOpacity: 0.6 },
};
const SURROUNDINGS_M = 5000; // the basemap reaches this far around the site
const ZONE_LABEL_ZOOM = 16; // site zones are labelled from this zoom on
const USER_MOVE_HOLD_MS = 60_000; // a pan or zoom by hand holds the framing off this long
const TRAPPED_LABELS = 20; // trapped people get a permanent label, up to this many

// The evacuation routes as nodes ([lon, lat]) with `next` and `escape_next` pointers (-1: none).
// The server sends either that, or the compact form: nodes as integer steps of `unit_deg` from
// `origin` in `xy`, and the escape pointers as `[node, next]` pairs (docs/protocol.md).
function routeForest(routes) {
  if (!routes.xy) return routes;
  const [lon0, lat0] = routes.origin;
  const unit = routes.unit_deg;
  const nodes = [];
  for (let i = 0; i + 1 < routes.xy.length; i += 2) {
    nodes.push([lon0 + unit * routes.xy[i], lat0 + unit * routes.xy[i + 1]]);
  }
  const escapeNext = new Array(nodes.length).fill(-1);
  for (const [node, next] of routes.escape || []) escapeNext[node] = next;
  return { nodes, next: routes.next, escape_next: escapeNext, start: routes.start };
}

export const mapMethods = {
  layer(name, query = "") {
    return api(`/api/sites/${encodeURIComponent(this.site.id)}/layers/${name}${query}`);
  },

  // The surroundings' bbox: the site's, widened by SURROUNDINGS_M.
  surroundings() {
    const [w, s, e, n] = this.site.bbox;
    const dLat = SURROUNDINGS_M / 111_320;
    const dLon = SURROUNDINGS_M / (111_320 * Math.cos((((s + n) / 2) * Math.PI) / 180));
    return [w - dLon, s - dLat, e + dLon, n + dLat].map((v) => v.toFixed(6)).join(",");
  },

  async loadLayers() {
    const optional = (name, query) => this.layer(name, query).catch((error) => {
      if (error.status === 401) throw error;
      console.warn(`layer ${name} not shown`, error);
      return { type: "FeatureCollection", features: [] };
    });
    const [me, zones, network, people, resources, sensors, basemap, receptors] = await Promise.all([
      api("/api/auth/me"),
      ...["zones", "network", "people", "resources", "sensors"].map((name) => this.layer(name)),
      optional("basemap", `?bbox=${this.surroundings()}`),
      optional("receptors"),
    ]);
    // The roles here: those held everywhere, and those granted on this site.
    this.me = { ...me, roles: [...me.roles, ...(me.site_roles?.[this.site.id] || [])] };
    // A place that is also a receptor (the village) is named once, as the receptor.
    const named = new Set(receptors.features.map((f) => f.properties.name));
    this.drawBasemap(basemap, named);
    this.drawReceptors(receptors);
    this.zonesById = new Map(zones.features.map((f) => [String(f.id), f])); // redrawn on a change
    this.drawZones();
    this.networkById = new Map(network.features.map((f) => [String(f.id), f])); // redrawn on a change
    this.drawNetwork();
    for (const f of people.features) {
      if (f.geometry) this.people.set(String(f.id), f.geometry.coordinates);
    }
    for (const f of resources.features) this.resourcesById.set(String(f.id), f);
    for (const f of sensors.features) this.sensors.set(String(f.id), f);
    this.drawSensors();
    this.addWindControl();
    this.addLegend();
    await this.refreshWind();
    if (this.isCommander() && !this.closed) this.activation = new Activation(this);
    if (!this.closed) this.editor = Editor.open(this); // planners only
    if (!this.closed) this.fences = Fences.open(this); // geofences: breaches, temporary fences
    if (!this.closed) this.personAlarms = PersonAlarms.open(this, people); // wristbands' alarms
  },

  // The site's zones (this.zonesById), drawn afresh: at loading, and when a layer change or the
  // planner's editor (editor.js) changed one.
  drawZones() {
    this.zoneLayer?.remove();
    this.zoneLabelGroup?.remove();
    if (this.labelZoom) this.map.off("zoomend", this.labelZoom);
    this.musters.clear();
    this.musterAreas.clear();
    const zones = { type: "FeatureCollection", features: [...this.zonesById.values()] };
    const isMuster = (f) => f.properties.kind === "muster_point";
    this.zoneLabels = [];
    this.zoneLayer = L.geoJSON(zones, {
      pane: "zones",
      style: (f) => ({
        className: `rp-zone rp-z-${String(f.id).replace(/\s/g, "_")}${isMuster(f) ? " rp-muster" : ""}`,
        color: isMuster(f) ? "#1a7f37" : "#7b8794",
        weight: isMuster(f) ? 3 : 0.8,
        dashArray: isMuster(f) ? "6 4" : null,
        fillColor: isMuster(f) ? "#1a9850" : RISK_COLOURS[f.properties.risk_grade] || "#9aa5b1",
        fillOpacity: isMuster(f) ? 0.35 : 0.16,
      }),
      onEachFeature: (f, layer) => {
        const props = f.properties;
        layer.bindTooltip(() => text(isMuster(f)
          ? t("map.muster", { name: props.name })
          : t("map.zone", { name: props.name, kind: props.kind, grade: props.risk_grade ? t(`risk.${props.risk_grade}`) : "–" })), { sticky: true });
        // The zone's name on it, shown from ZONE_LABEL_ZOOM on (the map's class says when).
        const label = L.tooltip({ pane: "labels", permanent: true, direction: "center", className: `rp-zone-label${isMuster(f) ? " rp-muster-label" : ""}`, interactive: false })
          .setLatLng(layer.getBounds().getCenter())
          .setContent(text(isMuster(f) ? `⚑ ${props.name}` : props.name));
        this.zoneLabels.push(label);
      },
    }).addTo(this.map);
    const labels = L.layerGroup(this.zoneLabels);
    this.zoneLabelGroup = labels;
    const labelZoom = (this.labelZoom = () => {
      if (this.map.getZoom() >= ZONE_LABEL_ZOOM) labels.addTo(this.map);
      else labels.remove();
    });
    this.map.on("zoomend", labelZoom);
    labelZoom();
    for (const f of zones.features.filter(isMuster)) {
      this.musters.set(String(f.id), f.properties.name);
      this.musterAreas.set(String(f.id), f);
    }
  },

  // The network (this.networkById), drawn afresh: at loading, and after a layer change.
  drawNetwork() {
    this.networkLayer?.remove();
    const network = { type: "FeatureCollection", features: [...this.networkById.values()] };
    this.networkLayer = L.geoJSON(network, {
      pane: "network",
      interactive: false,
      style: (f) => ({
        className: `rp-network rp-e-${String(f.id).replace(/\s/g, "_")}`,
        color: f.properties.vehicle ? "#7b8794" : "#a3acb9",
        weight: f.properties.vehicle ? 3 : 1.5,
        opacity: 0.9,
      }),
    }).addTo(this.map);
  },

  // -- the surroundings ----------------------------------------------------------------------------

  // Roads, buildings, water, landuse and place names around the site: a basemap drawn from the
  // site's own layer (the OSM importer or the demo), so nothing comes from a tile server.
  // Also again after a layer change (what was drawn before is taken away first).
  drawBasemap(basemap, named = new Set()) {
    this.basemapLayer?.remove();
    this.basemapLabels?.remove();
    this.basemapById = new Map(basemap.features.map((f) => [String(f.id), f]));
    this.basemapNamed = named;
    const renderer = L.canvas({ pane: "basemap" });
    this.basemapLabels = L.layerGroup().addTo(this.map);
    this.basemapLayer = L.geoJSON(basemap, {
      pane: "basemap",
      interactive: false,
      filter: (f) => f.properties.kind !== "place",
      style: (f) => ({ ...(BASEMAP_STYLE[f.properties.kind] || BASEMAP_STYLE.landuse), renderer, className: `rp-basemap rp-basemap-${f.properties.kind}` }),
    }).addTo(this.map);
    for (const f of basemap.features) {
      const name = f.properties.name;
      if (!name || named.has(name) || !["place", "road", "water"].includes(f.properties.kind) || !f.geometry) continue;
      const at = L.geoJSON(f).getBounds().getCenter();
      L.tooltip({ pane: "labels", permanent: true, direction: "center", className: `rp-place-label rp-place-${f.properties.kind}`, interactive: false })
        .setLatLng(at)
        .setContent(text(name))
        .addTo(this.basemapLabels);
    }
  },

  // Schools, hospitals and homes near the site, with their names, always labelled.
  drawReceptors(receptors) {
    this.receptorGroup?.remove(); // drawn again after a layer change
    this.receptorsById = new Map(receptors.features.map((f) => [String(f.id), f]));
    this.receptorLayers = new Map();
    this.receptorGroup = L.geoJSON(receptors, {
      pane: "receptors",
      style: () => ({ className: "rp-receptor", color: "#1d4e89", weight: 2, fillColor: "#9ecae1", fillOpacity: 0.5 }),
      pointToLayer: (f, latlng) => L.circleMarker(latlng, { radius: 8 }),
      onEachFeature: (f, layer) => {
        const props = f.properties;
        this.receptorLayers.set(String(f.id), layer);
        // Always labelled by name; the kind and the people in the popup on a click.
        layer.bindTooltip(text(props.name), { pane: "labels", permanent: true, direction: "top", className: "rp-receptor-label" });
        layer.bindPopup(() => text(t("map.receptor", { name: props.name, kind: this.receptorKind(props.kind), population: props.population ?? "?" })));
      },
    }).addTo(this.map);
  },

  // -- detectors -----------------------------------------------------------------------------------

  // Also again after a layer change (the markers drawn before are taken away first).
  drawSensors() {
    for (const marker of this.sensorMarkers?.values() || []) marker.remove();
    this.sensorMarkers = new Map();
    for (const [id, f] of this.sensors) {
      if (f.geometry?.type !== "Point" || f.properties.kind === "wind") continue;
      const [lon, lat] = f.geometry.coordinates;
      // A click on a detector is also a click on the map (the activation panel's place).
      const tier = this.sensorTiers?.get(id) || null;
      const marker = L.marker([lat, lon], { pane: "sensors", icon: this.sensorIcon(tier), keyboard: false, bubblingMouseEvents: true });
      marker.bindTooltip(() => text(t("map.sensor", {
        name: f.properties.name, substance: f.properties.substance || "", tier: t(`tier.${this.sensorTiers?.get(id) || "normal"}`),
      })));
      marker.addTo(this.map);
      this.sensorMarkers.set(id, marker);
    }
  },

  sensorIcon(tier) {
    return L.divIcon({
      className: `rp-sensor rp-tier-${tier || "normal"}`,
      html: "<i></i>",
      iconSize: tier ? [20, 20] : [8, 8],
    });
  },

  paintSensor(id, tier) {
    this.sensorTiers ||= new Map();
    if (tier) this.sensorTiers.set(id, tier);
    else this.sensorTiers.delete(id);
    this.sensorMarkers?.get(id)?.setIcon(this.sensorIcon(tier));
  },

  // The sensors' state (GET .../sensors/state): the detectors' tiers and the latest wind.
  async refreshWind() {
    let sensors, health;
    try {
      ({ sensors = [], health = [] } = await api(`/api/sites/${encodeURIComponent(this.site.id)}/sensors/state`));
    } catch (error) {
      if (error.status !== 401) console.warn("sensors' state not read", error);
      return;
    }
    if (this.closed) return;
    this.alarms.reconcile(sensors);
    this.paintHealth(health); // detectors flagged unhealthy or overdue (health.js)
    let best = null;
    for (const sensor of sensors) {
      if (sensor.kind !== "wind") this.paintSensor(String(sensor.id), sensor.tier);
      const reading = sensor.last_reading;
      if (sensor.kind !== "wind" || reading?.direction_deg == null) continue;
      if (!best || Date.parse(reading.at) > Date.parse(best.at)) {
        best = { sensor: sensor.id, speed: reading.value, from: reading.direction_deg, at: reading.at };
      }
    }
    this.wind = best;
    this.paintWindControl();
    for (const shown of this.incidents.values()) this.paintWind(shown);
  },

  // -- the wind arrow and the legend -------------------------------------------------------------

  addWindControl() {
    const Wind = L.Control.extend({
      onAdd: () => {
        const box = el("div", { class: "rp-wind leaflet-bar", role: "img" });
        this.windBox = box;
        return box;
      },
    });
    new Wind({ position: "topright" }).addTo(this.map);
    this.paintWindControl();
  },

  // The arrow points where the wind blows to; the text says where it comes from. The incident
  // shown draws its plume under its own wind; otherwise the latest station's.
  paintWindControl() {
    const box = this.windBox;
    if (!box) return;
    const hazard = this.incidents.get(this.selected)?.picture.incident.hazard;
    const from = hazard?.wind_from_deg ?? this.wind?.from;
    const speed = hazard?.wind_speed_m_s ?? this.wind?.speed;
    box.replaceChildren();
    if (from == null) {
      box.append(el("span", { class: "rp-wind-text" }, t("wind.none")));
      box.setAttribute("aria-label", t("wind.none")); // an image needs its words, this one too
      box.dataset.from = "";
      return;
    }
    box.dataset.from = String(from);
    const arrow = el("span", { class: "rp-wind-arrow", "aria-hidden": "true" }, "➜");
    // ➜ points east (90°); the wind blows towards from + 180.
    arrow.style.transform = `rotate(${(from + 180 - 90 + 360) % 360}deg)`;
    box.append(arrow, el("span", { class: "rp-wind-text" },
      t("wind.line", { speed: speed ?? "?", compass: compass(from), deg: Math.round(from) })));
    box.setAttribute("aria-label", `${t("wind.arrow")}: ${box.textContent}`);
    box.title = t("wind.arrow");
  },

  addLegend() {
    const Legend = L.Control.extend({
      onAdd: () => {
        const box = el("details", { class: "rp-legend", open: true });
        this.legendBox = box;
        return box;
      },
    });
    new Legend({ position: "bottomleft" }).addTo(this.map);
    this.paintLegend();
  },

  // Everything drawn, named: the threat zones by what they mean (the incident's own criteria),
  // the uncertainty cone, the risk grades, muster points, people by state, routes, detectors.
  paintLegend() {
    const box = this.legendBox;
    if (!box) return;
    const shown = this.incidents.get(this.selected);
    const zones = shown ? this.threatZones(shown.picture) : [3, 2, 1].map((level) => ({ level, label: "" }));
    const row = (swatch, label) => el("li", {}, swatch, el("span", {}, label));
    const swatch = (cls, style = {}) => {
      const node = el("i", { class: `swatch ${cls}` });
      Object.assign(node.style, style);
      return node;
    };
    const list = el("ul", {});
    list.append(el("li", { class: "legend-head" }, t("legend.threat")));
    for (const zone of zones) list.append(row(swatch("threat", { background: THREAT_COLOURS[zone.level], borderColor: THREAT_COLOURS[zone.level] }), threatName(zone.level, zone.label)));
    list.append(
      row(swatch("cone"), t("legend.cone")),
      row(swatch("source"), t("legend.source")),
      el("li", { class: "legend-head" }, t("legend.risk")),
    );
    for (const grade of ["red", "orange", "yellow", "blue"]) list.append(row(swatch("risk", { background: RISK_COLOURS[grade] }), t(`risk.${grade}`)));
    list.append(
      row(swatch("muster"), t("legend.muster")),
      row(swatch("muster-unusable"), t("legend.muster_unusable")),
      row(swatch("dot moving"), t("legend.moving")),
      row(swatch("dot arrived"), t("legend.arrived")),
      row(swatch("dot trapped"), t("legend.trapped")),
      row(swatch("line route"), t("legend.route")),
      row(swatch("line escape"), t("legend.escape")),
      row(swatch("line resource-route"), t("legend.resource")),
      row(swatch("sensor-key"), t("legend.detector")),
      row(swatch("receptor"), t("legend.receptor")),
      row(swatch("basemap"), t("legend.basemap")),
    );
    box.replaceChildren(el("summary", {}, t("legend.title")), list);
  },

  paintMapTexts() {
    this.paintLegend();
    this.paintWindControl();
  },

  // -- framing -----------------------------------------------------------------------------------

  // Fit the map to `bounds` without counting it as someone's pan, clear of the legend and the
  // wind box that lie over the map.
  frame(bounds, options = {}) {
    this.framing = true;
    this.lastFrame = bounds;
    this.map.invalidateSize({ pan: false }); // the key figures or an alarm may have moved its edges
    const legend = this.legendBox?.open ? this.legendBox.offsetHeight : 0;
    const wind = this.windBox ? this.windBox.offsetHeight : 0;
    // Without animation: its zoom events fire now, while `framing` says they are not someone's.
    this.map.fitBounds(bounds, {
      paddingTopLeft: [30, 20 + wind],
      paddingBottomRight: [30, 20 + legend],
      maxZoom: 17,
      animate: false,
      ...options,
    });
    this.framing = false;
  },

  // The map's box changed (key figures, an alarm): framed again unless someone moved it.
  resizedMap() {
    this.map.invalidateSize({ pan: false });
    if (this.lastFrame && Date.now() - this.userMovedAt >= USER_MOVE_HOLD_MS) this.frame(this.lastFrame);
  },

  followUser() {
    this.userMovedAt = 0;
    const moved = () => {
      if (!this.framing) this.userMovedAt = Date.now();
    };
    this.map.on("dragstart", moved);
    this.map.on("zoomstart", moved);
  },

  // The incident framed: its threat zones, the people to move and the muster points they go
  // to; on activation and every new picture, unless the map was moved by hand in the last minute.
  frameIncident(shown) {
    if (Date.now() - this.userMovedAt < USER_MOVE_HOLD_MS) return;
    if (shown.picture.incident.id !== this.selected) return;
    const bounds = L.latLngBounds([]);
    // The zones themselves, not the wind's uncertainty cone: that would frame half the county.
    for (const f of shown.picture.threat.features) {
      if (f.properties.kind === "threat_zone") bounds.extend(L.geoJSON(f).getBounds());
    }
    const going = new Set();
    for (const person of shown.picture.evacuation.people) {
      const at = this.people.get(person.id);
      if (at) bounds.extend([at[1], at[0]]);
      if (person.muster) going.add(person.muster);
    }
    for (const id of going) {
      const area = this.musterAreas.get(id);
      if (area) bounds.extend(L.geoJSON(area).getBounds());
    }
    if (bounds.isValid()) this.frame(bounds);
    this.map.getContainer().dataset.framed = shown.picture.incident.id;
  },

  closeRoute(incidentId) {
    if (this.routePopup?.incidentId === incidentId) this.map.closePopup(this.routePopup.popup);
  },

  draw(picture) {
    const group = L.layerGroup().addTo(this.map);
    const zones = picture.threat.features
      .filter((f) => f.properties.kind === "threat_zone")
      .sort((a, b) => a.properties.level - b.properties.level);
    for (const zone of zones) {
      const level = zone.properties.level;
      const colour = THREAT_COLOURS[level] || THREAT_COLOURS[3];
      L.geoJSON(zone, {
        pane: "threat",
        style: {
          className: `rp-threat rp-threat-${level} rp-inc-${picture.incident.id}`,
          color: colour,
          fillColor: colour,
          weight: level === 3 ? 4 : 3,
          fillOpacity: 0.22,
        },
      })
        .bindTooltip(() => text(threatName(level, zone.properties.label)), { sticky: true })
        .addTo(group);
    }
    for (const f of picture.threat.features.filter((f) => f.properties.kind !== "threat_zone")) {
      L.geoJSON(f, {
        pane: "threat",
        interactive: false,
        style: { className: "rp-uncertainty", color: "#3e4c59", weight: 2, dashArray: "8 6", fill: false },
      }).addTo(group);
    }
    const location = picture.incident.location;
    if (location?.type === "Point") {
      const [lon, lat] = location.coordinates;
      L.circleMarker([lat, lon], {
        pane: "alerts", className: "rp-source", radius: 10, color: "#000", weight: 3, fillColor: "#fff", fillOpacity: 1,
      })
        .bindTooltip(() => text(t("map.source", { plan: this.planTitleOf(picture) })))
        .addTo(group);
    }
    this.drawMusterVerdicts(picture.incident.id, picture.evacuation, group);
    this.drawRoutes(picture.incident.id, picture.evacuation, group);
    this.drawResources(picture.resources, group);
    this.drawReceptorsInside(picture, group);
    if (picture.incident.id === this.selected || !this.selected) {
      this.paintWindControl();
      this.paintLegend();
    }
    return group;
  },

  planTitleOf(picture) {
    const shown = this.incidents.get(picture.incident.id);
    return shown ? this.planTitle(shown) : picture.incident.plan_id;
  },

  // Receptors inside a threat zone: ringed in the zone's colour.
  drawReceptorsInside(picture, group) {
    for (const level of ["1", "2", "3"]) {
      for (const r of picture.receptors?.[level] || []) {
        const layer = this.receptorLayers?.get(String(r.id));
        if (!layer) continue;
        const bounds = layer.getBounds ? layer.getBounds() : L.latLngBounds([layer.getLatLng()]);
        L.rectangle(bounds.pad(0.3), {
          pane: "alerts", interactive: false, className: `rp-receptor-inside rp-threat-${level}`,
          color: THREAT_COLOURS[level], weight: 4, fill: false,
        }).addTo(group);
      }
    }
  },

  // Muster points the zones rule out, outlined and crossed; those at the edge of level 1 dashed.
  drawMusterVerdicts(incidentId, evacuation, group) {
    const verdicts = [
      ...Object.entries(evacuation.unusable_musters || {}).map(([id, why]) => [id, why, "unusable"]),
      ...Object.entries(evacuation.muster_warnings || {}).map(([id, why]) => [id, why, "warning"]),
    ];
    for (const [id, why, verdict] of verdicts) {
      const area = this.musterAreas.get(id);
      if (!area) continue;
      const unusable = verdict === "unusable";
      L.geoJSON(area, {
        pane: "threat",
        style: {
          className: `rp-muster-${verdict} rp-mv-${String(id).replace(/\s/g, "_")} rp-inc-${incidentId}`,
          color: unusable ? "#000" : "#8c510a",
          weight: 4,
          dashArray: unusable ? "2 6" : "8 4",
          fillColor: unusable ? "#000" : "#8c510a",
          fillOpacity: unusable ? 0.3 : 0.1,
        },
      })
        .bindTooltip(() => text(t(unusable ? "map.muster_unusable" : "map.muster_warning", { name: this.musterName(id), why })), { sticky: true })
        .addTo(group);
    }
  },

  // The routes come as one forest: `next` leads each node towards its muster point, and
  // `escape_next` leads out of the innermost zone to where the safe part of a route begins.
  // Those routes start where people were at activation (or the last wind change); a clicked
  // dot asks for its person's route from where they are now (routeNow).
  drawRoutes(incidentId, evacuation, group) {
    const forest = routeForest(evacuation.routes);
    group.forest = forest;
    const at = (i) => [forest.nodes[i][1], forest.nodes[i][0]];
    const edges = (pointers) =>
      pointers.flatMap((j, i) => (j >= 0 && j < forest.nodes.length ? [[at(i), at(j)]] : []));
    const walk = edges(forest.next);
    const escape = edges(forest.escape_next);
    if (walk.length) {
      L.polyline(walk, { pane: "routes", className: "rp-route", color: "#2166ac", weight: 3, opacity: 0.8, interactive: false }).addTo(group);
    }
    if (escape.length) {
      L.polyline(escape, { pane: "routes", className: "rp-escape", color: "#e66101", weight: 4, dashArray: "6 4", interactive: false }).addTo(group);
    }
    const highlight = L.layerGroup().addTo(group);
    group.highlight = highlight;
    // Those with a route are dots on the people canvas (people.js, fed by refreshPeople); the
    // trapped are SVG markers here: large, labelled, above everything, impossible to miss.
    const dots = new Map();
    const cssId = (id) => String(id).replace(/\s/g, "_");
    let labelled = 0;
    for (const person of evacuation.people) {
      if (person.muster !== null) continue;
      const start = forest.start[person.id];
      const position = this.people.get(person.id) || (start !== undefined ? forest.nodes[start] : null);
      if (!position) continue;
      const dot = L.circleMarker([position[1], position[0]], {
        pane: "alerts",
        className: `rp-person rp-trapped rp-p-${cssId(person.id)} rp-inc-${cssId(incidentId)}`,
        radius: 11,
        color: "#000",
        weight: 4,
        fillColor: "#e7298a",
        fillOpacity: 1,
      }).addTo(group);
      dot.labelText = () => text(this.personText(person));
      dot.bindTooltip(dot.labelText(), labelled < TRAPPED_LABELS
        ? { permanent: true, direction: "right", className: "rp-trapped-label" }
        : {});
      labelled += 1;
      dot.on("click", (event) => {
        L.DomEvent.stopPropagation(event); // about this person: not a place picked on the map
        this.routeNow(incidentId, person.id, dot.getLatLng(), highlight);
      });
      dots.set(person.id, dot);
    }
    group.personDots = dots;
  },

  // The people canvas holds everyone with a route, of every incident shown (a person routed by
  // two incidents is drawn once, for the first).
  refreshPeople() {
    const people = [];
    const seen = new Set();
    for (const [incidentId, shown] of this.incidents) {
      const forest = shown.layers.forest;
      for (const person of shown.picture.evacuation.people) {
        if (person.muster === null || seen.has(person.id)) continue;
        const start = forest?.start[person.id];
        const lonlat = this.people.get(person.id) || (start !== undefined ? forest.nodes[start] : null);
        if (!lonlat) continue;
        seen.add(person.id);
        people.push({ id: person.id, incident: incidentId, lonlat, arrived: Boolean(this.atMuster.get(person.id)) });
      }
    }
    this.peopleLayer.setPeople(people);
  },

  // The people canvas answers clicks and hovers for its dots: a click asks for the person's
  // route from where they are now; a hover names them and where they go.
  followPeople() {
    this.peopleLayer = new PeopleLayer({ pane: "dots" }).addTo(this.map);
    this.map.getContainer().leafletMap = this.map; // Leaflet's own projection, for tests
    this.map.on("click", (event) => {
      const hit = this.peopleLayer.nearest(event.containerPoint);
      if (!hit) return;
      event.personHit = true; // the activation panel does not take it for a place
      const shown = this.incidents.get(hit.incident);
      if (shown) this.routeNow(hit.incident, hit.id, L.latLng(hit.lonlat[1], hit.lonlat[0]), shown.layers.highlight);
    });
    let pending = null;
    this.map.on("mousemove", (event) => {
      pending = event.containerPoint;
      if (this.hoverFrame) return;
      this.hoverFrame = requestAnimationFrame(() => {
        this.hoverFrame = 0;
        const hit = this.peopleLayer.nearest(pending);
        const person = hit && this.incidents.get(hit.incident)?.picture.evacuation.people.find((p) => p.id === hit.id);
        this.map.getContainer().style.cursor = person ? "pointer" : "";
        if (!person) {
          this.hoverTip?.remove();
          return;
        }
        this.hoverTip ||= L.tooltip({ className: "rp-person-tip", direction: "top", offset: [0, -8] });
        this.hoverTip.setLatLng([hit.lonlat[1], hit.lonlat[0]]).setContent(text(this.personText(person)));
        if (!this.map.hasLayer(this.hoverTip)) this.hoverTip.addTo(this.map);
      });
    });
    this.map.on("mouseout", () => this.hoverTip?.remove());
  },

  personText(person) {
    if (person.muster === null) return t("map.person_trapped", { id: person.id });
    const at = this.atMuster.get(person.id);
    if (at) return t("map.person_arrived", { id: person.id, muster: this.musterName(at) });
    return t("map.person_route", { id: person.id, muster: this.musterName(person.muster), time: duration(person.walk_time_s) });
  },

  // One person's route computed now, from their last known position, under the incident's zones
  // and wind (GET .../route?person=): people walk on after the picture's routes were drawn. One
  // request per click, none per position message. The answer is drawn as the highlighted route,
  // with a popup naming the muster point and the walk, or why there is no safe route; a refusal
  // (the incident stood down: 404) or an unreachable server is said in the popup as it is.
  async routeNow(incidentId, personId, latlng, highlight) {
    this.routeAsked += 1;
    const asked = this.routeAsked;
    highlight.clearLayers();
    const label = el("p", { class: "route-label quiet" }, t("route.computing"));
    const content = el(
      "div",
      { class: "rp-route-now", "data-person": personId, "data-incident": incidentId },
      el("strong", {}, personId),
      label,
    );
    const popup = L.popup({ className: "rp-route-popup", autoPanPadding: [20, 20] })
      .setLatLng(latlng)
      .setContent(content);
    popup.on("remove", () => {
      if (this.routeAsked === asked) this.routeAsked += 1; // an answer still on its way is dropped
      if (this.routePopup?.popup === popup) this.routePopup = null;
      highlight.clearLayers();
    });
    this.routePopup = { incidentId, popup };
    popup.openOn(this.map); // closes the popup of the route shown before, and so its highlight
    const site = encodeURIComponent(this.site.id);
    const path = `/api/sites/${site}/incidents/${encodeURIComponent(incidentId)}/route?person=${encodeURIComponent(personId)}`;
    let answer;
    try {
      answer = await api(path);
    } catch (error) {
      if (asked !== this.routeAsked) return;
      label.className = "route-label error";
      const status = error instanceof HttpError ? ` (${error.status})` : "";
      label.textContent = t("route.refused", { person: personId, status, detail: problemText(error) });
      popup.update(); // grown: laid out again, and the map pans to keep it whole
      return;
    }
    if (asked !== this.routeAsked) return; // another dot was clicked, or the popup closed
    if (answer.muster === null) {
      label.className = "route-label error";
      label.textContent = t("route.no_safe", { why: answer.trapped || t("route.no_muster") });
      popup.update();
      return;
    }
    const metres = answer.length_m === null ? "" : t("route.metres", { m: Math.round(answer.length_m) });
    label.className = "route-label";
    label.textContent = t("route.to", { muster: answer.muster, time: duration(answer.walk_time_s), metres });
    const name = this.musters.get(answer.muster);
    if (name && name !== answer.muster) content.append(el("p", { class: "route-muster quiet" }, name));
    if (answer.inside_innermost_zone) {
      content.append(el("p", { class: "route-note error" }, t("route.inside")));
    }
    const [lon, lat] = answer.from;
    const line = [[lat, lon], ...(answer.route?.coordinates || []).map(([x, y]) => [y, x])];
    if (line.length > 1) {
      L.polyline(line, { pane: "routes", className: "rp-route-chosen", color: "#f0f", weight: 5 }).addTo(highlight);
    }
    popup.update();
  },

  drawResources(resources, group) {
    for (const [kind, found] of Object.entries(resources)) {
      const nearest = found[0];
      if (!nearest) continue;
      const route = nearest.route.map(([lon, lat]) => [lat, lon]);
      if (route.length > 1) {
        L.polyline(route, {
          pane: "routes", className: "rp-resource-route", color: "#008080", weight: 3, dashArray: "2 6", interactive: false,
        }).addTo(group);
      }
      const feature = this.resourcesById.get(nearest.id);
      const point = feature?.geometry ? [feature.geometry.coordinates[1], feature.geometry.coordinates[0]] : route[0];
      if (!point) continue;
      L.circleMarker(point, {
        pane: "dots", className: "rp-resource", radius: 8, color: "#fff", weight: 2, fillColor: "#008080", fillOpacity: 1,
      })
        .bindTooltip(() => text(this.resourceText(kind, nearest)))
        .addTo(group);
    }
  },
};
