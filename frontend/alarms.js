// Alarms on every wall, for every role: a detector reaching a tier shows in the bar under the
// header, sounds a tone where the wall allows it, and stays until someone acknowledges it (an
// event naming who, from POST .../sensors/{id}/acknowledge). A sensor that fell back to normal
// while unacknowledged stays too (ISA-18.2). A plan the alarm proposes is offered to
// commanders; one already running for that place points to its incident, for everyone.
import { problemText, send } from "./api.js";
import { $, el } from "./dom.js";
import { t } from "./i18n.js";

const SOUND_KEY = "rallypoint.sound";
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
      this.entries.set(id, { ...old, id, sensor: String(d.sensor_id), exercise: d.exercise || null, tier: d.to, since: event.at, value: d.value, substance: d.substance, cleared: false });
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
      if (!alarm) {
        this.acked.delete(id);
        if (this.entries.delete(id)) changed = true;
      } else if (alarm.acknowledged) {
        this.acked.set(id, alarm.tier);
        if (this.entries.delete(id)) changed = true;
      } else if (!this.entries.has(id)) {
        this.entries.set(id, { id, tier: alarm.tier, since: alarm.since, value: alarm.value, substance: sensor.substance, cleared: !sensor.tier });
        changed = true;
      }
    }
    if (changed) this.paint();
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
    box.hidden = !this.entries.size;
    box.setAttribute("aria-label", t("alarm.region"));
    this.tone.set(this.entries.size > 0);
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
