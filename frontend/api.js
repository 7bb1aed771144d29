// Asking the server: the signed-in user's token on every request, and a refusal as an HttpError
// carrying the server's own words (problem+json, RFC 9457).
import { t } from "./i18n.js";
import { isKiosk, kioskRefused, signOut } from "./session.js";

export const TOKEN_KEY = "rallypoint.token";

// A refused request: its status, and the server's problem+json (`detail`, `errors`) when it sent one.
export class HttpError extends Error {
  constructor(status, detail, problem = null) {
    super(detail);
    this.status = status;
    this.problem = problem;
  }

  get fieldErrors() {
    return Array.isArray(this.problem?.errors) ? this.problem.errors : [];
  }
}

export async function api(path, options = {}) {
  return (await apiResponse(path, options)).body;
}

// The same, with the answer's status and headers besides its body (the layer editor reads the
// server's warnings from a header).
export async function apiResponse(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && path !== "/api/auth/login") {
    if (isKiosk()) kioskRefused("kiosk.revoked");
    else signOut(t("session.ended"));
    throw new HttpError(401, "signed out");
  }
  const body = response.headers.get("content-type")?.includes("json")
    ? await response.json()
    : await response.text();
  if (!response.ok) {
    const problem = body && typeof body === "object" ? body : null;
    throw new HttpError(response.status, problem?.detail || problem?.title || String(body), problem);
  }
  return { body, status: response.status, headers: response.headers };
}

export function send(method, path, body) {
  const options = { method };
  if (body !== undefined) {
    options.headers = { "Content-Type": "application/json" };
    options.body = JSON.stringify(body);
  }
  return api(path, options);
}

// What went wrong, in the server's own words: its `detail`, and each field it names with why.
export function problemText(error) {
  if (!(error instanceof HttpError)) return t("server.unreachable", { detail: error.message });
  const named = error.fieldErrors
    .map((e) => `${e.field}: ${e.reason}`)
    .filter((text) => !error.message.includes(text));
  return named.length ? `${error.message} (${named.join("; ")})` : error.message;
}
