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

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("sovra-token", document.getElementById("token").value);
  refresh();
});
refresh();
setInterval(refresh, 2000);
