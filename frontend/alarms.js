// Alarms on every wall, for every role: a detector reaching a tier shows in the bar under the
// header, sounds a tone where the wall allows it, and stays until someone acknowledges it (an
// event naming who, from POST .../sensors/{id}/acknowledge). A sensor that fell back to normal
// while unacknowledged stays too (ISA-18.2). A plan the alarm proposes is offered to
// commanders; one already running for that place points to its incident, for everyone.
// Alarm management (command/monitoring/alarms.py): an alarm says whether the post was asked to
// check it and whether it is confirmed (by voting, or by whom); a commander confirms it here
// (POST .../sensors/{id}/confirm). Sensors shelved, out of service or in test are listed under
// the alarms; a test alarm is marked and sounds no tone.
import { problemText, send } from "./api.js";
import { $, el } from "./dom.js";
import { t } from "./i18n.js";

const SOUND_KEY = "rallypoint.sound";
// The words for a sensor's mode, and for how an alarm was confirmed.
const MODE_WORDS = { shelved: "alarm.mode_shelved", out_of_service: "alarm.mode_out_of_service", test: "alarm.mode_test" };
const MODE_EVENTS = new Set(["sensor.shelved", "sensor.out_of_service", "sensor.test_started"]);
const MODE_ENDS = new Set(["sensor.unshelved", "sensor.in_service", "sensor.test_ended"]);
const BEEP_EVERY_MS = 2000;

// The alarm tone: Web Audio, two short beeps every two seconds while an alarm waits, unless
// this wall is muted (remembered). A browser that blocks sound until a click says so on the
// button; a kiosk started with --autoplay-policy=no-user-gesture-required plays at once.
export class Tone {
  constructor() {
    this.context = null;
    this.timer = null;
    this.wanted = false;
    let stored = null;
    try {
      stored = localStorage.getItem(SOUND_KEY);
    } catch {
      // no storage: sound on
    }
    this.muted = stored === "muted";
    $("sound").onclick = () => this.toggle();
    this.paint();
  }

  toggle() {
    if (this.context?.state === "suspended" && !this.muted) {
      this.context.resume().then(() => this.paint());
      return;
    }
    this.muted = !this.muted;
    try {
      localStorage.setItem(SOUND_KEY, this.muted ? "muted" : "on");
    } catch {
      // not remembered
    }
    this.sync();
  }

  // Sound while `wanted` (an unacknowledged alarm) and not muted.
  set(wanted) {
    this.wanted = wanted;
    this.sync();
  }

  sync() {
    const play = this.wanted && !this.muted;
    if (play && !this.timer) {
      this.context ||= new AudioContext();
      if (this.context.state === "suspended") this.context.resume().catch(() => {});
      this.beep();
      this.timer = setInterval(() => this.beep(), BEEP_EVERY_MS);
    } else if (!play && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
    this.paint();
  }

  beep() {
    const context = this.context;
    if (!context || context.state !== "running") {
      this.paint();
      return;
    }
    for (const offset of [0, 0.3]) {
      const oscillator = context.createOscillator();
      const gain = context.createGain();
      oscillator.type = "square";
      oscillator.frequency.value = 880;
      const start = context.currentTime + offset;
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.2, start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.2);
      oscillator.connect(gain).connect(context.destination);
      oscillator.start(start);
      oscillator.stop(start + 0.22);
    }
    this.beeps = (this.beeps || 0) + 1;
    $("sound").dataset.beeps = String(this.beeps);
  }

  // The button says what the wall does: on, muted, or blocked by the browser.
  paint() {
    const button = $("sound");
    const blocked = !this.muted && this.timer && this.context && this.context.state !== "running";
    const state = this.muted ? "muted" : blocked ? "blocked" : "on";
    button.dataset.state = state;
    button.dataset.playing = String(Boolean(this.timer) && !blocked);
    button.setAttribute("aria-pressed", String(!this.muted));
    button.replaceChildren(el("span", {}, t(`sound.${state}`)));
  }

  close() {
    clearInterval(this.timer);
    this.timer = null;
    this.context?.close().catch(() => {});
  }
}

export class Alarms {
  constructor(wall) {
    this.wall = wall;
    this.entries = new Map(); // sensor id -> {tier, since, value, substance, cleared, plans, running}
    this.acked = new Map(); // sensor id -> the tier acknowledged, while the sensor is still in a tier
    this.confirmed = new Map(); // sensor id -> how its alarm was confirmed (sensor.confirmed's data)
    this.checks = new Set(); // sensors whose alarm the post was asked to check
    this.modes = new Map(); // sensor id -> {mode, reason, by, until}
    this.tone = new Tone();
    $("alarms").replaceChildren();
    $("alarms").hidden = true;
  }

  close() {
    this.tone.close();
    $("alarms").replaceChildren();
    $("alarms").hidden = true;
  }

  // The snapshot's unacknowledged alarms: the whole list, as the server has it now.
  reset(alarms) {
    const keep = new Map();
    for (const alarm of alarms || []) {
      const old = this.entries.get(String(alarm.id));
      keep.set(String(alarm.id), { ...old, ...alarm, id: String(alarm.id) });
    }
    this.entries = keep;
    this.paint();
  }

  // The snapshot's alarm_conditions: confirmations, checks asked for, sensors in a mode.
  conditions(c) {
    this.confirmed = new Map(Object.entries(c?.confirmed || {}));
    this.checks = new Set(c?.checks || []);
    this.modes = new Map(Object.entries(c?.modes || {}));
    this.paint();
  }

  // sensor.check_requested, sensor.confirmed and the mode events (a drill's are its own).
  manage(event) {
    const d = event.data || {};
    const id = String(d.sensor_id);
    if (d.exercise) return;
    if (event.type === "sensor.check_requested") this.checks.add(id);
    else if (event.type === "sensor.confirmed") {
      this.confirmed.set(id, d);
      this.checks.delete(id);
    } else if (MODE_EVENTS.has(event.type)) this.modes.set(id, d);
    else if (MODE_ENDS.has(event.type)) this.modes.delete(id);
    else if (event.type === "sensor.state" && d.to === null) {
      this.confirmed.delete(id);
      this.checks.delete(id);
    } else return;
    this.paint();
  }

  // A sensor.state event: a rise raises (or re-arms) the alarm; a fall keeps it until acknowledged.
  // As the server decides (command/sensors.py): only a rise above the tier acknowledged
  // raises the alarm again; back to normal, an acknowledged alarm is over.
  state(event) {
    const d = event.data || {};
    // A drill's injected reading is its own alarm, marked, beside any real one of the sensor.
    const id = d.exercise ? `${d.sensor_id}#${d.exercise}` : String(d.sensor_id);
    const old = this.entries.get(id);
    if (d.exercise && d.to === null) {
      this.entries.delete(id); // a drill's alarm awaits no acknowledgement
      this.paint();
      return;
    }
    const rank = (tier) => ["warning", "alarm", "high_alarm"].indexOf(tier);
    if (d.to === null) this.acked.delete(id);
    const acked = this.acked.get(id);
    const rose = d.to && (d.from === null || d.from === undefined || rank(d.to) > rank(d.from));
    if (rose && (!old || rank(d.to) > rank(old.tier)) && (!acked || rank(d.to) > rank(acked))) {
      this.acked.delete(id);
      this.entries.set(id, { ...old, id, sensor: String(d.sensor_id), exercise: d.exercise || null, test: Boolean(d.test), tier: d.to, since: event.at, value: d.value, substance: d.substance, flags: d.flags || null, cleared: false });
    } else if (old) {
      old.cleared = d.to === null;
      old.value = d.value;
    }
    this.paint();
  }

  // A drill ended: its alarms go with it.
  drillEnded(drillId) {
    for (const [id, entry] of this.entries) if (entry.exercise === drillId) this.entries.delete(id);
    this.paint();
  }

  acknowledged(event) {
    const id = String(event.data?.sensor_id);
    this.entries.delete(id);
    if (event.data?.tier) this.acked.set(id, event.data.tier);
    this.paint();
  }

  // A plan.proposed event: the plans it proposes and those already running, on its alarm.
  // Offered on the sensor's alarm only: a proposal for an alarm already acknowledged (the
  // reading dipped and rose again) raises nothing.
  proposed(event) {
    const d = event.data || {};
    const id = d.exercise ? `${d.sensor_id}#${d.exercise}` : String(d.sensor_id);
    const entry = this.entries.get(id);
    if (!entry) return;
    entry.plans = d.plans || [];
    entry.running = d.running || {};
    entry.proposedSeq = event.seq;
    entry.level = d.level || null; // L1 unconfirmed, L2 and above confirmed
    this.paint();
  }

  // The server's word, from GET .../sensors/state (asked every few seconds): an alarm it says
  // is acknowledged, or over, goes; one it says waits is shown. The events keep the wall
  // current in between; this puts right what a reload or a gap left out.
  reconcile(sensors) {
    let changed = false;
    for (const sensor of sensors) {
      const id = String(sensor.id);
      const alarm = sensor.alarm;
      changed = this.reconcileConditions(id, sensor) || changed;
      if (!alarm) {
        this.acked.delete(id);
        if (this.entries.delete(id)) changed = true;
      } else if (alarm.acknowledged) {
        this.acked.set(id, alarm.tier);
        if (this.entries.delete(id)) changed = true;
      } else if (!this.entries.has(id)) {
        this.entries.set(id, { id, tier: alarm.tier, since: alarm.since, value: alarm.value, substance: sensor.substance, flags: alarm.flags || null, cleared: !sensor.tier });
        changed = true;
      }
    }
    if (changed) this.paint();
  }

  // The server's word on a sensor's confirmation, check and mode (GET .../sensors/state).
  reconcileConditions(id, sensor) {
    const before = JSON.stringify([this.confirmed.get(id) || null, this.checks.has(id), this.modes.get(id) || null]);
    if (sensor.confirmed) this.confirmed.set(id, sensor.confirmed);
    else if (sensor.confirmed === null) this.confirmed.delete(id);
    if (sensor.check_requested) this.checks.add(id);
    else if (sensor.check_requested === false) this.checks.delete(id);
    if (sensor.mode) this.modes.set(id, sensor.mode);
    else if (sensor.mode === null) this.modes.delete(id);
    return before !== JSON.stringify([this.confirmed.get(id) || null, this.checks.has(id), this.modes.get(id) || null]);
  }

  mayConfirm() {
    return (this.wall.me?.roles || []).includes("commander");
  }

  // How the alarm stands: confirmed (by voting, or by whom), or asked to be checked.
  confirmation(entry) {
    if (entry.exercise) return null;
    if (entry.test) return el("p", { class: "alarm-detail alarm-test" }, t("alarm.test"));
    const how = this.confirmed.get(entry.id);
    if (how?.how === "voting") {
      return el("p", { class: "alarm-detail alarm-confirmed", "data-how": "voting" }, t("alarm.confirmed_voting", { voting: how.as_voted || how.voting, detectors: (how.detectors || []).join(", ") }));
    }
    if (how) {
      return el("p", { class: "alarm-detail alarm-confirmed", "data-how": "person" }, t("alarm.confirmed_person", { who: how.by_name || how.by || "?" }));
    }
    if (entry.cleared) return null;
    return el("p", { class: "alarm-detail alarm-unconfirmed", "data-check": String(this.checks.has(entry.id)) }, t(this.checks.has(entry.id) ? "alarm.check_requested" : "alarm.unconfirmed"));
  }

  // The detector's health flags on its alarm: those it carried when the alarm rose (the
  // event's "flags", with their evidence) and those it carries now (health.js, read with the
  // sensors' state), so that an alarm of a detector overdue for calibration says so.
  healthFlags(entry) {
    if (entry.exercise) return null;
    const id = String(entry.sensor || entry.id);
    const now = (this.wall.health || []).find((d) => String(d.id) === id);
    const flags = new Map(Object.entries(entry.flags || {}));
    for (const flag of now?.flags || []) flags.set(flag, now.evidence?.[flag] || flags.get(flag) || {});
    if (!flags.size) return null;
    const words = [...flags].map(([flag, evidence]) => {
      const due = evidence?.due;
      return el("span", { class: `rp-health-flag rp-health-${flag}`, "data-flag": flag },
        due ? `${t(`health.${flag}`)} (${t("health.due", { date: String(due).slice(0, 10) })})` : t(`health.${flag}`));
    });
    const line = el("p", { class: "alarm-detail alarm-health", "data-flags": [...flags.keys()].join(" ") }, `${t("alarm.health")} `);
    words.forEach((word, i) => line.append(...(i ? [", ", word] : [word])));
    return line;
  }

  // Sensors shelved, out of service or in test: one line each, with who, why and until when.
  paintModes(box) {
    if (!this.modes.size) return;
    const list = el("ul", { class: "alarm-modes", "aria-label": t("alarm.modes_region") });
    for (const [id, m] of this.modes) {
      const sensor = this.wall.sensors.get(id);
      const name = sensor?.properties?.name || id;
      const until = m.until ? ` ${t("alarm.mode_until", { time: this.wall.at(m.until) })}` : "";
      list.append(el("li", { "data-sensor": id, "data-mode": m.mode }, `${t(MODE_WORDS[m.mode] || "alarm.mode_test")}: ${name} (${m.by_name || m.by || "?"}: ${m.reason || ""})${until}`));
    }
    box.append(list);
  }

  mayAcknowledge() {
    const roles = this.wall.me?.roles || [];
    return roles.includes("commander") || roles.includes("responder");
  }

  paint() {
    const box = $("alarms");
    const wall = this.wall;
    box.replaceChildren();
    for (const entry of this.entries.values()) {
      const sensor = wall.sensors.get(entry.sensor || entry.id);
      const name = sensor?.properties?.name || entry.sensor || entry.id;
      const unit = sensor?.properties?.unit || "";
      const title = t("alarm.title", { tier: t(`tier.${entry.tier || "alarm"}`), sensor: name });
      const item = el("section", { class: "alarm", "data-sensor": entry.sensor || entry.id, "data-tier": entry.tier || "", "data-exercise": entry.exercise || "", "aria-label": t("alarm.region") },
        el("h2", {}, entry.exercise ? `${t("exercise.label")} · ${title}` : title),
        el("p", { class: "alarm-detail" }, entry.cleared
          ? t("alarm.cleared")
          : t("alarm.detail", { substance: entry.substance || "", value: `${entry.value ?? "?"}${unit ? ` ${unit}` : ""}`, time: wall.at(entry.since) })),
      );
      const error = el("p", { class: "error alarm-error", role: "alert" });
      // A sensor in test mode: its alarm is a test one, also when the wall came in after it rose.
      if (!entry.exercise && this.modes.get(entry.sensor || entry.id)?.mode === "test") entry.test = true;
      const standing = this.confirmation(entry);
      if (standing) item.append(standing);
      const health = this.healthFlags(entry);
      if (health) item.append(health);
      if (entry.test) item.dataset.test = "true";
      if (this.mayConfirm() && !entry.exercise && !entry.test && !entry.cleared && !this.confirmed.has(entry.id)) {
        const confirm = el("button", { type: "button", class: "alarm-confirm", title: t("alarm.confirm_title", { sensor: name }) }, t("alarm.confirm"));
        confirm.addEventListener("click", () => this.confirm(entry.id, confirm, error));
        item.append(confirm);
      }
      if (this.mayAcknowledge() && !entry.exercise) {
        const ack = el("button", { type: "button", class: "alarm-ack", title: t("alarm.acknowledge_title", { sensor: name }) }, t("alarm.acknowledge"));
        ack.addEventListener("click", () => this.acknowledge(entry.id, ack, error));
        item.append(ack);
      }
      for (const [planId, incidentId] of Object.entries(entry.running || {})) {
        const show = el("button", { type: "button", class: "quiet-button proposal-running", "data-plan": planId, "data-incident": incidentId },
          t("alarm.running", { plan: wall.activation?.planLabel(planId) || planId, incident: incidentId }));
        show.addEventListener("click", () => wall.select(incidentId));
        item.append(show);
      }
      // A drill's proposal is never a button: one click would make a real incident (and
      // suspend the drill). The drill's own incident answers it.
      if (entry.plans?.length && entry.exercise) {
        item.append(el("p", { class: "alarm-detail exercise-proposal" }, t("exercise.proposal", { plans: entry.plans.map((p) => wall.activation?.planLabel(p) || p).join(", ") })));
      } else if (entry.plans?.length) wall.activation?.offer(item, entry, sensor, error);
      item.append(error);
      box.append(item);
    }
    this.paintModes(box);
    box.hidden = !this.entries.size && !this.modes.size;
    box.setAttribute("aria-label", t("alarm.region"));
    // A test alarm, or a shelved sensor's, sounds no tone.
    const sounding = [...this.entries.values()].filter((e) => !e.test && this.modes.get(e.sensor || e.id)?.mode !== "shelved");
    this.tone.set(sounding.length > 0 || Boolean(this.wall.fences?.waiting) || Boolean(this.wall.personAlarms?.waiting)); // and breaches (fences.js), people's alarms (person-alarms.js)
  }

  async confirm(sensorId, button, error) {
    button.disabled = true;
    error.textContent = "";
    try {
      const site = encodeURIComponent(this.wall.site.id);
      await send("POST", `/api/sites/${site}/sensors/${encodeURIComponent(sensorId)}/confirm`, {});
      // The sensor.confirmed event marks it confirmed on every wall, this one included.
    } catch (failure) {
      if (failure.status === 401) return;
      error.textContent = t("alarm.confirm_refused", { detail: problemText(failure) });
      button.disabled = false;
    }
  }

  async acknowledge(sensorId, button, error) {
    button.disabled = true;
    error.textContent = "";
    try {
      const site = encodeURIComponent(this.wall.site.id);
      await send("POST", `/api/sites/${site}/sensors/${encodeURIComponent(sensorId)}/acknowledge`, {});
      // The sensor.acknowledged event takes it off every wall, this one included.
    } catch (failure) {
      if (failure.status === 401) return;
      error.textContent = t("alarm.ack_refused", { detail: problemText(failure) });
      button.disabled = false;
    }
  }
}
