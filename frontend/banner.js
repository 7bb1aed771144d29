// The exercise banner (Wall methods, mixed into it by state.js): while the incident shown is a
// drill's (its picture's `incident.exercise`), a strip across the whole wall says
// "EXERCISE / 演练" with the scenario's title and the drill's state, and the map is framed in
// hazard stripes; a real incident never carries it. A real incident or alarm suspends a running
// drill (`drill.suspended`): every wall says so, and the real incident takes the wall, selected
// and framed. While a real incident is shown next to an exercise, the strip says which is real.
// What a drill is doing comes from its drill.* events (docs/command.md, "Drills on the wall").
import { $, el } from "./dom.js";
import { localized, t } from "./i18n.js";

export const bannerMethods = {
  // A drill.* event: the drill's state for the banner, and the controller's console.
  drillEvent(event) {
    const d = event.data || {};
    const id = d.drill_id;
    if (!id) return;
    const info = this.drills.get(id) || { id, state: "running" };
    if (event.incident_id) info.incident = event.incident_id;
    switch (event.type) {
      case "drill.started":
        Object.assign(info, { title: d.title, title_zh: d.title_zh, mode: d.mode, state: "running" });
        break;
      case "drill.held":
        Object.assign(info, { state: "held", reason: d.reason || "" });
        break;
      case "drill.resumed":
        Object.assign(info, { state: "running", reason: "", byIncident: null, bySensor: null });
        break;
      case "drill.suspended":
        Object.assign(info, { state: "suspended", reason: d.reason || "", byIncident: d.by_incident || null, bySensor: d.by_sensor || null });
        break;
      case "drill.ended":
        Object.assign(info, { state: d.aborted ? "aborted" : "ended", reason: d.reason || "" });
        break;
      default:
        break;
    }
    this.drills.set(id, info);
    // A real incident comes first: it takes the wall, selected and framed, whoever moved the map.
    if (event.type === "drill.suspended" && info.byIncident && this.incidents.has(info.byIncident)) {
      this.select(info.byIncident);
      this.userMovedAt = 0;
      this.frameIncident(this.incidents.get(info.byIncident));
    }
    this.paintBanner();
    this.drillConsole?.event(event);
  },

  // Whether a new picture, a drill's, must leave the wall to the real incident shown now.
  exerciseYields(picture) {
    if (!picture.incident.exercise) return false;
    const selected = this.incidents.get(this.selected);
    return Boolean(selected && !selected.picture.incident.exercise);
  },

  // What the wall knows of the drill of an exercise incident (its title, its state).
  drillOf(shown) {
    const id = shown.picture.incident.exercise;
    return this.drills.get(id) || { id, state: "running" };
  },

  drillTitle(shown) {
    const info = this.drillOf(shown);
    return localized(info, "title") || this.planTitle(shown);
  },

  paintBanner() {
    const box = $("exercise-banner");
    if (!box) return;
    const shown = this.incidents.get(this.selected);
    const exercises = [...this.incidents.values()].filter((s) => s.picture.incident.exercise);
    const wall = $("wall");
    let kind = "";
    if (shown?.picture.incident.exercise) {
      kind = "exercise";
      const info = this.drillOf(shown);
      box.replaceChildren(
        el("strong", { class: "banner-label" }, t("exercise.label")),
        el("span", { class: "banner-title" }, this.drillTitle(shown)),
        el("span", { class: "banner-state", "data-state": info.state }, this.drillStateText(info)),
      );
      box.dataset.drill = info.id;
      box.dataset.state = info.state;
    } else if (shown && exercises.length) {
      kind = "real";
      const suspended = exercises.find((s) => this.drillOf(s).state === "suspended");
      const other = suspended || exercises[0];
      const title = this.drillTitle(other);
      box.replaceChildren(
        el("strong", { class: "banner-label" }, t("exercise.real_label")),
        el("span", { class: "banner-state" }, suspended ? t("exercise.real_first", { title }) : t("exercise.real_also", { title })),
      );
      box.dataset.drill = this.drillOf(other).id;
      box.dataset.state = this.drillOf(other).state;
    } else {
      box.replaceChildren();
      delete box.dataset.drill;
      delete box.dataset.state;
    }
    box.dataset.kind = kind;
    box.hidden = !kind;
    box.setAttribute("aria-label", t("exercise.region"));
    wall?.classList.toggle("exercise-shown", kind === "exercise");
  },

  drillStateText(info) {
    switch (info.state) {
      case "held":
        return t("exercise.held");
      case "suspended":
        if (info.byIncident && this.incidents.has(info.byIncident)) {
          return t("exercise.suspended_incident", { plan: this.planTitle(this.incidents.get(info.byIncident)) });
        }
        if (info.bySensor) return t("exercise.suspended_alarm", { sensor: this.sensorName(info.bySensor) });
        return t("exercise.suspended");
      case "ended":
        return t("exercise.ended");
      case "aborted":
        return t("exercise.aborted");
      default:
        return t("exercise.running");
    }
  },
};
