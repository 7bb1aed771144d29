// The side panel: each incident's card (steps, duties, resources, muster verdicts), the muster
// headcount and the recovery banner (Wall methods, mixed into it by state.js; proposals are
// the activation panel's, in actions.js).
import { $, duration, el } from "./dom.js";

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
    box.append(el("p", { class: "recovering" },
      `Server restarted: rebuilding incidents from the log, ${recovery.done} of ${recovery.total} done`));
  }
  for (const item of quarantined || []) {
    box.append(el("p", { class: "quarantined", "data-incident": item.id },
      `Incident ${item.id} is quarantined and not shown: ${item.reason}. Check the log with 'rallypoint audit verify'.`));
  }
  box.hidden = !box.childElementCount;
}

export const panelMethods = {
  card(shown) {
    const { incident, plan, exposure, evacuation } = shown.picture;
    const counts = exposure?.counts || {};
    const inside = [3, 2, 1].map((level) => `L${level}: ${counts[level]?.people ?? 0}`).join(", ");
    const moving = evacuation.people.length;
    const trapped = evacuation.trapped.length;
    const steps = el("ol", { class: "steps" });
    for (const step of plan.steps) steps.append(this.stepItem(step, shown));
    const nearest = el("ul", { class: "nearest" });
    for (const [kind, found] of Object.entries(shown.picture.resources)) {
      if (found[0]) nearest.append(el("li", {}, `${kind}: ${found[0].id}, ${duration(found[0].travel_time_s)}`));
    }
    return el(
      "article",
      { class: "incident", "data-incident": incident.id },
      el("h2", {}, `${incident.plan_id} — ${plan.level}`),
      el("p", { class: "facts" }, `Activated ${this.at(incident.activated_at)} by ${incident.activated_by}`),
      el("p", { class: "facts" }, `People inside threat zones: ${inside}`),
      el("p", { class: "facts" }, `To move: ${moving}${trapped ? `, ${trapped} without a safe route` : ""}`),
      ...this.musterVerdicts(shown),
      ...this.threatNotes(shown),
      this.dutiesSection(shown),
      el("h3", {}, "Plan steps"),
      steps,
      el("h3", {}, "Nearest resources"),
      nearest,
    );
  },

  // Muster points the zones make unusable (never routed to) or reach at their edge (a warning),
  // and what to do when none is usable.
  musterVerdicts(shown) {
    const { evacuation } = shown.picture;
    const out = [];
    const none = evacuation.no_usable_muster;
    if (none) {
      const what = none.shelter_in_place ? `Shelter in place: ${none.shelter_in_place}` : "The plan gives no shelter-in-place instruction.";
      out.push(el("p", { class: "alert no-muster", role: "alert" }, `No usable muster point. ${what}`));
    }
    for (const [muster, why] of Object.entries(evacuation.unusable_musters || {})) {
      out.push(el("p", { class: "alert muster-unusable", "data-muster": muster }, `${this.musters.get(muster) || muster}: not used — ${why}`));
    }
    for (const [muster, why] of Object.entries(evacuation.muster_warnings || {})) {
      out.push(el("p", { class: "warning muster-warning", "data-muster": muster }, `${this.musters.get(muster) || muster}: ${why}`));
    }
    if (shown.layersChanged) out.push(el("p", { class: "warning layers-changed", role: "status" }, shown.layersChanged));
    return out;
  },

  // What the hazard model assumed or could not give (a missing level of concern, a dense gas).
  threatNotes(shown) {
    const notes = shown.picture.threat?.properties?.notes || [];
    if (!notes.length) return [];
    const list = el("ul", { class: "threat-notes" });
    for (const note of notes) list.append(el("li", {}, note));
    return [el("h3", {}, "Threat zone notes"), list];
  },

  stepItem(step, shown) {
    const item = el(
      "li",
      { class: "step", "data-step": step.id, "data-status": step.status },
      el("span", { class: "step-id" }, step.id),
      el("span", { class: "step-status" }, step.status.replace("_", " ")),
      el("span", { class: "step-title" }, ""),
      el("span", { class: "step-meta" }, ""),
      el("div", { class: "step-actions" }),
      el("form", { class: "step-form", hidden: true }),
      el("p", { class: "step-error error", role: "alert" }),
    );
    this.paintStep(item, step, shown);
    return item;
  },

  paintStep(item, step, shown) {
    item.dataset.status = step.status;
    item.classList.toggle("overdue", Boolean(step.overdue) && !["done", "skipped"].includes(step.status));
    item.classList.toggle("withdrawn", Boolean(step.withdrawn));
    item.querySelector(".step-status").textContent = step.status.replace("_", " ");
    const due = step.due_at ? `due ${this.at(step.due_at)}` : "no deadline";
    const overdue = item.classList.contains("overdue") ? " — OVERDUE" : "";
    item.querySelector(".step-meta").textContent = `${this.roleName(shown, step.role)} · ${step.level} · ${due}${overdue}`;
    const about = this.templateSteps.get(shown.key)?.get(step.id);
    item.querySelector(".step-title").textContent = about?.title || "";
    this.paintActions(item, step, shown, about);
  },

  paintSteps(shown) {
    for (const step of shown.picture.plan.steps) {
      const item = shown.element.querySelector(`li[data-step="${CSS.escape(step.id)}"]`);
      if (item) this.paintStep(item, step, shown);
    }
  },

  roleName(shown, role) {
    return shown.picture.plan.roles?.find((r) => r.id === role)?.name || role;
  },

  // -- duties --------------------------------------------------------------------------------------

  // Who holds which plan role in this incident; a commander assigns and releases them.
  dutiesSection(shown) {
    const section = el("section", { class: "duties" });
    if (!("duties" in shown.picture.plan)) {
      section.hidden = true; // a server without duty assignments
      return section;
    }
    section.append(el("h3", {}, "Duties"), el("ul", { class: "duty-list" }));
    if (this.isCommander()) {
      const roles = el("select", { name: "role", required: true });
      for (const role of this.planRoles(shown)) roles.append(el("option", { value: role.id }, role.name));
      const username = el("input", { name: "username", required: true, autocomplete: "off" });
      const form = el(
        "form",
        { class: "duty-form" },
        el("label", {}, "Role ", roles),
        el("label", {}, "Username ", username),
        el("button", { type: "submit" }, "Assign"),
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
    const all = [...roles];
    if (command && !all.some((r) => r.id === command)) all.unshift({ id: command, name: command });
    return all;
  },

  paintDuties(shown, section = shown.element.querySelector(".duties")) {
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
            { type: "button", class: "release", title: `Release ${username} from ${role.name}` },
            "Release",
          );
          release.addEventListener("click", () => this.releaseDuty(shown, role.id, username, release));
          holder.append(" ", release);
        }
        row.append(holder, " ");
      }
      list.append(row);
    }
    if (!list.children.length) list.append(el("li", { class: "quiet" }, "No duties assigned yet."));
  },

  showHeadcount(headcount) {
    const list = $("headcount-list");
    list.replaceChildren();
    if (!headcount) {
      $("headcount-total").textContent = "–";
      return;
    }
    const missing = headcount.on_site - headcount.accounted;
    $("headcount-total").textContent =
      `${headcount.accounted} of ${headcount.on_site} at muster points` + (missing ? `, ${missing} not yet` : "");
    const expected = new Map();
    for (const shown of this.incidents.values()) {
      for (const p of shown.picture.evacuation.people) {
        if (p.muster) expected.set(p.muster, (expected.get(p.muster) || 0) + 1);
      }
    }
    for (const [muster, count] of Object.entries(headcount.at)) {
      const name = this.musters.get(muster) || muster;
      const due = expected.get(muster);
      list.append(el("li", { "data-muster": muster }, `${name}: ${count}${due ? ` (expecting ${due})` : ""}`));
    }
  },
};
