// GridSwarm operator dashboard: plain JavaScript over the coordinator's /api/v1 and ECharts.
// Everything from the network is inserted as text (never as HTML): alarm messages come from agents.
"use strict";

const API = "/api/v1";
const state = { sites: [], charts: {}, events: [], pending: new Map() };

// ---------------------------------------------------------------- helpers

async function getJSON(path) {
  const res = await fetch(path, { headers: authHeaders() });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

function authHeaders() {
  const key = sessionStorage.getItem("operatorKey");
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function table(id, columns, rows, emptyText = "nothing yet") {
  const t = document.getElementById(id);
  t.replaceChildren(el("thead", {}, el("tr", {}, ...columns.map(([title]) => el("th", {}, title)))));
  const body = el("tbody");
  if (!rows.length) body.append(el("tr", {}, el("td", { class: "empty", colspan: columns.length }, emptyText)));
  for (const r of rows) body.append(el("tr", {}, ...columns.map(([, f]) => { const v = f(r); return el("td", {}, v instanceof Node ? v : String(v ?? "–")); })));
  t.append(body);
  return body;
}

function cards(id, items) {
  document.getElementById(id).replaceChildren(
    ...items.map(([k, v]) => el("div", { class: "card" }, el("div", { class: "k" }, k), el("div", { class: "v" }, String(v ?? "–")))));
}

const hhmm = (ts) => ts == null ? "–" : new Date(ts * 1000).toISOString().slice(5, 16).replace("T", " ");
const tokens = (units) => units == null ? "–" : (units / 1e6).toFixed(4);
const short = (a) => a ? `${a.slice(0, 6)}…${a.slice(-4)}` : "–";
const siteName = (addr) => { const i = state.sites.findIndex((s) => s.address === addr); return i < 0 ? short(addr) : `site${i} ${short(addr)}`; };

function chart(id) {
  if (!state.charts[id]) state.charts[id] = echarts.init(document.getElementById(id));
  return state.charts[id];
}
window.addEventListener("resize", () => Object.values(state.charts).forEach((c) => c.resize()));

async function allPages(path, max = 20) {
  let rows = [], cursor = null;
  for (let i = 0; i < max; i++) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await getJSON(path + (cursor ? `${sep}cursor=${cursor}` : ""));
    rows = rows.concat(page.data);
    if (!page.next_cursor) break;
    cursor = page.next_cursor;
  }
  return rows;
}

// ---------------------------------------------------------------- market

async function loadMarket() {
  const series = await allPages(`${API}/market/series?limit=1000`, 5);
  const zones = [...new Set(series.flatMap((p) => Object.keys(p.zones)))].sort();
  const last = [...series].reverse().find((p) => p.status === "settled" || p.clearing_price != null);
  cards("market-cards", [
    ["intervals", series.length],
    ["latest price (base units/Wh)", last?.clearing_price],
    ["latest volume (Wh)", last?.volume_wh],
    ["welfare (tokens)", last ? tokens(last.welfare) : null],
    ["grid fees (tokens)", last ? tokens(last.fee_revenue) : null],
    ["congestion rent (tokens)", last ? tokens(last.congestion_rent) : null],
    ["flows", last ? Object.entries(last.flows).map(([k, v]) => `${k} ${v} Wh`).join(", ") || "none" : null],
  ]);
  const x = series.map((p) => hhmm(p.delivery_start));
  chart("chart-prices").setOption({
    tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { top: 50, left: 55, right: 55, bottom: 30 },
    xAxis: { type: "category", data: x },
    yAxis: [{ type: "value", name: "price" }, { type: "value", name: "Wh" }],
    series: [
      ...zones.map((z) => ({ name: `price ${z}`, type: "line", step: "middle", data: series.map((p) => p.zones[z]?.price ?? null) })),
      ...zones.map((z) => ({ name: `sold in ${z}`, type: "bar", stack: "vol", yAxisIndex: 1, data: series.map((p) => p.zones[z]?.sold_wh ?? 0) })),
    ],
  }, true);
  let depth = null;
  try { depth = await getJSON(`${API}/market/depth`); } catch (e) { depth = null; }
  document.getElementById("depth-interval").textContent = depth ? depth.interval : "–";
  const steps = (curve) => curve.flatMap((l, i) => [[i ? curve[i - 1].cumulative_wh : 0, l.price], [l.cumulative_wh, l.price]]);
  chart("chart-depth").setOption({
    tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { top: 50, left: 55, right: 20, bottom: 40 },
    xAxis: { type: "value", name: "cumulative Wh", nameLocation: "middle", nameGap: 25 },
    yAxis: { type: "value", name: "price" },
    series: depth ? [
      { name: "supply", type: "line", data: steps(depth.supply), showSymbol: false },
      { name: "demand", type: "line", data: steps(depth.demand), showSymbol: false },
      { name: "clearing price", type: "line", data: depth.clearing_price == null ? [] : [[0, depth.clearing_price], [Math.max(...depth.supply.map((l) => l.cumulative_wh), 1), depth.clearing_price]], lineStyle: { type: "dashed" }, showSymbol: false },
    ] : [],
  }, true);
  const trades = depth ? (await getJSON(`${API}/market/trades?interval=${depth.interval}&limit=1000`)).data : [];
  table("market-trades", [
    ["owner", (t) => siteName(t.owner)], ["side", (t) => t.side], ["Wh", (t) => t.qty_wh], ["price", (t) => t.price],
    ["delivered Wh", (t) => t.delivered_wh], ["amount (tokens)", (t) => tokens(t.amount)], ["penalty", (t) => tokens(t.penalty)],
  ], trades);
}

// ---------------------------------------------------------------- sites

async function loadSites() {
  state.sites = (await getJSON(`${API}/sites`)).data;
  for (const id of ["site-select", "config-site"]) {
    const sel = document.getElementById(id);
    const keep = sel.value;
    sel.replaceChildren(...state.sites.map((s, i) => el("option", { value: s.address }, `site${i} ${s.address} (${s.zone_name})`)));
    if (keep) sel.value = keep;
  }
}

async function loadSite() {
  await loadSites();
  const addr = document.getElementById("site-select").value;
  if (!addr) return;
  const site = state.sites.find((s) => s.address === addr);
  const [summary, tel, trades] = await Promise.all([
    getJSON(`${API}/participants/${addr}/summary`),
    allPages(`${API}/sites/${addr}/telemetry?limit=1000`, 3),
    getJSON(`${API}/market/trades?owner=${addr}&limit=1000`),
  ]);
  cards("site-cards", [
    ["link", site.connected ? "connected" : "offline"], ["zone", site.zone_name],
    ["net export now (W)", site.net_export_w?.toFixed(0)], ["SoC", site.soc == null ? null : `${(site.soc * 100).toFixed(1)} %`],
    ["sold / bought (Wh)", `${summary.sold_wh} / ${summary.bought_wh}`],
    ["received / paid (tokens)", `${tokens(summary.received)} / ${tokens(summary.paid)}`],
    ["forfeited (tokens)", tokens(summary.forfeited)],
    [`saving vs tariff ${summary.tariff.import_price}/${summary.tariff.export_price}`, tokens(summary.saving)],
  ]);
  // Power flow: per-device power when the agent reports devices, else the site's net exchange.
  const devices = Object.entries(site.devices || {});
  const flow = devices.length
    ? devices.map(([name, d]) => [name, Number(d.power_w ?? d.p_w ?? 0)])
    : [["grid exchange (net export)", site.net_export_w ?? 0]];
  chart("chart-flow").setOption({
    tooltip: {}, grid: { left: 170, right: 30, bottom: 30 },
    xAxis: { type: "value", name: "W (+ = delivering)" }, yAxis: { type: "category", data: flow.map((f) => f[0]) },
    series: [{ type: "bar", data: flow.map((f) => ({ value: f[1], itemStyle: { color: f[1] >= 0 ? "#1a7f37" : "#c0362c" } })) }],
  }, true);
  chart("chart-site").setOption({
    tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { top: 50, left: 55, right: 55, bottom: 30 },
    xAxis: { type: "category", data: tel.map((t) => hhmm(t.ts)) },
    yAxis: [{ type: "value", name: "W" }, { type: "value", name: "SoC", min: 0, max: 1 }],
    series: [
      { name: "net export W", type: "line", data: tel.map((t) => t.net_export_w), showSymbol: false },
      { name: "SoC", type: "line", yAxisIndex: 1, data: tel.map((t) => t.soc), showSymbol: false },
    ],
  }, true);
  const num = (v, digits = 0) => (typeof v === "number" ? v.toFixed(digits) : v);
  table("site-devices", [
    ["device", ([name]) => name], ["kind", ([, d]) => d.kind], ["power W", ([, d]) => num(d.power_w)],
    ["SoC", ([, d]) => num(d.soc, 3)], ["health", ([, d]) => num(d.soh ?? d.health, 2)], ["status", ([, d]) => d.status],
  ], devices, "this agent reports no per-device telemetry");
  table("site-trades", [
    ["interval", (t) => t.interval], ["side", (t) => t.side], ["Wh", (t) => t.qty_wh], ["price", (t) => t.price],
    ["delivered Wh", (t) => t.delivered_wh], ["amount (tokens)", (t) => tokens(t.amount)], ["penalty (tokens)", (t) => tokens(t.penalty)],
    ["settle tx", (t) => el("span", { class: "mono" }, short(t.settle_tx))],
  ], trades.data);
  await loadForecast(addr, site.ts);
}

// The site's own demand forecast (sent by its agent) with its 80 % and 95 % bands against the
// demand its telemetry measured, over the last six hours of the site's telemetry.
async function loadForecast(addr, lastTs) {
  const horizon = document.getElementById("forecast-horizon").value;
  const since = lastTs ? `&since=${Math.max(0, Math.floor(lastTs - 6 * 3600))}` : "";
  const [rows, err] = await Promise.all([
    allPages(`${API}/sites/${addr}/forecasts?series=demand&horizon_s=${horizon}&limit=1000${since}`, 3),
    getJSON(`${API}/sites/${addr}/forecasts/error?series=demand`),
  ]);
  const h = err.horizons.find((x) => x.horizon_s === Number(horizon)) || {};
  const pct = (v) => (v == null ? null : `${(v * 100).toFixed(0)} %`);
  cards("forecast-cards", [
    ["model", rows.length ? rows[rows.length - 1].model : null],
    ["measured / forecasts (last day)", h.forecasts == null ? null : `${h.n} / ${h.forecasts}`],
    ["MAE (W)", h.mae_w?.toFixed(0)], ["MAPE", h.mape_pct == null ? null : `${h.mape_pct.toFixed(1)} %`],
    ["bias (W)", h.bias_w?.toFixed(0)],
    [`in 80 % band (of ${h.n_interval ?? 0} with a band)`, pct(h.coverage80)], ["in 95 % band", pct(h.coverage95)],
  ]);
  const box = document.getElementById("chart-forecast");
  box.dataset.points = String(rows.length);
  box.dataset.measured = String(rows.filter((r) => r.actual_w != null).length);
  const at = (r) => (r.target_start + r.target_end) / 2 * 1000;
  // a band is two stacked lines: the lower bound (invisible) and the width above it (filled)
  const band = (name, lo, hi, color) => [
    { name, type: "line", stack: name, data: rows.map((r) => [at(r), r[lo]]), lineStyle: { opacity: 0 }, showSymbol: false,
      itemStyle: { color }, tooltip: { show: false } },
    { name, type: "line", stack: name, data: rows.map((r) => [at(r), r[hi] - r[lo]]), lineStyle: { opacity: 0 }, showSymbol: false,
      itemStyle: { color }, areaStyle: { color }, tooltip: { show: false } },
  ];
  chart("chart-forecast").setOption({
    title: rows.length ? undefined : { text: "no forecasts reported yet", left: "center", top: "middle", textStyle: { color: "#667085", fontSize: 13 } },
    tooltip: { trigger: "axis" }, legend: { top: 0, data: ["forecast W", "actual W", "80 % interval", "95 % interval"] },
    grid: { top: 40, left: 60, right: 30, bottom: 30 },
    xAxis: { type: "time" }, yAxis: { type: "value", name: "W" },
    series: [
      ...band("95 % interval", "lower95_w", "upper95_w", "rgba(31,111,235,.15)"),
      ...band("80 % interval", "lower80_w", "upper80_w", "rgba(31,111,235,.3)"),
      { name: "forecast W", type: "line", data: rows.map((r) => [at(r), r.point_w]), showSymbol: false, lineStyle: { type: "dashed", color: "#1f6feb" }, itemStyle: { color: "#1f6feb" } },
      { name: "actual W", type: "line", data: rows.filter((r) => r.actual_w != null).map((r) => [at(r), r.actual_w]), showSymbol: false, lineStyle: { color: "#c0362c" }, itemStyle: { color: "#c0362c" } },
    ],
  }, true);
}

// ---------------------------------------------------------------- fleet

async function fleetSnapshot() {
  // The fleet service's view when the coordinator runs one ({available: false} otherwise).
  const snap = await getJSON(`${API}/dashboard/fleet`);
  return snap.available ? snap : null;
}

async function loadFleet() {
  await loadSites();
  const fleet = await fleetSnapshot();
  const sites = state.sites;
  const socs = sites.filter((s) => s.soc != null);
  const totals = fleet?.totals || {};
  cards("fleet-cards", [
    ["sites", sites.length], ["connected", sites.filter((s) => s.connected).length],
    ["net export (W)", sites.reduce((a, s) => a + (s.net_export_w || 0), 0).toFixed(0)],
    ["mean SoC", socs.length ? `${(100 * socs.reduce((a, s) => a + s.soc, 0) / socs.length).toFixed(1)} %` : null],
    ["virtual battery usable (Wh)", totals.usable_wh?.toFixed(0)],
    ["virtual battery SoC", totals.soc == null ? null : `${(100 * totals.soc).toFixed(1)} %`],
    ["headroom charge / discharge (W)", totals.max_charge_w != null ? `${totals.max_charge_w.toFixed(0)} / ${totals.max_discharge_w.toFixed(0)}` : null],
    ["frequency response available / armed (W)", fleet?.service ? `${fleet.service.available_w?.toFixed(0)} / ${fleet.service.armed_w?.toFixed(0)}` : null],
    ["mode", fleet?.mode],
    ["source", fleet ? "fleet service" : "telemetry"],
  ]);
  chart("chart-fleet").setOption({
    tooltip: {}, grid: { left: 60, right: 20, bottom: 40 },
    xAxis: { type: "category", data: sites.map((s, i) => `site${i}`) }, yAxis: { type: "value", min: 0, max: 1, name: "SoC" },
    series: [{ type: "bar", data: sites.map((s) => s.soc) }],
  }, true);
  table("fleet-sites", [
    ["site", (s) => siteName(s.address)], ["zone", (s) => s.zone_name], ["link", (s) => s.connected ? "up" : "down"],
    ["net export W", (s) => s.net_export_w?.toFixed(0)], ["SoC", (s) => s.soc?.toFixed(3)], ["last telemetry", (s) => hhmm(s.ts)],
  ], sites);
  const excluded = fleet?.excluded || [];
  table("fleet-excluded", [
    ["site", (u) => siteName(u.address || u.site)], ["device", (u) => u.device ?? "whole site"],
    ["reason", (u) => Array.isArray(u.reasons) ? u.reasons.join("; ") : String(u.reasons ?? u.reason ?? "")],
  ], excluded, fleet ? "no unit is excluded" : "the fleet service is not running on this coordinator");
}

// ---------------------------------------------------------------- events

function eventColumns() {
  return [
    ["#", (e) => e.id], ["time", (e) => hhmm(e.ts)], ["kind", (e) => e.kind],
    ["severity", (e) => el("span", { class: `sev-${e.severity}` }, e.severity || "")],
    ["site", (e) => siteName(e.site)], ["device", (e) => e.device], ["code", (e) => e.code],
    ["message", (e) => e.message],
    ["acknowledged", (e) => e.kind !== "alarm" ? "" : e.acked_at ? `by ${e.acked_by}` :
      el("button", { class: "small", "data-ack": e.id, onclick: () => acknowledge(e.id) }, "acknowledge")],
  ];
}

async function loadEvents() {
  const unacked = document.getElementById("events-unacked").checked;
  state.events = await allPages(`${API}/events?limit=1000${unacked ? "&unacked=true" : ""}`, 5);
  renderEvents();
  refreshAlarmCount();
}

function renderEvents(newId) {
  const body = table("events-table", eventColumns(), [...state.events].reverse(), "no events yet");
  if (newId != null && body.firstChild) body.firstChild.classList.add("new");
  const history = state.events.filter((e) => e.kind.startsWith("config_")).reverse();
  table("config-history", [
    ["#", (e) => e.id], ["time", (e) => hhmm(e.ts)], ["site", (e) => siteName(e.site)], ["outcome", (e) => e.kind.replace("config_", "")],
    ["detail", (e) => e.message],
  ], history, "no configuration changes yet");
}

async function refreshAlarmCount() {
  const n = (await getJSON(`${API}/events?kind=alarm&unacked=true&limit=1000`)).data.length;
  const badge = document.getElementById("alarm-count");
  badge.textContent = String(n);
  badge.hidden = n === 0;
}

async function acknowledge(id) {
  const res = await fetch(`${API}/events/${id}/ack`, { method: "POST", headers: authHeaders() });
  if (!res.ok) {
    alertStatus(`acknowledging needs the operator key: ${(await res.json()).detail}`);
    location.hash = "#config";
    return;
  }
  const ev = await res.json();
  state.events = state.events.map((e) => e.id === ev.id ? ev : e);
  renderEvents();
  refreshAlarmCount();
}

function connectStream() {
  const live = document.getElementById("live");
  const after = state.events.reduce((m, e) => Math.max(m, e.id), 0);
  const source = new EventSource(`${API}/events/stream?after=${after}`);
  source.onopen = () => { live.className = "live on"; };
  source.onerror = () => { live.className = "live off"; };
  const onEvent = (msg) => {
    const ev = JSON.parse(msg.data);
    if (state.events.some((e) => e.id === ev.id)) return;
    state.events.push(ev);
    renderEvents(ev.id);
    if (ev.kind === "alarm") refreshAlarmCount();
    const waiting = ev.data && state.pending.get(ev.data.config_id);
    if (waiting && (ev.kind === "config_applied" || ev.kind === "config_refused")) {
      state.pending.delete(ev.data.config_id);
      setStatus(ev.kind === "config_applied" ? "ok" : "bad",
        `${siteName(ev.site)}: ${ev.kind === "config_applied" ? "" : "the agent "}${ev.message}`);
    }
  };
  for (const kind of ["alarm", "config_sent", "config_applied", "config_refused", "operator"]) source.addEventListener(kind, onEvent);
}

// ---------------------------------------------------------------- remote configuration

function setStatus(kind, text) {
  const s = document.getElementById("config-status");
  s.className = `status ${kind}`;
  s.textContent = text;
}
const alertStatus = (text) => setStatus("bad", text);

async function sendConfig(evt) {
  evt.preventDefault();
  const key = document.getElementById("operator-key").value.trim();
  if (key) sessionStorage.setItem("operatorKey", key); else sessionStorage.removeItem("operatorKey");
  const site = document.getElementById("config-site").value;
  const body = {};
  for (const input of evt.target.querySelectorAll("fieldset [name]")) {
    if (input.value === "") continue;
    if (input.name === "idle_mode") body[input.name] = input.value;
    else if (input.value === "true" || input.value === "false") body[input.name] = input.value === "true";
    else body[input.name] = Number(input.value);
  }
  setStatus("wait", "sending…");
  const res = await fetch(`${API}/sites/${site}/config`, {
    method: "POST", headers: { "Content-Type": "application/json", ...authHeaders() }, body: JSON.stringify(body),
  });
  const reply = await res.json();
  if (!res.ok) {
    const detail = typeof reply.detail === "string" ? reply.detail : JSON.stringify(reply.detail);
    setStatus("bad", `refused by the coordinator (${res.status}): ${detail}`);
    return;
  }
  state.pending.set(reply.config_id, site);
  setStatus("wait", `change ${reply.config_id} sent to ${siteName(site)}; waiting for the agent…`);
  const done = state.events.find((e) => e.data?.config_id === reply.config_id && e.kind !== "config_sent");
  if (done) showOutcome(done);
}

function showOutcome(ev) {
  state.pending.delete(ev.data.config_id);
  setStatus(ev.kind === "config_applied" ? "ok" : "bad", `${siteName(ev.site)}: ${ev.message}`);
}

// ---------------------------------------------------------------- views

const views = { market: loadMarket, site: loadSite, fleet: loadFleet, events: loadEvents, config: async () => { await loadSites(); await loadEvents(); } };

async function show() {
  const name = (location.hash || "#market").slice(1);
  const view = views[name] ? name : "market";
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== `view-${view}`;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === view);
  document.body.dataset.view = view;
  document.body.dataset.loaded = "";
  try {
    await views[view]();
    Object.values(state.charts).forEach((c) => c.resize());
    document.body.dataset.loaded = view;
  } catch (e) {
    console.warn(`loading ${view} failed`, e);
    document.body.dataset.loaded = `error:${view}`;
  }
}

window.addEventListener("hashchange", show);
document.getElementById("site-select").addEventListener("change", loadSite);
document.getElementById("forecast-horizon").addEventListener("change", loadSite);
document.getElementById("events-unacked").addEventListener("change", loadEvents);
document.getElementById("config-form").addEventListener("submit", sendConfig);
document.getElementById("operator-key").value = sessionStorage.getItem("operatorKey") || "";
loadEvents().catch((e) => console.warn(e)).finally(() => { connectStream(); show(); });
