// The table's rows: one <tr class="row"> per record (its record kept on the element), a detail
// row under an open one (labels, message, JSON, actions, context), and the keyboard selection.
// Record fields reach the page as text only (dom.js).
"use strict";

import { ContextView } from "./context.js";
import { badge, fmtTime, h, highlighted } from "./dom.js";

export function rowFor(rec, q, fresh) {
  const tr = h("tr", { class: "row" + (fresh ? " new" : ""), dataset: { key: `${rec.partition}:${rec.offset}` } },
    h("td", { class: "time", title: `received ${fmtTime(rec.received_at || rec.timestamp)}` }, fmtTime(rec.timestamp)),
    h("td", {}, badge(rec.level)),
    h("td", { class: "svc", title: rec.service }, rec.service),
    h("td", { class: "msg", title: rec.message }, ...highlighted(rec.message, q)),
    h("td", { class: "num" }, `${rec.partition} · ${rec.offset}`));
  tr.record = rec;
  return tr;
}

function detailFor(rec, { pick, query }) {
  const ctxSlot = h("div", { class: "ctx-slot" });
  const labels = Object.entries(rec.labels || {}).map(([k, v]) => h("span", {
    class: "chip", title: "click: only this · shift-click: exclude",
    onclick: (ev) => pick(`label.${k}`, v, ev.shiftKey),
  }, h("b", {}, `${k}=`), v));
  const showContext = async (btn) => {
    if (ctxSlot.firstChild) { ctxSlot.replaceChildren(); btn.textContent = "Show context"; return; }
    btn.textContent = "Hide context";
    const view = new ContextView(rec, query());
    ctxSlot.replaceChildren(view.el);
    await view.open();
  };
  return h("tr", { class: "detail" }, h("td", { colspan: 5 },
    labels.length ? h("div", { class: "labels" }, ...labels) : null,
    h("p", { class: "message" }, rec.message),
    h("pre", { class: "json" }, JSON.stringify(rec, null, 2)),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "btn", "data-act": "context", onclick: (ev) => showContext(ev.currentTarget) },
        "Show context"),
      h("button", { type: "button", class: "btn", "data-act": "copy",
                    onclick: () => navigator.clipboard?.writeText(JSON.stringify(rec)) }, "Copy JSON"),
      h("button", { type: "button", class: "btn", "data-act": "service", onclick: () => pick("service", rec.service, false) },
        `Only ${rec.service}`),
      h("button", { type: "button", class: "btn", "data-act": "not-service",
                    onclick: () => pick("service", rec.service, true) }, `Not ${rec.service}`)),
    ctxSlot));
}

export function toggleDetail(tr, open, actions) {
  const next = tr.nextElementSibling;
  const isOpen = !!(next && next.classList.contains("detail"));
  if (open === undefined) open = !isOpen;
  if (isOpen && !open) { next.remove(); tr.classList.remove("open"); }
  if (!isOpen && open) { tr.after(detailFor(tr.record, actions)); tr.classList.add("open"); }
}

export function closeDetails(rows) {
  for (const d of rows.querySelectorAll("tr.detail")) d.remove();
  for (const r of rows.querySelectorAll("tr.open")) r.classList.remove("open");
}

export function select(rows, tr) {
  for (const r of rows.querySelectorAll("tr.sel")) r.classList.remove("sel");
  if (!tr) return;
  tr.classList.add("sel");
  tr.scrollIntoView({ block: "nearest" });
}

export function moveSelection(tbody, delta, actions) {
  const rows = [...tbody.querySelectorAll("tr.row")];
  if (!rows.length) return;
  const cur = rows.findIndex((r) => r.classList.contains("sel"));
  const next = rows[Math.max(0, Math.min(rows.length - 1, cur < 0 ? 0 : cur + delta))];
  const hadDetail = cur >= 0 && rows[cur].classList.contains("open");
  if (hadDetail && rows[cur] !== next) { toggleDetail(rows[cur], false, actions); toggleDetail(next, true, actions); }
  select(tbody, next);
}
