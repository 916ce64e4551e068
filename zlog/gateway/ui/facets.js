// The facet panel: top values of service, level and the label keys seen in the result, with
// counts, from GET /v1/stats/values. A click includes a value, a shift-click excludes it (the
// caller turns that into a filter and the URL); active values are marked.
"use strict";

import { fetchJson, fmtCount, h, levelClass } from "./dom.js";

const TOP = 8;           // values per field
const MAX_LABELS = 6;    // label keys shown, the most common in the loaded rows first

/** The label keys of the loaded records, most frequent first. */
export function labelKeys(records) {
  const seen = new Map();
  for (const rec of records) {
    for (const k of Object.keys(rec.labels || {})) seen.set(k, (seen.get(k) || 0) + 1);
  }
  return [...seen.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, MAX_LABELS)
    .map(([k]) => k);
}

export class Facets {
  /** onPick(field, value, exclude): field is "service", "level" or "label.<k>". */
  constructor(root, { onPick }) {
    this.root = root;
    this.onPick = onPick;
    this.abort = null;
  }

  /**
   * Load and draw facets for these API filter params. `active(field, value)` says whether a value
   * is already a filter ("include" | "exclude" | ""); `excluded` lists [field, value] exclusions,
   * shown struck through at the end of their field (the counts cannot list them: they are out).
   */
  async load(params, labels, active, excluded = []) {
    this.abort?.abort();
    const ctl = new AbortController();
    this.abort = ctl;
    const keys = new Set(labels);
    for (const [f] of excluded) if (f.startsWith("label.")) keys.add(f.slice(6));
    const fields = [["service", "service"], ["level", "level"], ...[...keys].map((k) => [`label.${k}`, k])];
    this.root.setAttribute("aria-busy", "true");
    const results = await Promise.all(fields.map(async ([name, field]) => {
      const p = new URLSearchParams(params);
      p.set("field", field);
      p.set("limit", String(TOP));
      try {
        return { name, body: await fetchJson("/v1/stats/values?" + p, ctl.signal) };
      } catch (err) {
        return { name, error: err };
      }
    }));
    if (ctl.signal.aborted) return;
    this.root.removeAttribute("aria-busy");
    this.root.replaceChildren(h("h2", {}, "Fields"), ...results.map((r) => this.section(r, active, excluded)));
  }

  section({ name, body, error }, active, excluded) {
    const title = name.startsWith("label.") ? name.slice(6) : name;
    const head = h("h3", {}, h("span", {}, title));
    if (error) {
      if (error.name === "AbortError") return h("div");
      return h("section", { class: "facet", dataset: { field: name } }, head,
               h("p", { class: "facet-err" }, error.message));
    }
    const max = Math.max(1, ...body.values.map((v) => v.count));
    head.append(h("b", { title: "records counted" }, fmtCount(body.total) + (body.partial ? "+" : "")));
    const list = h("ul", {});
    const values = [...body.values];
    for (const [f, v] of excluded) {
      if (f === name && !values.some((x) => x.value === v)) values.push({ value: v, count: null });
    }
    for (const { value, count } of values) {
      const state = count === null ? "exclude" : active(name, value);
      const cls = name === "level" ? levelClass(value) : "";
      const bar = h("i", { class: "fill" + (cls ? ` lv-${cls}` : "") });
      bar.style.width = `${(100 * (count || 0)) / max}%`;
      const li = h("li", {
        class: "fv" + (state ? ` ${state}` : ""),
        title: state ? `${title} = ${value}\nclick: remove this filter`
                     : `${title} = ${value}\nclick: only this · shift-click: exclude`,
        tabindex: 0,
        dataset: { field: name, value },
        onclick: (ev) => this.onPick(name, value, ev.shiftKey),
        onkeydown: (ev) => { if (ev.key === "Enter") this.onPick(name, value, ev.shiftKey); },
      }, bar, h("span", { class: "v" }, value === "" ? "(empty)" : value), h("span", { class: "n" }, count === null ? "excluded" : fmtCount(count)));
      list.append(li);
    }
    if (!values.length) list.append(h("li", { class: "none" }, "no values"));
    return h("section", { class: "facet", dataset: { field: name } }, head, list);
  }

  /** Show why there are no facets (e.g. the stats API is not available). */
  fail(message) {
    this.root.replaceChildren(h("h2", {}, "Fields"), h("p", { class: "facet-err" }, message));
  }
}
