// A Server-Sent Events parser for text read from a fetch() body. EventSource
// cannot send an Authorization header, so the console reads the stream itself.
// It follows the WHATWG event-stream rules: lines end in CRLF, LF or CR; a blank
// line dispatches; "data" lines join with "\n"; lines starting with ":" are
// comments; "id" sets the last event id (kept across events); "retry" sets the
// reconnection delay.

export class SseParser {
  constructor() {
    this.buffer = "";
    this.event = "";
    this.data = [];
    this.hasData = false;
    this.lastEventId = "";
    this.retry = null;
    // A chunk may end between the CR and LF of one CRLF.
    this.pendingCR = false;
  }

  // Feeds decoded text; returns the events it completed, as {event, data, id}.
  push(text) {
    const out = [];
    let input = this.buffer + text;
    if (this.pendingCR && input.startsWith("\n")) input = input.slice(1);
    this.pendingCR = false;
    let start = 0;
    for (let i = 0; i < input.length; i++) {
      const c = input.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(input.slice(start, i), out);
      if (c === 13) {
        if (i + 1 === input.length) this.pendingCR = true;
        else if (input.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.buffer = input.slice(start);
    return out;
  }

  line(line, out) {
    if (line === "") {
      if (this.hasData) {
        out.push({ event: this.event || "message", data: this.data.join("\n"), id: this.lastEventId });
      }
      this.event = "";
      this.data = [];
      this.hasData = false;
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case "event":
        this.event = value;
        break;
      case "data":
        this.data.push(value);
        this.hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) this.lastEventId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default: // unknown fields are ignored, as the standard says
    }
  }
}
