// What the wall knows: the site, its active incidents (picture, drawn layers, card, events since),
// where people are, and the last event sequence number seen (a reconnect resumes after it).
// Wall is one object; its methods for each concern live in their modules (socket, map, panels,
// actions) and are mixed in here, so every one of them is `this.something` as before.
import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { actionMethods } from "./actions.js";
import { Alarms } from "./alarms.js";
import { api } from "./api.js";
import { bannerMethods } from "./banner.js";
import { commandMethods } from "./commands.js";
import { $, setStatus } from "./dom.js";
import { DrillConsole } from "./drill-console.js";
import { healthMethods } from "./health.js";
import { kpiMethods } from "./kpis.js";
import { mapMethods } from "./map.js";
import { panelMethods } from "./panels.js";
import { siteLayerMethods } from "./site-layers.js";
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
const SENSORS_WAIT_MS = 300;
const WIND_POLL_MS = 10_000; // a wind reading alone is no event: the card asks this often
const PEOPLE_PAINT_MS = 1000; // the people tab's lists follow positions at most once a second

export class Wall {
  constructor(site) {
    this.site = site;
    this.closed = false;
    this.socket = null;
    this.lastSeq = null; // the last event sequence number seen: a reconnect resumes after it
    this.retryMs = 1000;
    this.retryTimer = null;
    this.silenceTimer = null;
    this.incidents = new Map(); // id -> {picture, layers, element, events, tab, notices, log}
    this.selected = null; // the incident the card, the tabs and the key figures show
    this.pending = new Map(); // incident id -> timer fetching its picture
    this.people = new Map(); // person id -> [lon, lat]
    this.atMuster = new Map(); // person id -> the muster point they are at (the server's word)
    this.arrivalsVersion = 0; // counts changes to atMuster (the key figures' cache)
    this.wind = null; // the latest wind station reading: {sensor, speed, from, at}
    this.musterAreas = new Map(); // muster id -> its zone feature (the incident marks verdicts)
    this.resourcesById = new Map(); // resource id -> feature
    this.musters = new Map(); // muster zone id -> name
    this.sensors = new Map(); // sensor id -> feature
    this.me = null; // the signed-in user: {username, display_name, roles}
    this.templates = new Map(); // "plan@version" -> promise of the plan's template (or null)
    this.templateSteps = new Map(); // "plan@version" -> Map(step id -> the template's step)
    this.templateDocs = new Map(); // "plan@version" -> the template, once loaded
    this.activation = null; // the activation panel, for commanders
    this.editor = null; // the layer editor (editor.js), for planners
    this.fences = null; // breaches and temporary fences (fences.js)
    this.personAlarms = null; // SOS, man-down, signal lost (person-alarms.js)
    this.routeAsked = 0; // counts route requests (routeNow): only the newest answer is drawn
    this.routePopup = null; // {incidentId, popup} of the route shown now
    this.time = this.timeFormat(site.timezone);
    this.drills = new Map(); // drill id -> what its drill.* events said (the exercise banner)
    this.drillConsole = null; // the drill controller's console (drill-console.js), for them only
    if (!this.isReplay) Wall.live = this; // the wall following the site live (a replay is not)

    const container = $("map");
    container.replaceChildren();
    this.map = L.map(container, { zoomSnap: 0.25, attributionControl: false });
    // Panes keep the drawing order whatever arrives first.
    for (const [name, z] of [
      ["basemap", 300], ["zones", 410], ["network", 420], ["receptors", 425], ["labels", 428], ["threat", 430],
      ["routes", 440], ["sensors", 445], ["dots", 450], ["alerts", 460],
    ]) {
      this.map.createPane(name).style.zIndex = z;
    }
    this.map.getPane("basemap").style.pointerEvents = "none";
    // Names of places, zones and receptors lie under the people and the threat: never over a dot.
    this.map.getPane("labels").style.pointerEvents = "none";
    // The map's box changes when key figures or alarms come and go: Leaflet is told.
    this.resized = new ResizeObserver(() => this.resizedMap());
    this.resized.observe(container);
    const [w, s, e, n] = site.bbox;
    this.frame([[s, w], [n, e]]);
    L.control.scale({ imperial: false, position: "bottomright" }).addTo(this.map);
    this.followUser();
    this.followPeople();
    $("wall-error").textContent = "";
    for (const card of document.querySelectorAll("#incidents .incident")) card.remove();
    $("no-incident").hidden = false;
    $("activate").hidden = true;
    $("activate-result").replaceChildren();
    this.alarms = this.makeAlarms();
    this.paintKpis();
    this.paintSwitch();
    this.paintBanner();
    this.ticker = setInterval(() => this.tickPanels(), 1000);
    this.windTimer = setInterval(() => !document.hidden && this.refreshWind(), WIND_POLL_MS);
    this.onLanguage = () => this.repaint();
    document.addEventListener("rp-language", this.onLanguage);
  }

  // The language changed: everything the wall drew is painted again in it.
  repaint() {
    setStatus($("status").dataset.state); // the badge, in the new language
    for (const shown of this.incidents.values()) {
      this.paintCard(shown);
      for (const dot of shown.layers.personDots?.values() || []) dot.getTooltip()?.setContent(dot.labelText());
      if (shown.command?.confirm && !shown.command.confirm.hidden) this.closeConfirm(shown); // asked again, in it
    }
    this.paintKpis();
    this.paintSwitch();
    this.alarms.paint();
    this.paintHealth(this.health);
    this.paintMapTexts();
    this.paintBanner();
    this.drillConsole?.paint();
    this.activation?.paintLevels();
    this.editor?.repaint();
  }

  // The alarm bar under the header is the live wall's (a replay has its own quiet one).
  makeAlarms() {
    return new Alarms(this);
  }

  // The moment the wall shows: now, live; the replay's own time in a replay (replay.js).
  now() {
    return Date.now();
  }

  templateOf(shown) {
    return this.templateDocs.get(shown.key) || null;
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
    if (Wall.live === this) Wall.live = null;
    this.drillConsole?.close();
    clearInterval(this.ticker);
    this.resized.disconnect();
    clearInterval(this.windTimer);
    clearTimeout(this.peopleTimer);
    clearTimeout(this.sensorsTimer);
    document.removeEventListener("rp-language", this.onLanguage);
    this.alarms.close();
    clearTimeout(this.retryTimer);
    clearTimeout(this.silenceTimer);
    for (const timer of this.pending.values()) clearTimeout(timer);
    this.activation?.close();
    this.editor?.close();
    this.fences?.close();
    this.personAlarms?.close();
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
    this.paintKpis();
    // Live, with the user known: a drill controller's console, for them only.
    if (!this.drillConsole && !this.closed) this.drillConsole = DrillConsole.open(this);
  }

  remove(id) {
    const shown = this.incidents.get(id);
    if (!shown) return;
    this.closeRoute(id);
    shown.layers.remove();
    shown.element.remove();
    clearTimeout(shown.noticesTimer);
    this.incidents.delete(id);
    this.refreshPeople();
    $("no-incident").hidden = this.incidents.size > 0;
    if (this.selected === id) this.selected = null;
    this.select([...this.incidents.keys()].pop() ?? null);
    this.paintLegend();
    this.paintWindControl();
    this.paintKpis();
    this.paintSwitch();
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
    }
    const key = `${picture.incident.plan_id}@${picture.incident.plan_version}`;
    // Who stands at a muster point is the server's word only: the snapshot's and positions'
    // at_muster (a resume brings everyone's after caught_up). The picture's list of the missing
    // says who is not; it never says where the others are.
    for (const m of picture.headcount?.missing || []) this.atMuster.delete(m.id);
    this.arrivalsVersion += 1;
    const shown = old || { events: [], log: [], firstLevel: picture.plan.level };
    Object.assign(shown, { picture, key, events, layersChanged: old?.layersChanged });
    shown.layers = this.draw(picture);
    this.incidents.set(id, shown);
    this.refreshPeople();
    if (old) this.paintCard(shown);
    else {
      this.card(shown);
      $("incidents").append(shown.element);
      this.loadNotices(shown);
    }
    $("no-incident").hidden = true;
    for (const event of events) this.applyToPicture(shown, event); // events newer than a fetched picture
    // A new incident takes the wall, but an exercise never takes it from a real one.
    if (!this.selected || !this.incidents.has(this.selected) || (!old && !this.exerciseYields(picture))) this.select(id);
    else this.select(this.selected);
    this.frameIncident(shown);
    if (!this.templateDocs.has(key)) {
      // The plan's own text: step titles, role names, what counts as done, which steps are optional.
      this.template(picture.incident.plan_id, picture.incident.plan_version).then(() => {
        if (this.incidents.get(id) === shown) this.paintCard(shown);
        this.paintBanner?.(); // the exercise banner names the plan by its title too
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
          if (version) {
            this.templateSteps.set(key, steps);
            this.templateDocs.set(key, plan.template);
          }
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
    if (event.type === "layer.changed") return this.layerChanged(event.data); // site-layers.js
    if (event.type.startsWith("drill.")) this.drillEvent(event); // the banner, the console
    if (event.type === "drill.ended") this.alarms.drillEnded(event.data?.drill_id);
    // Alarms are for every wall; a proposal is offered on its alarm.
    if (event.type === "sensor.state") {
      this.alarms.state(event);
      // A drill's injected reading is its alarm's alone: the detector on the map keeps its
      // real tier.
      if (!event.data?.exercise) this.paintSensor(String(event.data?.sensor_id), event.data?.to ?? null);
    }
    if (event.type === "sensor.acknowledged") this.alarms.acknowledged(event);
    if (event.type.startsWith("fence.")) this.fences?.event(event); // fences.js
    if (event.type.startsWith("person.")) this.personAlarms?.event(event); // person-alarms.js
    if (event.type.startsWith("sensor.")) this.alarms.manage?.(event); // checks, confirmations, modes
    if (event.type === "plan.proposed") return this.alarms.proposed(event);
    // Readings came in: the wind on the card and in the activation panel follow the stations.
    // (sensor.health: a detector's health changed, health.js lists it from the same answer.)
    if (event.type === "incident.wind_changed" || event.type === "sensor.state" || event.type === "sensor.health") this.sensorsChanged();
    if (event.type === "plan.run.stood_down") return this.remove(id);
    if (PICTURE_EVENTS.has(event.type)) this.expectPicture(id);
    const shown = this.incidents.get(id);
    if (!shown) return;
    if (event.type === "incident.network_changed") {
      shown.layersChanged = {
        at: event.at,
        layers: (event.data?.layers || []).join(", "),
        rerouted: event.data?.rerouted?.length || 0,
        error: event.data?.error || null,
      };
    }
    if (event.type.startsWith("notification.")) this.loadNotices(shown);
    // Who is inside each zone now (people walked in or out): the key figures follow.
    if (event.type === "incident.people_moved" && event.data?.counts) {
      shown.picture.exposure = { ...shown.picture.exposure, counts: event.data.counts };
      shown.peopleStale = true;
      if (shown.tab === "people") this.paintPeopleSoon();
    }
    shown.events.push(event);
    if (shown.events.length > 500) shown.events.splice(0, shown.events.length - 500);
    this.logEvent(shown, event);
    this.applyToPicture(shown, event);
    if (this.selected === id) this.paintKpis();
  }

  // Sensors' states changed: asked again once a burst of events is over (a catch-up may bring
  // hundreds), for the wind, the detectors' tiers and the alarms, and the activation panel.
  sensorsChanged() {
    clearTimeout(this.sensorsTimer);
    this.sensorsTimer = setTimeout(() => {
      if (this.closed) return;
      this.activation?.refreshWind();
      this.refreshWind();
    }, SENSORS_WAIT_MS);
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

  // Positions (about 4 messages a second), compact ({ids, origin, unit_deg, xy, musters, at})
  // or full ({positions: {id: [lon, lat]}, at_muster}) (docs/protocol.md): the dots move, those who arrived at a muster point
  // are drawn as arrived, the key figures follow at once and the people tab at most once a
  // second. Nothing here touches the DOM per person: the people canvas draws on the next frame.
  move(message, headcount) {
    const ids = message.ids || Object.keys(message.positions || {});
    const n = ids.length;
    const lonlat = new Float64Array(2 * n);
    const arrivals = [];
    const arrive = (id, muster) => {
      if ((this.atMuster.get(id) || null) === (muster || null)) return;
      this.arrivalsVersion += 1;
      if (muster) this.atMuster.set(id, muster);
      else this.atMuster.delete(id);
      arrivals.push(id);
    };
    if (message.xy) {
      const [lon0, lat0] = message.origin;
      const unit = message.unit_deg;
      const xy = message.xy;
      for (let i = 0; i < 2 * n; i += 2) {
        lonlat[i] = lon0 + unit * xy[i];
        lonlat[i + 1] = lat0 + unit * xy[i + 1];
      }
      const at = message.at;
      if (at) for (let i = 0; i < n; i += 1) if (at[i] > -2) arrive(ids[i], at[i] >= 0 ? message.musters[at[i]] : null);
    } else {
      ids.forEach((id, i) => {
        lonlat[2 * i] = message.positions[id][0];
        lonlat[2 * i + 1] = message.positions[id][1];
      });
      for (const [id, muster] of Object.entries(message.at_muster || {})) arrive(id, muster);
    }
    // Where everyone is, kept in place (no array per person per message).
    const people = this.people;
    for (let i = 0; i < n; i += 1) {
      const at = people.get(ids[i]);
      if (at) {
        at[0] = lonlat[2 * i];
        at[1] = lonlat[2 * i + 1];
      } else people.set(ids[i], [lonlat[2 * i], lonlat[2 * i + 1]]);
    }
    this.peopleLayer.moveFlat(ids, lonlat);
    for (const id of arrivals) this.peopleLayer.setArrived(id, Boolean(this.atMuster.get(id)));
    for (const shown of this.incidents.values()) {
      const dots = shown.layers.personDots; // the trapped: few, SVG
      if (!dots?.size) continue;
      for (const [id, dot] of dots) {
        const at = people.get(id);
        if (at) dot.setLatLng([at[1], at[0]]);
      }
    }
    if (headcount) this.headcount = headcount;
    if (arrivals.length || headcount) {
      this.paintKpis();
      this.paintPeopleSoon();
    }
  }

  paintPeopleSoon() {
    if (this.peopleTimer) return;
    this.peopleTimer = setTimeout(() => {
      this.peopleTimer = null;
      const shown = this.incidents.get(this.selected);
      if (shown && !this.closed) {
        if (this.headcount) shown.picture.headcount = { ...shown.picture.headcount, ...this.headcount };
        // Painted when seen: a hidden tab is painted when it is opened (showTab).
        if (shown.tab === "people") this.paintPeople(shown);
        else shown.peopleStale = true;
      }
    }, PEOPLE_PAINT_MS);
  }
}

// The only use of imports while the modules load: this module must be the first to load the
// method modules (frontend/README.md), so that they are all loaded by now.
Object.assign(Wall.prototype, socketMethods, mapMethods, panelMethods, actionMethods, kpiMethods, commandMethods, bannerMethods, siteLayerMethods, healthMethods);
Wall.live = null; // the wall shown live now, if any (replay.js pauses it during a replay)
