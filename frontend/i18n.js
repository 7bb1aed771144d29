// The wall's words: one message table, looked up with t(key, params). Each key holds its text in
// every language side by side ({ en: "...", "zh-CN": "..." }), so a translation sits next to the
// English it translates and a missing one is easy to see (and to test for). Only English so far;
// placeholders are {name}, filled from params. The table holds the strings the sign-in, the site
// list and the connection use; the panels' strings move here with the Chinese translation.

export const LANGUAGES = ["en"];
const FALLBACK = "en";

export const MESSAGES = {
  // the connection badge (its data-state is the key's last part)
  "status.offline": { en: "offline" },
  "status.connecting": { en: "connecting" },
  "status.reconnecting": { en: "reconnecting" },
  "status.live": { en: "live" },
  "status.resync": { en: "resync" },
  "status.retry_in": { en: "offline: retry in {seconds} s" },
  // signing in and choosing a site
  "session.ended": { en: "Your session has ended: sign in again." },
  "login.wrong": { en: "Wrong username or password." },
  "login.too_many": { en: "Too many failed sign-ins: try again in {wait}." },
  "login.a_while": { en: "a while" },
  "login.failed": { en: "Sign-in failed: {detail}" },
  "sites.cannot_list": { en: "Cannot list sites: {detail}" },
  "sites.none": { en: "There is no site yet." },
  "sites.choice": { en: "{name} ({id})" },
  "site.cannot_load": { en: "Cannot load the site: {detail}" },
  "wall.role_refused": { en: "Your role may not watch the wall." },
  // talking to the server
  "server.unreachable": { en: "The server could not be reached: {detail}" },
  // durations
  "duration.none": { en: "–" },
  "duration.seconds": { en: "{s} s" },
  "duration.minutes": { en: "{min} min {s} s" },
};

let language = FALLBACK;

// The language the wall speaks now (one of LANGUAGES).
export function setLanguage(code) {
  if (!LANGUAGES.includes(code)) throw new Error(`unknown language ${code}`);
  language = code;
}

export function currentLanguage() {
  return language;
}

// The text for `key` in the current language (English if it has no translation yet), with each
// {name} replaced by params[name]. An unknown key is a bug in the page: it throws.
export function t(key, params = {}) {
  const entry = MESSAGES[key];
  if (!entry) throw new Error(`no message ${key}`);
  const template = entry[language] ?? entry[FALLBACK];
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}
