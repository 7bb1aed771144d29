// The drill controller's console on the wall: only for a user who holds drill_controller at the
// site (nothing of it is in the page otherwise; the server refuses everyone else anyway). It
// lists the site's drills with their state and window (a blind drill's start is sealed: the
// server never says it), and for a live drill: the scenario's timeline with the injects fired
// and those due (a countdown in drill time, which stops while the drill is held or suspended),
// the expected player actions against their targets as they are met or missed, the orders
// (fire the next inject now, hold, resume, end, abort; ending and aborting are confirmed), and
// the evaluator's notes stamped with drill time.
//
// It reads GET .../drills, GET .../drills/{id} and, once per drill, GET .../drills/{id}/events
// (its drill.* events so far); then the wall hands it every drill.* event from the websocket
// (banner.js) and it asks for the drill again. It also asks every POLL_MS, as a backstop.
import { api, problemText, send } from "./api.js";
import { $, duration, el } from "./dom.js";
import { localized, t } from "./i18n.js";

const POLL_MS = 10_000;
const REFRESH_WAIT_MS = 250; // drill.* events come in bursts: one read after the burst
const LIVE = new Set(["running", "held", "suspended"]);
const LIST_MAX = 8; // the drills listed, latest first
const STATE_KEYS = {
  scheduled: "console.state.scheduled",
  starting: "console.state.starting",
  running: "console.state.running",
  held: "console.state.held",
  suspended: "console.state.suspended",
  ended: "console.state.ended",
  aborted: "console.state.aborted",
  cancelled: "console.state.cancelled",
};
const ORDER_KEYS = {
  hold: "console.hold",
  resume: "console.resume",
  end: "console.end",
  abort: "console.abort",
};
const DONE_KEYS = {
  fire: "console.done_fire",
  hold: "console.done_hold",
  resume: "console.done_resume",
  end: "console.done_end",
  abort: "console.done_abort",
};

// Drill time as "T+12:05" (or "T+1:02:05").
// A drill's record entries have no sequence number until the drill ends: keyed by what they are.
const keyOf = (event) => event.seq ?? `${event.type}@${event.at}@${event.data?.expected_id ?? event.data?.inject_id ?? ""}`;
const byTime = (a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : (a.seq ?? 0) - (b.seq ?? 0));

export function drillTime(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  const time = s >= 3600 ? `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}` : `${pad(Math.floor(s / 60))}:${pad(s % 60)}`;
  return t("console.t", { time });
}

export class DrillConsole {
  // The console, for a drill controller at the wall's site; null for anyone else.
  static open(wall) {
    if (wall.isReplay || !wall.me?.roles?.includes("drill_controller")) return null;
    return new DrillConsole(wall);
  }

  constructor(wall) {
    this.wall = wall;
    this.closed = false;
    this.drills = []; // GET .../drills
    this.detail = null; // GET .../drills/{id} of the drill shown, and when it was read
    this.fetchedAt = 0;
    this.shownId = null;
    this.logs = new Map(); // drill id -> Map(seq -> drill.* event)
    this.logRead = new Set(); // drills whose events were read from the server
    this.scenarios = new Map(); // scenario id -> the scenario (its title), once read
    this.asked = 0;
    this.element = el("aside", { id: "drill-console", "aria-labelledby": "drill-console-title" });
    this.heading = el("h2", { id: "drill-console-title" });
    this.listHead = el("h3", { class: "dc-list-head" });
    this.list = el("ul", { class: "dc-drills" });
    this.live = el("section", { class: "dc-live" });
    this.error = el("p", { class: "error dc-error", role: "alert" });
    this.element.append(this.heading, this.error, this.live, this.listHead, this.list);
    this.build();
    $("wall-body").prepend(this.element);
    this.paint();
    this.refresh();
    this.poll = setInterval(() => !document.hidden && this.refresh(), POLL_MS);
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  close() {
    this.closed = true;
    clearInterval(this.poll);
    clearInterval(this.ticker);
    clearTimeout(this.soon);
    this.element.remove();
  }

  path(tail = "") {
    return `/api/sites/${encodeURIComponent(this.wall.site.id)}/drills${tail}`;
  }

  // -- what the server says ------------------------------------------------------------------------

  async refresh() {
    const asked = (this.asked += 1);
    try {
      const [{ drills }, { reviews }] = await Promise.all([
        api(this.path()),
        api(`/api/sites/${encodeURIComponent(this.wall.site.id)}/reviews`).catch(() => ({ reviews: [] })),
      ]);
      if (this.closed || asked !== this.asked) return;
      this.drills = drills;
      // Each ended drill's review: open, signed off, or overdue (72 h after the end).
      this.reviews = new Map((reviews || []).filter((r) => r.drill_id).map((r) => [r.drill_id, r]));
      const shown = drills.find((d) => d.id === this.shownId && LIVE.has(d.state)) || drills.find((d) => LIVE.has(d.state));
      this.shownId = shown?.id ?? null;
      if (shown) {
        const [detail] = await Promise.all([api(this.path(`/${encodeURIComponent(shown.id)}`)), this.readLog(shown.id)]);
        if (this.closed || asked !== this.asked) return;
        this.detail = detail;
        this.fetchedAt = Date.now();
      } else {
        this.detail = null;
      }
      this.error.textContent = "";
      for (const drill of drills.slice(0, LIST_MAX)) this.scenario(drill.scenario_id);
    } catch (failure) {
      if (failure.status === 401 || this.closed) return;
      this.error.textContent = t("console.unreadable", { detail: problemText(failure) });
    }
    this.paint();
  }

  // The drill's own events so far, read again on each refresh: its injects, actions met and
  // missed and notes are controller material kept from the players' websocket while it runs.
  async readLog(id) {
    const { events } = await api(this.path(`/${encodeURIComponent(id)}/events`));
    this.logRead.add(id);
    this.logs.set(id, new Map(events.map((event) => [keyOf(event), event])));
  }

  // A scenario's title, read once (the list names drills by it).
  scenario(id) {
    if (this.scenarios.has(id)) return;
    this.scenarios.set(id, null);
    api(this.path(`/scenarios/${encodeURIComponent(id)}`)).then(
      (answer) => {
        this.scenarios.set(id, answer.scenario);
        this.paint();
      },
      () => {}, // named by its id
    );
  }

  refreshSoon() {
    clearTimeout(this.soon);
    this.soon = setTimeout(() => this.refresh(), REFRESH_WAIT_MS);
  }

  logOf(id) {
    if (!this.logs.has(id)) this.logs.set(id, new Map());
    return this.logs.get(id);
  }

  // A drill.* event from the websocket (or an order's answer): kept, and the drill read again.
  event(event) {
    const id = event.data?.drill_id;
    if (!id || this.closed) return;
    this.logOf(id).set(keyOf(event), event);
    if (event.type === "drill.note") this.paint();
    else this.refreshSoon();
  }

  events(id, type) {
    return [...(this.logs.get(id)?.values() || [])].filter((e) => e.type === type).sort(byTime);
  }

  // Drill time now: as the server said it, running on while the drill runs.
  drillNow() {
    if (!this.detail || this.detail.drill_s == null) return null;
    const since = this.detail.state === "running" ? (Date.now() - this.fetchedAt) / 1000 : 0;
    return this.detail.drill_s + since;
  }

  titleOf(drill) {
    const started = this.events(drill.id, "drill.started")[0];
    const scenario = this.scenarios.get(drill.scenario_id);
    return localized(started?.data, "title") || localized(scenario, "title") || drill.scenario_id;
  }

  // -- painting --------------------------------------------------------------------------------------

  // The parts that stay (a typed note or reason survives every repaint).
  build() {
    this.head = el("div", { class: "dc-head" });
    this.orders = el("div", { class: "dc-orders" });
    this.buttons = {};
    for (const order of ["fire", "hold", "resume", "end", "abort"]) {
      const button = el("button", { type: "button", class: `dc-order dc-${order}`, "data-order": order });
      button.addEventListener("click", () => (order === "end" || order === "abort" ? this.ask(order) : this.order(order)));
      this.buttons[order] = button;
      this.orders.append(button);
    }
    this.confirm = el("form", { class: "dc-confirm", hidden: true, noValidate: true });
    this.result = el("p", { class: "dc-result", role: "status" });
    this.timelineHead = el("h3", {});
    this.timeline = el("ol", { class: "dc-injects" });
    this.expectedHead = el("h3", {});
    this.expected = el("ol", { class: "dc-expected" });
    this.notesHead = el("h3", {});
    this.noteText = el("textarea", { name: "text", rows: 2, maxLength: 4000, class: "dc-note-text", id: "dc-note-text" });
    this.noteLabel = el("label", { htmlFor: "dc-note-text" });
    this.noteButton = el("button", { type: "submit", class: "dc-note-add" });
    this.noteResult = el("p", { class: "dc-note-result", role: "status" });
    this.noteForm = el("form", { class: "dc-note-form" }, this.noteLabel, this.noteText, this.noteButton, this.noteResult);
    this.noteForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.addNote();
    });
    this.notes = el("ol", { class: "dc-notes" });
    this.none = el("p", { class: "quiet dc-none" });
    this.live.append(this.none, this.head, this.orders, this.confirm, this.result, this.timelineHead, this.timeline,
      this.expectedHead, this.expected, this.notesHead, this.noteForm, this.notes);
  }

  paint() {
    if (this.closed) return;
    this.heading.textContent = t("console.title");
    this.element.setAttribute("aria-label", t("console.title"));
    this.listHead.textContent = t("console.drills");
    this.paintList();
    this.paintLive();
  }

  tick() {
    if (this.detail && LIVE.has(this.detail.state)) this.paintLive();
  }

  paintList() {
    this.list.replaceChildren();
    if (!this.drills.length) this.list.append(el("li", { class: "quiet" }, t("console.no_drills")));
    for (const drill of this.drills.slice(0, LIST_MAX)) {
      const item = el("li", { "data-drill": drill.id, "data-state": drill.state },
        el("span", { class: "dc-drill-title" }, this.titleOf(drill)),
        el("span", { class: "dc-drill-state" }, ` · ${t(drill.mode === "blind" ? "console.blind" : "console.announced")} · ${t(STATE_KEYS[drill.state] || "console.state.unknown")}`),
        el("span", { class: "dc-drill-when" }, this.whenText(drill)),
      );
      const review = this.reviews?.get(drill.id);
      if (review) {
        const state = review.overdue ? "overdue" : review.state === "signed_off" ? "signed_off" : "open";
        item.append(el("span", { class: "dc-review", "data-review": state },
          t(state === "overdue" ? "console.review_overdue" : state === "signed_off" ? "console.review_signed" : "console.review_open")));
      }
      if (LIVE.has(drill.state) && drill.id !== this.shownId) {
        const show = el("button", { type: "button", class: "quiet-button dc-show" }, t("console.show"));
        show.addEventListener("click", () => {
          this.shownId = drill.id;
          this.refresh();
        });
        item.append(show);
      }
      this.list.append(item);
    }
  }

  // When: a blind drill's window (never its start), or when it started and ended.
  whenText(drill) {
    const at = (iso) => this.stamp(iso);
    if (drill.state === "scheduled" && drill.window) {
      const window = t("console.window", { start: at(drill.window.start), end: at(drill.window.end) });
      const not = (drill.window.exclude || []).map((x) => `${x.from}–${x.to}`).join(t("console.separator"));
      return not ? `${window} ${t("console.window_not", { ranges: not })}` : window;
    }
    if (drill.ended_at) return t("console.ran", { start: at(drill.started_at || drill.created_at), end: at(drill.ended_at) });
    if (drill.started_at) return t("console.started", { start: at(drill.started_at) });
    return t("console.created", { time: at(drill.created_at) });
  }

  stamp(iso) {
    this.dates ||= new Intl.DateTimeFormat(undefined, {
      weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
      timeZone: this.wall.site.timezone || "UTC",
    });
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : this.dates.format(date);
  }

  paintLive() {
    const detail = this.detail;
    const live = Boolean(detail && LIVE.has(detail.state));
    this.none.hidden = live;
    this.none.textContent = t("console.no_live");
    for (const part of [this.head, this.orders, this.result, this.timelineHead, this.timeline, this.expectedHead,
      this.expected, this.notesHead, this.noteForm, this.notes]) part.hidden = !live;
    if (!live) {
      this.closeConfirm();
      this.live.removeAttribute("data-drill");
      return;
    }
    this.live.dataset.drill = detail.id;
    this.live.dataset.state = detail.state;
    const now = this.drillNow();
    this.head.replaceChildren(
      el("h3", { class: "dc-title" }, this.titleOf(detail)),
      el("p", { class: "dc-state", "data-state": detail.state },
        el("span", { class: "dc-state-name" }, t(STATE_KEYS[detail.state])),
        " · ",
        el("span", { class: "dc-clock", role: "timer" }, now === null ? "" : drillTime(now)),
      ),
      ...(detail.state === "suspended" && detail.suspended_by
        ? [el("p", { class: "dc-suspended" }, t("console.suspended_by", { reason: detail.suspended_by }))]
        : []),
    );
    this.paintOrders(detail);
    this.paintTimeline(detail, now);
    this.paintExpected(detail, now);
    this.paintNotes(detail);
  }

  nextInject(detail) {
    return (detail.injects || []).filter((i) => !i.fired && i.at_s != null).sort((a, b) => a.at_s - b.at_s)[0] || null;
  }

  paintOrders(detail) {
    const running = detail.state === "running";
    const next = this.nextInject(detail);
    const b = this.buttons;
    b.fire.textContent = next ? t("console.fire", { inject: next.title }) : t("console.fire_none");
    b.fire.disabled = !running || !next || this.busy;
    b.fire.title = t("console.fire_title");
    for (const order of ["hold", "resume", "end", "abort"]) b[order].textContent = t(ORDER_KEYS[order]);
    b.hold.disabled = !running || this.busy;
    b.resume.disabled = running || this.busy;
    b.end.disabled = this.busy;
    b.abort.disabled = this.busy;
    this.timelineHead.textContent = t("console.timeline");
    this.expectedHead.textContent = t("console.expected");
    this.notesHead.textContent = t("console.notes");
    this.noteLabel.textContent = t("console.note_label");
    this.noteButton.textContent = t("console.add_note");
  }

  paintTimeline(detail, now) {
    const fired = new Map(this.events(detail.id, "drill.inject").filter((e) => e.data.inject_id).map((e) => [e.data.inject_id, e.data]));
    const expected = new Map((detail.expected || []).map((x) => [x.id, x.title]));
    const injects = [...(detail.injects || [])].sort((a, b) => (a.at_s ?? Infinity) - (b.at_s ?? Infinity));
    this.timeline.replaceChildren();
    for (const inject of injects) {
      const record = fired.get(inject.id);
      const status = inject.fired ? "fired" : inject.at_s == null ? "contingency" : "due";
      let when;
      if (inject.fired) {
        const parts = [record ? t("console.fired_at", { time: drillTime(record.at_s) }) : t("console.fired")];
        if (record?.early) parts.push(t("console.early"));
        if (record?.contingency_for) parts.push(t("console.contingency_for", { action: expected.get(record.contingency_for) || record.contingency_for }));
        if (record?.refused) parts.push(t("console.inject_refused", { detail: record.refused }));
        when = parts.join(" · ");
      } else if (inject.at_s == null) {
        when = t("console.if_missed");
      } else {
        when = now === null ? "" : t("console.due_in", { time: duration(Math.max(0, inject.at_s - now)) });
      }
      this.timeline.append(el("li", { "data-inject": inject.id, "data-status": status },
        el("span", { class: "dc-at" }, inject.at_s == null ? t("console.contingency") : drillTime(inject.at_s)),
        el("span", { class: "dc-inject-title" }, inject.title),
        el("span", { class: "dc-when" }, when),
      ));
    }
    if (!injects.length) this.timeline.append(el("li", { class: "quiet" }, t("console.no_injects")));
  }

  paintExpected(detail, now) {
    const met = new Map(this.events(detail.id, "drill.action_met").map((e) => [e.data.expected_id, e.data]));
    this.expected.replaceChildren();
    for (const action of detail.expected || []) {
      const record = met.get(action.id);
      let status;
      let outcome;
      if (action.met_seq != null || record) {
        const deviation = record?.deviation_s;
        status = deviation == null || deviation <= 0 ? "on-time" : "late";
        outcome = record
          ? t("console.actual", { time: drillTime(record.actual_s), by: record.by || "?", deviation: this.deviationText(deviation) })
          : t("console.met", { seq: action.met_seq });
      } else if (action.missed) {
        status = "missed";
        outcome = t("console.missed", { deadline: drillTime(action.deadline_s) });
      } else if (now !== null && now > action.target_s) {
        status = "overdue";
        outcome = t("console.target_passed", { duration: duration(now - action.target_s) });
      } else {
        status = "open";
        outcome = now === null ? "" : t("console.target_in", { duration: duration(action.target_s - now) });
      }
      this.expected.append(el("li", { "data-expected": action.id, "data-status": status },
        el("span", { class: "dc-expected-title" }, action.title),
        el("span", { class: "dc-target" }, t("console.target", { target: drillTime(action.target_s), deadline: drillTime(action.deadline_s) })),
        el("span", { class: "dc-outcome" }, outcome),
      ));
    }
    if (!(detail.expected || []).length) this.expected.append(el("li", { class: "quiet" }, t("console.no_expected")));
  }

  deviationText(seconds) {
    if (seconds == null) return "";
    if (Math.round(seconds) === 0) return t("console.on_time");
    return seconds > 0 ? t("console.late_by", { duration: duration(seconds) }) : t("console.early_by", { duration: duration(-seconds) });
  }

  paintNotes(detail) {
    const notes = this.events(detail.id, "drill.note").reverse();
    this.notes.replaceChildren();
    for (const note of notes) {
      this.notes.append(el("li", { "data-seq": String(keyOf(note)) },
        el("time", { dateTime: note.at }, `${drillTime(note.data.drill_s)} · ${this.wall.at(note.at)}`),
        " ",
        el("span", { class: "dc-note-who" }, note.actor),
        ": ",
        el("span", { class: "dc-note-text-shown" }, note.data.text),
      ));
    }
    if (!notes.length) this.notes.append(el("li", { class: "quiet" }, t("console.no_notes")));
  }

  // -- orders --------------------------------------------------------------------------------------------

  // Ending and aborting are asked again in the console itself (a wall has no dialog boxes), with
  // an optional reason that is logged with the order.
  ask(order) {
    this.result.textContent = "";
    const reason = el("input", { name: "reason", class: "dc-reason", autocomplete: "off", maxLength: 2000, id: "dc-reason" });
    const error = el("p", { class: "error dc-confirm-error", role: "alert" });
    this.confirm.replaceChildren(
      el("p", { class: "dc-question" }, t(order === "abort" ? "console.confirm_abort" : "console.confirm_end")),
      el("label", { htmlFor: "dc-reason" }, t("console.reason")),
      reason,
      el("button", { type: "submit", class: "dc-yes", "data-confirm": order }, t(order === "abort" ? "console.abort_yes" : "console.end_yes")),
      el("button", { type: "button", class: "quiet-button dc-cancel" }, t("console.cancel")),
      error,
    );
    this.confirm.hidden = false;
    this.confirm.dataset.order = order;
    this.confirm.querySelector(".dc-cancel").addEventListener("click", () => this.closeConfirm());
    this.confirm.onsubmit = (event) => {
      event.preventDefault();
      this.order(order, reason.value.trim(), error);
    };
    reason.focus();
  }

  closeConfirm() {
    this.confirm.hidden = true;
    this.confirm.replaceChildren();
    delete this.confirm.dataset.order;
  }

  async order(order, reason = "", error = null) {
    const detail = this.detail;
    if (!detail) return;
    this.busy = true;
    this.paintOrders(detail);
    this.result.classList.remove("error");
    const body = order === "fire" ? {} : reason ? { reason } : {};
    try {
      const answer = await send("POST", this.path(`/${encodeURIComponent(detail.id)}/${order}`), body);
      for (const event of answer.events || []) if (event.type.startsWith("drill.")) this.logOf(detail.id).set(keyOf(event), event);
      this.closeConfirm();
      this.result.textContent = t(DONE_KEYS[order]);
    } catch (failure) {
      if (failure.status === 401) return;
      const words = t("console.refused", { detail: problemText(failure) });
      if (error) error.textContent = words;
      else {
        this.result.textContent = words;
        this.result.classList.add("error");
      }
    } finally {
      this.busy = false;
    }
    await this.refresh();
  }

  async addNote() {
    const detail = this.detail;
    const text = this.noteText.value.trim();
    this.noteResult.textContent = "";
    this.noteResult.classList.remove("error");
    if (!detail || !text) {
      this.noteResult.textContent = t("console.note_empty");
      this.noteResult.classList.add("error");
      return;
    }
    this.noteButton.disabled = true;
    try {
      const answer = await send("POST", this.path(`/${encodeURIComponent(detail.id)}/notes`), { text });
      for (const event of answer.events || []) this.logOf(detail.id).set(keyOf(event), event);
      this.noteText.value = "";
      this.noteResult.textContent = t("console.note_added");
      this.paint();
    } catch (failure) {
      if (failure.status !== 401) {
        this.noteResult.textContent = t("console.refused", { detail: problemText(failure) });
        this.noteResult.classList.add("error");
      }
    } finally {
      this.noteButton.disabled = false;
    }
  }
}
