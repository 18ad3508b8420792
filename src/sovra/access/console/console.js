// The console: /v1/status every 2 s, rendered as a table; Load and Unload post to the gateway.
// No framework and nothing from outside this machine: the page is served by the gateway itself.
"use strict";

const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const token = () => sessionStorage.getItem("sovra-token") || "";

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

async function call(method, path) {
  const answer = await fetch(path, { method, headers: { authorization: `Bearer ${token()}` } });
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error ? body.error.message : `HTTP ${answer.status}`);
  return body;
}

function memory(service) {
  const td = document.createElement("td");
  if (!service.memory) { td.textContent = "—"; return td; }
  const { predicted_bytes: predicted, measured_bytes: measured, budget_bytes: budget, each_bytes: each } =
    service.memory;
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.title = `of a ${mib(budget)} budget`;
  const fill = document.createElement("span");
  fill.style.width = `${Math.min(100, (100 * Math.max(predicted, measured)) / budget)}%`;
  bar.append(fill);
  td.append(predicted ? `${mib(predicted)} · ${mib(measured)}` : `none loaded (${mib(each)} each)`, bar);
  return td;
}

function row(name, service) {
  const tr = document.createElement("tr");
  tr.dataset.service = name;
  tr.append(cell(name));
  const state = document.createElement("td");
  const badge = document.createElement("span");
  badge.className = `state ${service.state}`;
  badge.dataset.state = service.state;
  badge.textContent = service.state;
  state.append(badge);
  tr.append(state);
  const replicas = (service.replicas || []).map((r) => `#${r.index} ${r.state}${r.port ? " :" + r.port : ""}`);
  tr.append(cell(replicas.join(", ") || "—"));
  tr.append(cell(`${service.in_flight} / ${service.held}`));
  tr.append(memory(service));
  let idle = "—";
  if (service.idle_seconds !== undefined) idle = `${service.idle_seconds} s`;
  if (service.unloads_in_seconds !== undefined) idle += ` (unloads in ${service.unloads_in_seconds} s)`;
  tr.append(cell(idle));
  tr.append(cell(service.last_scaling || "—"));
  const actions = document.createElement("td");
  if (service.state !== "remote") {
    for (const verb of ["load", "unload"]) {
      const button = document.createElement("button");
      button.textContent = verb === "load" ? "Load" : "Unload";
      button.dataset.action = verb;
      button.addEventListener("click", () => act(name, verb, button));
      actions.append(button);
    }
  }
  tr.append(actions);
  return tr;
}

async function act(name, verb, button) {
  button.disabled = true;
  try {
    await call("POST", `/v1/status/${encodeURIComponent(name)}/${verb}`);
    await refresh();
  } catch (error) {
    document.getElementById("error").textContent = `${name}: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

async function refresh() {
  if (!token()) return;
  try {
    const status = await call("GET", "/v1/status");
    const body = document.getElementById("services");
    body.replaceChildren(...Object.entries(status.services).map(([name, s]) => row(name, s)));
    document.getElementById("error").textContent = "";
  } catch (error) {
    document.getElementById("error").textContent = error.message;
  }
}

function rows(id, items, columns) {
  const body = document.getElementById(id);
  if (!items.length) return;
  body.replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    for (const column of columns) {
      const value = column(item);
      if (value instanceof Node) {
        const td = document.createElement("td");
        td.append(value);
        tr.append(td);
      } else {
        tr.append(cell(value));
      }
    }
    return tr;
  }));
}

function sparkline(hours, since) {
  // Requests per hour over the window, as an inline SVG (no chart library).
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", "120");
  svg.setAttribute("height", "20");
  const most = Math.max(1, ...Object.values(hours));
  for (const [hour, count] of Object.entries(hours)) {
    const slot = Math.floor((Number(hour) - since) / 3600);
    const rect = document.createElementNS(ns, "rect");
    const height = Math.max(1, (18 * count) / most);
    rect.setAttribute("x", String(slot * 5));
    rect.setAttribute("y", String(20 - height));
    rect.setAttribute("width", "4");
    rect.setAttribute("height", String(height));
    svg.append(rect);
  }
  return svg;
}

async function reports() {
  if (!token()) return;
  let data;
  try {
    data = await call("GET", "/v1/status/reports?hours=24");
  } catch (error) {
    return; // the status table reports a bad token
  }
  const since = Math.floor(Date.now() / 3600000) * 3600 - 23 * 3600;
  const totals = new Map();
  for (const row of data.usage || []) {
    const key = `${row.tenant}\u0000${row.model}`;
    const total = totals.get(key) || { tenant: row.tenant, model: row.model, requests: 0, errors: 0, input: 0, output: 0, hours: {} };
    total.requests += row.requests; total.errors += row.errors;
    total.input += row.input_tokens; total.output += row.output_tokens;
    total.hours[row.hour] = (total.hours[row.hour] || 0) + row.requests;
    totals.set(key, total);
  }
  rows("usage", [...totals.values()], [(t) => t.tenant, (t) => t.model, (t) => String(t.requests),
    (t) => String(t.errors), (t) => String(t.input), (t) => String(t.output), (t) => sparkline(t.hours, since)]);
  rows("router", data.router || [], [(d) => d.rule, (d) => d.action, (d) => String(d.count)]);
  rows("evals", data.evaluations || [], [(e) => e.suite, (e) => new Date(e.at * 1000).toLocaleString(),
    (e) => `${(100 * e.pass_rate).toFixed(1)} %`,
    (e) => Object.entries(e.models).map(([m, r]) => `${m} ${(100 * r).toFixed(0)} %`).join(", ")]);
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("sovra-token", document.getElementById("token").value);
  refresh();
  reports();
});
refresh();
reports();
setInterval(refresh, 2000);
setInterval(reports, 10000);
