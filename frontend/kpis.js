// The key figures across the top of the wall (Wall methods, mixed into it by state.js), for the
// incident shown: people to move, arrived, not yet at a muster point, trapped, people inside
// each threat zone, overdue steps and unanswered call-outs. Each tile opens its list.
import { $, el } from "./dom.js";
import { t } from "./i18n.js";
import { threatName } from "./panels.js";

export const kpiMethods = {
  // [key, label, value, tab, alerting, extra data attributes]
  kpiTiles(shown) {
    if (!shown) return [];
    const { people, arrived, missing } = this.arrivals(shown);
    const trapped = shown.picture.evacuation.trapped.length;
    const tiles = [
      ["to_move", t("kpi.to_move"), people.length, "people", false, ".muster-list"],
      ["arrived", t("kpi.arrived"), arrived.length, "people", false, ".muster-list"],
      ["missing", t("kpi.missing"), missing.length, "people", missing.length > 0, ".missing-head"],
      ["trapped", t("kpi.trapped"), trapped, "people", trapped > 0, ".trapped-head"],
    ];
    for (const zone of this.threatZones(shown.picture)) {
      const count = shown.picture.exposure?.counts?.[zone.level]?.people ?? 0;
      tiles.push([`threat-${zone.level}`, t("kpi.threat", { name: threatName(zone.level, zone.label) }), count, "people", false, ".exposed-head"]);
    }
    const overdue = this.overdueSteps(shown).length;
    tiles.push(["overdue", t("kpi.overdue"), overdue, "steps", overdue > 0, ".step.overdue"]);
    const unanswered = shown.notices ? this.unansweredNotices(shown).length : "–";
    tiles.push(["unanswered", t("kpi.unanswered"), unanswered, "calltree", unanswered > 0, ".notice"]);
    return tiles;
  },

  paintKpis() {
    const strip = $("kpis");
    const shown = this.incidents.get(this.selected);
    strip.hidden = !shown;
    if (!shown) {
      strip.replaceChildren();
      return;
    }
    const tiles = this.kpiTiles(shown);
    const existing = new Map([...strip.querySelectorAll(".kpi")].map((b) => [b.dataset.kpi, b]));
    const same = tiles.length === existing.size && tiles.every(([key]) => existing.has(key));
    if (!same) {
      strip.replaceChildren();
      existing.clear();
    }
    for (const [key, label, value, tab, alerting, target] of tiles) {
      let tile = existing.get(key);
      if (!tile) {
        tile = el("button", { type: "button", class: "kpi", "data-kpi": key },
          el("span", { class: "kpi-value" }), el("span", { class: "kpi-label" }));
        tile.addEventListener("click", () => this.openList(tile.dataset.tab, tile.dataset.target));
        strip.append(tile);
      }
      if (key.startsWith("threat-")) tile.dataset.level = key.slice(7);
      tile.dataset.tab = tab;
      tile.dataset.target = target;
      tile.classList.toggle("alerting", Boolean(alerting));
      const valueText = String(value);
      const valueNode = tile.querySelector(".kpi-value");
      if (valueNode.textContent !== valueText) valueNode.textContent = valueText;
      const labelNode = tile.querySelector(".kpi-label");
      if (labelNode.textContent !== label) labelNode.textContent = label;
      tile.title = t("kpi.open", { label });
    }
  },

  // A tile's list: its tab, scrolled to the part it counts.
  openList(tab, target) {
    const shown = this.incidents.get(this.selected);
    if (!shown) return;
    this.showTab(shown, tab);
    const panel = shown.element.querySelector(`.tab-panel[data-tab='${tab}']`);
    const part = target ? panel.querySelector(target) : null;
    (part || panel).scrollIntoView({ block: "start" });
    shown.element.querySelector(`.tabs .tab[data-tab='${tab}']`)?.focus();
  },
};
