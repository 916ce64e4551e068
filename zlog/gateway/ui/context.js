// "Show context": the records around one record in its partition, by offset, fetched with
// GET /v1/partitions/{p}/records (which reads across segment boundaries), the record itself
// highlighted, with "more above" / "more below" growing the window.
"use strict";

import { badge, fetchJson, fmtTime, h } from "./dom.js";

export const AROUND = 10;  // records each side at first
const MORE = 20;           // records per "more" click

/** Records [from, from + n) of partition p (fewer at the ends of the log). */
export async function fetchRange(p, from, n) {
  const out = [];
  let offset = Math.max(0, from);
  let lowest = 0;
  let high = 0;
  while (out.length < n) {
    const body = await fetchJson(`/v1/partitions/${p}/records?offset=${offset}&limit=${n - out.length}`);
    lowest = body.lowest_offset;
    high = body.high_watermark;
    for (const r of body.records) if (r.offset < from + n) out.push(r);
    if (!body.records.length || body.next_offset >= from + n) break;
    offset = body.next_offset;
  }
  return { records: out, lowest, high };
}

export class ContextView {
  constructor(rec, q) {
    this.rec = rec;
    this.q = q;
    this.records = [];
    this.lowest = 0;
    this.high = 0;
    this.above = h("button", { type: "button", class: "btn small", "data-act": "above", onclick: () => this.more(-1) },
                   "▲ more above");
    this.below = h("button", { type: "button", class: "btn small", "data-act": "below", onclick: () => this.more(1) },
                   "▼ more below");
    this.list = h("div", { class: "ctx-lines", role: "list" });
    this.info = h("span", { class: "ctx-info" });
    this.el = h("div", { class: "context", "data-testid": "context" },
                h("div", { class: "ctx-head" }, h("b", {}, `Partition ${rec.partition}`), this.info, this.above),
                this.list, h("div", { class: "ctx-foot" }, this.below));
  }

  async open() {
    const o = this.rec.offset;
    this.info.textContent = "loading…";
    try {
      const got = await fetchRange(this.rec.partition, o - AROUND, 2 * AROUND + 1);
      this.records = got.records;
      this.lowest = got.lowest;
      this.high = got.high;
      this.render();
      // Scroll the list itself (not the page) so the record sits in the middle of its context.
      const anchor = this.list.querySelector(".anchor");
      if (anchor) this.list.scrollTop = anchor.offsetTop - this.list.clientHeight / 2;
    } catch (err) {
      this.info.textContent = `context: ${err.message}`;
    }
  }

  async more(dir) {
    if (!this.records.length) return;
    const first = this.records[0].offset;
    const last = this.records[this.records.length - 1].offset;
    const from = dir < 0 ? Math.max(this.lowest, first - MORE) : last + 1;
    const n = dir < 0 ? first - from : MORE;
    if (n <= 0) return;
    try {
      const got = await fetchRange(this.rec.partition, from, n);
      this.lowest = got.lowest;
      this.high = got.high;
      this.records = dir < 0 ? [...got.records.filter((r) => r.offset < first), ...this.records]
                             : [...this.records, ...got.records.filter((r) => r.offset > last)];
      this.render();
    } catch (err) {
      this.info.textContent = `context: ${err.message}`;
    }
  }

  render() {
    const o = this.rec.offset;
    this.list.replaceChildren(...this.records.map((r) => h("div", {
      class: "ctx-line" + (r.offset === o ? " anchor" : ""), role: "listitem", dataset: { offset: r.offset },
    }, h("span", { class: "off" }, String(r.offset)), h("span", { class: "time" }, fmtTime(r.timestamp)),
       badge(r.level), h("span", { class: "svc" }, r.service), h("span", { class: "msg" }, r.message))));
    const first = this.records[0]?.offset ?? o;
    const last = this.records[this.records.length - 1]?.offset ?? o;
    this.above.disabled = first <= this.lowest;
    // "below" stays enabled at the head: records keep arriving.
    this.below.classList.toggle("dim", last + 1 >= this.high);
    this.info.textContent = `offsets ${first}–${last} · ${o - first} before, ${last - o} after`;
  }
}
