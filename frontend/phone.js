// The responder's phone app (docs/offline.md, "The responder's phone"), served at /phone/.
// Sign in; my tasks with countdowns and the step buttons their status allows; my evacuation
// route on a small map; a note with a photo; answering a call-out. One-handed on a 360×740
// screen: the tabs and every button that acts sit in the lower half.
//
// Offline: the service worker (/phone/sw.js, built by Workbox: phone-build.mjs) keeps the app
// and the last answer of every read; a read answered from that copy carries Rallypoint-Cached-At,
// and the bar then says "offline, as of HH:MM". Every action goes through the outbox
// (phone-queue.js): kept in IndexedDB first, shown as pending, sent in order when the network
// allows (the `online` event, each page load, and a retry timer).

import { el, initialLanguage, rememberLanguage, sayIn } from "./page.js";
import { WORDS } from "./phone-words.js";
import * as outbox from "./phone-queue.js";

const TOKEN = "rallypoint.phone.token";
const USER = "rallypoint.phone.user";
const SITE = "rallypoint.phone.site";
const LAST_FIX = "rallypoint.phone.last-fix";
const LAST_ROUTE = "rallypoint.phone.last-route";
const API_CACHE = "rallypoint-phone-api";
const RETRY_MS = [2000, 5000, 10000, 30000, 60000];
const PHOTO_MAX_PX = 1600;
const PHOTO_MAX_BYTES = 1900 * 1024;
// The moves each status allows (plans/engine.py); the server has the last word.
const MOVES = {
  waiting: ["skip"],
  ready: ["acknowledge", "skip"],
  acknowledged: ["start", "fail", "skip"],
  in_progress: ["complete", "fail", "skip"],
};
const AFTER = { acknowledge: "acknowledged", start: "in_progress", complete: "done", skip: "skipped", fail: "failed" };
const FINISHED = new Set(["done", "skipped", "failed"]);

let language = "zh-CN";
let token = null;
let user = null; // {username, roles, site_roles}
let site = null; // {id, name}
let tasks = []; // the server's list (as last read)
let tasksReadAt = 0; // when that list was read (ms), from the network or the cached copy
let incidents = new Map(); // id -> {id, plan_id, level, plan_version}
const templates = new Map(); // "plan@version" -> Map(step id -> template step)
const planTitles = new Map(); // plan id -> {en, zh}
let actions = []; // the outbox's records of this user
let staleSince = null; // the oldest cached answer shown (ms), or null when all are fresh
let freshAt = null; // when the network last answered a read (ms)
let retryAt = 0;
let retryTimer = null;
let asking = null; // the step action waiting for its value, reference or reason
let photo = null; // {blob, width, height, preview}
let callouts = null; // my open call-outs, as last read
let map = null;
let mapLayers = null;
let L = null;

const say = (key, params = {}) => sayIn(WORDS, language, key, params);
const $ = (id) => document.getElementById(id);
const clock = (ms) => new Date(ms).toLocaleTimeString(language, { hour: "2-digit", minute: "2-digit", hour12: false });

// -- reading from the server (network first, in the service worker) --------------------------------

class Refused extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// GET `path` as JSON; {data, cachedAt}: cachedAt (ms) when the worker answered from its copy.
async function read(path) {
  const response = await fetch(path, { headers: { Accept: "application/json", Authorization: `Bearer ${token}` } });
  let data = null;
  try {
    data = await response.json();
  } catch {
    // no JSON: the status says it
  }
  if (response.status === 401) {
    needSignIn(say("signin.again"));
    throw new Refused(401, data?.detail || "401");
  }
  if (!response.ok) throw new Refused(response.status, data?.detail || String(response.status));
  const kept = response.headers.get("Rallypoint-Cached-At");
  const cachedAt = kept ? Date.parse(kept) : null;
  if (cachedAt !== null) staleSince = staleSince === null ? cachedAt : Math.min(staleSince, cachedAt);
  else freshAt = Date.now();
  return { data, cachedAt };
}

const sitePath = (rest) => `/api/sites/${encodeURIComponent(site.id)}${rest}`;

// -- the bar: online, or offline as of when -----------------------------------------------------------

function paintNet() {
  const net = $("net");
  const offline = !navigator.onLine || staleSince !== null;
  net.dataset.state = offline ? "offline" : "online";
  const asOf = staleSince ?? freshAt;
  if (!offline) net.textContent = say("net.online");
  else if (asOf !== null) net.textContent = say("net.as_of", { time: clock(asOf) });
  else net.textContent = say("net.offline");
}

function message(text, error = false) {
  const node = $("message");
  node.textContent = text;
  node.classList.toggle("error", error);
}

// -- words ------------------------------------------------------------------------------------------

function translate() {
  document.documentElement.lang = language;
  for (const node of document.querySelectorAll("[data-w]")) node.textContent = say(node.dataset.w);
  paintNet();
  paintTasks();
  paintOutbox();
  paintCallouts();
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return say("duration.s", { s });
  if (s < 3600) return say("duration.min", { min: Math.floor(s / 60), s: s % 60 });
  return say("duration.h", { h: Math.floor(s / 3600), min: Math.floor((s % 3600) / 60) });
}

function stepOf(task) {
  const incident = incidents.get(task.incident_id);
  if (!incident) return null;
  return templates.get(`${incident.plan_id}@${incident.plan_version}`)?.get(task.step_id) || null;
}

function planTitle(id) {
  const title = planTitles.get(id);
  return (language === "zh-CN" ? title?.zh : null) || title?.en || id;
}

function stepTitle(task) {
  const step = stepOf(task);
  if (!step) return task.step_id;
  return (language === "zh-CN" && step.title_zh) || step.title || task.step_id;
}

// -- signing in ---------------------------------------------------------------------------------------

function showOnly(which) {
  $("signin").hidden = which !== "signin";
  $("app").hidden = which !== "app";
  $("tabs").hidden = which !== "app";
}

function needSignIn(text = "") {
  token = null;
  localStorage.removeItem(TOKEN);
  showOnly("signin");
  $("signin-error").textContent = text;
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  $("signin-error").textContent = "";
  let response;
  try {
    response = await fetch("/api/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ username: form.username.value, password: form.password.value }),
    });
  } catch {
    $("signin-error").textContent = say("signin.offline");
    return;
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    $("signin-error").textContent = response.status === 401 ? say("signin.wrong") : say("signin.failed", { detail: answer.detail || response.status });
    return;
  }
  form.password.value = "";
  token = answer.access_token;
  user = answer.user;
  localStorage.setItem(TOKEN, token);
  if (localStorage.getItem(USER) && JSON.parse(localStorage.getItem(USER)).username !== user.username) {
    localStorage.removeItem(SITE); // another person's phone now: their site, their copies
    if (window.caches) await caches.delete(API_CACHE).catch(() => {});
  }
  localStorage.setItem(USER, JSON.stringify(user));
  await start();
}

async function signOut() {
  const old = token;
  needSignIn();
  localStorage.removeItem(SITE);
  site = null;
  // The copies of this person's reads go; their unsent actions stay, for their next sign-in.
  if (window.caches) await caches.delete(API_CACHE).catch(() => {});
  if (old) fetch("/api/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${old}` } }).catch(() => {});
}

// -- the site, the tasks and what they belong to ----------------------------------------------------

async function chooseSite() {
  const remembered = localStorage.getItem(SITE);
  if (remembered) return JSON.parse(remembered);
  const { data } = await read("/api/sites");
  const sites = data.sites || [];
  if (!sites.length) throw new Refused(403, say("site.none"));
  const mine = sites.find((s) => (user?.site_roles?.[s.id] || []).includes("responder")) || sites[0];
  const chosen = { id: mine.id, name: mine.name };
  localStorage.setItem(SITE, JSON.stringify(chosen));
  return chosen;
}

async function refresh() {
  if (!token || !site) return;
  staleSince = null;
  try {
    const found = await read(sitePath("/tasks"));
    tasks = found.data.tasks || [];
    tasksReadAt = found.cachedAt ?? Date.now();
    const active = await read(sitePath("/incidents"));
    const known = new Map();
    for (const incident of active.data.incidents || []) known.set(incident.id, { ...incident });
    // The open incidents of my tasks: their pictures (kept for offline) and plan versions.
    for (const id of new Set(tasks.map((t) => t.incident_id))) {
      const { data } = await read(sitePath(`/incidents/${encodeURIComponent(id)}`));
      known.set(id, { ...known.get(id), ...data.incident, threat: data.threat });
    }
    incidents = known;
    // The plans of my tasks' incidents (their steps' titles and what completing asks).
    for (const incident of incidents.values()) if (incident.plan_version) await loadTemplate(incident);
    message("");
  } catch (error) {
    if (error.status !== 401) message(say("tasks.cannot", { detail: error.message }), true);
  }
  await refreshCallouts();
  paintNet();
  paintTasks();
  paintIncidentChoice();
  keepForOffline();
}

async function loadTemplate(incident) {
  const key = `${incident.plan_id}@${incident.plan_version}`;
  if (templates.has(key)) return;
  const { data } = await read(sitePath(`/plans/${encodeURIComponent(incident.plan_id)}?version=${incident.plan_version}`));
  const steps = new Map();
  for (const pack of Object.values(data.template?.levels || {})) for (const step of pack.steps || []) steps.set(step.id, step);
  templates.set(key, steps);
  planTitles.set(incident.plan_id, { en: data.template?.title, zh: data.template?.title_zh });
}

// The site's layers the map draws, read once online so the worker keeps them for offline.
let kept = false;
function keepForOffline() {
  if (kept || !navigator.onLine) return;
  kept = true;
  for (const layer of ["zones", "network"]) read(sitePath(`/layers/${layer}`)).catch(() => (kept = false));
}

// -- the tasks ----------------------------------------------------------------------------------------

// The actions of mine on a step that the list read does not show yet: the pending ones, and
// those the server took after the list was read.
function ownMoves(task) {
  return actions.filter(
    (a) =>
      a.kind === "step" &&
      a.about.incident_id === task.incident_id &&
      a.about.step_id === task.step_id &&
      (a.state === "pending" || (a.state === "sent" && Date.parse(a.answered_at) > tasksReadAt)),
  );
}

function isCommander() {
  return Boolean(user?.roles?.includes("commander") || user?.site_roles?.[site?.id]?.includes("commander"));
}

function paintTasks() {
  const list = $("tasks");
  if (!list || !site) return;
  $("site-name").textContent = site.name || site.id;
  if (!tasks.length) {
    list.replaceChildren(el("li", { class: "empty" }, say("tasks.none")));
    return;
  }
  list.replaceChildren(...tasks.map(taskCard));
  tick();
}

function taskCard(task) {
  const moves = ownMoves(task);
  const status = moves.reduce((s, a) => AFTER[a.about.action] || s, task.status);
  const pending = moves.some((a) => a.state === "pending");
  const incident = incidents.get(task.incident_id);
  const card = el("li", {
    class: `card status-${status}${task.overdue ? " overdue" : ""}`,
    "data-step": task.step_id,
    "data-incident": task.incident_id,
    "data-status": status,
    "data-pending": String(pending),
  });
  const head = el("div", { class: "card-head" }, el("span", { class: "badge" }, say(`status.${status}`)));
  if (FINISHED.has(status)) head.append(el("span", { class: "quiet" }));
  else if (task.due_at) head.append(el("span", { class: "countdown", "data-due": task.due_at }));
  else head.append(el("span", { class: "countdown quiet" }, say("task.no_deadline")));
  card.append(head, el("p", { class: "title" }, stepTitle(task)));
  if (incident) card.append(el("p", { class: "quiet small" }, say("task.incident", { plan: planTitle(incident.plan_id), level: incident.level })));
  if (pending) {
    const last = moves.filter((a) => a.state === "pending").at(-1);
    card.append(el("p", { class: "pending" }, say("outbox.pending", { time: clock(Date.parse(last.acted_at)) })));
  }
  if (!FINISHED.has(status)) {
    const optional = Boolean(stepOf(task)?.optional);
    const allowed = (MOVES[status] || []).filter((m) => m !== "skip" || optional || isCommander());
    const row = el("div", { class: "actions" });
    for (const move of allowed) {
      const button = el("button", { type: "button", class: `big act-${move}`, "data-action": move }, say(`move.${move}`));
      button.addEventListener("click", () => act(task, move));
      row.append(button);
    }
    card.append(row);
  }
  return card;
}

function tick() {
  const now = Date.now();
  for (const node of document.querySelectorAll(".countdown[data-due]")) {
    const left = (Date.parse(node.dataset.due) - now) / 1000;
    node.textContent = left >= 0 ? say("task.due_in", { duration: duration(left) }) : say("task.late", { duration: duration(-left) });
    node.classList.toggle("late", left < 0);
  }
}

// What a move asks first: {name, type, label} or null.
function question(task, move) {
  if (move === "skip" || move === "fail") return { name: "reason", type: "text", label: say(move === "skip" ? "ask.why_skip" : "ask.why_fail") };
  if (move !== "complete") return null;
  const done = stepOf(task)?.done_when;
  const name = done?.name ? done.name.replaceAll("_", " ") : "";
  if (done?.kind === "value") {
    const what = name || say("ask.number");
    return { name: "value", type: "number", label: done.unit ? say("ask.value_unit", { name: what, unit: done.unit }) : say("ask.value", { name: what }) };
  }
  if (done?.kind === "action") return { name: "reference", type: "text", label: name ? say("ask.reference", { name }) : say("ask.reference_plain") };
  return null;
}

function act(task, move) {
  const field = question(task, move);
  if (!field) return queueStep(task, move, {});
  asking = { task, move, field };
  $("ask-what").textContent = say("what.step", { action: say(`move.${move}`), step: stepTitle(task) });
  $("ask-label").textContent = field.label;
  const input = $("ask-input");
  input.value = "";
  input.type = field.type;
  input.step = field.type === "number" ? "any" : "";
  input.inputMode = field.type === "number" ? "decimal" : "text";
  input.placeholder = field.name === "reference" ? say("ask.reference_example") : "";
  $("ask-error").textContent = "";
  $("ask").hidden = false;
  input.focus();
}

function answerAsked(event) {
  event.preventDefault();
  if (!asking) return;
  const value = $("ask-input").value.trim();
  if (!value) {
    $("ask-error").textContent = say("ask.needed");
    return;
  }
  const body = { [asking.field.name]: asking.field.name === "value" ? Number(value) : value };
  const { task, move } = asking;
  closeAsk();
  queueStep(task, move, body);
}

function closeAsk() {
  asking = null;
  $("ask").hidden = true;
}

async function queueStep(task, move, body) {
  const path = sitePath(`/incidents/${encodeURIComponent(task.incident_id)}/steps/${encodeURIComponent(task.step_id)}/${move}`);
  await outbox.enqueue({
    user: user.username,
    site: site.id,
    method: "POST",
    path,
    body: JSON.stringify(body),
    contentType: "application/json",
    kind: "step",
    about: { incident_id: task.incident_id, step_id: task.step_id, action: move, title: stepTitle(task) },
  });
  await reloadOutbox();
  send();
}

// -- the outbox ---------------------------------------------------------------------------------------

async function reloadOutbox() {
  actions = (await outbox.list()).filter((a) => a.user === user?.username);
  paintTasks();
  paintOutbox();
  paintCallouts();
}

function describe(action) {
  if (action.kind === "step") return say("what.step", { action: say(`move.${action.about.action}`), step: action.about.title || action.about.step_id });
  if (action.kind === "note") return say(action.about.photo ? "what.note_photo" : "what.note", { text: action.about.text });
  return say("what.callout", { role: action.about.role || "" });
}

function outcome(action) {
  const time = clock(Date.parse(action.acted_at));
  if (action.state === "pending") return say("outbox.pending", { time });
  if (action.state === "sent") return say("outbox.sent", { time });
  if (action.state === "conflict") {
    if (action.by) return say("outbox.conflict", { by: action.by, at: action.at ? clock(Date.parse(action.at)) : "?" });
    return say("outbox.conflict_plain", { detail: action.detail });
  }
  return say("outbox.refused", { detail: action.detail });
}

function paintOutbox() {
  const list = $("outbox");
  if (!list) return;
  const shown = [...actions].reverse().slice(0, 30);
  list.replaceChildren(
    ...shown.map((a) =>
      el(
        "li",
        { class: `action ${a.state}`, "data-id": a.id, "data-state": a.state, "data-kind": a.kind, "data-step": a.about?.step_id || "" },
        el("span", { class: "what" }, describe(a)),
        el("span", { class: "outcome" }, outcome(a)),
      ),
    ),
  );
  const pending = actions.filter((a) => a.state === "pending").length;
  const count = $("pending-count");
  count.hidden = pending === 0;
  count.textContent = String(pending);
}

// Send what waits, in order; on a network or server failure try again later (and at `online`).
async function send() {
  if (!token || !user) return;
  clearTimeout(retryTimer);
  const result = await outbox.flush({ user: user.username, token: () => token, onChange: () => reloadOutbox() });
  await reloadOutbox();
  if (result.stopped === "empty") {
    retryAt = 0;
    if (actions.some((a) => a.state !== "pending" && Date.parse(a.answered_at) > tasksReadAt)) refresh();
    return;
  }
  if (result.stopped === "signin") return needSignIn(say("signin.again"));
  const wait = RETRY_MS[Math.min(retryAt, RETRY_MS.length - 1)];
  retryAt += 1;
  retryTimer = setTimeout(send, wait);
}

// -- the evacuation route ------------------------------------------------------------------------------

async function openMap() {
  if (!L) L = await import("/vendor/leaflet/leaflet-src.esm.js");
  if (!map) {
    map = L.map("map", { zoomControl: false, attributionControl: false });
    mapLayers = { site: L.layerGroup().addTo(map), route: L.layerGroup().addTo(map) };
    map.on("click", (event) => routeFrom({ lon: event.latlng.lng, lat: event.latlng.lat, source: "tap" }));
    try {
      const { data } = await read(sitePath("/layers/zones"));
      const zones = L.geoJSON(data, { style: (f) => ({ color: f.properties?.kind === "muster_point" ? "#1a7f37" : "#667", weight: f.properties?.kind === "muster_point" ? 3 : 1, fillOpacity: f.properties?.kind === "muster_point" ? 0.4 : 0.1 }) });
      zones.addTo(mapLayers.site);
      const bounds = zones.getBounds();
      if (bounds.isValid()) map.fitBounds(bounds);
      const network = await read(sitePath("/layers/network"));
      L.geoJSON(network.data, { style: () => ({ color: "#999", weight: 1 }) }).addTo(mapLayers.site);
    } catch {
      map.setView([0, 0], 2);
    }
  }
  map.invalidateSize();
  locate();
}

function activeIncident() {
  const mine = tasks[0]?.incident_id;
  return (mine && incidents.get(mine)) || [...incidents.values()].find((i) => i.active !== false) || null;
}

function locate() {
  if (!activeIncident()) {
    $("route-info").textContent = say("route.none");
    return;
  }
  $("route-info").textContent = say("route.locating");
  const fallback = () => {
    const last = JSON.parse(localStorage.getItem(LAST_FIX) || "null");
    if (last) routeFrom({ ...last, source: "last" });
    else $("route-info").textContent = say("route.tap");
  };
  if (!navigator.geolocation) return fallback();
  navigator.geolocation.getCurrentPosition(
    (position) => {
      const fix = { lon: position.coords.longitude, lat: position.coords.latitude, accuracy: position.coords.accuracy, at: Date.now() };
      localStorage.setItem(LAST_FIX, JSON.stringify(fix));
      routeFrom({ ...fix, source: "gps" });
    },
    fallback,
    { enableHighAccuracy: true, timeout: 10000, maximumAge: 30000 },
  );
}

async function routeFrom(from) {
  const incident = activeIncident();
  if (!incident) return;
  const where = from.source === "gps" ? say("route.from_gps", { m: Math.round(from.accuracy || 0) }) : from.source === "last" ? say("route.from_last", { time: clock(from.at) }) : say("route.from_tap");
  const path = sitePath(`/incidents/${encodeURIComponent(incident.id)}/route?lon=${from.lon.toFixed(6)}&lat=${from.lat.toFixed(6)}`);
  let route;
  let note = "";
  try {
    route = (await read(path)).data;
    localStorage.setItem(LAST_ROUTE, JSON.stringify({ incident: incident.id, route, at: Date.now() }));
  } catch (error) {
    const last = JSON.parse(localStorage.getItem(LAST_ROUTE) || "null");
    if (!last || last.incident !== incident.id) {
      $("route-info").textContent = say("route.cannot", { detail: error.message });
      return;
    }
    route = last.route;
    note = say("route.kept", { time: clock(last.at) });
  }
  drawRoute(route, from);
  const lines = [where];
  if (route.inside_innermost_zone) lines.push(say("route.inside"));
  if (route.muster) lines.push(say("route.to", { muster: route.muster, length: Math.round(route.length_m), minutes: Math.max(1, Math.round(route.walk_time_s / 60)) }));
  else lines.push(say("route.trapped", { reason: route.trapped || "?" }));
  if (note) lines.push(note);
  $("route-info").textContent = lines.join(" ");
  paintNet();
}

function drawRoute(route, from) {
  mapLayers.route.clearLayers();
  const threat = activeIncident()?.threat;
  if (threat) L.geoJSON(threat, { interactive: false, style: () => ({ color: "#d1242f", weight: 1, fillOpacity: 0.12 }) }).addTo(mapLayers.route);
  const me = L.circleMarker([from.lat, from.lon], { radius: 8, color: "#fff", weight: 3, fillColor: "#1f6feb", fillOpacity: 1 });
  me.addTo(mapLayers.route);
  if (route.route) {
    const line = L.geoJSON(route.route, { style: () => ({ color: "#1a7f37", weight: 6 }) }).addTo(mapLayers.route);
    const coords = route.route.coordinates;
    const end = coords[coords.length - 1];
    L.circleMarker([end[1], end[0]], { radius: 10, color: "#fff", weight: 3, fillColor: "#1a7f37", fillOpacity: 1 }).addTo(mapLayers.route);
    map.fitBounds(line.getBounds().extend(me.getLatLng()), { padding: [24, 24] });
  } else map.setView(me.getLatLng(), 17);
}

// -- notes and photos ---------------------------------------------------------------------------------

function paintIncidentChoice() {
  const choice = $("note-incident");
  const chosen = choice.value;
  choice.replaceChildren(...[...incidents.values()].map((i) => el("option", { value: i.id }, `${planTitle(i.plan_id)} · ${i.level}`)));
  if (chosen) choice.value = chosen;
}

// A photo as a JPEG at most PHOTO_MAX_PX wide or high (a phone's camera gives 12 MP and more).
async function scaledPhoto(file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, PHOTO_MAX_PX / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  // The server takes a photo of at most 2 MB: a busy scene at 1600 px fits at 0.82 or below.
  let blob = null;
  for (const quality of [0.82, 0.7, 0.55, 0.4]) {
    blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
    if (blob.size <= PHOTO_MAX_BYTES) break;
  }
  return { blob, width, height, preview: canvas.toDataURL("image/jpeg", 0.5) };
}

async function photoChosen(event) {
  const file = event.target.files?.[0];
  photo = null;
  $("photo-preview").hidden = true;
  if (!file) return;
  try {
    photo = await scaledPhoto(file);
  } catch (error) {
    $("photo-info").textContent = say("note.photo_failed", { detail: error.message });
    return;
  }
  $("photo-info").textContent = say("note.photo_ready", { width: photo.width, height: photo.height, kb: Math.round(photo.blob.size / 1024) });
  const preview = $("photo-preview");
  preview.src = photo.preview;
  preview.hidden = false;
}

async function sendNote(event) {
  event.preventDefault();
  const form = event.target;
  const incident = form.incident.value;
  if (!incident) {
    message(say("note.no_incident"), true);
    return;
  }
  const text = form.text.value.trim();
  const body = { text };
  if (photo) body.photo = await dataUrl(photo.blob);
  await outbox.enqueue({
    user: user.username,
    site: site.id,
    method: "POST",
    path: sitePath(`/incidents/${encodeURIComponent(incident)}/notes`),
    body: JSON.stringify(body),
    contentType: "application/json",
    kind: "note",
    about: { incident_id: incident, text: text.slice(0, 80), photo: Boolean(photo) },
  });
  form.text.value = "";
  form.photo.value = "";
  photo = null;
  $("photo-info").textContent = "";
  $("photo-preview").hidden = true;
  message(say("note.queued"));
  await reloadOutbox();
  send();
}

const dataUrl = (blob) =>
  new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });

// -- call-outs ----------------------------------------------------------------------------------------

// My open call-outs (the call tree's notices for my duties or my name), each with its button.
async function refreshCallouts() {
  try {
    const { data } = await read(sitePath("/notifications/mine"));
    callouts = data.notices || [];
  } catch (error) {
    if (error.status !== 401) callouts = callouts || [];
  }
  paintCallouts();
}

function paintCallouts() {
  const list = $("callouts");
  if (!list) return;
  const open = callouts || []; // the server lists those waiting for an answer only
  if (!open.length) {
    list.replaceChildren(el("li", { class: "empty" }, say("callout.none")));
    return;
  }
  list.replaceChildren(
    ...open.map((notice) => {
      const queued = actions.filter((a) => a.kind === "callout" && a.about.seq === notice.seq);
      const pending = queued.some((a) => a.state === "pending");
      const card = el("li", { class: "card", "data-seq": String(notice.seq), "data-incident": notice.incident_id, "data-pending": String(pending) });
      const head = el("div", { class: "card-head" }, el("span", { class: "badge" }, notice.role || ""));
      if (notice.due_at) head.append(el("span", { class: "countdown", "data-due": notice.due_at }));
      const incident = incidents.get(notice.incident_id);
      card.append(head, el("p", { class: "title" }, say("callout.what", { role: notice.role || "?", contact: notice.contact?.name || "?" })));
      if (incident) card.append(el("p", { class: "quiet small" }, say("task.incident", { plan: planTitle(incident.plan_id), level: notice.level || incident.level })));
      if (pending) card.append(el("p", { class: "pending" }, say("outbox.pending", { time: clock(Date.parse(queued.at(-1).acted_at)) })));
      else if (!queued.some((a) => a.state === "sent")) {
        const button = el("button", { type: "button", class: "big primary", "data-action": "answer" }, say("callout.confirm"));
        button.addEventListener("click", () => answerCallout(notice));
        card.append(button);
      }
      return card;
    }),
  );
  tick();
}

async function answerCallout(notice) {
  await outbox.enqueue({
    user: user.username,
    site: site.id,
    method: "POST",
    path: sitePath(`/notifications/${notice.seq}/answer`),
    body: null,
    contentType: null,
    kind: "callout",
    about: { seq: notice.seq, role: notice.role || "" },
  });
  await reloadOutbox();
  send();
}

// -- tabs, start ----------------------------------------------------------------------------------------

function showTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) {
    if (button.dataset.tab === name) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  closeAsk();
  if (name === "route") openMap();
}

async function start() {
  showOnly("app");
  try {
    site = await chooseSite();
  } catch (error) {
    if (error.status !== 401) message(error.message, true);
    return;
  }
  await outbox.prune().catch(() => {});
  await reloadOutbox();
  await refresh();
  send(); // what an earlier visit left unsent
  document.body.dataset.ready = "true";
}

async function registerWorker() {
  if (!("serviceWorker" in navigator)) return;
  // The first visit read before the worker took over: read again through it, so that what
  // the page shows is kept for offline from the first visit on.
  navigator.serviceWorker.addEventListener("controllerchange", () => {
    kept = false;
    refresh();
  });
  try {
    await navigator.serviceWorker.register("/phone/sw.js", { scope: "/phone/" });
  } catch (error) {
    console.warn("the phone app's service worker is not registered", error);
  }
}

function boot() {
  language = initialLanguage();
  const choice = $("language");
  choice.value = language;
  choice.addEventListener("change", () => {
    language = choice.value;
    rememberLanguage(language);
    translate();
  });
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  $("ask").addEventListener("submit", answerAsked);
  $("ask-cancel").addEventListener("click", closeAsk);
  $("ask-input").addEventListener("input", () => ($("ask-error").textContent = ""));
  $("note-form").addEventListener("submit", sendNote);
  $("photo").addEventListener("change", photoChosen);
  $("locate").addEventListener("click", locate);
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  window.addEventListener("online", () => {
    retryAt = 0;
    send();
    refresh();
  });
  window.addEventListener("offline", paintNet);
  setInterval(tick, 1000);
  translate();
  registerWorker();
  token = localStorage.getItem(TOKEN);
  user = JSON.parse(localStorage.getItem(USER) || "null");
  if (token && user) start();
  else needSignIn();
}

boot();
