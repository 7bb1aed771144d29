// Acting from the wall: moving steps, assigning and releasing duties (Wall methods, mixed into it
// by state.js), and the commander's activation panel with its proposals. The server has the
// last word; every refusal is shown where it happened, in the server's own words. The wall's
// own words come from the message table (i18n.js), and follow a language switch.
import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { api, problemText, send } from "./api.js";
import { $, el } from "./dom.js";
import { currentLanguage, localized, t } from "./i18n.js";

// The moves a step allows from each status (plans/engine.py); the server has the last word.
const STEP_MOVES = {
  waiting: ["skip"],
  ready: ["acknowledge", "skip"],
  acknowledged: ["start", "skip", "fail"],
  in_progress: ["complete", "skip", "fail"],
};
// Each move's button and, for those that ask something first, its confirm button (message keys).
const STEP_ACTIONS = {
  acknowledge: { label: "stepact.acknowledge" },
  start: { label: "stepact.start" },
  complete: { label: "stepact.complete", confirm: "stepact.confirm_complete" },
  skip: { label: "stepact.skip", confirm: "stepact.confirm_skip" },
  fail: { label: "stepact.fail", confirm: "stepact.confirm_fail" },
};
// The language a step's buttons were last labelled in (a step item -> its language).
const labelledIn = new WeakMap();

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
    if (item.dataset.actions === key) {
      // Unchanged: keep a half-typed reason; only the words follow a language switch.
      if (labelledIn.get(item) !== currentLanguage()) this.labelActions(item, step, about);
      return;
    }
    item.dataset.actions = key;
    const box = item.querySelector(".step-actions");
    const form = item.querySelector(".step-form");
    form.hidden = true;
    form.replaceChildren();
    box.replaceChildren();
    for (const action of actions) {
      const button = el("button", { type: "button", "data-action": action });
      button.addEventListener("click", () => this.chooseAction(item, step, shown, action));
      box.append(button);
    }
    this.labelActions(item, step, about);
  },

  // The words of a step's buttons, and of its open form, in the wall's language.
  labelActions(item, step, about) {
    labelledIn.set(item, currentLanguage());
    for (const button of item.querySelectorAll(".step-actions button[data-action]")) {
      const action = button.dataset.action;
      const label = t(STEP_ACTIONS[action].label);
      button.title = t("stepact.title", { action: label, step: step.id });
      button.textContent = this.actionField(action, about) ? t("stepact.asks", { action: label }) : label;
    }
    const form = item.querySelector(".step-form");
    const action = form.dataset.action;
    const field = action && !form.hidden ? this.actionField(action, about) : null;
    if (!field) return;
    const words = form.querySelector("label")?.firstChild;
    if (words?.nodeType === Node.TEXT_NODE) words.data = `${field.label} `;
    const input = form.querySelector("input");
    if (input) input.placeholder = field.placeholder || "";
    const submit = form.querySelector("button[data-confirm]");
    if (submit) submit.textContent = t(STEP_ACTIONS[action].confirm);
    const cancel = form.querySelector("button.quiet-button");
    if (cancel) cancel.textContent = t("stepact.cancel");
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
    const submit = el("button", { type: "submit", "data-confirm": action }, t(STEP_ACTIONS[action].confirm));
    const cancel = el("button", { type: "button", class: "quiet-button" }, t("stepact.cancel"));
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

  // What a move asks before it is sent, with its words in the wall's language (or null).
  actionField(action, about) {
    if (action === "skip" || action === "fail") {
      return { name: "reason", type: "text", label: t(action === "skip" ? "stepact.why_skip" : "stepact.why_fail") };
    }
    if (action !== "complete") return null;
    const done = about?.done_when;
    const name = done?.name ? done.name.replaceAll("_", " ") : "";
    if (done?.kind === "value") {
      const what = name || t("stepact.value");
      return { name: "value", type: "number", label: done.unit ? t("stepact.with_unit", { name: what, unit: done.unit }) : what };
    }
    if (done?.kind === "action") {
      return {
        name: "reference",
        type: "text",
        label: name ? t("stepact.reference_named", { name }) : t("stepact.reference"),
        placeholder: t("stepact.reference_example"),
      };
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
      error.textContent = t("stepact.refused", { action: t(STEP_ACTIONS[action].label), detail: problemText(failure) });
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
      if (failure.status !== 401) error.textContent = t("duty.not_assigned", { detail: problemText(failure) });
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
      if (failure.status !== 401) error.textContent = t("duty.not_released", { detail: problemText(failure) });
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
// (`required`), the panel says so by the field and sends nothing. `label` and `placeholder` are
// message keys.
const HAZARD_MODELS = {
  // The plan's design release: the server takes the figures from the plan and the wind from
  // its last wind station reading. Only a gas needs a wind; one typed here is sent instead.
  plan: {
    fields: [
      { name: "wind_speed_m_s", label: "act.field.wind_speed_m_s", type: "number", wind: "speed", gas: true, required: "unless-station" },
      { name: "wind_from_deg", label: "act.field.wind_from_deg", type: "number", wind: "from", gas: true, required: "unless-station" },
    ],
  },
  toxic_release: {
    fields: [
      { name: "substance", label: "act.field.substance", type: "text", substance: true, required: true },
      { name: "rate_g_s", label: "act.field.rate_g_s", type: "number", design: "rate_g_s", required: true },
      { name: "wind_speed_m_s", label: "act.field.wind_speed_m_s", type: "number", wind: "speed", required: true },
      { name: "wind_from_deg", label: "act.field.wind_from_deg", type: "number", wind: "from", required: true },
      { name: "release_height_m", label: "act.field.release_height_m", type: "number", design: "release_height_m", placeholder: "act.placeholder.ground_level" },
      { name: "daytime", label: "act.field.daytime", type: "checkbox", value: "daytime" },
      { name: "insolation", label: "act.field.insolation", type: "select", options: ["strong", "moderate", "slight"], value: "moderate" },
      // A clear night is the most stable air and the longest plume: the cautious choice.
      { name: "cloud_cover_octas", label: "act.field.cloud_cover_octas", type: "number", value: 0 },
    ],
  },
  pool_fire: {
    fields: [
      { name: "fuel", label: "act.field.fuel", type: "text", design: "fuel", substance: true, required: true },
      { name: "diameter_m", label: "act.field.diameter_m", type: "number", design: "diameter_m", required: true },
    ],
  },
  explosion: {
    fields: [
      { name: "substance", label: "act.field.substance", type: "text", substance: true },
      { name: "mass_kg", label: "act.field.mass_kg", type: "number", design: "mass_kg", required: true, unless: "tnt_kg" },
      { name: "tnt_kg", label: "act.field.tnt_kg", type: "number" },
    ],
  },
  radius: {
    fields: [{ name: "radii_m", label: "act.field.radii_m", type: "list", design: "radii_m", required: true }],
  },
  erg: {
    fields: [
      { name: "substance", label: "act.field.substance", type: "text", substance: true, required: true },
      { name: "spill", label: "act.field.spill", type: "select", options: ["small", "large"], value: "large" },
      { name: "daytime", label: "act.field.daytime", type: "checkbox", value: "daytime" },
      { name: "wind_from_deg", label: "act.field.wind_from_deg", type: "number", wind: "from", required: true },
    ],
  },
};
// The words of the selects' options (their values are what is sent).
const OPTION_LABELS = {
  strong: "act.option.strong",
  moderate: "act.option.moderate",
  slight: "act.option.slight",
  small: "act.option.small",
  large: "act.option.large",
};
const optionText = (value) => (OPTION_LABELS[value] ? t(OPTION_LABELS[value]) : String(value));
// A plan's scenario hazard -> the model that draws its threat zones (the rest: fixed radii).
const SCENARIO_MODELS = { toxic_release: "toxic_release", fire: "pool_fire", explosion: "explosion" };
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

// A list as an input's value: the panel parses it back (request()), so always with commas.
const listText = (value) => (Array.isArray(value) ? value.join(", ") : String(value));
// A list in a sentence, in the wall's language.
const listWords = (value) => (Array.isArray(value) ? value.join(t("act.list_separator")) : String(value));

// A design release in a few words: "1250 g/s of chlorine, from 1 m".
function designText(design, substance) {
  const parts = [];
  if (design.rate_g_s != null) {
    parts.push(substance ? t("design.rate_of", { rate: design.rate_g_s, substance }) : t("design.rate", { rate: design.rate_g_s }));
  }
  if (design.release_height_m != null) parts.push(t("design.height", { height: design.release_height_m }));
  if (design.fuel != null) parts.push(t("design.fuel", { fuel: design.fuel }));
  if (design.diameter_m != null) parts.push(t("design.diameter", { diameter: design.diameter_m }));
  if (design.mass_kg != null) {
    parts.push(substance ? t("design.mass_of", { mass: design.mass_kg, substance }) : t("design.mass", { mass: design.mass_kg }));
  }
  if (design.radii_m != null) parts.push(t("design.radii", { radii: listWords(design.radii_m) }));
  return parts.join(t("design.separator"));
}

// The hazard an incident was activated with (its picture's `incident.hazard`), in a few words of
// the wall's language.
export function hazardText(hazard) {
  if (!hazard) return "";
  let wind = "";
  if (hazard.wind_from_deg != null) {
    wind = hazard.wind_speed_m_s != null
      ? t("hazard.wind", { speed: hazard.wind_speed_m_s, deg: hazard.wind_from_deg })
      : t("hazard.wind_from", { deg: hazard.wind_from_deg });
  }
  switch (hazard.model) {
    case "toxic_release":
      return t("hazard.toxic_release", { rate: hazard.rate_g_s, substance: hazard.substance, wind });
    case "pool_fire":
      return t("hazard.pool_fire", { fuel: hazard.fuel, diameter: hazard.diameter_m });
    case "explosion":
      return hazard.tnt_kg != null
        ? t("hazard.explosion_tnt", { tnt: hazard.tnt_kg })
        : t("hazard.explosion", { mass: hazard.mass_kg, substance: hazard.substance });
    case "radius":
      return t("hazard.radius", { radii: listWords(hazard.radii_m) });
    case "erg":
      return t("hazard.erg", { spill: optionText(hazard.spill), substance: hazard.substance, wind });
    default:
      return hazard.model;
  }
}

// The commander's panel: a plan, a level, a place clicked on the map and the hazard, then one
// "Activate". A plan with a design release activates it ("model": "plan") under the last wind a
// station reported; the figures are prefilled from the plan and the station only, never guessed.
// Proposed plans (a sensor's alarm) show as a banner whose one click does that. Everything the
// panel says is kept as what to say (a message key and its figures, or the server's words), so
// a language switch ("rp-language") says it again in the other language.
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
    this.said = new Map(); // field name -> what its error element says: functions giving text
    this.saying = null; // what the panel's error line says: a function giving its text
    this.labelled = []; // the hazard inputs' words: {field, words (the label's text node), input}
    this.result = null; // the last activation: {plan, level, incident, hazard}
    this.refusal = null; // the last refusal: {text, fields, say (gives text again, if local)}

    const signal = this.abort.signal;
    const form = $("activate-form");
    $("activate").hidden = false;
    $("activate-plan").replaceChildren();
    this.paintLocation();
    this.paintResult();
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
    // setLanguage has written the page's static text already; the panel's own follows.
    document.addEventListener("rp-language", () => this.repaint(), { signal });
    wall.map.on("click", (event) => {
      if (event.personHit) return; // a click on a person's dot is about them, not a place
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

  // Everything the panel wrote, again in the wall's language (what was typed stays).
  repaint() {
    for (const option of $("activate-plan").options) option.textContent = this.planOption(option.value);
    this.paintModelOption();
    this.paintLocation();
    this.labelFields();
    this.paintWind();
    if (this.plan) this.paintDesign($("activate-model").value);
    this.paintResult();
    for (const name of this.said.keys()) this.paintError(name);
    if (this.refusal?.say) this.refusal.text = this.refusal.say();
    this.sayError(this.saying);
    this.marker?.setTooltipContent(t("act.pick"));
  }

  async loadPlans() {
    let plans;
    try {
      ({ plans } = await api(`/api/sites/${this.site()}/plans`));
    } catch (error) {
      if (error.status !== 401) {
        const detail = problemText(error);
        this.sayError(() => t("act.plans_failed", { detail }));
      }
      return;
    }
    // Only a plan's approved version is activated: one never approved is not offered.
    plans = plans.filter((plan) => plan.approved_version != null);
    const select = $("activate-plan");
    for (const plan of plans) {
      this.plans.set(plan.id, plan);
      select.append(el("option", { value: plan.id }, this.planOption(plan.id)));
    }
    if (!plans.length) this.sayError(() => t("act.no_plans"));
    else await this.choosePlan(select.value);
  }

  // A plan in the plan select: its title in the wall's language (title_zh in Chinese), and id.
  planOption(planId) {
    const plan = this.plans.get(planId);
    return t("act.plan_option", { title: localized(plan, "title") || planId, id: planId });
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
      const reported = t("act.wind_reported", {
        station: station.sensor,
        time: this.wall.at(station.at),
        age: age > WIND_OLD_MS ? t("act.wind_age", { minutes: Math.round(age / 60_000) }) : "",
        stale: this.stationError ? t("act.wind_stale", { detail: this.stationError }) : "",
      });
      text = typed
        ? t("act.wind_typed_over", { speed: station.speed, from: station.from, reported })
        : t("act.wind_reading", { reported });
      note.dataset.source = typed ? "typed" : "station";
    } else {
      const why = this.stationError
        ? t("act.wind_unreadable", { detail: this.stationError })
        : t("act.wind_none");
      text = typed ? t("act.wind_typed_only") : t(plan ? "act.wind_type_plan" : "act.wind_type", { why });
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
    $("activate-model").querySelector("option[value='plan']").disabled = !design;
    this.paintModelOption();
    this.fields(design ? "plan" : SCENARIO_MODELS[scenario.hazard] || "radius");
    $("activate-hazard").dataset.plan = planId; // filled in for this plan
  }

  // The model option "design release" says whether the chosen plan gives one.
  paintModelOption() {
    if (!this.plan) return; // no plan chosen yet: the page's own words (index.html)
    const option = $("activate-model").querySelector("option[value='plan']");
    option.textContent = t(this.plan.design ? "design.option" : "design.option_none");
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
      if (!ACTIVATION_FIELDS.includes(name)) {
        this.errors.delete(name);
        this.said.delete(name);
      }
    }
    this.labelled = [];
    const wanted = HAZARD_MODELS[model].fields.filter((f) => !f.gas || scenario?.hazard === "toxic_release");
    for (const field of wanted) {
      const id = `activate-${field.name}`;
      const error = el("span", { class: "field-error", id: `activate-error-${field.name}` });
      let input;
      if (field.type === "select") {
        input = el("select", { id, name: field.name });
        for (const option of field.options) input.append(el("option", { value: option }));
      } else {
        input = el("input", { id, name: field.name, type: field.type === "list" ? "text" : field.type });
        if (field.type === "number") input.step = "any";
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
      const words = document.createTextNode(""); // labelFields writes it
      const label = field.type === "checkbox"
        ? el("label", { class: "check" }, input, words)
        : el("label", {}, words, input);
      box.append(el("div", { class: "field" }, label, error));
      this.errors.set(field.name, error);
      this.labelled.push({ field, words, input });
      if (field.name === "wind_from_deg") {
        // Where the wind comes from, below its inputs (paintWind).
        box.append(el("p", { class: "hint wind-note", id: "activate-wind-note", "aria-live": "polite" }));
      }
    }
    this.labelFields();
    this.paintWind();
    this.paintDesign(model);
  }

  // The hazard inputs' labels, placeholders and options, in the wall's language.
  labelFields() {
    for (const { field, words, input } of this.labelled) {
      words.data = field.type === "checkbox" ? ` ${t(field.label)}` : `${t(field.label)} `;
      if (field.placeholder) input.placeholder = t(field.placeholder);
      if (field.type === "select") {
        for (const option of input.options) option.textContent = optionText(option.value);
      }
    }
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
      note.replaceChildren(t("design.none"));
      return;
    }
    const what = designText(plan.design, plan.scenario.substances?.[0]);
    const gas = plan.scenario.hazard === "toxic_release";
    const head = model === "plan"
      ? t(gas ? "design.plan_gas" : "design.plan", { what })
      : t("design.prefilled", { what });
    const basis = t("design.basis", { basis: localized(plan.design, "basis") });
    note.replaceChildren(el("span", {}, head), " ", el("small", { class: "basis" }, basis));
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
    this.paintLocation();
    this.marker?.remove();
    this.marker = L.circleMarker([lat, lon], {
      pane: "dots", className: "rp-pick", radius: 9, color: "#000", weight: 3, dashArray: "3 3", fillColor: "#fff", fillOpacity: 0.6,
    })
      .bindTooltip(t("act.pick"))
      .addTo(this.wall.map);
  }

  // The place picked, or how to pick one.
  paintLocation() {
    const [lon, lat] = this.location || [];
    $("activate-location").textContent = this.location
      ? t("act.location", { lat: lat.toFixed(6), lon: lon.toFixed(6) })
      : t("act.click_map");
  }

  // The last activation, under the panel: its incident and the hazard it was drawn with.
  paintResult() {
    const result = this.result;
    if (!result) {
      $("activate-result").replaceChildren();
      return;
    }
    const used = hazardText(result.hazard);
    $("activate-result").replaceChildren(
      el("span", { "data-incident": result.incident }, t("act.activated", result)),
      used ? el("span", { class: "used" }, t("act.used", { hazard: used })) : null,
    );
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
    this.result = null;
    this.paintResult();
    const missing = this.missing();
    if (!this.location) this.showError("location", () => t("act.click_map"));
    for (const input of missing) {
      const why = input.dataset.wind && !this.station ? "act.required_wind" : "act.required";
      this.showError(input.name, () => t(why));
    }
    if (!this.location || missing.length) {
      const names = [...(this.location ? [] : ["location"]), ...missing.map((input) => input.name)];
      const say = () => t("act.fill_marked");
      this.refuse({ text: say(), fields: names, say });
      return false;
    }
    const request = this.request();
    const button = $("activate-submit");
    button.disabled = true;
    try {
      const picture = await send("POST", `/api/sites/${this.site()}/incidents`, request);
      // The picture arrives over the websocket like every other screen's.
      this.result = { plan: request.plan_id, level: request.level, incident: picture.incident.id, hazard: picture.incident.hazard };
      this.paintResult();
      this.location = null;
      this.marker?.remove();
      this.marker = null;
      this.paintLocation();
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
      this.showError(name, () => reason); // the server's own words, in its language
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
    this.sayError(() => t("act.not_activated", { detail: refusal.text }));
    $("activate").open = true;
    const first = this.hazardInputs().find((input) => input.getAttribute("aria-invalid") === "true");
    first?.focus();
  }

  // The panel's error line: `say` gives its text (again after a language switch), or nothing.
  sayError(say) {
    this.saying = say;
    $("activate-error").textContent = say ? say() : "";
  }

  // `say` gives a field's error text: each one is added to what the field says already.
  showError(name, say) {
    if (!this.errors.has(name)) return;
    this.said.set(name, [...(this.said.get(name) || []), say]);
    this.paintError(name);
    document.querySelector(`[aria-describedby="${this.errors.get(name).id}"]`)?.setAttribute("aria-invalid", "true");
  }

  paintError(name) {
    const error = this.errors.get(name);
    if (error) error.textContent = (this.said.get(name) || []).map((say) => say()).join("; ");
  }

  clearError(name) {
    const error = this.errors.get(name);
    this.said.delete(name);
    if (!error) return;
    error.textContent = "";
    document.querySelector(`[aria-describedby="${error.id}"]`)?.removeAttribute("aria-invalid");
  }

  clearErrors() {
    this.sayError(null);
    for (const name of this.errors.keys()) this.clearError(name);
    for (const input of this.hazardInputs()) input.removeAttribute("aria-invalid");
  }

  // Fill the panel with a plan and a place (a proposal's sensor).
  async prefill(planId, lonlat) {
    await this.loaded;
    if (!this.plans.has(planId)) {
      this.sayError(() => t("act.unknown_plan", { plan: planId }));
      const say = () => t("act.unknown_plan_reason", { plan: planId });
      this.refusal = { text: say(), fields: [], say };
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

  // A plan as a commander knows it: its title in the wall's language.
  planLabel(planId) {
    return localized(this.plans.get(planId), "title") || planId;
  }

  // The plans an alarm proposes (Alarms.proposed), offered on its entry in the alarm bar: one
  // click activates the plan at the sensor, with its design release under the station's wind;
  // "Review first" fills the panel instead.
  offer(item, entry, sensor, error) {
    const where = sensor?.geometry?.type === "Point" ? sensor.geometry.coordinates : null;
    if (!where) item.append(el("p", { class: "quiet" }, t("alarm.unknown_place")));
    // The level the server proposes at: L1 while the alarm is unconfirmed, from L2 once it is.
    const proposed = $("activate-level").querySelector(`option[value='${entry.level}']`);
    if (!this.dirty && proposed && entry.proposedSeq !== this.prefilledFor) $("activate-level").value = entry.level;
    for (const planId of entry.plans) {
      const title = this.planLabel(planId);
      const level = t(`response.${$("activate-level").value}`);
      const activate = el("button", { type: "button", class: "activate-now", "data-plan": planId, "data-title": title },
        t("alarm.activate", { plan: title, level }));
      const review = el("button", { type: "button", class: "quiet-button", "data-review": planId }, t("alarm.review"));
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
      item.append(el("p", { class: "proposal-plan", "data-plan": planId }, activate, " ", review));
    }
    // Ready for one click, unless the commander is filling the panel in already.
    if (!this.dirty && where && entry.plans.length && entry.proposedSeq !== this.prefilledFor) {
      this.prefilledFor = entry.proposedSeq;
      this.prefill(entry.plans[0], where);
    }
  }

  // Why a one-click activation did not happen, and what to do about it.
  refusalText() {
    const refusal = this.refusal;
    if (!refusal) return t("alarm.not_activated_panel");
    const wind = refusal.fields.some((name) => name.startsWith("wind_"));
    const todo = wind ? t("alarm.todo_wind") : refusal.fields.length ? t("alarm.todo_fields") : "";
    const text = refusal.say ? refusal.say() : refusal.text; // in the language shown now
    const stop = /[.!?。！？]$/.test(text) ? "" : t("punct.stop");
    return [t("act.not_activated", { detail: `${text}${stop}` }), todo].filter(Boolean).join(" ");
  }

  // The alarms' buttons say the level they activate at: the panel's.
  paintLevels() {
    const level = $("activate-level").value;
    for (const button of $("alarms").querySelectorAll("button.activate-now[data-plan]")) {
      button.textContent = t("alarm.activate", { plan: button.dataset.title, level: t(`response.${level}`) });
    }
  }

  // Activated: the alarm no longer offers the plan (the alarm itself stays until acknowledged).
  dismissPlan(planId) {
    for (const entry of this.wall.alarms?.entries.values() || []) {
      if (entry.plans?.includes(planId)) entry.plans = entry.plans.filter((p) => p !== planId);
    }
    this.wall.alarms?.paint();
  }
}
