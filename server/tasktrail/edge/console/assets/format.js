// Words, times and DOM building shared by the views. Every piece of data goes
// into the page as text (textContent), never as markup.

export const STATUSES = ["pending", "running", "canceling", "completed", "failed", "canceled"];
export const SCOPES = ["database", "host", "account", "crdb"];
const TERMINAL = new Set(["completed", "failed", "canceled"]);

// TASK_STATUS_RUNNING -> "running"; the dialect-neutral word for a status.
export function statusWord(status) {
  return String(status || "").replace(/^TASK_STATUS_/, "").toLowerCase() || "unknown";
}

export function statusEnum(word) {
  return `TASK_STATUS_${word.toUpperCase()}`;
}

export function scopeWord(scope) {
  return String(scope || "").replace(/^SCOPE_/, "").toLowerCase() || "unknown";
}

export function scopeEnum(word) {
  return `SCOPE_${word.toUpperCase()}`;
}

export function isTerminal(task) {
  return TERMINAL.has(statusWord(task.status));
}

// "2025-06-18T17:54:30.123456Z" -> "2025-06-18 17:54:30.123Z": UTC, to the
// millisecond, from the string itself (no Date: it is cheap for 100,000 lines).
export function utc(timestamp) {
  if (!timestamp) return "";
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(timestamp);
  if (!m) return timestamp;
  const ms = (m[3] || "").padEnd(3, "0").slice(0, 3);
  if (m[4] !== "Z") return new Date(timestamp).toISOString().replace("T", " ");
  return `${m[1]} ${m[2]}.${ms}Z`;
}

// A sortable key of a timestamp: its fraction padded to nanoseconds.
export function timeKey(timestamp) {
  const m = /^([^.Z]+)(?:\.(\d+))?Z$/.exec(timestamp || "");
  return m ? `${m[1]}.${(m[2] || "").padEnd(9, "0")}` : String(timestamp || "");
}

// A log entry's fields as the CLI prints them: key=value, strings bare.
export function fieldsText(fields) {
  if (!fields) return "";
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
}

// h("a", {href: "/ui/", class: "x"}, "text", child…): an element; strings
// become text nodes, null/false children are skipped, attributes go through
// setAttribute (never "style": the CSP refuses inline styles) and properties
// set with a leading "." (h("input", {".value": v})).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith(".")) el[name.slice(1)] = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function badge(status) {
  const word = statusWord(status);
  return h("span", { class: `badge badge-${word}` }, word);
}

export function timeEl(timestamp) {
  return timestamp ? h("time", { datetime: timestamp }, utc(timestamp)) : h("span", { class: "none" }, "—");
}

export function taskHref(taskId) {
  return `/ui/tasks/${encodeURIComponent(taskId)}`;
}
