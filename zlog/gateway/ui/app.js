// zlog log viewer: plain JS, no build step. The page URL holds the filters, so a view can be shared.
// Talks to the gateway's read API only: /v1/services, /v1/logs (search + paging), /v1/tail (SSE).
"use strict";

const $ = (id) => document.getElementById(id);
const els = {
  form: $("filters"), service: $("service"), levels: $("levels"), search: $("search"), range: $("range"),
  limit: $("limit"), auto: $("auto"), live: $("live"), refresh: $("refresh"), rows: $("rows"),
  summary: $("summary"), error: $("error"), empty: $("empty"), older: $("older"),
};
const state = { cursor: null, tailCursor: null, source: null, timer: null, seq: 0, shown: 0, live: 0 };
const LEVEL_CLASS = {
  debug: "debug", trace: "debug", info: "info", notice: "info", warn: "warn", warning: "warn",
  error: "error", err: "error", fatal: "error", critical: "error", crit: "error", panic: "error",
};

// -- filters <-> URL <-> API parameters ---------------------------------------------------

function readForm() {
  return {
    service: els.service.value,
    levels: [...els.levels.querySelectorAll("input:checked")].map((i) => i.value),
    q: els.search.value.trim(),
    since: els.range.value,
    limit: els.limit.value,
  };
}

function writeForm(f) {
  if (f.service && ![...els.service.options].some((o) => o.value === f.service)) {
    els.service.add(new Option(f.service, f.service));
  }
  els.service.value = f.service || "";
  for (const box of els.levels.querySelectorAll("input")) box.checked = f.levels.includes(box.value);
  els.search.value = f.q || "";
  els.range.value = f.since || "";
  els.limit.value = f.limit || "100";
}

function fromUrl() {
  const p = new URLSearchParams(location.search);
  els.auto.checked = p.get("auto") === "1";
  els.live.checked = p.get("live") === "1";
  return { service: p.get("service") || "", levels: p.getAll("level"), q: p.get("q") || "",
           since: p.get("since") || "", limit: p.get("limit") || "100" };
}

function toUrl(f) {
  const p = new URLSearchParams();
  if (f.service) p.set("service", f.service);
  for (const lv of f.levels) p.append("level", lv);
  if (f.q) p.set("q", f.q);
  if (f.since) p.set("since", f.since);
  if (f.limit !== "100") p.set("limit", f.limit);
  if (els.auto.checked) p.set("auto", "1");
  if (els.live.checked) p.set("live", "1");
  const qs = p.toString();
  history.replaceState(null, "", qs ? "?" + qs : location.pathname);
}

function apiParams(f) {
  const p = new URLSearchParams();
  if (f.service) p.set("service", f.service);
  for (const lv of f.levels) {
    p.append("level", lv);
    if (lv === "WARN") p.append("level", "WARNING");
  }
  const re = /^\/(.+)\/$/.exec(f.q);
  if (re) p.set("regex", re[1]);
  else if (f.q) p.set("contains", f.q);
  if (f.since) p.set("since", f.since);
  return p;
}

// -- rendering ----------------------------------------------------------------------------

const pad = (n, w = 2) => String(n).padStart(w, "0");
function fmtTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
         `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function highlight(text, q) {
  if (!q || q.startsWith("/")) return esc(text);
  const parts = String(text).split(q);
  return parts.map(esc).join(`<mark>${esc(q)}</mark>`);
}

function levelStyle(level) {
  const cls = LEVEL_CLASS[String(level || "").toLowerCase()];
  return cls ? ` lv-${cls}` : "";
}

function rowFor(rec, q, fresh) {
  const tr = document.createElement("tr");
  tr.className = "row" + (fresh ? " new" : "");
  tr.dataset.key = `${rec.partition}:${rec.offset}`;
  tr.innerHTML =
    `<td class="time" title="received ${esc(fmtTime(rec.received_at || rec.timestamp))}">${esc(fmtTime(rec.timestamp))}</td>` +
    `<td><span class="badge${levelStyle(rec.level)}">${esc(rec.level || "—")}</span></td>` +
    `<td class="svc" title="${esc(rec.service)}">${esc(rec.service)}</td>` +
    `<td class="msg" title="${esc(rec.message)}">${highlight(rec.message, q)}</td>` +
    `<td class="num">${rec.partition} · ${rec.offset}</td>`;
  tr.record = rec;
  return tr;
}

function detailFor(rec) {
  const tr = document.createElement("tr");
  tr.className = "detail";
  const labels = Object.entries(rec.labels || {})
    .map(([k, v]) => `<span class="chip"><b>${esc(k)}=</b>${esc(v)}</span>`).join("");
  tr.innerHTML = `<td colspan="5">` +
    (labels ? `<div class="labels">${labels}</div>` : "") +
    `<p class="message">${esc(rec.message)}</p>` +
    `<pre class="json">${esc(JSON.stringify(rec, null, 2))}</pre>` +
    `<div class="actions"><button type="button" class="btn" data-act="copy">Copy JSON</button>` +
    `<button type="button" class="btn" data-act="service">Only ${esc(rec.service)}</button></div></td>`;
  tr.querySelector('[data-act="copy"]').onclick = () => navigator.clipboard?.writeText(JSON.stringify(rec));
  tr.querySelector('[data-act="service"]').onclick = () => {
    writeForm({ ...readForm(), service: rec.service });
    run();
  };
  return tr;
}

function toggleDetail(tr) {
  const next = tr.nextElementSibling;
  if (next && next.classList.contains("detail")) {
    next.remove();
    tr.classList.remove("open");
  } else {
    tr.after(detailFor(tr.record));
    tr.classList.add("open");
  }
}

function setSummary(text) { els.summary.textContent = text; }
function setError(text) { els.error.hidden = !text; els.error.textContent = text || ""; }

function updateEmpty() {
  els.empty.hidden = els.rows.querySelector("tr.row") !== null;
}

// -- data ---------------------------------------------------------------------------------

async function fetchJson(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.message || `${resp.status} ${resp.statusText}`);
  return body;
}

async function loadServices() {
  try {
    const body = await fetchJson("/v1/services");
    const keep = els.service.value;
    const names = [...new Set(body.services.map((s) => s.name))];
    els.service.length = 1;
    for (const n of names) els.service.add(new Option(n, n));
    if (keep && !names.includes(keep)) els.service.add(new Option(keep, keep));
    els.service.value = keep;
  } catch (err) {
    setError(`services: ${err.message}`);
  }
}

async function run(append = false) {
  const f = readForm();
  toUrl(f);
  const seq = ++state.seq;
  const p = apiParams(f);
  p.set("limit", f.limit);
  if (append && state.cursor) p.set("cursor", state.cursor);
  setError("");
  if (!append) setSummary("Searching…");
  try {
    const body = await fetchJson("/v1/logs?" + p);
    if (seq !== state.seq) return; // a newer search superseded this one
    if (!append) {
      els.rows.replaceChildren();
      state.shown = 0;
      state.tailCursor = body.tail_cursor || null;
    }
    const frag = document.createDocumentFragment();
    for (const rec of body.records) frag.append(rowFor(rec, f.q, false));
    els.rows.append(frag);
    state.shown += body.records.length;
    state.cursor = body.cursor;
    els.older.hidden = !body.more;
    const scanned = body.scanned_records ? ` · scanned ${body.scanned_records.toLocaleString()} records` : "";
    setSummary(`${state.shown.toLocaleString()} records${body.more ? " (more available)" : ""} · ${body.took_ms} ms${scanned}` +
               (state.live ? ` · ${state.live} live` : ""));
    // A partition whose worker is down is left out of the answer: say so instead of hiding it.
    setError(body.partial
      ? "Partial results: partition " + body.unavailable.map((u) => `${u.partition} (${u.error})`).join(", ") +
        " did not answer."
      : "");
    updateEmpty();
    if (!append) restartTail();
  } catch (err) {
    if (seq === state.seq) { setError(err.message); setSummary(""); }
  }
}

// -- live tail ----------------------------------------------------------------------------

function stopTail() {
  if (state.source) state.source.close();
  state.source = null;
  delete document.body.dataset.live;
}

function restartTail() {
  stopTail();
  if (!els.live.checked) return;
  const f = readForm();
  const p = apiParams(f);
  if (state.tailCursor) p.set("cursor", state.tailCursor);
  const src = new EventSource("/v1/tail?" + p);
  state.source = src;
  const limit = Number(f.limit) * 2;
  src.onmessage = (ev) => {
    const rec = JSON.parse(ev.data);
    state.tailCursor = ev.lastEventId || state.tailCursor;
    const key = `${rec.partition}:${rec.offset}`;
    if (els.rows.querySelector(`tr[data-key="${key}"]`)) return;
    els.rows.prepend(rowFor(rec, f.q, true));
    state.live += 1;
    state.shown += 1;
    const rows = els.rows.querySelectorAll("tr.row");
    for (let i = limit; i < rows.length; i++) {
      const next = rows[i].nextElementSibling;
      if (next && next.classList.contains("detail")) next.remove();
      rows[i].remove();
    }
    setSummary(`${Math.min(state.shown, limit).toLocaleString()} records · ${state.live} live`);
    updateEmpty();
  };
  src.onerror = () => {
    document.body.dataset.live = "reconnecting";
    setError(src.readyState === EventSource.CLOSED ? "live tail closed" : "");
  };
  src.onopen = () => { document.body.dataset.live = "open"; setError(""); };
}

function setAuto() {
  clearInterval(state.timer);
  state.timer = els.auto.checked ? setInterval(() => { if (!els.live.checked && !els.rows.querySelector("tr.detail")) run(); }, 5000) : null;
}

// -- wiring -------------------------------------------------------------------------------

let debounce = null;
els.search.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(() => run(), 300); });
els.form.addEventListener("submit", (ev) => { ev.preventDefault(); clearTimeout(debounce); run(); });
for (const el of [els.service, els.range, els.limit]) el.addEventListener("change", () => run());
els.levels.addEventListener("change", () => run());
els.refresh.addEventListener("click", () => { loadServices(); run(); });
els.older.addEventListener("click", () => run(true));
els.auto.addEventListener("change", () => { setAuto(); toUrl(readForm()); });
els.live.addEventListener("change", () => { state.live = 0; toUrl(readForm()); run(); });
els.rows.addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr.row");
  if (tr && !window.getSelection().toString()) toggleDetail(tr);
});
document.addEventListener("keydown", (ev) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (ev.key === "/" && !typing) { ev.preventDefault(); els.search.focus(); }
  else if (ev.key === "r" && !typing && !ev.ctrlKey && !ev.metaKey) run();
  else if (ev.key === "Escape") {
    for (const d of els.rows.querySelectorAll("tr.detail")) d.remove();
    for (const r of els.rows.querySelectorAll("tr.open")) r.classList.remove("open");
  }
});
const bar = document.querySelector(".bar");
const sizeBar = () => document.documentElement.style.setProperty("--bar-h", bar.offsetHeight + "px");
new ResizeObserver(sizeBar).observe(bar);
window.addEventListener("popstate", () => { writeForm(fromUrl()); run(); });

writeForm(fromUrl());
setAuto();
loadServices();
run();
