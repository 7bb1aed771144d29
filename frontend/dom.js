// Small DOM helpers the wall's modules share: finding and making elements, the page's sections
// and its connection badge.
import { t } from "./i18n.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// Server strings (zone, muster and resource names, labels) go into tooltips as text, never as
// HTML: Leaflet sets a string tooltip as markup.
export function text(value) {
  return el("span", {}, String(value));
}

export function show(section) {
  for (const id of ["login", "sites", "wall", "kiosk"]) $(id).hidden = id !== section;
  const kiosk = document.body.classList.contains("kiosk");
  $("sign-out").hidden = section === "login" || kiosk;
  $("change-site").hidden = section !== "wall" || kiosk;
}

// The site's time now, for the header.
export function clock(format) {
  return format.format(new Date());
}

export function setStatus(state, text = t(`status.${state}`)) {
  const badge = $("status");
  badge.dataset.state = state;
  badge.textContent = text;
}


export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return t("duration.none");
  const s = Math.round(seconds);
  if (s < 60) return t("duration.seconds", { s });
  if (s < 3600) return t("duration.minutes", { min: Math.floor(s / 60), s: String(s % 60).padStart(2, "0") });
  return t("duration.hours", { h: Math.floor(s / 3600), min: String(Math.floor(s / 60) % 60).padStart(2, "0") });
}
