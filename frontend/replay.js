// Replaying a finished incident, drill or real, for the debrief: its events played at 1×, 10× or
// 60× with a time slider, drawn by the very code that draws a live incident. The server rebuilds
// the pictures at the key moments (GET .../incidents/{id}/replay: activation, each change of
// level and of wind); a ReplayWall, a Wall of its own that never opens a socket, is fed the same
// messages the websocket sends (`incident` and `event`) as the replay's clock reaches them.
//
// The live wall is left as it is: while the replay is shown, its page (#wall) is taken out of
// the document whole and a fresh copy of the page takes its place; what its websocket says
// meanwhile is kept, not applied (alarms still sound on the bar under the header), and applied
// when the replay ends and the live page comes back. A real activation ends the replay at once.
// No live subscriber sees anything of a replay: it is read by this wall alone.
import { api, problemText } from "./api.js";
import { $, el } from "./dom.js";
import { localized, t, translatePage } from "./i18n.js";
import { Wall } from "./state.js";

const SPEEDS = [1, 10, 60];
const STEP_MS = 100; // the replay's clock moves this often
const SETTLE_MS = 600; // the live wall's own short timers (a picture awaited: 500 ms) run out
const BUFFER_MAX = 5000; // live messages kept during a replay; beyond, the wall resubscribes
const PICKER_MAX = 20;
const OPEN_NOTICES = new Set(["waiting", "delivered", "failed", "unanswered"]);

// The page as it was before any wall drew in it: each replay is drawn in a fresh copy.
const PRISTINE = $("wall").cloneNode(true);

// A replay has no alarm bar of its own: the one under the header is the live wall's.
const QUIET_ALARMS = {
  state() {}, acknowledged() {}, proposed() {}, reset() {}, reconcile() {}, paint() {}, close() {},
};

class ReplayWall extends Wall {
  constructor(site, replay) {
    super(site);
    this.replay = replay;
    this.cursor = Date.parse(replay.started_at); // the moment shown (ms)
  }

  makeAlarms() {
    return QUIET_ALARMS;
  }

  now() {
    return this.cursor ?? Date.now();
  }

  async loadLayers() {
    try {
      await super.loadLayers();
    } catch (error) {
      if (!this.closed) throw error;
    }
    // Positions are not in the log: each person is drawn where their route started.
    this.people.clear();
  }

  // Nothing live: no wind station, no detector tiers of today, no route asked now.
  async refreshWind() {
    this.wind = null;
  }

  sensorsChanged() {}

  routeNow() {}

  // The pictures come with the replay: nothing is fetched.
  expectPicture() {}

  // A replay is watched, not acted on.
  isCommander() {
    return false;
  }

  mayAct() {
    return false;
  }

  mayNote() {
    return false;
  }

  // The call tree as it was: the replay's changes up to the last event played.
  loadNotices(shown) {
    const upTo = this.lastSeq ?? 0;
    const notices = new Map();
    for (const change of this.replay.notices) {
      if (change.seq > upTo) break;
      for (const notice of change.notices) notices.set(notice.seq, notice);
    }
    shown.notices = [...notices.values()].sort((a, b) => a.seq - b.seq);
    shown.noticesError = null;
    if (this.incidents.get(shown.picture.incident.id) !== shown) return;
    this.paintCallTree(shown);
    this.paintTabs(shown);
    if (this.selected === shown.picture.incident.id) this.paintKpis();
  }

  unansweredNotices(shown) {
    const now = this.now();
    return (shown.notices || []).filter((n) => n.status === "unanswered" || n.status === "failed" ||
      (OPEN_NOTICES.has(n.status) && n.due_at && Date.parse(n.due_at) < now));
  }

  // Back to the start: nothing shown, every message to be played again.
  rewind() {
    for (const id of [...this.incidents.keys()]) this.remove(id);
    for (const id of [...(this.sensorTiers?.keys() || [])]) this.paintSensor(id, null);
    this.drills.clear();
    this.lastSeq = null;
    this.paintBanner();
  }
}
ReplayWall.prototype.isReplay = true;

// The replay's messages, in log order, each at its time (s) since the first event: every event,
// and after each key event the picture rebuilt there (as the websocket sends them live).
function messages(replay) {
  const start = Date.parse(replay.started_at);
  const pictures = new Map(replay.pictures.map((p) => [p.seq, p.snapshot]));
  const out = [];
  for (const event of replay.events) {
    const at = (Date.parse(event.at) - start) / 1000;
    out.push({ at, message: { type: "event", seq: event.seq, incident_id: event.incident_id, event } });
    const picture = pictures.get(event.seq);
    if (picture) out.push({ at, message: { type: "incident", seq: event.seq, snapshot: picture } });
  }
  return out;
}

class Player {
  constructor(replay, wall, bar) {
    this.wall = wall;
    this.bar = bar;
    this.messages = messages(replay);
    this.start = Date.parse(replay.started_at);
    this.length = Math.max(0, (Date.parse(replay.ended_at) - this.start) / 1000);
    this.position = 0;
    this.next = 0; // the next message to play
    this.speed = 10;
    this.playing = true;
    this.timer = setInterval(() => this.step(), STEP_MS);
  }

  stop() {
    clearInterval(this.timer);
  }

  step() {
    if (session?.live.closed) return stopReplay(); // signed out, or another site
    if (!this.playing) return;
    this.seek(Math.min(this.length, this.position + (STEP_MS / 1000) * this.speed));
    if (this.position >= this.length) this.playing = false;
    this.bar.paint();
  }

  // The wall as it was `position` seconds in: played on from where it is, or from the start.
  seek(position) {
    if (position < this.position) {
      this.wall.rewind();
      this.next = 0;
    }
    this.position = position;
    this.wall.cursor = this.start + position * 1000;
    while (this.next < this.messages.length && this.messages[this.next].at <= position) {
      let { message } = this.messages[this.next];
      this.next += 1;
      // Events change the picture they apply to: each play starts from the picture as sent.
      if (message.type === "incident") message = { ...message, snapshot: structuredClone(message.snapshot) };
      try {
        this.wall.receive(message); // the live wall's own handling of a websocket message
      } catch (error) {
        console.warn("replayed message not applied", message.type, error);
      }
    }
    this.wall.tickPanels();
  }
}

// The bar over a replay: what it is, play and pause, the speed, the slider, back to live.
class ReplayBar {
  constructor(replay, title) {
    this.box = $("replay-bar");
    this.title = title;
    this.replay = replay;
    this.play = el("button", { type: "button", id: "replay-play", class: "bar-button" });
    this.play.addEventListener("click", () => {
      const player = this.player;
      if (!player) return;
      if (player.position >= player.length) player.seek(0);
      player.playing = !player.playing;
      this.paint();
    });
    this.speeds = el("span", { class: "replay-speeds", role: "group" });
    for (const speed of SPEEDS) {
      const button = el("button", { type: "button", class: "bar-button replay-speed", "data-speed": String(speed) }, `${speed}×`);
      button.addEventListener("click", () => {
        if (this.player) this.player.speed = speed;
        this.paint();
      });
      this.speeds.append(button);
    }
    this.slider = el("input", { type: "range", id: "replay-slider", min: "0", step: "1", value: "0" });
    this.slider.addEventListener("input", () => {
      this.player?.seek(Number(this.slider.value));
      this.paint();
    });
    this.time = el("output", { id: "replay-time" });
    this.exit = el("button", { type: "button", id: "replay-exit", class: "bar-button" });
    this.exit.addEventListener("click", () => stopReplay());
    this.what = el("span", { id: "replay-what" });
    this.label = el("strong", { class: "replay-label" });
    this.box.replaceChildren(this.label, this.what, this.play, this.speeds, this.slider, this.time, this.exit);
    this.box.hidden = false;
    this.onLanguage = () => this.paint();
    document.addEventListener("rp-language", this.onLanguage);
    this.paint();
  }

  close() {
    document.removeEventListener("rp-language", this.onLanguage);
    this.box.replaceChildren();
    this.box.hidden = true;
    delete this.box.dataset.state;
  }

  paint() {
    const player = this.player;
    this.box.setAttribute("aria-label", t("replay.region"));
    this.label.textContent = t("replay.label");
    this.what.textContent = this.title;
    this.exit.textContent = t("replay.exit");
    this.speeds.setAttribute("aria-label", t("replay.speed"));
    this.slider.setAttribute("aria-label", t("replay.slider"));
    if (!player) {
      this.play.textContent = t("replay.loading");
      this.play.disabled = true;
      this.box.dataset.state = "loading";
      return;
    }
    const ended = player.position >= player.length;
    this.box.dataset.state = ended ? "ended" : player.playing ? "playing" : "paused";
    this.play.disabled = false;
    this.play.textContent = ended ? t("replay.again") : player.playing ? t("replay.pause") : t("replay.play");
    for (const button of this.speeds.children) button.setAttribute("aria-pressed", String(Number(button.dataset.speed) === player.speed));
    this.slider.max = String(Math.ceil(player.length));
    if (document.activeElement !== this.slider) this.slider.value = String(Math.floor(player.position));
    this.slider.dataset.position = String(player.position);
    const clock = this.player.wall.at(new Date(player.start + player.position * 1000).toISOString());
    this.time.textContent = t("replay.time", { clock, elapsed: clockText(player.position), length: clockText(player.length) });
  }
}

function clockText(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}` : `${pad(Math.floor(s / 60))}:${pad(s % 60)}`;
}

// -- the live wall, paused and resumed ------------------------------------------------------------

// From now on the live wall keeps what its websocket says instead of applying it (its page is
// about to leave the document); pings are answered and alarms shown as ever. A real activation
// ends the replay.
function pauseLive(live) {
  const pause = { buffer: [], overflow: false };
  live.receive = (message) => {
    if (message.type === "ping") return Wall.prototype.receive.call(live, message);
    const event = message.type === "event" ? message.event : null;
    if (event?.type === "sensor.state") live.alarms.state(event);
    if (event?.type === "sensor.acknowledged") live.alarms.acknowledged(event);
    if (pause.buffer.length < BUFFER_MAX) pause.buffer.push(message);
    else pause.overflow = true;
    const real = (event?.type === "incident.activated" && !event.data?.exercise) ||
      (message.type === "incident" && !message.snapshot?.incident?.exercise && !live.incidents.has(message.snapshot?.incident?.id));
    if (real) stopReplay(); // a real incident comes first
  };
  live.resized.disconnect();
  document.removeEventListener("rp-language", live.onLanguage);
  return pause;
}

// The live wall applies what it kept, in order, and draws on its own page again; if it kept too
// much, it subscribes afresh (a snapshot replaces everything).
function resumeLive(live, pause) {
  delete live.receive; // the prototype's again
  if (live.closed) return;
  document.addEventListener("rp-language", live.onLanguage);
  live.resized.observe($("map"));
  if (pause.overflow) {
    live.lastSeq = null;
    live.socket?.close(4008, "replay over"); // reconnects at once (socket.js)
  } else {
    for (const message of pause.buffer) {
      try {
        live.receive(message);
      } catch (error) {
        console.warn("message not applied", message.type, error);
      }
    }
  }
  live.repaint();
  live.activation?.repaint();
}

// -- starting and stopping --------------------------------------------------------------------------

let session = null; // {live, pause, livePage, page, wall, bar, player}

async function startReplay(incident, title, out) {
  const live = Wall.live;
  if (!live || session) return;
  out.textContent = t("replay.loading");
  out.classList.remove("error");
  const pause = pauseLive(live);
  const stopped = { value: false };
  session = { live, pause, stopped, starting: true };
  const path = `/api/sites/${encodeURIComponent(live.site.id)}/incidents/${encodeURIComponent(incident.id)}/replay`;
  let replay;
  try {
    [replay] = await Promise.all([api(path), new Promise((done) => setTimeout(done, SETTLE_MS))]);
  } catch (failure) {
    if (session?.pause === pause) session = null;
    resumeLive(live, pause);
    if (failure.status !== 401) {
      out.textContent = t("replay.refused", { detail: problemText(failure) });
      out.classList.add("error");
    }
    return;
  }
  if (stopped.value || live.closed || session?.pause !== pause) {
    out.textContent = t("replay.real_first"); // a real incident came meanwhile
    return;
  }
  closePicker();
  const livePage = $("wall");
  const page = PRISTINE.cloneNode(true);
  page.hidden = livePage.hidden;
  translatePage(page);
  livePage.replaceWith(page);
  const wall = new ReplayWall(live.site, replay);
  const bar = new ReplayBar(replay, title);
  Object.assign(session, { livePage, page, wall, bar, starting: false });
  try {
    await wall.loadLayers();
  } catch (failure) {
    if (session?.wall === wall && failure.status !== 401) {
      stopReplay();
      $("wall-error").textContent = t("replay.refused", { detail: problemText(failure) });
    }
    return;
  }
  if (session?.wall !== wall || wall.closed) return;
  const player = new Player(replay, wall, bar);
  bar.player = player;
  session.player = player;
  player.seek(0);
  bar.paint();
}

// Back to live: the replay's page goes, the live page comes back and applies what it kept.
export function stopReplay() {
  const ending = session;
  if (!ending) return;
  session = null;
  ending.stopped.value = true;
  ending.player?.stop();
  ending.bar?.close();
  if (ending.wall) {
    ending.wall.close();
    ending.livePage.hidden = ending.page.hidden; // signed out meanwhile: stays hidden
    translatePage(ending.livePage); // the language may have changed meanwhile
    ending.page.replaceWith(ending.livePage);
  }
  resumeLive(ending.live, ending.pause);
}

// -- the list of finished incidents -----------------------------------------------------------------

function closePicker() {
  const box = $("replays");
  box.hidden = true;
  box.replaceChildren();
  $("replay-open").setAttribute("aria-expanded", "false");
}

async function openPicker() {
  const box = $("replays");
  if (!box.hidden) return closePicker();
  const live = Wall.live;
  if (!live || session) return;
  $("replay-open").setAttribute("aria-expanded", "true");
  const list = el("ul", { class: "replay-list" });
  const out = el("p", { class: "replay-out", role: "status" }, t("replay.listing"));
  const close = el("button", { type: "button", class: "quiet-button replay-close" }, t("replay.close"));
  close.addEventListener("click", closePicker);
  box.replaceChildren(el("h2", {}, t("replay.title")), close, out, list);
  box.hidden = false;
  const site = encodeURIComponent(live.site.id);
  let incidents;
  let plans = [];
  try {
    [{ incidents }, { plans = [] } = {}] = await Promise.all([
      api(`/api/sites/${site}/incidents?state=closed`),
      api(`/api/sites/${site}/plans`).catch(() => ({})),
    ]);
  } catch (failure) {
    if (failure.status !== 401) out.textContent = t("replay.refused", { detail: problemText(failure) });
    return;
  }
  out.textContent = incidents.length ? "" : t("replay.none");
  const titles = new Map(plans.map((p) => [p.id, localized(p, "title") || p.id]));
  for (const incident of incidents.slice(0, PICKER_MAX)) {
    const plan = titles.get(incident.plan_id) || incident.plan_id;
    const title = t("replay.what", { plan, time: when(live, incident.activated_at), incident: incident.id });
    const play = el("button", { type: "button", class: "replay-start", "data-incident": incident.id }, t("replay.start"));
    play.addEventListener("click", () => startReplay(incident, incident.exercise ? `${t("exercise.label")} · ${title}` : title, out));
    list.append(el("li", { "data-incident": incident.id },
      incident.exercise ? el("span", { class: "exercise-badge" }, t("exercise.label")) : null,
      el("span", { class: "replay-plan" }, plan),
      el("span", { class: "replay-when" }, t("replay.when", { start: when(live, incident.activated_at), end: when(live, incident.closed_at), by: incident.closed_by || "?" })),
      play,
    ));
  }
}

// A day and a time of the site: a replay is of another day, often.
function when(live, iso) {
  const format = new Intl.DateTimeFormat(undefined, {
    day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: live.site.timezone || "UTC",
  });
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso ?? "–") : format.format(date);
}

// The header's button opens the list (main.js).
export function setUpReplay() {
  $("replay-open").addEventListener("click", openPicker);
}
