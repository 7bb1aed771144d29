// People's alarms on the live wall (command/monitoring/wristbands.py): an SOS, a man-down
// (a fall, or no movement) and a signal lost in a hazard zone wait in their own alarm bar with
// the wall's alarm tone until a commander or a responder acknowledges them
// (person.alarm_acknowledged, naming who). Each is marked on the map at the person's last
// position. An alarm acknowledged stays listed, silent, until the person moves or reports
// again (person.alarm_cleared); one cleared stays until it is acknowledged.
import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { api, problemText, send } from "./api.js";
import { $, el } from "./dom.js";
import { t } from "./i18n.js";

const RAISED = { "person.sos": "sos", "person.man_down": "man_down", "person.signal_lost": "signal_lost" };

export class PersonAlarms {
  // The people's alarms of a live wall (none in a replay).
  static open(wall, people) {
    if (wall.isReplay) return null;
    return new PersonAlarms(wall, people);
  }

  constructor(wall, people) {
    this.wall = wall;
    this.names = new Map((people?.features || []).map((f) => [String(f.id), f.properties?.name]));
    this.entries = new Map(); // "person/kind" -> the alarm as GET .../people/alarms gives it
    this.layer = L.layerGroup().addTo(wall.map);
    $("person-alarms").replaceChildren();
    $("person-alarms").hidden = true;
    this.load();
  }

  close() {
    this.layer.remove();
    $("person-alarms").replaceChildren();
    $("person-alarms").hidden = true;
  }

  get site() {
    return encodeURIComponent(this.wall.site.id);
  }

  // What the server holds now (at start, after a gap).
  async load() {
    try {
      const body = await api(`/api/sites/${this.site}/people/alarms`);
      if (this.wall.closed) return;
      this.entries = new Map(body.alarms.map((a) => [`${a.person_id}/${a.kind}`, a]));
      this.paint();
    } catch (failure) {
      if (failure.status !== 401) $("wall-error").textContent = problemText(failure);
    }
  }

  // Alarms not yet acknowledged: these sound.
  get waiting() {
    return [...this.entries.values()].filter((a) => !a.acknowledged).length;
  }

  // The same rules as the server's (PersonAlarms.follow): the server's list wins on load().
  event(event) {
    const d = event.data || {};
    const kind = RAISED[event.type] || d.kind;
    const key = `${d.person_id}/${kind}`;
    const old = this.entries.get(key);
    if (RAISED[event.type]) {
      const fresh = !old || old.acknowledged;
      this.entries.set(key, {
        ...(fresh ? {} : old),
        person_id: d.person_id, kind, since: fresh ? event.at : old.since,
        lon: d.lon, lat: d.lat, seen_at: d.seen_at, zone_id: d.zone_id,
        cleared: kind === "sos" ? event.at : null, acknowledged: fresh ? null : old.acknowledged,
      });
    } else if (event.type === "person.alarm_cleared" && old) {
      if (old.acknowledged) this.entries.delete(key);
      else old.cleared = event.at;
    } else if (event.type === "person.alarm_acknowledged" && old && !old.acknowledged) {
      if (old.cleared) this.entries.delete(key);
      else old.acknowledged = { by: d.by, by_name: d.by_name, at: event.at };
    } else return;
    this.paint();
  }

  mayAcknowledge() {
    const roles = this.wall.me?.roles || [];
    return roles.includes("commander") || roles.includes("responder");
  }

  name(personId) {
    return this.names.get(personId) || personId;
  }

  paint() {
    const box = $("person-alarms");
    box.replaceChildren();
    this.layer.clearLayers();
    const sorted = [...this.entries.values()].sort((a, b) => String(a.since).localeCompare(String(b.since)));
    for (const entry of sorted) {
      const who = this.name(entry.person_id);
      const where = entry.zone_id ? (this.wall.zonesById?.get(entry.zone_id)?.properties?.name || entry.zone_id) : t("person_alarm.no_zone");
      const state = entry.acknowledged
        ? t("person_alarm.acknowledged", { who: entry.acknowledged.by_name || entry.acknowledged.by || "?" })
        : entry.cleared && entry.kind !== "sos" ? t("person_alarm.cleared") : t("person_alarm.waiting");
      const item = el("section", { class: "alarm person-alarm", "data-person": entry.person_id, "data-kind": entry.kind, "data-acknowledged": String(Boolean(entry.acknowledged)), "aria-label": t("person_alarm.region") },
        el("h2", {}, t("person_alarm.title", { kind: t(`person_alarm.kind.${entry.kind}`), who })),
        el("p", { class: "alarm-detail" }, t("person_alarm.detail", { where, seen: entry.seen_at ? this.wall.at(entry.seen_at) : "?", state })),
      );
      const error = el("p", { class: "error alarm-error", role: "alert" });
      if (this.mayAcknowledge() && !entry.acknowledged) {
        const ack = el("button", { type: "button", class: "alarm-ack person-ack" }, t("alarm.acknowledge"));
        ack.addEventListener("click", () => this.acknowledge(entry, ack, error));
        item.append(ack);
      }
      if (entry.lon != null && entry.lat != null) {
        const show = el("button", { type: "button", class: "quiet-button person-where" }, t("fence.show"));
        show.addEventListener("click", () => this.wall.map.setView([entry.lat, entry.lon], Math.max(this.wall.map.getZoom(), 18)));
        item.append(show);
        const marker = L.circleMarker([entry.lat, entry.lon], { radius: 11, color: "#b30000", weight: 3, fillColor: "#ff3b30", fillOpacity: 0.6, className: `rp-person-alarm rp-person-alarm-${entry.kind}` });
        marker.bindTooltip(el("span", {}, `${t(`person_alarm.kind.${entry.kind}`)}: ${who}`));
        marker.addTo(this.layer);
        marker.getElement?.()?.setAttribute("data-person-alarm", `${entry.person_id}/${entry.kind}`);
      }
      item.append(error);
      box.append(item);
    }
    box.hidden = !this.entries.size;
    box.setAttribute("aria-label", t("person_alarm.region"));
    this.wall.alarms?.paint(); // the tone: sensors', breaches' and these together
  }

  async acknowledge(entry, button, error) {
    button.disabled = true;
    error.textContent = "";
    try {
      const person = encodeURIComponent(entry.person_id);
      await send("POST", `/api/sites/${this.site}/people/${person}/alarms/${entry.kind}/acknowledge`, {});
      // The person.alarm_acknowledged event updates every wall, this one included.
    } catch (failure) {
      if (failure.status === 401) return;
      error.textContent = t("alarm.ack_refused", { detail: problemText(failure) });
      button.disabled = false;
    }
  }
}
