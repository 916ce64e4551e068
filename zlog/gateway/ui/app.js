// zlog log explorer: plain JS modules, no build step. The page URL holds the filters, so a view can
// be shared. Talks to the gateway's read API only: /v1/services, /v1/logs (search + paging),
// /v1/tail (SSE), /v1/stats/volume (chart), /v1/stats/values (facets), /v1/partitions/{p}/records
// (context) and /v1/logs/export (download); /v1/session to sign in where the gateway asks for a token.
"use strict";

import { VolumeChart } from "./chart.js";
import { fetchJson, fmtTime, h } from "./dom.js";
import { Facets, labelKeys } from "./facets.js";
import { apiParams, chipLabel, fromUrl, KNOWN_LEVELS, toUrl } from "./filters.js";
import { closeDetails, moveSelection, rowFor, select, toggleDetail } from "./rows.js";
import { SignIn } from "./session.js";

const $ = (id) => document.getElementById(id);
const els = {
  form: $("filters"), service: $("service"), levels: $("levels"), search: $("search"), range: $("range"),
  limit: $("limit"), auto: $("auto"), live: $("live"), refresh: $("refresh"), rows: $("rows"),
  summary: $("summary"), error: $("error"), empty: $("empty"), older: $("older"), chips: $("chips"),
  download: $("download"), exportLimit: $("export-limit"),
};
const state = {
  cursor: null, tailCursor: null, source: null, timer: null, seq: 0, shown: 0, live: 0,
  extra: [],          // [{key, value}]: label.<k>, level (uncommon spellings), -service, -level, -label.<k>
  until: "",          // set with a custom (dragged) range
  records: [],
  refetch: null,
};

const chart = new VolumeChart($("chart"), { onSelect: (from, to) => setRange(String(from), String(to)) });
window.zlogChart = chart; // for the browser tests and for poking at in a console
const facets = new Facets($("facets"), { onPick: pick });
const signIn = new SignIn($("signin"), $("signout"), () => { loadServices(); run(); });
const rowActions = { pick: (...a) => pick(...a), query: () => readForm().q };

// -- the form <-> a filter object ---------------------------------------------------------

function readForm() {
  return {
    service: els.service.value,
    levels: [...els.levels.querySelectorAll("input:checked")].map((i) => i.value),
    q: els.search.value.trim(),
    since: els.range.value,
    until: state.until,
    limit: els.limit.value,
    extra: state.extra,
    auto: els.auto.checked,
    live: els.live.checked,
  };
}

function setCustomRange(since, until) {
  let opt = els.range.querySelector("option.custom");
  const custom = since && ![...els.range.options].some((o) => o.value === since && !o.classList.contains("custom"));
  if (!custom) { opt?.remove(); return; }
  if (!opt) { opt = new Option("", ""); opt.className = "custom"; els.range.add(opt); }
  opt.value = since;
  const t = (v) => (/^\d+$/.test(v) ? fmtTime(Number(v)).slice(5, 19) : v);
  opt.textContent = until ? `${t(since)} → ${t(until)}` : `since ${t(since)}`;
}

function writeForm(f) {
  if (f.service && ![...els.service.options].some((o) => o.value === f.service)) {
    els.service.add(new Option(f.service, f.service));
  }
  els.service.value = f.service || "";
  for (const box of els.levels.querySelectorAll("input")) box.checked = f.levels.includes(box.value);
  els.search.value = f.q || "";
  setCustomRange(f.since, f.until);
  els.range.value = f.since || "";
  state.until = f.until || "";
  els.limit.value = f.limit || "100";
  state.extra = f.extra || [];
  els.auto.checked = !!f.auto;
  els.live.checked = !!f.live;
  renderChips();
}

function setRange(since, until) {
  const f = readForm();
  writeForm({ ...f, since, until });
  run();
}

/** A facet click: include the value (replacing the service), or exclude it with shift. */
function pick(field, value, exclude) {
  const f = readForm();
  const was = activeState(field, value);
  if (was) { unpick(f, field, value); return; } // a second click on an active value removes it
  const key = exclude ? "-" + field : field;
  let extra = f.extra.filter((e) => !(e.key.replace(/^-/, "") === field && e.value === value));
  if (!exclude && field === "service") {
    f.service = value;
  } else if (!exclude && field === "level" && KNOWN_LEVELS.includes(value.toUpperCase())) {
    const lv = value.toUpperCase() === "WARNING" ? "WARN" : value.toUpperCase();
    if (!f.levels.includes(lv)) f.levels = [...f.levels, lv];
  } else {
    if (!exclude && field.startsWith("label.")) extra = extra.filter((e) => e.key !== field); // one value per label
    if (exclude && field === "service" && f.service === value) f.service = "";
    if (exclude && field === "level") f.levels = f.levels.filter((lv) => lv.toLowerCase() !== value.toLowerCase());
    extra = [...extra, { key, value }];
  }
  writeForm({ ...f, extra });
  run();
}

function unpick(f, field, value) {
  if (field === "service" && f.service === value) f.service = "";
  if (field === "level") {
    f.levels = f.levels.filter((lv) => !(lv.toLowerCase() === value.toLowerCase() ||
                                         (lv === "WARN" && value.toLowerCase() === "warning")));
  }
  const extra = f.extra.filter((e) => !(e.key.replace(/^-/, "") === field && e.value === value));
  writeForm({ ...f, extra });
  run();
}

/** Whether a facet value is already a filter: "include", "exclude" or "". */
function activeState(field, value) {
  const f = readForm();
  if (field === "service" && f.service === value) return "include";
  if (field === "level" && f.levels.some((lv) => lv.toLowerCase() === value.toLowerCase() ||
      (lv === "WARN" && value.toLowerCase() === "warning"))) return "include";
  for (const e of f.extra) {
    if (e.value !== value) continue;
    if (e.key === field) return "include";
    if (e.key === "-" + field) return "exclude";
  }
  return "";
}

function renderChips() {
  const chips = state.extra.map((e, i) => h("span", { class: "fchip" + (e.key.startsWith("-") ? " neg" : "") },
    chipLabel(e), h("button", { type: "button", title: "remove this filter", "aria-label": "remove filter",
                                onclick: () => { state.extra = state.extra.filter((_, j) => j !== i); renderChips(); run(); } },
                    "×")));
  if (state.until || /^\d+$/.test(els.range.value)) {
    chips.push(h("span", { class: "fchip time" }, "time: ", els.range.selectedOptions[0]?.textContent || "",
      h("button", { type: "button", title: "back to the last hour", "aria-label": "reset time range",
                    onclick: () => setRange("1h", "") }, "×")));
  }
  els.chips.replaceChildren(...chips);
  els.chips.hidden = chips.length === 0;
}

function setSummary(text) { els.summary.textContent = text; }
function setError(text) { els.error.hidden = !text; els.error.textContent = text || ""; }
function updateEmpty() { els.empty.hidden = els.rows.querySelector("tr.row") !== null; }

function updateDownload(f) {
  const p = apiParams(f);
  const n = Math.max(1, Math.min(1_000_000, Number(els.exportLimit.value) || 10_000));
  p.set("limit", String(n));
  els.download.href = "/v1/logs/export?" + p;
}

// -- data ---------------------------------------------------------------------------------

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

async function loadVolume(f, seq) {
  const p = apiParams(f);
  // "All time" has no start: chart at least the last hour, and back to the oldest row shown.
  if (!f.since) {
    const oldest = Math.min(Date.now() - 3_600_000, ...state.records.map((r) => r.timestamp));
    p.set("since", String(oldest));
  }
  p.set("step", "auto");
  p.set("by", "level");
  try {
    const body = await fetchJson("/v1/stats/volume?" + p);
    if (seq === state.seq) chart.set(body);
  } catch (err) {
    if (seq === state.seq) chart.set(null, `volume: ${err.message}`);
  }
}

async function run(append = false) {
  const f = readForm();
  toUrl(f);
  updateDownload(f);
  const seq = ++state.seq;
  const p = apiParams(f);
  p.set("limit", f.limit);
  if (append && state.cursor) p.set("cursor", state.cursor);
  setError("");
  if (!append) {
    setSummary("Searching…");
    if (f.since) loadVolume(f, seq);
  }
  try {
    const body = await fetchJson("/v1/logs?" + p);
    if (seq !== state.seq) return; // a newer search superseded this one
    if (!append) {
      els.rows.replaceChildren();
      state.shown = 0;
      state.records = [];
      state.tailCursor = body.tail_cursor || null;
    }
    const frag = document.createDocumentFragment();
    for (const rec of body.records) frag.append(rowFor(rec, f.q, false));
    els.rows.append(frag);
    state.records.push(...body.records);
    state.shown += body.records.length;
    state.cursor = body.cursor;
    els.older.hidden = !body.more;
    const scanned = body.scanned_records ? ` · scanned ${body.scanned_records.toLocaleString()} records` : "";
    setSummary(`${state.shown.toLocaleString()} rows${body.more ? " (more available)" : ""} · ${body.took_ms} ms${scanned}` +
               (state.live ? ` · ${state.live} live` : ""));
    // A partition whose worker is down is left out of the answer: say so instead of hiding it.
    setError(body.partial
      ? "Partial results: partition " + body.unavailable.map((u) => `${u.partition} (${u.error})`).join(", ") +
        " did not answer."
      : "");
    updateEmpty();
    if (!append) {
      if (!f.since) loadVolume(f, seq);
      const excluded = f.extra.filter((e) => e.key.startsWith("-")).map((e) => [e.key.slice(1), e.value]);
      facets.load(apiParams(f), labelKeys(state.records), activeState, excluded);
      restartTail();
    }
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

function refetchVolumeSoon() {
  if (state.refetch) return;
  state.refetch = setTimeout(() => { state.refetch = null; loadVolume(readForm(), state.seq); }, 2000);
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
    if (!chart.bump(rec)) refetchVolumeSoon();
    state.live += 1;
    state.shown += 1;
    const rows = els.rows.querySelectorAll("tr.row");
    for (let i = limit; i < rows.length; i++) {
      const next = rows[i].nextElementSibling;
      if (next && next.classList.contains("detail")) next.remove();
      rows[i].remove();
    }
    setSummary(`${Math.min(state.shown, limit).toLocaleString()} rows · ${state.live} live`);
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
  state.timer = els.auto.checked
    ? setInterval(() => { if (!els.live.checked && !els.rows.querySelector("tr.detail")) run(); }, 5000) : null;
}

// -- wiring -------------------------------------------------------------------------------

let debounce = null;
els.search.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(() => run(), 300); });
els.form.addEventListener("submit", (ev) => { ev.preventDefault(); clearTimeout(debounce); run(); });
els.range.addEventListener("change", () => { state.until = els.range.selectedOptions[0]?.classList.contains("custom") ? state.until : ""; setCustomRange(els.range.value, state.until); renderChips(); run(); });
for (const el of [els.service, els.limit]) el.addEventListener("change", () => run());
els.levels.addEventListener("change", () => run());
els.refresh.addEventListener("click", () => { loadServices(); run(); });
els.older.addEventListener("click", () => run(true));
els.auto.addEventListener("change", () => { setAuto(); toUrl(readForm()); });
els.live.addEventListener("change", () => { state.live = 0; toUrl(readForm()); run(); });
els.exportLimit.addEventListener("input", () => updateDownload(readForm()));
els.rows.addEventListener("click", (ev) => {
  if (ev.target.closest("tr.detail")) return;
  const tr = ev.target.closest("tr.row");
  if (tr && !window.getSelection().toString()) { select(els.rows, tr); toggleDetail(tr, undefined, rowActions); }
});
document.addEventListener("keydown", (ev) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "Escape") {
    if (typing) document.activeElement.blur();
    closeDetails(els.rows);
  } else if (typing) {
    return;
  } else if (ev.key === "/") { ev.preventDefault(); els.search.focus(); els.search.select(); }
  else if (ev.key === "j") moveSelection(els.rows, 1, rowActions);
  else if (ev.key === "k") moveSelection(els.rows, -1, rowActions);
  else if (ev.key === "Enter" || ev.key === "o") {
    const tr = els.rows.querySelector("tr.sel");
    if (tr) toggleDetail(tr, undefined, rowActions);
  } else if (ev.key === "r") run();
});
const bar = document.querySelector(".bar");
const sizeBar = () => document.documentElement.style.setProperty("--bar-h", bar.offsetHeight + "px");
new ResizeObserver(sizeBar).observe(bar);
window.addEventListener("popstate", () => { writeForm(fromUrl()); run(); });

writeForm(fromUrl());
setAuto();
loadServices();
run();
signIn.check();
