// The Rallypoint map wall: sign in, choose a site, draw its layers, then follow its incidents
// live over the websocket (docs/protocol.md). Plain ES module; Leaflet is served by Rallypoint
// from its npm install, and nothing is loaded from anywhere else.
import * as L from "/vendor/leaflet/leaflet-src.esm.js";

const TOKEN_KEY = "rallypoint.token";
const SITE_KEY = "rallypoint.site";
const RISK_COLOURS = { red: "#d73027", orange: "#fc8d59", yellow: "#fee08b", blue: "#4575b4" };
const THREAT_COLOURS = { 3: "#d7191c", 2: "#fd8d3c", 1: "#fecc5c" };
const STEP_EVENTS = {
  "plan.step.ready": "ready",
  "plan.step.acknowledged": "acknowledged",
  "plan.step.started": "in_progress",
  "plan.step.done": "done",
  "plan.step.skipped": "skipped",
  "plan.step.failed": "failed",
};
// Events after which the picture itself changed: an `incident` message normally follows; if it
// does not (escalation, or events caught up after a reconnect), the picture is fetched.
const PICTURE_EVENTS = new Set([
  "incident.activated",
  "incident.wind_changed",
  "plan.run.escalated",
  "plan.run.deescalated",
]);
const PICTURE_WAIT_MS = 500;
const SILENCE_MS = 60_000; // no message (not even a ping) for this long: reconnect
const RETRY_MAX_MS = 15_000;

const $ = (id) => document.getElementById(id);

// -- small helpers ------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function show(section) {
  for (const id of ["login", "sites", "wall"]) $(id).hidden = id !== section;
  $("sign-out").hidden = section === "login";
  $("change-site").hidden = section !== "wall";
}

function setStatus(state, text = state) {
  const badge = $("status");
  badge.dataset.state = state;
  badge.textContent = text;
}

class HttpError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && path !== "/api/auth/login") {
    signOut("Your session has ended: sign in again.");
    throw new HttpError(401, "signed out");
  }
  const body = response.headers.get("content-type")?.includes("json")
    ? await response.json()
    : await response.text();
  if (!response.ok) throw new HttpError(response.status, body?.detail || body?.title || String(body));
  return body;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}

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

// -- signing in, choosing a site ---------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  const form = event.target;
  $("login-error").textContent = "";
  try {
    const answer = await api("/api/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.username.value, password: form.password.value }),
    });
    sessionStorage.setItem(TOKEN_KEY, answer.access_token);
    form.password.value = "";
    await chooseSite();
  } catch (error) {
    $("login-error").textContent =
      error.status === 401 ? "Wrong username or password." : `Sign-in failed: ${error.message}`;
  }
}

function signOut(message = "") {
  const token = sessionStorage.getItem(TOKEN_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  if (token) {
    // Revoke the token on the server too; the page is signed out either way.
    fetch("/api/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } })
      .catch(() => {});
  }
  wall?.close();
  wall = null;
  show("login");
  $("login-error").textContent = message;
  setStatus("offline");
}

async function chooseSite() {
  show("sites");
  $("site-name").textContent = "";
  const list = $("site-list");
  list.replaceChildren();
  $("sites-error").textContent = "";
  let sites;
  try {
    ({ sites } = await api("/api/sites"));
  } catch (error) {
    if (error.status !== 401) $("sites-error").textContent = `Cannot list sites: ${error.message}`;
    return;
  }
  const remembered = sessionStorage.getItem(SITE_KEY);
  const again = sites.find((s) => s.id === remembered);
  if (again) return openSite(again);
  if (!sites.length) $("sites-error").textContent = "There is no site yet.";
  for (const site of sites) {
    const button = el("button", { type: "button", "data-site": site.id }, `${site.name} (${site.id})`);
    button.addEventListener("click", () => openSite(site));
    list.append(el("li", {}, button));
  }
}

let wall = null;

async function openSite(site) {
  sessionStorage.setItem(SITE_KEY, site.id);
  wall?.close();
  show("wall");
  $("site-name").textContent = site.name;
  const opened = new Wall(site);
  wall = opened;
  try {
    await opened.loadLayers();
  } catch (error) {
    if (error.status !== 401 && !opened.closed) {
      $("wall-error").textContent = `Cannot load the site: ${error.message}`;
    }
    return;
  }
  if (wall === opened) opened.connect(); // unless the user left meanwhile
}

// -- the wall -----------------------------------------------------------------------------------

class Wall {
  constructor(site) {
    this.site = site;
    this.closed = false;
    this.socket = null;
    this.lastSeq = null; // the last event sequence number seen: a reconnect resumes after it
    this.retryMs = 1000;
    this.retryTimer = null;
    this.silenceTimer = null;
    this.incidents = new Map(); // id -> {picture, layers, element, events}
    this.pending = new Map(); // incident id -> timer fetching its picture
    this.people = new Map(); // person id -> [lon, lat]
    this.resourcesById = new Map(); // resource id -> feature
    this.musters = new Map(); // muster zone id -> name
    this.time = this.timeFormat(site.timezone);

    const container = $("map");
    container.replaceChildren();
    this.map = L.map(container, { zoomSnap: 0.25, attributionControl: false });
    // Panes keep the drawing order whatever arrives first.
    for (const [name, z] of [["zones", 410], ["network", 420], ["threat", 430], ["routes", 440], ["dots", 450]]) {
      this.map.createPane(name).style.zIndex = z;
    }
    const [w, s, e, n] = site.bbox;
    this.map.fitBounds([[s, w], [n, e]]);
    L.control.scale({ imperial: false }).addTo(this.map);
    $("wall-error").textContent = "";
    $("headcount-list").replaceChildren();
    $("headcount-total").textContent = "–";
    for (const card of document.querySelectorAll("#incidents .incident")) card.remove();
    $("no-incident").hidden = false;
  }

  timeFormat(timezone) {
    const options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
    try {
      return new Intl.DateTimeFormat(undefined, { ...options, timeZone: timezone });
    } catch {
      return new Intl.DateTimeFormat(undefined, { ...options, timeZone: "UTC" });
    }
  }

  layer(name) {
    return api(`/api/sites/${encodeURIComponent(this.site.id)}/layers/${name}`);
  }

  async loadLayers() {
    const [zones, network, people, resources] = await Promise.all(
      ["zones", "network", "people", "resources"].map((name) => this.layer(name)),
    );
    const isMuster = (f) => f.properties.kind === "muster_point";
    L.geoJSON(zones, {
      pane: "zones",
      style: (f) => ({
        className: isMuster(f) ? "rp-zone rp-muster" : "rp-zone",
        color: isMuster(f) ? "#1a9850" : "#52606d",
        weight: isMuster(f) ? 2.5 : 1,
        dashArray: isMuster(f) ? "6 4" : null,
        fillColor: isMuster(f) ? "#1a9850" : RISK_COLOURS[f.properties.risk_grade] || "#9aa5b1",
        fillOpacity: isMuster(f) ? 0.35 : 0.3,
      }),
      onEachFeature: (f, layer) => {
        const label = isMuster(f) ? `Muster point: ${f.properties.name}` : f.properties.name;
        layer.bindTooltip(`${label} (${f.properties.kind}, ${f.properties.risk_grade})`, { sticky: true });
      },
    }).addTo(this.map);
    for (const f of zones.features.filter(isMuster)) this.musters.set(String(f.id), f.properties.name);
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
  }

  // -- the socket --------------------------------------------------------------------------------

  connect() {
    if (this.closed) return;
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return signOut();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws?access_token=${encodeURIComponent(token)}`;
    setStatus(this.lastSeq === null ? "connecting" : "reconnecting");
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      socket.send(
        JSON.stringify({ type: "subscribe", site: this.site.id, incident: null, last_seq: this.lastSeq }),
      );
      this.heard();
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      this.heard();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      try {
        this.receive(message);
      } catch (error) {
        // One bad message must not stop the wall; the next snapshot puts it right.
        console.warn("message not applied", message.type, error);
      }
    });
    socket.addEventListener("close", (event) => this.dropped(socket, event));
  }

  heard() {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => this.socket?.close(4000, "silent"), SILENCE_MS);
  }

  dropped(socket, event) {
    if (socket !== this.socket || this.closed) return;
    clearTimeout(this.silenceTimer);
    this.socket = null;
    if (event.code === 4401) return signOut("Your session has ended: sign in again.");
    if (event.code === 4403) {
      setStatus("offline");
      $("wall-error").textContent = "Your role may not watch the wall.";
      return;
    }
    if (event.code === 4404) return chooseSite();
    // A resync (4008) reconnects at once; anything else backs off, up to RETRY_MAX_MS.
    const wait = event.code === 4008 ? 0 : this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    setStatus("reconnecting", wait ? `offline: retry in ${Math.round(wait / 1000)} s` : "reconnecting");
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.silenceTimer);
    for (const timer of this.pending.values()) clearTimeout(timer);
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, "closed");
    this.map.remove();
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  seen(seq) {
    if (Number.isInteger(seq) && (this.lastSeq === null || seq > this.lastSeq)) this.lastSeq = seq;
  }

  live() {
    this.retryMs = 1000;
    setStatus("live");
  }

  receive(message) {
    switch (message.type) {
      case "ping":
        this.send({ type: "pong" });
        break;
      case "snapshot":
        this.seen(message.seq);
        this.replaceAll(message.incidents);
        this.live();
        break;
      case "caught_up":
        this.seen(message.seq);
        this.live();
        break;
      case "event":
        if (this.lastSeq !== null && message.seq <= this.lastSeq) break; // seen already: never twice
        this.seen(message.seq);
        this.apply(message.event);
        break;
      case "incident":
        this.seen(message.seq);
        this.render(message.snapshot);
        break;
      case "positions":
        this.move(message.positions, message.headcount);
        break;
      case "resync":
        // Too far behind: the server closes (4008) and we come back after the last seq seen.
        setStatus("reconnecting", "resync");
        break;
      case "error":
        $("wall-error").textContent = message.detail;
        break;
      default:
        break;
    }
  }

  // -- incidents ---------------------------------------------------------------------------------

  replaceAll(pictures) {
    const keep = new Set(pictures.map((p) => p.incident.id));
    for (const id of [...this.incidents.keys()]) if (!keep.has(id)) this.remove(id);
    for (const picture of pictures) this.render(picture);
    if (!pictures.length) this.showHeadcount(null);
  }

  remove(id) {
    const shown = this.incidents.get(id);
    if (!shown) return;
    shown.layers.remove();
    shown.element.remove();
    this.incidents.delete(id);
    $("no-incident").hidden = this.incidents.size > 0;
  }

  render(picture) {
    const id = picture.incident.id;
    clearTimeout(this.pending.get(id));
    this.pending.delete(id);
    const old = this.incidents.get(id);
    if (old && old.picture.seq > picture.seq) return; // a newer picture is already shown
    if (picture.incident.status !== "active") return this.remove(id);
    const events = old ? old.events.filter((e) => e.seq > picture.seq) : [];
    if (old) {
      old.layers.remove();
      old.element.remove();
    }
    const shown = { picture, layers: this.draw(picture), element: this.card(picture), events };
    this.incidents.set(id, shown);
    $("incidents").append(shown.element);
    $("no-incident").hidden = true;
    for (const event of events) this.applyToStep(shown, event); // events newer than a fetched picture
    this.showHeadcount(picture.headcount);
  }

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
          className: `rp-threat rp-threat-${level}`,
          color: THREAT_COLOURS[level] || "#d7191c",
          fillColor: THREAT_COLOURS[level] || "#d7191c",
          weight: 2,
          fillOpacity: 0.3,
        },
      })
        .bindTooltip(`Threat level ${level}: ${zone.properties.label || ""}`, { sticky: true })
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
        .bindTooltip(`Source: ${picture.incident.plan_id}`)
        .addTo(group);
    }
    this.drawRoutes(picture.evacuation, group);
    this.drawResources(picture.resources, group);
    return group;
  }

  // The routes come as one forest: `next` leads each node towards its muster point, and
  // `escape_next` leads out of the innermost zone to where the safe part of a route begins.
  drawRoutes(evacuation, group) {
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
    for (const person of evacuation.people) {
      const start = forest.start[person.id];
      const position = this.people.get(person.id) || (start !== undefined ? forest.nodes[start] : null);
      if (!position) continue;
      const trapped = person.muster === null;
      const dot = L.circleMarker([position[1], position[0]], {
        pane: "dots",
        className: `rp-person rp-p-${person.id.replace(/\s/g, "_")}${trapped ? " rp-trapped" : ""}`,
        radius: 4,
        color: "#fff",
        weight: 1.5,
        fillColor: trapped ? "#d7191c" : "#111",
        fillOpacity: 1,
      }).addTo(group);
      const muster = person.muster ? this.musters.get(person.muster) || person.muster : null;
      dot.bindTooltip(
        trapped
          ? `${person.id}: no safe route`
          : `${person.id} → ${muster}, ${duration(person.walk_time_s)} on foot`,
      );
      dot.on("click", () => {
        highlight.clearLayers();
        if (start === undefined) return;
        const line = [[position[1], position[0]], ...this.followRoute(forest, start).map(at)];
        L.polyline(line, { pane: "routes", className: "rp-route-chosen", color: "#f0f", weight: 5 }).addTo(highlight);
      });
      dots.set(person.id, dot);
    }
    group.personDots = dots;
  }

  // One person's nodes, following the pointers (escape first, then the walk to the muster point).
  followRoute(forest, start) {
    const nodes = [];
    let escaping = forest.escape_next[start] >= 0;
    for (let i = start, n = 0; i >= 0 && n <= forest.nodes.length; n += 1) {
      nodes.push(i);
      if (escaping && forest.escape_next[i] >= 0) {
        i = forest.escape_next[i];
      } else {
        escaping = false;
        i = forest.next[i];
      }
    }
    return nodes;
  }

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
        .bindTooltip(`${kind}: ${feature?.properties.name || nearest.id}, ${duration(nearest.travel_time_s)} (${nearest.mode})`)
        .addTo(group);
    }
  }

  card(picture) {
    const { incident, plan, exposure, evacuation } = picture;
    const counts = exposure?.counts || {};
    const inside = [3, 2, 1].map((level) => `L${level}: ${counts[level]?.people ?? 0}`).join(", ");
    const moving = evacuation.people.length;
    const trapped = evacuation.trapped.length;
    const steps = el("ol", { class: "steps" });
    for (const step of plan.steps) steps.append(this.stepItem(step));
    const nearest = el("ul", { class: "nearest" });
    for (const [kind, found] of Object.entries(picture.resources)) {
      if (found[0]) nearest.append(el("li", {}, `${kind}: ${found[0].id}, ${duration(found[0].travel_time_s)}`));
    }
    return el(
      "article",
      { class: "incident", "data-incident": incident.id },
      el("h2", {}, `${incident.plan_id} — ${plan.level}`),
      el("p", { class: "facts" }, `Activated ${this.at(incident.activated_at)} by ${incident.activated_by}`),
      el("p", { class: "facts" }, `People inside threat zones: ${inside}`),
      el("p", { class: "facts" }, `To move: ${moving}${trapped ? `, ${trapped} without a safe route` : ""}`),
      el("h3", {}, "Plan steps"),
      steps,
      el("h3", {}, "Nearest resources"),
      nearest,
    );
  }

  stepItem(step) {
    const item = el(
      "li",
      { class: "step", "data-step": step.id, "data-status": step.status },
      el("span", { class: "step-id" }, step.id),
      el("span", { class: "step-status" }, step.status.replace("_", " ")),
      el("span", { class: "step-meta" }, ""),
    );
    this.paintStep(item, step);
    return item;
  }

  paintStep(item, step) {
    item.dataset.status = step.status;
    item.classList.toggle("overdue", Boolean(step.overdue) && !["done", "skipped"].includes(step.status));
    item.classList.toggle("withdrawn", Boolean(step.withdrawn));
    item.querySelector(".step-status").textContent = step.status.replace("_", " ");
    const due = step.due_at ? `due ${this.at(step.due_at)}` : "no deadline";
    const overdue = item.classList.contains("overdue") ? " — OVERDUE" : "";
    item.querySelector(".step-meta").textContent = `${step.role} · ${step.level} · ${due}${overdue}`;
  }

  at(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : this.time.format(date);
  }

  apply(event) {
    const id = event.incident_id;
    if (event.type === "plan.run.stood_down") return this.remove(id);
    if (PICTURE_EVENTS.has(event.type)) this.expectPicture(id);
    const shown = this.incidents.get(id);
    if (!shown) return;
    shown.events.push(event);
    if (shown.events.length > 500) shown.events.splice(0, shown.events.length - 500);
    this.applyToStep(shown, event);
  }

  applyToStep(shown, event) {
    const stepId = event.data?.step_id;
    if (!stepId || !event.type.startsWith("plan.step.")) return;
    const step = shown.picture.plan.steps.find((s) => s.id === stepId);
    if (!step) return;
    if (event.type === "plan.step.overdue") step.overdue = true;
    else if (STEP_EVENTS[event.type]) step.status = STEP_EVENTS[event.type];
    else return;
    const item = shown.element.querySelector(`li[data-step="${CSS.escape(stepId)}"]`);
    if (item) this.paintStep(item, step);
  }

  // The picture changed: wait briefly for the `incident` message, then fetch it.
  expectPicture(id) {
    if (!id || this.pending.has(id)) return;
    const timer = setTimeout(async () => {
      try {
        const picture = await api(`/api/sites/${encodeURIComponent(this.site.id)}/incidents/${encodeURIComponent(id)}`);
        if (!this.closed && this.pending.get(id) === timer) this.render(picture);
      } catch (error) {
        if (error.status === 404) this.remove(id); // stood down meanwhile
      } finally {
        if (this.pending.get(id) === timer) this.pending.delete(id);
      }
    }, PICTURE_WAIT_MS);
    this.pending.set(id, timer);
  }

  move(positions, headcount) {
    for (const [id, lonlat] of Object.entries(positions || {})) {
      this.people.set(id, lonlat);
      for (const shown of this.incidents.values()) {
        shown.layers.personDots?.get(id)?.setLatLng([lonlat[1], lonlat[0]]);
      }
    }
    if (headcount) this.showHeadcount(headcount);
  }

  showHeadcount(headcount) {
    const list = $("headcount-list");
    list.replaceChildren();
    if (!headcount) {
      $("headcount-total").textContent = "–";
      return;
    }
    const missing = headcount.on_site - headcount.accounted;
    $("headcount-total").textContent =
      `${headcount.accounted} of ${headcount.on_site} at muster points` + (missing ? `, ${missing} not yet` : "");
    const expected = new Map();
    for (const shown of this.incidents.values()) {
      for (const p of shown.picture.evacuation.people) {
        if (p.muster) expected.set(p.muster, (expected.get(p.muster) || 0) + 1);
      }
    }
    for (const [muster, count] of Object.entries(headcount.at)) {
      const name = this.musters.get(muster) || muster;
      const due = expected.get(muster);
      list.append(el("li", { "data-muster": muster }, `${name}: ${count}${due ? ` (expecting ${due})` : ""}`));
    }
  }
}

// -- start --------------------------------------------------------------------------------------

$("login-form").addEventListener("submit", login);
$("sign-out").addEventListener("click", () => signOut());
$("change-site").addEventListener("click", () => {
  sessionStorage.removeItem(SITE_KEY);
  wall?.close();
  wall = null;
  setStatus("offline");
  chooseSite();
});

if (sessionStorage.getItem(TOKEN_KEY)) chooseSite();
else show("login");
