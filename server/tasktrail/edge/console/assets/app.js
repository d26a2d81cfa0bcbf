// The console's shell: client-side routes under /ui/ (history.pushState, so
// the back button works), the sign-in form, and the page-level notices of
// a refused token or an unreachable server. Each view renders into <main> and
// returns a function that stops its timers and requests.

import { getToken, health, setToken } from "./api.js";
import { listView } from "./list.js";
import { taskView } from "./task.js";
import { h } from "./format.js";

const main = document.getElementById("main");
const notice = document.getElementById("notice");
const signIn = document.getElementById("sign-in");
const signedIn = document.getElementById("signed-in");
const tokenInput = document.getElementById("token");

let stopView = () => {};

function render({ focus = false } = {}) {
  stopView();
  main.replaceChildren();
  const path = location.pathname;
  const task = /^\/ui\/tasks\/([^/]+)\/?$/.exec(path);
  const context = { navigate };
  if (path === "/ui/" || path === "/ui" || path === "/ui/index.html") {
    stopView = listView(main, { ...context, search: location.search });
  } else if (task) {
    stopView = taskView(main, { ...context, taskId: decodeURIComponent(task[1]) });
  } else {
    document.title = "Not found — tasktrail";
    main.append(
      h("h1", { tabindex: "-1" }, "Not found"),
      h("p", {}, "The console has no page here. ", h("a", { href: "/ui/" }, "See the tasks.")),
    );
    stopView = () => {};
  }
  // After a navigation, the new page's heading takes the focus, so that a
  // screen reader announces it and the keyboard starts from the top.
  if (focus) main.querySelector("h1")?.focus();
}

function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  window.scrollTo(0, 0);
  render({ focus: true });
}

// Links inside the console navigate without a reload; a modified click
// (new tab, download) is left to the browser.
document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui")) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener("popstate", () => render({ focus: true }));

// "/" focuses the page's filter, unless the reader is typing somewhere.
document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target.closest("input, textarea, select, [contenteditable]") || document.querySelector("dialog[open]")) return;
  const filter = main.querySelector("[data-filter]:not(:disabled)");
  if (!filter) return;
  event.preventDefault();
  filter.focus();
});

// --- Sign-in: the token lives in sessionStorage (this tab), never in a URL. ---

function showAuth() {
  const token = getToken();
  signedIn.hidden = !token;
  // While the token is refused the form stays, so that another can be pasted.
  signIn.hidden = Boolean(token) && health.state !== "refused";
}

signIn.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = tokenInput.value.trim();
  if (!token) return;
  tokenInput.value = "";
  setToken(token);
  showAuth();
  render();
});

document.getElementById("sign-out").addEventListener("click", () => {
  setToken("");
  showAuth();
  render();
  tokenInput.focus();
});

// --- Page-level notices. ---

function showNotice() {
  const { state, message } = health;
  let text = "";
  if (state === "unreachable") {
    text = `The server cannot be reached (${message}). The console keeps trying every 2 seconds.`;
  } else if (state === "refused" && getToken()) {
    text = `The token was refused: ${message}. Paste another token, or sign out to see what anyone may see.`;
  } else if (state === "refused") {
    text = `This server asks for a token: ${message}. Paste a reader token to sign in.`;
  }
  notice.textContent = text;
  notice.hidden = !text;
  notice.className = `notice notice-${state}`;
  showAuth();
}

health.addEventListener("change", showNotice);

showAuth();
render();
