// llmroute dashboard: fetches the panels' JSON from this service and draws small SVG charts.
// No third-party code, no inline script (the page's Content-Security-Policy forbids it).
// Every chart and number carries its value in data-* attributes, so a test can read what was drawn.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16",
  "#f97316", "#64748b", "#14b8a6", "#a855f7"];

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function money(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  return (v < 0 ? "−$" : "$") + (a >= 100 ? a.toFixed(0) : a >= 1 ? a.toFixed(2) : a.toFixed(4));
}
function pct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%"; }
function ms(v) { return v === null || v === undefined ? "–" : v >= 100 ? v.toFixed(0) + " ms" : v.toFixed(1) + " ms"; }
function num(v) { return v === null || v === undefined ? "–" : Math.round(v).toLocaleString("en-US"); }

function setValue(id, value, text) {
  const node = document.getElementById(id);
  node.textContent = text;
  node.setAttribute("data-value", value === null || value === undefined ? "" : String(value));
}

// A model keeps its colour across views and windows: picked from its name, not from its rank.
function colourOf(models) {
  const map = {}, used = new Set();
  for (const m of models) {
    let h = 0;
    for (const ch of m) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    let i = h % PALETTE.length;
    for (let k = 0; k < PALETTE.length && used.has(i); k++) i = (i + 1) % PALETTE.length;
    used.add(i);
    map[m] = PALETTE[i];
  }
  return map;
}

function legend(node, colours) {
  clear(node);
  for (const [name, colour] of Object.entries(colours)) {
    const item = el("span", { "class": "item", "data-key": name });
    const sw = el("svg:svg", { width: 10, height: 10, "class": "swatch" });
    sw.appendChild(el("svg:rect", { width: 10, height: 10, fill: colour }));
    item.appendChild(sw);
    item.appendChild(document.createTextNode(name));
    node.appendChild(item);
  }
}

function size(svg) {
  const box = svg.getBoundingClientRect();
  return { w: Math.max(200, box.width || 600), h: Math.max(120, box.height || 220) };
}

function label(iso, step) {
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return step >= 86400 ? `${d.getUTCMonth() + 1}/${d.getUTCDate()}` : `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
}

// Stacked bars over time: series = {model: [value per bucket]}.
function stackedBars(svg, buckets, series, colours, step, format) {
  clear(svg);
  const { w, h } = size(svg);
  const left = 64, bottom = 22, top = 8, right = 8;
  const totals = buckets.map((_, i) => Object.values(series).reduce((s, v) => s + (v[i] || 0), 0));
  const top_ = Math.max(...totals, 0);
  const max = format === num ? Math.ceil(top_ / 4) * 4 : top_;  // whole-number ticks for counts
  const grand = totals.reduce((a, b) => a + b, 0);
  svg.setAttribute("data-total", String(grand));
  svg.setAttribute("data-points", String(buckets.length));
  if (grand <= 0) {
    svg.appendChild(el("svg:text", { x: w / 2, y: h / 2, "text-anchor": "middle", "class": "empty" }, "no data in this window"));
    return;
  }
  const plotW = w - left - right, plotH = h - top - bottom;
  const bw = plotW / buckets.length;
  const tick = format === num ? (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)) : format;
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4, y = top + plotH - (plotH * k) / 4;
    svg.appendChild(el("svg:line", { x1: left, x2: w - right, y1: y, y2: y, stroke: "#e4e7eb" }));
    svg.appendChild(el("svg:text", { x: left - 4, y: y + 4, "text-anchor": "end" }, tick(v)));
  }
  const every = Math.max(1, Math.ceil(buckets.length / 8));
  buckets.forEach((b, i) => {
    let y = top + plotH;
    for (const [model, values] of Object.entries(series)) {
      const v = values[i] || 0;
      if (v <= 0) continue;
      const hgt = (plotH * v) / max;
      y -= hgt;
      const r = el("svg:rect", { x: left + i * bw + 1, y: y, width: Math.max(1, bw - 2), height: hgt,
        fill: colours[model], "data-key": model, "data-bucket": b, "data-value": v });
      r.appendChild(el("svg:title", {}, `${model} ${label(b, step)}: ${format(v)}`));
      svg.appendChild(r);
    }
    if (i % every === 0) {
      svg.appendChild(el("svg:text", { x: left + i * bw + bw / 2, y: h - 6, "text-anchor": "middle" }, label(b, step)));
    }
  });
}

// Horizontal bars: items = [{key, value}].
function hbars(svg, items, format, colours) {
  clear(svg);
  svg.classList.add("bars");
  const { w } = size(svg);
  const rowH = 24, left = 150, right = 90;
  const h = Math.max(40, items.length * rowH + 8);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("height", h);
  const max = Math.max(...items.map((it) => it.value), 0);
  svg.setAttribute("data-total", String(items.reduce((s, it) => s + it.value, 0)));
  if (!items.length) {
    svg.appendChild(el("svg:text", { x: w / 2, y: 24, "text-anchor": "middle", "class": "empty" }, "no data in this window"));
    return;
  }
  items.forEach((it, i) => {
    const y = 4 + i * rowH;
    const bw = max > 0 ? ((w - left - right) * it.value) / max : 0;
    svg.appendChild(el("svg:text", { x: left - 6, y: y + 15, "text-anchor": "end" }, it.key || "(no tenant)"));
    svg.appendChild(el("svg:rect", { x: left, y: y + 3, width: Math.max(bw, it.value > 0 ? 1 : 0), height: rowH - 8,
      fill: (colours && colours[it.key]) || PALETTE[0], "data-key": it.key, "data-value": it.value }));
    svg.appendChild(el("svg:text", { x: left + bw + 6, y: y + 15, "class": "value" }, format(it.value)));
  });
}

function table(node, header, rows, textCols) {
  clear(node);
  const head = el("tr");
  header.forEach((h, i) => head.appendChild(el("th", { "class": textCols && textCols.includes(i) ? "text" : "" }, h)));
  node.appendChild(head);
  for (const row of rows) {
    const tr = el("tr", { "data-key": row.key });
    row.cells.forEach((c, i) => tr.appendChild(el("td", { "class": textCols && textCols.includes(i) ? "text" : "" }, c)));
    node.appendChild(tr);
  }
}

function query() {
  const w = document.getElementById("window").value;
  const t = document.getElementById("tenant").value;
  const q = new URLSearchParams({ window: w });
  if (t !== "*") q.set("tenant", t);
  return q;
}

async function getJSON(path, params) {
  const res = await fetch(`${path}?${params.toString()}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (res.status === 401) { window.location.assign("/dashboard"); throw new Error("signed out"); }
  const body = await res.json();
  if (!res.ok) throw new Error((body.error && body.error.message) || res.statusText);
  return body;
}

function renderOverview(d) {
  const served = document.getElementById("served");
  served.textContent = d.served.router_version ? `serving ${d.served.router_version}` : "no router loaded";
  if (d.error) { document.getElementById("status").textContent = d.error; return; }
  const select = document.getElementById("tenant");
  const chosen = select.value;
  const known = new Set(Array.from(select.options).map((o) => o.value));
  for (const t of d.tenants) {
    if (!known.has(t)) select.appendChild(el("option", { value: t }, t || "(no tenant)"));
  }
  select.value = chosen;
  const t = d.totals;
  setValue("kpi-spend", t.cost_usd, money(t.cost_usd));
  setValue("kpi-expected", t.expected_cost_usd, money(t.expected_cost_usd));
  setValue("kpi-save-best", t.best_saving_usd, money(t.best_saving_usd));
  setValue("kpi-save-best-pct", t.savings_vs_best_pct, t.best_n ? `${pct(t.savings_vs_best_pct)} of ${money(t.best_cost_usd)} over ${num(t.best_n)} decisions` : "no counterfactual logged");
  setValue("kpi-save-seed", t.seed_saving_usd, money(t.seed_saving_usd));
  setValue("kpi-save-seed-pct", t.savings_vs_seed_pct, t.seed_n ? `${pct(t.savings_vs_seed_pct)} of ${money(t.seed_cost_usd)} over ${num(t.seed_n)} decisions` : "no counterfactual logged");
  setValue("kpi-decisions", t.decisions, num(t.decisions));

  const models = Object.keys(d.series);
  const colours = colourOf(models);
  const spend = {}, mix = {};
  for (const m of models) { spend[m] = d.series[m].cost_usd; mix[m] = d.series[m].decisions; }
  stackedBars(document.getElementById("chart-spend"), d.buckets, spend, colours, d.step_s, money);
  legend(document.getElementById("legend-spend"), colours);
  stackedBars(document.getElementById("chart-mix"), d.buckets, mix, colours, d.step_s, num);
  legend(document.getElementById("legend-mix"), colours);
  hbars(document.getElementById("chart-tenants"), d.by_tenant.map((r) => ({ key: r.tenant, value: r.cost_usd })), money);
  hbars(document.getElementById("chart-models"), d.by_model.map((r) => ({ key: r.model, value: r.cost_usd })), money, colours);
  hbars(document.getElementById("chart-reasons"), d.reasons.map((r) => ({ key: r.reason, value: r.count })), num);

  setValue("q-feedback", t.feedback, num(t.feedback));
  setValue("q-mean", t.mean_quality, t.mean_quality === null ? "–" : t.mean_quality.toFixed(3));
  setValue("q-attainment", t.target_attainment, pct(t.target_attainment));
  setValue("q-escalation", t.escalation_rate, pct(t.escalation_rate));
  setValue("q-failed", t.call_failure_rate, `${pct(t.call_failure_rate)} of ${num(t.calls)} calls`);
  setValue("q-errors", t.attempt_error_rate, pct(t.attempt_error_rate));
  setValue("q-timeouts", t.attempt_timeout_rate, pct(t.attempt_timeout_rate));

  const lat = [];
  for (const [kind, name] of [["route", "/route"], ["call", "provider call"]]) {
    const l = d.latency[kind];
    if (l && l.n > 0) { lat.push({ key: `${name} p50`, value: l.p50_ms }, { key: `${name} p99`, value: l.p99_ms }); }
  }
  hbars(document.getElementById("chart-latency"), lat, ms);

  table(document.getElementById("models-table"), ["model", "decisions", "calls", "spend", "quality", "escalation"],
    d.by_model.map((r) => ({ key: r.model, cells: [r.model, num(r.decisions), num(r.calls), money(r.cost_usd),
      r.mean_quality === null ? "–" : r.mean_quality.toFixed(3), pct(r.escalation_rate)] })));
  document.getElementById("prompts-note").textContent = d.prompts_shown ? "" : "Prompts are redacted on this service: none are shown.";
  table(document.getElementById("recent"), ["time (UTC)", "tenant", "model", "reason", "expected cost", "prompt"],
    d.recent.map((r) => ({ key: r.decision_id, cells: [r.created_at.slice(0, 19).replace("T", " "), r.tenant || "–",
      r.model, r.reason_kind || "–", money(r.expected_cost_usd), d.prompts_shown ? (r.prompt || "") : "(redacted)"] })), [5]);
  renderBudgets(d.budgets);
}

// A bar of spend against the limit (capped at the full width; its colour says 80% / 100% reached).
function budgetBar(share) {
  const svg = el("svg:svg", { "class": "budget-bar", viewBox: "0 0 100 10", preserveAspectRatio: "none",
    "data-share": share === null ? "" : String(share) });
  svg.appendChild(el("svg:rect", { x: 0, y: 0, width: 100, height: 10, "class": "track" }));
  const filled = share === null ? 100 : Math.max(0, Math.min(1, share)) * 100;  // null: share of a $0 budget = inf
  const level = share === null || share >= 1 ? "over" : share >= 0.8 ? "near" : "ok";
  svg.appendChild(el("svg:rect", { x: 0, y: 0, width: filled, height: 10, "class": `fill ${level}` }));
  return svg;
}

function when(iso) { return iso ? iso.slice(0, 16).replace("T", " ") : "–"; }

function renderBudgets(b) {
  const node = clear(document.getElementById("budgets"));
  node.setAttribute("data-count", String(b.rows.length));
  if (b.note) node.appendChild(el("p", { "class": "muted", id: "budgets-note" }, b.note));
  if (b.file_error) node.appendChild(el("p", { "class": "error", id: "budgets-file-error" }, `budget file: ${b.file_error}`));
  if (!b.rows.length) return;
  const t = el("table", { "class": "grid", id: "budgets-table" });
  node.appendChild(t);
  const head = el("tr");
  ["budget", "scope", "window", "enforcement", "spent / limit", "share", "forecast at window end", "resets (UTC)", "alerts this window"]
    .forEach((h, i) => head.appendChild(el("th", { "class": [0, 1, 2, 3, 5, 8].includes(i) ? "text" : "" }, h)));
  t.appendChild(head);
  for (const r of b.rows) {
    const tr = el("tr", { "data-key": r.name, "data-scope": r.scope, "data-subject": r.subject,
      "data-enforcement": r.enforcement, "data-spent": String(r.spent_usd), "data-limit": String(r.amount_usd),
      "data-share": r.share === null ? "" : String(r.share), "data-forecast": r.forecast_usd === null ? "" : String(r.forecast_usd),
      "data-resets": r.resets_at || "", "data-alerts": r.alerts_fired.join(",") });
    const share = el("td", { "class": "text share" });
    share.appendChild(budgetBar(r.share));
    share.appendChild(el("span", {}, r.share === null ? "∞" : pct(r.share)));
    const rolling = r.resets_at === null;  // a rolling window never ends: nothing to forecast, nothing resets
    const forecast = rolling ? "–" : r.forecast_usd === null ? "too early" : money(r.forecast_usd) + (r.exceeds_at ? ` (over at ${when(r.exceeds_at)})` : "");
    const alertName = (k) => (k.startsWith("threshold:") ? pct(Number(k.slice(10))) : k);
    const text = (v) => el("td", { "class": "text" }, v);
    const cells = [text(r.name), text(`${r.scope} ${r.subject}`), text(`${r.window} (${r.timezone})`), text(r.enforcement),
      el("td", {}, `${money(r.spent_usd)} / ${money(r.amount_usd)}`), share, el("td", {}, forecast),
      el("td", {}, rolling ? "rolling" : when(r.resets_at)),
      el("td", { "class": r.alerts_fired.length ? "text alerts fired" : "text alerts" }, r.alerts_fired.map(alertName).join(", ") || "none")];
    for (const c of cells) tr.appendChild(c);
    t.appendChild(tr);
  }
}

function renderAB(d) {
  const node = clear(document.getElementById("ab"));
  if (!d.report) { node.appendChild(el("p", { "class": "muted", id: "ab-note" }, d.note)); return; }
  const r = d.report;
  node.appendChild(el("p", { id: "ab-verdict", "data-enough": String(r.enough_data) },
    `${d.experiment}: ${r.enough_data ? "" : "Not enough data yet. "}${(r.verdict || []).join(" ")}`));
  const t = el("table", { "class": "grid", id: "ab-arms" });
  node.appendChild(t);
  table(t, ["arm", "requests", "quality", "cost / request"], Object.entries(r.arms).map(([name, a]) => ({ key: name,
    cells: [name, num(a.requests), a.quality === null ? "–" : Number(a.quality).toFixed(3),
      money(a.mean_cost_usd !== null ? a.mean_cost_usd : a.mean_expected_cost_usd)] })));
  const interval = (c, f) => (c && c.diff !== null ? `${f(c.diff)} [${f(c.lo)}, ${f(c.hi)}]` : "–");
  const signed = (v) => (v === null ? "–" : (v >= 0 ? "+" : "") + v.toFixed(3));
  const diffs = el("table", { "class": "grid", id: "ab-diffs" });
  node.appendChild(diffs);
  table(diffs, [`vs ${r.experiment.control}`, "quality (95% CI)", "cost (95% CI)"],
    Object.entries(r.comparisons).map(([name, c]) => ({ key: name,
      cells: [name, interval(c.quality.welch, signed), interval(c.cost.welch, money)] })));
}

function renderRegistry(d) {
  const node = clear(document.getElementById("registry"));
  node.appendChild(el("p", { id: "registry-served", "data-value": d.router_version || "" },
    `serving ${d.router_version || "(nothing loaded)"} from ${d.model}`));
  if (d.note) node.appendChild(el("p", { "class": "muted", id: "registry-note" }, d.note));
  if (d.versions.length) {
    const t = el("table", { "class": "grid", id: "registry-versions" });
    node.appendChild(t);
    table(t, ["version", "aliases", "val AIQ", "promoted"], d.versions.map((v) => ({ key: v.version,
      cells: [v.version, v.aliases.join(", ") || "–", v.val_aiq === null ? "–" : v.val_aiq.toFixed(4), v.promoted_at || "–"] })));
  }
}

// Each panel renders as soon as its data arrives (the A/B analysis can be the slow one on a large log);
// body[data-ready] turns "true" when all three have rendered.
let generation = 0;  // a newer refresh (window or tenant changed) makes an older one's answers stale

async function refresh() {
  const mine = ++generation;
  const status = document.getElementById("status");
  status.textContent = "loading…";
  status.classList.remove("error");
  document.body.setAttribute("data-ready", "false");
  const params = query();
  const failures = [];
  const panel = (promise, render, name) => promise
    .then((data) => { if (mine === generation) render(data); })
    .catch((err) => { failures.push(`${name}: ${err.message}`); });
  await Promise.all([
    panel(getJSON("/dashboard/api/overview", params), renderOverview, "overview"),
    panel(getJSON("/dashboard/api/ab", new URLSearchParams({ window: params.get("window") })), renderAB, "A/B"),
    panel(getJSON("/dashboard/api/registry", new URLSearchParams()), renderRegistry, "registry"),
  ]);
  if (mine !== generation) return;
  if (failures.length) {
    status.textContent = `error: ${failures.join("; ")}`;
    status.classList.add("error");
    return;
  }
  status.textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
  document.body.setAttribute("data-view", `${params.get("window")}|${params.has("tenant") ? params.get("tenant") : "*"}`);
  document.body.setAttribute("data-ready", "true");
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("window").addEventListener("change", refresh);
  document.getElementById("tenant").addEventListener("change", refresh);
  refresh();
  setInterval(refresh, 60000);
});
