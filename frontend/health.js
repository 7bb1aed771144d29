// Detector health on the wall: the detectors flagged stale, stuck, out of range or drifting, or
// overdue for calibration or a bump test (GET .../sensors/state's "health", read with the
// sensors' state every few seconds), listed in the side panel and ringed on the map.
import { $, el } from "./dom.js";
import { t } from "./i18n.js";

export const healthMethods = {
  paintHealth(health = []) {
    const box = $("detector-health");
    if (!box) return;
    this.health = health;
    const flagged = health.filter((d) => d.flags?.length);
    box.hidden = flagged.length === 0;
    $("detector-health-count").textContent = String(flagged.length);
    const list = $("detector-health-list");
    list.replaceChildren(...flagged.map((d) => this.healthRow(d)));
    this.unhealthy = new Set(flagged.map((d) => String(d.id)));
    // An alarm of a flagged detector carries its flags (alarms.js): repaint the bar on a change.
    const key = JSON.stringify(flagged.map((d) => [d.id, d.flags]));
    if (key !== this.healthKey) {
      this.healthKey = key;
      this.alarms?.paint();
    }
    for (const [id, marker] of this.sensorMarkers || []) {
      marker.getElement()?.classList.toggle("rp-unhealthy", this.unhealthy.has(id));
    }
  },

  healthRow(detector) {
    const flags = detector.flags.map((flag) => {
      const due = detector.evidence?.[flag]?.due;
      const words = t(`health.${flag}`);
      return el("span", { class: `rp-health-flag rp-health-${flag}`, "data-flag": flag },
        due ? `${words} (${t("health.due", { date: due.slice(0, 10) })})` : words);
    });
    const name = detector.substance ? `${detector.id} · ${detector.substance}` : String(detector.id);
    return el("li", { "data-sensor": String(detector.id) }, el("strong", {}, name), " ", ...flags);
  },
};
