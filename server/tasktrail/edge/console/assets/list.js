// The task list at /ui/: filters kept in the URL's query (so a view can be
// shared), newest first, keyset pages ("Load more"), and the first page polled
// every 2 s while the tab is visible, so new tasks and status changes appear.

import { listTasks } from "./api.js";
import {
  SCOPES, STATUSES, badge, h, scopeEnum, scopeWord, statusEnum, taskHref, timeEl, timeKey,
} from "./format.js";

const PAGE_SIZE = 50;
const POLL_MS = 2000;

// ?scope=database&entity=example&status=running,failed&type=create (a
// repeated status= or type= works as well).
export function parseQuery(search) {
  const q = new URLSearchParams(search);
  const many = (name) => q.getAll(name).flatMap((v) => v.split(",")).map((v) => v.trim()).filter(Boolean);
  const scope = SCOPES.includes(q.get("scope")) ? q.get("scope") : "";
  return {
    scope,
    entity: scope ? (q.get("entity") || "").trim() : "",
    statuses: STATUSES.filter((s) => many("status").includes(s)),
    types: many("type"),
  };
}

export function toQuery(filters) {
  const q = new URLSearchParams();
  if (filters.scope) q.set("scope", filters.scope);
  if (filters.scope && filters.entity) q.set("entity", filters.entity);
  if (filters.statuses.length) q.set("status", filters.statuses.join(","));
  if (filters.types.length) q.set("type", filters.types.join(","));
  const text = q.toString();
  return text ? `?${text}` : "";
}

function apiFilters(filters) {
  return {
    scope: filters.scope ? scopeEnum(filters.scope) : "",
    entityId: filters.entity,
    statuses: filters.statuses.map(statusEnum),
    types: filters.types,
    pageSize: PAGE_SIZE,
  };
}

// Newest first, as the API orders: by (created_at, task_id), descending.
function sortKey(task) {
  return `${timeKey(task.created_at)} ${task.task_id}`;
}

export function listView(main, { search }) {
  let filters = parseQuery(search);
  let tasks = new Map(); // task_id -> task, every task loaded
  let moreToken = "";
  let loaded = false;
  let generation = 0; // bumps when the filters change: older answers are dropped
  let controller = new AbortController();
  let queue = Promise.resolve(); // polls and "Load more" one at a time
  let timer = 0;
  let loop = 0; // bumps on a restart, ending the previous polling loop
  let stopped = false;

  document.title = "Tasks — tasktrail";

  // --- The form. ---
  const scope = h("select", { id: "f-scope", name: "scope" },
    h("option", { value: "" }, "Every scope"),
    SCOPES.map((s) => h("option", { value: s }, s)));
  const entity = h("input", {
    id: "f-entity", name: "entity", type: "text", spellcheck: "false", autocomplete: "off",
    "aria-describedby": "f-entity-hint", "data-filter": "",
  });
  const type = h("input", {
    id: "f-type", name: "type", type: "text", spellcheck: "false", autocomplete: "off",
    "aria-describedby": "f-type-hint", "data-filter": "",
  });
  const boxes = STATUSES.map((s) => h("input", { type: "checkbox", name: "status", value: s, id: `f-status-${s}` }));
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter tasks" },
    h("div", { class: "field" }, h("label", { for: "f-scope" }, "Scope"), scope),
    h("div", { class: "field" },
      h("label", { for: "f-entity" }, "Entity"), entity,
      h("small", { id: "f-entity-hint", class: "hint" }, "A database, host, account or CRDB id; pick a scope first")),
    h("div", { class: "field" },
      h("label", { for: "f-type" }, "Type"), type,
      h("small", { id: "f-type-hint", class: "hint" }, "e.g. create; several with commas")),
    h("fieldset", { class: "statuses" }, h("legend", {}, "Status"),
      STATUSES.map((s, i) => h("span", { class: "check" }, boxes[i], h("label", { for: boxes[i].id }, s)))),
    h("div", { class: "form-actions" },
      h("button", { type: "submit" }, "Apply"),
      h("button", { type: "button", class: "secondary", onclick: () => setFilters(parseQuery("")) }, "Clear")));

  function fillForm() {
    scope.value = filters.scope;
    entity.value = filters.entity;
    entity.disabled = !filters.scope;
    type.value = filters.types.join(", ");
    boxes.forEach((box) => { box.checked = filters.statuses.includes(box.value); });
  }

  function readForm() {
    return {
      scope: scope.value,
      entity: scope.value ? entity.value.trim() : "",
      statuses: boxes.filter((b) => b.checked).map((b) => b.value),
      types: type.value.split(",").map((t) => t.trim()).filter(Boolean),
    };
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setFilters(readForm());
  });
  // Choices apply at once; typed text when it is committed (Enter, or leaving the field).
  form.addEventListener("change", () => setFilters(readForm()));

  // --- The table. ---
  const state = h("p", { class: "list-state", role: "status" }, "Loading tasks…");
  const body = h("tbody");
  const table = h("table", { class: "tasks" },
    h("caption", { class: "visually-hidden" }, "Tasks, newest first"),
    h("thead", {}, h("tr", {},
      ["Task", "Type", "Status", "Scope", "Entity", "Created (UTC)", "Ended (UTC)"].map((c) => h("th", { scope: "col" }, c)))),
    body);
  const more = h("button", { type: "button", class: "more", hidden: true, onclick: () => loadMore() }, "Load more");

  main.append(
    h("h1", { tabindex: "-1" }, "Tasks"),
    form,
    state,
    h("div", { class: "table-wrap" }, table),
    more,
  );
  fillForm();

  const rows = new Map(); // task_id -> {tr, sig}

  function row(task) {
    const sig = `${task.status}|${task.updated_at}|${task.completed_at}`;
    const entry = rows.get(task.task_id);
    if (entry && entry.sig === sig) return entry.tr;
    const tr = h("tr", { "data-task-id": task.task_id, "data-status": task.status },
      h("td", { class: "mono" }, h("a", { href: taskHref(task.task_id) }, task.task_id)),
      h("td", {}, task.type || ""),
      h("td", {}, badge(task.status)),
      h("td", {}, scopeWord(task.scope)),
      h("td", { class: "mono" }, task.entity_id || ""),
      h("td", {}, timeEl(task.created_at)),
      h("td", {}, timeEl(task.completed_at)));
    if (entry) {
      // In place, keeping the reader's focus if it is on this row's link.
      const hadFocus = entry.tr.contains(document.activeElement);
      entry.tr.replaceWith(tr);
      if (hadFocus) tr.querySelector("a").focus();
    }
    rows.set(task.task_id, { tr, sig });
    return tr;
  }

  function show() {
    const ordered = [...tasks.values()].sort((a, b) => (sortKey(a) < sortKey(b) ? 1 : -1));
    const keep = new Set(ordered.map((t) => t.task_id));
    for (const [id, entry] of rows) {
      if (!keep.has(id)) {
        entry.tr.remove();
        rows.delete(id);
      }
    }
    let at = body.firstElementChild;
    for (const task of ordered) {
      const tr = row(task);
      if (tr !== at) body.insertBefore(tr, at);
      else at = at.nextElementSibling;
    }
    more.hidden = !moreToken;
    const n = ordered.length;
    state.textContent = n === 0
      ? "No tasks match these filters."
      : `Showing ${n} task${n === 1 ? "" : "s"}, newest first${moreToken ? "; more are older" : ""}.`;
    table.hidden = n === 0;
  }

  // The first page is the truth for the tasks it covers (those not older than
  // its last one); tasks older than that, from "Load more", are kept.
  function mergeFirstPage(page) {
    const fresh = page.tasks || [];
    const next = new Map();
    if (page.next_page_token && fresh.length) {
      const edge = sortKey(fresh[fresh.length - 1]);
      let older = false;
      for (const [id, task] of tasks) {
        if (sortKey(task) < edge) {
          next.set(id, task);
          older = true;
        }
      }
      if (!older) moreToken = page.next_page_token;
    } else {
      moreToken = "";
    }
    for (const task of fresh) next.set(task.task_id, task);
    tasks = next;
  }

  function run(job) {
    const mine = generation;
    queue = queue.then(() => (mine === generation && !stopped ? job(mine) : undefined)).catch((err) => {
      if (controller.signal.aborted || mine !== generation) return;
      // The page-level notice tells of a refused token or an absent server.
      state.textContent = loaded ? `Could not refresh the list: ${err.message}` : `Could not list tasks: ${err.message}`;
    });
    return queue;
  }

  function poll() {
    return run(async (mine) => {
      const page = await listTasks(apiFilters(filters), controller.signal);
      if (mine !== generation) return;
      mergeFirstPage(page);
      loaded = true;
      show();
    });
  }

  function loadMore() {
    more.disabled = true;
    run(async (mine) => {
      const page = await listTasks({ ...apiFilters(filters), pageToken: moreToken }, controller.signal);
      if (mine !== generation) return;
      for (const task of page.tasks || []) tasks.set(task.task_id, task);
      moreToken = page.next_page_token || "";
      show();
    }).finally(() => { more.disabled = false; });
  }

  function setFilters(next) {
    const query = toQuery(next);
    filters = parseQuery(query);
    fillForm();
    if (`/ui/${query}` === location.pathname + location.search && loaded) return;
    // The filters are part of the address: replaced, so that the back button
    // leaves the list rather than stepping through every checkbox.
    history.replaceState(null, "", `/ui/${query}`);
    generation++;
    controller.abort();
    controller = new AbortController();
    tasks = new Map();
    moreToken = "";
    loaded = false;
    state.textContent = "Loading tasks…";
    restart();
  }

  async function tick(mine) {
    if (document.visibilityState === "visible") await poll();
    if (!stopped && mine === loop) timer = setTimeout(() => tick(mine), POLL_MS);
  }

  function restart() {
    clearTimeout(timer);
    tick(++loop);
  }

  function onVisibility() {
    if (document.visibilityState === "visible") restart();
  }
  document.addEventListener("visibilitychange", onVisibility);
  restart();

  return () => {
    stopped = true;
    clearTimeout(timer);
    controller.abort();
    document.removeEventListener("visibilitychange", onVisibility);
  };
}
