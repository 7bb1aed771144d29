// The side panel: each incident's article (a compact card with the plan, the response level, the
// time since activation and the wind; then tabs for steps, people, resources, call tree, log and
// command), the incident switch when more than one runs, and the recovery banner (Wall methods,
// mixed into it by state.js). Everything is painted from the picture and the events, in the
// wall's language; `repaint()` paints it again when the language changes.
import { $, clock, duration, el } from "./dom.js";
import { localized, t } from "./i18n.js";

export const TABS = ["steps", "people", "resources", "calltree", "log", "command"];
const LIST_MAX = 60; // the longest list of ids a tab shows before "…and N more"
const COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];

// Where a wind comes from, as a compass point in the wall's language.
export function compass(deg) {
  return t(`compass.${COMPASS[Math.round((((deg % 360) + 360) % 360) / 45) % 8]}`);
}

// A threat level named for what it means: "AEGL-3 · life-threatening", never "L3" (that is a
// response level). The criterion is the zone's own label without its averaging time.
export function threatName(level, zoneLabel) {
  const criterion = String(zoneLabel || "").replace(/\s*\(.*\)\s*$/, "").trim();
  const meaning = t(`threat.meaning.${level}`);
  return criterion ? t("threat.name", { criterion, meaning }) : `${t("threat.unnamed", { level })} · ${meaning}`;
}

// After a restart the server rebuilds its incidents in the background: the wall says how far
// it has come, and names any incident left aside because its logged events are corrupt.
export function showRecovery(recovery, quarantined) {
  let box = $("recovery");
  if (!box) {
    box = el("div", { id: "recovery", role: "status", "aria-live": "polite" });
    $("panel").prepend(box);
  }
  box.replaceChildren();
  if (recovery && !recovery.finished) {
    box.append(el("p", { class: "recovering" }, t("recovery.progress", { done: recovery.done, total: recovery.total })));
  }
  for (const item of quarantined || []) {
    box.append(el("p", { class: "quarantined", "data-incident": item.id }, t("recovery.quarantined", { id: item.id, reason: item.reason })));
  }
  box.hidden = !box.childElementCount;
}

export const panelMethods = {
  // The article of an incident: made once, its parts painted again with every new picture (the
  // tab shown, a half-typed note and the call tree stay).
  card(shown) {
    const id = shown.picture.incident.id;
    const tabs = el("div", { class: "tabs", role: "tablist" });
    const article = el(
      "article",
      { class: "incident", "data-incident": id },
      el("header", { class: "incident-head" }),
      el("div", { class: "incident-alerts" }),
      tabs,
    );
    for (const name of TABS) {
      const button = el("button", {
        type: "button",
        role: "tab",
        class: "tab",
        id: `tab-${id}-${name}`,
        "data-tab": name,
      });
      button.setAttribute("aria-controls", `panel-${id}-${name}`);
      button.addEventListener("click", () => this.showTab(shown, name));
      tabs.append(button);
      const panel = el("section", { class: "tab-panel", role: "tabpanel", id: `panel-${id}-${name}`, "data-tab": name });
      panel.setAttribute("aria-labelledby", button.id);
      article.append(panel);
    }
    shown.tab ||= "steps";
    shown.element = article;
    this.commandPanel(shown); // made once: a typed note or reason survives new pictures
    this.paintCard(shown);
    return article;
  },

  // Everything the picture says, painted again (a new picture, a new language).
  paintCard(shown) {
    this.paintHead(shown);
    this.paintAlerts(shown);
    this.paintStepsPanel(shown);
    this.paintPeople(shown);
    this.paintResources(shown);
    this.paintCallTree(shown);
    this.paintLog(shown);
    this.paintCommand(shown);
    this.paintTabs(shown);
  },

  showTab(shown, name) {
    shown.tab = name;
    if (name === "people" && shown.peopleStale) this.paintPeople(shown);
    this.paintTabs(shown);
  },

  paintTabs(shown) {
    const counts = {
      steps: this.overdueSteps(shown).length,
      calltree: this.unansweredNotices(shown).length,
      people: shown.picture.evacuation.trapped.length,
    };
    for (const button of shown.element.querySelectorAll(".tabs .tab")) {
      const name = button.dataset.tab;
      const selected = name === shown.tab;
      button.setAttribute("aria-selected", String(selected));
      button.tabIndex = selected ? 0 : -1;
      const label = t(`tab.${name}`);
      button.textContent = counts[name] ? t("tab.count", { label, count: counts[name] }) : label;
      button.classList.toggle("alerting", Boolean(counts[name]));
    }
    for (const panel of shown.element.querySelectorAll(".tab-panel")) panel.hidden = panel.dataset.tab !== shown.tab;
  },

  // -- the card ----------------------------------------------------------------------------------

  planTitle(shown) {
    const template = this.templateOf(shown);
    return localized(template, "title") || shown.picture.incident.plan_id;
  },

  paintHead(shown) {
    const { incident, plan } = shown.picture;
    const head = shown.element.querySelector(".incident-head");
    const level = plan.level;
    head.replaceChildren(
      // A drill's incident says so on its card too, not only in the banner (banner.js).
      ...(incident.exercise ? [el("span", { class: "exercise-badge" }, t("exercise.label"))] : []),
      el("h2", { class: "incident-title" }, this.planTitle(shown)),
      el("span", { class: "response-badge", "data-level": level }, t("response.badge", { level: t(`response.${level}`) })),
      el("p", { class: "incident-time", "data-since": incident.activated_at }, ""),
      el("p", { class: "incident-wind" }, ""),
      el("p", { class: "facts" }, `${t("incident.hazard", { what: this.hazardWords(incident.hazard) })} · ${t("incident.by", { who: incident.activated_by })}`),
    );
    this.paintClock(shown);
    this.paintWind(shown);
  },

  // The hazard as the model took it, in a few words.
  hazardWords(hazard) {
    if (!hazard) return "";
    const parts = [hazard.substance || hazard.fuel || "", hazard.rate_g_s != null ? `${hazard.rate_g_s} g/s` : ""];
    if (hazard.diameter_m != null) parts.push(`Ø ${hazard.diameter_m} m`);
    if (hazard.mass_kg != null) parts.push(`${hazard.mass_kg} kg`);
    if (hazard.tnt_kg != null) parts.push(`${hazard.tnt_kg} kg TNT`);
    if (hazard.radii_m != null) parts.push(`${[].concat(hazard.radii_m).join("/")} m`);
    return parts.filter(Boolean).join(", ") || hazard.model;
  },

  // The time since activation; called every second by the wall's ticker.
  paintClock(shown) {
    const line = shown.element.querySelector(".incident-time");
    if (!line) return;
    const since = Date.parse(shown.picture.incident.activated_at);
    const elapsed = (this.now() - since) / 1000;
    line.textContent = t("incident.since", { elapsed: duration(Math.max(0, elapsed)), time: this.at(shown.picture.incident.activated_at) });
  },

  // The wind the plume was drawn under (the incident's hazard), and the station's latest.
  paintWind(shown) {
    const line = shown.element.querySelector(".incident-wind");
    if (!line) return;
    const hazard = shown.picture.incident.hazard || {};
    const station = this.wind; // {sensor, speed, from, at} from the sensors' state, or null
    const from = hazard.wind_from_deg ?? station?.from;
    const speed = hazard.wind_speed_m_s ?? station?.speed;
    if (from == null) {
      line.textContent = t("wind.none");
      return;
    }
    const words = t("wind.line", { speed: speed ?? "?", compass: compass(from), deg: Math.round(from) });
    const source = station
      ? t("wind.source", { station: this.sensorName(station.sensor), age: t("time.ago", { duration: duration((Date.now() - Date.parse(station.at)) / 1000) }) })
      : t("wind.incident");
    line.textContent = `${words} · ${source}`;
  },

  // Muster verdicts, a layer change and the hazard model's notes: above the tabs.
  paintAlerts(shown) {
    const box = shown.element.querySelector(".incident-alerts");
    box.replaceChildren(...this.musterVerdicts(shown), ...this.threatNotes(shown));
  },

  musterVerdicts(shown) {
    const { evacuation } = shown.picture;
    const out = [];
    const none = evacuation.no_usable_muster;
    if (none) {
      const what = none.shelter_in_place ? t("verdict.shelter", { text: none.shelter_in_place }) : t("verdict.no_shelter");
      out.push(el("p", { class: "alert no-muster", role: "alert" }, t("verdict.no_muster", { what })));
    }
    for (const [muster, why] of Object.entries(evacuation.unusable_musters || {})) {
      out.push(el("p", { class: "alert muster-unusable", "data-muster": muster }, t("verdict.unusable", { name: this.musterName(muster), why })));
    }
    for (const [muster, why] of Object.entries(evacuation.muster_warnings || {})) {
      out.push(el("p", { class: "warning muster-warning", "data-muster": muster }, t("verdict.warning", { name: this.musterName(muster), why })));
    }
    if (shown.layersChanged) {
      const { at, layers, rerouted, error } = shown.layersChanged;
      const text = error
        ? t("layers.failed", { time: this.at(at), layers, error })
        : t("layers.changed", { time: this.at(at), layers, rerouted });
      out.push(el("p", { class: "warning layers-changed", role: "status" }, text));
    }
    return out;
  },

  threatNotes(shown) {
    const notes = shown.picture.threat?.properties?.notes || [];
    if (!notes.length) return [];
    const list = el("ul", { class: "threat-notes" });
    for (const note of notes) list.append(el("li", {}, note));
    // Folded (the card stays short); the summary says how many there are.
    return [el("details", { class: "notes" }, el("summary", {}, t("notes.title", { count: notes.length })), list)];
  },

  musterName(id) {
    return this.musters.get(id) || id;
  },

  sensorName(id) {
    return this.sensors.get(String(id))?.properties?.name || id;
  },

  // -- steps ---------------------------------------------------------------------------------------

  paintStepsPanel(shown) {
    const panel = shown.element.querySelector(".tab-panel[data-tab='steps']");
    // What needs doing first: overdue, then the open steps by deadline, then those waiting,
    // then the finished and the withdrawn (a new level's steps come to the top, not the end).
    const rank = (step) => {
      if (step.withdrawn || ["done", "skipped", "failed"].includes(step.status)) return 3;
      if (step.overdue) return 0;
      return step.status === "waiting" ? 2 : 1;
    };
    const due = (step) => (step.due_at ? Date.parse(step.due_at) : Infinity);
    const ordered = shown.picture.plan.steps
      .map((step, index) => ({ step, index }))
      .sort((a, b) => rank(a.step) - rank(b.step) || due(a.step) - due(b.step) || a.index - b.index);
    const steps = el("ol", { class: "steps" });
    for (const { step } of ordered) steps.append(this.stepItem(step, shown));
    panel.replaceChildren(steps);
  },

  overdueSteps(shown) {
    return shown.picture.plan.steps.filter((s) => s.overdue && !s.withdrawn && !["done", "skipped"].includes(s.status));
  },

  stepItem(step, shown) {
    const item = el(
      "li",
      { class: "step", "data-step": step.id, "data-status": step.status },
      el("span", { class: "step-title" }, ""),
      el("span", { class: "step-status" }, ""),
      el("span", { class: "step-meta" }, ""),
      el("span", { class: "step-countdown", "data-due": step.due_at || "" }, ""),
      el("span", { class: "step-id" }, step.id),
      el("div", { class: "step-actions" }),
      el("form", { class: "step-form", hidden: true }),
      el("p", { class: "step-error error", role: "alert" }),
    );
    this.paintStep(item, step, shown);
    return item;
  },

  paintStep(item, step, shown) {
    item.dataset.status = step.status;
    const open = !["done", "skipped"].includes(step.status) && !step.withdrawn;
    item.classList.toggle("overdue", Boolean(step.overdue) && open);
    item.classList.toggle("withdrawn", Boolean(step.withdrawn));
    item.querySelector(".step-status").textContent = t(`step.status.${step.status}`);
    const due = step.due_at ? t("step.due", { time: this.at(step.due_at) }) : t("step.no_deadline");
    const overdue = item.classList.contains("overdue") ? ` — ${t("step.overdue")}` : "";
    item.querySelector(".step-meta").textContent =
      t("step.meta", { role: this.roleName(shown, step.role), level: step.level, due }) + overdue;
    const about = this.templateSteps.get(shown.key)?.get(step.id);
    item.querySelector(".step-title").textContent = localized(about, "title") || step.id;
    const countdown = item.querySelector(".step-countdown");
    countdown.dataset.due = open && step.due_at ? step.due_at : "";
    this.paintCountdown(countdown);
    this.paintActions(item, step, shown, about);
    if (shown.element) this.paintTabs(shown);
  },

  // "in 1 min 20 s" or "2 min 05 s late": every second, for the open steps with a deadline.
  paintCountdown(node) {
    const due = node.dataset.due;
    if (!due) {
      node.textContent = "";
      return;
    }
    const left = (Date.parse(due) - this.now()) / 1000;
    node.textContent = left >= 0 ? t("time.in", { duration: duration(left) }) : t("time.late", { duration: duration(-left) });
    node.classList.toggle("late", left < 0);
  },

  paintSteps(shown) {
    for (const step of shown.picture.plan.steps) {
      const item = shown.element.querySelector(`li[data-step="${CSS.escape(step.id)}"]`);
      if (item) this.paintStep(item, step, shown);
    }
  },

  roleName(shown, role) {
    const template = this.templateOf(shown);
    const fromPlan = template?.roles?.find((r) => r.id === role);
    if (fromPlan) return localized(fromPlan, "name");
    return shown.picture.plan.roles?.find((r) => r.id === role)?.name || role;
  },

  // -- people --------------------------------------------------------------------------------------

  // Who of those who must move is at a muster point now: the server's word (at_muster) where the
  // wall has it, else the picture's list of the missing.
  // Kept until someone arrives or leaves, or a new picture: the key figures ask on every event.
  arrivals(shown) {
    const cached = shown.arrivalsCache;
    if (cached && cached.version === this.arrivalsVersion && cached.picture === shown.picture) return cached.found;
    const people = shown.picture.evacuation.people;
    const arrived = people.filter((p) => this.atMuster.get(p.id));
    const found = { people, arrived, missing: people.filter((p) => !this.atMuster.get(p.id)) };
    shown.arrivalsCache = { version: this.arrivalsVersion, picture: shown.picture, found };
    return found;
  },

  paintPeople(shown) {
    shown.peopleStale = false;
    const panel = shown.element.querySelector(".tab-panel[data-tab='people']");
    const { evacuation, exposure, headcount } = shown.picture;
    const { people, missing } = this.arrivals(shown);
    const expected = new Map();
    for (const p of people) if (p.muster) expected.set(p.muster, (expected.get(p.muster) || 0) + 1);
    const arrivedAt = new Map();
    const allAt = new Map();
    for (const p of people) {
      const at = this.atMuster.get(p.id);
      if (at) arrivedAt.set(at, (arrivedAt.get(at) || 0) + 1);
    }
    for (const [, at] of this.atMuster) if (at) allAt.set(at, (allAt.get(at) || 0) + 1);
    const musters = el("ul", { class: "muster-list", id: `headcount-${shown.picture.incident.id}` });
    for (const [muster, name] of this.musters) {
      const due = expected.get(muster) || 0;
      const came = arrivedAt.get(muster) || 0;
      const extra = Math.max(0, (allAt.get(muster) || 0) - came);
      if (!due && !came && !extra) continue;
      const row = el("li", { "data-muster": muster },
        el("span", { class: "muster-count" }, t("people.muster_row", { name, arrived: came, expected: due })),
        el("progress", { max: Math.max(due, 1), value: Math.min(came, Math.max(due, 1)) }),
      );
      row.querySelector("progress").setAttribute("aria-label", name);
      if (extra) row.append(el("span", { class: "quiet" }, ` ${t("people.muster_extra", { count: extra })}`));
      musters.append(row);
    }
    const total = headcount ? el("p", { class: "quiet site-total" }, t("people.site_total", this.siteCount(headcount))) : null;
    const missingList = this.idList(missing.map((p) => `${p.id} → ${this.musterName(p.muster || "")}`), "missing-list");
    const trapped = this.idList(evacuation.trapped.map((x) => t("people.trapped_row", { id: x.id, why: x.reason })), "trapped-list");
    const exposed = el("ul", { class: "exposed-list" });
    for (const zone of this.threatZones(shown.picture)) {
      const count = exposure?.counts?.[zone.level]?.people ?? 0;
      exposed.append(el("li", { "data-level": String(zone.level) }, t("people.exposed_row", { name: threatName(zone.level, zone.label), people: count })));
    }
    const receptors = el("ul", { class: "receptor-list" });
    const seen = new Set();
    for (const level of ["3", "2", "1"]) {
      for (const r of shown.picture.receptors?.[level] || []) {
        if (seen.has(r.id)) continue;
        seen.add(r.id);
        receptors.append(el("li", { "data-receptor": r.id, "data-level": level },
          t("people.receptor_row", { name: r.name, kind: this.receptorKind(r.kind), population: r.population ?? "?" })));
      }
    }
    if (!receptors.children.length) receptors.append(el("li", { class: "quiet" }, t("people.receptors_none")));
    panel.replaceChildren(
      el("h3", { id: `people-musters-${shown.picture.incident.id}` }, t("people.headcount")),
      total,
      musters,
      ...this.employerHeadcount(headcount),
      el("h3", { class: "missing-head" }, `${t("people.missing")} (${missing.length})`),
      missing.length ? missingList : el("p", { class: "quiet" }, t("people.missing_none")),
      el("h3", { class: "trapped-head" }, `${t("people.trapped")} (${evacuation.trapped.length})`),
      evacuation.trapped.length ? trapped : el("p", { class: "quiet" }, t("people.trapped_none")),
      el("h3", { class: "exposed-head" }, t("people.exposed")),
      exposed,
      el("h3", {}, t("people.receptors")),
      receptors,
    );
  },

  // The headcount by employer: contractors' firms account for their own people too.
  employerHeadcount(headcount) {
    const by = Object.entries(headcount?.by_employer || {});
    if (!by.length) return [];
    const list = el("ul", { class: "employer-list" });
    for (const [name, c] of by) {
      list.append(el("li", { "data-employer": name }, t("people.employer_row", { name, accounted: c.accounted, on_site: c.on_site })));
    }
    return [el("h3", { class: "employer-head" }, t("people.by_employer")), list];
  },

  siteCount(headcount) {
    return { accounted: headcount.accounted, on_site: headcount.on_site };
  },

  receptorKind(kind) {
    const key = `receptor.${kind}`;
    try {
      return t(key);
    } catch {
      return t("receptor.other");
    }
  },

  idList(rows, className) {
    const list = el("ul", { class: `id-list ${className}` });
    for (const row of rows.slice(0, LIST_MAX)) list.append(el("li", {}, row));
    if (rows.length > LIST_MAX) list.append(el("li", { class: "quiet" }, t("people.more", { count: rows.length - LIST_MAX })));
    return list;
  },

  threatZones(picture) {
    return picture.threat.features
      .filter((f) => f.properties.kind === "threat_zone")
      .map((f) => f.properties)
      .sort((a, b) => b.level - a.level);
  },

  // -- resources -----------------------------------------------------------------------------------

  paintResources(shown) {
    const panel = shown.element.querySelector(".tab-panel[data-tab='resources']");
    const list = el("ul", { class: "nearest" });
    for (const [kind, found] of Object.entries(shown.picture.resources)) {
      const nearest = found[0];
      if (!nearest) continue;
      list.append(el("li", { "data-resource": nearest.id }, this.resourceText(kind, nearest)));
    }
    if (!list.children.length) list.append(el("li", { class: "quiet" }, t("resources.none")));
    const unreachable = Object.keys(shown.picture.resources_unreachable || {});
    panel.replaceChildren(
      el("h3", {}, t("resources.nearest")),
      list,
      unreachable.length ? el("p", { class: "warning" }, t("resources.unreachable", { kinds: unreachable.join(", ") })) : null,
    );
  },

  resourceText(kind, nearest) {
    const feature = this.resourcesById.get(nearest.id);
    const name = feature?.properties?.name || nearest.id;
    const mode = ["walk", "drive"].includes(nearest.mode) ? t(`mode.${nearest.mode}`) : nearest.mode;
    return t("resources.row", { kind: kind.replaceAll("_", " "), name, time: duration(nearest.travel_time_s), mode });
  },

  // -- duties (in the command tab) -------------------------------------------------------------------

  dutiesSection(shown) {
    const section = el("section", { class: "duties" });
    if (!("duties" in shown.picture.plan)) {
      section.hidden = true; // a server without duty assignments
      return section;
    }
    section.append(el("h3", {}, t("duty.title")), el("ul", { class: "duty-list" }));
    if (this.isCommander()) {
      const roles = el("select", { name: "role", required: true });
      for (const role of this.planRoles(shown)) roles.append(el("option", { value: role.id }, role.name));
      const username = el("input", { name: "username", required: true, autocomplete: "off" });
      const form = el(
        "form",
        { class: "duty-form" },
        el("label", {}, `${t("duty.role")} `, roles),
        el("label", {}, `${t("duty.username")} `, username),
        el("button", { type: "submit" }, t("duty.assign")),
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
  },

  planRoles(shown) {
    const { roles = [], command_role: command } = shown.picture.plan;
    const all = roles.map((r) => ({ id: r.id, name: this.roleName(shown, r.id) }));
    if (command && !all.some((r) => r.id === command)) all.unshift({ id: command, name: this.roleName(shown, command) });
    return all;
  },

  paintDuties(shown, section = shown.element?.querySelector(".duties")) {
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
            { type: "button", class: "release", title: t("duty.release_title", { username, role: role.name }) },
            t("duty.release"),
          );
          release.addEventListener("click", () => this.releaseDuty(shown, role.id, username, release));
          holder.append(" ", release);
        }
        row.append(holder, " ");
      }
      list.append(row);
    }
    if (!list.children.length) list.append(el("li", { class: "quiet" }, t("duty.none")));
  },

  // -- the incident switch ---------------------------------------------------------------------------

  // With more than one incident, a row of buttons picks the one the card, the tabs and the key
  // figures show; the map draws them all.
  paintSwitch() {
    const nav = $("incident-switch");
    nav.replaceChildren();
    nav.hidden = this.incidents.size < 2;
    for (const [id, shown] of this.incidents) {
      const exercise = shown.picture.incident.exercise;
      const button = el("button", { type: "button", "data-incident": id, class: exercise ? "switch exercise" : "switch" },
        `${exercise ? `${t("exercise.label")} · ` : ""}${this.planTitle(shown)} · ${shown.picture.plan.level}`);
      button.setAttribute("aria-pressed", String(id === this.selected));
      button.addEventListener("click", () => this.select(id));
      nav.append(button);
    }
  },

  select(id) {
    if (!this.incidents.has(id)) return;
    this.selected = id;
    for (const [other, shown] of this.incidents) shown.element.hidden = other !== id;
    this.paintSwitch();
    this.paintKpis();
    this.paintLegend();
    this.paintWindControl();
    this.paintBanner();
  },

  // Every second: the time since activation, the countdowns and the wind's age.
  tickPanels() {
    for (const shown of this.incidents.values()) {
      if (shown.element.hidden) continue;
      this.paintClock(shown);
      this.paintWind(shown);
      for (const node of shown.element.querySelectorAll(".step-countdown[data-due]:not([data-due=''])")) this.paintCountdown(node);
    }
    $("clock").textContent = clock(this.time);
  },
};
