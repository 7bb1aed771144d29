// What the wall knows: the site, its active incidents (picture, drawn layers, card, events since),
// where people are, and the last event sequence number seen (a reconnect resumes after it).
// Wall is one object; its methods for each concern live in their modules (socket, map, panels,
// actions) and are mixed in here, so every one of them is `this.something` as before.
import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { actionMethods } from "./actions.js";
import { api } from "./api.js";
import { $ } from "./dom.js";
import { mapMethods } from "./map.js";
import { panelMethods } from "./panels.js";
import { socketMethods } from "./socket.js";

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
  "incident.network_changed",
]);
const PICTURE_WAIT_MS = 500;

export class Wall {
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

  seen(seq) {
    if (Number.isInteger(seq) && (this.lastSeq === null || seq > this.lastSeq)) this.lastSeq = seq;
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
}

// The only use of imports while the modules load: this module must be the first to load the
// method modules (frontend/README.md), so that they are all loaded by now.
Object.assign(Wall.prototype, socketMethods, mapMethods, panelMethods, actionMethods);
