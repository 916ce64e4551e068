// DOM helpers shared by the viewer's modules. Every piece of record data reaches the page as
// text (textContent or an attribute value), never as markup, so a log line can never inject HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** h("td", {class: "x", title: t}, "text", childNode, ...): an HTML element. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** s("rect", {x: 1, ...}): an SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

export function fmtTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
         `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A short time label for an axis whose whole span is spanMs. */
export function fmtTick(ms, spanMs) {
  const d = new Date(ms);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (spanMs <= 10 * 60_000) return `${hm}:${pad(d.getSeconds())}`;
  if (spanMs <= 2 * 86_400_000) return hm;
  return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
}

export function fmtCount(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(n >= 1e10 ? 0 : 1) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + "k";
  return n.toLocaleString();
}

export function fmtDuration(ms) {
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]]) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const LEVEL_CLASS = {
  debug: "debug", trace: "debug", info: "info", notice: "info", warn: "warn", warning: "warn",
  error: "error", err: "error", fatal: "error", critical: "error", crit: "error", panic: "error",
};

/** "debug" | "info" | "warn" | "error" | "" for any level spelling. */
export function levelClass(level) {
  return LEVEL_CLASS[String(level || "").toLowerCase()] || "";
}

/** <span class="badge lv-…">LEVEL</span> */
export function badge(level) {
  const cls = levelClass(level);
  return h("span", { class: "badge" + (cls ? ` lv-${cls}` : "") }, level || "—");
}

/** The message as text nodes, with every occurrence of q wrapped in <mark>. */
export function highlighted(text, q) {
  const str = String(text ?? "");
  if (!q || q.startsWith("/")) return [str];
  const out = [];
  const parts = str.split(q);
  parts.forEach((part, i) => {
    if (i) out.push(h("mark", {}, q));
    if (part) out.push(part);
  });
  return out;
}

export async function fetchJson(url, signal) {
  const resp = await fetch(url, { headers: { Accept: "application/json" }, signal });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    if (resp.status === 401) window.dispatchEvent(new CustomEvent("zlog:unauthorized"));
    const err = new Error(body.error?.message || body.message || `${resp.status} ${resp.statusText}`);
    err.status = resp.status;
    throw err;
  }
  return body;
}
