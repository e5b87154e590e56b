// cblogs web page: search with a histogram, live tail, job browser.
//
// The whole view lives in the URL's query string (view, job, q, i, stream,
// instance, process, range or since/until), so reload and links reproduce
// it. Everything comes from cblogsd's read API (crates/core/src/api.rs):
// - a search streams /api/v1/search (NDJSON, read with fetch and a stream
//   reader, rendered as it arrives, 500 events a page, "More" continues
//   from the summary's next_cursor) beside /api/v1/histogram (stdout and stderr
//   stacked; drag to zoom into since/until);
// - whole events: a search asks for events=true, so a match comes with the
//   event it is in (a log record and its stack trace); an event of several
//   lines is one block, folded to its first and matching lines, opened by
//   its toggle. In the live tail, a line marked `continues` goes into its
//   source's last block, which stays open (dashed) until that source's
//   next event begins;
// - a click on a result asks /api/v1/context for the lines around it;
// - the live tail is an EventSource on /api/v1/follow, checked first with
//   /api/v1/tail?n=0 so that an unknown job gets its error in words;
// - the job browser polls /api/v1/jobs every 5 s and shows the line rate
//   between polls.
// In a cluster an answer names in `partial` the nodes that did not answer
// (lines they hold unpublished are missing): each view says so under its
// results, and the live tail in a note where the follow lost the node.
// When a request is answered 401, the page asks for a read token once and
// trades it for an HttpOnly, SameSite=Strict cookie (POST /api/v1/session),
// which the EventSource (no headers) then carries too. Prefix colours use
// the CLI's FNV-1a hash over job, instance and process, so a task has the
// same colour in both.
"use strict";

const $ = (sel) => document.querySelector(sel);
const RANGES = { "15m": 15 * 60, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400 };
const PAGE_EVENTS = 500;
const TAIL_BACKLOG = 200;
const TAIL_MAX_LINES = 5000;
const CONTEXT_LINES = 10;

// ---------------------------------------------------------------- state & URL

/** The view as the URL says it. */
function readState() {
  const p = new URLSearchParams(location.search);
  return {
    view: p.get("view") || "search",
    job: p.get("job") || "",
    q: p.get("q") || "",
    i: p.get("i") === "1",
    stream: p.get("stream") || "",
    instance: p.get("instance") || "",
    process: p.get("process") || "",
    range: p.get("since") ? "custom" : (p.get("range") || "1h"),
    since: p.get("since") || "",
    until: p.get("until") || "",
  };
}

function writeState(s, push) {
  const p = new URLSearchParams();
  if (s.view !== "search") p.set("view", s.view);
  for (const k of ["job", "q", "stream", "instance", "process"]) if (s[k]) p.set(k, s[k]);
  if (s.i) p.set("i", "1");
  if (s.range === "custom") {
    if (s.since) p.set("since", s.since);
    if (s.until) p.set("until", s.until);
  } else if (s.range !== "1h") {
    p.set("range", s.range);
  }
  const url = p.toString() ? `?${p}` : location.pathname;
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
}

function fillForm(s) {
  $("#job").value = s.job;
  $("#pattern").value = s.q;
  $("#ignore-case").checked = s.i;
  $("#stream").value = s.stream;
  $("#instance").value = s.instance;
  $("#process").value = s.process;
  $("#range").value = s.range;
  $("#since").value = s.since;
  $("#until").value = s.until;
  showCustomRange();
}

function formState(view) {
  return {
    view,
    job: $("#job").value.trim(),
    q: $("#pattern").value,
    i: $("#ignore-case").checked,
    stream: $("#stream").value,
    instance: $("#instance").value.trim(),
    process: $("#process").value.trim(),
    range: $("#range").value,
    since: $("#since").value.trim(),
    until: $("#until").value.trim(),
  };
}

function showCustomRange() {
  const custom = $("#range").value === "custom";
  $("#since").hidden = !custom;
  $("#until").hidden = !custom;
}

/** Nanoseconds since the epoch, as a decimal string (too big for a Number). */
function nsOf(ms) {
  return (BigInt(Math.round(ms)) * 1000000n).toString();
}

/** [since_ns, until_ns] of the state's time range; strings, or throws in words. */
function timeRange(s) {
  if (s.range !== "custom") {
    const now = Date.now();
    return [nsOf(now - RANGES[s.range] * 1000), nsOf(now + 1000)];
  }
  const since = s.since ? Date.parse(s.since) : NaN;
  const until = s.until ? Date.parse(s.until) : Date.now() + 1000;
  if (Number.isNaN(since)) throw new Error(`'${s.since}' is not a time (use RFC 3339, e.g. 2026-11-25T14:00:00Z)`);
  if (Number.isNaN(until)) throw new Error(`'${s.until}' is not a time (use RFC 3339)`);
  return [nsOf(since), nsOf(until)];
}

/** The read API's selection parameters for a state. */
function selection(s) {
  const p = new URLSearchParams();
  if (s.job) p.append("job", s.job);
  if (s.stream) p.set("stream", s.stream);
  if (s.instance) p.set("instance", s.instance);
  if (s.process) p.set("process", s.process);
  return p;
}

// ---------------------------------------------------------------- auth

// A cblogsd with read tokens answers 401 until the page has one: ask for it
// once, trade it for an HttpOnly cookie (POST /api/v1/session), and reload.
// The cookie also lets in the live tail, whose EventSource cannot send headers.
const rawFetch = window.fetch.bind(window);
window.fetch = async (...args) => {
  const resp = await rawFetch(...args);
  if (resp.status === 401) showLogin();
  return resp;
};

function showLogin() {
  const form = $("#login");
  if (!form.hidden) return;
  form.hidden = false;
  $("#token").focus();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = $("#token").value.trim();
    const resp = await rawFetch("/api/v1/session", {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
    }).catch((e) => ({ ok: false, error: e }));
    if (resp.ok) { location.reload(); return; }
    $("#login-error").textContent = resp.error ? `cannot reach cblogsd: ${resp.error.message}` : await apiError(resp);
  });
});

// ---------------------------------------------------------------- errors

/**
 * In a cluster, the nodes an answer names in `partial` (they did not
 * answer, so lines they hold unpublished are missing), in words; "" when
 * every node answered. Shown in the element `id` (hidden when "").
 */
function showPartial(id, partial) {
  const e = $(id);
  const nodes = (partial || []).map(nodeText);
  e.textContent = nodes.length ? `partial answer: no answer from ${nodes.join("; ")}` : "";
  e.hidden = !nodes.length;
}

/** A node that did not answer, in words: its id, where, and why. */
function nodeText(n) {
  const where = n.url && n.url !== n.node_id ? ` at ${n.url}` : "";
  // The reason often starts with the URL again.
  const why = n.error.startsWith(`${n.url}: `) ? n.error.slice(n.url.length + 2) : n.error;
  return `node ${n.node_id}${where} (${why})`;
}

/** The search view's nodes that did not answer, the search's and the histogram's, by id. */
let searchPartial = new Map();
function addSearchPartial(partial) {
  for (const n of partial || []) searchPartial.set(n.node_id, n);
  showPartial("#search-partial", [...searchPartial.values()]);
}

function showError(msg) {
  const e = $("#error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

/** The JSON error of a failed answer, in words. */
async function apiError(resp) {
  try {
    const body = await resp.json();
    let msg = body.error || `${resp.status} ${resp.statusText}`;
    if (body.candidates && body.candidates.length) msg += `: ${body.candidates.join(", ")}`;
    return msg;
  } catch (_) {
    return `${resp.status} ${resp.statusText}`;
  }
}

// ---------------------------------------------------------------- rendering lines

const PALETTE = ["36", "32", "33", "35", "34", "96"];
const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK64 = (1n << 64n) - 1n;
const utf8 = new TextEncoder();

/** The CLI's colour for (job, instance, process): the same task looks the same. */
function colorFor(job, instance, process) {
  let h = FNV_OFFSET;
  const bytes = [...utf8.encode(job), instance & 255, (instance >>> 8) & 255, (instance >>> 16) & 255, (instance >>> 24) & 255, ...utf8.encode(process)];
  for (const b of bytes) {
    h ^= BigInt(b);
    h = (h * FNV_PRIME) & MASK64;
  }
  return PALETTE[Number(h % BigInt(PALETTE.length))];
}

/** UTF-16 index of each UTF-8 byte offset of `text` (for the server's byte ranges). */
function byteToIndex(text) {
  const map = [];
  let i = 0;
  for (const ch of text) {
    const n = utf8.encode(ch).length;
    for (let k = 0; k < n; k++) map.push(i);
    i += ch.length;
  }
  map.push(i);
  return map;
}

const SGR_COLORS = new Set([30, 31, 32, 33, 34, 35, 36, 37, 90, 91, 92, 93, 94, 95, 96, 97]);

/** Appends `text` to `el`: ANSI SGR codes become styles (never shown as
 *  `^[[31m`), other escape sequences are dropped, and the byte ranges in
 *  `spans` are wrapped in <mark>. */
function renderText(el, text, spans) {
  if (text.endsWith("\r")) text = text.slice(0, -1);
  const marked = new Uint8Array(text.length);
  if (spans && spans.length) {
    const map = byteToIndex(text);
    for (const [a, b] of spans) {
      const from = map[Math.min(a, map.length - 1)], to = map[Math.min(b, map.length - 1)];
      for (let k = from; k < to; k++) marked[k] = 1;
    }
  }
  let style = { color: null, bold: false, dim: false, italic: false, underline: false };
  let run = "", runKey = null, runMark = 0;
  const flush = () => {
    if (!run) return;
    let node = document.createTextNode(run);
    const classes = [];
    if (runKey.color) classes.push(`c${runKey.color}`);
    for (const k of ["bold", "dim", "italic", "underline"]) if (runKey[k]) classes.push(k);
    if (classes.length) {
      const span = document.createElement("span");
      span.className = classes.join(" ");
      span.appendChild(node);
      node = span;
    }
    if (runMark) {
      const m = document.createElement("mark");
      m.appendChild(node);
      node = m;
    }
    el.appendChild(node);
    run = "";
  };
  const sgr = (params) => {
    const codes = params === "" ? [0] : params.split(";").map((x) => parseInt(x, 10) || 0);
    style = { ...style };
    for (let k = 0; k < codes.length; k++) {
      const c = codes[k];
      if (c === 0) style = { color: null, bold: false, dim: false, italic: false, underline: false };
      else if (c === 1) style.bold = true;
      else if (c === 2) style.dim = true;
      else if (c === 3) style.italic = true;
      else if (c === 4) style.underline = true;
      else if (c === 22) { style.bold = false; style.dim = false; }
      else if (c === 23) style.italic = false;
      else if (c === 24) style.underline = false;
      else if (c === 39) style.color = null;
      else if (SGR_COLORS.has(c)) style.color = String(c);
      else if (c === 38 || c === 48) k += codes[k + 1] === 5 ? 2 : 4; // 256/true colour: skipped
    }
  };
  let i = 0;
  while (i < text.length) {
    if (text.charCodeAt(i) === 0x1b) {
      const m = /^\x1b\[([0-9;?]*)([A-Za-z])/.exec(text.slice(i, i + 32));
      if (m) {
        flush();
        if (m[2] === "m") sgr(m[1]);
        i += m[0].length;
        continue;
      }
      i += 1; // a lone ESC: dropped
      continue;
    }
    const mark = marked[i];
    if (run && (runKey !== style || runMark !== mark)) flush();
    if (!run) { runKey = style; runMark = mark; }
    run += text[i];
    i += 1;
  }
  flush();
}

/**
 * A `div.event`: the lines of one event as one block, with a toggle that
 * folds it to the lines without `hideable` (its first line, and in a
 * search its matches) and opens it again.
 */
function eventElement(lineEls, collapsed, open) {
  const block = document.createElement("div");
  block.className = "event" + (collapsed ? " collapsed" : "") + (open ? " open" : "");
  block.append(...lineEls);
  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.className = "event-toggle";
  block.appendChild(toggle);
  updateToggle(block);
  return block;
}

function updateToggle(block) {
  const hidden = block.querySelectorAll(":scope > .line.hideable").length;
  const toggle = block.querySelector(":scope > .event-toggle");
  toggle.hidden = hidden === 0;
  toggle.textContent = block.classList.contains("collapsed")
    ? `▸ ${hidden} more line${hidden === 1 ? "" : "s"}`
    : "▾ fold";
}

function toggleEvent(block) {
  block.classList.toggle("collapsed");
  updateToggle(block);
}

/** A `div.line` for a line of the API (LineView, plus context/matches from a search). */
function lineElement(l, showJob) {
  const div = document.createElement("div");
  div.className = "line" + (l.stream === "stderr" ? " stderr" : "") + (l.context ? " context" : "");
  div.dataset.source = l.source;
  div.dataset.offset = String(l.offset);
  div.dataset.stream = l.stream;
  div.dataset.job = l.cluster ? `${l.cluster}/${l.job}` : l.job;
  div.dataset.instance = String(l.instance);
  const prefix = document.createElement("span");
  prefix.className = `prefix c${colorFor(l.job, l.instance, l.process)}`;
  const name = l.job.split("/").pop();
  prefix.textContent = `${showJob ? `${name}/${l.instance}` : l.instance} ${l.process}/${l.stream}`;
  if (l.stream === "stderr") prefix.title = "stderr";
  const text = document.createElement("span");
  text.className = "text";
  renderText(text, l.text, l.matches);
  div.append(prefix, text);
  div.title = l.time;
  return div;
}

// ---------------------------------------------------------------- search

let searchRun = 0; // a newer search makes older ones drop their results
let nextSince = null;
let nextCursor = null;
let shownKeys = new Set();
let shownMatches = 0;

async function runSearch(s, append) {
  const run = ++searchRun;
  showError("");
  let range;
  try {
    range = timeRange(s);
  } catch (e) {
    showError(e.message);
    return;
  }
  if (!append) {
    $("#results").textContent = "";
    $("#summary").textContent = "";
    $("#more").hidden = true;
    nextSince = null;
    nextCursor = null;
    shownKeys = new Set();
    shownMatches = 0;
    searchPartial = new Map();
    showPartial("#search-partial", null);
    drawHistogram(s, range);
  }
  const p = selection(s);
  p.set("pattern", s.q);
  if (s.i) p.set("ignore_case", "true");
  p.set("since_ns", append && nextSince ? nextSince : range[0]);
  if (append && nextCursor) p.set("cursor", nextCursor);
  p.set("until_ns", range[1]);
  p.set("limit", String(PAGE_EVENTS));
  p.set("events", "true");
  $("#summary").textContent = "searching…";
  let resp;
  try {
    resp = await fetch(`/api/v1/search?${p}`);
  } catch (e) {
    showError(`cannot reach cblogsd: ${e.message}`);
    return;
  }
  if (!resp.ok) {
    if (run === searchRun) { showError(await apiError(resp)); $("#summary").textContent = ""; }
    return;
  }
  const results = $("#results");
  let showJob = false, summary = null;
  // The lines of the event being received: it ends at a break or the end.
  let event = [];
  const endEvent = (frag) => {
    if (event.length === 1) frag.appendChild(lineElement(event[0], showJob));
    else if (event.length > 1) {
      const els = event.map((l, i) => {
        const el = lineElement(l, showJob);
        if (i > 0 && l.context) el.classList.add("hideable");
        return el;
      });
      frag.appendChild(eventElement(els, true, false));
    }
    event = [];
  };
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (run !== searchRun) { reader.cancel(); return; }
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop();
    const frag = document.createDocumentFragment();
    for (const text of lines) {
      if (!text) continue;
      const ev = JSON.parse(text);
      if (ev.type === "start") showJob = ev.jobs.length > 1;
      else if (ev.type === "line") {
        const key = `${ev.source}:${ev.offset}`;
        if (shownKeys.has(key)) continue; // the next page starts at the last one's time
        shownKeys.add(key);
        if (!ev.context) shownMatches += 1;
        event.push(ev);
      } else if (ev.type === "break") endEvent(frag);
      else if (ev.type === "summary") { endEvent(frag); summary = ev; }
    }
    results.appendChild(frag);
  }
  if (!summary) { showError("the search ended early (was cblogsd stopped?)"); return; }
  const total = shownMatches.toLocaleString("en");
  let note = `${total} matching line${shownMatches === 1 ? "" : "s"}`;
  const blocks = results.querySelectorAll(":scope > .event").length;
  if (blocks) note += `; ${blocks} event${blocks === 1 ? "" : "s"} of several lines`;
  if (summary.more) {
    const events = results.querySelectorAll(":scope > .line, :scope > .event").length.toLocaleString("en");
    note = `showing the first ${events} events (${total} matching lines); more match`;
  }
  if (summary.truncated) note += ` — incomplete: ${summary.reason}`;
  note += ` (${summary.took_ms} ms, ${summary.blocks_read} of ${summary.blocks_total} blocks read)`;
  $("#summary").textContent = note;
  addSearchPartial(summary.partial);
  nextSince = summary.more && summary.next_time_ns != null ? String(summary.next_time_ns) : null;
  // The cursor starts exactly after the last line shown, even when many
  // share its time; the page starts at that time.
  nextCursor = summary.more ? summary.next_cursor : null;
  if (nextCursor) nextSince = nextCursor.split(".")[0];
  $("#more").hidden = !nextSince;
}

/** Context: the lines around a result, toggled under it. */
async function toggleContext(lineEl) {
  const next = lineEl.nextElementSibling;
  if (next && next.classList.contains("context-block")) { next.remove(); return; }
  const p = new URLSearchParams({ source: lineEl.dataset.source, offset: lineEl.dataset.offset, before: CONTEXT_LINES, after: CONTEXT_LINES });
  const resp = await fetch(`/api/v1/context?${p}`);
  if (!resp.ok) { showError(await apiError(resp)); return; }
  const body = await resp.json();
  const block = document.createElement("div");
  block.className = "context-block";
  if (body.partial && body.partial.length) {
    const note = document.createElement("div");
    note.className = "partial";
    block.appendChild(note);
    note.textContent = `partial answer: no answer from ${body.partial.map(nodeText).join("; ")}`;
  }
  for (const l of body.lines) {
    const el = lineElement(l, false);
    if (String(l.offset) === lineEl.dataset.offset) el.classList.add("focus");
    block.appendChild(el);
  }
  lineEl.after(block);
}

// ---------------------------------------------------------------- histogram

let chart = null;
let histogramRun = 0; // a newer histogram makes older answers drop

async function drawHistogram(s, range) {
  const run = ++histogramRun;
  const el = $("#histogram");
  if (chart) { chart.destroy(); chart = null; }
  el.dataset.total = "0";
  const p = selection(s);
  if (s.q) p.set("pattern", s.q);
  if (s.i) p.set("ignore_case", "true");
  p.set("since_ns", range[0]);
  p.set("until_ns", range[1]);
  p.set("buckets", String(el.clientWidth < 500 ? 30 : 60));
  const resp = await fetch(`/api/v1/histogram?${p}`).catch(() => null);
  if (run !== histogramRun || !resp || !resp.ok) return;
  const h = await resp.json();
  if (run !== histogramRun) return;
  addSearchPartial(h.partial);
  const xs = [], out = new Array(h.buckets).fill(0), err = new Array(h.buckets).fill(0);
  for (let i = 0; i < h.buckets; i++) xs.push((h.start_ns + i * h.step_ns) / 1e9);
  for (const series of h.series) {
    const into = series.stream === "stderr" ? err : out;
    series.counts.forEach((c, i) => { into[i] += c; });
  }
  el.dataset.total = String(h.total);
  el.dataset.buckets = String(h.buckets);
  // Stacked: stderr at the bottom, stdout drawn as stderr + stdout behind it.
  const stacked = out.map((c, i) => c + err[i]);
  if (chart) chart.destroy();
  const bars = uPlot.paths.bars({ size: [0.9, 100] });
  chart = new uPlot({
    width: Math.max(200, Math.min(el.clientWidth || 600, document.documentElement.clientWidth - 16)),
    height: 140,
    cursor: { drag: { x: true, y: false, setScale: false } },
    legend: { show: true },
    scales: { x: { time: true } },
    series: [
      {},
      { label: "stdout", fill: "#58a6ff99", stroke: "#58a6ff", paths: bars, points: { show: false }, value: (u, v, si, i) => (i == null ? "—" : out[i]) },
      { label: "stderr", fill: "#ff7b72cc", stroke: "#ff7b72", paths: bars, points: { show: false }, value: (u, v, si, i) => (i == null ? "—" : err[i]) },
    ],
    axes: [{ stroke: "#7d8590", grid: { stroke: "#2d333b" } }, { stroke: "#7d8590", grid: { stroke: "#2d333b" }, size: 40 }],
    hooks: {
      // Drag across the chart: zoom the time range to the selection.
      // Drag across the chart: zoom the time range to the buckets under
      // the selection (bars are centred on their bucket's start, so the
      // nearest centre on each side decides, and the last one counts whole).
      setSelect: [(u) => {
        if (u.select.width < 3) return;
        const step = h.step_ns / 1e9;
        const bucket = (px) => Math.min(h.buckets - 1, Math.max(0, Math.round((u.posToVal(px, "x") - xs[0]) / step)));
        const first = bucket(u.select.left), last = bucket(u.select.left + u.select.width);
        const state = formState("search");
        state.range = "custom";
        state.since = new Date(Math.floor((xs[0] + first * step) * 1000)).toISOString();
        state.until = new Date(Math.ceil((xs[0] + (last + 1) * step) * 1000)).toISOString();
        fillForm(state);
        go(state, true);
      }],
    },
  }, [xs, stacked, err], el);
}

// ---------------------------------------------------------------- live tail

// `open`: per source, the element of its last event (a line, or a block
// once a line continues it), which a line marked `continues` joins.
// `count`: the lines shown.
const tail = { source: null, paused: false, held: [], autoScroll: true, showJob: false, run: 0, seen: new Map(), open: new Map(), count: 0 };

function stopTail() {
  tail.run += 1;
  if (tail.source) tail.source.close();
  tail.source = null;
}

async function startTail(s) {
  stopTail();
  const run = ++tail.run;
  tail.seen = new Map();
  tail.open = new Map();
  tail.count = 0;
  showError("");
  const list = $("#tail-lines");
  list.textContent = "";
  tail.paused = false;
  tail.held = [];
  tail.autoScroll = true;
  updateTailBar();
  if (!s.job) { showError("live tail needs a job selector, e.g. www-data/prod/hello"); return; }
  const p = selection(s);
  // Ask once with n=0 first: an unknown job gets its error in words (an
  // EventSource only says that it failed).
  const check = await fetch(`/api/v1/tail?${p}&n=0`).catch((e) => ({ ok: false, error: e }));
  if (run !== tail.run) return; // another tail started meanwhile
  if (!check.ok) { showError(check.error ? `cannot reach cblogsd: ${check.error.message}` : await apiError(check)); return; }
  p.set("n", String(TAIL_BACKLOG));
  const es = new EventSource(`/api/v1/follow?${p}`);
  tail.source = es;
  $("#tail-status").textContent = "connecting…";
  es.addEventListener("open", () => { $("#tail-status").textContent = tail.paused ? "paused" : "live"; });
  es.addEventListener("error", () => { $("#tail-status").textContent = "reconnecting…"; });
  es.addEventListener("jobs", (e) => { tail.showJob = JSON.parse(e.data).length > 1; });
  es.addEventListener("lagged", (e) => { appendNote(`(fell behind: ${JSON.parse(e.data).missed} batches skipped)`); });
  es.addEventListener("truncated", () => { appendNote("(older lines left out)"); });
  // A node of the cluster that cannot be followed: its lines are missing
  // until it answers again.
  es.addEventListener("partial", (e) => {
    const n = JSON.parse(e.data);
    appendNote(`(partial: no answer from ${nodeText(n)}; the lines it takes are missing)`);
  });
  es.addEventListener("line", (e) => {
    const l = JSON.parse(e.data);
    // After a reconnect the backlog comes again: show each line once.
    if (tail.seen.has(l.source) && l.offset <= tail.seen.get(l.source)) return;
    tail.seen.set(l.source, l.offset);
    if (tail.paused) { tail.held.push(l); updateTailBar(); return; }
    appendTail([l]);
  });
}

function appendNote(text) {
  const div = document.createElement("div");
  div.className = "break";
  div.textContent = text;
  $("#tail-lines").appendChild(div);
}

function appendTail(lines) {
  const list = $("#tail-lines");
  const frag = document.createDocumentFragment();
  tail.count += lines.length;
  for (const l of lines) {
    const last = tail.open.get(l.source);
    if (l.continues && last && last.parentNode) {
      // Its event goes on: into its block (made of the first line now).
      let block = last;
      if (!block.classList.contains("event")) {
        const [parent, next] = [last.parentNode, last.nextSibling];
        block = eventElement([last], false, true);
        block.dataset.source = l.source;
        parent.insertBefore(block, next);
        tail.open.set(l.source, block);
      }
      const el = lineElement(l, tail.showJob);
      el.classList.add("hideable");
      block.insertBefore(el, block.querySelector(":scope > .event-toggle"));
      updateToggle(block);
      continue;
    }
    // Its source's event before it is over.
    if (last && last.classList.contains("event")) last.classList.remove("open");
    const el = lineElement(l, tail.showJob);
    frag.appendChild(el);
    tail.open.set(l.source, el);
  }
  list.appendChild(frag);
  // At most TAIL_MAX_LINES lines, the oldest out first (a block whole).
  while (tail.count > TAIL_MAX_LINES && list.firstElementChild) {
    const old = list.firstElementChild;
    tail.count -= old.classList.contains("line") ? 1 : old.querySelectorAll(".line").length;
    if (old.dataset.source && tail.open.get(old.dataset.source) === old) tail.open.delete(old.dataset.source);
    old.remove();
  }
  if (tail.autoScroll) list.scrollTop = list.scrollHeight;
}

function setPaused(paused) {
  tail.paused = paused;
  if (!paused && tail.held.length) {
    const held = tail.held;
    tail.held = [];
    appendTail(held);
  }
  updateTailBar();
}

function updateTailBar() {
  $("#tail-pause").textContent = tail.paused ? "Resume" : "Pause";
  $("#tail-paused-count").textContent = tail.paused && tail.held.length ? `${tail.held.length} new` : "";
  if (tail.source) $("#tail-status").textContent = tail.paused ? "paused" : "live";
}

// ---------------------------------------------------------------- jobs

let jobsTimer = null;
let lastCounts = new Map(); // job key -> [lines, ms]

function ago(ns) {
  const s = Math.max(0, Math.floor((Date.now() - ns / 1e6) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

async function loadJobs() {
  const resp = await fetch("/api/v1/jobs").catch(() => null);
  if (!resp || !resp.ok) { showError(resp ? await apiError(resp) : "cannot reach cblogsd"); return; }
  const { jobs, partial } = await resp.json();
  showPartial("#jobs-partial", partial);
  const now = Date.now();
  const tree = new Map(); // cluster -> role -> env -> [job]
  for (const j of jobs) {
    const c = j.cluster || "(no cluster)";
    if (!tree.has(c)) tree.set(c, new Map());
    const roles = tree.get(c);
    if (!roles.has(j.role)) roles.set(j.role, new Map());
    const envs = roles.get(j.role);
    if (!envs.has(j.env)) envs.set(j.env, []);
    envs.get(j.env).push(j);
  }
  const ul = (items) => { const u = document.createElement("ul"); items.forEach((i) => u.appendChild(i)); return u; };
  const group = (label, children) => {
    const li = document.createElement("li");
    const span = document.createElement("span");
    span.className = "group";
    span.textContent = label;
    li.append(span, ul(children));
    return li;
  };
  const clusters = [];
  for (const [c, roles] of tree) {
    const roleItems = [];
    for (const [r, envs] of roles) {
      const envItems = [];
      for (const [e, list] of envs) {
        envItems.push(group(e, list.map((j) => jobItem(j, now))));
      }
      roleItems.push(group(r, envItems));
    }
    clusters.push(group(c, roleItems));
  }
  const root = $("#jobs-tree");
  root.textContent = "";
  if (!jobs.length) {
    root.innerHTML = '<p class="empty">No jobs yet: start a cblogs-shipper on an agent.</p>';
    return;
  }
  root.appendChild(ul(clusters));
}

function jobItem(j, now) {
  const li = document.createElement("li");
  li.className = "job";
  li.dataset.job = j.key;
  const prev = lastCounts.get(j.key);
  lastCounts.set(j.key, [j.lines, now]);
  let rate = "";
  if (prev && now > prev[1]) rate = `, ${((j.lines - prev[0]) / ((now - prev[1]) / 1000)).toFixed(1)} lines/s`;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = j.name;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = `${j.lines.toLocaleString("en")} lines, last ${ago(j.last_seen_ns)}${rate}`;
  const insts = document.createElement("div");
  for (const i of j.instances) {
    const chip = document.createElement("span");
    chip.className = "instance";
    chip.dataset.job = j.key;
    chip.dataset.instance = String(i.instance);
    chip.textContent = String(i.instance);
    chip.title = `${i.processes.join(", ")} — last ${ago(i.last_seen_ns)}`;
    insts.appendChild(chip);
  }
  li.append(name, meta, insts);
  return li;
}

function openTail(job) {
  const s = formState("tail");
  s.job = job;
  s.instance = "";
  fillForm(s);
  go(s, true);
}

// ---------------------------------------------------------------- alerts

let alertsTimer = null;

async function loadAlerts() {
  const resp = await fetch("/api/v1/alerts").catch(() => null);
  if (!resp || !resp.ok) { showError(resp ? await apiError(resp) : "cannot reach cblogsd"); return; }
  const a = await resp.json();
  showPartial("#alerts-partial", a.partial);
  const root = $("#alerts-list");
  root.textContent = "";
  if (!a.rules.length) {
    root.innerHTML = '<p class="empty">No alert rules: set <code>[alerts] rules_file</code> in cblogsd.toml (see config/alerts.toml).</p>';
    return;
  }
  for (const r of a.rules) {
    const firing = r.groups.filter((g) => g.state === "firing");
    const div = document.createElement("div");
    div.className = "rule" + (firing.length ? " firing" : "");
    div.dataset.rule = r.name;
    const head = document.createElement("div");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = r.name;
    const state = document.createElement("span");
    state.className = "state";
    state.textContent = firing.length ? `FIRING (${firing.length})` : "ok";
    const meta = document.createElement("span");
    meta.className = "meta";
    const last = r.last_fired ? `last fired ${ago(Date.parse(r.last_fired) * 1e6)}` : "never fired";
    meta.textContent = `${r.severity} · ≥ ${r.threshold} lines in ${r.window_secs} s · ${last}`;
    head.append(name, state, meta);
    div.appendChild(head);
    for (const g of firing) {
      const row = document.createElement("div");
      row.className = "group";
      const key = g.group.instance == null ? g.group.job : `${g.group.job}/${g.group.instance}`;
      row.textContent = `${key} — ${g.count} lines, since ${g.since || "?"}`;
      row.addEventListener("click", () => openTail(key));
      div.appendChild(row);
    }
    root.appendChild(div);
  }
  if (a.silences.length) {
    const p = document.createElement("div");
    p.className = "silences";
    p.textContent = "Silenced: " + a.silences.map((s) => `${s.rule}${s.group ? ` on ${s.group}` : ""} until ${s.until}`).join("; ");
    root.appendChild(p);
  }
  const d = a.deliveries;
  if (d.failed || d.pending) {
    const p = document.createElement("div");
    p.className = "silences";
    p.textContent = `Notifications: ${d.sent} sent, ${d.failed} attempts failed, ${d.pending} waiting.`;
    root.appendChild(p);
  }
}

// ---------------------------------------------------------------- views

function showView(view) {
  for (const v of ["search", "tail", "jobs", "alerts"]) {
    $(`#view-${v}`).hidden = v !== view;
    $(`#tab-${v}`).classList.toggle("active", v === view);
  }
  const form = view === "search" || view === "tail";
  $("#query-form").hidden = !form;
  for (const id of ["#pattern", "#ignore-case", "#range"]) {
    const el = $(id);
    (el.closest("label") || el).hidden = view === "tail";
  }
  if (view === "tail") { $("#since").hidden = true; $("#until").hidden = true; } else showCustomRange();
}

/** Shows and runs the view of state `s` (and records it in the URL). */
function go(s, push) {
  writeState(s, push);
  showView(s.view);
  if (s.view !== "tail") stopTail();
  clearInterval(jobsTimer);
  clearInterval(alertsTimer);
  showError("");
  // An empty pattern matches every line: with a job, that is its lines.
  if (s.view === "search" && (s.q !== "" || s.job !== "")) runSearch(s, false);
  else if (s.view === "tail") startTail(s);
  else if (s.view === "jobs") { loadJobs(); jobsTimer = setInterval(loadJobs, 5000); }
  else if (s.view === "alerts") { loadAlerts(); alertsTimer = setInterval(loadAlerts, 5000); }
}

function currentView() {
  return readState().view;
}

document.addEventListener("DOMContentLoaded", () => {
  $("#query-form").addEventListener("submit", (e) => {
    e.preventDefault();
    go(formState(currentView() === "tail" ? "tail" : "search"), true);
  });
  $("#range").addEventListener("change", showCustomRange);
  for (const v of ["search", "tail", "jobs", "alerts"]) {
    $(`#tab-${v}`).addEventListener("click", () => go(formState(v), true));
  }
  $("#more").addEventListener("click", () => runSearch(readState(), true));
  for (const id of ["#results", "#tail-lines"]) {
    $(id).addEventListener("click", (e) => {
      const toggle = e.target.closest(".event-toggle");
      if (toggle) toggleEvent(toggle.parentElement);
    });
  }
  $("#results").addEventListener("click", (e) => {
    const line = e.target.closest(".line");
    const inResults = line && (line.parentElement.id === "results" || line.parentElement.classList.contains("event"));
    if (inResults && !window.getSelection().toString()) toggleContext(line);
  });
  $("#tail-pause").addEventListener("click", () => setPaused(!tail.paused));
  const list = $("#tail-lines");
  list.addEventListener("scroll", () => {
    // Scrolled up: stop following the bottom; back at the bottom: follow again.
    tail.autoScroll = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  });
  $("#jobs-tree").addEventListener("click", (e) => {
    const inst = e.target.closest(".instance");
    if (inst) { openTail(`${inst.dataset.job}/${inst.dataset.instance}`); return; }
    const job = e.target.closest(".job");
    if (job) openTail(job.dataset.job);
  });
  document.addEventListener("keydown", (e) => {
    const typing = e.target.matches("input, select, textarea");
    if (e.key === "/" && !typing) { e.preventDefault(); $("#pattern").focus(); }
    else if (e.key === "Escape" && currentView() === "tail") { e.preventDefault(); setPaused(!tail.paused); }
  });
  window.addEventListener("popstate", () => { const s = readState(); fillForm(s); go(s, false); });
  const s = readState();
  fillForm(s);
  go(s, false);
});
