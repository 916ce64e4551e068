// The viewer's filters <-> the page URL <-> read API parameters. The URL uses the API's own
// parameter names (service, level, label.<k>, -service, -level, -label.<k>, since, until), so a
// view's address and the API request it makes read the same.
"use strict";

export const KNOWN_LEVELS = ["DEBUG", "INFO", "WARN", "WARNING", "ERROR"];
const CHIP_LEVELS = ["DEBUG", "INFO", "WARN", "ERROR"];
const EXTRA = /^-?(service|level|label\..+)$/;

export function fromUrl() {
  const p = new URLSearchParams(location.search);
  const levels = [];
  const extra = [];
  for (const [key, value] of p) {
    if (key === "level" && CHIP_LEVELS.includes(value)) levels.push(value);
    else if (key !== "service" && EXTRA.test(key)) extra.push({ key, value });
  }
  return {
    service: p.get("service") || "", levels, q: p.get("q") || "", since: p.get("since") || "",
    until: p.get("until") || "", limit: p.get("limit") || "100", extra,
    auto: p.get("auto") === "1", live: p.get("live") === "1",
  };
}

export function toUrl(f) {
  const p = new URLSearchParams();
  if (f.service) p.set("service", f.service);
  for (const lv of f.levels) p.append("level", lv);
  for (const e of f.extra) p.append(e.key, e.value);
  if (f.q) p.set("q", f.q);
  if (f.since) p.set("since", f.since);
  if (f.until) p.set("until", f.until);
  if (f.limit !== "100") p.set("limit", f.limit);
  if (f.auto) p.set("auto", "1");
  if (f.live) p.set("live", "1");
  const qs = p.toString();
  const url = qs ? "?" + qs : location.pathname;
  if (url !== location.search) history.replaceState(null, "", url);
}

/** The /v1/logs filter parameters of f (also used by tail, volume, values and export). */
export function apiParams(f) {
  const p = new URLSearchParams();
  if (f.service) p.set("service", f.service);
  for (const lv of f.levels) {
    p.append("level", lv);
    if (lv === "WARN") p.append("level", "WARNING");
  }
  for (const e of f.extra) {
    p.append(e.key, e.value);
    if (e.key.endsWith("level") && e.value.toUpperCase() === "WARN") p.append(e.key, "WARNING");
  }
  const re = /^\/(.+)\/$/.exec(f.q);
  if (re) p.set("regex", re[1]);
  else if (f.q) p.set("contains", f.q);
  if (f.since) p.set("since", f.since);
  if (f.until) p.set("until", f.until);
  return p;
}

/** "pod = api-1" or "service ≠ billing" for a filter chip. */
export function chipLabel(e) {
  const neg = e.key.startsWith("-");
  const name = e.key.replace(/^-/, "").replace(/^label\./, "");
  return `${name} ${neg ? "≠" : "="} ${e.value}`;
}
