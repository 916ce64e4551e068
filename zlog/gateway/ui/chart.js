// The volume chart: stacked bars of records per time bucket by level, drawn as plain SVG from
// GET /v1/stats/volume. Dragging across it selects a time range (onSelect(fromMs, toMs)), a
// double-click zooms out to twice the range around its middle (onSelect again); live
// records bump their bucket so the chart follows the tail without a refetch per record.
"use strict";

import { fmtCount, fmtDuration, fmtTick, fmtTime, h, levelClass, s } from "./dom.js";

const HEIGHT = 120;      // plot area, px
const TOP = 8;           // room above it for the top count label
const AXIS_X = 18;       // room below for time labels
const AXIS_Y = 44;       // room on the left for count labels
const GAP = 1;           // px between bars when there is room for it
const STACK = ["error", "warn", "info", "debug", ""]; // bottom to top: errors sit on the baseline

/** Bucket keys in stacking order: known levels by severity, then the rest by name. */
function orderKeys(keys) {
  const rank = (k) => { const i = STACK.indexOf(levelClass(k)); return i < 0 ? STACK.length : i; };
  return [...keys].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** A round axis maximum >= n (1, 2, 2.5, 5 x 10^k). */
function niceMax(n) {
  if (n <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

export class VolumeChart {
  constructor(root, { onSelect }) {
    this.root = root;
    this.onSelect = onSelect;
    this.data = null;
    this.pending = false;
    this.svg = s("svg", { class: "plot", "data-testid": "chart", role: "img", "aria-label": "log volume" });
    this.tip = h("div", { class: "tip", hidden: true });
    this.legend = h("div", { class: "legend" });
    this.note = h("span", { class: "note" });
    root.replaceChildren(h("div", { class: "chart-head" }, this.legend, this.note), this.svg, this.tip);
    this.drag = null;
    this.svg.addEventListener("pointerdown", (ev) => this.down(ev));
    this.svg.addEventListener("pointermove", (ev) => this.move(ev));
    this.svg.addEventListener("pointerup", (ev) => this.up(ev));
    this.svg.addEventListener("dblclick", () => this.zoomOut());
    this.svg.addEventListener("pointerleave", () => { if (!this.drag) this.tip.hidden = true; });
    new ResizeObserver(() => this.schedule()).observe(root);
  }

  /** New data from /v1/stats/volume (or null to show that there is none). */
  set(data, message = "") {
    this.data = data && { ...data, buckets: data.buckets.map((b) => ({ t: b.t, counts: { ...b.counts } })) };
    this.message = message;
    this.draw();
  }

  /**
   * A live record: count it in its bucket. Returns false when it falls past the chart's end
   * (the caller refetches, which also slides a relative range forward).
   */
  bump(rec) {
    const d = this.data;
    if (!d || d.by !== "level") return true;
    const t = Math.floor(rec.timestamp / d.step_ms) * d.step_ms;
    if (t < d.domain0) return true; // older than the chart: nothing to draw
    if (t >= d.domain1) return false;
    let b = d.buckets.find((x) => x.t === t);
    if (!b) { b = { t, counts: {} }; d.buckets.push(b); }
    const key = rec.level || "";
    b.counts[key] = (b.counts[key] || 0) + 1;
    d.total += 1;
    this.schedule();
    return true;
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    const d = this.data;
    const width = Math.max(200, this.root.clientWidth);
    const plotW = width - AXIS_Y;
    this.svg.setAttribute("viewBox", `0 ${-TOP} ${width} ${TOP + HEIGHT + AXIS_X}`);
    this.svg.setAttribute("width", width);
    this.svg.setAttribute("height", TOP + HEIGHT + AXIS_X);
    const kids = [];
    if (!d) {
      this.legend.replaceChildren();
      this.note.textContent = this.message || "";
      this.svg.replaceChildren(s("text", { class: "empty", x: width / 2, y: HEIGHT / 2, "text-anchor": "middle" },
                                 this.message || "No volume data"));
      return;
    }
    const step = d.step_ms;
    d.domain0 = Math.floor(d.start_ms / step) * step;
    d.domain1 = Math.max(d.domain0 + step, (Math.floor(d.end_ms / step) + 1) * step);
    const span = d.domain1 - d.domain0;
    const x = (t) => AXIS_Y + ((t - d.domain0) / span) * plotW;
    const keys = new Set();
    let top = 0;
    for (const b of d.buckets) {
      let sum = 0;
      for (const [k, n] of Object.entries(b.counts)) { if (n > 0) keys.add(k); sum += n; }
      top = Math.max(top, sum);
    }
    const ymax = niceMax(top);
    this.scale = HEIGHT / ymax;
    d.ymax = ymax;
    // Grid and count labels.
    for (const frac of [0, 0.5, 1]) {
      const y = HEIGHT - frac * HEIGHT + 0.5;
      kids.push(s("line", { class: "grid", x1: AXIS_Y, x2: width, y1: y, y2: y }));
      kids.push(s("text", { class: "axis", x: AXIS_Y - 6, y: y + 4, "text-anchor": "end" }, fmtCount(ymax * frac)));
    }
    // Bars: one rect per (bucket, key), stacked in severity order.
    const ordered = orderKeys(keys);
    const barW = Math.max(1, (step / span) * plotW - (((step / span) * plotW) > 4 ? GAP : 0));
    const bars = s("g", { class: "bars" });
    for (const b of d.buckets) {
      if (b.t < d.domain0 || b.t >= d.domain1) continue;
      let y = HEIGHT;
      for (const k of ordered) {
        const n = b.counts[k] || 0;
        if (!n) continue;
        const hgt = n * this.scale;
        y -= hgt;
        const cls = levelClass(k);
        bars.append(s("rect", { class: "bar" + (cls ? ` lv-${cls}` : " lv-other"), x: x(b.t), y, width: barW,
                                height: hgt, dataset: { t: b.t, key: k, count: n } }));
      }
    }
    kids.push(bars);
    // Time labels, about one per 110 px, on round bucket boundaries.
    const every = Math.max(1, Math.ceil((110 / plotW) * (span / step))) * step;
    for (let t = Math.ceil(d.domain0 / every) * every; t < d.domain1; t += every) {
      if (x(t) < AXIS_Y + 24 || x(t) > width - 24) continue; // clear of the count labels and the edge
      kids.push(s("text", { class: "axis", x: x(t), y: HEIGHT + 13, "text-anchor": "middle" }, fmtTick(t, span)));
    }
    this.sel = s("rect", { class: "sel", x: 0, y: 0, width: 0, height: HEIGHT, visibility: "hidden" });
    kids.push(this.sel);
    this.svg.replaceChildren(...kids);
    this.x = x;
    this.tFromX = (px) => d.domain0 + ((Math.min(width, Math.max(AXIS_Y, px)) - AXIS_Y) / plotW) * span;
    this.legend.replaceChildren(...ordered.map((k) => {
      const cls = levelClass(k);
      const n = d.buckets.reduce((acc, b) => acc + (b.counts[k] || 0), 0);
      return h("span", { class: "key" }, h("i", { class: "sw" + (cls ? ` lv-${cls}` : " lv-other") }), k || "(none)",
               h("b", {}, fmtCount(n)));
    }));
    this.note.textContent = `${d.total.toLocaleString()} records · ${fmtDuration(step)} buckets` +
      (d.partial ? " · partial (some partitions did not answer or ran out of time)" : "");
    this.note.classList.toggle("warn", !!d.partial);
  }

  px(ev) {
    const r = this.svg.getBoundingClientRect();
    return ev.clientX - r.left;
  }

  down(ev) {
    if (!this.data || ev.button !== 0) return;
    this.svg.setPointerCapture(ev.pointerId);
    this.drag = { x0: this.px(ev) };
  }

  move(ev) {
    if (!this.data) return;
    const px = this.px(ev);
    if (this.drag) {
      const a = Math.max(AXIS_Y, Math.min(this.drag.x0, px));
      const b = Math.min(this.svg.clientWidth, Math.max(this.drag.x0, px));
      this.sel.setAttribute("x", a);
      this.sel.setAttribute("width", Math.max(0, b - a));
      this.sel.setAttribute("visibility", "visible");
      this.tip.hidden = true;
      return;
    }
    this.hover(px, ev);
  }

  up(ev) {
    const drag = this.drag;
    this.drag = null;
    if (!drag) return;
    this.sel.setAttribute("visibility", "hidden");
    const px = this.px(ev);
    if (Math.abs(px - drag.x0) < 4) return; // a click, not a drag
    const from = Math.round(this.tFromX(Math.min(drag.x0, px)));
    const to = Math.round(this.tFromX(Math.max(drag.x0, px)));
    if (to > from) this.onSelect(from, to);
  }

  zoomOut() {
    const d = this.data;
    if (!d) return;
    const span = d.end_ms - d.start_ms + 1;
    const mid = d.start_ms + span / 2;
    const to = Math.min(Date.now(), Math.round(mid + span));
    this.onSelect(Math.round(to - 2 * span), to);
  }

  hover(px, ev) {
    const d = this.data;
    const t = Math.floor(this.tFromX(px) / d.step_ms) * d.step_ms;
    const b = d.buckets.find((x) => x.t === t);
    const rows = b ? orderKeys(Object.keys(b.counts)).filter((k) => b.counts[k] > 0) : [];
    const total = rows.reduce((acc, k) => acc + b.counts[k], 0);
    this.tip.replaceChildren(
      h("div", { class: "tip-time" }, fmtTime(t), " +", fmtDuration(d.step_ms)),
      ...rows.map((k) => {
        const cls = levelClass(k);
        return h("div", { class: "tip-row" }, h("i", { class: "sw" + (cls ? ` lv-${cls}` : " lv-other") }),
                 h("span", {}, k || "(none)"), h("b", {}, b.counts[k].toLocaleString()));
      }),
      h("div", { class: "tip-row total" }, h("span", {}, "total"), h("b", {}, total.toLocaleString())),
    );
    this.tip.hidden = false;
    const r = this.root.getBoundingClientRect();
    const left = ev.clientX - r.left + 14;
    this.tip.style.left = `${Math.min(left, r.width - 190)}px`;
    this.tip.style.top = `${ev.clientY - r.top + 8}px`;
  }
}
