// The phone's outbox (docs/offline.md, "The responder's phone"): every action the responder takes
// (a step moved, a note, a photo, a call-out answered) is first kept in IndexedDB, in order,
// with a UUIDv7 made here and the time the responder acted, then sent. Sending goes one action at
// a time, oldest first, and stops at the first one the network or the server cannot take now
// (no network, 408, 429, 5xx): the rest wait behind it, so the server receives them in the order
// they were taken. Each request carries `Idempotency-Key: <uuidv7>` and
// `Rallypoint-Acted-At: <RFC 3339>`: a retry of one the server took already is answered with
// the first answer, and logs nothing twice.
//
// An action ends in one of these states:
//   pending   kept, not yet taken by the server (also while it is being sent);
//   sent      the server took it (or had taken it already: `Idempotent-Replayed: true`);
//   conflict  409: it became impossible meanwhile (`by` and `at` name who did it and when);
//   refused   another 4xx: final, with the server's words.
// 409 `idempotency-key-in-use` (the same key still being processed) is retried, as a 5xx is.
// Nothing here touches the page: phone.js draws the outbox from list().

const DB_NAME = "rallypoint-phone";
const STORE = "actions";
const RETRYABLE = new Set([408, 429]);

// -- UUIDv7 (RFC 9562, section 5.7): 48 bits of Unix milliseconds, the version, 12 bits that
// count up within one millisecond (method 1 of section 6.2), the variant, 62 random bits. Ids
// made on one phone sort in the order they were made.
let lastMs = -1;
let counter = 0;

export function uuidv7(now = Date.now()) {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  let ms = Math.max(now, lastMs);
  if (ms === lastMs) {
    counter += 1;
    if (counter > 0xfff) {
      ms += 1; // the counter ran out: borrow the next millisecond
      counter = bytes[6] & 0x07;
    }
  } else {
    counter = ((bytes[6] & 0x07) << 8) | bytes[7]; // random start, room to count up
  }
  lastMs = ms;
  for (let i = 5; i >= 0; i -= 1) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes[6] = 0x70 | (counter >> 8);
  bytes[7] = counter & 0xff;
  bytes[8] = 0x80 | (bytes[8] & 0x3f);
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// -- IndexedDB -----------------------------------------------------------------------------------

let opened = null;

function database() {
  if (!opened) {
    opened = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = () => {
        const store = request.result.createObjectStore(STORE, { keyPath: "n", autoIncrement: true });
        store.createIndex("id", "id", { unique: true });
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }
  return opened;
}

async function transact(mode, work) {
  const db = await database();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    let result;
    Promise.resolve(work(tx.objectStore(STORE))).then((value) => {
      result = value;
    }, reject);
    tx.oncomplete = () => resolve(result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

const asPromise = (request) =>
  new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });

// Keep an action: {user, method, path, body (a string), contentType, kind, about}.
// Returns the kept record (with its id, acted_at and state "pending").
export async function enqueue(action) {
  const record = { ...action, id: uuidv7(), acted_at: new Date().toISOString(), state: "pending" };
  record.n = await transact("readwrite", (store) => asPromise(store.add(record)));
  return record;
}

// Every kept action, oldest first.
export async function list() {
  return transact("readonly", (store) => asPromise(store.getAll()));
}

async function put(record) {
  return transact("readwrite", (store) => asPromise(store.put(record)));
}

// Forget the finished actions older than `keepMs` (the pending ones are always kept).
export async function prune(keepMs = 24 * 3600 * 1000) {
  const cutoff = Date.now() - keepMs;
  const old = (await list()).filter((r) => r.state !== "pending" && Date.parse(r.acted_at) < cutoff);
  await transact("readwrite", (store) => Promise.all(old.map((r) => asPromise(store.delete(r.n)))));
}

// Forget everything (signing out).
export async function clear() {
  await transact("readwrite", (store) => asPromise(store.clear()));
}

// -- sending ---------------------------------------------------------------------------------------

let sending = null;

// Send the pending actions of `user`, in order, one at a time; resolves to why it stopped:
// {stopped: "empty"} all sent, "network" / "server" (try again later, `status` for the
// latter), "signin" (401: the token no longer serves). `onChange(record)` follows each answer.
// Calls made while a flush runs share it.
export function flush(options) {
  if (!sending) sending = run(options).finally(() => (sending = null));
  return sending;
}

async function run({ user, token, onChange = () => {} }) {
  for (;;) {
    const next = (await list()).find((r) => r.state === "pending" && r.user === user);
    if (!next) return { stopped: "empty" };
    const headers = {
      Accept: "application/json",
      Authorization: `Bearer ${token()}`,
      "Idempotency-Key": next.id,
      "Rallypoint-Acted-At": next.acted_at,
    };
    if (next.contentType) headers["Content-Type"] = next.contentType;
    let response;
    try {
      response = await fetch(next.path, { method: next.method, headers, body: next.body ?? undefined, cache: "no-store" });
    } catch {
      return { stopped: "network" };
    }
    if (response.status === 401) return { stopped: "signin" };
    if (response.status >= 500 || RETRYABLE.has(response.status)) return { stopped: "server", status: response.status };
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      // an answer without a JSON body: its status says it all
    }
    // The same key still being processed (a send whose answer was lost, still running): later.
    if (response.status === 409 && String(answer?.type || "").endsWith("idempotency-key-in-use")) {
      return { stopped: "server", status: 409 };
    }
    const done = { ...next, status: response.status, answered_at: new Date().toISOString() };
    if (response.ok) {
      Object.assign(done, { state: "sent", replayed: response.headers.get("Idempotent-Replayed") === "true" });
    } else if (response.status === 409) {
      Object.assign(done, { state: "conflict", detail: answer?.detail || "", by: answer?.by ?? null, at: answer?.at ?? null });
    } else {
      Object.assign(done, { state: "refused", detail: answer?.detail || String(response.status) });
    }
    await put(done);
    onChange(done);
  }
}
