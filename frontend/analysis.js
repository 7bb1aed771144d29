// The alarm analysis page (docs/monitoring.md, "False-alarm analysis"): the site's alarm figures
// against ISA-18.2 / EEMUA 191, the plume check, bad actors and recommendations, charted with
// ECharts (window.echarts, from /vendor/echarts). It signs in as the wall does: the token of
// this tab (sessionStorage), and the wall's site and language.
/* global echarts */
import { SITE_KEY, TOKEN_KEY, el, initialLanguage, rememberLanguage, sayIn, status } from "./page.js";

const DAY_MS = 86400000;

const MESSAGES = {
  back: { en: "Rallypoint", "zh-CN": "Rallypoint" },
  title: { en: "Alarm analysis", "zh-CN": "报警分析" },
  from: { en: "From", "zh-CN": "从" },
  to: { en: "To", "zh-CN": "到" },
  show: { en: "Show", "zh-CN": "查询" },
  report: { en: "Download report", "zh-CN": "下载报告" },
  print: { en: "Print", "zh-CN": "打印" },
  language: { en: "Language", "zh-CN": "语言" },
  loading: { en: "Analysing…", "zh-CN": "正在分析…" },
  signin: { en: "Sign in on the map wall first, then come back here.", "zh-CN": "请先在地图大屏登录，再回到此页。" },
  failed: { en: "The analysis failed: {detail}", "zh-CN": "分析失败：{detail}" },
  done: { en: "{alarms} alarms, {from} to {to} (UTC)", "zh-CN": "{from} 至 {to}（UTC）共 {alarms} 次报警" },
  "chart.daily": { en: "Alarms a day, by outcome", "zh-CN": "每日报警（按结论）" },
  "chart.bad": { en: "Top-10 bad actors (click one for its trace)", "zh-CN": "报警最多的 10 个探测器（点击查看曲线）" },
  "chart.rate": { en: "Alarms per 10 minutes (flood above 10)", "zh-CN": "每 10 分钟报警数（超过 10 为报警泛滥）" },
  "chart.plume": { en: "The plume check: could a source upwind explain it?", "zh-CN": "扩散校核：上风向有无可能的泄漏源？" },
  "chart.trace": { en: "Trace", "zh-CN": "曲线" },
  recommendations: { en: "Recommendations", "zh-CN": "改进建议" },
  areas: { en: "Per area", "zh-CN": "按区域" },
  "col.action": { en: "Action", "zh-CN": "措施" },
  "col.sensor": { en: "Sensor", "zh-CN": "探测器" },
  "col.evidence": { en: "Why, and the evidence", "zh-CN": "原因与依据" },
  "col.area": { en: "Area", "zh-CN": "区域" },
  "col.alarms": { en: "Alarms", "zh-CN": "报警" },
  "col.hours": { en: "Hours in alarm", "zh-CN": "报警时长（小时）" },
  "col.chattering": { en: "Chattering", "zh-CN": "颤振" },
  "col.standing": { en: "Standing", "zh-CN": "长期报警" },
  "col.false": { en: "False", "zh-CN": "误报" },
  "col.real": { en: "Real", "zh-CN": "真实" },
  "fig.alarms": { en: "Alarms", "zh-CN": "报警总数" },
  "fig.avg": { en: "Per 10 min (average)", "zh-CN": "每 10 分钟（平均）" },
  "fig.peak": { en: "Most in 10 min", "zh-CN": "10 分钟最多" },
  "fig.flood": { en: "Periods in flood", "zh-CN": "泛滥时段占比" },
  "fig.top10": { en: "Top-10 share", "zh-CN": "前 10 占比" },
  "fig.chattering": { en: "Chattering episodes", "zh-CN": "颤振次数" },
  "fig.standing": { en: "Standing alarms", "zh-CN": "长期报警" },
  "fig.suspect": { en: "Suspect (no source upwind)", "zh-CN": "可疑（上风向无源）" },
  target: { en: "target {value}", "zh-CN": "目标 {value}" },
  "outcome.real": { en: "real", "zh-CN": "真实" },
  "outcome.false": { en: "false", "zh-CN": "误报" },
  "outcome.test": { en: "test", "zh-CN": "测试" },
  "outcome.maintenance": { en: "maintenance", "zh-CN": "维护" },
  "outcome.unknown": { en: "not recorded", "zh-CN": "未填写" },
  "plume.explained": { en: "explained by a source upwind", "zh-CN": "上风向有源，可解释" },
  "plume.suspect": { en: "suspect: no source upwind", "zh-CN": "可疑：上风向无源" },
  "plume.no_wind": { en: "no wind reading", "zh-CN": "无风向数据" },
  "plume.n/a": { en: "not a gas detector", "zh-CN": "非气体探测器" },
  "action.relocate": { en: "Relocate", "zh-CN": "迁移位置" },
  "action.recalibrate": { en: "Recalibrate", "zh-CN": "重新标定" },
  "action.on_delay": { en: "Add on-delay", "zh-CN": "增加报警延时" },
  "action.deadband": { en: "Add deadband", "zh-CN": "增加死区" },
  "trace.high": { en: "highest", "zh-CN": "最高" },
  "trace.mean": { en: "mean", "zh-CN": "平均" },
  "trace.low": { en: "lowest", "zh-CN": "最低" },
  "trace.warning": { en: "warning threshold", "zh-CN": "一级报警值" },
  "trace.alarms": { en: "alarms", "zh-CN": "报警" },
  "trace.wind": { en: "wind m/s", "zh-CN": "风速 m/s" },
  "trace.hot_work": { en: "hot work", "zh-CN": "动火作业" },
  count: { en: "alarms", "zh-CN": "次" },
  none: { en: "None.", "zh-CN": "无。" },
};
const OUTCOME_COLOURS = { real: "#ff5252", false: "#78909c", test: "#ba68c8", maintenance: "#ffca28", unknown: "#455a64" };
const PLUME_COLOURS = { explained: "#66bb6a", suspect: "#ff7043", no_wind: "#90a4ae", "n/a": "#455a64" };

let language = "en";
let result = null;
let traceSensor = null;
const charts = {};

const say = (key, params = {}) => sayIn(MESSAGES, language, key, params);

function translate() {
  document.documentElement.lang = language;
  for (const node of document.querySelectorAll("[data-a]")) node.textContent = say(node.dataset.a);
}

async function api(path, { text = false } = {}) {
  const response = await fetch(path, {
    headers: { Accept: text ? "text/html" : "application/json", Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` },
  });
  if (!response.ok) {
    let detail = `${response.status}`;
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
    } catch {
      // not problem+json
    }
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return text ? response.text() : response.json();
}

const pct = (x) => `${(100 * x).toFixed(1)} %`;
const num = (x, digits = 2) => (x === null || x === undefined ? "—" : Number(x).toLocaleString(language, { maximumFractionDigits: digits }));

function period() {
  const from = document.getElementById("from").value;
  const to = document.getElementById("to").value;
  const end = new Date(`${to}T00:00:00Z`).getTime() + DAY_MS;
  return { from: new Date(`${from}T00:00:00Z`).toISOString(), to: new Date(Math.min(end, Date.now())).toISOString() };
}

function query() {
  const { from, to } = period();
  return `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
}

function site() {
  return new URLSearchParams(location.search).get("site") || sessionStorage.getItem(SITE_KEY);
}

async function load() {
  const siteId = site();
  if (!sessionStorage.getItem(TOKEN_KEY) || !siteId) return status(say("signin"), true);
  status(say("loading"));
  try {
    result = await api(`/api/sites/${encodeURIComponent(siteId)}/alarm-analysis?${query()}`);
  } catch (error) {
    if (error.status === 401) return status(say("signin"), true);
    return status(say("failed", { detail: error.message }), true);
  }
  document.getElementById("analysis").hidden = false;
  traceSensor = traceSensor || result.bad_actors[0]?.sensor_id || null;
  draw();
  document.body.dataset.ready = "true";
}

function draw() {
  if (!result) return;
  const r = result;
  status(say("done", { alarms: r.totals.alarms, from: r.from.slice(0, 16).replace("T", " "), to: r.to.slice(0, 16).replace("T", " ") }));
  figures(r);
  daily(r);
  badActors(r);
  rate(r);
  plume(r);
  recommendations(r);
  areas(r);
  if (traceSensor) trace(traceSensor);
}

function figures(r) {
  const c = r.consoles[0];
  const T = r.targets;
  const sum = (key) => r.sensors.reduce((total, s) => total + s[key], 0);
  const rows = [
    ["fig.alarms", num(r.totals.counted, 0), null, null],
    ["fig.avg", num(c.avg_per_10min), `≤ ${T.avg_per_10min_manageable}`, c.avg_per_10min <= T.avg_per_10min_manageable],
    ["fig.peak", num(c.peak_per_10min, 0), `≤ ${T.peak_per_10min}`, c.peak_per_10min <= T.peak_per_10min],
    ["fig.flood", pct(c.flood_share), `< ${pct(T.flood_share)}`, c.flood_share < T.flood_share],
    ["fig.top10", pct(r.top10_share), `≤ ${pct(T.top10_share)}`, r.top10_share <= T.top10_share],
    ["fig.chattering", num(sum("chattering"), 0), "0", sum("chattering") === 0],
    ["fig.standing", num(sum("standing"), 0), `< ${T.standing_per_day}`, sum("standing") < T.standing_per_day],
    ["fig.suspect", num(r.suspect.count, 0), null, null],
  ];
  const box = document.getElementById("figures");
  box.replaceChildren(
    ...rows.map(([key, value, target, good]) => {
      const figure = el("div", { class: "figure", "data-figure": key.slice(4) });
      const shown = el("div", { class: `value ${good === null ? "" : good ? "ok" : "bad"}` }, value);
      figure.append(shown, el("div", { class: "label" }, say(key)));
      if (target !== null) figure.append(el("div", { class: "target" }, say("target", { value: target })));
      return figure;
    }),
  );
}

function chart(id) {
  if (!charts[id]) charts[id] = echarts.init(document.getElementById(id), "dark", { renderer: "canvas" });
  return charts[id];
}

const axisText = { color: "#9fb0bf" };
const base = { backgroundColor: "transparent", textStyle: { fontFamily: "system-ui, sans-serif" }, animation: false };

function daily(r) {
  const keys = ["real", "false", "test", "maintenance", "unknown"];
  chart("chart-daily").setOption(
    {
      ...base,
      tooltip: { trigger: "axis" },
      legend: { top: 0, textStyle: axisText },
      grid: { left: 40, right: 10, top: 30, bottom: 30 },
      xAxis: { type: "category", data: r.daily.days.map((d) => d.slice(5)), axisLabel: axisText },
      yAxis: { type: "value", axisLabel: axisText },
      series: keys.map((k) => ({ name: say(`outcome.${k}`), type: "bar", stack: "all", data: r.daily[k], itemStyle: { color: OUTCOME_COLOURS[k] } })),
    },
    true,
  );
}

function badActors(r) {
  const bad = [...r.bad_actors].reverse();
  const c = chart("chart-bad");
  c.setOption(
    {
      ...base,
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      grid: { left: 60, right: 40, top: 10, bottom: 25 },
      xAxis: { type: "log", axisLabel: axisText, min: 1 },
      yAxis: { type: "category", data: bad.map((b) => b.sensor_id), axisLabel: axisText },
      series: [{ type: "bar", data: bad.map((b) => b.count), itemStyle: { color: "#4fc3f7" }, label: { show: true, position: "right", color: "#e6edf3" } }],
    },
    true,
  );
  c.off("click");
  c.on("click", (event) => trace(event.name));
}

function rate(r) {
  const c = r.consoles[0];
  const start = new Date(r.from).getTime();
  chart("chart-rate").setOption(
    {
      ...base,
      tooltip: { trigger: "axis" },
      grid: { left: 35, right: 10, top: 15, bottom: 30 },
      xAxis: { type: "time", axisLabel: axisText },
      yAxis: { type: "value", axisLabel: axisText, max: (v) => Math.max(v.max, 12) },
      series: [
        {
          type: "line",
          step: "end",
          symbol: "none",
          data: c.per_10min.map((n, i) => [start + i * 600000, n]),
          lineStyle: { color: "#ffb74d", width: 1 },
          markLine: { symbol: "none", data: [{ yAxis: 10 }], lineStyle: { color: "#ff5252" }, label: { color: "#ff5252" } },
        },
      ],
    },
    true,
  );
}

function plume(r) {
  chart("chart-plume").setOption(
    {
      ...base,
      tooltip: { trigger: "item" },
      legend: { bottom: 0, textStyle: axisText },
      series: [
        {
          type: "pie",
          radius: ["35%", "65%"],
          center: ["50%", "45%"],
          label: { color: "#e6edf3", formatter: "{c}" },
          data: Object.entries(r.alarm_verdicts).map(([k, v]) => ({ name: say(`plume.${k}`), value: v, itemStyle: { color: PLUME_COLOURS[k] } })),
        },
      ],
    },
    true,
  );
}

async function trace(sensorId) {
  traceSensor = sensorId;
  const siteId = site();
  let data;
  try {
    data = await api(`/api/sites/${encodeURIComponent(siteId)}/alarm-analysis/trace?sensor=${encodeURIComponent(sensorId)}&${query()}`);
  } catch (error) {
    return status(say("failed", { detail: error.message }), true);
  }
  const s = data.sensor;
  document.getElementById("trace-name").textContent = `${s.id} ${s.name} (${s.unit || ""})`;
  document.getElementById("chart-trace").dataset.sensor = s.id;
  const at = (p) => p[0] * 1000;
  chart("chart-trace").setOption(
    {
      ...base,
      tooltip: { trigger: "axis" },
      legend: { top: 0, textStyle: axisText },
      grid: { left: 45, right: 45, top: 30, bottom: 25 },
      xAxis: { type: "time", axisLabel: axisText },
      yAxis: [
        { type: "value", name: s.unit || "", axisLabel: axisText },
        { type: "value", name: say("trace.wind"), axisLabel: axisText, splitLine: { show: false } },
      ],
      series: [
        { name: say("trace.high"), type: "line", symbol: "none", data: data.periods.map((p) => [at(p), p[3]]), lineStyle: { color: "#ef9a9a", width: 1 }, itemStyle: { color: "#ef9a9a" } },
        {
          name: say("trace.mean"),
          type: "line",
          symbol: "none",
          data: data.periods.map((p) => [at(p), p[2]]),
          lineStyle: { color: "#4fc3f7", width: 1.5 },
          itemStyle: { color: "#4fc3f7" },
          markLine: s.warning === null ? undefined : { symbol: "none", data: [{ yAxis: s.warning, name: say("trace.warning") }], lineStyle: { color: "#ffca28", type: "dashed" }, label: { color: "#ffca28", formatter: say("trace.warning") } },
          markArea: { itemStyle: { color: "rgba(255, 112, 67, 0.12)" }, data: data.permits.map((p) => [{ name: say("trace.hot_work"), xAxis: p.from_s * 1000 }, { xAxis: p.to_s * 1000 }]) },
        },
        { name: say("trace.low"), type: "line", symbol: "none", data: data.periods.map((p) => [at(p), p[1]]), lineStyle: { color: "#80cbc4", width: 1 }, itemStyle: { color: "#80cbc4" } },
        {
          name: say("trace.alarms"),
          type: "scatter",
          symbolSize: 6,
          data: data.alarms.map((a) => ({ value: [a.start_s * 1000, s.warning ?? 0], itemStyle: { color: OUTCOME_COLOURS[a.outcome] || "#fff" } })),
        },
        { name: say("trace.wind"), type: "line", yAxisIndex: 1, symbol: "none", data: data.periods.map((p, i) => [at(p), data.wind[i][0]]), lineStyle: { color: "#9575cd", width: 1, opacity: 0.6 }, itemStyle: { color: "#9575cd" } },
      ],
    },
    true,
  );
}

// A recommendation's evidence in words: each figure's name and how it is written (a count, a
// share as a percentage, seconds, a ratio, a time); a key not listed here is shown as it is.
const EVIDENCE = {
  alarms: { en: "alarms", "zh-CN": "报警", kind: "n" },
  during_hot_work: { en: "during hot work nearby", "zh-CN": "附近动火作业期间", kind: "n" },
  share: { en: "share during hot work", "zh-CN": "动火期间占比", kind: "pct" },
  hot_work_time_share: { en: "share of the time with hot work", "zh-CN": "动火时间占比", kind: "pct" },
  rate_lift: { en: "alarm rate during hot work vs. without", "zh-CN": "动火期间报警率倍数", kind: "x" },
  suspect_share: { en: "plume check: no source upwind", "zh-CN": "扩散校核：上风向无源", kind: "pct" },
  checked: { en: "alarms checked against the plume", "zh-CN": "经扩散校核的报警", kind: "n" },
  suspect: { en: "with no source upwind", "zh-CN": "上风向无源", kind: "n" },
  per_day: { en: "baseline change a day", "zh-CN": "基线日变化", kind: "v" },
  change: { en: "baseline change over the period", "zh-CN": "期间基线变化", kind: "v" },
  share_of_warning: { en: "change as a share of the first tier", "zh-CN": "变化占一级报警值比例", kind: "pct" },
  r2: { en: "fit of the trend (R²)", "zh-CN": "趋势拟合度（R²）", kind: "v" },
  baseline_first_day: { en: "baseline, first day", "zh-CN": "首日基线", kind: "v" },
  baseline_last_day: { en: "baseline, last day", "zh-CN": "末日基线", kind: "v" },
  hours: { en: "hours flat", "zh-CN": "读数不变（小时）", kind: "v" },
  value: { en: "at", "zh-CN": "读数", kind: "v" },
  from: { en: "from", "zh-CN": "从", kind: "t" },
  to: { en: "to", "zh-CN": "到", kind: "t" },
  standing_alarms: { en: "standing alarms", "zh-CN": "长期报警", kind: "n" },
  chattering_episodes: { en: "chattering episodes (≥ 3 a minute)", "zh-CN": "颤振次数（每分钟 ≥ 3 次）", kind: "n" },
  fleeting: { en: "alarms shorter than a minute", "zh-CN": "不足一分钟的报警", kind: "n" },
  median_duration_s: { en: "median duration", "zh-CN": "时长中位数", kind: "s" },
  suggested_on_delay_s: { en: "suggested on-delay", "zh-CN": "建议报警延时", kind: "s" },
  median_peak_over_warning: { en: "median peak, times the first tier", "zh-CN": "峰值中位数（一级报警值的倍数）", kind: "x" },
};

function evidenceText(evidence) {
  return Object.entries(evidence).map(([key, value]) => {
    const label = EVIDENCE[key];
    if (!label) return `${key} ${typeof value === "number" ? num(value) : value ?? "—"}`;
    const name = label[language] ?? label.en;
    if (value === null || value === undefined) return `${name}: —`;
    const shown = {
      n: () => num(value, 0),
      pct: () => `${num(100 * value, 0)} %`,
      s: () => `${num(value, 0)} s`,
      x: () => `× ${num(value, 2)}`,
      t: () => String(value).slice(0, 16).replace("T", " "),
      v: () => num(value, 3),
    }[label.kind]();
    return `${name}: ${shown}`;
  }).join("; ");
}

function recommendations(r) {
  const body = document.querySelector("#recommendations tbody");
  const rows = r.recommendations.map((rec) =>
    el(
      "tr",
      { "data-sensor": rec.sensor_id, "data-action": rec.action },
      el("td", {}, say(`action.${rec.action}`)),
      el("td", {}, `${rec.sensor_id} `, el("span", { class: "evidence" }, rec.name)),
      el("td", {}, rec.why, el("div", { class: "evidence" }, evidenceText(rec.evidence))),
    ),
  );
  body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "3" }, say("none")))]));
}

function areas(r) {
  const body = document.querySelector("#areas tbody");
  body.replaceChildren(
    ...r.areas
      .filter((a) => a.count || a.standing)
      .map((a) =>
        el(
          "tr",
          {},
          el("td", {}, `${a.area ?? "—"} `, el("span", { class: "evidence" }, a.name ?? "")),
          ...[a.count, num(a.total_duration_s / 3600, 1), a.chattering, a.standing, a.false, a.real].map((v) => el("td", { class: "n" }, String(v))),
        ),
      ),
  );
}

async function downloadReport() {
  const siteId = site();
  try {
    const html = await api(`/api/sites/${encodeURIComponent(siteId)}/alarm-analysis/report.html?${query()}`, { text: true });
    const link = el("a", { href: URL.createObjectURL(new Blob([html], { type: "text/html" })), download: `alarm-analysis-${siteId}.html` });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    status(say("failed", { detail: error.message }), true);
  }
}

function start() {
  language = initialLanguage();
  const select = document.getElementById("language");
  select.value = language;
  select.addEventListener("change", () => {
    language = select.value;
    rememberLanguage(language);
    translate();
    draw();
  });
  translate();
  const today = new Date();
  document.getElementById("to").value = today.toISOString().slice(0, 10);
  document.getElementById("from").value = new Date(today.getTime() - 30 * DAY_MS).toISOString().slice(0, 10);
  document.getElementById("period").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  document.getElementById("report").addEventListener("click", downloadReport);
  document.getElementById("print").addEventListener("click", () => window.print());
  window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
  document.getElementById("site-name").textContent = site() || "";
  load();
}

start();
