// What the pages of their own share (the alarm analysis, analysis.js; the group wall, group.js):
// the wall's sign-in and language (the same keys in the tab's storage), their words in both
// languages, an element maker and the status line. The map wall has its own (i18n.js, dom.js).

export const TOKEN_KEY = "rallypoint.token";
export const SITE_KEY = "rallypoint.site";
export const LANGUAGE_KEY = "rallypoint.language";

// A message of ``messages`` (key -> {en, "zh-CN"}) in ``language``, its {placeholders} filled.
export function sayIn(messages, language, key, params = {}) {
  const entry = messages[key];
  if (!entry) throw new Error(`no message ${key}`);
  const text = entry[language] ?? entry.en;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

// The language the wall chose (remembered), else the browser's.
export function initialLanguage() {
  try {
    const remembered = localStorage.getItem(LANGUAGE_KEY);
    if (remembered === "en" || remembered === "zh-CN") return remembered;
  } catch {
    // storage refused: the browser's language
  }
  return String(navigator.language || "").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

export function rememberLanguage(language) {
  try {
    localStorage.setItem(LANGUAGE_KEY, language);
  } catch {
    // not remembered: the page still switches
  }
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

export function status(text, error = false) {
  const node = document.getElementById("status");
  node.textContent = text;
  node.classList.toggle("error", error);
}
