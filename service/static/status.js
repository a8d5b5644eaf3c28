// The status page: polls /v1/status every 2 s; draws samples/s per model (SVG), the compressed-vs-full
// ratios and one table row per model with readable metric columns. No build step, nothing loaded from
// anywhere but this service.
"use strict";

const REFRESH_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
const METRIC_LABELS = {
  auc: "AUC", logloss: "log loss", mean_error_m: "mean error (m)", median_error_m: "median error (m)",
  p75_error_m: "p75 error (m)", p95_error_m: "p95 error (m)", building_hit: "building hit",
  floor_hit: "floor hit", evaal_error_m: "EvAAL error (m)", steps: "steps", samples_per_s: "train samples/s",
  compression: "compression",
};
const colorOf = {};

function formatNumber(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
}

function formatBytes(value) {
  if (value === null || value === undefined) return "";
  const units = [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]];
  for (const [unit, scale] of units) {
    if (value >= scale) return `${(value / scale).toFixed(value >= 100 * scale ? 0 : 1)} ${unit}`;
  }
  return `${value} B`;
}

function metricLabel(key) {
  return METRIC_LABELS[key] || key.replaceAll("_", " ");
}

function cell(row, text, className, title) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  if (title) td.title = title;
  row.appendChild(td);
  return td;
}

function colorFor(name) {
  if (!(name in colorOf)) colorOf[name] = COLORS[Object.keys(colorOf).length % COLORS.length];
  return colorOf[name];
}

function svg(tag, attributes, text) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function drawChart(models, spanS) {
  const chart = document.getElementById("chart");
  const [width, height, left, right, top, bottom] = [900, 260, 64, 12, 12, 30];
  const series = models.filter((m) => m.history && m.history.length > 0);
  const peak = Math.max(0, ...series.flatMap((m) => m.history.map(([, rate]) => rate)));
  const yMax = niceMax(peak);
  const x = (ago) => left + (width - left - right) * (1 - Math.min(ago, spanS) / spanS);
  const y = (rate) => top + (height - top - bottom) * (1 - rate / yMax);
  const children = [];
  for (let i = 0; i <= 4; i++) {
    const rate = (yMax * i) / 4;
    children.push(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(rate), y2: y(rate) }));
    children.push(svg("text", { x: left - 6, y: y(rate) + 4, "text-anchor": "end" }, formatNumber(rate, 0)));
  }
  const tick = spanS <= 60 ? 10 : 60;
  for (let ago = 0; ago <= spanS; ago += tick) {
    const label = ago === 0 ? "now" : tick < 60 ? `-${ago} s` : `-${ago / 60} min`;
    children.push(svg("text", { x: x(ago), y: height - 10, "text-anchor": "middle" }, label));
  }
  children.push(svg("line", { class: "axis", x1: left, x2: left, y1: top, y2: height - bottom }));
  children.push(svg("line", { class: "axis", x1: left, x2: width - right, y1: height - bottom,
    y2: height - bottom }));
  for (const model of series) {
    const points = model.history.map(([ago, rate]) => `${x(ago).toFixed(1)},${y(rate).toFixed(1)}`);
    if (points.length === 1) points.push(`${x(0).toFixed(1)},${y(model.history[0][1]).toFixed(1)}`);
    children.push(svg("polyline", { points: points.join(" "), stroke: colorFor(model.name),
      "data-model": model.name }));
  }
  chart.replaceChildren(...children);
  chart.dataset.series = String(series.length);
  const legend = document.getElementById("legend");
  legend.replaceChildren(...models.map((model) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colorFor(model.name);
    item.append(swatch, `${model.name} ${formatNumber(model.samples_per_s, 0)}/s`);
    return item;
  }));
}

function ratioCell(row, value, className) {
  const td = cell(row, value === null ? "" : `${formatNumber(value, 2)}×`, `num ${className}`);
  if (value !== null) td.classList.add(value > 1.0001 ? "better" : value < 0.9999 ? "worse" : "same");
  return td;
}

function renderComparison(models) {
  const rows = [];
  for (const task of new Set(models.map((m) => m.task).filter(Boolean))) {
    const group = models.filter((m) => m.task === task && m.state === "READY");
    const full = group.find((m) => m.method === "full");
    if (!full) continue;
    for (const model of group) {
      const row = document.createElement("tr");
      row.dataset.compare = model.name;
      const throughput = full.samples_per_s > 0 ? model.samples_per_s / full.samples_per_s : null;
      const memory = model.parameter_bytes > 0 ? full.parameter_bytes / model.parameter_bytes : null;
      row.dataset.throughputRatio = throughput === null ? "" : String(throughput);
      row.dataset.memoryRatio = memory === null ? "" : String(memory);
      cell(row, model.name);
      cell(row, model.method || "");
      cell(row, model.placement || "");
      cell(row, formatNumber(model.samples_per_s, 0), "num");
      ratioCell(row, throughput, "throughput-ratio");
      cell(row, formatBytes(model.parameter_bytes), "num", formatNumber(model.parameter_bytes, 0));
      ratioCell(row, memory, "memory-ratio");
      cell(row, formatNumber(model.p50_ms, 2), "num");
      cell(row, formatNumber(model.p99_ms, 2), "num");
      rows.push(row);
    }
  }
  document.querySelector("#compare tbody").replaceChildren(...rows);
}

function metricKeys(models) {
  const keys = [];
  for (const model of models) {
    for (const [key, value] of Object.entries(model.metrics || {})) {
      if (typeof value === "number" && !keys.includes(key)) keys.push(key);
    }
  }
  return keys;
}

const BASE_COLUMNS = [
  ["model"], ["version"], ["state"], ["task"], ["method"], ["placement"], ["parameter bytes", "num"],
  ["requests/s", "num"], ["samples/s", "num"], ["p50 ms", "num"], ["p99 ms", "num"],
  ["mean batch", "num"], ["stages (ms)"], ["samples total", "num"],
];

function renderHeader(keys) {
  const row = document.createElement("tr");
  for (const [label, className] of BASE_COLUMNS) {
    const th = document.createElement("th");
    th.textContent = label;
    if (className) th.className = className;
    row.appendChild(th);
  }
  for (const key of keys) {
    const th = document.createElement("th");
    th.textContent = metricLabel(key);
    th.className = "num metric";
    th.dataset.metric = key;
    row.appendChild(th);
  }
  document.querySelector("#models thead").replaceChildren(row);
}

function renderModel(model, keys) {
  const row = document.createElement("tr");
  row.dataset.model = model.name;
  row.dataset.requestsPerS = model.requests_per_s;
  row.dataset.samplesPerS = model.samples_per_s;
  row.dataset.placement = model.placement || "";
  cell(row, model.name);
  cell(row, model.version || "");
  const state = cell(row, model.state, `state-${model.state}`);
  if (model.reason) {
    const reason = document.createElement("div");
    reason.className = "reason";
    reason.textContent = model.reason;
    state.appendChild(reason);
  }
  cell(row, model.task || "");
  const method = cell(row, model.method || "", "method");
  if (model.method_detail) {
    const detail = document.createElement("div");
    detail.className = "detail";
    detail.textContent = model.method_detail;
    method.appendChild(detail);
  }
  cell(row, model.placement || "", "placement", model.placement_reason || "");
  cell(row, formatNumber(model.parameter_bytes, 0), "num");
  cell(row, formatNumber(model.requests_per_s, 1), "num requests-per-s");
  cell(row, formatNumber(model.samples_per_s, 1), "num samples-per-s");
  cell(row, formatNumber(model.p50_ms, 2), "num p50");
  cell(row, formatNumber(model.p99_ms, 2), "num p99");
  cell(row, formatNumber(model.mean_batch_size, 1), "num batch");
  const stages = Object.entries(model.stage_ms || {}).map(([s, ms]) => `${s} ${formatNumber(ms, 2)}`);
  cell(row, stages.join(", "), "stages");
  cell(row, formatNumber(model.inferences_total, 0), "num");
  for (const key of keys) {
    const value = (model.metrics || {})[key];
    const td = cell(row, typeof value === "number" ? formatNumber(value, 4) : "", "num metric");
    td.dataset.metric = key;
  }
  return row;
}

async function refresh() {
  const server = document.getElementById("server");
  try {
    const response = await fetch("/v1/status", { cache: "no-store" });
    const status = await response.json();
    server.dataset.ready = String(status.ready);
    server.textContent = `version ${status.version} | ${status.ready ? "ready" : "not ready"}` +
      `${status.draining ? " (draining)" : ""} | providers ${status.providers.join(", ")}` +
      ` | up ${formatNumber(status.uptime_s, 0)} s` +
      (status.device_budget_bytes == null ? "" : ` | device memory ${formatNumber(status.device_bytes_held, 0)}` +
        ` of ${formatNumber(status.device_budget_bytes, 0)} bytes held`);
    document.getElementById("window").textContent = formatNumber(status.rate_window_s, 0);
    const oldest = Math.max(0, ...status.models.flatMap((m) => (m.history || []).map(([ago]) => ago)));
    const spanS = Math.min(300, Math.max(60, Math.ceil(oldest / 60) * 60));
    document.getElementById("history-span").textContent = spanS < 120 ? `${spanS} s` : `${spanS / 60} minutes`;
    drawChart(status.models, spanS);
    renderComparison(status.models);
    const keys = metricKeys(status.models);
    renderHeader(keys);
    document.querySelector("#models tbody").replaceChildren(...status.models.map((m) => renderModel(m, keys)));
  } catch (error) {
    server.dataset.ready = "false";
    server.textContent = `status unavailable: ${error}`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
