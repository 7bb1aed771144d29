// Acting from the wall: moving steps, assigning and releasing duties (Wall methods, mixed into it
// by state.js), and the commander's activation panel with its proposals. The server has the
// last word; every refusal is shown where it happened, in the server's own words.
import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { api, problemText, send } from "./api.js";
import { $, el } from "./dom.js";

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

export const actionMethods = {
  // -- acting on steps ---------------------------------------------------------------------------

  // A commander may act on every step; a responder on the steps whose plan role their duty in
  // this incident gives them. The server decides in the end: what it refuses is shown.
  mayAct(step, shown) {
    if (!this.me || step.withdrawn) return false;
    if (this.isCommander()) return true;
    if (!this.me.roles?.includes("responder")) return false;
    return (shown.picture.plan.duties?.[step.role] || []).includes(this.me.username);
  },

  // The moves that make sense from a step's status (the plan engine's rules).
  actionsFor(step, shown, about) {
    if (!this.mayAct(step, shown)) return [];
    const moves = STEP_MOVES[step.status] || [];
    // Only the commander skips a step that is not optional.
    const skips = this.isCommander() || Boolean(about?.optional);
    return moves.filter((move) => move !== "skip" || skips);
  },

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
  },

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
  },

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
  },

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
  },

  dutyPath(shown) {
    return `/api/sites/${encodeURIComponent(this.site.id)}/incidents/${encodeURIComponent(shown.picture.incident.id)}/duties`;
  },

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
  },

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
  },
};

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
// Proposed plans (a sensor's alarm) show as a banner whose one click does that.
export class Activation {
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
