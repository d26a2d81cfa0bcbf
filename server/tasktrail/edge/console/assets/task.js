// A task's page at /ui/tasks/<id>: every field, a timeline, progress, error,
// result, parent and children, the cancel action, and the log followed live.
// The task itself is polled every 2 s while the tab is visible and the task
// has not ended, and read again when its log stream ends.

import { cancelTask, followLog, getTask, listTasks } from "./api.js";
import { badge, h, isTerminal, scopeWord, statusWord, taskHref, timeEl } from "./format.js";
import { LogView } from "./log-view.js";

const POLL_MS = 2000;
const CHILDREN_LIMIT = 200;

// Fields shown in "Details", in this order; anything else the API adds is
// listed after them as it comes.
const DETAILS = [
  ["task_id", "Task id", "mono"],
  ["scope", "Scope", (v) => scopeWord(v)],
  ["entity_id", "Entity", "mono"],
  ["type", "Type"],
  ["status", "Status", (v) => badge(v)],
  ["parent_id", "Parent", (v) => h("a", { href: taskHref(v), class: "mono" }, v)],
  ["node_name", "Node"],
  ["instance_id", "Instance", "mono"],
  ["host_id", "Host", "mono"],
  ["worker_name", "Worker"],
  ["lease_expires_at", "Lease expires", (v) => timeEl(v)],
  ["in_commit_phase", "In commit phase", (v) => (v ? "yes" : "no")],
  ["cancel_forced", "Cancel forced", (v) => (v ? "yes" : "no")],
  ["updated_at", "Updated", (v) => timeEl(v)],
  ["expire_at", "Expires", (v) => timeEl(v)],
  ["result_ttl", "Result kept for"],
  ["last_entry_id", "Last log entry", "mono"],
];
const ELSEWHERE = new Set(["created_at", "started_at", "status_changed_at", "completed_at", "progress", "error", "result"]);

function present(value) {
  return !(value === undefined || value === null || value === "" ||
    (typeof value === "object" && Object.keys(value).length === 0));
}

function section(id, title, ...content) {
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...content);
}

function details(task) {
  const dl = h("dl", { class: "fields" });
  const add = (label, value) => dl.append(h("dt", {}, label), h("dd", {}, value));
  const none = () => h("span", { class: "none" }, "—");
  for (const [key, label, show] of DETAILS) {
    const value = task[key];
    if (!present(value) && typeof value !== "boolean") add(label, none());
    else if (typeof show === "function") add(label, show(value));
    else add(label, show === "mono" ? h("span", { class: "mono" }, String(value)) : String(value));
  }
  const known = new Set([...DETAILS.map(([k]) => k), ...ELSEWHERE]);
  for (const [key, value] of Object.entries(task)) {
    if (known.has(key) || !present(value)) continue;
    add(key, typeof value === "object" ? JSON.stringify(value) : String(value));
  }
  return section("details-h", "Details", dl);
}

function timeline(task) {
  const steps = [
    ["Created", task.created_at],
    ["Started", task.started_at],
    [`Status changed to ${statusWord(task.status)}`, task.status_changed_at],
    ["Ended", task.completed_at],
  ];
  return section("timeline-h", "Timeline", h("ol", { class: "timeline" },
    steps.map(([label, at]) => h("li", { class: at ? "done" : "todo" },
      h("span", { class: "step" }, label), " ", at ? timeEl(at) : h("span", { class: "none" }, "not yet")))));
}

function progress(task) {
  const p = task.progress;
  if (!present(p)) {
    return section("progress-h", "Progress", h("p", { class: "none" },
      isTerminal(task) ? "No progress was reported." : "No progress reported yet."));
  }
  const percent = Math.max(0, Math.min(100, Number(p.percent) || 0));
  const targets = p.targets || [];
  return section("progress-h", "Progress",
    h("div", { class: "progress-line" },
      h("progress", { max: "100", ".value": percent, "aria-labelledby": "progress-h" }, `${percent}%`),
      h("span", { class: "percent" }, `${percent}%`)),
    h("p", {}, h("span", { class: "label" }, "Step: "), p.step || h("span", { class: "none" }, "—")),
    targets.length
      ? h("table", { class: "targets" },
        h("caption", {}, "Targets"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Target"), h("th", { scope: "col" }, "Step"))),
        h("tbody", {}, targets.map((t) => h("tr", {}, h("td", {}, t.name || ""), h("td", {}, t.step || "")))))
      : null);
}

function errorSection(task) {
  const e = task.error;
  if (!present(e)) return null;
  return section("error-h", "Error",
    h("dl", { class: "fields" },
      h("dt", {}, "Code"), h("dd", { class: "mono" }, e.code || "—"),
      h("dt", {}, "Message"), h("dd", {}, e.message || "—"),
      e.http_status ? [h("dt", {}, "HTTP status"), h("dd", {}, String(e.http_status))] : null),
    (e.details || []).length
      ? h("ul", { class: "error-details" },
        e.details.map((d) => h("li", {}, h("span", { class: "mono" }, `${d.target || ""} ${d.code || ""}`), " ", d.message || "")))
      : null);
}

function resultSection(task) {
  const r = task.result;
  if (!present(r)) return null;
  const dl = h("dl", { class: "fields" });
  for (const [key, label] of [
    ["resource_id", "Resource id"], ["additional_resource_id", "Additional resource id"],
    ["resource_path", "Resource path"], ["resource_title", "Resource title"], ["additional_info", "Additional info"],
  ]) {
    if (present(r[key])) dl.append(h("dt", {}, label), h("dd", { class: "mono" }, String(r[key])));
  }
  return section("result-h", "Result", dl,
    present(r.resource)
      ? [h("h3", {}, "Resource"), h("pre", { class: "json", tabindex: "0", "aria-label": "Resource as JSON" },
        JSON.stringify(r.resource, null, 2))]
      : null);
}

// The cards of the page, each with what it shows of the task.
const CARDS = [
  [details, (t) => ({ ...t, progress: 0, error: 0, result: 0 })],
  [timeline, (t) => [t.status, t.created_at, t.started_at, t.status_changed_at, t.completed_at]],
  [progress, (t) => [t.progress, isTerminal(t)]],
  [errorSection, (t) => t.error],
  [resultSection, (t) => t.result],
];

export function taskView(main, { taskId }) {
  const controller = new AbortController();
  const signal = controller.signal;
  let task = null;
  let taskSig = "";
  let timer = 0;
  let loop = 0; // bumps when polling restarts, ending the loop before it
  let stopped = false;
  let streaming = false;

  document.title = `Task ${taskId} — tasktrail`;

  const heading = h("h1", { tabindex: "-1" }, "Task");
  const status = h("span", { class: "heading-badge" });
  const answer = h("p", { class: "answer", role: "status" });
  const actions = h("div", { class: "actions" });
  // Each card sits in a slot of its own and is rebuilt only when what it
  // shows changed, so that a poll does not take the focus from a link in another.
  const slots = CARDS.map(() => h("div", { class: "slot" }));
  const cardSigs = CARDS.map(() => "");
  const related = h("section", { class: "card", "aria-labelledby": "related-h" },
    h("h2", { id: "related-h" }, "Related tasks"), h("p", {}, "Loading…"));
  const cards = h("div", { class: "cards" }, slots, related);
  const loading = h("p", { class: "list-state", role: "status" }, "Loading the task…");

  // --- The log. ---
  const logSection = h("section", { class: "log-section", "aria-labelledby": "log-h", "data-count": "0" });
  const count = h("span", { class: "log-count" }, "0 lines");
  const stream = h("span", { class: "log-stream", role: "status" }, "Connecting…");
  const followButton = h("button", { type: "button", class: "follow", hidden: true }, "Jump to end and follow");
  const filter = h("input", {
    id: "log-filter", type: "search", spellcheck: "false", autocomplete: "off", "data-filter": "",
    placeholder: "substring, any case",
  });
  const log = new LogView({
    label: "Log lines",
    onChange: ({ total, shown, following }) => {
      count.textContent = shown === total
        ? `${total.toLocaleString("en")} line${total === 1 ? "" : "s"}`
        : `${shown.toLocaleString("en")} of ${total.toLocaleString("en")} lines`;
      logSection.dataset.count = String(total);
      logSection.dataset.shown = String(shown);
      logSection.dataset.following = String(following);
      followButton.hidden = following;
    },
  });
  let filterTimer = 0;
  filter.addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => log.setFilter(filter.value), 120);
  });
  followButton.addEventListener("click", () => {
    log.follow();
    log.viewport.focus();
  });
  const download = (kind) => {
    const text = kind === "ndjson" ? log.ndjson() : log.text();
    const blob = new Blob([text], { type: kind === "ndjson" ? "application/x-ndjson" : "text/plain" });
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: `task-${taskId}.${kind === "ndjson" ? "ndjson" : "log"}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  };
  logSection.append(
    h("h2", { id: "log-h" }, "Log"),
    h("div", { class: "log-toolbar" },
      h("span", { class: "log-filter" }, h("label", { for: "log-filter" }, "Filter lines"), filter),
      count, stream, followButton,
      h("span", { class: "downloads" },
        h("button", { type: "button", class: "secondary", onclick: () => download("text") }, "Download log"),
        h("button", { type: "button", class: "secondary", onclick: () => download("ndjson") }, "Download NDJSON"))),
    log.element);

  // --- The cancel dialog. ---
  const force = h("input", { type: "checkbox", id: "cancel-force" });
  const forceRow = h("p", { class: "check" }, force,
    h("label", { for: "cancel-force" }, "Force: stop it even in its commit phase"));
  const dialogText = h("p", {});
  const dialog = h("dialog", { class: "confirm", "aria-labelledby": "confirm-h" },
    h("form", { method: "dialog" },
      h("h2", { id: "confirm-h" }, "Cancel this task?"),
      dialogText,
      forceRow,
      h("div", { class: "form-actions" },
        h("button", { value: "confirm", class: "danger" }, "Yes, cancel it"),
        h("button", { value: "keep", class: "secondary", autofocus: true }, "No, keep it"))));
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "confirm") requestCancel(dialog.dataset.forced === "true" || force.checked);
  });

  function askCancel(forced) {
    dialog.dataset.forced = String(forced);
    dialog.returnValue = "";
    // In its commit phase only a forced cancel is taken: offered checked.
    force.checked = Boolean(task.in_commit_phase);
    forceRow.hidden = forced;
    dialog.querySelector("h2").textContent = forced ? "Force the cancel?" : "Cancel this task?";
    dialogText.textContent = forced
      ? "The task is already canceling. A forced cancel stops it even in its commit phase."
      : task.in_commit_phase
        ? "The task is in its commit phase: only a forced cancel stops it now."
        : "The task moves to canceling at once; its worker is told to stop and clean up.";
    dialog.showModal();
  }

  async function requestCancel(forced) {
    answer.textContent = "Asking to cancel…";
    answer.className = "answer";
    try {
      const updated = await cancelTask(taskId, forced, signal);
      const word = statusWord(updated.status);
      // The answer is the task as the server keeps it: a force it did not record is not claimed.
      answer.textContent = forced && !updated.cancel_forced
        ? `The server kept the task as it was: ${word}, the cancel not forced.`
        : `Cancel ${forced ? "forced" : "requested"}: the task is now ${word}.`;
      update(updated);
    } catch (err) {
      if (signal.aborted) return;
      answer.textContent = err.kind === "unreachable"
        ? `The cancel could not be sent: ${err.message}`
        : `The cancel was refused: ${err.code ? `${err.code}: ` : ""}${err.message}`;
      answer.className = "answer answer-error";
      refresh();
    }
  }

  function showActions() {
    const word = statusWord(task.status);
    actions.replaceChildren();
    if (word === "pending" || word === "running") {
      actions.append(h("button", { type: "button", class: "danger", onclick: () => askCancel(false) }, "Cancel task…"));
    } else if (word === "canceling") {
      actions.append(h("button", { type: "button", class: "danger", onclick: () => askCancel(true) }, "Force cancel…"));
    }
  }

  // --- Rendering the task. ---
  function update(next) {
    task = next;
    const sig = JSON.stringify(next);
    if (sig === taskSig) return;
    taskSig = sig;
    loading.remove();
    heading.textContent = `Task ${next.type || ""}`.trim();
    status.replaceChildren(badge(next.status));
    const focusedAction = actions.contains(document.activeElement);
    showActions();
    if (focusedAction) actions.querySelector("button")?.focus();
    CARDS.forEach(([render, sig], i) => {
      const now = JSON.stringify(sig(next));
      if (now === cardSigs[i]) return;
      cardSigs[i] = now;
      const card = render(next);
      slots[i].replaceChildren(...(card ? [card] : []));
    });
    if (!streaming) startFollowing();
  }

  async function refresh() {
    try {
      update(await getTask(taskId, signal));
    } catch (err) {
      if (signal.aborted) return;
      if (err.kind === "not-found" && task) {
        stopped = true; // it expired while on screen: what was read stays
        answer.textContent = "The task is no longer there: it has expired.";
      } else if (err.kind === "not-found") {
        stopped = true;
        main.replaceChildren(
          h("h1", { tabindex: "-1" }, "Task not found"),
          h("p", {}, `No task ${taskId} here: it does not exist, it has expired, or this token may not read it.`),
          h("p", {}, h("a", { href: "/ui/" }, "Back to the tasks")));
      } else if (!task) {
        loading.textContent = `Could not load the task: ${err.message}. Trying again…`;
      }
    }
  }

  async function tick(mine) {
    if (document.visibilityState === "visible" && !(task && isTerminal(task))) await refresh();
    if (!stopped && mine === loop) timer = setTimeout(() => tick(mine), POLL_MS);
  }

  function restart() {
    clearTimeout(timer);
    if (!stopped) tick(++loop);
  }

  function onVisibility() {
    if (document.visibilityState === "visible") restart();
  }

  // --- Parent and children. ---
  async function showRelated() {
    const parent = task.parent_id
      ? h("p", {}, "Parent: ", h("a", { href: taskHref(task.parent_id), class: "mono" }, task.parent_id))
      : h("p", {}, "No parent task.");
    let children;
    try {
      const page = await listTasks({
        scope: task.scope, entityId: task.entity_id, pageSize: CHILDREN_LIMIT,
      }, signal);
      const mine = (page.tasks || []).filter((t) => t.parent_id === taskId);
      children = mine.length
        ? h("ul", { class: "children" }, mine.map((t) => h("li", {},
          h("a", { href: taskHref(t.task_id) }, `${t.type} `, h("span", { class: "mono" }, t.task_id)), " ",
          badge(t.status), " ", timeEl(t.created_at))))
        : h("p", {}, `No child tasks among this ${scopeWord(task.scope)}'s latest ${CHILDREN_LIMIT}.`);
    } catch (err) {
      if (signal.aborted) return;
      children = h("p", {}, `Could not list the child tasks: ${err.message}`);
    }
    related.replaceChildren(h("h2", { id: "related-h" }, "Related tasks"), parent, h("h3", {}, "Children"), children);
  }

  // --- The live log. ---
  function startFollowing() {
    streaming = true;
    showRelated();
    followLog(taskId, {
      signal,
      onEntries: (batch) => log.append(batch),
      onState: (state) => {
        stream.textContent = { connecting: "Connecting…", live: "Following live", reconnecting: "Reconnecting…" }[state];
        logSection.dataset.stream = state;
      },
      onEnd: (end) => {
        stream.textContent = `Ended: ${statusWord(end.task_status)}`;
        logSection.dataset.stream = "ended";
        refresh().then(() => task && showRelated());
      },
      onFatal: (err) => {
        stream.textContent = `Stopped: ${err.message}`;
        logSection.dataset.stream = "failed";
      },
    }).catch((err) => {
      if (signal.aborted) return;
      stream.textContent = `Stopped: ${err.message}`;
      logSection.dataset.stream = "failed";
      throw err; // a bug, not the network (followLog retries that): left uncaught, so that it shows
    });
  }

  main.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" },
      h("a", { href: "/ui/" }, "Tasks"), " / ", h("span", { class: "mono", "aria-current": "page" }, taskId)),
    h("div", { class: "title" }, heading, status),
    loading,
    actions,
    answer,
    cards,
    logSection,
    dialog,
  );
  document.addEventListener("visibilitychange", onVisibility);
  restart();

  return () => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(filterTimer);
    controller.abort();
    log.dispose();
    document.removeEventListener("visibilitychange", onVisibility);
    if (dialog.open) dialog.close();
  };
}

