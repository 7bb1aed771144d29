// The group wall (docs/group.md): a tile for every site the viewer reads, coloured by what is
// happening there (an incident active, an alarm waiting, calm), with the incidents' levels and
// times and the alarms' counts. It asks GET /api/group/overview every 2 seconds: one request for
// all sites, which a wall of twenty sites needs more than it needs the last tenth of a second.
// It signs in as the wall does: the token of this tab (sessionStorage), and the wall's language.
// A tile opens that site's map wall in this tab (the wall reopens the site this tab remembers).

import { SITE_KEY, TOKEN_KEY, el, initialLanguage, rememberLanguage, sayIn, status } from "./page.js";

const POLL_MS = 2000;
const RANK = { incident: 0, alarm: 1, calm: 2 };

const MESSAGES = {
  back: { en: "Rallypoint", "zh-CN": "Rallypoint" },
  title: { en: "Group wall", "zh-CN": "集团总览" },
  language: { en: "Language", "zh-CN": "语言" },
  sites: { en: "Sites", "zh-CN": "厂区" },
  signin: { en: "Sign in on the map wall first, then come back here.", "zh-CN": "请先在地图大屏登录，再回到此页。" },
  forbidden: { en: "This sign-in reads no site: {detail}", "zh-CN": "当前账号无权查看任何厂区：{detail}" },
  failed: { en: "The overview could not be read ({detail}); showing the last one.", "zh-CN": "总览读取失败（{detail}），显示的是上一次的数据。" },
  recovering: { en: "The server is rebuilding incidents after a restart ({done} of {total}): some may be missing.", "zh-CN": "服务器重启后正在恢复事件（{done}/{total}），部分事件可能暂未显示。" },
  summary: { en: "{sites} sites · {incidents} with an incident · {alarms} with alarms", "zh-CN": "共 {sites} 个厂区 · {incidents} 个有事件 · {alarms} 个有报警" },
  updated: { en: "Updated {time}", "zh-CN": "更新于 {time}" },
  "status.incident": { en: "Incident", "zh-CN": "事件处置中" },
  "status.alarm": { en: "Alarm", "zh-CN": "报警" },
  "status.calm": { en: "Calm", "zh-CN": "正常" },
  incident: { en: "{plan} · {level} · since {time} ({ago})", "zh-CN": "{plan} · {level} · {time} 起（{ago}）" },
  stood_down: { en: "stood down", "zh-CN": "已解除" },
  exercise: { en: "DRILL", "zh-CN": "演练" },
  alarms: { en: "Alarms waiting: {count} · highest: {tier}", "zh-CN": "待确认报警 {count} 条 · 最高：{tier}" },
  no_alarms: { en: "No alarm waiting", "zh-CN": "无待确认报警" },
  "people.sos": { en: "SOS: {n}", "zh-CN": "SOS 求救：{n}" },
  "people.man_down": { en: "Man down: {n}", "zh-CN": "人员倒地：{n}" },
  open: { en: "Open the wall of {name}", "zh-CN": "打开 {name} 的地图大屏" },
  none: { en: "No site to show.", "zh-CN": "没有可显示的厂区。" },
  "tier.warning": { en: "warning", "zh-CN": "预警" },
  "tier.alarm": { en: "alarm", "zh-CN": "报警" },
  "tier.high_alarm": { en: "high alarm", "zh-CN": "高高报" },
  "ago.min": { en: "{n} min", "zh-CN": "{n} 分钟" },
  "ago.h": { en: "{h} h {m} min", "zh-CN": "{h} 小时 {m} 分钟" },
  "plan.chlorine-leak": { en: "Chlorine leak", "zh-CN": "氯气泄漏" },
  "plan.ammonia-leak": { en: "Ammonia leak", "zh-CN": "氨泄漏" },
  "plan.tank-fire": { en: "Tank fire", "zh-CN": "储罐火灾" },
  "plan.vapour-cloud-explosion": { en: "Vapour cloud explosion", "zh-CN": "蒸气云爆炸" },
  "plan.general-evacuation": { en: "General evacuation", "zh-CN": "紧急疏散" },
  "plan.typhoon-flood": { en: "Typhoon and flood", "zh-CN": "台风防汛" },
  "link.connected": { en: "Link to the site: connected", "zh-CN": "与厂区链路：已连接" },
  "link.behind": { en: "Link to the site: {n} events behind", "zh-CN": "与厂区链路：落后 {n} 条事件" },
  "link.cut": { en: "Link to the site: CUT", "zh-CN": "与厂区链路：已中断" },
  "link.refused": { en: "Link to the site: batch REFUSED", "zh-CN": "与厂区链路：数据批次被拒收" },
  "link.ack": { en: "last acknowledged {s} s ago", "zh-CN": "上次确认 {s} 秒前" },
  "link.never": { en: "nothing acknowledged yet", "zh-CN": "尚无确认" },
};

let language = "en";
let overview = null;

const say = (key, params = {}) => sayIn(MESSAGES, language, key, params);

// A plan's name where the page knows it; another plan shows its id.
function planName(id) {
  return MESSAGES[`plan.${id}`] ? say(`plan.${id}`) : id;
}

function translate() {
  document.documentElement.lang = language;
  for (const node of document.querySelectorAll("[data-g]")) node.textContent = say(node.dataset.g);
  document.getElementById("tiles").setAttribute("aria-label", say("sites"));
}

const clock = (iso) => new Date(iso).toLocaleTimeString(language, { hour: "2-digit", minute: "2-digit", hour12: false });

function ago(iso) {
  const minutes = Math.max(0, Math.floor((Date.now() - new Date(iso).getTime()) / 60000));
  return minutes < 60 ? say("ago.min", { n: minutes }) : say("ago.h", { h: Math.floor(minutes / 60), m: minutes % 60 });
}

function incidentLine(incident) {
  const text = say("incident", { plan: planName(incident.plan_id), level: incident.level, time: clock(incident.activated_at), ago: ago(incident.activated_at) });
  const item = el("li", { class: `incident-line level-${incident.level}`, "data-incident": incident.id }, text);
  if (incident.status !== "active") item.append(el("span", { class: "tag quiet" }, say("stood_down")));
  if (incident.exercise) item.prepend(el("span", { class: "tag drill" }, say("exercise")));
  return item;
}

// A site whose event log is replicated here from its own server (docs/offline.md): how its
// link stands, how many events behind, and how long since the group last acknowledged.
function linkLine(link) {
  const since = link.since_ack_s === null ? say("link.never") : say("link.ack", { s: Math.round(link.since_ack_s) });
  const text = `${say(`link.${link.state}`, { n: link.behind_events })} · ${since}`;
  const line = el("p", { class: `link link-${link.state}`, "data-link": link.state }, text);
  if (link.refused) line.title = link.refused;
  return line;
}

function tile(site) {
  const open = el("a", { href: "/", class: "open", "aria-label": say("open", { name: site.name }) });
  // The map wall opens the site this tab remembers: the tile says which, then goes there.
  open.addEventListener("click", () => sessionStorage.setItem(SITE_KEY, site.id));
  const head = el("div", { class: "head" }, el("h2", {}, site.name), el("span", { class: "badge" }, say(`status.${site.status}`)));
  const body = el("div", { class: "body" });
  if (site.incidents.length) body.append(el("ul", { class: "incidents" }, ...site.incidents.map(incidentLine)));
  const waiting = site.alarms.unacknowledged;
  body.append(
    el(
      "p",
      { class: waiting ? `alarms tier-${site.alarms.highest_tier}` : "alarms quiet" },
      waiting ? say("alarms", { count: waiting, tier: say(`tier.${site.alarms.highest_tier}`) }) : say("no_alarms"),
    ),
  );
  const people = ["sos", "man_down"].filter((kind) => site.person_alarms[kind]).map((kind) => say(`people.${kind}`, { n: site.person_alarms[kind] }));
  if (people.length) body.append(el("p", { class: "people" }, people.join(" · ")));
  if (site.link) body.append(linkLine(site.link));
  open.append(head, body, el("p", { class: "site-id quiet" }, site.id));
  return el("li", { class: `tile ${site.status}`, "data-site": site.id, "data-status": site.status }, open);
}

function draw() {
  if (!overview) return;
  const sites = overview.sites;
  const count = (state) => sites.filter((s) => s.status === state).length;
  document.getElementById("summary").textContent = say("summary", { sites: sites.length, incidents: count("incident"), alarms: count("alarm") });
  document.getElementById("updated").textContent = say("updated", { time: new Date().toLocaleTimeString(language, { hour12: false }) });
  // Incidents first, then alarms, then the calm sites, each by name: what needs the group's
  // attention is read first (a tile moves only when its site's state changes).
  const ordered = [...sites].sort((a, b) => RANK[a.status] - RANK[b.status] || a.name.localeCompare(b.name, language));
  const tiles = document.getElementById("tiles");
  tiles.replaceChildren(...ordered.map(tile));
  tiles.dataset.count = String(sites.length);
  if (!sites.length) status(say("none"));
  else if (overview.recovery) status(say("recovering", overview.recovery), true);
  else status("");
}

async function refresh() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return status(say("signin"), true);
  let answer;
  try {
    const response = await fetch("/api/group/overview", { headers: { Accept: "application/json", Authorization: `Bearer ${token}` } });
    if (response.status === 401) return status(say("signin"), true); // signed out: stop asking
    answer = await response.json();
    if (response.status === 403) return status(say("forbidden", { detail: answer.detail }), true);
    if (!response.ok) throw new Error(answer.detail || String(response.status));
  } catch (error) {
    status(say("failed", { detail: error.message }), true);
    document.body.dataset.stale = "true";
    setTimeout(refresh, POLL_MS);
    return;
  }
  overview = answer;
  delete document.body.dataset.stale;
  draw();
  document.body.dataset.ready = "true";
  setTimeout(refresh, POLL_MS);
}

function start() {
  language = initialLanguage();
  const choice = document.getElementById("language");
  choice.value = language;
  choice.addEventListener("change", () => {
    language = choice.value;
    rememberLanguage(language);
    translate();
    draw();
  });
  translate();
  refresh();
}

start();
