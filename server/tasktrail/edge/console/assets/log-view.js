// A task's log as a virtual list: every entry is kept in an array, but only
// the rows on screen (plus a few either side) exist in the DOM, so a log of
// 100,000 lines opens and follows without freezing the tab. Rows have one
// fixed height; a spacer as tall as all of them gives the scrollbar its size.
// Appends and scrolls only schedule a render, once per animation frame.

import { fieldsText, h, utc } from "./format.js";

const ROW_HEIGHT = 20; // px; style.css sizes .log-row from --row-height, set from this
const OVERSCAN = 20;

export class LogView {
  // onChange({total, shown, following}) after each render that changed them.
  constructor({ label, onChange }) {
    this.entries = []; // {id, ts, message, fields, hay}
    this.matches = null; // indexes into entries while a filter is set
    this.filter = "";
    this.following = true;
    this.onChange = onChange;
    this.scheduled = false;
    this.reported = "";

    this.rows = h("div", { class: "log-rows" });
    this.spacer = h("div", { class: "log-spacer" }, this.rows);
    this.empty = h("p", { class: "log-empty" }, "No lines yet.");
    this.viewport = h(
      "div",
      { class: "log-viewport", tabindex: "0", role: "region", "aria-label": label },
      this.spacer,
    );
    this.viewport.style.setProperty("--row-height", `${ROW_HEIGHT}px`);
    this.element = h("div", { class: "log" }, this.viewport, this.empty);

    this.viewport.addEventListener("scroll", () => {
      // Reading at the end follows; scrolling up pauses. Renders alone move
      // the end, and only inside render(), so this sees the reader's doing.
      const v = this.viewport;
      this.following = v.scrollTop + v.clientHeight >= v.scrollHeight - ROW_HEIGHT / 2;
      this.schedule();
    }, { passive: true });
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(this.viewport);
  }

  get total() {
    return this.entries.length;
  }

  get shown() {
    return this.matches ? this.matches.length : this.entries.length;
  }

  append(batch) {
    const start = this.entries.length;
    for (const e of batch) {
      this.entries.push({ id: e.entry_id, ts: e.timestamp || "", message: e.message || "", fields: e.fields, hay: null });
    }
    if (this.matches) {
      for (let i = start; i < this.entries.length; i++) if (this.matches_(this.entries[i])) this.matches.push(i);
    }
    this.schedule();
  }

  setFilter(text) {
    const filter = text.trim().toLowerCase();
    if (filter === this.filter) return;
    this.filter = filter;
    if (!filter) {
      this.matches = null;
    } else {
      const matches = [];
      for (let i = 0; i < this.entries.length; i++) if (this.matches_(this.entries[i])) matches.push(i);
      this.matches = matches;
    }
    this.schedule();
  }

  matches_(entry) {
    if (entry.hay === null) entry.hay = lineOf(entry).toLowerCase();
    return entry.hay.includes(this.filter);
  }

  follow() {
    this.following = true;
    this.schedule();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }

  render() {
    const count = this.shown;
    const v = this.viewport;
    this.spacer.style.height = `${count * ROW_HEIGHT}px`;
    v.style.setProperty("--rows", String(count));
    if (this.following) v.scrollTop = v.scrollHeight;
    // scrollTop may still be past a list that just shrank (a filter): the
    // browser clamps it, and the scroll event that follows renders again.
    const last = Math.min(count, Math.ceil((v.scrollTop + v.clientHeight) / ROW_HEIGHT) + OVERSCAN);
    const first = Math.min(last, Math.max(0, Math.floor(v.scrollTop / ROW_HEIGHT) - OVERSCAN));
    this.rows.style.transform = `translateY(${first * ROW_HEIGHT}px)`;

    // Rows are reused: only their text changes as the window moves.
    const need = last - first;
    while (this.rows.childElementCount < need) this.rows.append(makeRow());
    while (this.rows.childElementCount > need) this.rows.lastElementChild.remove();
    let row = this.rows.firstElementChild;
    for (let i = first; i < last; i++, row = row.nextElementSibling) {
      const entry = this.entries[this.matches ? this.matches[i] : i];
      if (row.dataset.id === entry.id) continue;
      row.dataset.id = entry.id;
      const [ts, message, fields] = row.children;
      ts.textContent = utc(entry.ts);
      ts.dateTime = entry.ts;
      message.textContent = entry.message;
      fields.textContent = fieldsText(entry.fields);
    }

    this.empty.hidden = count > 0;
    this.empty.textContent = this.total ? "No lines match the filter." : "No lines yet.";
    const state = `${this.total}/${count}/${this.following}`;
    if (state !== this.reported) {
      this.reported = state;
      this.onChange({ total: this.total, shown: count, following: this.following });
    }
  }

  // The whole log as text: "timestamp message fields" a line.
  text() {
    return this.entries.map((e) => `${lineOf(e)}\n`).join("");
  }

  // The whole log as NDJSON, one entry a line as the API gives it.
  ndjson() {
    return this.entries
      .map((e) => `${JSON.stringify({ entry_id: e.id, timestamp: e.ts, message: e.message, ...(e.fields ? { fields: e.fields } : {}) })}\n`)
      .join("");
  }

  dispose() {
    this.resize.disconnect();
  }
}

function lineOf(entry) {
  const fields = fieldsText(entry.fields);
  return `${entry.ts} ${entry.message}${fields ? ` ${fields}` : ""}`;
}

function makeRow() {
  return h("div", { class: "log-row" }, h("time", { class: "log-ts" }), " ", h("span", { class: "log-msg" }), " ",
    h("span", { class: "log-fields" }));
}
