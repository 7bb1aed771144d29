// Commanding from the wall (Wall methods, mixed into it by state.js): the command tab (duties,
// escalate, de-escalate, stand down, notes), the call tree with each notice's status and the
// commander's answer on someone's behalf, and the significant-events log. Every order asks for
// a confirmation in the panel itself (a kiosk has no dialog boxes), sends the reason where one
// is needed, and shows a refusal in the server's words; the change itself arrives as an event.
import { api, problemText, send } from "./api.js";
import { el } from "./dom.js";
import { localized, t } from "./i18n.js";

const LEVELS = ["L1", "L2", "L3", "L4"];
const CHANNELS = ["phone", "radio", "sms", "in_person", "app"];
const OPEN_NOTICES = new Set(["waiting", "delivered", "failed", "unanswered"]);
const LOG_MAX = 200;
const CALLTREE_WAIT_MS = 300; // notification events come in bursts: one read after the burst

export const commandMethods = {
  incidentPath(shown, tail = "") {
    const site = encodeURIComponent(this.site.id);
    return `/api/sites/${site}/incidents/${encodeURIComponent(shown.picture.incident.id)}${tail}`;
  },

  mayCommand() {
    return this.isCommander();
  },

  mayNote() {
    return this.isCommander() || Boolean(this.me?.roles?.includes("responder"));
  },

  // -- the command tab -----------------------------------------------------------------------------

  commandPanel(shown) {
    const panel = shown.element.querySelector(".tab-panel[data-tab='command']");
    const orders = el("div", { class: "orders" });
    // novalidate: the wall says what is missing in its words, next to the button.
    const confirm = el("form", { class: "order-confirm", hidden: true, noValidate: true });
    const result = el("p", { class: "order-result", role: "status" });
    const noteText = el("textarea", { name: "text", rows: 2, maxLength: 2000, class: "note-text" });
    const noteForm = el("form", { class: "note-form" },
      el("label", {}, el("span", { class: "note-label" }, ""), noteText),
      el("button", { type: "submit", class: "note-add" }, ""),
      el("p", { class: "note-result", role: "status" }),
    );
    noteForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.addNote(shown, noteForm, noteText);
    });
    shown.command = { orders, confirm, result, noteForm };
    panel.replaceChildren(this.dutiesSection(shown), orders, confirm, result, noteForm);
  },

  paintCommand(shown) {
    const { orders, noteForm, confirm } = shown.command;
    const panel = shown.element.querySelector(".tab-panel[data-tab='command']");
    panel.querySelector(".duties").replaceWith(this.dutiesSection(shown));
    noteForm.hidden = !this.mayNote();
    noteForm.querySelector(".note-label").textContent = t("note.label");
    noteForm.querySelector(".note-add").textContent = t("note.add");
    orders.replaceChildren();
    if (!this.mayCommand()) return;
    const level = shown.picture.plan.level;
    const index = LEVELS.indexOf(level);
    const up = LEVELS[index + 1];
    const down = LEVELS[index - 1];
    const button = (order, label, disabled, className) => {
      const b = el("button", { type: "button", class: `order ${className}`, "data-order": order, disabled }, label);
      b.addEventListener("click", () => this.askOrder(shown, order));
      return b;
    };
    orders.append(
      button("escalate", up ? t("command.escalate", { level: t(`response.${up}`) }) : t("command.top"), !up, "escalate"),
      button("deescalate", down ? t("command.deescalate", { level: t(`response.${down}`) }) : t("command.bottom"), !down, "deescalate"),
      button("stand-down", t("command.stand_down"), false, "stand-down"),
    );
    if (confirm.dataset.level && confirm.dataset.level !== level) this.closeConfirm(shown); // asked at an older level
  },

  // The confirmation, in the panel: what the order does, a reason where one is needed, and
  // Confirm / Cancel. De-escalating and standing down need a reason; escalating takes one.
  askOrder(shown, order, { force = false, why = null } = {}) {
    const { confirm, result } = shown.command;
    const level = shown.picture.plan.level;
    const index = LEVELS.indexOf(level);
    result.textContent = "";
    const question = {
      escalate: () => t("command.confirm_escalate", { level: t(`response.${LEVELS[index + 1]}`) }),
      deescalate: () => t("command.confirm_deescalate", { level: t(`response.${LEVELS[index - 1]}`), from: t(`response.${level}`) }),
      "stand-down": () => t("command.confirm_stand_down"),
    }[order]();
    const needsReason = order !== "escalate";
    const reason = el("input", { name: "reason", class: "order-reason", autocomplete: "off", required: needsReason, maxLength: 2000 });
    const error = el("p", { class: "order-error error", role: "alert" }, why || "");
    confirm.replaceChildren(
      el("p", { class: "order-question" }, question),
      el("label", {}, `${t("command.reason")} `, reason),
      el("button", { type: "submit", class: "order-yes", "data-confirm": order }, force ? t("command.force") : t("command.yes")),
      el("button", { type: "button", class: "order-cancel quiet-button" }, t("command.cancel")),
      error,
    );
    confirm.dataset.order = order;
    confirm.dataset.level = level;
    confirm.dataset.force = String(force);
    confirm.hidden = false;
    confirm.querySelector(".order-cancel").addEventListener("click", () => this.closeConfirm(shown));
    confirm.onsubmit = (event) => {
      event.preventDefault();
      if (needsReason && !reason.value.trim()) {
        error.textContent = t("command.reason_required");
        reason.setAttribute("aria-invalid", "true");
        reason.focus();
        return;
      }
      this.order(shown, order, reason.value.trim(), force, error);
    };
    reason.focus();
  },

  closeConfirm(shown) {
    const { confirm } = shown.command;
    confirm.hidden = true;
    confirm.replaceChildren();
    delete confirm.dataset.order;
    delete confirm.dataset.level;
  },

  async order(shown, order, reason, force, error) {
    const { confirm, result } = shown.command;
    for (const b of confirm.querySelectorAll("button")) b.disabled = true;
    const path = this.incidentPath(shown, `/${order}`);
    const body = order === "stand-down"
      ? { force, reason: reason || null }
      : reason ? { reason } : undefined;
    try {
      await send("POST", path, body);
      this.closeConfirm(shown);
      result.textContent = t("command.done", { what: confirm.querySelector(".order-question")?.textContent || order });
    } catch (failure) {
      if (failure.status === 401) return;
      const words = problemText(failure);
      // People missing or steps open: the server's words, and the choice to close anyway.
      if (order === "stand-down" && failure.status === 409 && !force) {
        this.askOrder(shown, order, { force: true, why: t("command.refused", { detail: words }) });
        return;
      }
      error.textContent = t("command.refused", { detail: words });
      for (const b of confirm.querySelectorAll("button")) b.disabled = false;
    }
  },

  async addNote(shown, form, input) {
    const out = form.querySelector(".note-result");
    const button = form.querySelector("button");
    out.textContent = "";
    out.classList.remove("error");
    button.disabled = true;
    try {
      await send("POST", this.incidentPath(shown, "/notes"), { text: input.value.trim() });
      input.value = "";
      out.textContent = t("note.added");
    } catch (failure) {
      if (failure.status !== 401) {
        out.textContent = t("note.refused", { detail: problemText(failure) });
        out.classList.add("error");
      }
    } finally {
      button.disabled = false;
    }
  },

  // -- the call tree -------------------------------------------------------------------------------

  // The notices of the incident (GET .../notices), read when the incident is shown and again
  // after each burst of notification events.
  loadNotices(shown) {
    clearTimeout(shown.noticesTimer);
    shown.noticesTimer = setTimeout(async () => {
      const asked = (shown.noticesAsked = (shown.noticesAsked || 0) + 1);
      try {
        const { notices } = await api(this.incidentPath(shown, "/notices"));
        if (asked !== shown.noticesAsked) return;
        shown.notices = notices;
        shown.noticesError = null;
      } catch (failure) {
        if (failure.status === 401 || asked !== shown.noticesAsked) return;
        shown.noticesError = problemText(failure);
      }
      if (this.incidents.get(shown.picture.incident.id) !== shown) return;
      this.paintCallTree(shown);
      this.paintTabs(shown);
      if (this.selected === shown.picture.incident.id) this.paintKpis();
    }, shown.notices ? CALLTREE_WAIT_MS : 0);
  },

  // Call-outs nobody answered in time: no contact left, delivery failed, or past their answer
  // time (a fallback is on its way). Those just sent are not counted yet.
  unansweredNotices(shown) {
    const now = Date.now();
    return (shown.notices || []).filter((n) => n.status === "unanswered" || n.status === "failed" ||
      (OPEN_NOTICES.has(n.status) && n.due_at && Date.parse(n.due_at) < now));
  },

  paintCallTree(shown) {
    const panel = shown.element.querySelector(".tab-panel[data-tab='calltree']");
    if (shown.noticesError) {
      panel.replaceChildren(el("p", { class: "error" }, t("calltree.error", { detail: shown.noticesError })));
      return;
    }
    if (!shown.notices) {
      panel.replaceChildren(el("p", { class: "quiet" }, t("calltree.loading")));
      return;
    }
    if (!shown.notices.length) {
      panel.replaceChildren(el("p", { class: "quiet" }, t("calltree.none")));
      return;
    }
    const list = el("ol", { class: "notices" });
    for (const notice of shown.notices) list.append(this.noticeItem(shown, notice));
    panel.replaceChildren(list);
  },

  noticeItem(shown, notice) {
    const contact = notice.contact?.name || notice.contact?.username || notice.contact?.phone || "?";
    const role = notice.role_name ? notice.role_name : this.roleName(shown, notice.role);
    const item = el("li", { class: "notice", "data-seq": String(notice.seq), "data-status": notice.status },
      el("span", { class: "notice-who" }, t("calltree.row", { role, contact })),
      notice.fallback ? el("span", { class: "notice-fallback" }, ` · ${t("calltree.fallback")}`) : null,
      el("span", { class: "notice-status" }, t(`calltree.status.${notice.status}`)),
    );
    const ack = notice.acknowledged;
    if (ack) {
      item.append(el("span", { class: "notice-meta" }, t("calltree.answered_by", {
        at: this.at(ack.at), by: ack.by, channel: this.channelName(ack.channel),
      })));
    } else if (OPEN_NOTICES.has(notice.status) && notice.due_at) {
      item.append(el("span", { class: "notice-meta" }, t("calltree.due", { time: this.at(notice.due_at) })));
    }
    if (!ack && OPEN_NOTICES.has(notice.status) && notice.status !== "unanswered" && this.mayCommand()) {
      const button = el("button", { type: "button", class: "on-behalf" }, t("calltree.on_behalf"));
      button.addEventListener("click", () => this.askOnBehalf(shown, notice, item));
      item.append(button);
    }
    return item;
  },

  channelName(channel) {
    return channel && CHANNELS.includes(channel) ? t(`channel.${channel}`) : channel ? t("channel.link") : "";
  },

  // A commander answers for the person called, naming how they were reached.
  askOnBehalf(shown, notice, item) {
    item.querySelector(".on-behalf-form")?.remove();
    const channel = el("select", { name: "channel" });
    for (const c of CHANNELS) channel.append(el("option", { value: c }, t(`channel.${c}`)));
    const error = el("p", { class: "error", role: "alert" });
    const form = el("form", { class: "on-behalf-form" },
      el("label", {}, `${t("calltree.channel")} `, channel),
      el("button", { type: "submit", "data-confirm": "ack" }, t("calltree.confirm")),
      el("button", { type: "button", class: "quiet-button" }, t("command.cancel")),
      error,
    );
    form.querySelector(".quiet-button").addEventListener("click", () => form.remove());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      for (const b of form.querySelectorAll("button")) b.disabled = true;
      try {
        const site = encodeURIComponent(this.site.id);
        await send("POST", `/api/sites/${site}/notifications/${notice.seq}/ack`, { channel: channel.value });
        form.remove(); // the notification.acknowledged event reads the call tree again
      } catch (failure) {
        if (failure.status === 401) return;
        error.textContent = t("calltree.refused", { detail: problemText(failure) });
        for (const b of form.querySelectorAll("button")) b.disabled = false;
      }
    });
    item.append(form);
    channel.focus();
  },

  // -- the significant-events log ------------------------------------------------------------------

  // What a commander must see in order, newest first: orders, level changes, the wind, alarms,
  // failures, overdue steps and unanswered call-outs. Routine step moves stay in the steps tab.
  logLine(shown, event) {
    const who = event.actor || "system";
    const d = event.data || {};
    const inner = d.data || {}; // a plan event's own data (the log's data holds the plan event)
    const step = (id) => localized(this.templateSteps.get(shown.key)?.get(id), "title") || id;
    switch (event.type) {
      case "incident.activated":
        return t("log.activated", { who, plan: this.planTitle(shown), level: d.level || "" });
      case "plan.run.escalated":
        return t("log.escalated", { who, level: inner.to || "" }) + (inner.reason ? ` — ${inner.reason}` : "");
      case "plan.run.deescalated":
        return t("log.deescalated", { who, level: inner.to || "" }) + (inner.reason ? ` — ${inner.reason}` : "");
      case "incident.wind_changed":
        return t("log.wind_changed", { rerouted: d.rerouted?.length ?? d.rerouted ?? 0 });
      case "plan.note":
        return t("log.note", { who, text: inner.text || "" });
      case "plan.step.overdue":
        return t("log.step_overdue", { step: step(d.step_id) });
      case "plan.step.failed":
        return t("log.step_failed", { step: step(d.step_id), reason: inner.reason || "" });
      case "plan.step.skipped":
        return t("log.step_skipped", { who, step: step(d.step_id), reason: inner.reason || "" });
      case "notification.unanswered":
        return t("log.unanswered", { role: this.roleName(shown, d.role) });
      case "notification.acknowledged":
        return t("log.acknowledged", { role: this.roleName(shown, d.role), channel: this.channelName(d.channel) });
      case "incident.network_changed":
        return t("log.network", { rerouted: d.rerouted?.length || 0 });
      case "duty.assigned":
        return t("log.duty", { username: d.username, role: this.roleName(shown, d.role) });
      default:
        return null;
    }
  },

  // The log of an incident: the activation (from the picture), then what came since.
  logEvent(shown, event) {
    const line = this.logLine(shown, event);
    if (!line) return;
    shown.log ||= [];
    if (shown.log.some((e) => e.seq === event.seq && e.seq !== undefined)) return;
    shown.log.push({ seq: event.seq, at: event.at, type: event.type, event });
    if (shown.log.length > LOG_MAX) shown.log.splice(0, shown.log.length - LOG_MAX);
    this.paintLog(shown);
  },

  paintLog(shown) {
    const panel = shown.element.querySelector(".tab-panel[data-tab='log']");
    const list = el("ol", { class: "log", reversed: true });
    const { incident, plan } = shown.picture;
    const rows = [
      { at: incident.activated_at, type: "incident.activated", event: { type: "incident.activated", actor: incident.activated_by, data: { level: shown.firstLevel || plan.level } } },
      ...(shown.log || []),
    ];
    for (const row of rows.slice().reverse()) {
      const line = this.logLine(shown, row.event);
      if (!line) continue;
      list.append(el("li", { "data-type": row.type }, el("time", { dateTime: row.at }, this.at(row.at)), " ", line));
    }
    panel.replaceChildren(list);
  },
};
