// Signing in and out, and choosing a site: the one wall shown now.
import { api, TOKEN_KEY } from "./api.js";
import { $, duration, el, setStatus, show } from "./dom.js";
import { t } from "./i18n.js";
import { Wall } from "./state.js";

const SITE_KEY = "rallypoint.site";
const KIOSK_KEY = "rallypoint.kiosk"; // set: this tab is a kiosk wall, signed in by a wall token
const KIOSK_RETRY_MS = 5000;

// -- kiosk walls ---------------------------------------------------------------------------------

// A wall started from `/#wall=<token>` (`rallypoint wall add`): the token goes from the URL into
// this tab's storage and out of the address bar and history at once; the wall opens its one
// site, reconnects by itself and never shows a sign-in. A refused token says so full-screen.
export function takeKioskToken() {
  const match = /^#wall=([A-Za-z0-9_\-.~]+)$/.exec(location.hash);
  if (!match) return false;
  sessionStorage.setItem(TOKEN_KEY, match[1]);
  sessionStorage.setItem(KIOSK_KEY, "1");
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}

export function isKiosk() {
  return sessionStorage.getItem(KIOSK_KEY) === "1";
}

export function kioskRefused(key) {
  wall?.close();
  wall = null;
  setStatus("offline");
  show("kiosk");
  $("kiosk-title").textContent = t(key);
  $("kiosk-detail").textContent = key === "kiosk.revoked" ? t("kiosk.revoked_detail") : "";
  $("kiosk").dataset.reason = key;
}

// The kiosk's one site; while the server cannot be reached, it waits and asks again.
export async function startKiosk() {
  document.body.classList.add("kiosk");
  let sites;
  try {
    ({ sites } = await api("/api/sites"));
  } catch (error) {
    if (error.status === 401) return; // shown by api(): kioskRefused
    if (error.status === 403) return kioskRefused("kiosk.forbidden");
    show("kiosk");
    $("kiosk-title").textContent = t("kiosk.waiting");
    $("kiosk-detail").textContent = error.message;
    setTimeout(startKiosk, KIOSK_RETRY_MS);
    return;
  }
  if (!sites.length) return kioskRefused("kiosk.no_site");
  return openSite(sites[0]);
}

// -- signing in, choosing a site ---------------------------------------------------------------

export async function login(event) {
  event.preventDefault();
  const form = event.target;
  $("login-error").textContent = "";
  try {
    const answer = await api("/api/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.username.value, password: form.password.value }),
    });
    sessionStorage.setItem(TOKEN_KEY, answer.access_token);
    form.password.value = "";
    await chooseSite();
  } catch (error) {
    const wait = error.problem?.retry_after_s;
    $("login-error").textContent =
      error.status === 401
        ? t("login.wrong")
        : error.status === 429
          ? t("login.too_many", { wait: wait ? duration(wait) : t("login.a_while") })
          : t("login.failed", { detail: error.message });
  }
}

export function signOut(message = "") {
  if (isKiosk()) return kioskRefused("kiosk.revoked");
  const token = sessionStorage.getItem(TOKEN_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  if (token) {
    // Revoke the token on the server too; the page is signed out either way.
    fetch("/api/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } })
      .catch(() => {});
  }
  wall?.close();
  wall = null;
  show("login");
  $("login-error").textContent = message;
  setStatus("offline");
}

export async function chooseSite() {
  show("sites");
  $("site-name").textContent = "";
  const list = $("site-list");
  list.replaceChildren();
  $("sites-error").textContent = "";
  let sites;
  try {
    ({ sites } = await api("/api/sites"));
  } catch (error) {
    if (error.status !== 401) $("sites-error").textContent = t("sites.cannot_list", { detail: error.message });
    return;
  }
  const remembered = sessionStorage.getItem(SITE_KEY);
  const again = sites.find((s) => s.id === remembered);
  if (again) return openSite(again);
  if (!sites.length) $("sites-error").textContent = t("sites.none");
  for (const site of sites) {
    const button = el("button", { type: "button", "data-site": site.id }, t("sites.choice", { name: site.name, id: site.id }));
    button.addEventListener("click", () => openSite(site));
    list.append(el("li", {}, button));
  }
}

let wall = null;

async function openSite(site) {
  sessionStorage.setItem(SITE_KEY, site.id);
  wall?.close();
  show("wall");
  $("site-name").textContent = site.name;
  const opened = new Wall(site);
  wall = opened;
  try {
    await opened.loadLayers();
  } catch (error) {
    if (error.status !== 401 && !opened.closed) {
      $("wall-error").textContent = t("site.cannot_load", { detail: error.message });
      // A kiosk has nobody to press a button: it tries again by itself.
      if (isKiosk() && error.status === 403) kioskRefused("kiosk.forbidden");
      else if (isKiosk()) setTimeout(() => wall === opened && openSite(site), KIOSK_RETRY_MS);
    }
    return;
  }
  if (wall === opened) opened.connect(); // unless the user left meanwhile
}

// Back to the list of sites (the header's "Sites" button).
export function changeSite() {
  sessionStorage.removeItem(SITE_KEY);
  wall?.close();
  wall = null;
  setStatus("offline");
  chooseSite();
}
