// Polls /v1/status every 2 s and renders one table row per model. No build step, no dependencies.
"use strict";

const REFRESH_MS = 2000;

function formatNumber(value, digits) {
  if (value === null || value === undefined) return "";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
}

function formatMetrics(metrics) {
  return Object.entries(metrics || {})
    .filter(([, value]) => typeof value === "number" || typeof value === "string")
    .map(([key, value]) => `${key}=${typeof value === "number" ? formatNumber(value, 4) : value}`)
    .join(", ");
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function renderModel(model) {
  const row = document.createElement("tr");
  row.dataset.model = model.name;
  row.dataset.requestsPerS = model.requests_per_s;
  row.dataset.samplesPerS = model.samples_per_s;
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
  cell(row, model.method || "");
  cell(row, formatNumber(model.parameter_bytes, 0), "num");
  cell(row, formatMetrics(model.metrics));
  cell(row, formatNumber(model.requests_per_s, 1), "num requests-per-s");
  cell(row, formatNumber(model.samples_per_s, 1), "num samples-per-s");
  cell(row, formatNumber(model.inferences_total, 0), "num");
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
      ` | up ${formatNumber(status.uptime_s, 0)} s`;
    document.getElementById("window").textContent = formatNumber(status.rate_window_s, 0);
    const body = document.querySelector("#models tbody");
    body.replaceChildren(...status.models.map(renderModel));
  } catch (error) {
    server.dataset.ready = "false";
    server.textContent = `status unavailable: ${error}`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
