// The console's side of the REST face of the native API (/api/v1 on this
// origin): JSON requests with the reader token, errors as ApiError, the
// connection's health for the page-level notices, and a live log follow read
// from Server-Sent Events with fetch() so that it can carry the token.

import { SseParser } from "./sse.js";

const TOKEN_KEY = "tasktrail.token";
const BASE = "/api/v1/tasks";

const GRPC_CODES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
  "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
];

export class ApiError extends Error {
  // kind: "unreachable" (no answer, or the proxy found no server), "refused"
  // (401: the token is missing or refused), "not-found", or "failed".
  constructor(kind, status, code, message) {
    super(message);
    this.name = "ApiError";
    this.kind = kind;
    this.status = status;
    this.code = code;
  }
}

// --- The token: this tab only (sessionStorage), never in a URL. ---

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  health.reset();
}

function authorization() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// --- The connection's health: "ok", "unreachable" or "refused", as last seen. ---

class Health extends EventTarget {
  constructor() {
    super();
    this.state = "ok";
    this.message = "";
  }

  report(state, message = "") {
    if (state === this.state && message === this.message) return;
    this.state = state;
    this.message = message;
    this.dispatchEvent(new Event("change"));
  }

  reset() {
    this.report("ok");
  }
}

export const health = new Health();

function codeName(code) {
  if (typeof code === "number") return GRPC_CODES[code] || String(code);
  return typeof code === "string" && code ? code : "UNKNOWN";
}

// An ApiError for an answer that is not 2xx, reporting the health it shows.
function failure(status, body) {
  const code = codeName(body && body.code);
  const message = (body && typeof body.message === "string" && body.message) || `HTTP ${status}`;
  if (status === 502 || status === 503 || status === 504) {
    health.report("unreachable", message);
    return new ApiError("unreachable", status, code, message);
  }
  if (status === 401) {
    health.report("refused", message);
    return new ApiError("refused", status, code, message);
  }
  health.report("ok");
  return new ApiError(status === 404 ? "not-found" : "failed", status, code, message);
}

function unreachable(err) {
  const message = (err && err.message) || "no answer";
  health.report("unreachable", message);
  return new ApiError("unreachable", 0, "UNAVAILABLE", message);
}

async function readJson(reply) {
  const text = await reply.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { message: text.slice(0, 200) };
  }
}

async function request(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json", ...authorization() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let reply;
  let payload;
  try {
    reply = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
    payload = await readJson(reply);
  } catch (err) {
    if (signal && signal.aborted) throw err;
    throw unreachable(err);
  }
  if (!reply.ok) throw failure(reply.status, payload);
  health.report("ok");
  return payload || {};
}

// --- The API's calls. ---

// filters: {scope, entityId, statuses: [], types: [], pageSize, pageToken}, in the API's enum names.
export function listTasks(filters, signal) {
  const q = new URLSearchParams();
  if (filters.scope) q.set("scope", filters.scope);
  if (filters.scope && filters.entityId) q.set("entity_id", filters.entityId);
  for (const s of filters.statuses || []) q.append("statuses", s);
  for (const t of filters.types || []) q.append("types", t);
  q.set("sort_order", "SORT_ORDER_DESCENDING");
  if (filters.pageSize) q.set("page_size", String(filters.pageSize));
  if (filters.pageToken) q.set("page_token", filters.pageToken);
  return request(`${BASE}?${q}`, { signal });
}

export async function getTask(taskId, signal) {
  return (await request(`${BASE}/${encodeURIComponent(taskId)}`, { signal })).task;
}

export async function cancelTask(taskId, force, signal) {
  const path = `${BASE}/${encodeURIComponent(taskId)}/cancel`;
  return (await request(path, { method: "POST", body: { force }, signal })).task;
}

// --- The live log. ---

const FATAL = new Set(["NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_ARGUMENT"]);

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

// Follows a task's log from after `after` until the task has ended, through
// dropped connections: each reconnect sends the last entry id seen as
// Last-Event-ID, so the server continues exactly after it; entries not newer
// than it are dropped all the same (ids increase), so none shows twice.
// Callbacks: onEntries(array of entries, a chunk's worth at a time), onState(
// "connecting" | "live" | "reconnecting"), onEnd({task_status, last_entry_id}),
// onFatal(ApiError). Resolves when it ends, fails for good, or `signal` aborts.
export async function followLog(taskId, { after = "", signal, onEntries, onState, onEnd, onFatal }) {
  const url = `${BASE}/${encodeURIComponent(taskId)}/log/stream`;
  let last = after;
  let retry = 1500;
  onState("connecting");
  while (!signal.aborted) {
    try {
      const headers = { Accept: "text/event-stream", ...authorization() };
      if (last) headers["Last-Event-ID"] = last;
      let reply;
      try {
        reply = await fetch(url, { headers, signal, cache: "no-store" });
      } catch (err) {
        if (signal.aborted) return;
        throw unreachable(err);
      }
      if (!reply.ok) {
        const err = failure(reply.status, await readJson(reply).catch(() => null));
        if (err.kind !== "unreachable") {
          onFatal(err);
          return;
        }
        throw err;
      }
      health.report("ok");
      onState("live");
      const parser = new SseParser();
      const decoder = new TextDecoder();
      const reader = reply.body.getReader();
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (signal.aborted) return;
          break; // the connection dropped: reconnect
        }
        if (chunk.done) break;
        const batch = [];
        let ended = null;
        for (const event of parser.push(decoder.decode(chunk.value, { stream: true }))) {
          if (event.event === "entry") {
            const entry = JSON.parse(event.data);
            const id = event.id || entry.entry_id;
            if (id > last) {
              last = id;
              batch.push(entry);
            }
          } else if (event.event === "end") {
            ended = JSON.parse(event.data).end || {};
          } else if (event.event === "error") {
            const error = JSON.parse(event.data).error || {};
            if (FATAL.has(error.code)) {
              if (batch.length) onEntries(batch);
              onFatal(new ApiError(error.code === "NOT_FOUND" ? "not-found" : "failed", 0, error.code, error.message));
              return;
            }
          } // heartbeats only keep the connection busy
        }
        if (parser.retry !== null) retry = Math.min(Math.max(parser.retry, 1000), 2000);
        if (batch.length) onEntries(batch);
        if (ended) {
          reader.cancel().catch(() => {});
          onEnd(ended);
          return;
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      if (!(err instanceof ApiError)) throw err;
    }
    if (signal.aborted) return;
    onState("reconnecting");
    await sleep(retry, signal);
  }
}
