// The status page: targets and their health, the series nearest their threshold, and one series'
// chart. Everything comes from the daemon's REST API (/api/v1/...); nothing is kept server side.
// Text from the daemon (label values, error messages) only ever goes in through textContent.
"use strict";

const REFRESH_MS = 15000;
const PAGE = 25;
const view = { offset: 0, total: 0, selected: null, search: "", target: "", sort: "time_to_threshold" };
const SORT_NOTES = {
  time_to_threshold: "soonest to their threshold first",
  probability: "likeliest to reach their threshold first",
  name: "by name",
};
// The daemon's schedule clock minus this browser's: times in the API are on the daemon's clock
// (the wall clock, or the demo's simulated time), so "how long ago" is read against it.
let clockOffset = 0;

function now() {
  return Date.now() / 1000 + clockOffset;
}

async function api(path) {
  const resp = await fetch("api/v1/" + path, { headers: { Accept: "application/json" } });
  const body = await resp.json();
  if (body.status !== "success") throw new Error(body.error || resp.statusText);
  return body.data;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

// 5400 -> "1h 30m": how long until, or how long ago.
function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "-";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + "s";
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return [d ? d + "d" : "", h ? h + "h" : "", m && !d ? m + "m" : ""].filter(Boolean).join(" ") || "0m";
}

function ago(at) {
  return at === null || at === undefined ? "never" : duration(now() - at) + " ago";
}

function setState(text, cls) {
  const el = document.getElementById("state");
  el.textContent = text;
  el.className = "pill " + cls;
}

// --- targets ---------------------------------------------------------------------------------

function trainingText(t) {
  if (!t.model.trains) return ["does not train", "muted"];
  const tr = t.training;
  if (tr.running) {
    const e = tr.epoch;
    if (!e) return ["running, " + ago(tr.since).replace(" ago", ""), "busy"];
    const where = e.series_in_stack < e.series_total
      ? `series ${e.series_done + 1}-${e.series_done + e.series_in_stack} of ${e.series_total}` : `${e.series_total} series`;
    const budget = e.budget_seconds ? ` of ${duration(e.budget_seconds)}` : "";
    return [`${e.model} epoch ${e.epoch} (${where}), loss ${tsfChart.formatValue(e.train_loss)} / ` +
      `${tsfChart.formatValue(e.validation_loss)}, ${duration(e.elapsed_seconds)}${budget}`, "busy"];
  }
  if (t.waiting_for_history) return ["waiting for history", "muted"];
  return ["next in " + duration(tr.next_at - now()), ""];
}

function renderTargets(targets) {
  const body = document.querySelector("#targets tbody");
  body.replaceChildren();
  const filter = document.getElementById("target-filter");
  const known = new Set([...filter.options].map((o) => o.value));
  for (const t of targets) {
    if (!known.has(t.name)) filter.add(new Option(t.name, t.name));
    const row = document.createElement("tr");
    row.dataset.target = t.name;
    cell(row, t.name);
    const models = Object.entries(t.models_in_use).map(([m, n]) => `${m} ${n}`).join(", ");
    cell(row, `${t.model.kind} (${t.model.serving_scope})` + (models ? ": " + models : ""));
    cell(row, t.series, "num");
    const [text, cls] = trainingText(t);
    cell(row, text, cls);
    const last = t.training.last;
    cell(row, t.model.trains ? ago(t.model.trained_at) + (last && last.detail ? " - " + last.detail : "") : "-");
    const f = t.forecast.last;
    cell(row, f ? `${ago(f.at)} in ${duration(f.duration_seconds) === "0s" ? "<1s" : duration(f.duration_seconds)}` : "not yet");
    const errors = [t.training.last && t.training.last.error, f && f.error].filter(Boolean);
    cell(row, errors.length ? errors.join("; ") : "none", errors.length ? "err" : "muted");
    body.appendChild(row);
  }
}

// --- series ----------------------------------------------------------------------------------

function renderSeries(data) {
  view.total = data.total;
  const body = document.querySelector("#series tbody");
  body.replaceChildren();
  for (const s of data.series) {
    const row = document.createElement("tr");
    row.dataset.id = s.id;
    if (s.id === view.selected) row.classList.add("selected");
    // Break long names between labels rather than inside a value.
    cell(row, s.name.replace(/",/g, '",\u200b'), "name");
    cell(row, s.target);
    cell(row, s.model);
    cell(row, tsfChart.formatValue(s.last_value), "num");
    cell(row, s.threshold === null ? "-" : tsfChart.formatValue(s.threshold), "num");
    const soon = s.time_to_threshold_seconds;
    cell(row, soon === null ? (s.threshold === null ? "-" : "beyond horizon") : duration(soon),
      "num" + (soon !== null && soon < 6 * 3600 ? " soon" : ""));
    const p = s.threshold_probability ? Object.values(s.threshold_probability) : [];
    const last = p.length ? p[p.length - 1] : null;
    cell(row, last === null ? "-" : Math.round(last * 100) + "%", "num");
    row.addEventListener("click", () => select(s.id));
    body.appendChild(row);
  }
  const first = data.total ? view.offset + 1 : 0;
  document.getElementById("page").textContent =
    `${first}-${view.offset + data.series.length} of ${data.total}`;
  document.getElementById("prev").disabled = view.offset === 0;
  document.getElementById("next").disabled = view.offset + PAGE >= data.total;
  if (view.selected === null && data.series.length) select(data.series[0].id);
}

async function loadSeries() {
  const q = new URLSearchParams({ limit: PAGE, offset: view.offset, sort: view.sort });
  if (view.search) q.set("search", view.search);
  if (view.target) q.set("target", view.target);
  renderSeries(await api("series?" + q));
}

// --- one series ------------------------------------------------------------------------------

async function select(id) {
  view.selected = id;
  if (location.hash !== "#series=" + id) history.replaceState(null, "", "#series=" + id);
  for (const row of document.querySelectorAll("#series tbody tr")) {
    row.classList.toggle("selected", row.dataset.id === id);
  }
  let s;
  try {
    s = await api("series/" + encodeURIComponent(id));
  } catch (err) {
    document.getElementById("chart-title").textContent = "Series not found";
    document.getElementById("chart-facts").textContent = String(err.message);
    document.getElementById("chart").replaceChildren();
    return;
  }
  if (view.selected !== id) return;  // another click came first
  document.getElementById("chart-title").textContent = s.name;
  const facts = [`target ${s.target}`, `model ${s.model} (${s.scope})`];
  if (s.threshold !== null) {
    facts.push(`threshold ${tsfChart.formatValue(s.threshold)}`);
    facts.push(s.time_to_threshold_seconds === null ? "not reached within the horizon"
      : `reached in ${duration(s.time_to_threshold_seconds)}`);
  }
  if (s.forecast_error) {
    const e = Object.entries(s.forecast_error).filter(([, v]) => v !== null);
    if (e.length) facts.push("error " + e.map(([h, v]) => `${h} ${tsfChart.formatValue(v)}`).join(", "));
  }
  document.getElementById("chart-facts").textContent = facts.join(" \u00b7 ");
  tsfChart.drawChart(document.getElementById("chart"), s);
}

// --- wiring ----------------------------------------------------------------------------------

function renderStatus(st) {
  clockOffset = st.time - Date.now() / 1000;
  document.getElementById("version").textContent = "v" + st.version;
  const reload = st.last_reload;
  if (!reload.successful) return setState("config reload failed: " + reload.error, "bad");
  setState(st.ready ? "ready" : st.stopping ? "stopping" : "starting", st.ready ? "ok" : "bad");
}

async function refresh() {
  try {
    const st = await api("status");
    renderStatus(st);
    if (!st.ready) return;
    renderTargets(await api("targets"));
    await loadSeries();
    if (view.selected) await select(view.selected);
  } catch (err) {
    setState(String(err.message), "bad");
  }
}

function start() {
  const hash = /^#series=([0-9a-f]+)$/.exec(location.hash);
  if (hash) view.selected = hash[1];
  let timer = null;
  document.getElementById("search").addEventListener("input", (ev) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      view.search = ev.target.value.trim();
      view.offset = 0;
      loadSeries().catch((err) => setState(String(err.message), "bad"));
    }, 200);
  });
  document.getElementById("target-filter").addEventListener("change", (ev) => {
    view.target = ev.target.value;
    view.offset = 0;
    loadSeries().catch((err) => setState(String(err.message), "bad"));
  });
  for (const button of document.querySelectorAll("button.sort")) {
    button.classList.toggle("active", button.dataset.sort === view.sort);
    button.addEventListener("click", () => {
      view.sort = button.dataset.sort;
      view.offset = 0;
      for (const b of document.querySelectorAll("button.sort")) b.classList.toggle("active", b === button);
      document.getElementById("sort-note").textContent = SORT_NOTES[view.sort];
      loadSeries().catch((err) => setState(String(err.message), "bad"));
    });
  }
  document.getElementById("prev").addEventListener("click", () => {
    view.offset = Math.max(0, view.offset - PAGE);
    loadSeries();
  });
  document.getElementById("next").addEventListener("click", () => {
    view.offset += PAGE;
    loadSeries();
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
