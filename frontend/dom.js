// Small DOM helpers the wall's modules share: finding and making elements, the page's sections
// and its connection badge.
import { t } from "./i18n.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
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
  for (const id of ["login", "sites", "wall"]) $(id).hidden = id !== section;
  $("sign-out").hidden = section === "login";
  $("change-site").hidden = section !== "wall";
}

export function setStatus(state, text = t(`status.${state}`)) {
  const badge = $("status");
  badge.dataset.state = state;
  badge.textContent = text;
}


export function duration(seconds) {
  if (seconds === null || seconds === undefined) return t("duration.none");
  const s = Math.round(seconds);
  return s < 60
    ? t("duration.seconds", { s })
    : t("duration.minutes", { min: Math.floor(s / 60), s: String(s % 60).padStart(2, "0") });
}
