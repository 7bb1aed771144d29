// The websocket: a single-use ticket for every (re)connection, subscribing with the last sequence
// number seen, backing off on a drop, reconnecting after a minute of silence, and each message
// handed to the wall (Wall methods, mixed into it by state.js).
import { api, TOKEN_KEY } from "./api.js";
import { $, setStatus } from "./dom.js";
import { t } from "./i18n.js";
import { showRecovery } from "./panels.js";
import { chooseSite, isKiosk, kioskRefused, signOut } from "./session.js";

const SILENCE_MS = 60_000; // no message (not even a ping) for this long: reconnect
const RETRY_MAX_MS = 15_000;
// The site's layers a wall holds and follows by `layer.changed` (site-layers.js).
const LIVE_LAYERS = ["zones", "network", "sensors", "resources", "basemap", "receptors"];

export const socketMethods = {
  async connect() {
    if (this.closed) return;
    if (!sessionStorage.getItem(TOKEN_KEY)) return isKiosk() ? kioskRefused("kiosk.revoked") : signOut();
    setStatus(this.lastSeq === null ? "connecting" : "reconnecting");
    // The socket opens with a single-use ticket (30 s): the token itself never goes in a URL.
    let ticket;
    try {
      ({ ticket } = await api("/api/auth/ws-ticket", { method: "POST" }));
    } catch (error) {
      if (this.closed || error.status === 401) return; // a 401 has signed out (or shown the kiosk's refusal)
      const wait = this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
      setStatus("reconnecting", t("status.retry_in", { seconds: Math.round(wait / 1000) }));
      this.retryTimer = setTimeout(() => this.connect(), wait);
      return;
    }
    if (this.closed) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws?ticket=${encodeURIComponent(ticket)}`;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      socket.send(
        // Positions in their compact form: ids, integer coordinates, muster indices (docs/protocol.md).
        JSON.stringify({ type: "subscribe", site: this.site.id, incident: null, last_seq: this.lastSeq, positions: "compact" }),
      );
      this.heard();
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      this.heard();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      try {
        this.receive(message);
      } catch (error) {
        // One bad message must not stop the wall; the next snapshot puts it right.
        console.warn("message not applied", message.type, error);
      }
    });
    socket.addEventListener("close", (event) => this.dropped(socket, event));
  },

  heard() {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => this.socket?.close(4000, "silent"), SILENCE_MS);
  },

  dropped(socket, event) {
    if (socket !== this.socket || this.closed) return;
    clearTimeout(this.silenceTimer);
    this.socket = null;
    if (event.code === 4401) return isKiosk() ? kioskRefused("kiosk.revoked") : signOut(t("session.ended"));
    if (event.code === 4403) {
      setStatus("offline");
      if (isKiosk()) return kioskRefused("kiosk.forbidden");
      $("wall-error").textContent = t("wall.role_refused");
      return;
    }
    if (event.code === 4404) return isKiosk() ? kioskRefused("kiosk.no_site") : chooseSite();
    // A resync (4008) reconnects at once; anything else backs off, up to RETRY_MAX_MS.
    const wait = event.code === 4008 ? 0 : this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    setStatus("reconnecting", wait ? t("status.retry_in", { seconds: Math.round(wait / 1000) }) : t("status.reconnecting"));
    this.retryTimer = setTimeout(() => this.connect(), wait);
  },

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  },

  live() {
    this.retryMs = 1000;
    setStatus("live");
  },

  receive(message) {
    switch (message.type) {
      case "ping":
        this.send({ type: "pong" });
        break;
      case "snapshot":
        // A resume answered with a picture (too much was missed): layer changes among it too.
        if (this.lastSeq !== null) for (const layer of LIVE_LAYERS) this.reloadLayer?.(layer);
        this.seen(message.seq);
        // Where everyone is now: the people layer may still hold older positions.
        for (const [id, at] of Object.entries(message.positions || {})) this.people.set(id, at.slice(0, 2));
        if (message.at_muster) {
          this.atMuster = new Map(Object.entries(message.at_muster));
          this.arrivalsVersion += 1;
        }
        this.replaceAll(message.incidents);
        if (message.alarms) this.alarms.reset(message.alarms);
        if (message.alarm_conditions) this.alarms.conditions?.(message.alarm_conditions);
        this.personAlarms?.load(); // people's alarms: the server's list after a gap (person-alarms.js)
        showRecovery(message.recovery, message.quarantined);
        this.live();
        break;
      case "recovery":
        showRecovery(message.recovery, message.quarantined);
        break;
      case "caught_up":
        this.seen(message.seq);
        this.live();
        break;
      case "event":
        if (this.lastSeq !== null && message.seq <= this.lastSeq) break; // seen already: never twice
        this.seen(message.seq);
        this.apply(message.event);
        break;
      case "incident":
        this.seen(message.seq);
        this.render(message.snapshot);
        break;
      case "positions":
        this.move(message, message.headcount);
        break;
      case "resync":
        // Too far behind: the server closes (4008) and we come back after the last seq seen.
        setStatus("reconnecting", t("status.resync"));
        break;
      case "error":
        $("wall-error").textContent = message.detail;
        break;
      default:
        break;
    }
  },
};
