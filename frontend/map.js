// The map: the site's layers (zones by risk grade, muster points, the network), each incident's
// threat zones, routes, people and resources, and a person's route now (Wall methods, mixed into
// it by state.js). Leaflet comes from this server (/vendor/leaflet).
import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { Activation } from "./actions.js";
import { api, HttpError, problemText } from "./api.js";
import { duration, el, text } from "./dom.js";

const RISK_COLOURS = { red: "#d73027", orange: "#fc8d59", yellow: "#fee08b", blue: "#4575b4" };
const THREAT_COLOURS = { 3: "#d7191c", 2: "#fd8d3c", 1: "#fecc5c" };

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
  layer(name) {
    return api(`/api/sites/${encodeURIComponent(this.site.id)}/layers/${name}`);
  },

  async loadLayers() {
    const [me, zones, network, people, resources, sensors] = await Promise.all([
      api("/api/auth/me"),
      ...["zones", "network", "people", "resources", "sensors"].map((name) => this.layer(name)),
    ]);
    // The roles here: those held everywhere, and those granted on this site.
    this.me = { ...me, roles: [...me.roles, ...(me.site_roles?.[this.site.id] || [])] };
    const isMuster = (f) => f.properties.kind === "muster_point";
    L.geoJSON(zones, {
      pane: "zones",
      style: (f) => ({
        className: `rp-zone rp-z-${String(f.id).replace(/\s/g, "_")}${isMuster(f) ? " rp-muster" : ""}`,
        color: isMuster(f) ? "#1a9850" : "#52606d",
        weight: isMuster(f) ? 2.5 : 1,
        dashArray: isMuster(f) ? "6 4" : null,
        fillColor: isMuster(f) ? "#1a9850" : RISK_COLOURS[f.properties.risk_grade] || "#9aa5b1",
        fillOpacity: isMuster(f) ? 0.35 : 0.3,
      }),
      onEachFeature: (f, layer) => {
        const label = isMuster(f) ? `Muster point: ${f.properties.name}` : f.properties.name;
        layer.bindTooltip(text(`${label} (${f.properties.kind}, ${f.properties.risk_grade})`), { sticky: true });
      },
    }).addTo(this.map);
    for (const f of zones.features.filter(isMuster)) {
      this.musters.set(String(f.id), f.properties.name);
      this.musterAreas.set(String(f.id), f);
    }
    L.geoJSON(network, {
      pane: "network",
      interactive: false,
      style: (f) => ({
        className: "rp-network",
        color: f.properties.vehicle ? "#7b8794" : "#a3acb9",
        weight: f.properties.vehicle ? 3 : 1.5,
        opacity: 0.9,
      }),
    }).addTo(this.map);
    for (const f of people.features) {
      if (f.geometry) this.people.set(String(f.id), f.geometry.coordinates);
    }
    for (const f of resources.features) this.resourcesById.set(String(f.id), f);
    for (const f of sensors.features) this.sensors.set(String(f.id), f);
    if (this.isCommander() && !this.closed) this.activation = new Activation(this);
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
      L.geoJSON(zone, {
        pane: "threat",
        style: {
          className: `rp-threat rp-threat-${level} rp-inc-${picture.incident.id}`,
          color: THREAT_COLOURS[level] || "#d7191c",
          fillColor: THREAT_COLOURS[level] || "#d7191c",
          weight: 2,
          fillOpacity: 0.3,
        },
      })
        .bindTooltip(text(`Threat level ${level}: ${zone.properties.label || ""}`), { sticky: true })
        .addTo(group);
    }
    for (const f of picture.threat.features.filter((f) => f.properties.kind !== "threat_zone")) {
      L.geoJSON(f, {
        pane: "threat",
        interactive: false,
        style: { className: "rp-uncertainty", color: "#52606d", weight: 1, dashArray: "4 4", fill: false },
      }).addTo(group);
    }
    const location = picture.incident.location;
    if (location?.type === "Point") {
      const [lon, lat] = location.coordinates;
      L.circleMarker([lat, lon], {
        pane: "dots", className: "rp-source", radius: 8, color: "#000", weight: 3, fillColor: "#d7191c", fillOpacity: 1,
      })
        .bindTooltip(text(`Source: ${picture.incident.plan_id}`))
        .addTo(group);
    }
    this.drawMusterVerdicts(picture.incident.id, picture.evacuation, group);
    this.drawRoutes(picture.incident.id, picture.evacuation, group);
    this.drawResources(picture.resources, group);
    return group;
  },

  // Muster points the zones rule out, outlined in red and crossed; those at the edge of level 1
  // in orange. The tooltip is set as text, never as HTML.
  drawMusterVerdicts(incidentId, evacuation, group) {
    const verdicts = [
      ...Object.entries(evacuation.unusable_musters || {}).map(([id, why]) => [id, why, "unusable"]),
      ...Object.entries(evacuation.muster_warnings || {}).map(([id, why]) => [id, why, "warning"]),
    ];
    for (const [id, why, verdict] of verdicts) {
      const area = this.musterAreas.get(id);
      if (!area) continue;
      const unusable = verdict === "unusable";
      const name = this.musters.get(id) || id;
      L.geoJSON(area, {
        pane: "threat",
        style: {
          className: `rp-muster-${verdict} rp-mv-${String(id).replace(/\s/g, "_")} rp-inc-${incidentId}`,
          color: unusable ? "#b2182b" : "#d95f0e",
          weight: 4,
          dashArray: unusable ? "2 6" : "8 4",
          fillColor: unusable ? "#b2182b" : "#d95f0e",
          fillOpacity: unusable ? 0.25 : 0.1,
        },
      })
        .bindTooltip(text(`${name}: ${unusable ? "not used — " : ""}${why}`), { sticky: true })
        .addTo(group);
    }
  },

  // The routes come as one forest: `next` leads each node towards its muster point, and
  // `escape_next` leads out of the innermost zone to where the safe part of a route begins.
  // Those routes start where people were at activation (or the last wind change); a clicked
  // dot asks for its person's route from where they are now (routeNow).
  drawRoutes(incidentId, evacuation, group) {
    const forest = routeForest(evacuation.routes);
    const at = (i) => [forest.nodes[i][1], forest.nodes[i][0]];
    const edges = (pointers) =>
      pointers.flatMap((j, i) => (j >= 0 && j < forest.nodes.length ? [[at(i), at(j)]] : []));
    const walk = edges(forest.next);
    const escape = edges(forest.escape_next);
    if (walk.length) {
      L.polyline(walk, { pane: "routes", className: "rp-route", color: "#2166ac", weight: 3, opacity: 0.8, interactive: false }).addTo(group);
    }
    if (escape.length) {
      L.polyline(escape, { pane: "routes", className: "rp-escape", color: "#7b3294", weight: 3, dashArray: "6 4", interactive: false }).addTo(group);
    }
    const highlight = L.layerGroup().addTo(group);
    const dots = new Map();
    const cssId = (id) => String(id).replace(/\s/g, "_");
    for (const person of evacuation.people) {
      const start = forest.start[person.id];
      const position = this.people.get(person.id) || (start !== undefined ? forest.nodes[start] : null);
      if (!position) continue;
      const trapped = person.muster === null;
      const dot = L.circleMarker([position[1], position[0]], {
        pane: "dots",
        className: `rp-person rp-p-${cssId(person.id)} rp-inc-${cssId(incidentId)}${trapped ? " rp-trapped" : ""}`,
        radius: 4,
        color: "#fff",
        weight: 1.5,
        fillColor: trapped ? "#d7191c" : "#111",
        fillOpacity: 1,
      }).addTo(group);
      const muster = person.muster ? this.musters.get(person.muster) || person.muster : null;
      dot.bindTooltip(
        text(
          trapped
            ? `${person.id}: no safe route`
            : `${person.id} → ${muster}, ${duration(person.walk_time_s)} on foot`,
        ),
      );
      dot.on("click", (event) => {
        L.DomEvent.stopPropagation(event); // about this person: not a place picked on the map
        this.routeNow(incidentId, person.id, dot, highlight);
      });
      dots.set(person.id, dot);
    }
    group.personDots = dots;
  },

  // One person's route computed now, from their last known position, under the incident's zones
  // and wind (GET .../route?person=): people walk on after the picture's routes were drawn. One
  // request per click, none per position message. The answer is drawn as the highlighted route,
  // with a popup naming the muster point and the walk, or why there is no safe route; a refusal
  // (the incident stood down: 404) or an unreachable server is said in the popup as it is.
  async routeNow(incidentId, personId, dot, highlight) {
    this.routeAsked += 1;
    const asked = this.routeAsked;
    highlight.clearLayers();
    const label = el("p", { class: "route-label quiet" }, "Computing the route from where they are now…");
    const content = el(
      "div",
      { class: "rp-route-now", "data-person": personId, "data-incident": incidentId },
      el("strong", {}, personId),
      label,
    );
    const popup = L.popup({ className: "rp-route-popup", autoPan: false })
      .setLatLng(dot.getLatLng())
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
      label.textContent = `No route from where ${personId} is now${status}: ${problemText(error)}`;
      return;
    }
    if (asked !== this.routeAsked) return; // another dot was clicked, or the popup closed
    if (answer.muster === null) {
      label.className = "route-label error";
      label.textContent = `No safe route: ${answer.trapped || "no muster point can be reached"}`;
      return;
    }
    const metres = answer.length_m === null ? "" : ` (${Math.round(answer.length_m)} m)`;
    label.className = "route-label";
    label.textContent = `to ${answer.muster}, ${duration(answer.walk_time_s)} on foot${metres}`;
    const name = this.musters.get(answer.muster);
    if (name && name !== answer.muster) content.append(el("p", { class: "route-muster quiet" }, name));
    if (answer.inside_innermost_zone) {
      content.append(el("p", { class: "route-note error" }, "Inside the innermost zone: the route leaves it first."));
    }
    const [lon, lat] = answer.from;
    const line = [[lat, lon], ...(answer.route?.coordinates || []).map(([x, y]) => [y, x])];
    if (line.length > 1) {
      L.polyline(line, { pane: "routes", className: "rp-route-chosen", color: "#f0f", weight: 5 }).addTo(highlight);
    }
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
        pane: "dots", className: "rp-resource", radius: 6, color: "#fff", weight: 2, fillColor: "#008080", fillOpacity: 1,
      })
        .bindTooltip(text(`${kind}: ${feature?.properties.name || nearest.id}, ${duration(nearest.travel_time_s)} (${nearest.mode})`))
        .addTo(group);
    }
  },
};
