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
// The moves a step allows from each status (plans/engine.py); the server has the last word.
const STEP_MOVES = {
  waiting: ["skip"],
  ready: ["acknowledge", "skip"],
  acknowledged: ["start", "skip", "fail"],
  in_progress: ["complete", "skip", "fail"],
};
const STEP_ACTIONS = {
  acknowledge: { label: "Acknowledge" },
  start: { label: "Start" },
  complete: { label: "Complete", confirm: "Complete" },
  skip: { label: "Skip", confirm: "Skip step" },
  fail: { label: "Fail", confirm: "Fail step" },
};
// Events after which the picture itself changed: an `incident` message normally follows; if it
// does not (escalation, or events caught up after a reconnect), the picture is fetched.
const PICTURE_EVENTS = new Set([
  "incident.activated",
  "incident.wind_changed",
  "plan.run.escalated",
  "plan.run.deescalated",
  "incident.network_changed",
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

// Server strings (zone, muster and resource names, labels) go into tooltips as text, never as
// HTML: Leaflet sets a string tooltip as markup.
function text(value) {
  return el("span", {}, String(value));
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

// A refused request: its status, and the server's problem+json (`detail`, `errors`) when it sent one.
class HttpError extends Error {
  constructor(status, detail, problem = null) {
    super(detail);
    this.status = status;
    this.problem = problem;
  }

  get fieldErrors() {
    return Array.isArray(this.problem?.errors) ? this.problem.errors : [];
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
  if (!response.ok) {
    const problem = body && typeof body === "object" ? body : null;
    throw new HttpError(response.status, problem?.detail || problem?.title || String(body), problem);
  }
  return body;
}

function send(method, path, body) {
  const options = { method };
  if (body !== undefined) {
    options.headers = { "Content-Type": "application/json" };
    options.body = JSON.stringify(body);
  }
  return api(path, options);
}

// What went wrong, in the server's own words: its `detail`, and each field it names with why.
function problemText(error) {
  if (!(error instanceof HttpError)) return `The server could not be reached: ${error.message}`;
  const named = error.fieldErrors
    .map((e) => `${e.field}: ${e.reason}`)
    .filter((text) => !error.message.includes(text));
  return named.length ? `${error.message} (${named.join("; ")})` : error.message;
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
    const wait = error.problem?.retry_after_s;
    $("login-error").textContent =
      error.status === 401
        ? "Wrong username or password."
        : error.status === 429
          ? `Too many failed sign-ins: try again in ${wait ? duration(wait) : "a while"}.`
          : `Sign-in failed: ${error.message}`;
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
    this.musterAreas = new Map(); // muster id -> its zone feature (the incident marks verdicts)
    this.resourcesById = new Map(); // resource id -> feature
    this.musters = new Map(); // muster zone id -> name
    this.sensors = new Map(); // sensor id -> feature
    this.me = null; // the signed-in user: {username, display_name, roles}
    this.templates = new Map(); // "plan@version" -> promise of the plan's template (or null)
    this.templateSteps = new Map(); // "plan@version" -> Map(step id -> the template's step)
    this.activation = null; // the activation panel, for commanders
    this.routeAsked = 0; // counts route requests (routeNow): only the newest answer is drawn
    this.routePopup = null; // {incidentId, popup} of the route shown now
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
    $("activate").hidden = true;
    $("activate-result").replaceChildren();
    $("proposals").replaceChildren();
    $("proposals").hidden = true;
  }

  isCommander() {
    return Boolean(this.me?.roles?.includes("commander"));
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
  }

  // -- the socket --------------------------------------------------------------------------------

  async connect() {
    if (this.closed) return;
    if (!sessionStorage.getItem(TOKEN_KEY)) return signOut();
    setStatus(this.lastSeq === null ? "connecting" : "reconnecting");
    // The socket opens with a single-use ticket (30 s): the token itself never goes in a URL.
    let ticket;
    try {
      ({ ticket } = await api("/api/auth/ws-ticket", { method: "POST" }));
    } catch (error) {
      if (this.closed || error.status === 401) return; // a 401 has signed out already
      const wait = this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
      setStatus("reconnecting", `offline: retry in ${Math.round(wait / 1000)} s`);
      this.retryTimer = setTimeout(() => this.connect(), wait);
      return;
    }
    if (this.closed) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws?ticket=${encodeURIComponent(ticket)}`;
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
    this.activation?.close();
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
        // Where everyone is now: the people layer may still hold older positions.
        for (const [id, at] of Object.entries(message.positions || {})) this.people.set(id, at.slice(0, 2));
        this.replaceAll(message.incidents);
        showRecovery(message.recovery, message.quarantined);
        this.live();
        break;
      case "recovery":
        showRecovery(message.recovery, message.quarantined);
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
    this.closeRoute(id);
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
      this.closeRoute(id); // drawn under the zones of the picture being replaced
      old.layers.remove();
      old.element.remove();
    }
    const key = `${picture.incident.plan_id}@${picture.incident.plan_version}`;
    const shown = { picture, layers: this.draw(picture), element: null, events, key, layersChanged: old?.layersChanged };
    shown.element = this.card(shown);
    this.incidents.set(id, shown);
    $("incidents").append(shown.element);
    $("no-incident").hidden = true;
    for (const event of events) this.applyToPicture(shown, event); // events newer than a fetched picture
    this.showHeadcount(picture.headcount);
    if (!this.templateSteps.has(key)) {
      // The plan's own text: step titles, what counts as done, which steps are optional.
      this.template(picture.incident.plan_id, picture.incident.plan_version).then(() => {
        if (this.incidents.get(id) === shown) this.paintSteps(shown);
      });
    }
  }

  closeRoute(incidentId) {
    if (this.routePopup?.incidentId === incidentId) this.map.closePopup(this.routePopup.popup);
  }

  // A plan's template (one version), fetched once; null if it cannot be read.
  template(planId, version) {
    const key = `${planId}@${version}`;
    if (!this.templates.has(key)) {
      const query = version ? `?version=${encodeURIComponent(version)}` : "";
      const path = `/api/sites/${encodeURIComponent(this.site.id)}/plans/${encodeURIComponent(planId)}${query}`;
      const loaded = api(path).then(
        (plan) => {
          const steps = new Map();
          for (const pack of Object.values(plan.template.levels || {})) {
            for (const step of pack.steps || []) steps.set(step.id, step);
          }
          if (version) this.templateSteps.set(key, steps);
          return plan.template;
        },
        (error) => {
          this.templates.delete(key); // try again next time
          console.warn(`plan ${key} not readable`, error);
          return null;
        },
      );
      this.templates.set(key, loaded);
    }
    return this.templates.get(key);
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
  }

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
  }

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
  }

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
        .bindTooltip(text(`${kind}: ${feature?.properties.name || nearest.id}, ${duration(nearest.travel_time_s)} (${nearest.mode})`))
        .addTo(group);
    }
  }

  card(shown) {
    const { incident, plan, exposure, evacuation } = shown.picture;
    const counts = exposure?.counts || {};
    const inside = [3, 2, 1].map((level) => `L${level}: ${counts[level]?.people ?? 0}`).join(", ");
    const moving = evacuation.people.length;
    const trapped = evacuation.trapped.length;
    const steps = el("ol", { class: "steps" });
    for (const step of plan.steps) steps.append(this.stepItem(step, shown));
    const nearest = el("ul", { class: "nearest" });
    for (const [kind, found] of Object.entries(shown.picture.resources)) {
      if (found[0]) nearest.append(el("li", {}, `${kind}: ${found[0].id}, ${duration(found[0].travel_time_s)}`));
    }
    return el(
      "article",
      { class: "incident", "data-incident": incident.id },
      el("h2", {}, `${incident.plan_id} — ${plan.level}`),
      el("p", { class: "facts" }, `Activated ${this.at(incident.activated_at)} by ${incident.activated_by}`),
      el("p", { class: "facts" }, `People inside threat zones: ${inside}`),
      el("p", { class: "facts" }, `To move: ${moving}${trapped ? `, ${trapped} without a safe route` : ""}`),
      ...this.musterVerdicts(shown),
      ...this.threatNotes(shown),
      this.dutiesSection(shown),
      el("h3", {}, "Plan steps"),
      steps,
      el("h3", {}, "Nearest resources"),
      nearest,
    );
  }

  // Muster points the zones make unusable (never routed to) or reach at their edge (a warning),
  // and what to do when none is usable.
  musterVerdicts(shown) {
    const { evacuation } = shown.picture;
    const out = [];
    const none = evacuation.no_usable_muster;
    if (none) {
      const what = none.shelter_in_place ? `Shelter in place: ${none.shelter_in_place}` : "The plan gives no shelter-in-place instruction.";
      out.push(el("p", { class: "alert no-muster", role: "alert" }, `No usable muster point. ${what}`));
    }
    for (const [muster, why] of Object.entries(evacuation.unusable_musters || {})) {
      out.push(el("p", { class: "alert muster-unusable", "data-muster": muster }, `${this.musters.get(muster) || muster}: not used — ${why}`));
    }
    for (const [muster, why] of Object.entries(evacuation.muster_warnings || {})) {
      out.push(el("p", { class: "warning muster-warning", "data-muster": muster }, `${this.musters.get(muster) || muster}: ${why}`));
    }
    if (shown.layersChanged) out.push(el("p", { class: "warning layers-changed", role: "status" }, shown.layersChanged));
    return out;
  }

  // What the hazard model assumed or could not give (a missing level of concern, a dense gas).
  threatNotes(shown) {
    const notes = shown.picture.threat?.properties?.notes || [];
    if (!notes.length) return [];
    const list = el("ul", { class: "threat-notes" });
    for (const note of notes) list.append(el("li", {}, note));
    return [el("h3", {}, "Threat zone notes"), list];
  }

  stepItem(step, shown) {
    const item = el(
      "li",
      { class: "step", "data-step": step.id, "data-status": step.status },
      el("span", { class: "step-id" }, step.id),
      el("span", { class: "step-status" }, step.status.replace("_", " ")),
      el("span", { class: "step-title" }, ""),
      el("span", { class: "step-meta" }, ""),
      el("div", { class: "step-actions" }),
      el("form", { class: "step-form", hidden: true }),
      el("p", { class: "step-error error", role: "alert" }),
    );
    this.paintStep(item, step, shown);
    return item;
  }

  paintStep(item, step, shown) {
    item.dataset.status = step.status;
    item.classList.toggle("overdue", Boolean(step.overdue) && !["done", "skipped"].includes(step.status));
    item.classList.toggle("withdrawn", Boolean(step.withdrawn));
    item.querySelector(".step-status").textContent = step.status.replace("_", " ");
    const due = step.due_at ? `due ${this.at(step.due_at)}` : "no deadline";
    const overdue = item.classList.contains("overdue") ? " — OVERDUE" : "";
    item.querySelector(".step-meta").textContent = `${this.roleName(shown, step.role)} · ${step.level} · ${due}${overdue}`;
    const about = this.templateSteps.get(shown.key)?.get(step.id);
    item.querySelector(".step-title").textContent = about?.title || "";
    this.paintActions(item, step, shown, about);
  }

  paintSteps(shown) {
    for (const step of shown.picture.plan.steps) {
      const item = shown.element.querySelector(`li[data-step="${CSS.escape(step.id)}"]`);
      if (item) this.paintStep(item, step, shown);
    }
  }

  roleName(shown, role) {
    return shown.picture.plan.roles?.find((r) => r.id === role)?.name || role;
  }

  // -- acting on steps ---------------------------------------------------------------------------

  // A commander may act on every step; a responder on the steps whose plan role their duty in
  // this incident gives them. The server decides in the end: what it refuses is shown.
  mayAct(step, shown) {
    if (!this.me || step.withdrawn) return false;
    if (this.isCommander()) return true;
    if (!this.me.roles?.includes("responder")) return false;
    return (shown.picture.plan.duties?.[step.role] || []).includes(this.me.username);
  }

  // The moves that make sense from a step's status (the plan engine's rules).
  actionsFor(step, shown, about) {
    if (!this.mayAct(step, shown)) return [];
    const moves = STEP_MOVES[step.status] || [];
    // Only the commander skips a step that is not optional.
    const skips = this.isCommander() || Boolean(about?.optional);
    return moves.filter((move) => move !== "skip" || skips);
  }

  paintActions(item, step, shown, about) {
    const actions = this.actionsFor(step, shown, about);
    const doneWhen = about?.done_when?.kind || "";
    const key = `${step.status}|${actions.join(",")}|${doneWhen}`;
    if (item.dataset.actions === key) return; // unchanged: keep a half-typed reason
    item.dataset.actions = key;
    const box = item.querySelector(".step-actions");
    const form = item.querySelector(".step-form");
    form.hidden = true;
    form.replaceChildren();
    box.replaceChildren();
    for (const action of actions) {
      const { label } = STEP_ACTIONS[action];
      const button = el(
        "button",
        { type: "button", "data-action": action, title: `${label} step ${step.id}` },
        this.actionField(action, about) ? `${label}…` : label,
      );
      button.addEventListener("click", () => this.chooseAction(item, step, shown, action));
      box.append(button);
    }
  }

  // Skip and fail ask for a reason; completing a step done by a value or an action asks for it.
  chooseAction(item, step, shown, action) {
    const about = this.templateSteps.get(shown.key)?.get(step.id);
    const field = this.actionField(action, about);
    if (!field) return this.act(item, step, shown, action, {});
    const form = item.querySelector(".step-form");
    const input = el("input", {
      name: field.name,
      type: field.type,
      autocomplete: "off",
      placeholder: field.placeholder || "",
    });
    if (field.type === "number") input.step = "any";
    const submit = el("button", { type: "submit", "data-confirm": action }, STEP_ACTIONS[action].confirm);
    const cancel = el("button", { type: "button", class: "quiet-button" }, "Cancel");
    form.replaceChildren(el("label", {}, `${field.label} `, input), submit, cancel);
    form.dataset.action = action;
    form.hidden = false;
    cancel.addEventListener("click", () => {
      form.hidden = true;
      form.replaceChildren();
      item.querySelector(".step-error").textContent = "";
    });
    form.onsubmit = (event) => {
      event.preventDefault();
      const value = input.value;
      let body = {};
      if (field.name === "value") body = value === "" ? {} : { value: Number(value) };
      else if (value.trim()) body = { [field.name]: value.trim() };
      // An empty reason is sent as such: the server says what it needs, and that is shown.
      else if (field.name === "reason") body = { reason: "" };
      this.act(item, step, shown, action, body);
    };
    input.focus();
  }

  actionField(action, about) {
    if (action === "skip" || action === "fail") {
      return { name: "reason", type: "text", label: `Why ${action === "skip" ? "skip" : "did it fail"}?` };
    }
    if (action !== "complete") return null;
    const done = about?.done_when;
    const name = done?.name ? done.name.replaceAll("_", " ") : "";
    if (done?.kind === "value") {
      return { name: "value", type: "number", label: `${name || "value"}${done.unit ? ` (${done.unit})` : ""}` };
    }
    if (done?.kind === "action") {
      return { name: "reference", type: "text", label: `Reference${name ? ` (${name})` : ""}`, placeholder: "e.g. call log no." };
    }
    return null;
  }

  async act(item, step, shown, action, body) {
    const error = item.querySelector(".step-error");
    const controls = item.querySelectorAll(".step-actions button, .step-form button");
    error.textContent = "";
    for (const control of controls) control.disabled = true;
    const site = encodeURIComponent(this.site.id);
    const incident = encodeURIComponent(shown.picture.incident.id);
    try {
      await send("POST", `/api/sites/${site}/incidents/${incident}/steps/${encodeURIComponent(step.id)}/${action}`, body);
      // Done: the step's event comes over the websocket and repaints the step (once).
      const form = item.querySelector(".step-form");
      if (form.dataset.action === action) form.hidden = true;
    } catch (failure) {
      if (failure.status === 401) return;
      error.textContent = `${STEP_ACTIONS[action].label} refused: ${problemText(failure)}`;
      for (const control of controls) control.disabled = false;
    }
  }

  // -- duties --------------------------------------------------------------------------------------

  // Who holds which plan role in this incident; a commander assigns and releases them.
  dutiesSection(shown) {
    const section = el("section", { class: "duties" });
    if (!("duties" in shown.picture.plan)) {
      section.hidden = true; // a server without duty assignments
      return section;
    }
    section.append(el("h3", {}, "Duties"), el("ul", { class: "duty-list" }));
    if (this.isCommander()) {
      const roles = el("select", { name: "role", required: true });
      for (const role of this.planRoles(shown)) roles.append(el("option", { value: role.id }, role.name));
      const username = el("input", { name: "username", required: true, autocomplete: "off" });
      const form = el(
        "form",
        { class: "duty-form" },
        el("label", {}, "Role ", roles),
        el("label", {}, "Username ", username),
        el("button", { type: "submit" }, "Assign"),
      );
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.assignDuty(shown, form, { role: roles.value, username: username.value.trim() });
      });
      section.append(form);
    }
    section.append(el("p", { class: "duty-error error", role: "alert" }));
    this.paintDuties(shown, section);
    return section;
  }

  planRoles(shown) {
    const { roles = [], command_role: command } = shown.picture.plan;
    const all = [...roles];
    if (command && !all.some((r) => r.id === command)) all.unshift({ id: command, name: command });
    return all;
  }

  paintDuties(shown, section = shown.element.querySelector(".duties")) {
    const list = section?.querySelector(".duty-list");
    if (!list) return;
    list.replaceChildren();
    const duties = shown.picture.plan.duties || {};
    for (const role of this.planRoles(shown)) {
      const holders = duties[role.id] || [];
      if (!holders.length) continue;
      const row = el("li", { "data-role": role.id }, `${role.name}: `);
      for (const username of holders) {
        const mine = username === this.me?.username;
        const holder = el("span", { class: mine ? "holder mine" : "holder", "data-username": username }, username);
        if (this.isCommander()) {
          const release = el(
            "button",
            { type: "button", class: "release", title: `Release ${username} from ${role.name}` },
            "Release",
          );
          release.addEventListener("click", () => this.releaseDuty(shown, role.id, username, release));
          holder.append(" ", release);
        }
        row.append(holder, " ");
      }
      list.append(row);
    }
    if (!list.children.length) list.append(el("li", { class: "quiet" }, "No duties assigned yet."));
  }

  dutyPath(shown) {
    return `/api/sites/${encodeURIComponent(this.site.id)}/incidents/${encodeURIComponent(shown.picture.incident.id)}/duties`;
  }

  async assignDuty(shown, form, body) {
    const error = shown.element.querySelector(".duty-error");
    const button = form.querySelector("button[type=submit]");
    error.textContent = "";
    button.disabled = true;
    try {
      await send("POST", this.dutyPath(shown), body); // the duty.assigned event shows it
      form.username.value = "";
    } catch (failure) {
      if (failure.status !== 401) error.textContent = `Not assigned: ${problemText(failure)}`;
    } finally {
      button.disabled = false;
    }
  }

  async releaseDuty(shown, role, username, button) {
    const error = shown.element.querySelector(".duty-error");
    error.textContent = "";
    button.disabled = true;
    try {
      await send("DELETE", `${this.dutyPath(shown)}/${encodeURIComponent(role)}/${encodeURIComponent(username)}`);
    } catch (failure) {
      if (failure.status !== 401) error.textContent = `Not released: ${problemText(failure)}`;
      button.disabled = false;
    }
  }

  applyDuty(shown, event) {
    const { role, username } = event.data || {};
    if (!role || !username) return;
    const duties = (shown.picture.plan.duties ||= {});
    const holders = new Set(duties[role] || []);
    if (event.type === "duty.assigned") holders.add(username);
    else holders.delete(username);
    if (holders.size) duties[role] = [...holders].sort();
    else delete duties[role];
    this.paintDuties(shown);
    this.paintSteps(shown); // a responder's duties say which steps they may act on
  }

  at(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : this.time.format(date);
  }

  apply(event) {
    const id = event.incident_id;
    if (event.type === "plan.proposed") return this.activation?.propose(event);
    // Readings came in: the activation panel's wind follows the stations.
    if (event.type === "incident.wind_changed" || event.type === "sensor.state") this.activation?.refreshWind();
    if (event.type === "plan.run.stood_down") return this.remove(id);
    if (PICTURE_EVENTS.has(event.type)) this.expectPicture(id);
    const shown = this.incidents.get(id);
    if (!shown) return;
    if (event.type === "incident.network_changed") {
      const rerouted = event.data?.rerouted?.length || 0;
      const layers = (event.data?.layers || []).join(", ");
      shown.layersChanged = event.data?.error
        ? `Site layers changed at ${this.at(event.at)} (${layers}): the incident could not be planned on them (${event.data.error}); the last picture is kept.`
        : `Site layers changed at ${this.at(event.at)} (${layers}): routes planned again, ${rerouted} people rerouted.`;
    }
    shown.events.push(event);
    if (shown.events.length > 500) shown.events.splice(0, shown.events.length - 500);
    this.applyToPicture(shown, event);
  }

  // Every event is applied by setting a state, never by counting: applying one twice is harmless.
  applyToPicture(shown, event) {
    if (event.type === "duty.assigned" || event.type === "duty.released") return this.applyDuty(shown, event);
    const stepId = event.data?.step_id;
    if (!stepId || !event.type.startsWith("plan.step.")) return;
    const step = shown.picture.plan.steps.find((s) => s.id === stepId);
    if (!step) return;
    if (event.type === "plan.step.overdue") step.overdue = true;
    else if (STEP_EVENTS[event.type]) step.status = STEP_EVENTS[event.type];
    else return;
    const item = shown.element.querySelector(`li[data-step="${CSS.escape(stepId)}"]`);
    if (item) this.paintStep(item, step, shown);
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

// -- activation ---------------------------------------------------------------------------------

// The hazard models an activation takes (command/incidents.py), each with its inputs. Nothing is
// guessed: an input is prefilled only from what is known, in this order: what the commander
// typed, the plan's design release (`design`: its key in `scenario.design_release`), the plan's
// substance (`substance`), the last wind a wind station reported (`wind`), the site's clock, or
// a stated cautious choice (`value`). Otherwise it stays empty; if the model needs it
// (`required`), the panel says so by the field and sends nothing.
const HAZARD_MODELS = {
  // The plan's design release: the server takes the figures from the plan and the wind from
  // its last wind station reading. Only a gas needs a wind; one typed here is sent instead.
  plan: {
    fields: [
      { name: "wind_speed_m_s", label: "Wind speed (m/s)", type: "number", wind: "speed", gas: true, required: "unless-station" },
      { name: "wind_from_deg", label: "Wind from (degrees)", type: "number", wind: "from", gas: true, required: "unless-station" },
    ],
  },
  toxic_release: {
    fields: [
      { name: "substance", label: "Substance", type: "text", substance: true, required: true },
      { name: "rate_g_s", label: "Release rate (g/s)", type: "number", design: "rate_g_s", required: true },
      { name: "wind_speed_m_s", label: "Wind speed (m/s)", type: "number", wind: "speed", required: true },
      { name: "wind_from_deg", label: "Wind from (degrees)", type: "number", wind: "from", required: true },
      { name: "release_height_m", label: "Release height (m)", type: "number", design: "release_height_m", placeholder: "0: at ground level" },
      { name: "daytime", label: "Daytime", type: "checkbox", value: "daytime" },
      { name: "insolation", label: "Sunshine (by day)", type: "select", options: ["strong", "moderate", "slight"], value: "moderate" },
      // A clear night is the most stable air and the longest plume: the cautious choice.
      { name: "cloud_cover_octas", label: "Cloud cover at night (octas; 0 clear: longest plume)", type: "number", value: 0 },
    ],
  },
  pool_fire: {
    fields: [
      { name: "fuel", label: "Fuel", type: "text", design: "fuel", substance: true, required: true },
      { name: "diameter_m", label: "Pool diameter (m)", type: "number", design: "diameter_m", required: true },
    ],
  },
  explosion: {
    fields: [
      { name: "substance", label: "Substance", type: "text", substance: true },
      { name: "mass_kg", label: "Mass in the cloud (kg)", type: "number", design: "mass_kg", required: true, unless: "tnt_kg" },
      { name: "tnt_kg", label: "Or TNT equivalent (kg)", type: "number" },
    ],
  },
  radius: {
    fields: [{ name: "radii_m", label: "Radii, innermost first (m)", type: "list", design: "radii_m", required: true }],
  },
  erg: {
    fields: [
      { name: "substance", label: "Substance", type: "text", substance: true, required: true },
      { name: "spill", label: "Spill", type: "select", options: ["small", "large"], value: "large" },
      { name: "daytime", label: "Daytime", type: "checkbox", value: "daytime" },
      { name: "wind_from_deg", label: "Wind from (degrees)", type: "number", wind: "from", required: true },
    ],
  },
};
// A plan's scenario hazard -> the model that draws its threat zones (the rest: fixed radii).
const SCENARIO_MODELS = { toxic_release: "toxic_release", fire: "pool_fire", explosion: "explosion" };
const TIER_LABELS = { warning: "Warning", alarm: "ALARM", high_alarm: "HIGH ALARM" };
// The panel's own inputs (the hazard model's come and go with the model).
const ACTIVATION_FIELDS = ["plan_id", "level", "location", "model", "capacity_aware"];
const WIND_POLL_MS = 30_000; // while the panel is open, the station's wind is asked again this often
const WIND_OLD_MS = 5 * 60_000; // a reading older than this says how old it is

// The latest reading of a wind station among the sensors' state (GET .../sensors/state).
function latestWind(sensors) {
  let best = null;
  for (const sensor of sensors) {
    const reading = sensor.last_reading;
    if (sensor.kind !== "wind" || !reading || reading.direction_deg === null || reading.direction_deg === undefined) continue;
    const time = Date.parse(reading.at);
    if (!best || time > best.time) {
      best = { sensor: sensor.id, speed: reading.value, from: reading.direction_deg, at: reading.at, time };
    }
  }
  return best;
}

const listText = (value) => (Array.isArray(value) ? value.join(", ") : String(value));

// A design release in a few words: "1250 g/s of chlorine from 1 m".
function designText(design, substance) {
  const parts = [];
  if (design.rate_g_s != null) parts.push(`${design.rate_g_s} g/s${substance ? ` of ${substance}` : ""}`);
  if (design.release_height_m != null) parts.push(`from ${design.release_height_m} m`);
  if (design.fuel != null) parts.push(`a pool fire of ${design.fuel}`);
  if (design.diameter_m != null) parts.push(`${design.diameter_m} m across`);
  if (design.mass_kg != null) parts.push(`${design.mass_kg} kg${substance ? ` of ${substance}` : ""} in the cloud`);
  if (design.radii_m != null) parts.push(`radii ${listText(design.radii_m)} m`);
  return parts.join(", ");
}

// The hazard an incident was activated with (its picture's `incident.hazard`), in a few words.
function hazardText(hazard) {
  if (!hazard) return "";
  const wind = hazard.wind_from_deg != null
    ? `wind ${hazard.wind_speed_m_s != null ? `${hazard.wind_speed_m_s} m/s ` : ""}from ${hazard.wind_from_deg}°`
    : "";
  switch (hazard.model) {
    case "toxic_release":
      return `${hazard.rate_g_s} g/s of ${hazard.substance}, ${wind}`;
    case "pool_fire":
      return `pool fire of ${hazard.fuel}, ${hazard.diameter_m} m`;
    case "explosion":
      return hazard.tnt_kg != null ? `${hazard.tnt_kg} kg TNT` : `${hazard.mass_kg} kg of ${hazard.substance}`;
    case "radius":
      return `radii ${listText(hazard.radii_m)} m`;
    case "erg":
      return `ERG, ${hazard.spill} spill of ${hazard.substance}, ${wind}`;
    default:
      return hazard.model;
  }
}

// The commander's panel: a plan, a level, a place clicked on the map and the hazard, then one
// "Activate". A plan with a design release activates it ("model": "plan") under the last wind a
// station reported; the figures are prefilled from the plan and the station only, never guessed.
// After a restart the server rebuilds its incidents in the background: the wall says how far
// it has come, and names any incident left aside because its logged events are corrupt.
function showRecovery(recovery, quarantined) {
  let box = $("recovery");
  if (!box) {
    box = el("div", { id: "recovery", role: "status", "aria-live": "polite" });
    $("panel").prepend(box);
  }
  box.replaceChildren();
  if (recovery && !recovery.finished) {
    box.append(el("p", { class: "recovering" },
      `Server restarted: rebuilding incidents from the log, ${recovery.done} of ${recovery.total} done`));
  }
  for (const item of quarantined || []) {
    box.append(el("p", { class: "quarantined", "data-incident": item.id },
      `Incident ${item.id} is quarantined and not shown: ${item.reason}. Check the log with 'rallypoint audit verify'.`));
  }
  box.hidden = !box.childElementCount;
}

// Proposed plans (a sensor's alarm) show as a banner whose one click does that.
class Activation {
  constructor(wall) {
    this.wall = wall;
    this.abort = new AbortController();
    this.plans = new Map(); // plan id -> summary
    this.plan = null; // the chosen plan: {id, scenario, design (its design release, or null)}
    this.station = null; // the last wind station reading: {sensor, speed, from, at, time}
    this.stationError = null; // why the sensors' state could not be read
    this.windAsks = 0; // sensors' state requests made, and the latest one answered and shown
    this.windShown = 0;
    this.location = null; // [lon, lat]
    this.marker = null;
    this.dirty = false; // the commander changed something: a proposal does not overwrite it
    this.busy = false;
    this.choosing = 0; // the latest plan choice (a slower earlier one must not win)
    this.chosen = Promise.resolve(); // the hazard inputs of the chosen plan, once filled in
    this.errors = new Map(); // field name -> its error element
    this.refusal = null; // the last refusal: {text, fields}

    const signal = this.abort.signal;
    const form = $("activate-form");
    $("activate").hidden = false;
    $("activate-plan").replaceChildren();
    $("activate-location").textContent = "Click the map where it happens.";
    $("activate-result").replaceChildren();
    for (const name of ACTIVATION_FIELDS) this.errors.set(name, $(`activate-error-${name}`));
    this.clearErrors();
    this.fields("toxic_release");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    }, { signal });
    form.addEventListener("input", () => (this.dirty = true), { signal });
    // A hazard input the commander typed in is theirs: no prefill overwrites it.
    $("activate-hazard-fields").addEventListener("input", (event) => {
      const input = event.target;
      if (!input.name) return;
      input.dataset.source = "typed";
      this.clearError(input.name);
      if (input.dataset.wind) this.paintWind();
    }, { signal });
    $("activate-plan").addEventListener("change", () => this.choosePlan($("activate-plan").value), { signal });
    $("activate-model").addEventListener("change", () => this.fields($("activate-model").value, this.typed()), { signal });
    $("activate-level").addEventListener("change", () => this.paintLevels(), { signal });
    $("activate").addEventListener("toggle", () => {
      if ($("activate").open) this.refreshWind();
    }, { signal });
    wall.map.on("click", (event) => {
      if (!$("activate").hidden && $("activate").open) this.pick([event.latlng.lng, event.latlng.lat], true);
    });
    this.windTimer = setInterval(() => {
      if (!document.hidden && $("activate").open) this.refreshWind();
    }, WIND_POLL_MS);
    this.loaded = this.loadPlans();
  }

  close() {
    this.abort.abort();
    clearInterval(this.windTimer);
    this.marker?.remove();
  }

  site() {
    return encodeURIComponent(this.wall.site.id);
  }

  async loadPlans() {
    let plans;
    try {
      ({ plans } = await api(`/api/sites/${this.site()}/plans`));
    } catch (error) {
      if (error.status !== 401) $("activate-error").textContent = `Cannot list the plans: ${problemText(error)}`;
      return;
    }
    const select = $("activate-plan");
    for (const plan of plans) {
      this.plans.set(plan.id, plan);
      select.append(el("option", { value: plan.id }, `${plan.title} (${plan.id})`));
    }
    if (!plans.length) $("activate-error").textContent = "The site has no plan yet.";
    else await this.choosePlan(select.value);
  }

  // -- the wind ----------------------------------------------------------------------------------

  // The last wind a wind station of the site reported (GET .../sensors/state): the prefill of
  // every wind input. Asked when the panel is filled or opened, when an event says readings
  // came in, and every WIND_POLL_MS while the panel is open (a wind reading alone is no event).
  async refreshWind() {
    const ask = ++this.windAsks;
    let station = null;
    let failure = null;
    try {
      const { sensors = [] } = await api(`/api/sites/${this.site()}/sensors/state`);
      station = latestWind(sensors);
    } catch (error) {
      if (error.status === 401) return;
      failure = problemText(error);
    }
    if (ask < this.windShown || this.abort.signal.aborted) return; // a later answer is shown
    this.windShown = ask;
    if (!failure) this.station = station; // a failed request keeps the last reading known
    this.stationError = failure;
    this.paintWind();
  }

  // The wind inputs follow the station, unless the commander typed over them; the note says
  // where the wind comes from.
  paintWind() {
    const station = this.station;
    const inputs = [...$("activate-hazard-fields").querySelectorAll("input[data-wind]")];
    for (const input of inputs) {
      if (input.dataset.required === "unless-station") input.required = !station;
      if (input.dataset.source === "typed") continue;
      input.value = station ? String(station[input.dataset.wind]) : "";
      if (station) input.dataset.source = "station";
      else delete input.dataset.source;
    }
    const note = $("activate-wind-note");
    if (!note) return;
    const plan = $("activate-model").value === "plan";
    const typed = inputs.some((input) => input.dataset.source === "typed" && input.value.trim() !== "");
    let text;
    if (station) {
      const age = Date.now() - station.time;
      const old = age > WIND_OLD_MS ? `, ${Math.round(age / 60_000)} min ago` : "";
      const stale = this.stationError ? `; could not ask again: ${this.stationError}` : "";
      const reported = `from ${station.sensor} at ${this.wall.at(station.at)}${old}${stale}`;
      text = typed
        ? `Typed: sent instead of the station's wind (${station.speed} m/s from ${station.from}°, ${reported}).`
        : `Reading ${reported}.`;
      note.dataset.source = typed ? "typed" : "station";
    } else {
      const why = this.stationError
        ? `The wind stations' readings cannot be read (${this.stationError})`
        : "No wind station has reported yet";
      text = typed ? "Typed: no wind station has reported." : `${why}: type the wind${plan ? ", or the server will ask for it" : ""}.`;
      note.dataset.source = typed ? "typed" : "none";
    }
    note.textContent = text;
  }

  // -- the plan and its hazard ------------------------------------------------------------------

  choosePlan(planId) {
    this.chosen = this.fillFromPlan(planId); // an activation waits for it
    return this.chosen;
  }

  // Prefill the hazard from the plan: its design release if it gives one (activated as such),
  // else the model of its scenario with its substance; and the wind from the station.
  async fillFromPlan(planId) {
    const choice = ++this.choosing;
    delete $("activate-hazard").dataset.plan;
    this.clearError("plan_id");
    const summary = this.plans.get(planId);
    if (!summary) return;
    const [template] = await Promise.all([this.wall.template(planId, summary.version), this.refreshWind()]);
    if (choice !== this.choosing || this.abort.signal.aborted) return;
    const scenario = template?.scenario || { hazard: summary.hazard };
    const design = scenario.design_release || null;
    this.plan = { id: planId, scenario, design };
    const option = $("activate-model").querySelector("option[value='plan']");
    option.disabled = !design;
    option.textContent = design ? "Design release (from the plan)" : "Design release (this plan gives none)";
    this.fields(design ? "plan" : SCENARIO_MODELS[scenario.hazard] || "radius");
    $("activate-hazard").dataset.plan = planId; // filled in for this plan
  }

  // The hazard model's inputs: what was `typed` first, then what is known (see HAZARD_MODELS).
  fields(model, typed = {}) {
    const scenario = this.plan?.scenario;
    const design = this.plan?.design || {};
    const substance = scenario?.substances?.[0];
    $("activate-model").value = model;
    const box = $("activate-hazard-fields");
    box.replaceChildren();
    for (const name of [...this.errors.keys()]) {
      if (!ACTIVATION_FIELDS.includes(name)) this.errors.delete(name);
    }
    const wanted = HAZARD_MODELS[model].fields.filter((f) => !f.gas || scenario?.hazard === "toxic_release");
    for (const field of wanted) {
      const id = `activate-${field.name}`;
      const error = el("span", { class: "field-error", id: `activate-error-${field.name}` });
      let input;
      if (field.type === "select") {
        input = el("select", { id, name: field.name });
        for (const option of field.options) input.append(el("option", { value: option }, option));
      } else {
        input = el("input", { id, name: field.name, type: field.type === "list" ? "text" : field.type });
        if (field.type === "number") input.step = "any";
        if (field.placeholder) input.placeholder = field.placeholder;
      }
      input.setAttribute("aria-describedby", error.id);
      input.dataset.kind = field.type;
      if (field.wind) input.dataset.wind = field.wind;
      if (field.unless) input.dataset.unless = field.unless;
      if (field.required) {
        input.dataset.required = String(field.required);
        input.required = field.required === true;
      }
      let value;
      let source = null;
      if (typed[field.name] !== undefined) [value, source] = [typed[field.name], "typed"];
      else if (field.design && design[field.design] != null) [value, source] = [listText(design[field.design]), "design"];
      else if (field.substance && substance) [value, source] = [substance, "plan"];
      else if (field.wind) value = null; // paintWind: the station's, or empty
      else if (field.value === "daytime") value = this.daytime();
      else value = field.value;
      if (source) input.dataset.source = source;
      if (field.type === "checkbox") input.checked = Boolean(value);
      else if (value !== undefined && value !== null) input.value = String(value);
      const label = field.type === "checkbox"
        ? el("label", { class: "check" }, input, ` ${field.label}`)
        : el("label", {}, `${field.label} `, input);
      box.append(el("div", { class: "field" }, label, error));
      this.errors.set(field.name, error);
      if (field.name === "wind_from_deg") {
        // Where the wind comes from, below its inputs (paintWind).
        box.append(el("p", { class: "hint wind-note", id: "activate-wind-note", "aria-live": "polite" }));
      }
    }
    this.paintWind();
    this.paintDesign(model);
  }

  // What the plan's design release says, and its basis: where the figures come from.
  paintDesign(model) {
    const note = $("activate-design");
    const plan = this.plan;
    if (!plan) {
      note.hidden = true;
      return;
    }
    note.hidden = false;
    if (!plan.design) {
      note.replaceChildren("This plan gives no design release: type the figures.");
      return;
    }
    const what = designText(plan.design, plan.scenario.substances?.[0]);
    const gas = plan.scenario.hazard === "toxic_release";
    const head = model === "plan"
      ? `The plan's design release: ${what}${gas ? ", under the station's wind unless typed below; day or night by the site's clock" : ""}.`
      : `Prefilled from the plan's design release (${what}).`;
    note.replaceChildren(el("span", {}, head), " ", el("small", { class: "basis" }, `Basis: ${plan.design.basis}`));
  }

  // Day at the site: 06:00 to 18:00 local time.
  daytime() {
    const hour = Number(new Intl.DateTimeFormat("en-GB", { hour: "2-digit", hourCycle: "h23", timeZone: this.wall.time.resolvedOptions().timeZone }).format(new Date()));
    return hour >= 6 && hour < 18;
  }

  hazardInputs() {
    return [...$("activate-hazard-fields").querySelectorAll("input, select")];
  }

  // What the commander typed (kept when they change the model).
  typed() {
    const out = {};
    for (const input of this.hazardInputs()) {
      if (input.dataset.source !== "typed") continue;
      if (input.type === "checkbox") out[input.name] = input.checked;
      else if (input.value.trim() !== "") out[input.name] = input.value;
    }
    return out;
  }

  pick(lonlat, byUser = false) {
    const [lon, lat] = lonlat.map((v) => Math.round(v * 1e7) / 1e7);
    this.location = [lon, lat];
    if (byUser) this.dirty = true;
    this.clearError("location");
    $("activate-location").textContent = `lat ${lat.toFixed(6)}, lon ${lon.toFixed(6)}`;
    this.marker?.remove();
    this.marker = L.circleMarker([lat, lon], {
      pane: "dots", className: "rp-pick", radius: 9, color: "#000", weight: 3, dashArray: "3 3", fillColor: "#fff", fillOpacity: 0.6,
    })
      .bindTooltip("Where the plan is activated")
      .addTo(this.wall.map);
  }

  request() {
    const model = $("activate-model").value;
    const hazard = { model };
    for (const input of this.hazardInputs()) {
      const kind = input.dataset.kind;
      // A design release takes the station's wind on the server, the latest it has; only a
      // wind the commander typed is sent.
      if (model === "plan" && input.dataset.source === "station") continue;
      if (kind === "checkbox") hazard[input.name] = input.checked;
      else if (input.value.trim() === "") continue; // left out: the server's default, or its complaint
      else if (kind === "number") hazard[input.name] = Number(input.value);
      else if (kind === "list") {
        hazard[input.name] = input.value.split(/[\s,;]+/).filter(Boolean).map((v) => (Number.isFinite(Number(v)) ? Number(v) : v));
      } else hazard[input.name] = input.value.trim();
    }
    return {
      plan_id: $("activate-plan").value,
      level: $("activate-level").value,
      location: { type: "Point", coordinates: this.location },
      hazard,
      capacity_aware: $("activate-capacity").checked,
    };
  }

  // The required inputs left empty. With a design release the server decides: it knows the
  // figures, and may know a wind this page has not heard of yet.
  missing() {
    if ($("activate-model").value === "plan") return [];
    const inputs = this.hazardInputs();
    const filled = (name) => inputs.some((i) => i.name === name && i.value.trim() !== "");
    return inputs.filter(
      (input) => input.required && input.value.trim() === "" && !(input.dataset.unless && filled(input.dataset.unless)),
    );
  }

  async submit() {
    if (this.busy) return false;
    this.busy = true;
    try {
      await this.chosen;
      return await this.send();
    } finally {
      this.busy = false;
    }
  }

  async send() {
    this.clearErrors();
    this.refusal = null;
    $("activate-result").replaceChildren();
    const missing = this.missing();
    if (!this.location) this.showError("location", "Click the map where it happens.");
    for (const input of missing) {
      const why = input.dataset.wind && !this.station
        ? "required: no wind station has reported, type the wind"
        : "required: nothing known fills it in, type the figure";
      this.showError(input.name, why);
    }
    if (!this.location || missing.length) {
      const names = [...(this.location ? [] : ["location"]), ...missing.map((input) => input.name)];
      this.refuse({ text: "fill in the fields marked", fields: names });
      return false;
    }
    const request = this.request();
    const button = $("activate-submit");
    button.disabled = true;
    try {
      const picture = await send("POST", `/api/sites/${this.site()}/incidents`, request);
      // The picture arrives over the websocket like every other screen's.
      const id = picture.incident.id;
      const used = hazardText(picture.incident.hazard);
      $("activate-result").replaceChildren(
        el("span", { "data-incident": id }, `Activated ${request.plan_id} at ${request.level}: ${id}`),
        used ? el("span", { class: "used" }, ` (${used})`) : null,
      );
      this.location = null;
      this.marker?.remove();
      this.marker = null;
      $("activate-location").textContent = "Click the map where it happens.";
      this.dirty = false;
      this.dismissPlan(request.plan_id);
      $("activate").open = false; // make room for the incident; the result stays in the summary
      return true;
    } catch (failure) {
      if (failure.status !== 401) this.showProblem(failure);
      return false;
    } finally {
      button.disabled = false;
    }
  }

  // A refusal: its detail above the button, and each field it names next to that field. A wind
  // refused marks every empty wind input: they are given together.
  showProblem(failure) {
    const fields = [];
    for (const { field, reason } of failure.fieldErrors || []) {
      const name = String(field).split(".").reverse().find((part) => this.errors.has(part)) ||
        (String(field).includes("hazard") ? "model" : null);
      if (!name) continue;
      this.showError(name, reason);
      fields.push(name);
    }
    if (fields.some((name) => name.startsWith("wind_"))) {
      for (const input of this.hazardInputs()) {
        if (input.dataset.wind && input.value.trim() === "") {
          input.setAttribute("aria-invalid", "true");
          fields.push(input.name);
        }
      }
    }
    this.refuse({ text: problemText(failure), fields });
  }

  refuse(refusal) {
    this.refusal = refusal;
    $("activate-error").textContent = `Not activated: ${refusal.text}`;
    $("activate").open = true;
    const first = this.hazardInputs().find((input) => input.getAttribute("aria-invalid") === "true");
    first?.focus();
  }

  showError(name, text) {
    const error = this.errors.get(name);
    if (!error) return;
    error.textContent = error.textContent ? `${error.textContent}; ${text}` : text;
    document.querySelector(`[aria-describedby="${error.id}"]`)?.setAttribute("aria-invalid", "true");
  }

  clearError(name) {
    const error = this.errors.get(name);
    if (!error) return;
    error.textContent = "";
    document.querySelector(`[aria-describedby="${error.id}"]`)?.removeAttribute("aria-invalid");
  }

  clearErrors() {
    $("activate-error").textContent = "";
    for (const name of this.errors.keys()) this.clearError(name);
    for (const input of this.hazardInputs()) input.removeAttribute("aria-invalid");
  }

  // Fill the panel with a plan and a place (a proposal's sensor).
  async prefill(planId, lonlat) {
    await this.loaded;
    if (!this.plans.has(planId)) {
      $("activate-error").textContent = `Plan ${planId} is not among the site's plans.`;
      this.refusal = { text: `plan ${planId} is not among the site's plans`, fields: [] };
      return false;
    }
    $("activate").open = true;
    if ($("activate-plan").value !== planId || !this.dirty) {
      $("activate-plan").value = planId;
      await this.choosePlan(planId);
    }
    if (lonlat) this.pick(lonlat);
    return true;
  }

  // -- proposals ---------------------------------------------------------------------------------

  propose(event) {
    const { sensor_id: sensorId, tier, plans = [], running = {} } = event.data || {};
    if (!plans.length && !Object.keys(running).length) return;
    const sensor = this.wall.sensors.get(String(sensorId));
    const where = sensor?.geometry?.type === "Point" ? sensor.geometry.coordinates : null;
    const name = sensor?.properties?.name || sensorId;
    const box = $("proposals");
    box.querySelector(`.proposal[data-sensor="${CSS.escape(String(sensorId))}"]`)?.remove();
    const error = el("p", { class: "error", role: "alert" });
    const banner = el(
      "section",
      { class: "proposal", "data-sensor": String(sensorId), "data-seq": String(event.seq), "aria-label": "Proposed plan" },
      el("h2", {}, `${TIER_LABELS[tier] || tier}: ${name}`),
      el("p", {}, `${this.wall.at(event.at)} · sensor ${sensorId}${where ? "" : " (position unknown: click the map)"} proposes:`),
    );
    for (const planId of plans) {
      const title = this.plans.get(planId)?.title || planId;
      // One click: the plan, at the sensor, with its design release under the station's wind.
      const activate = el("button", { type: "button", class: "activate-now", "data-plan": planId, "data-title": title }, "");
      const review = el("button", { type: "button", class: "quiet-button", "data-review": planId }, "Review first");
      activate.addEventListener("click", async () => {
        error.textContent = "";
        activate.disabled = true;
        const ready = await this.prefill(planId, where);
        const done = ready && (await this.submit());
        activate.disabled = false;
        if (!done) error.textContent = this.refusalText();
      });
      review.addEventListener("click", () => {
        this.prefill(planId, where).then(() => $("activate").scrollIntoView({ block: "start" }));
      });
      banner.append(el("p", { class: "proposal-plan", "data-plan": planId }, activate, " ", review));
    }
    // A plan already running for this place is pointed to, never offered again.
    for (const [planId, incidentId] of Object.entries(running)) {
      const title = this.plans.get(planId)?.title || planId;
      banner.append(el("p", { class: "proposal-running", "data-plan": planId, "data-incident": incidentId }, `${title}: already running as incident ${incidentId}`));
    }
    const dismiss = el("button", { type: "button", class: "quiet-button dismiss" }, "Dismiss");
    dismiss.addEventListener("click", () => {
      banner.remove();
      box.hidden = !box.children.length;
    });
    banner.append(dismiss, error);
    box.prepend(banner);
    box.hidden = false;
    this.paintLevels();
    if (!this.dirty && where && plans.length) this.prefill(plans[0], where); // ready for one click
  }

  // Why a banner's one click did not activate, and what to do about it.
  refusalText() {
    const refusal = this.refusal;
    if (!refusal) return "Not activated: see the activation panel.";
    const wind = refusal.fields.some((name) => name.startsWith("wind_"));
    const todo = wind
      ? " Type the wind (speed, and where it comes from) in the panel below, then Activate again."
      : refusal.fields.length
        ? " Complete the fields marked in the panel below, then Activate again."
        : "";
    const text = /[.!?]$/.test(refusal.text) ? refusal.text : `${refusal.text}.`;
    return `Not activated: ${text}${todo}`;
  }

  // The banners' buttons say the level they activate at: the panel's.
  paintLevels() {
    const level = $("activate-level").value;
    for (const button of $("proposals").querySelectorAll("button.activate-now[data-plan]")) {
      button.textContent = `Activate ${button.dataset.title} at ${level}`;
    }
  }

  dismissPlan(planId) {
    const box = $("proposals");
    for (const row of box.querySelectorAll(`.proposal-plan[data-plan="${CSS.escape(planId)}"]`)) {
      const banner = row.closest(".proposal");
      row.remove();
      if (!banner.querySelector(".proposal-plan")) banner.remove();
    }
    box.hidden = !box.children.length;
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
